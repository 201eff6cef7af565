//! The bulkhead's policy: how many calls may be in flight to the vendor at
//! once (a fixed number, or a limit that adapts to the vendor's latency),
//! and how many more may wait, for how long.

use std::time::Duration;

use crate::{Field, MAX_DURATION, PolicyError};

/// How long a queued caller waits for a place by default.
pub const DEFAULT_BULKHEAD_MAX_WAIT: Duration = Duration::from_secs(1);

/// An adaptive bulkhead's ceiling when it names none: more than a hundred
/// attempts in flight to one vendor from one process is rarely what the
/// vendor meant to allow.
pub const DEFAULT_ADAPTIVE_MAX: u32 = 100;

/// An adaptive bulkhead's floor when it names none: one attempt at a time
/// still measures the vendor.
pub const DEFAULT_ADAPTIVE_MIN: u32 = 1;

/// Where an adaptive bulkhead's limit starts (within `min..=max`).
pub const ADAPTIVE_INITIAL_LIMIT: u32 = 20;

/// `bulkhead(max = 20, queue = 50, max_wait = "1s")`: at most `max`
/// attempts in flight to the vendor, `queue` more callers waiting in order
/// for up to `max_wait`, the rest refused at once with
/// `Error::BulkheadFull` without calling the vendor.
///
/// `bulkhead(adaptive, min = 2, max = 50)`: the same, with a limit that
/// follows the vendor's latency between `min` and `max` (the runtime's
/// `seawall::bulkhead` says how).
///
/// A slow vendor then holds at most `max` of the caller's tasks and
/// connections, instead of every one that calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadPolicy {
    pub(crate) max: u32,
    pub(crate) queue: u32,
    pub(crate) max_wait: Duration,
    pub(crate) adaptive: bool,
    pub(crate) min: Option<u32>,
}

impl BulkheadPolicy {
    /// At most `max` in flight, none waiting (`queue = 0`).
    pub const fn new(max: u32) -> Self {
        Self {
            max,
            queue: 0,
            max_wait: DEFAULT_BULKHEAD_MAX_WAIT,
            adaptive: false,
            min: None,
        }
    }

    /// An adaptive limit between [`DEFAULT_ADAPTIVE_MIN`] and
    /// [`DEFAULT_ADAPTIVE_MAX`], none waiting (`queue = 0`).
    pub const fn adaptive() -> Self {
        Self {
            adaptive: true,
            ..Self::new(DEFAULT_ADAPTIVE_MAX)
        }
    }

    /// The most in flight: the places of a fixed bulkhead, the ceiling of
    /// an adaptive one.
    pub const fn with_max(mut self, max: u32) -> Self {
        self.max = max;
        self
    }

    /// The adaptive limit's floor (only for an adaptive bulkhead).
    pub const fn with_min(mut self, min: u32) -> Self {
        self.min = Some(min);
        self
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

    /// See [`new`](Self::new) and [`with_max`](Self::with_max).
    pub const fn max(&self) -> u32 {
        self.max
    }

    /// Whether the limit adapts ([`adaptive`](Self::adaptive)).
    pub const fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// The adaptive limit's floor: [`with_min`](Self::with_min), else
    /// [`DEFAULT_ADAPTIVE_MIN`].
    pub const fn min(&self) -> u32 {
        match self.min {
            Some(min) => min,
            None => DEFAULT_ADAPTIVE_MIN,
        }
    }

    /// The places at the start: `max` for a fixed bulkhead;
    /// [`ADAPTIVE_INITIAL_LIMIT`] within `min..=max` for an adaptive one.
    pub const fn initial_limit(&self) -> u32 {
        if !self.adaptive {
            return self.max;
        }
        let mut limit = ADAPTIVE_INITIAL_LIMIT;
        if limit > self.max {
            limit = self.max;
        }
        if limit < self.min() {
            limit = self.min();
        }
        limit
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
        match self.min {
            Some(_) if !self.adaptive => errors.push(PolicyError::BulkheadMinWithoutAdaptive),
            Some(0) => errors.push(PolicyError::BulkheadMinZero),
            Some(min) if self.max > 0 && min > self.max => {
                errors.push(PolicyError::BulkheadMinOverMax { min, max: self.max });
            }
            _ => {}
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

    #[test]
    fn an_adaptive_floor_is_above_zero_and_not_above_the_ceiling() {
        let rules = |policy: BulkheadPolicy| {
            let mut errors = Vec::new();
            policy.check(&mut errors);
            errors
        };
        assert_eq!(
            rules(BulkheadPolicy::adaptive().with_min(0)),
            [PolicyError::BulkheadMinZero]
        );
        assert_eq!(
            rules(BulkheadPolicy::adaptive().with_min(60).with_max(50)),
            [PolicyError::BulkheadMinOverMax { min: 60, max: 50 }]
        );
        assert_eq!(
            rules(BulkheadPolicy::adaptive().with_max(0)),
            [PolicyError::BulkheadMax]
        );
        assert_eq!(
            rules(BulkheadPolicy::new(20).with_min(2)),
            [PolicyError::BulkheadMinWithoutAdaptive]
        );
        assert!(rules(BulkheadPolicy::adaptive().with_min(2).with_max(50)).is_empty());
    }

    #[test]
    fn an_adaptive_limit_starts_at_twenty_within_its_bounds() {
        assert_eq!(BulkheadPolicy::new(7).initial_limit(), 7);
        assert_eq!(BulkheadPolicy::adaptive().initial_limit(), 20);
        assert_eq!(BulkheadPolicy::adaptive().with_max(5).initial_limit(), 5);
        assert_eq!(BulkheadPolicy::adaptive().with_min(30).initial_limit(), 30);
    }
}
