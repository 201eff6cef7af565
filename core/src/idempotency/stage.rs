//! The idempotency stage: with `idempotent(store)`, a keyed write runs at
//! most once per key. A completed key replays its recorded outcome, a key
//! in flight waits for it (or is rejected), a key with another payload is a
//! conflict, and a new key runs the rest of the pipeline and records what
//! it completed with.

use std::future::Future;

use serde_json::Value;

use crate::endpoint::Endpoint;
use crate::idempotency::{Begin, IdempotencyKey, RecordedOutcome, StoredOutcome};
use crate::{ContractError, Error, ErrorClass};

/// How the idempotency store sees a method's answer `R`. As with
/// [`Answer`](crate::fallback::Answer), the bounds are checked where the
/// generated code makes it ([`stored`]), once.
pub trait Record<R> {
    /// How to record and replay answers, when the method records them.
    fn ops(&self) -> Option<&RecordOps<R>>;
}

/// How answers of one type are recorded and read back.
pub struct RecordOps<R> {
    recorded: fn(&R) -> Result<Value, String>,
    replayed: fn(Value) -> Result<R, String>,
}

impl<R> std::fmt::Debug for RecordOps<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordOps")
    }
}

/// A method without `idempotent(store)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotStored;

impl<R> Record<R> for NotStored {
    #[inline]
    fn ops(&self) -> Option<&RecordOps<R>> {
        None
    }
}

/// A method with `idempotent(store)`, answering `R`.
#[derive(Debug)]
pub struct Stored<R>(RecordOps<R>);

/// The record shape of a method with `idempotent(store)`; `R`'s bound is
/// checked where the generated code calls it.
pub fn stored<R: StoredOutcome>() -> Stored<R> {
    Stored(RecordOps {
        recorded: |answer| crate::faithful::to_value(answer),
        replayed: |value| serde_json::from_value(value).map_err(|error| error.to_string()),
    })
}

impl<R> Record<R> for Stored<R> {
    fn ops(&self) -> Option<&RecordOps<R>> {
        Some(&self.0)
    }
}

/// Runs `call` (the rest of the pipeline) through the endpoint's
/// idempotency store under `key`, whose whole payload is `fingerprint`.
/// A wait for a duplicate on another replica ends at `until` (the call's
/// deadline, if it has one).
///
/// # Errors
///
/// Those of `call`; [`Error::Replayed`] for a recorded failure;
/// [`Error::IdempotencyConflict`], [`Error::IdempotencyInFlight`] or
/// [`Error::Store`] when the vendor was not called.
pub(crate) async fn run<T, E, Fut>(
    ops: &RecordOps<T>,
    endpoint: &Endpoint,
    key: &IdempotencyKey,
    fingerprint: &str,
    until: Option<tokio::time::Instant>,
    call: Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: ContractError,
{
    let (Some(store), Some(policy)) = (
        &endpoint.store,
        endpoint.tuning.compiled.idempotency_store(),
    ) else {
        return call.await;
    };
    let mut guard = match store.begin(key.as_str(), fingerprint, policy, until).await {
        Err(error) => return Err(E::from(Error::Store(error))),
        Ok(Begin::Conflict) => {
            return Err(E::from(Error::IdempotencyConflict {
                key: key.to_string(),
            }));
        }
        Ok(Begin::Rejected) => {
            return Err(E::from(Error::IdempotencyInFlight {
                key: key.to_string(),
            }));
        }
        Ok(Begin::Completed(record)) => {
            tracing::debug!(
                target: "seawall::idempotency",
                contract = %endpoint.contract,
                method = %endpoint.method,
                %key,
                "replaying a completed write"
            );
            return match record.outcome {
                RecordedOutcome::Value(value) => (ops.replayed)(value)
                    .map_err(|reason| E::from(Error::Store(crate::StoreError::Record(reason)))),
                RecordedOutcome::Failure { class, message } => Err(E::from(Error::Replayed {
                    class: ErrorClass::from_name(&class).unwrap_or(ErrorClass::Permanent),
                    message,
                })),
            };
        }
        Ok(Begin::Started(guard)) => guard,
    };
    let result = call.await;
    let outcome = match &result {
        // An answer JSON cannot hold faithfully is not recorded: a repeat
        // calls the vendor again rather than replay a `null`.
        Ok(value) => match (ops.recorded)(value) {
            Ok(value) => Some(RecordedOutcome::Value(value)),
            Err(reason) => {
                tracing::warn!(
                    target: "seawall::idempotency",
                    contract = %endpoint.contract,
                    method = %endpoint.method,
                    %key,
                    %reason,
                    "the vendor's answer cannot be recorded faithfully; a repeat will call the vendor again"
                );
                None
            }
        },
        Err(error) if policy.replay_failures() && error.class() == ErrorClass::Permanent => {
            Some(RecordedOutcome::Failure {
                class: ErrorClass::Permanent.as_str().to_owned(),
                message: crate::telemetry::scrubbed(&error),
            })
        }
        Err(_) => None,
    };
    if let Some(outcome) = outcome
        && let Err(error) = guard.record(fingerprint, outcome, policy.retention()).await
    {
        // The write happened; only the record of it is lost, so the caller
        // still gets the vendor's answer.
        tracing::warn!(
            target: "seawall::idempotency",
            contract = %endpoint.contract,
            method = %endpoint.method,
            %key,
            %error,
            "could not record a completed write; a repeat will call the vendor again"
        );
    }
    guard.finish().await;
    result
}
