//! A logical call as `tracing` sees it: its span (one per call, around
//! every attempt's polls), its correlation id, and the event of each
//! attempt.

use crate::telemetry::Outcome;

/// The call's span and correlation id, made when the call starts and handed
/// from stage to stage: the retry stage polls each attempt in them, and a
/// fallback's event names the call that failed.
pub(crate) struct CallTrace {
    pub(crate) span: tracing::Span,
    /// The correlation id: the caller's, or the call's own (0 until first
    /// asked for when nothing records the span).
    pub(crate) correlation: u128,
}

impl CallTrace {
    /// The trace of a call of `contract.method` starting now.
    #[inline(always)]
    pub(crate) fn start(contract: &str, method: &str) -> Self {
        let span = tracing::info_span!(
            target: "seawall::call",
            "seawall.call",
            contract = %contract,
            method = %method,
            correlation_id = tracing::field::Empty,
            "otel.kind" = "client",
            "http.request.method" = tracing::field::Empty,
            "server.address" = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
        );
        let correlation = crate::telemetry::correlation_for_call(!span.is_disabled());
        if !span.is_disabled() {
            span.record(
                "correlation_id",
                tracing::field::display(format_args!("{correlation:032x}")),
            );
        }
        Self { span, correlation }
    }

    /// The call's correlation id, for a fallback's event (made now if the
    /// call never needed one).
    pub(crate) fn correlation_id(&mut self) -> crate::telemetry::CorrelationId {
        if self.correlation == 0 {
            self.correlation = crate::telemetry::CorrelationId::generate().as_u128();
        }
        crate::telemetry::CorrelationId::from_u128(self.correlation)
            .unwrap_or_else(crate::telemetry::CorrelationId::generate)
    }
}

impl crate::endpoint::Endpoint {
    /// Records one attempt of this method, which took `nanos`: counts,
    /// latency, the change detector, and an `info` event (target
    /// `seawall::attempt`) in the call's span for whoever listens.
    pub(crate) fn observe(&self, trace: &CallTrace, seen: Outcome, attempt: u32, nanos: u64) {
        self.stats.attempt(seen, nanos);
        let failed = seen != Outcome::Success;
        let _in_call = trace.span.enter();
        tracing::info!(
            target: "seawall::attempt",
            contract = %self.contract,
            method = %self.method,
            attempt,
            outcome = seen.as_str(),
            "error.type" = failed.then(|| seen.as_str()),
            duration_ms = nanos as f64 / 1e6,
            breaker = self.breaker.as_ref().map(|b| b.state().as_str()),
            "attempt"
        );
    }
}
