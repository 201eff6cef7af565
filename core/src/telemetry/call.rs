//! A logical call as `tracing` sees it, following OpenTelemetry's
//! conventions for HTTP clients:
//!
//! - one span per call, `seawall.call` (`otel.kind = "internal"`), with
//!   `contract`, `method` and `correlation_id` when it starts, and once,
//!   when it ends, `seawall.outcome`, `seawall.attempts`, and on failure
//!   `error.type`, `otel.status_code = "error"` and the error's message as
//!   `otel.status_description`;
//! - one span per attempt under it (when the call's is recorded),
//!   `seawall.attempt`
//!   (`otel.kind = "client"`): `seawall.attempt` (1, 2, …),
//!   `http.request.resend_count` from the second, and what the HTTP client
//!   records inside it (`http.request.method`, `server.address`,
//!   `server.port`, `http.response.status_code`), then its `error.type`
//!   and status when it failed; each field recorded once;
//! - one event per attempt in its span (target `seawall::attempt`): DEBUG
//!   when it answered, INFO when it failed;
//! - one event when the call ends (target `seawall::call`, "call ended")
//!   with its `outcome` (see [`CallOutcome`]), `attempts`, `duration_ms`,
//!   and the final `error` and `error.type`: DEBUG when it answered on the
//!   first attempt, INFO otherwise.

use crate::endpoint::Endpoint;
use crate::telemetry::Outcome;
use crate::{Classify, ContractError, ErrorClass};

/// How a call ended, as its caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallOutcome {
    /// The vendor answered (also an answer the idempotency store replayed).
    Ok,
    /// The caller got an error.
    Error,
    /// A read answered from the last-known-good cache.
    Stale,
    /// A write queued in the write-ahead log (or outbox).
    Queued,
    /// `fallback = with(..)` answered.
    Fallback,
    /// Turned away without calling the vendor (an open breaker).
    Rejected,
    /// The caller dropped the call's future before it ended.
    Cancelled,
    /// The adapter panicked; the panic went on to the caller.
    Panicked,
}

impl CallOutcome {
    pub(crate) const ALL: [CallOutcome; 8] = [
        CallOutcome::Ok,
        CallOutcome::Error,
        CallOutcome::Stale,
        CallOutcome::Queued,
        CallOutcome::Fallback,
        CallOutcome::Rejected,
        CallOutcome::Cancelled,
        CallOutcome::Panicked,
    ];

    /// The outcome's name, as in metrics, events and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Stale => "stale",
            CallOutcome::Queued => "queued",
            CallOutcome::Fallback => "fallback",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Panicked => "panicked",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The call's spans and correlation id, made when the call starts and
/// handed from stage to stage: the retry stage polls each attempt in its
/// attempt span, a fallback's event names the call's correlation id, and
/// the call's end is reported once, however it ends (dropped or unwound
/// included).
pub(crate) struct CallTrace<'a> {
    endpoint: &'a Endpoint,
    /// The span of the attempt running now (before the call's, so that it
    /// closes first).
    pub(crate) attempt: tracing::Span,
    pub(crate) span: tracing::Span,
    /// The correlation id: the caller's, or the call's own (0 until first
    /// asked for when nothing records the span).
    pub(crate) correlation: u128,
    /// When the call started (a raw reading of the clock), when its span
    /// is recorded; 0 otherwise.
    started: u64,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// The open breaker turned the call away.
    pub(crate) rejected: bool,
    /// The call's end was reported.
    ended: bool,
}

impl<'a> CallTrace<'a> {
    /// The trace of a call of `endpoint`'s method, not started yet:
    /// [`start`](Self::start) it where it is kept.
    ///
    /// Two steps so that the trace is written where the call's future keeps
    /// it, field by field: a trace made whole and then moved there was
    /// copied with wide loads from narrower stores (a store-forwarding
    /// stall, ~3 ns a call).
    #[inline(always)]
    pub(crate) fn new(endpoint: &'a Endpoint) -> Self {
        Self {
            endpoint,
            attempt: tracing::Span::none(),
            span: tracing::Span::none(),
            correlation: 0,
            started: 0,
            attempts: 0,
            rejected: false,
            ended: false,
        }
    }

    /// Starts the call's trace: its span, when `tracing` may record INFO
    /// (one load of the global level; `info_span!` hands its span back
    /// through memory, which cost the same stall), and its correlation id.
    #[inline(always)]
    pub(crate) fn start(&mut self) {
        if tracing::level_enabled!(tracing::Level::INFO) {
            self.open();
        }
        let recorded = !self.span.is_disabled();
        self.correlation = crate::telemetry::correlation_for_call(recorded);
        if recorded {
            self.span.record(
                "correlation_id",
                tracing::field::display(format_args!("{:032x}", self.correlation)),
            );
        }
    }

    /// Opens the call's span (when something may record it).
    #[inline(never)]
    fn open(&mut self) {
        self.span = tracing::info_span!(
            target: "seawall::call",
            "seawall.call",
            contract = %self.endpoint.contract,
            method = %self.endpoint.method,
            correlation_id = tracing::field::Empty,
            "otel.kind" = "internal",
            "seawall.outcome" = tracing::field::Empty,
            "seawall.attempts" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
            "otel.status_description" = tracing::field::Empty,
        );
        if !self.span.is_disabled() {
            self.started = crate::telemetry::clock().raw();
        }
    }

    /// Opens the span of attempt number `attempt` (replacing the last
    /// one's, which closes), under the call's: none when the call's span
    /// is not recorded.
    #[inline(always)]
    pub(crate) fn begin_attempt(&mut self, attempt: u32) {
        self.attempts = attempt;
        if !self.span.is_disabled() {
            self.open_attempt(attempt);
        }
    }

    #[inline(never)]
    fn open_attempt(&mut self, attempt: u32) {
        self.attempt = tracing::info_span!(
            target: "seawall::attempt",
            parent: &self.span,
            "seawall.attempt",
            "otel.kind" = "client",
            // Signed: OpenTelemetry's integers are (tracing-opentelemetry
            // exports an unsigned one as a string).
            "seawall.attempt" = i64::from(attempt),
            "http.request.resend_count" = (attempt > 1).then(|| i64::from(attempt) - 1),
            "http.request.method" = tracing::field::Empty,
            "server.address" = tracing::field::Empty,
            "server.port" = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
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

    /// Records one attempt, which took `nanos` and ended as `seen`
    /// (`error_type` names its error): counts, latency, the change
    /// detector, the attempt span's `error.type` and status, and the
    /// attempt's event.
    #[inline]
    pub(crate) fn observe(
        &self,
        seen: Outcome,
        nanos: u64,
        error_type: impl FnOnce() -> &'static str,
    ) {
        let endpoint = self.endpoint;
        endpoint.stats.attempt(seen, nanos);
        if seen == Outcome::Success {
            let _in_attempt = self.attempt.enter();
            tracing::debug!(
                target: "seawall::attempt",
                contract = %endpoint.contract,
                method = %endpoint.method,
                attempt = self.attempts,
                outcome = seen.as_str(),
                duration_ms = nanos as f64 / 1e6,
                "attempt answered"
            );
        } else {
            self.attempt_failed(seen, nanos, error_type());
        }
    }

    #[cold]
    fn attempt_failed(&self, seen: Outcome, nanos: u64, error_type: &'static str) {
        let endpoint = self.endpoint;
        if !self.attempt.is_disabled() {
            self.attempt.record("error.type", error_type);
            self.attempt.record("otel.status_code", "error");
        }
        let _in_attempt = self.attempt.enter();
        tracing::info!(
            target: "seawall::attempt",
            contract = %endpoint.contract,
            method = %endpoint.method,
            attempt = self.attempts,
            outcome = seen.as_str(),
            "error.type" = error_type,
            duration_ms = nanos as f64 / 1e6,
            breaker = endpoint.breaker.as_ref().map(|b| b.state().as_str()),
            "attempt failed"
        );
    }

    /// Reports the call's end: `result` is what the caller gets, and
    /// `answered` what an `Ok` of it is (an answer of the vendor's, or of
    /// the cache, the queue or a `with(..)` fallback).
    #[inline(always)]
    pub(crate) fn end<T, E: ContractError>(
        &mut self,
        result: &Result<T, E>,
        answered: CallOutcome,
    ) {
        self.ended = true;
        match result {
            // The success path: answered on the first attempt, counted as
            // that attempt's success; reported only if someone listens.
            Ok(_) if answered == CallOutcome::Ok && self.attempts == 1 => {
                self.endpoint.stats.call_answered();
                if self.started != 0 {
                    self.report(CallOutcome::Ok, None);
                }
            }
            Ok(_) => {
                self.endpoint.stats.call_ended(answered, self.attempts);
                self.report(answered, None);
            }
            Err(error) => {
                let outcome = if self.rejected {
                    CallOutcome::Rejected
                } else {
                    CallOutcome::Error
                };
                self.endpoint.stats.call_ended(outcome, self.attempts);
                self.report(outcome, Some(error));
            }
        }
    }

    /// The call's end, reported: its span's fields and its event.
    #[cold]
    #[inline(never)]
    fn report(&self, outcome: CallOutcome, error: Option<&dyn Failure>) {
        let endpoint = self.endpoint;
        if self.started == 0 && !tracing::enabled!(target: "seawall::call", tracing::Level::INFO) {
            return;
        }
        let error_type = error.map(|error| error.error_type());
        if !self.span.is_disabled() {
            self.span.record("seawall.outcome", outcome.as_str());
            self.span
                .record("seawall.attempts", i64::from(self.attempts));
            if let Some(error) = error {
                self.span.record("error.type", error.error_type());
                self.span
                    .record("otel.status_description", crate::telemetry::scrubbed(error));
            }
            if error.is_some() || matches!(outcome, CallOutcome::Cancelled | CallOutcome::Panicked)
            {
                self.span.record("otel.status_code", "error");
            }
        }
        let duration_ms = (self.started != 0).then(|| {
            let clock = crate::telemetry::clock();
            clock.delta_as_nanos(self.started, clock.raw()) as f64 / 1e6
        });
        let clean = match (outcome, error) {
            (CallOutcome::Ok, _) => self.attempts <= 1,
            // An ignored error is an answer, not a failure.
            (CallOutcome::Error, Some(error)) => error.class() == ErrorClass::Ignored,
            _ => false,
        };
        let message = error.map(|error| crate::telemetry::scrubbed(error));
        let _in_call = self.span.enter();
        macro_rules! ended {
            ($level:expr) => {
                tracing::event!(
                    target: "seawall::call",
                    $level,
                    contract = %endpoint.contract,
                    method = %endpoint.method,
                    outcome = outcome.as_str(),
                    attempts = self.attempts,
                    duration_ms,
                    "error.type" = error_type,
                    error = message.as_deref(),
                    "call ended"
                )
            };
        }
        if clean {
            ended!(tracing::Level::DEBUG);
        } else {
            ended!(tracing::Level::INFO);
        }
    }
}

impl Drop for CallTrace<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.ended {
            self.dropped();
        }
    }
}

impl CallTrace<'_> {
    /// The call's future was dropped before it ended: cancelled by its
    /// caller, or unwound by a panic of the adapter.
    #[cold]
    fn dropped(&mut self) {
        self.ended = true;
        let outcome = if std::thread::panicking() {
            CallOutcome::Panicked
        } else {
            CallOutcome::Cancelled
        };
        self.endpoint.stats.call_ended(outcome, self.attempts);
        self.report(outcome, None);
    }
}

/// A call's final error, as its end reports it.
trait Failure: std::fmt::Display {
    fn class(&self) -> ErrorClass;
    fn error_type(&self) -> &'static str;
}

impl<E: ContractError> Failure for E {
    fn class(&self) -> ErrorClass {
        Classify::class(self)
    }

    fn error_type(&self) -> &'static str {
        error_type_of(self)
    }
}

/// `error.type` for `error`: what it says ([`Classify::error_type`]), else
/// its type's name without its path (`CrmError`).
pub(crate) fn error_type_of<E: Classify>(error: &E) -> &'static str {
    error.error_type().unwrap_or_else(type_name::<E>)
}

fn type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_named_without_its_path_or_parameters() {
        struct Plain;
        struct Generic<T>(T);
        assert_eq!(type_name::<Plain>(), "Plain");
        assert_eq!(type_name::<Generic<std::io::Error>>(), "Generic");
        assert_eq!(type_name::<std::io::Error>(), "Error");
    }
}
