//! Error-rate change detection: each endpoint's error rate over its current
//! window of calls, against a moving baseline of the windows before it.
//!
//! A fixed threshold cannot serve every endpoint: 5 % is an outage for a
//! payment API that fails 0.1 % of the time, and a normal day for a flaky
//! telephony provider. So each endpoint is compared with itself. Calls are
//! counted in windows of `window` calls (one atomic add per call); when a
//! window closes, its error rate `r` is compared with the baseline `b`, an
//! exponentially weighted moving average of the earlier windows' rates
//! (weight `alpha` for the newest). After `warmup` windows, the window
//! alerts when
//!
//! ```text
//! r > b + max(min_rise, z × sqrt(b (1 − b) / n))
//! ```
//!
//! — a rise that is both large enough to matter (`min_rise`, absolute) and
//! unlikely to be chance at the baseline rate (`z` standard deviations of a
//! binomial window of `n` calls). An alert is raised once per change: the
//! next alert needs a window back under the threshold first. The baseline
//! keeps moving, so a new steady rate stops alerting once it is the norm.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The change detector's settings (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeDetector {
    window: u32,
    alpha: f64,
    warmup: u32,
    min_rise: f64,
    z: f64,
}

impl Default for ChangeDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeDetector {
    /// Windows of 1 000 calls, `alpha` 0.3, 3 warm-up windows, a rise of at
    /// least 1 percentage point and 4 standard deviations.
    ///
    /// With these, a step from 0.1 % to 2 % errors alerts within one window
    /// (its threshold is 1.1 %), a steady 5 % never does (its threshold is
    /// about 7.8 %: four standard deviations of a 1 000-call window), and
    /// rare random errors at 0.1 % would need 12 errors in a window where 1
    /// is expected.
    pub const fn new() -> Self {
        Self {
            window: 1000,
            alpha: 0.3,
            warmup: 3,
            min_rise: 0.01,
            z: 4.0,
        }
    }

    /// Calls per window (at least 1).
    #[must_use]
    pub const fn with_window(mut self, calls: u32) -> Self {
        self.window = if calls == 0 { 1 } else { calls };
        self
    }

    /// The weight of the newest window in the baseline, in (0, 1].
    #[must_use]
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = if alpha.is_finite() {
            alpha.clamp(f64::EPSILON, 1.0)
        } else {
            0.3
        };
        self
    }

    /// Windows that only build the baseline before any alert.
    #[must_use]
    pub const fn with_warmup(mut self, windows: u32) -> Self {
        self.warmup = windows;
        self
    }

    /// The smallest rise of the error rate that alerts, as a share (0.01 is
    /// one percentage point).
    #[must_use]
    pub fn with_min_rise(mut self, rise: f64) -> Self {
        self.min_rise = if rise.is_finite() {
            rise.max(0.0)
        } else {
            0.01
        };
        self
    }

    /// How many standard deviations above the baseline a window must be.
    #[must_use]
    pub fn with_z(mut self, z: f64) -> Self {
        self.z = if z.is_finite() { z.max(0.0) } else { 4.0 };
        self
    }

    /// Calls per window.
    pub const fn window(&self) -> u32 {
        self.window
    }
}

/// What a closed window showed, when it alerts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) baseline: f64,
    pub(crate) rate: f64,
    pub(crate) threshold: f64,
    pub(crate) calls: u64,
}

#[derive(Default)]
struct Baseline {
    windows: u32,
    rate: f64,
    alerting: bool,
}

/// One endpoint's detector.
pub(crate) struct Detector {
    settings: ChangeDetector,
    /// Calls in the low 32 bits, errors in the high 32: one add per call.
    current: AtomicU64,
    baseline: Mutex<Baseline>,
}

const ONE_CALL: u64 = 1;
const ONE_ERROR: u64 = 1 << 32;

impl Detector {
    pub(crate) fn new(settings: ChangeDetector) -> Self {
        Self {
            settings,
            current: AtomicU64::new(0),
            baseline: Mutex::default(),
        }
    }

    /// Counts one call; the call that closes a window evaluates it, and
    /// returns the change if it alerts.
    #[inline]
    pub(crate) fn record(&self, error: bool) -> Option<Change> {
        let add = if error {
            ONE_CALL + ONE_ERROR
        } else {
            ONE_CALL
        };
        let before = self.current.fetch_add(add, Ordering::Relaxed);
        if (before & 0xffff_ffff) + 1 != u64::from(self.settings.window) {
            return None;
        }
        // This call closed the window: take it (and any call that slipped
        // in since) and start the next.
        let closed = self.current.swap(0, Ordering::Relaxed);
        self.evaluate(closed & 0xffff_ffff, closed >> 32)
    }

    #[cold]
    fn evaluate(&self, calls: u64, errors: u64) -> Option<Change> {
        if calls == 0 {
            return None;
        }
        let rate = errors as f64 / calls as f64;
        let mut baseline = self
            .baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let s = &self.settings;
        let mut change = None;
        if baseline.windows >= s.warmup.max(1) {
            let b = baseline.rate;
            let spread = s.z * (b * (1.0 - b) / calls as f64).sqrt();
            let threshold = b + s.min_rise.max(spread);
            if rate > threshold {
                if !baseline.alerting {
                    change = Some(Change {
                        baseline: b,
                        rate,
                        threshold,
                        calls,
                    });
                }
                baseline.alerting = true;
            } else {
                baseline.alerting = false;
            }
            baseline.rate = s.alpha * rate + (1.0 - s.alpha) * b;
        } else {
            // Warming up: the baseline is the plain mean so far.
            let n = f64::from(baseline.windows);
            baseline.rate = (baseline.rate * n + rate) / (n + 1.0);
        }
        baseline.windows = baseline.windows.saturating_add(1);
        change
    }

    /// The baseline error rate, once there is one.
    pub(crate) fn baseline(&self) -> Option<f64> {
        let baseline = self
            .baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (baseline.windows > 0).then_some(baseline.rate)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// Runs `calls` calls failing with probability `rate`; returns the
    /// call numbers that alerted.
    fn run(detector: &Detector, rng: &mut StdRng, calls: u64, rate: f64, from: u64) -> Vec<u64> {
        (0..calls)
            .filter_map(|n| detector.record(rng.random_bool(rate)).map(|_| from + n))
            .collect()
    }

    #[test]
    fn a_step_from_a_tenth_of_a_percent_to_two_percent_alerts_within_one_window() {
        let detector = Detector::new(ChangeDetector::new());
        let mut rng = StdRng::seed_from_u64(7);
        assert!(run(&detector, &mut rng, 10_000, 0.001, 0).is_empty());
        let alerts = run(&detector, &mut rng, 10_000, 0.02, 10_000);
        assert_eq!(alerts.len(), 1, "once per change: {alerts:?}");
        assert!(alerts[0] < 11_000, "within the first window: {alerts:?}");
    }

    #[test]
    fn a_steady_five_percent_never_alerts() {
        let detector = Detector::new(ChangeDetector::new());
        let mut rng = StdRng::seed_from_u64(11);
        assert_eq!(
            run(&detector, &mut rng, 200_000, 0.05, 0),
            Vec::<u64>::new()
        );
        let baseline = detector.baseline().unwrap();
        assert!((baseline - 0.05).abs() < 0.01, "{baseline}");
    }

    #[test]
    fn rare_random_errors_raise_no_false_alarm_in_a_hundred_thousand_calls() {
        for seed in 0..20 {
            let detector = Detector::new(ChangeDetector::new());
            let mut rng = StdRng::seed_from_u64(seed);
            assert_eq!(
                run(&detector, &mut rng, 100_000, 0.001, 0),
                Vec::<u64>::new(),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_new_steady_rate_stops_alerting_once_it_is_the_norm() {
        let detector = Detector::new(ChangeDetector::new().with_window(100));
        let mut rng = StdRng::seed_from_u64(3);
        run(&detector, &mut rng, 1_000, 0.0, 0);
        let alerts = run(&detector, &mut rng, 5_000, 0.2, 1_000);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
    }
}
