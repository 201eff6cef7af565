//! The cache stage: a read's good answers are kept, and when the vendor is
//! unavailable the last good one, if fresh enough, is served instead.

use crate::ErrorClass;
use crate::cache::LastKnownGood;
use crate::endpoint::Endpoint;
use crate::telemetry::CorrelationId;
use crate::{ContractError, fallback::Answer};

/// Keeps what the cache should of a good answer.
#[inline]
pub(crate) fn keep<R, A: Answer<R>>(shape: &A, cache: &LastKnownGood, key: u128, answer: &R) {
    if let Some((kept, ops)) = shape.kept(answer) {
        (ops.store)(cache, key, kept);
    }
}

/// What a failed read answers: a stale answer when `error` says the
/// vendor is unavailable (retryable or a vendor fault) and the cache has
/// one no older than `max_stale`, else `error`.
pub(crate) async fn serve_stale<R, E, A>(
    shape: &A,
    endpoint: &Endpoint,
    cache: &LastKnownGood,
    key: u128,
    error: E,
    correlation: impl FnOnce() -> CorrelationId,
) -> Result<R, E>
where
    A: Answer<R>,
    E: ContractError,
{
    if !matches!(
        error.class(),
        ErrorClass::Retryable | ErrorClass::VendorFault
    ) {
        return Err(error);
    }
    let Some(ops) = shape.stale_ops() else {
        return Err(error);
    };
    let Some(stale) = (ops.serve)(cache, key).await else {
        endpoint.stats.cache_missed();
        return Err(error);
    };
    let age = stale.age();
    let Some(answer) = shape.stale(stale) else {
        return Err(error);
    };
    endpoint.stats.stale_served();
    if events_enabled() {
        tracing::info!(
            target: "seawall::cache",
            contract = %endpoint.contract,
            method = %endpoint.method,
            outcome = "stale",
            correlation_id = %correlation(),
            age_ms = age.as_secs_f64() * 1000.0,
            error = crate::telemetry::scrubbed(&error),
            "vendor unavailable; serving the last good answer"
        );
    }
    Ok(answer)
}

fn events_enabled() -> bool {
    tracing::enabled!(target: "seawall::cache", tracing::Level::INFO)
}
