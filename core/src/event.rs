//! Events the runtime reports to subscribers (`Runtime::subscribe`): breaker
//! transitions and rates, queued, delivered and dead-lettered writes, store
//! changes.

use std::sync::{Arc, RwLock};

use crate::BreakerState;
use crate::wal::Ticket;

/// Something the runtime reports to its subscribers (see
/// [`Runtime::subscribe`](crate::Runtime::subscribe)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A circuit breaker changed state.
    Breaker(BreakerTransition),
    /// A metrics-only circuit breaker's rate reached its threshold: the
    /// breaker would have opened. Reported once per crossing.
    BreakerRate(BreakerRateCrossed),
    /// A write with `fallback = queue` could not be delivered and was
    /// queued durably.
    Queued(Queued),
    /// The drain delivered a queued write.
    Delivered(Delivered),
    /// The vendor refused a queued write for good (or its stored arguments
    /// could no longer be read): it is kept as a dead letter.
    DeadLetter(DeadLettered),
    /// An endpoint's error rate jumped against its own baseline.
    ErrorRateChanged(crate::telemetry::ErrorRateChanged),
    /// The embedded store failed to write (a full disk) and is degraded, or
    /// was reopened and accepts writes again.
    Store(StoreChanged),
    /// The fleet's store (Redis) stopped answering, and the runtime runs on
    /// local state; or it answers again.
    Fleet(FleetChanged),
    /// The PostgreSQL database stopped answering (keyed writes with a
    /// store are refused meanwhile, or run locally if told to); or it
    /// answers again.
    Postgres(PostgresChanged),
    /// An operator's overrides for a method were refused (a rule broken, a
    /// stage it does not declare): its compiled policy applies
    /// (`RuntimeBuilder::overrides`).
    OverridesRefused(crate::overrides::MethodOverrides),
    /// A reload of the overrides applied, or was refused and changed
    /// nothing ([`Runtime::reload`](crate::Runtime::reload)).
    OverridesReloaded(crate::overrides::ReloadStatus),
}

/// The PostgreSQL database's availability changed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresChanged {
    /// Whether it answers now.
    pub available: bool,
    /// The error that made it unavailable, or how it came back.
    pub detail: String,
}

/// The fleet store's availability changed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FleetChanged {
    /// Whether it answers now.
    pub available: bool,
    /// The error that made it unavailable, or how it came back.
    pub detail: String,
}

/// The embedded store's health changed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreChanged {
    /// The database file.
    pub path: std::path::PathBuf,
    /// Whether it is degraded now (appends fail at once).
    pub degraded: bool,
    /// The error that degraded it, or how it recovered.
    pub detail: String,
}

/// A write queued in the write-ahead log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Queued {
    /// The contract.
    pub contract: Arc<str>,
    /// The method.
    pub method: String,
    /// Its place in the log.
    pub ticket: Ticket,
    /// Its idempotency key.
    pub key: String,
}

/// A queued write, delivered.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Delivered {
    /// The contract.
    pub contract: Arc<str>,
    /// The method.
    pub method: String,
    /// Its place in the log.
    pub ticket: Ticket,
    /// Its idempotency key.
    pub key: String,
    /// The vendor's answer, serialized.
    pub answer: serde_json::Value,
}

/// A queued write the vendor refused for good.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLettered {
    /// The contract.
    pub contract: Arc<str>,
    /// The method.
    pub method: String,
    /// Its place in the log.
    pub ticket: Ticket,
    /// Its idempotency key.
    pub key: String,
    /// Why it was refused.
    pub error: String,
}

/// A metrics-only breaker's rate reaching its threshold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BreakerRateCrossed {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The share of failures in the window.
    pub failure_rate: f64,
    /// The share of slow calls in the window.
    pub slow_rate: f64,
    /// When, on tokio's clock.
    pub at: tokio::time::Instant,
}

/// A circuit breaker's change of state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BreakerTransition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state it left.
    pub from: BreakerState,
    /// The state it entered.
    pub to: BreakerState,
    /// When, on tokio's clock.
    pub at: tokio::time::Instant,
    /// For a closed breaker that opened on its own window: what the window
    /// held (`None` for other transitions, and for a breaker opened by its
    /// fleet or by an operator).
    pub opened_by: Option<OpenedBy>,
}

/// What a closed breaker's window held when it opened.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct OpenedBy {
    /// Calls in the window (attempts, with retries).
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
    /// `failures / calls`.
    pub failure_rate: f64,
    /// `slow_calls / calls`.
    pub slow_rate: f64,
    /// Failed calls in a row, up to the one that opened it.
    pub consecutive_failures: u64,
}

type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

/// The subscribers of one runtime. Read only when something happens (a state
/// change), never on a call's success path.
#[derive(Default)]
pub(crate) struct Subscribers {
    hooks: RwLock<Vec<Hook>>,
}

impl Subscribers {
    pub(crate) fn add(&self, hook: Hook) {
        self.hooks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(hook);
    }

    pub(crate) fn emit(&self, event: &Event) {
        // Clone the list so a hook may subscribe or emit without deadlocking.
        let hooks = self
            .hooks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for hook in hooks {
            hook(event);
        }
    }
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.hooks.read().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("Subscribers").field("hooks", &n).finish()
    }
}
