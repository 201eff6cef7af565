//! The retry policy: attempts, backoff, jitter, which classes are retried
//! and `max_elapsed`.

use std::time::Duration;

use crate::{ClassSet, ErrorClass, Field, MAX_ATTEMPTS, PolicyError, check_duration};

/// `min(cap, base × 2^retry)`: the delay before jitter of retry number
/// `retry` (0 for the first retry). Saturates instead of overflowing.
pub fn backoff_ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// How a retry loop spreads its attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// A delay drawn uniformly from `0 ..= min(cap, base * 2^n)`: the best at
    /// breaking up a herd of clients that failed together.
    #[default]
    Full,
    /// Half of `min(cap, base * 2^n)` fixed, the other half drawn at random.
    Equal,
    /// `min(cap, random(base ..= previous * 3))`: each delay grows from the
    /// last one actually slept.
    Decorrelated,
    /// Exactly `min(cap, base * 2^n)`; only for tests and vendors that ask
    /// for it.
    None,
}

/// How many attempts one logical call may make, and how far apart.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) on: ClassSet,
}

impl RetryPolicy {
    /// `attempts` in all (the first call included), with the default backoff:
    /// `base` 100 ms, `cap` 5 s, full jitter.
    pub const fn new(attempts: u32) -> Self {
        Self {
            attempts,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            jitter: Jitter::Full,
            max_elapsed: None,
            on: ClassSet::RETRYABLE,
        }
    }

    /// A policy that makes exactly one attempt.
    pub const fn none() -> Self {
        Self::new(1)
    }

    /// The first retry's delay before jitter; each later one doubles it.
    pub const fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest delay between two attempts.
    pub const fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// How delays are randomised.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Starts no new attempt once this long has passed since the call
    /// began (attempts already running are left to their timeout).
    pub const fn with_max_elapsed(mut self, max: Duration) -> Self {
        self.max_elapsed = Some(max);
        self
    }

    /// Which error classes are retried (by default only
    /// [`ErrorClass::Retryable`]).
    pub const fn with_retry_on(mut self, classes: ClassSet) -> Self {
        self.on = classes;
        self
    }

    /// See [`with_max_elapsed`](Self::with_max_elapsed).
    pub const fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// Which error classes are retried.
    pub const fn retry_on(&self) -> ClassSet {
        self.on
    }

    /// Attempts in all, the first call included.
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The first retry's delay before jitter.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay between two attempts.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// How delays are randomised.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The most one logical call can spend sleeping between attempts: the
    /// sum of every retry's delay before jitter.
    pub fn max_total_backoff(&self) -> Duration {
        (0..self.attempts.saturating_sub(1))
            .map(|retry| backoff_ceiling(self.base, self.cap, retry))
            .sum()
    }

    /// Every rule this retry policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            errors.push(PolicyError::Attempts(self.attempts));
        }
        check_duration(Field::RetryBase, self.base, errors);
        check_duration(Field::RetryCap, self.cap, errors);
        if self.cap < self.base {
            errors.push(PolicyError::CapBelowBase {
                base: self.base,
                cap: self.cap,
            });
        }
        if let Some(max) = self.max_elapsed {
            check_duration(Field::RetryMaxElapsed, max, errors);
        }
        if self.on.is_empty() || self.on.contains(ErrorClass::Ignored) {
            errors.push(PolicyError::RetryClasses);
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(3)
    }
}
