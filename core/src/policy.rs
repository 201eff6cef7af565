//! Policies: the conscious decisions behind every vendor call.
//!
//! `#[integration(...)]` checks a policy at compile time and builds one of
//! these; code that drives an [`Endpoint`](crate::Endpoint) by hand builds it
//! with the same rules checked at run time by [`Policy::validate`]. The limits
//! (for example [`MAX_ATTEMPTS`]) are the same in both places.

use std::time::Duration;

/// The most attempts a retry policy may make (the first call included).
///
/// Past a handful, retries stop helping the caller and start hurting the
/// vendor; ten is generous and keeps a worst case easy to reason about.
pub const MAX_ATTEMPTS: u32 = 10;

/// The most half-open probes a breaker may admit at once.
pub const MAX_PROBES: u32 = 1000;

/// The longest duration a policy may hold (about 31 years), so every figure
/// fits the runtime's clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Whether a method reads from or writes to the vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The call changes nothing at the vendor; repeating it is harmless.
    Read,
    /// The call changes something at the vendor.
    Write,
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
    attempts: u32,
    base: Duration,
    cap: Duration,
    jitter: Jitter,
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
            .map(|retry| crate::retry::Backoff::ceiling(self.base, self.cap, retry))
            .sum()
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            return Err(PolicyError::Attempts(self.attempts));
        }
        if self.attempts > 1 {
            if self.base.is_zero() {
                return Err(PolicyError::ZeroDuration("retry base"));
            }
            if self.cap < self.base {
                return Err(PolicyError::CapBelowBase {
                    base: self.base,
                    cap: self.cap,
                });
            }
        }
        Ok(())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(3)
    }
}

/// When a circuit breaker opens, and how it recovers.
///
/// The breaker judges the last `window` calls once at least `min_calls` of
/// them are in; it opens when the share of failures reaches `failure_rate`
/// (inclusive: `0.5` opens at exactly half), stays open for `open_for`, then
/// lets `probes` calls through and closes or re-opens on their failure rate.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    pub(crate) failure_rate: f64,
    pub(crate) window: u32,
    pub(crate) min_calls: u32,
    pub(crate) open_for: Duration,
    pub(crate) probes: u32,
    pub(crate) name: Option<String>,
}

impl BreakerPolicy {
    /// The defaults: `failure_rate` 0.5, `window` 20, `min_calls` 10,
    /// `open_for` 30 s, `probes` 1.
    pub const fn new() -> Self {
        Self {
            failure_rate: 0.5,
            window: 20,
            min_calls: 10,
            open_for: Duration::from_secs(30),
            probes: 1,
            name: None,
        }
    }

    /// The share of failures, in `(0, 1]`, at which the breaker opens.
    pub const fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// How many of the most recent calls are judged.
    pub const fn with_window(mut self, calls: u32) -> Self {
        self.window = calls;
        self
    }

    /// How many calls the window must hold before any rate is judged.
    pub const fn with_min_calls(mut self, calls: u32) -> Self {
        self.min_calls = calls;
        self
    }

    /// How long the breaker stays open before letting probes through.
    pub const fn with_open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// How many calls half-open lets through to test the vendor.
    pub const fn with_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// Shares one breaker among every endpoint that names it.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The share of failures at which the breaker opens.
    pub const fn failure_rate(&self) -> f64 {
        self.failure_rate
    }

    /// How many of the most recent calls are judged.
    pub const fn window(&self) -> u32 {
        self.window
    }

    /// How many calls the window must hold before any rate is judged.
    pub const fn min_calls(&self) -> u32 {
        self.min_calls
    }

    /// How long the breaker stays open before letting probes through.
    pub const fn open_for(&self) -> Duration {
        self.open_for
    }

    /// How many calls half-open lets through.
    pub const fn probes(&self) -> u32 {
        self.probes
    }

    /// The shared name, if the policy names its breaker.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Checks the same rules `#[integration]` checks at compile time.
    ///
    /// # Errors
    ///
    /// [`PolicyError::FailureRate`] for a rate outside `(0, 1]`;
    /// [`PolicyError::Window`] for an empty window;
    /// [`PolicyError::MinCalls`] when `min_calls` is zero or larger than the
    /// window; [`PolicyError::Probes`] for zero probes or more than
    /// [`MAX_PROBES`]; [`PolicyError::ZeroDuration`] for a zero `open_for`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(PolicyError::FailureRate(self.failure_rate));
        }
        if self.window == 0 {
            return Err(PolicyError::Window);
        }
        if self.min_calls == 0 || self.min_calls > self.window {
            return Err(PolicyError::MinCalls {
                min_calls: self.min_calls,
                window: self.window,
            });
        }
        if self.probes == 0 || self.probes > MAX_PROBES {
            return Err(PolicyError::Probes(self.probes));
        }
        check_duration("breaker open_for", self.open_for)
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// The whole policy of one contract method.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    kind: Kind,
    timeout: Duration,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    breaker: Option<BreakerPolicy>,
}

impl Policy {
    /// A policy with a per-attempt `timeout`, one attempt and no breaker.
    pub const fn new(kind: Kind, timeout: Duration) -> Self {
        Self {
            kind,
            timeout,
            deadline: None,
            retry: RetryPolicy::none(),
            breaker: None,
        }
    }

    /// Caps the whole logical call, every attempt and backoff included.
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Retries retryable failures.
    pub const fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Puts a circuit breaker in front of the vendor.
    pub fn with_breaker(mut self, breaker: BreakerPolicy) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Read or write.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The per-attempt timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadline of the whole logical call, if any.
    pub const fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The retry policy (one attempt when the method has none).
    pub const fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The breaker policy, if the method has a breaker.
    pub const fn breaker(&self) -> Option<&BreakerPolicy> {
        self.breaker.as_ref()
    }

    /// The longest one logical call can take when every attempt times out:
    /// `attempts × timeout + every backoff delay before jitter`.
    pub fn worst_case(&self) -> Duration {
        self.timeout
            .saturating_mul(self.retry.attempts)
            .saturating_add(self.retry.max_total_backoff())
    }

    /// Checks the same rules `#[integration]` checks at compile time.
    ///
    /// # Errors
    ///
    /// [`PolicyError::ZeroDuration`] for a zero timeout or deadline;
    /// [`PolicyError::TooLong`] for a duration past [`MAX_DURATION`];
    /// [`PolicyError::Attempts`], [`PolicyError::CapBelowBase`] for a bad
    /// retry policy; the errors of [`BreakerPolicy::validate`]; and
    /// [`PolicyError::OverDeadline`] when the worst case exceeds the deadline.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_duration("timeout", self.timeout)?;
        self.retry.validate()?;
        check_duration("retry base", self.retry.base)?;
        check_duration("retry cap", self.retry.cap)?;
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        if let Some(deadline) = self.deadline {
            check_duration("deadline", deadline)?;
            let worst_case = self.worst_case();
            if worst_case > deadline {
                return Err(PolicyError::OverDeadline {
                    worst_case,
                    deadline,
                });
            }
        }
        Ok(())
    }
}

fn check_duration(what: &'static str, duration: Duration) -> Result<(), PolicyError> {
    if duration.is_zero() {
        Err(PolicyError::ZeroDuration(what))
    } else if duration > MAX_DURATION {
        Err(PolicyError::TooLong(what))
    } else {
        Ok(())
    }
}

/// A policy that breaks one of seawall's rules.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A duration is longer than [`MAX_DURATION`].
    #[error("{0} is longer than seawall's limit of {MAX_DURATION:?}")]
    TooLong(&'static str),
    /// `attempts` is zero or above [`MAX_ATTEMPTS`].
    #[error("retry attempts must be between 1 and {MAX_ATTEMPTS}, not {0}")]
    Attempts(u32),
    /// The backoff cap is below its base.
    #[error("retry cap ({cap:?}) is below its base ({base:?})")]
    CapBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// A breaker failure rate outside `(0, 1]`.
    #[error("breaker failure_rate must be in (0, 1], not {0}")]
    FailureRate(f64),
    /// A breaker window of zero calls.
    #[error("breaker window must hold at least one call")]
    Window,
    /// `min_calls` zero or larger than the window.
    #[error("breaker min_calls ({min_calls}) must be between 1 and the window ({window})")]
    MinCalls {
        /// The minimum number of calls.
        min_calls: u32,
        /// The window's size.
        window: u32,
    },
    /// Zero probes, or more than [`MAX_PROBES`].
    #[error("breaker probes must be between 1 and {MAX_PROBES}, not {0}")]
    Probes(u32),
    /// The worst case of the retry policy exceeds the deadline.
    #[error(
        "worst case {worst_case:?} (attempts × timeout + backoff) exceeds the deadline of {deadline:?}"
    )]
    OverDeadline {
        /// `attempts × timeout + every backoff delay`.
        worst_case: Duration,
        /// The declared deadline.
        deadline: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn worst_case_counts_every_attempt_and_every_backoff() {
        let policy = Policy::new(Kind::Read, MS * 100).with_retry(
            RetryPolicy::new(4)
                .with_base(MS * 10)
                .with_cap(MS * 30)
                .with_jitter(Jitter::None),
        );
        // 4 × 100 ms + (10 + 20 + 30) ms
        assert_eq!(policy.worst_case(), MS * 460);
        assert_eq!(
            policy.clone().with_deadline(MS * 459).validate(),
            Err(PolicyError::OverDeadline {
                worst_case: MS * 460,
                deadline: MS * 459
            })
        );
        assert_eq!(policy.with_deadline(MS * 460).validate(), Ok(()));
    }

    #[test]
    fn runtime_validation_rejects_what_the_macro_rejects() {
        let base = Policy::new(Kind::Read, MS);
        assert_eq!(
            Policy::new(Kind::Read, Duration::ZERO).validate(),
            Err(PolicyError::ZeroDuration("timeout"))
        );
        assert_eq!(
            base.clone().with_retry(RetryPolicy::new(0)).validate(),
            Err(PolicyError::Attempts(0))
        );
        assert_eq!(
            base.clone().with_retry(RetryPolicy::new(11)).validate(),
            Err(PolicyError::Attempts(11))
        );
        assert!(matches!(
            base.clone()
                .with_retry(RetryPolicy::new(2).with_base(MS * 2).with_cap(MS))
                .validate(),
            Err(PolicyError::CapBelowBase { .. })
        ));
        for rate in [0.0, -0.1, 1.01, f64::NAN] {
            assert!(matches!(
                base.clone()
                    .with_breaker(BreakerPolicy::new().with_failure_rate(rate))
                    .validate(),
                Err(PolicyError::FailureRate(_))
            ));
        }
        assert_eq!(
            base.clone()
                .with_breaker(BreakerPolicy::new().with_window(5).with_min_calls(6))
                .validate(),
            Err(PolicyError::MinCalls {
                min_calls: 6,
                window: 5
            })
        );
        assert_eq!(
            base.clone()
                .with_breaker(BreakerPolicy::new().with_probes(0))
                .validate(),
            Err(PolicyError::Probes(0))
        );
        assert_eq!(
            base.with_breaker(BreakerPolicy::new().with_failure_rate(1.0))
                .validate(),
            Ok(())
        );
    }
}
