//! Error-rate change detection: each endpoint's error rate over its current
//! window of calls, against a moving baseline of the windows before it.
//!
//! A fixed threshold cannot serve every endpoint: 5 % is an outage for a
//! payment API that fails 0.1 % of the time, and a normal day for a flaky
//! telephony provider. So each endpoint is compared with itself. Calls are
//! counted in windows of `window` calls; when a
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
//!
//! Counting: each call adds to its thread's row (`shard.rs`), on a cache
//! line of its own; every `batch` calls a row moves its count into the
//! window's (a row its thread owns exactly that batch, the shared row
//! whatever it holds). `batch` is a power of two that divides `window` (at
//! most 16, and at most a sixteenth of it), so a window filled by whole
//! batches closes at exactly `window` calls; a call's count reaches the
//! window at most `batch - 1` calls of its row later, and a row whose
//! threads stop calling leaves at most that many uncounted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::shard::{self, Padded};

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
    /// Every call of the windows evaluated so far.
    #[cfg(test)]
    calls: u64,
}

/// One endpoint's detector.
pub(crate) struct Detector {
    settings: ChangeDetector,
    /// Calls in the low 32 bits, errors in the high 32 (here and in each
    /// row): one add per call.
    current: Padded<AtomicU64>,
    /// The calls of each row (`shard.rs`) not yet moved into `current`.
    rows: Box<[Padded<AtomicU64>]>,
    /// Calls a row gathers before it moves them into `current`.
    batch: u64,
    baseline: Mutex<Baseline>,
}

const ONE_CALL: u64 = 1;
const ONE_ERROR: u64 = 1 << 32;
const CALLS: u64 = 0xffff_ffff;

/// The largest power of two that divides `window`, at most 16 and at most
/// a sixteenth of it (1 for a window under 32).
fn batch(window: u32) -> u64 {
    let mut batch = 1;
    while batch < 16 && window.is_multiple_of(batch * 2) && batch * 2 * 16 <= window {
        batch *= 2;
    }
    u64::from(batch)
}

impl Detector {
    pub(crate) fn new(settings: ChangeDetector) -> Self {
        Self {
            batch: batch(settings.window),
            settings,
            current: Padded(AtomicU64::new(0)),
            rows: (0..=shard::owned()).map(|_| Padded::default()).collect(),
            baseline: Mutex::default(),
        }
    }

    /// Counts one call in this thread's row.
    #[cfg(test)]
    pub(crate) fn record(&self, error: bool) -> Option<Change> {
        self.record_in(shard::row(), error)
    }

    /// Counts one call in `row`; the call that closes a window evaluates
    /// it, and returns the change if it alerts.
    #[inline]
    pub(crate) fn record_in(&self, row: shard::Row, error: bool) -> Option<Change> {
        let add = if error {
            ONE_CALL + ONE_ERROR
        } else {
            ONE_CALL
        };
        let gathered = if self.batch == 1 {
            add
        } else {
            let counter = &self.rows[row.index()].0;
            let before = shard::add(counter, row, add);
            if (before & CALLS) + 1 < self.batch {
                return None;
            }
            // This call filled the row's batch: move it. A row this thread
            // owns holds exactly the batch; the shared row, whatever its
            // threads added meanwhile (nothing, when another took it).
            let gathered = if row.is_owned() {
                counter.store(0, Ordering::Relaxed);
                before + add
            } else {
                counter.swap(0, Ordering::Relaxed)
            };
            if gathered & CALLS == 0 {
                return None;
            }
            gathered
        };
        self.gather(gathered)
    }

    /// Adds a batch of calls to the window; the batch that fills the window
    /// closes it.
    #[inline]
    fn gather(&self, gathered: u64) -> Option<Change> {
        let before = self.current.0.fetch_add(gathered, Ordering::Relaxed);
        let window = u64::from(self.settings.window);
        if (before & CALLS) >= window || (before & CALLS) + (gathered & CALLS) < window {
            return None;
        }
        // This batch closed the window: take it (and any call that slipped
        // in since) and start the next.
        let closed = self.current.0.swap(0, Ordering::Relaxed);
        self.evaluate(closed & CALLS, closed >> 32)
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
        #[cfg(test)]
        {
            baseline.calls += calls;
        }
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
    fn a_batch_divides_the_window_and_is_at_most_a_sixteenth_of_it() {
        for (window, expected) in [
            (1, 1),
            (16, 1),
            (31, 1),
            (32, 2),
            (100, 4),
            (1000, 8),
            (4096, 16),
            (999, 1),
        ] {
            assert_eq!(batch(window), expected, "window {window}");
        }
    }

    /// Calls counted but not yet in a closed window: the window's and the
    /// shards'.
    fn pending(detector: &Detector) -> u64 {
        let rows: u64 = detector
            .rows
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed) & CALLS)
            .sum();
        (detector.current.0.load(Ordering::Relaxed) & CALLS) + rows
    }

    fn windows(detector: &Detector) -> u64 {
        u64::from(detector.baseline.lock().unwrap().windows)
    }

    #[test]
    fn one_thread_closes_a_window_at_exactly_its_size() {
        let detector = Detector::new(ChangeDetector::new().with_window(1000));
        assert_eq!(detector.batch, 8);
        let row = shard::Row::owned(1);
        for call in 1..=999 {
            assert!(detector.record_in(row, call % 10 == 0).is_none());
        }
        assert_eq!(windows(&detector), 0);
        detector.record_in(row, false);
        assert_eq!(windows(&detector), 1);
        assert_eq!(pending(&detector), 0);
        assert_eq!(detector.baseline(), Some(0.099));
    }

    #[test]
    fn rows_fill_one_window_with_exactly_its_size_and_alert_on_it() {
        let detector = Detector::new(ChangeDetector::new().with_window(100).with_warmup(1));
        let rows = [
            shard::Row::owned(0),
            shard::Row::owned(1),
            shard::Row::SHARED,
        ];
        // A first window without errors, spread over the rows a batch at a
        // time (so that none waits in a row).
        for call in 0..100 {
            assert!(detector.record_in(rows[call / 4 % 3], false).is_none());
        }
        assert_eq!(windows(&detector), 1);
        // Every call an error from here: the alert's window holds exactly
        // 100 calls, whichever rows they came through.
        let change = (0..200)
            .find_map(|call| detector.record_in(rows[call % 3], true))
            .expect("an alert");
        assert_eq!(change.calls, 100);
        assert!(change.rate > 0.9, "{change:?}");
    }

    #[test]
    fn threads_counting_at_once_lose_no_call() {
        let detector = std::sync::Arc::new(Detector::new(ChangeDetector::new()));
        // More threads than rows to own: some count on the shared row.
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let detector = detector.clone();
                std::thread::spawn(move || {
                    for call in 0..10_000 {
                        detector.record(call % 50 == 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let closed = windows(&detector);
        let evaluated = detector.baseline.lock().unwrap().calls;
        assert_eq!(evaluated + pending(&detector), 400_000);
        // At most `batch - 1` calls wait in each row.
        assert!(closed >= 390, "{closed} windows");
        let baseline = detector.baseline().unwrap();
        assert!((baseline - 0.02).abs() < 0.005, "{baseline}");
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
