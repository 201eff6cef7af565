//! The runtime behind [seawall](https://docs.rs/seawall): the state and the
//! call pipeline that `#[contract]` wrappers run every vendor call through.
//!
//! Users name the `seawall` facade crate, not this one; everything public here
//! is re-exported there. The pipeline for one logical call is
//!
//! ```text
//! fallback           cache (reads) · queue to the write-ahead log (writes) · your function
//! └─ idempotency     key derived once; the store replays completed writes
//!    └─ retry        attempts, exponential backoff with jitter, deadline, budget
//!       └─ breaker   reject at once when open; half-open probes; record outcomes
//!          └─ timeout   per attempt
//!             └─ the adapter's call
//! ```
//!
//! Retry wraps the breaker, so every attempt is recorded and an open breaker
//! ends a retry loop at once. Each piece lives in its own module and can be
//! read (and used) on its own.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "embedded", feature = "postgres"))]
pub mod admin;
pub mod breaker;
pub mod bulkhead;
pub mod cache;
mod classify;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod endpoint;
mod error;
mod event;
mod faithful;
mod fallback;
#[cfg(feature = "redis")]
pub mod fleet;
pub mod hedge;
#[cfg(feature = "http")]
pub mod http;
pub mod idempotency;
#[cfg(feature = "mock")]
pub mod mock;
pub mod overrides;
mod pipeline;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
pub mod rate;
mod resilient;
pub mod retry;
mod runtime;
mod seal;
mod store;
pub mod telemetry;
mod timeout;
mod tunable;
mod unwind;
pub mod wal;

pub use breaker::{Breaker, BreakerMetrics, BreakerState};
pub use cache::Cached;
pub use classify::{Classify, ErrorClass};
pub use endpoint::Endpoint;
pub use error::{ContractError, Error};
pub use event::{
    BreakerRateCrossed, BreakerTransition, DeadLettered, Delivered, Event, FleetChanged, OpenedBy,
    PostgresChanged, Queued, StoreChanged,
};
pub use policy::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, CachePolicy, ClassSet, HedgeAfter, HedgePolicy,
    Jitter, Kind, OnDuplicate, Policy, PolicyError, RatePolicy, RetryPolicy, StorePolicy, Window,
};
pub use queue::Delivery;
pub use queue::transaction::{Outbox, OutboxConnection};
pub use resilient::Resilient;
pub use retry::RetryBudget;
pub use runtime::{DEFAULT_ORPHAN_GRACE, DEFAULT_SETTLED_RETENTION, Runtime, RuntimeBuilder};
#[cfg(feature = "sealing")]
pub use seal::SealingKey;
pub use store::StoreError;
pub use store::Swept;

#[doc(hidden)]
pub mod __private_v1;
