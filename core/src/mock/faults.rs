//! Fault profiles: the ways a vendor misbehaves, as a double plays them.

use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

/// How a double's method misbehaves, in front of its script: a failure
/// rate, added latency, and an outage by call number or by time.
///
/// ```
/// # use seawall_core as seawall;
/// use std::time::Duration;
/// use seawall::mock::Faults;
///
/// // One call in five fails (the same ones on every run), every call takes
/// // 20–80 ms, and calls 10 to 19 all fail: enough to open a breaker.
/// let flaky = Faults::new()
///     .failure_rate(0.2)
///     .seed(7)
///     .latency_between(Duration::from_millis(20), Duration::from_millis(80))
///     .outage_calls(10..20);
/// // Down for the first 30 s after the profile is set, up after.
/// let outage = Faults::new().outage_during(..Duration::from_secs(30));
/// # let _ = (flaky, outage);
/// ```
///
/// A profile is set on a method with
/// [`Method::faults`](super::Method::faults), with the error its failures
/// carry. On each call: during an outage the call fails; otherwise it
/// fails with probability `failure_rate`, drawn from a generator seeded
/// with `seed` (0 unless set), so a test sees the same failures on every
/// run, given the same calls: behind `Resilient`, seed the runtime too
/// (`Runtime::builder().seed(..)`), or its retries' jitter changes when
/// the calls arrive (see the [module documentation](super)). Every call, failed or not, first waits the latency (a `tokio::time`
/// sleep). A call failed by a fault does not use a scripted answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    failure_rate: f64,
    seed: u64,
    latency: (Duration, Duration),
    outage_calls: Option<(Bound<usize>, Bound<usize>)>,
    outage_time: Option<(Bound<Duration>, Bound<Duration>)>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    /// No faults: no failures, no latency, no outage.
    pub const fn new() -> Self {
        Self {
            failure_rate: 0.0,
            seed: 0,
            latency: (Duration::ZERO, Duration::ZERO),
            outage_calls: None,
            outage_time: None,
        }
    }

    /// Fails each call outside an outage with probability `rate`, clamped
    /// to `0.0..=1.0` (`NaN` counts as 0).
    #[must_use]
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self
    }

    /// Seeds the generator behind the failure rate and random latency.
    #[must_use]
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds `latency` to every call.
    #[must_use]
    pub const fn latency(mut self, latency: Duration) -> Self {
        self.latency = (latency, latency);
        self
    }

    /// Adds a latency drawn uniformly from `low..=high` (either order) to
    /// every call.
    #[must_use]
    pub fn latency_between(mut self, low: Duration, high: Duration) -> Self {
        self.latency = (low.min(high), low.max(high));
        self
    }

    /// Fails the calls with these numbers, counted from 1 since the profile
    /// was set: `outage_calls(1..=5)` fails the first five,
    /// `outage_calls(4..)` every call from the fourth.
    #[must_use]
    pub fn outage_calls(mut self, calls: impl RangeBounds<usize>) -> Self {
        self.outage_calls = Some((calls.start_bound().cloned(), calls.end_bound().cloned()));
        self
    }

    /// Fails the calls that arrive in this span of time since the profile
    /// was set, on tokio's clock: `outage_during(..Duration::from_secs(30))`
    /// is down for 30 s, then up.
    #[must_use]
    pub fn outage_during(mut self, span: impl RangeBounds<Duration>) -> Self {
        self.outage_time = Some((span.start_bound().cloned(), span.end_bound().cloned()));
        self
    }

    fn in_outage(&self, call: usize, elapsed: Duration) -> bool {
        self.outage_calls.is_some_and(|calls| calls.contains(&call))
            || self.outage_time.is_some_and(|span| span.contains(&elapsed))
    }
}

/// A profile set on a method: its generator, its error and where it
/// started counting.
pub(super) struct ActiveFaults<E> {
    profile: Faults,
    rng: StdRng,
    error: Box<dyn FnMut() -> E + Send>,
    since: Instant,
    calls_before: usize,
}

/// What the faults do to one call.
pub(super) struct Fault<E> {
    pub(super) latency: Duration,
    pub(super) error: Option<E>,
}

impl<E> ActiveFaults<E> {
    pub(super) fn new(
        profile: Faults,
        error: Box<dyn FnMut() -> E + Send>,
        calls_before: usize,
    ) -> Self {
        Self {
            rng: StdRng::seed_from_u64(profile.seed),
            profile,
            error,
            since: Instant::now(),
            calls_before,
        }
    }

    pub(super) fn profile(&self) -> &Faults {
        &self.profile
    }

    /// The faults of the method's call number `number` (counted over the
    /// method's whole life).
    pub(super) fn next(&mut self, number: usize) -> Fault<E> {
        let (low, high) = self.profile.latency;
        let latency = if low < high {
            let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.random_range(nanos(low)..=nanos(high)))
        } else {
            low
        };
        let call = number.saturating_sub(self.calls_before);
        let failed = self.profile.in_outage(call, self.since.elapsed())
            || (self.profile.failure_rate > 0.0 && self.rng.random_bool(self.profile.failure_rate));
        Fault {
            latency,
            error: failed.then(|| (self.error)()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(faults: &Faults, calls: usize) -> Vec<usize> {
        let mut active = ActiveFaults::new(faults.clone(), Box::new(|| ()), 0);
        (1..=calls)
            .filter(|&n| active.next(n).error.is_some())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_fails_the_same_calls() {
        let faults = Faults::new().failure_rate(0.3).seed(42);
        let first = failures(&faults, 200);
        assert_eq!(first, failures(&faults, 200));
        assert_ne!(first, failures(&faults.clone().seed(43), 200));
        // About 30 % of 200.
        assert!((40..=80).contains(&first.len()), "{}", first.len());
    }

    #[tokio::test(start_paused = true)]
    async fn outages_by_call_number_and_by_time() {
        assert_eq!(failures(&Faults::new().outage_calls(3..=5), 8), [3, 4, 5]);
        assert_eq!(failures(&Faults::new().outage_calls(7..), 8), [7, 8]);
        let mut active = ActiveFaults::new(
            Faults::new().outage_during(Duration::from_secs(10)..Duration::from_secs(20)),
            Box::new(|| ()),
            0,
        );
        assert!(active.next(1).error.is_none());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(active.next(2).error.is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(active.next(3).error.is_none());
    }

    #[test]
    fn rates_out_of_range_are_clamped() {
        assert_eq!(Faults::new().failure_rate(1.5).failure_rate, 1.0);
        assert_eq!(Faults::new().failure_rate(-1.0).failure_rate, 0.0);
        assert_eq!(Faults::new().failure_rate(f64::NAN).failure_rate, 0.0);
    }
}
