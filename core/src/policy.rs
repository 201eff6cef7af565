//! Policies: the conscious decisions behind every vendor call.
//!
//! `#[integration(...)]` checks a policy at compile time and builds one of
//! these; code that drives an [`Endpoint`](crate::Endpoint) by hand builds it
//! with the same rules checked at run time by [`Policy::validate`]. The limits
//! (for example [`MAX_ATTEMPTS`]) are the same in both places.

use std::time::Duration;

use crate::ErrorClass;
use crate::idempotency::StorePolicy;
use crate::retry::BudgetPolicy;

/// The most attempts a retry policy may make (the first call included).
///
/// Past a handful, retries stop helping the caller and start hurting the
/// vendor; ten is generous and keeps a worst case easy to reason about.
pub const MAX_ATTEMPTS: u32 = 10;

/// The most half-open probes a breaker may admit at once.
pub const MAX_PROBES: u32 = 1000;

/// The longest duration a policy may hold (about three years), so every
/// figure fits the runtime's clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(100_000_000);

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
    max_elapsed: Option<Duration>,
    on: ClassSet,
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
        if let Some(max) = self.max_elapsed {
            check_duration("retry max_elapsed", max)?;
        }
        if self.on.is_empty() || self.on.contains(ErrorClass::Ignored) {
            return Err(PolicyError::RetryClasses);
        }
        Ok(())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(3)
    }
}

/// Which recent calls a breaker judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last `n` calls, however long ago they were made. Judges a
    /// low-traffic endpoint on its few calls, and costs no clock read.
    Calls(u32),
    /// The calls of the last stretch of time, in ten buckets of a tenth of
    /// it each. Forgets an old burst of failures even when traffic stops.
    Time(Duration),
}

/// A set of error classes: which ones a retry loop retries, or which ones a
/// breaker counts as failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassSet(u8);

impl ClassSet {
    /// Retryable errors only: what a retry loop retries by default.
    pub const RETRYABLE: Self = Self(Self::bit(ErrorClass::Retryable));

    /// Retryable errors and vendor faults: what a breaker counts as failures
    /// by default. A `503`, a `500`, a timeout or a refused connection says
    /// the vendor is unhealthy; a `404` or a `422` says the request was wrong
    /// and the vendor healthy.
    pub const FAILURES: Self =
        Self(Self::bit(ErrorClass::Retryable) | Self::bit(ErrorClass::VendorFault));

    const fn bit(class: ErrorClass) -> u8 {
        match class {
            ErrorClass::Retryable => 1,
            ErrorClass::VendorFault => 2,
            ErrorClass::Permanent => 4,
            ErrorClass::Ignored => 8,
        }
    }

    /// Exactly these classes.
    pub fn of(classes: impl IntoIterator<Item = ErrorClass>) -> Self {
        Self(
            classes
                .into_iter()
                .fold(0, |bits, class| bits | Self::bit(class)),
        )
    }

    /// Whether `class` is in the set.
    pub const fn contains(self, class: ErrorClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// When a circuit breaker opens, and how it recovers.
///
/// The breaker judges the calls in its [`Window`] once at least `min_calls`
/// of them are in; it opens when the share of failures reaches
/// `failure_rate`, or the share of calls slower than `slow` reaches
/// `slow_rate` (both inclusive: `0.5` opens at exactly half). It stays open
/// for `open_for` (doubling on each consecutive re-open up to
/// `open_for_max`, when that is set), then lets `probes` calls through and
/// closes or re-opens on their rates alone. Probes that have not all
/// reported after `half_open_max` are treated as failed.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    failure_rate: f64,
    window: Window,
    min_calls: u32,
    open_for: Duration,
    open_for_max: Option<Duration>,
    probes: u32,
    half_open_max: Duration,
    slow: Option<Duration>,
    slow_rate: f64,
    failure_classes: ClassSet,
    name: Option<String>,
}

impl BreakerPolicy {
    /// The defaults: `failure_rate` 0.5 over a window of the last 20 calls,
    /// `min_calls` 10, `open_for` 30 s (not growing), `probes` 1,
    /// `half_open_max` 60 s, no slow-call detection (`slow_rate` 0.5 once
    /// `slow` is set), failures are retryable errors and vendor faults.
    pub const fn new() -> Self {
        Self {
            failure_rate: 0.5,
            window: Window::Calls(20),
            min_calls: 10,
            open_for: Duration::from_secs(30),
            open_for_max: None,
            probes: 1,
            half_open_max: Duration::from_secs(60),
            slow: None,
            slow_rate: 0.5,
            failure_classes: ClassSet::FAILURES,
            name: None,
        }
    }

    /// The share of failures, in `(0, 1]`, at which the breaker opens.
    pub const fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Judges the last `calls` calls.
    pub const fn with_window(mut self, calls: u32) -> Self {
        self.window = Window::Calls(calls);
        self
    }

    /// Judges the calls of the last `duration`.
    pub const fn with_time_window(mut self, duration: Duration) -> Self {
        self.window = Window::Time(duration);
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

    /// Doubles `open_for` on each consecutive re-open (probes failed), up to
    /// `max`; back to `open_for` once the breaker closes.
    pub const fn with_open_for_max(mut self, max: Duration) -> Self {
        self.open_for_max = Some(max);
        self
    }

    /// How many calls half-open lets through to test the vendor.
    pub const fn with_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// How long half-open waits for its probes before treating the missing
    /// ones as failed and opening again.
    pub const fn with_half_open_max(mut self, duration: Duration) -> Self {
        self.half_open_max = duration;
        self
    }

    /// Counts calls that take `threshold` or longer as slow, even when they
    /// succeed.
    pub const fn with_slow(mut self, threshold: Duration) -> Self {
        self.slow = Some(threshold);
        self
    }

    /// The share of slow calls, in `(0, 1]`, at which the breaker opens.
    pub const fn with_slow_rate(mut self, rate: f64) -> Self {
        self.slow_rate = rate;
        self
    }

    /// Which error classes count as failures.
    pub const fn with_failure_classes(mut self, classes: ClassSet) -> Self {
        self.failure_classes = classes;
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

    /// Which calls are judged.
    pub const fn window(&self) -> Window {
        self.window
    }

    /// How many calls the window must hold before any rate is judged.
    pub const fn min_calls(&self) -> u32 {
        self.min_calls
    }

    /// How long the breaker stays open (the first time in a row).
    pub const fn open_for(&self) -> Duration {
        self.open_for
    }

    /// The cap of a growing open duration, if it grows.
    pub const fn open_for_max(&self) -> Option<Duration> {
        self.open_for_max
    }

    /// How many calls half-open lets through.
    pub const fn probes(&self) -> u32 {
        self.probes
    }

    /// How long half-open waits for its probes.
    pub const fn half_open_max(&self) -> Duration {
        self.half_open_max
    }

    /// The slow-call threshold, if slow calls are detected.
    pub const fn slow(&self) -> Option<Duration> {
        self.slow
    }

    /// The share of slow calls at which the breaker opens.
    pub const fn slow_rate(&self) -> f64 {
        self.slow_rate
    }

    /// Which error classes count as failures.
    pub const fn failure_classes(&self) -> ClassSet {
        self.failure_classes
    }

    /// The shared name, if the policy names its breaker.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How long the breaker stays open after `reopens` consecutive re-opens.
    pub fn open_duration(&self, reopens: u32) -> Duration {
        match self.open_for_max {
            None => self.open_for,
            Some(max) => {
                let factor = 1u32.checked_shl(reopens).unwrap_or(u32::MAX);
                self.open_for.saturating_mul(factor).min(max)
            }
        }
    }

    /// Checks the same rules `#[integration]` checks at compile time.
    ///
    /// # Errors
    ///
    /// [`PolicyError::FailureRate`] for a rate outside `(0, 1]` (either
    /// rate); [`PolicyError::Window`] for an empty window;
    /// [`PolicyError::MinCalls`] when `min_calls` is zero or larger than a
    /// count window; [`PolicyError::Probes`] for zero probes or more than
    /// [`MAX_PROBES`]; [`PolicyError::ZeroDuration`] or
    /// [`PolicyError::TooLong`] for a bad duration;
    /// [`PolicyError::OpenForMax`] for a cap below `open_for`;
    /// [`PolicyError::FailureClasses`] for an empty set of failure classes or
    /// one that lists `Ignored`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for rate in [self.failure_rate, self.slow_rate] {
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(PolicyError::FailureRate(rate));
            }
        }
        match self.window {
            Window::Calls(0) => return Err(PolicyError::Window),
            Window::Calls(calls) if self.min_calls > calls => {
                return Err(PolicyError::MinCalls {
                    min_calls: self.min_calls,
                    window: calls,
                });
            }
            Window::Calls(_) => {}
            Window::Time(duration) => check_duration("breaker window", duration)?,
        }
        if self.min_calls == 0 {
            return Err(PolicyError::MinCalls {
                min_calls: 0,
                window: match self.window {
                    Window::Calls(calls) => calls,
                    Window::Time(_) => u32::MAX,
                },
            });
        }
        if self.probes == 0 || self.probes > MAX_PROBES {
            return Err(PolicyError::Probes(self.probes));
        }
        check_duration("breaker open_for", self.open_for)?;
        if let Some(max) = self.open_for_max {
            check_duration("breaker open_for_max", max)?;
            if max < self.open_for {
                return Err(PolicyError::OpenForMax {
                    open_for: self.open_for,
                    max,
                });
            }
        }
        check_duration("breaker half_open_max", self.half_open_max)?;
        if let Some(slow) = self.slow {
            check_duration("breaker slow", slow)?;
        }
        if self.failure_classes.contains(ErrorClass::Ignored) || self.failure_classes.is_empty() {
            return Err(PolicyError::FailureClasses);
        }
        Ok(())
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
    budget: Option<BudgetPolicy>,
    idempotency_header: std::borrow::Cow<'static, str>,
    store: Option<StorePolicy>,
}

impl Policy {
    /// A policy with a per-attempt `timeout`, one attempt, no breaker, and
    /// the default retry budget (which matters once retries are on).
    pub const fn new(kind: Kind, timeout: Duration) -> Self {
        Self {
            kind,
            timeout,
            deadline: None,
            retry: RetryPolicy::none(),
            breaker: None,
            budget: Some(BudgetPolicy::new()),
            idempotency_header: std::borrow::Cow::Borrowed(crate::idempotency::DEFAULT_HEADER),
            store: None,
        }
    }

    /// Records this write's completed outcomes in the runtime's idempotency
    /// store and replays them for repeats of its key (see
    /// [`crate::idempotency`]).
    pub const fn with_idempotency_store(mut self, store: StorePolicy) -> Self {
        self.store = Some(store);
        self
    }

    /// See [`with_idempotency_store`](Self::with_idempotency_store).
    pub const fn idempotency_store(&self) -> Option<&StorePolicy> {
        self.store.as_ref()
    }

    /// The header `seawall::http` sends a keyed call's idempotency key in
    /// (`Idempotency-Key` unless the vendor wants another).
    pub fn with_idempotency_header(mut self, header: impl Into<String>) -> Self {
        self.idempotency_header = std::borrow::Cow::Owned(header.into());
        self
    }

    /// See [`with_idempotency_header`](Self::with_idempotency_header).
    pub fn idempotency_header(&self) -> &str {
        &self.idempotency_header
    }

    /// Bounds this method's retries with a budget shared by every endpoint
    /// of the same contract (see [`BudgetPolicy`]).
    pub const fn with_retry_budget(mut self, budget: BudgetPolicy) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries without a budget: only `attempts` bounds them.
    pub const fn without_retry_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The retry budget, if retries are bounded by one.
    pub const fn retry_budget(&self) -> Option<&BudgetPolicy> {
        self.budget.as_ref()
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
    /// `attempts × timeout + every backoff delay before jitter`, or
    /// `max_elapsed + timeout` when that is less.
    pub fn worst_case(&self) -> Duration {
        let by_attempts = self
            .timeout
            .saturating_mul(self.retry.attempts)
            .saturating_add(self.retry.max_total_backoff());
        // No attempt starts after `max_elapsed`, so none ends later than
        // `max_elapsed + timeout`.
        match self.retry.max_elapsed {
            Some(max) => by_attempts.min(max.saturating_add(self.timeout)),
            None => by_attempts,
        }
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
        if http::HeaderName::from_bytes(self.idempotency_header.as_bytes()).is_err() {
            return Err(PolicyError::Header(self.idempotency_header.to_string()));
        }
        self.retry.validate()?;
        check_duration("retry base", self.retry.base)?;
        check_duration("retry cap", self.retry.cap)?;
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        if let Some(store) = &self.store {
            store.validate()?;
        }
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
            if breaker.half_open_max < self.timeout {
                return Err(PolicyError::HalfOpenMax {
                    half_open_max: breaker.half_open_max,
                    timeout: self.timeout,
                });
            }
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
    /// A breaker failure rate or slow-call rate outside `(0, 1]`.
    #[error("breaker rates must be in (0, 1], not {0}")]
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
    /// `open_for_max` below `open_for`.
    #[error("breaker open_for_max ({max:?}) is below open_for ({open_for:?})")]
    OpenForMax {
        /// The first open duration.
        open_for: Duration,
        /// Its cap.
        max: Duration,
    },
    /// `half_open_max` shorter than the timeout of a method behind the
    /// breaker: a probe could never report back in time.
    #[error(
        "breaker half_open_max ({half_open_max:?}) is shorter than the timeout ({timeout:?}): a probe could never report back"
    )]
    HalfOpenMax {
        /// How long half-open waits for its probes.
        half_open_max: Duration,
        /// The method's per-attempt timeout.
        timeout: Duration,
    },
    /// No failure class, or `Ignored` listed among them (an ignored error is
    /// never recorded).
    #[error("breaker failure classes must be one or more of retryable, vendor_fault and permanent")]
    FailureClasses,
    /// No class to retry, or `Ignored` listed among them.
    #[error("retry classes must be one or more of retryable, vendor_fault and permanent")]
    RetryClasses,
    /// An idempotency header name that is not a valid HTTP header name.
    #[error("`{0}` is not a valid HTTP header name")]
    Header(String),
    /// A retry budget ratio outside `(0, 1]`.
    #[error("retry budget ratio must be in (0, 1], not {0}")]
    BudgetRatio(f64),
    /// A retry budget of more than a million tokens.
    #[error("retry budget max must be at most 1000000 tokens, not {0}")]
    BudgetMax(u32),
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
