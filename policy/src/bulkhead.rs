//! The bulkhead's policy: how many calls may be in flight to the vendor at
//! once, and how many more may wait, for how long.

use std::time::Duration;

use crate::{Field, MAX_DURATION, PolicyError};

/// How long a queued caller waits for a place by default.
pub const DEFAULT_BULKHEAD_MAX_WAIT: Duration = Duration::from_secs(1);

/// `bulkhead(max = 20, queue = 50, max_wait = "1s")`: at most `max`
/// attempts in flight to the vendor, `queue` more callers waiting in order
/// for up to `max_wait`, the rest refused at once with
/// `Error::BulkheadFull` without calling the vendor.
///
/// A slow vendor then holds at most `max` of the caller's tasks and
/// connections, instead of every one that calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadPolicy {
    pub(crate) max: u32,
    pub(crate) queue: u32,
    pub(crate) max_wait: Duration,
}

impl BulkheadPolicy {
    /// At most `max` in flight, none waiting (`queue = 0`).
    pub const fn new(max: u32) -> Self {
        Self {
            max,
            queue: 0,
            max_wait: DEFAULT_BULKHEAD_MAX_WAIT,
        }
    }

    /// Lets up to `queue` callers wait, in order, for a place.
    pub const fn with_queue(mut self, queue: u32) -> Self {
        self.queue = queue;
        self
    }

    /// How long a queued caller waits (never past its deadline).
    pub const fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// See [`new`](Self::new).
    pub const fn max(&self) -> u32 {
        self.max
    }

    /// See [`with_queue`](Self::with_queue).
    pub const fn queue(&self) -> u32 {
        self.queue
    }

    /// See [`with_max_wait`](Self::with_max_wait).
    pub const fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Every rule this bulkhead policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        if self.max == 0 {
            errors.push(PolicyError::BulkheadMax);
        }
        if self.queue > 0 && self.max_wait.is_zero() {
            errors.push(PolicyError::BulkheadQueueWithoutWait);
        }
        if self.max_wait > MAX_DURATION {
            errors.push(PolicyError::TooLong(Field::BulkheadMaxWait, self.max_wait));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_place_at_all_or_a_queue_that_never_waits_is_refused() {
        let mut errors = Vec::new();
        BulkheadPolicy::new(0)
            .with_queue(5)
            .with_max_wait(Duration::ZERO)
            .check(&mut errors);
        assert_eq!(
            errors,
            [
                PolicyError::BulkheadMax,
                PolicyError::BulkheadQueueWithoutWait
            ]
        );
        let mut errors = Vec::new();
        BulkheadPolicy::new(20).with_queue(50).check(&mut errors);
        assert!(errors.is_empty());
    }
}
