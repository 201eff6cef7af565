//! Re-issuing a queued write: its arguments read back from the log, and how
//! the delivery ended, for the drain.

pub use crate::queue::Replayed;
pub use crate::resilient::Dispatch;
pub use crate::wal::QueuedWrite;

use super::Endpoint;
use super::args::{QueuedAnswer, ReplayArg};

/// A boxed, sendable future (what a generated dispatch returns).
pub type BoxFuture<'a, T> = crate::queue::BoxFuture<'a, T>;

/// A stored write's arguments, read back one by one.
#[derive(Debug)]
pub struct Arguments {
    map: serde_json::Map<String, serde_json::Value>,
    redacted: Vec<String>,
}

impl Arguments {
    /// The arguments of `write`.
    ///
    /// # Errors
    ///
    /// A [`Replayed::Undecodable`] when they are not an object.
    pub fn of(write: &QueuedWrite) -> Result<Self, Replayed> {
        match &write.arguments {
            serde_json::Value::Object(map) => Ok(Self {
                map: map.clone(),
                redacted: write.redacted.clone(),
            }),
            other => Err(Replayed::Undecodable(format!(
                "the stored arguments of {}.{} are not an object: {other}",
                write.contract, write.method
            ))),
        }
    }

    /// Takes the argument called `name`.
    ///
    /// # Errors
    ///
    /// A [`Replayed::Undecodable`] when it is missing or of another shape
    /// (the method changed since the write was queued).
    pub fn take<T: ReplayArg>(&mut self, name: &str) -> Result<T, Replayed> {
        let value = self.map.remove(name).ok_or_else(|| {
            Replayed::Undecodable(format!("the stored write has no argument `{name}`"))
        })?;
        serde_json::from_value(value).map_err(|error| {
            // serde's message quotes the value; a redacted one must not be.
            if self.redacted.iter().any(|r| r == name) {
                Replayed::Undecodable(format!(
                    "the stored argument `{name}` (redacted) cannot be read as the type the \
                     method takes now"
                ))
            } else {
                Replayed::Undecodable(format!(
                    "the stored argument `{name}` cannot be read: {error}"
                ))
            }
        })
    }
}

/// The answer of a re-issued write, as it is kept with its ticket: its
/// serialized form (`null` for `()`, or when it has none, which is logged).
///
/// Apart from [`replayed`] so that each bound is reported where it belongs:
/// an answer that cannot be kept at the answer type, an error type that
/// cannot be a contract's at the return type (once, with the call's).
pub fn kept<T, E>(result: Result<crate::Delivery<T>, E>) -> Result<serde_json::Value, E>
where
    T: QueuedAnswer,
{
    match result {
        Ok(crate::Delivery::Done(answer)) => match serde_json::to_value(&answer) {
            Ok(answer) => Ok(answer),
            Err(error) => {
                tracing::warn!(
                    target: "seawall::queue",
                    %error,
                    "a queued write was delivered, but its answer has no serialized form"
                );
                Ok(serde_json::Value::Null)
            }
        },
        // An adapter answers `Done`; a `Queued` from it is taken as done.
        Ok(crate::Delivery::Queued(_)) => Ok(serde_json::Value::Null),
        Err(error) => Err(error),
    }
}

/// How a re-issued write ended, for the drain, given its [`kept`] answer.
pub fn replayed<E>(endpoint: &Endpoint, result: Result<serde_json::Value, E>) -> Replayed
where
    E: crate::ContractError,
{
    match result {
        Ok(answer) => Replayed::Delivered(answer),
        Err(error) => Replayed::Failed {
            class: crate::Classify::class(&error),
            retry_in: endpoint.unavailable_for(&error),
            error: crate::telemetry::scrubbed(&error),
        },
    }
}

/// A dispatch for a method name the contract does not have (any more).
pub fn unknown_method(write: &QueuedWrite) -> Replayed {
    Replayed::Undecodable(format!(
        "contract `{}` has no queued method `{}` (it was renamed or removed since the write was queued)",
        write.contract, write.method
    ))
}
