//! Policies: the conscious decisions behind every vendor call.
//!
//! The types and their rules live in `seawall-policy`, the one definition
//! of a valid policy: `#[integration(...)]` checks them at compile time, and
//! [`Policy::validate`] applies the same rules at run time (as
//! [`Runtime::endpoint`](crate::Runtime::endpoint) does), with the same
//! limits (for example [`MAX_ATTEMPTS`]).

pub use seawall_policy::{
    ADAPTIVE_INITIAL_LIMIT, BreakerPolicy, BudgetPolicy, BulkheadPolicy, CachePolicy, ClassSet,
    DEFAULT_ADAPTIVE_MAX, DEFAULT_ADAPTIVE_MIN, DEFAULT_BULKHEAD_MAX_WAIT,
    DEFAULT_IDEMPOTENCY_HEADER, DEFAULT_RATE_MAX_WAIT, Field, HedgeAfter, HedgePolicy, Jitter,
    Kind, MAX_ATTEMPTS, MAX_BUDGET_TOKENS, MAX_DURATION, MAX_HEDGES, MAX_PROBES, OnDuplicate,
    Policy, PolicyError, RatePolicy, RetryPolicy, StorePolicy, Window, backoff_ceiling,
};
