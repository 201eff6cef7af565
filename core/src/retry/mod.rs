//! Retries: another attempt for failures that may not happen twice.
//!
//! Only errors their [`Classify`](crate::Classify) implementation calls
//! retryable are retried. Delays grow exponentially from `base` to `cap` and
//! are randomised ([`Jitter`](crate::Jitter)), because clients that failed
//! together and retry after the same fixed delay fail together again: the
//! thundering herd that turns a vendor's brownout into an outage.

mod backoff;

pub use backoff::Backoff;
