//! The circuit breaker's policy: its window, thresholds, open time and
//! probes, with their defaults and rules.

use std::time::Duration;

use crate::{ClassSet, ErrorClass, Field, MAX_PROBES, PolicyError, check_duration, check_rate};

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

/// When a circuit breaker opens, and how it recovers.
///
/// The breaker judges the calls in its [`Window`] once at least `min_calls`
/// of them are in; it opens when the share of failures reaches
/// `failure_rate`, or the share of calls slower than `slow` reaches
/// `slow_rate` (both inclusive: `0.5` opens at exactly half). It also opens
/// on a run of `consecutive_failures` failed calls in a row, whatever the
/// window holds: a hard outage is evidence enough long before a large
/// window's rate turns. (A "call" here is one vendor attempt: with retries,
/// each attempt is recorded.) It stays open
/// for `open_for` (doubling on each consecutive re-open up to
/// `open_for_max`, when that is set), then lets `probes` calls through and
/// closes or re-opens on their rates alone. Probes that have not all
/// reported after `half_open_max` are treated as failed.
#[derive(Clone, Debug)]
pub struct BreakerPolicy {
    pub(crate) failure_rate: f64,
    pub(crate) window: Window,
    /// `None`: the window's size, up to [`DEFAULT_MIN_CALLS`].
    pub(crate) min_calls: Option<u32>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_for: Duration,
    pub(crate) open_for_max: Option<Duration>,
    pub(crate) probes: u32,
    pub(crate) half_open_max: Duration,
    pub(crate) slow: Option<Duration>,
    /// `None`: [`DEFAULT_SLOW_RATE`]. Set, it needs `slow`.
    pub(crate) slow_rate: Option<f64>,
    pub(crate) failure_classes: ClassSet,
    pub(crate) name: Option<String>,
}

/// The default size of a count window, in calls (attempts).
pub const DEFAULT_WINDOW: u32 = 100;

/// The default `min_calls`: a count window smaller than this judges from
/// its own size.
pub const DEFAULT_MIN_CALLS: u32 = 100;

/// The default run of consecutive failed calls that opens a breaker.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 10;

/// The default share of slow calls that opens a breaker, once `slow` says
/// which calls are slow.
pub const DEFAULT_SLOW_RATE: f64 = 0.5;

impl BreakerPolicy {
    /// The defaults: `failure_rate` 0.5 over a window of the last 100 calls,
    /// judged from 100 calls on (`min_calls`; a smaller count window judges
    /// from its size), opening also on 10 consecutive failures, `open_for`
    /// 30 s (not growing), `probes` 1, `half_open_max` 60 s, no slow-call
    /// detection (`slow_rate` 0.5 once `slow` is set), failures are
    /// retryable errors and vendor faults.
    pub const fn new() -> Self {
        Self {
            failure_rate: 0.5,
            window: Window::Calls(DEFAULT_WINDOW),
            min_calls: None,
            consecutive_failures: Some(DEFAULT_CONSECUTIVE_FAILURES),
            open_for: Duration::from_secs(30),
            open_for_max: None,
            probes: 1,
            half_open_max: Duration::from_secs(60),
            slow: None,
            slow_rate: None,
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
    /// Unset, it is the window's size for a count window of fewer than
    /// [`DEFAULT_MIN_CALLS`] calls, else [`DEFAULT_MIN_CALLS`].
    pub const fn with_min_calls(mut self, calls: u32) -> Self {
        self.min_calls = Some(calls);
        self
    }

    /// Opens on a run of `calls` failed calls in a row, whatever the window
    /// holds; `0` turns the rule off (only the rates open the breaker).
    pub const fn with_consecutive_failures(mut self, calls: u32) -> Self {
        self.consecutive_failures = if calls == 0 { None } else { Some(calls) };
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

    /// The share of slow calls, in `(0, 1]`, at which the breaker opens
    /// (it needs [`with_slow`](Self::with_slow)).
    pub const fn with_slow_rate(mut self, rate: f64) -> Self {
        self.slow_rate = Some(rate);
        self
    }

    /// Which error classes count as failures.
    pub const fn with_failure_classes(mut self, classes: ClassSet) -> Self {
        self.failure_classes = classes;
        self
    }

    /// Shares one breaker among every endpoint that names it (a name must
    /// not be empty).
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
        match (self.min_calls, self.window) {
            (Some(calls), _) => calls,
            (None, Window::Calls(size)) if size < DEFAULT_MIN_CALLS => size,
            (None, _) => DEFAULT_MIN_CALLS,
        }
    }

    /// The run of consecutive failed calls that opens the breaker, if that
    /// rule is on.
    pub const fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
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

    /// The share of slow calls at which the breaker opens
    /// ([`DEFAULT_SLOW_RATE`] unless set).
    pub const fn slow_rate(&self) -> f64 {
        match self.slow_rate {
            Some(rate) => rate,
            None => DEFAULT_SLOW_RATE,
        }
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

    /// Every rule this breaker policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        check_rate(Field::BreakerFailureRate, self.failure_rate, errors);
        if self.slow_rate.is_some() && self.slow.is_none() {
            errors.push(PolicyError::SlowRateWithoutSlow);
        }
        check_rate(Field::BreakerSlowRate, self.slow_rate(), errors);
        let window = match self.window {
            Window::Calls(0) => {
                errors.push(PolicyError::Window);
                0
            }
            Window::Calls(calls) => calls,
            Window::Time(duration) => {
                check_duration(Field::BreakerWindow, duration, errors);
                u32::MAX
            }
        };
        let min_calls = self.min_calls();
        if window > 0 && (min_calls == 0 || min_calls > window) {
            errors.push(PolicyError::MinCalls { min_calls, window });
        }
        if self.probes == 0 || self.probes > MAX_PROBES {
            errors.push(PolicyError::Probes(self.probes));
        }
        check_duration(Field::BreakerOpenFor, self.open_for, errors);
        if let Some(max) = self.open_for_max {
            check_duration(Field::BreakerOpenForMax, max, errors);
            if max < self.open_for {
                errors.push(PolicyError::OpenForMax {
                    open_for: self.open_for,
                    max,
                });
            }
        }
        check_duration(Field::BreakerHalfOpenMax, self.half_open_max, errors);
        if let Some(slow) = self.slow {
            check_duration(Field::BreakerSlow, slow, errors);
        }
        if self.failure_classes.contains(ErrorClass::Ignored) || self.failure_classes.is_empty() {
            errors.push(PolicyError::FailureClasses);
        }
        if self
            .name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            errors.push(PolicyError::EmptyBreakerName);
        }
    }
}

/// Equal when they behave alike: an unset `min_calls` or `slow_rate` equals
/// the value it stands for.
impl PartialEq for BreakerPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.failure_rate == other.failure_rate
            && self.window == other.window
            && self.min_calls() == other.min_calls()
            && self.consecutive_failures == other.consecutive_failures
            && self.open_for == other.open_for
            && self.open_for_max == other.open_for_max
            && self.probes == other.probes
            && self.half_open_max == other.half_open_max
            && self.slow == other.slow
            && self.slow_rate() == other.slow_rate()
            && self.failure_classes == other.failure_classes
            && self.name == other.name
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self::new()
    }
}
