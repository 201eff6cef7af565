//! The idempotency store's policy: retention, replayed failures, and what
//! a duplicate in flight does.

use std::time::Duration;

use crate::{Field, PolicyError, check_duration};

/// What a second call with a key already in flight does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OnDuplicate {
    /// Waits for the first call and returns its outcome.
    #[default]
    Wait,
    /// Fails at once with `Error::IdempotencyInFlight`.
    Reject,
}

/// How a write uses the idempotency store.
#[derive(Clone, Debug, PartialEq)]
pub struct StorePolicy {
    pub(crate) retention: Duration,
    pub(crate) replay_failures: bool,
    pub(crate) on_duplicate: OnDuplicate,
}

impl StorePolicy {
    /// Retention 24 hours (as Stripe keeps keys), permanent failures replayed
    /// (as Stripe does), duplicates in flight wait.
    pub const fn new() -> Self {
        Self {
            retention: Duration::from_secs(24 * 60 * 60),
            replay_failures: true,
            on_duplicate: OnDuplicate::Wait,
        }
    }

    /// How long a completed outcome is replayed.
    pub const fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Whether a permanent failure is recorded and replayed.
    pub const fn with_replay_failures(mut self, replay: bool) -> Self {
        self.replay_failures = replay;
        self
    }

    /// What a duplicate in flight does.
    pub const fn with_on_duplicate(mut self, on_duplicate: OnDuplicate) -> Self {
        self.on_duplicate = on_duplicate;
        self
    }

    /// See [`with_retention`](Self::with_retention).
    pub const fn retention(&self) -> Duration {
        self.retention
    }

    /// See [`with_replay_failures`](Self::with_replay_failures).
    pub const fn replay_failures(&self) -> bool {
        self.replay_failures
    }

    /// See [`with_on_duplicate`](Self::with_on_duplicate).
    pub const fn on_duplicate(&self) -> OnDuplicate {
        self.on_duplicate
    }

    /// Every rule this store policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        check_duration(Field::StoreRetention, self.retention, errors);
    }
}

impl Default for StorePolicy {
    fn default() -> Self {
        Self::new()
    }
}
