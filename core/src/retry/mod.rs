//! Retries: another attempt for failures that may not happen twice.
//!
//! Only errors their [`Classify`](crate::Classify) implementation calls
//! retryable are retried. Delays grow exponentially from `base` to `cap` and
//! are randomised ([`Jitter`](crate::Jitter)), because clients that failed
//! together and retry after the same fixed delay fail together again: the
//! thundering herd that turns a vendor's brownout into an outage.

//!
//! Attempts alone do not bound the load a client adds: three attempts each
//! can triple a struggling vendor's traffic. A [`RetryBudget`] per
//! integration does: successes earn tokens, retries spend them.

mod backoff;
mod budget;
mod rng;
pub(crate) mod stage;

pub use backoff::Backoff;
pub use budget::RetryBudget;
pub(crate) use rng::RngSource;
