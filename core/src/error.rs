//! seawall's errors ([`Error`](crate::Error)) and what a contract's own error
//! type must offer to carry them ([`ContractError`](crate::ContractError)).

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use crate::{Classify, ErrorClass};

/// Why seawall ended a call without the adapter's own answer.
///
/// Every contract method's error type converts from it (`E: From<Error>`), so
/// a rejection reaches the caller as a value of the caller's own error type.
/// Nothing in the pipeline panics on a bad vendor response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One attempt took longer than the method's `timeout`.
    #[error("the vendor did not answer within {}", Ms(*after))]
    Timeout {
        /// The per-attempt timeout that elapsed.
        after: Duration,
    },

    /// The circuit breaker rejected the call without calling the vendor.
    #[error("circuit breaker `{breaker}` is open; {}", RetryIn(*retry_in))]
    BreakerOpen {
        /// The breaker's name (`contract.method` unless named in the policy).
        breaker: Arc<str>,
        /// How long until the breaker lets a call through again; `None`
        /// while it is forced open, until an operator resets it.
        retry_in: Option<Duration>,
    },

    /// Every attempt failed with a retryable error: the policy's attempts
    /// ran out, the breaker opened between two attempts, or the call was a
    /// half-open probe (the breaker judges the vendor on separate calls).
    #[error("gave up after {attempts} attempt(s); the last failed with a {class} error: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The class of the last attempt's error.
        class: ErrorClass,
        /// The last attempt's error (also reachable through
        /// [`source`](std::error::Error::source), for downcasting).
        #[source]
        last: Box<dyn StdError + Send + Sync>,
    },

    /// The vendor asked to wait longer before another attempt than this call
    /// may wait: past the backoff `cap`, the deadline or `max_elapsed`. The
    /// caller learns when the vendor will take calls again.
    #[error(
        "the vendor asked to wait {} before another attempt, longer than this call may wait; \
         gave up after {attempts} attempt(s): {last}",
        Ms(*retry_after)
    )]
    RetryAfter {
        /// The vendor's `Retry-After`.
        retry_after: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error (also its `source`).
        #[source]
        last: Box<dyn StdError + Send + Sync>,
    },

    /// The retry budget of the integration is spent: under a brownout,
    /// retries are limited to a share of successful calls (plus a small floor
    /// per second), so the client cannot multiply the vendor's load.
    #[error("retry budget `{budget}` is spent; gave up after {attempts} attempt(s): {last}")]
    RetryBudgetExhausted {
        /// The budget's name (the contract's name unless configured).
        budget: Arc<str>,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error (also its `source`).
        #[source]
        last: Box<dyn StdError + Send + Sync>,
    },

    /// The idempotency key of a write could not be derived: a named value
    /// has no serialized form (for example a map whose keys are not
    /// strings). The vendor was not called.
    #[error("no idempotency key for {contract}.{method}: {reason}")]
    IdempotencyKey {
        /// The contract.
        contract: Arc<str>,
        /// The method.
        method: Arc<str>,
        /// Which value failed, and why.
        reason: String,
    },

    /// An argument of a queued write has no faithful JSON form: a NaN or
    /// infinite float (it would be stored as `null` and fail for good on
    /// delivery), a map whose keys are not strings or numbers, an integer
    /// past JSON's range. Refused at call time: the vendor was not called
    /// and nothing was queued.
    #[error("{contract}.{method} cannot be queued as called: {reason}; the vendor was not called")]
    Unrepresentable {
        /// The contract.
        contract: Arc<str>,
        /// The method.
        method: Arc<str>,
        /// Which argument, where in it, and what it held. (An `Arc<str>`,
        /// like the names: it keeps `Error` at 56 bytes, which every
        /// call's future carries.)
        reason: Arc<str>,
    },

    /// The idempotency store had already recorded this write as failed, and
    /// replays the failure instead of calling the vendor again.
    #[error(
        "replayed from the idempotency store: the first call failed with a {class} error: {message}"
    )]
    Replayed {
        /// The class of the recorded failure.
        class: ErrorClass,
        /// The recorded failure's message.
        message: String,
    },

    /// The same idempotency key arrived with a different payload: a bug in
    /// the key (it leaves out something that makes writes differ) or a
    /// client reusing a key. The vendor was not called.
    #[error("idempotency key {key} was already used with a different payload")]
    IdempotencyConflict {
        /// The key.
        key: String,
    },

    /// A write with the same key is in flight, and the policy says
    /// `concurrent = "reject"` (or, on a runtime shared with a fleet, the
    /// call's deadline passed while it waited for that write on another
    /// replica). The vendor was not called.
    #[error("a write with idempotency key {key} is already in flight")]
    IdempotencyInFlight {
        /// The key.
        key: String,
    },

    /// The state store failed, so seawall could not tell whether this write
    /// already ran. The vendor was not called.
    #[error("the state store failed: {0}")]
    Store(#[from] crate::store::StoreError),

    /// A write with `fallback = queue` could not be delivered, and could not
    /// be queued either: the write-ahead log failed, or its arguments have
    /// no serialized form. The write is neither done nor queued.
    #[error("the write could not be delivered ({last}) nor queued: {reason}")]
    NotQueued {
        /// Why it could not be queued.
        reason: String,
        /// Why it could not be delivered (also its `source`).
        #[source]
        last: Box<dyn StdError + Send + Sync>,
    },

    /// The call's `deadline` passed, counting every attempt and every backoff.
    #[error("the deadline of {} passed after {attempts} attempt(s)", Ms(*deadline))]
    DeadlineExceeded {
        /// The deadline of the whole logical call.
        deadline: Duration,
        /// How many attempts were started before it passed.
        attempts: u32,
    },

    /// The rate limiter had no turn for this call within its `max_wait`
    /// (or the call's deadline), or the vendor's `Retry-After` paused the
    /// contract: refused without calling the vendor.
    #[error(
        "rate limiter `{limiter}` has no turn for this call within its wait; the next is in {}",
        Ms(*retry_in)
    )]
    RateLimited {
        /// The limiter's name (`contract.method` unless named in the
        /// policy), or the contract's for a contract without a limiter that
        /// a vendor's `Retry-After` paused.
        limiter: Arc<str>,
        /// How long until the limiter lets a call through.
        retry_in: Duration,
    },

    /// The bulkhead had no place for this attempt: every place taken and
    /// the queue full, or none within `max_wait` (or the deadline).
    /// Refused without calling the vendor.
    #[error(
        "bulkhead `{bulkhead}` is full: {max} attempt(s) in flight{}",
        if *waited { " and no place came free within the wait" } else { " and its queue full" }
    )]
    BulkheadFull {
        /// The bulkhead's name (`contract.method`).
        bulkhead: Arc<str>,
        /// Its places.
        max: u32,
        /// Whether the call waited in the queue (else the queue was full).
        waited: bool,
    },
}

/// A duration for people: rounded up to the millisecond, so `retry_in` reads
/// `947ms` rather than `946.873215ms`.
struct Ms(Duration);

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0.as_nanos().div_ceil(1_000_000);
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        write!(f, "{:?}", Duration::from_millis(millis))
    }
}

struct RetryIn(Option<Duration>);

impl std::fmt::Display for RetryIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(retry_in) => write!(f, "calls are let through again in {}", Ms(retry_in)),
            None => f.write_str("it is held open until an operator resets it"),
        }
    }
}

/// Seawall's own errors, when they surface inside another integration:
/// timeouts, open breakers and passed deadlines are worth another try later;
/// exhausted retries keep the class of their last error.
impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Timeout { .. } | Error::BreakerOpen { .. } | Error::DeadlineExceeded { .. } => {
                ErrorClass::Retryable
            }
            Error::RetriesExhausted { class, .. } => *class,
            Error::RetryAfter { .. }
            | Error::RetryBudgetExhausted { .. }
            | Error::RateLimited { .. }
            | Error::BulkheadFull { .. } => ErrorClass::Retryable,
            Error::IdempotencyKey { .. }
            | Error::IdempotencyConflict { .. }
            | Error::Unrepresentable { .. } => ErrorClass::Permanent,
            Error::IdempotencyInFlight { .. } | Error::Store(_) | Error::NotQueued { .. } => {
                ErrorClass::Retryable
            }
            Error::Replayed { class, .. } => *class,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RetryAfter { retry_after, .. } => Some(*retry_after),
            Error::BreakerOpen { retry_in, .. } => *retry_in,
            Error::RateLimited { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// The variant in snake case: `"timeout"`, `"breaker_open"`,
    /// `"retries_exhausted"`, …
    fn error_type(&self) -> Option<&'static str> {
        Some(match self {
            Error::Timeout { .. } => "timeout",
            Error::BreakerOpen { .. } => "breaker_open",
            Error::RetriesExhausted { .. } => "retries_exhausted",
            Error::RetryAfter { .. } => "retry_after",
            Error::RetryBudgetExhausted { .. } => "retry_budget_exhausted",
            Error::IdempotencyKey { .. } => "idempotency_key",
            Error::Unrepresentable { .. } => "unrepresentable",
            Error::Replayed { .. } => "replayed",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::IdempotencyInFlight { .. } => "idempotency_in_flight",
            Error::Store(_) => "store",
            Error::NotQueued { .. } => "not_queued",
            Error::DeadlineExceeded { .. } => "deadline_exceeded",
            Error::RateLimited { .. } => "rate_limited",
            Error::BulkheadFull { .. } => "bulkhead_full",
        })
    }
}

/// What a contract method's error type must be.
///
/// seawall hands its own rejections (a timeout, an open breaker) to the
/// caller as `E::from(seawall::Error)`, asks [`Classify`] which errors are
/// worth retrying, and keeps the last one inside
/// [`Error::RetriesExhausted`]; hence the bounds. Implemented for every type
/// that meets them.
///
/// A type that misses any of them is one compile error, at the method's
/// return type, listing all three and how to get each: the blanket impl is
/// `#[diagnostic::do_not_recommend]`, so the compiler reports this trait
/// rather than one error per missing bound.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a contract method",
    label = "the error type of this `Result`",
    note = "a contract method's error type needs all three of:",
    note = "`From<seawall::Error>`, to hand back a timeout or an open breaker as your error: with thiserror, a variant `#[error(transparent)] Seawall(#[from] seawall::Error)`",
    note = "`seawall::Classify`, to know which failures are worth another attempt: `#[derive(seawall::Classify)]`, with `#[classify(..)]` on each variant (`#[classify(delegate)]` on the `seawall::Error` one)",
    note = "`std::error::Error + Send + Sync + 'static`: `#[derive(Debug, thiserror::Error)]`, with fields that are `Send + Sync` and borrow nothing"
)]
pub trait ContractError: From<Error> + Classify + StdError + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<E> ContractError for E where E: From<Error> + Classify + StdError + Send + Sync + 'static {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_numbers_a_reader_needs() {
        let open = Error::BreakerOpen {
            breaker: "crm.account".into(),
            retry_in: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            open.to_string(),
            "circuit breaker `crm.account` is open; calls are let through again in 1.5s"
        );
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            class: ErrorClass::Retryable,
            last: Box::new(Error::Timeout {
                after: Duration::from_secs(2),
            }),
        };
        assert_eq!(
            exhausted.to_string(),
            "gave up after 3 attempt(s); the last failed with a retryable error: the vendor did not answer within 2s"
        );
        let open = Error::BreakerOpen {
            breaker: "crm.account".into(),
            retry_in: Some(Duration::from_nanos(946_873_215)),
        };
        assert!(open.to_string().ends_with("again in 947ms"), "{open}");
        let forced = Error::BreakerOpen {
            breaker: "crm.account".into(),
            retry_in: None,
        };
        assert!(
            forced.to_string().ends_with("until an operator resets it"),
            "{forced}"
        );
        assert!(exhausted.source().is_some());
    }
}

#[cfg(test)]
mod size {
    /// Every call's future carries a `Result<T, E>` whose `E` holds an
    /// `Error`: a variant that grows it past 56 bytes (two variants at the
    /// largest size cost the enum a separate tag) made the success path
    /// 35 instructions longer, measured with callgrind. Box or `Arc` the
    /// fields of a new variant instead.
    #[test]
    fn the_error_stays_at_56_bytes() {
        assert_eq!(std::mem::size_of::<super::Error>(), 56);
    }
}
