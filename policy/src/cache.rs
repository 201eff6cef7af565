//! The last-known-good cache's policy: how stale an answer may be served,
//! and how many are kept.

use std::time::Duration;

use crate::{Field, PolicyError, check_duration};

/// `fallback = cache(..)`: serve a read's last good answer when the vendor
/// cannot answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    pub(crate) max_stale: Duration,
    pub(crate) capacity: u64,
}

impl CachePolicy {
    /// Serves answers no older than `max_stale`, keeping at most 10 000
    /// entries per method (the least recently used go first).
    pub const fn new(max_stale: Duration) -> Self {
        Self {
            max_stale,
            capacity: 10_000,
        }
    }

    /// How many answers (one per distinct set of arguments) are kept.
    pub const fn with_capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// The oldest answer that may be served.
    pub const fn max_stale(&self) -> Duration {
        self.max_stale
    }

    /// See [`with_capacity`](Self::with_capacity).
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Every rule this cache policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        check_duration(Field::FallbackMaxStale, self.max_stale, errors);
        if self.capacity == 0 {
            errors.push(PolicyError::CacheCapacity);
        }
    }
}
