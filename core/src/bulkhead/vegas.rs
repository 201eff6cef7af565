//! The adaptive bulkhead's limit: TCP Vegas' estimate of the calls queued
//! at the vendor, as Netflix's concurrency-limits applies it (`VegasLimit`),
//! with a probe of the vendor's unloaded latency borrowed from BBR.
//!
//! Each answered attempt gives a sample: its latency and how many attempts
//! were in flight when it started. Samples are taken in windows (of `limit`
//! answers, at least 10), as concurrency-limits' `WindowedLimit` does: one
//! sample's latency is mostly the vendor's noise. With `rtt` a window's
//! mean latency and `no_load` the lowest window mean seen, `limit × (1 − no_load / rtt)` estimates how many of the
//! `limit` calls waited at the vendor instead of being served. Few (≤
//! log₁₀ limit) — the limit grows fast (+6 log₁₀ limit); under α = 3 log₁₀
//! limit — it grows by log₁₀ limit; over β = 6 log₁₀ limit it shrinks by
//! log₁₀ limit; between α and β it stays (log₁₀ taken as at least 1). An
//! attempt that timed out in a window shrinks it by a tenth. A window in
//! which fewer than half the places were ever used says nothing about the vendor's capacity
//! and leaves the limit.
//!
//! The lowest latency seen goes stale when the vendor gets slower for good
//! (then every sample looks queued and the limit sinks to `min`); under a
//! steady load no sample is unloaded. So every 30 × limit samples the limit
//! drops to `min` until one attempt that started alone with at most `min`
//! in flight answers: its latency is the new `no_load`, and the limit is
//! restored (BBR's ProbeRTT). Callers wait (or are refused) for about two
//! round trips then.

use std::time::Duration;

use tokio::time::Instant;

/// Samples between probes, per unit of the limit.
const PROBE_EVERY: f64 = 30.0;

/// The limit's state.
#[derive(Debug)]
pub(crate) struct Vegas {
    limit: f64,
    min: f64,
    max: f64,
    no_load: Option<Duration>,
    samples: u64,
    /// Probing since this instant, the limit to restore after.
    probing: Option<(Instant, f64)>,
    window: Window,
}

/// The samples of the window being taken.
#[derive(Debug, Default)]
struct Window {
    answers: u32,
    rtt: Duration,
    in_flight: u32,
    timed_out: bool,
}

/// How an attempt ended, for the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sample {
    /// Answered (a success): its latency counts.
    Answered,
    /// Timed out: the limit shrinks.
    TimedOut,
    /// Failed otherwise (an error, a panic): not counted — a fast error
    /// would pass for an unloaded vendor.
    Ignored,
}

impl Vegas {
    pub(crate) fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial),
            min: f64::from(min),
            max: f64::from(max),
            no_load: None,
            samples: 0,
            probing: None,
            window: Window::default(),
        }
    }

    /// New bounds (a reload): the limit is brought within them.
    pub(crate) fn bound(&mut self, min: u32, max: u32) {
        self.min = f64::from(min);
        self.max = f64::from(max);
        self.limit = self.limit.clamp(self.min, self.max);
    }

    /// The places now: `min` while it probes.
    pub(crate) fn limit(&self) -> u32 {
        let limit = if self.probing.is_some() {
            self.min
        } else {
            self.limit
        };
        // Within min..=max, both u32.
        limit.round() as u32
    }

    /// The lowest latency seen (since the last probe).
    pub(crate) fn no_load(&self) -> Option<Duration> {
        self.no_load
    }

    /// One attempt ended: it started at `started` with `in_flight` in
    /// flight (itself included) and ended now, `rtt` later. The new limit.
    pub(crate) fn sample(
        &mut self,
        started: Instant,
        rtt: Duration,
        in_flight: u32,
        sample: Sample,
    ) -> u32 {
        if let Some((since, restore)) = self.probing {
            if sample == Sample::Answered && started >= since && f64::from(in_flight) <= self.min {
                self.no_load = Some(rtt);
                self.limit = restore;
                self.probing = None;
                self.samples = 0;
            }
            return self.limit();
        }
        match sample {
            Sample::Ignored => return self.limit(),
            Sample::TimedOut => self.window.timed_out = true,
            Sample::Answered => {
                self.window.answers += 1;
                self.window.rtt += rtt;
            }
        }
        self.window.in_flight = self.window.in_flight.max(in_flight);
        self.samples += 1;
        let size = self.limit().max(10);
        if self.window.answers < size && !self.window.timed_out {
            return self.limit();
        }
        let window = std::mem::take(&mut self.window);
        if window.timed_out {
            self.limit = (self.limit * 0.9).max(self.min);
            return self.limit();
        }
        let rtt = window.rtt / window.answers;
        let no_load = match self.no_load {
            Some(no_load) if rtt >= no_load && !rtt.is_zero() => no_load,
            _ => {
                self.no_load = Some(rtt);
                return self.limit();
            }
        };
        if self.samples as f64 >= PROBE_EVERY * self.limit {
            self.probing = Some((started + rtt, self.limit));
            return self.limit();
        }
        let in_flight = f64::from(window.in_flight);
        if in_flight * 2.0 < self.limit {
            return self.limit();
        }
        let log = self.limit.log10().max(1.0);
        let queued = (self.limit * (1.0 - no_load.as_secs_f64() / rtt.as_secs_f64())).ceil();
        let limit = if queued <= log {
            self.limit + 6.0 * log
        } else if queued < 3.0 * log {
            self.limit + log
        } else if queued > 6.0 * log {
            self.limit - log
        } else {
            self.limit
        };
        self.limit = limit.clamp(self.min, self.max);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A vendor that answers in 10 ms up to 10 in flight, 2 ms more for each
    /// beyond: the limit settles just past the knee.
    #[test]
    fn the_limit_settles_where_the_vendor_starts_to_queue() {
        let mut vegas = Vegas::new(20, 1, 100);
        let mut now = Instant::now();
        let mut limit = vegas.limit();
        let rtt = |in_flight: u32| MS * (10 + 2 * in_flight.saturating_sub(10));
        // A first window unloaded.
        for _ in 0..20 {
            vegas.sample(now, rtt(1), 1, Sample::Answered);
        }
        let mut probed = false;
        for _ in 0..2000 {
            probed |= limit == 1;
            limit = vegas.sample(now, rtt(limit), limit, Sample::Answered);
            now += MS;
        }
        assert!(probed, "it probed the unloaded latency");
        // The limit it keeps (and restores after a probe).
        let kept = vegas.limit.round() as u32;
        assert!((11..=14).contains(&kept), "{vegas:?}");
        assert_eq!(vegas.no_load(), Some(MS * 10));
    }

    #[test]
    fn a_timeout_shrinks_the_limit_and_min_and_max_bound_it() {
        let mut vegas = Vegas::new(20, 5, 30);
        let now = Instant::now();
        // A window with a timeout ends at it.
        assert_eq!(vegas.sample(now, MS, 20, Sample::TimedOut), 18);
        for _ in 0..50 {
            vegas.sample(now, MS, 20, Sample::TimedOut);
        }
        assert_eq!(vegas.limit(), 5);
        // An unloaded vendor: the limit grows, up to max.
        for _ in 0..500 {
            let limit = vegas.limit();
            vegas.sample(now, MS * 10, limit, Sample::Answered);
        }
        assert_eq!(vegas.limit(), 30);
    }

    #[test]
    fn a_stale_unloaded_latency_is_probed_again() {
        let mut vegas = Vegas::new(20, 2, 100);
        let mut now = Instant::now();
        for _ in 0..20 {
            vegas.sample(now, MS * 10, 20, Sample::Answered);
        }
        // The vendor is now 50 ms for good, however loaded: every sample
        // looks queued and the limit sinks to min, until a probe measures
        // the vendor again; then it grows back.
        let mut lowest = 20;
        for _ in 0..5000 {
            let limit = vegas.limit();
            lowest = lowest.min(limit);
            vegas.sample(now, MS * 50, limit, Sample::Answered);
            now += MS * 50;
        }
        assert_eq!(lowest, 2);
        assert_eq!(vegas.no_load(), Some(MS * 50));
        assert!(vegas.limit() > 20, "limit {}", vegas.limit());
    }
}
