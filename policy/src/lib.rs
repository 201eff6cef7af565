//! What a valid [seawall](https://docs.rs/seawall) policy is, in one place.
//!
//! A policy is a conscious decision about one vendor call: its timeout, its
//! retries, its circuit breaker, its idempotency. `#[integration(...)]`
//! builds these types at compile time and refuses a policy that breaks a
//! rule, pointing at the key; the runtime builds the same types (by hand
//! today, from configuration later) and applies the same rules through
//! [`Policy::validate`]. Because both use this crate, a policy the compiler
//! accepts is one the runtime accepts, and the other way round.
//!
//! This crate holds no runtime logic and depends on nothing heavier than
//! `humantime` (durations in messages). Users name it through `seawall`.
//! With the feature `tokens` (for `seawall-macros`), `Policy::to_tokens`
//! writes a checked policy as the Rust code that builds it, beside the
//! types so that no key or variant can be left out.
//!
//! ```
//! use std::time::Duration;
//! use seawall_policy::{Kind, Policy, PolicyError, RetryPolicy};
//!
//! let policy = Policy::new(Kind::Read, Duration::from_secs(2))
//!     .with_retry(RetryPolicy::new(3))
//!     .with_deadline(Duration::from_secs(3));
//! // 3 attempts × 2 s + 100 ms + 200 ms of backoff is over 3 s.
//! let errors = policy.violations();
//! assert!(matches!(errors[0], PolicyError::OverDeadline { .. }));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod breaker;
mod budget;
mod bulkhead;
mod cache;
mod class;
mod error;
mod hedge;
mod method;
mod rate;
mod redact;
mod retry;
mod store;
#[cfg(feature = "tokens")]
mod tokens;

use std::time::Duration;

pub use breaker::{
    BreakerPolicy, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MIN_CALLS, DEFAULT_SLOW_RATE,
    DEFAULT_WINDOW, Window,
};
pub use budget::BudgetPolicy;
pub use bulkhead::{
    ADAPTIVE_INITIAL_LIMIT, BulkheadPolicy, DEFAULT_ADAPTIVE_MAX, DEFAULT_ADAPTIVE_MIN,
    DEFAULT_BULKHEAD_MAX_WAIT,
};
pub use cache::CachePolicy;
pub use class::{ClassSet, ErrorClass};
pub use error::{Field, PolicyError};
pub use hedge::{HedgeAfter, HedgePolicy, MAX_HEDGES};
pub use method::{Kind, Policy};
pub use rate::{DEFAULT_RATE_MAX_WAIT, RatePolicy, parse_limit};
pub use redact::Redact;
pub use retry::{Jitter, RetryPolicy, backoff_ceiling};
pub use store::{OnDuplicate, StorePolicy};

/// The most attempts a retry policy may make (the first call included).
///
/// Past a handful, retries stop helping the caller and start hurting the
/// vendor; ten is generous and keeps a worst case easy to reason about.
pub const MAX_ATTEMPTS: u32 = 10;

/// The most half-open probes a breaker may admit at once.
pub const MAX_PROBES: u32 = 1000;

/// The most tokens a retry budget may hold.
pub const MAX_BUDGET_TOKENS: u32 = 1_000_000;

/// The longest duration a policy may hold (about three years), so every
/// figure fits the runtime's clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(100_000_000);

/// The header idempotency keys are sent in unless a contract names another.
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A duration for messages: `1m 30s`, `250ms`.
pub(crate) fn show(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(duration)
}

/// Checks a duration that must be positive and within [`MAX_DURATION`].
pub(crate) fn check_duration(field: Field, duration: Duration, errors: &mut Vec<PolicyError>) {
    if duration.is_zero() {
        errors.push(PolicyError::ZeroDuration(field));
    } else if duration > MAX_DURATION {
        errors.push(PolicyError::TooLong(field, duration));
    }
}

/// Checks a rate that must be in `(0, 1]`.
pub(crate) fn check_rate(field: Field, rate: f64, errors: &mut Vec<PolicyError>) {
    if !(rate > 0.0 && rate <= 1.0) {
        errors.push(PolicyError::Rate(field, rate));
    }
}
