//! The outcomes a closed breaker judges: the last `N` calls, or the calls of
//! the last stretch of time.
//!
//! Both are lock-free and allocate only when built. Under concurrent
//! recording a tally can lag the ring by the calls in flight, which moves a
//! rate by at most those few calls; counts never drift, because each change
//! of a slot is counted exactly once.

use std::sync::atomic::{
    AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire,
    Ordering::Relaxed,
};
use std::time::Duration;

use crate::Window;

/// What a window holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
    /// Failures in a row up to the latest call (whatever the window has
    /// forgotten).
    pub(crate) run: u64,
}

/// Either kind of window.
// One per breaker, inside its `Arc`: boxing the larger variant would only add
// a pointer chase to every record.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ring {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Ring {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Calls(calls) => Self::Count(CountWindow::new(calls)),
            Window::Time(duration) => Self::Time(TimeWindow::new(duration)),
        }
    }

    /// Whether recording needs the time (`now`, in nanoseconds since the
    /// breaker's base instant).
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }

    /// Whether recording a fast success would change nothing: a full count
    /// window that holds no failure and no slow call, after a success. (A
    /// time window always counts the call.)
    #[inline]
    pub(crate) fn is_quiet(&self) -> bool {
        match self {
            Self::Count(window) => window.is_quiet(),
            Self::Time(_) => false,
        }
    }

    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) -> Tally {
        match self {
            Self::Count(window) => window.record(failure, slow),
            Self::Time(window) => window.record(now, failure, slow),
        }
    }

    pub(crate) fn tally(&self, now: u64) -> Tally {
        match self {
            Self::Count(window) => window.tally(),
            Self::Time(window) => window.tally(now),
        }
    }

    /// Empties the window. Called around a transition, while calls admitted
    /// in the previous state are turned away by their epoch.
    pub(crate) fn reset(&self) {
        match self {
            Self::Count(window) => window.reset(),
            Self::Time(window) => window.reset(),
        }
    }
}

const RECORDED: u8 = 1;
const FAILURE: u8 = 2;
const SLOW: u8 = 4;

/// The outcomes of the last `N` calls, in a ring of atomics: recording is one
/// `fetch_add` on the cursor, one `swap` of the slot and, only when the slot
/// changes between success and failure (or fast and slow), one add.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    failures: AtomicI64,
    slow: AtomicI64,
    // Beside the counts: the healthy path reads all three from one cache
    // line.
    run: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            slots: (0..size.max(1)).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
            run: AtomicU64::new(0),
        }
    }

    /// Whether the window is full and holds no failure, no slow call and no
    /// run of failures: then a fast success changes nothing the breaker can
    /// observe, since the slot it would overwrite holds a fast success too.
    /// Skipping the write keeps the healthy path free of shared writes, so
    /// concurrent callers do not contend on the ring: the line these four
    /// counters share stays in every core's cache while the vendor is
    /// healthy. (A failure recorded meanwhile is pushed out of the window at
    /// most that one call later.)
    #[inline]
    fn is_quiet(&self) -> bool {
        self.failures.load(Relaxed) == 0
            && self.slow.load(Relaxed) == 0
            && self.run.load(Relaxed) == 0
            && self.cursor.load(Relaxed) >= self.slots.len() as u64
    }

    fn record(&self, failure: bool, slow: bool) -> Tally {
        let len = self.slots.len() as u64;
        if !failure && !slow && self.is_quiet() {
            return Tally {
                calls: len,
                ..Tally::default()
            };
        }
        let run = extend(&self.run, failure);
        let index = self.cursor.fetch_add(1, Relaxed);
        let new = RECORDED | if failure { FAILURE } else { 0 } | if slow { SLOW } else { 0 };
        let old = self.slots[(index % len) as usize].swap(new, Relaxed);
        let failures = adjust(&self.failures, old & FAILURE != 0, failure);
        let slow = adjust(&self.slow, old & SLOW != 0, slow);
        Tally {
            calls: (index + 1).min(len),
            failures,
            slow,
            run,
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            calls: self.cursor.load(Relaxed).min(self.slots.len() as u64),
            failures: self.failures.load(Relaxed).max(0) as u64,
            slow: self.slow.load(Relaxed).max(0) as u64,
            run: self.run.load(Relaxed),
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Relaxed);
        }
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
        self.run.store(0, Relaxed);
        self.cursor.store(0, Relaxed);
    }
}

/// Extends the run of failures by one call: one more on a failure, back to
/// zero on a success (read first: a healthy run is already zero, and a load
/// keeps the cache line shared between cores). Returns the new run.
fn extend(run: &AtomicU64, failure: bool) -> u64 {
    if failure {
        run.fetch_add(1, Relaxed) + 1
    } else {
        if run.load(Relaxed) != 0 {
            run.store(0, Relaxed);
        }
        0
    }
}

/// Moves a counter by a slot's change; reads it when the slot did not change.
fn adjust(counter: &AtomicI64, was: bool, is: bool) -> u64 {
    let value = match (was, is) {
        (true, false) => counter.fetch_sub(1, Relaxed) - 1,
        (false, true) => counter.fetch_add(1, Relaxed) + 1,
        _ => counter.load(Relaxed),
    };
    value.max(0) as u64
}

/// How many buckets a time window is cut into: it forgets old calls a tenth
/// of the window at a time.
const BUCKETS: u64 = 10;

struct Bucket {
    /// Which slice of time (`now / width + 1`) the counts belong to; 0 for
    /// never used.
    stamp: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

/// The calls of the last stretch of time, in [`BUCKETS`] buckets.
///
/// The first call of a new slice claims its bucket with a compare-and-swap
/// and zeroes its counts; a call recorded into the same bucket between the
/// claim and the zeroing is lost, which can only lower a rate by a call or
/// two at a bucket's turn.
pub(crate) struct TimeWindow {
    buckets: [Bucket; BUCKETS as usize],
    width: u64,
    run: AtomicU64,
}

impl TimeWindow {
    pub(crate) fn new(window: Duration) -> Self {
        let width = (window.as_nanos() / u128::from(BUCKETS)).max(1);
        Self {
            buckets: std::array::from_fn(|_| Bucket {
                stamp: AtomicU64::new(0),
                calls: AtomicU32::new(0),
                failures: AtomicU32::new(0),
                slow: AtomicU32::new(0),
            }),
            width: u64::try_from(width).unwrap_or(u64::MAX),
            run: AtomicU64::new(0),
        }
    }

    fn slice(&self, now: u64) -> u64 {
        now / self.width + 1
    }

    fn record(&self, now: u64, failure: bool, slow: bool) -> Tally {
        let slice = self.slice(now);
        let bucket = &self.buckets[(slice % BUCKETS) as usize];
        let stamp = bucket.stamp.load(Acquire);
        if stamp < slice
            && bucket
                .stamp
                .compare_exchange(stamp, slice, AcqRel, Acquire)
                .is_ok()
        {
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
        }
        bucket.calls.fetch_add(1, Relaxed);
        if failure {
            bucket.failures.fetch_add(1, Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Relaxed);
        }
        let run = extend(&self.run, failure);
        Tally {
            run,
            ..self.tally(now)
        }
    }

    fn tally(&self, now: u64) -> Tally {
        let slice = self.slice(now);
        let oldest = slice.saturating_sub(BUCKETS - 1);
        self.buckets
            .iter()
            .filter(|bucket| (oldest..=slice).contains(&bucket.stamp.load(Acquire)))
            .fold(
                Tally {
                    run: self.run.load(Relaxed),
                    ..Tally::default()
                },
                |tally, bucket| Tally {
                    calls: tally.calls + u64::from(bucket.calls.load(Relaxed)),
                    failures: tally.failures + u64::from(bucket.failures.load(Relaxed)),
                    slow: tally.slow + u64::from(bucket.slow.load(Relaxed)),
                    run: tally.run,
                },
            )
    }

    fn reset(&self) {
        self.run.store(0, Relaxed);
        for bucket in &self.buckets {
            bucket.stamp.store(0, Relaxed);
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_window_keeps_only_the_last_n_outcomes() {
        let window = CountWindow::new(4);
        for (failure, slow) in [(true, false), (true, true), (false, true), (false, false)] {
            window.record(failure, slow);
        }
        assert_eq!(
            window.tally(),
            Tally {
                calls: 4,
                failures: 2,
                slow: 2,
                run: 0
            }
        );
        // Two fast successes push out both failures and one slow call.
        window.record(false, false);
        let tally = window.record(false, false);
        assert_eq!(
            tally,
            Tally {
                calls: 4,
                failures: 0,
                slow: 1,
                run: 0
            }
        );
        window.reset();
        assert_eq!(window.tally(), Tally::default());
        assert_eq!(
            window.record(true, false),
            Tally {
                calls: 1,
                failures: 1,
                slow: 0,
                run: 1
            }
        );
    }

    #[test]
    fn a_healthy_full_window_records_successes_without_writing() {
        let window = CountWindow::new(3);
        for _ in 0..3 {
            window.record(false, false);
        }
        let cursor = window.cursor.load(Relaxed);
        assert_eq!(
            window.record(false, false),
            Tally {
                calls: 3,
                failures: 0,
                slow: 0,
                run: 0
            }
        );
        assert_eq!(window.cursor.load(Relaxed), cursor, "nothing written");
        // A failure still lands, and successes push it out again.
        assert_eq!(window.record(true, false).failures, 1);
        window.record(false, false);
        window.record(false, false);
        assert_eq!(window.record(false, false).failures, 0);
    }

    /// The window's counters against the ring they count, once no record
    /// is in flight.
    fn matches_its_ring(window: &CountWindow) {
        let in_ring = |flag| {
            window
                .slots
                .iter()
                .filter(|slot| slot.load(Relaxed) & flag != 0)
                .count() as u64
        };
        assert_eq!(window.failures.load(Relaxed), in_ring(FAILURE) as i64);
        assert_eq!(window.slow.load(Relaxed), in_ring(SLOW) as i64);
        assert_eq!(window.is_quiet(), {
            let tally = window.tally();
            tally.calls == window.slots.len() as u64 && tally.failures + tally.slow + tally.run == 0
        });
    }

    #[test]
    fn threads_recording_at_once_leave_exact_counts_once_quiet() {
        const THREADS: usize = 8;
        const EACH: usize = 20_000;
        let window = CountWindow::new(100);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let window = &window;
                scope.spawn(move || {
                    for i in 0..EACH {
                        // Long healthy stretches (the quiet path) broken by
                        // failures and slow calls, differently on each
                        // thread.
                        let failure = (i + thread * 97) % 500 < 3;
                        let slow = (i * 7 + thread) % 1_000 == 0;
                        window.record(failure, slow);
                    }
                });
            }
        });
        matches_its_ring(&window);
        assert_eq!(window.tally().calls, 100);
        // Failures only, from every thread: the window is full of them.
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..100 {
                        window.record(true, false);
                    }
                });
            }
        });
        matches_its_ring(&window);
        let tally = window.tally();
        assert_eq!((tally.calls, tally.failures), (100, 100));
        assert_eq!(tally.run, THREADS as u64 * 100, "every failure, in a row");
        // Then fast successes from every thread push out every one of them:
        // none is skipped while the window still holds a failure.
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..100 {
                        window.record(false, false);
                    }
                });
            }
        });
        matches_its_ring(&window);
        assert_eq!(
            window.tally(),
            Tally {
                calls: 100,
                ..Tally::default()
            }
        );
        assert!(window.is_quiet());
    }

    #[test]
    fn a_failure_recorded_on_one_thread_is_seen_on_another() {
        let window = CountWindow::new(10);
        for _ in 0..10 {
            window.record(false, false);
        }
        assert!(window.is_quiet());
        std::thread::scope(|scope| {
            // A reader that only spins on the counters (no other
            // synchronisation) sees the failure land, and stops being quiet.
            let reader = scope.spawn(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while window.tally().failures == 0 {
                    assert!(std::time::Instant::now() < deadline, "never seen");
                    std::hint::spin_loop();
                }
                assert!(!window.is_quiet());
            });
            scope.spawn(|| window.record(true, false));
            reader.join().expect("the reader");
        });
        // Successes on a third thread take the full path until the failure
        // is pushed out: exactly the window's length of them.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..9 {
                    assert_eq!(window.record(false, false).failures, 1);
                    assert!(!window.is_quiet());
                }
                assert_eq!(window.record(false, false).failures, 0);
                assert!(window.is_quiet());
            });
        });
    }

    #[test]
    fn a_reset_window_is_not_quiet_until_full_again() {
        let window = CountWindow::new(3);
        for _ in 0..3 {
            window.record(false, false);
        }
        assert!(window.is_quiet());
        window.reset();
        assert!(!window.is_quiet(), "empty: a success must be counted");
        assert_eq!(window.record(false, false).calls, 1);
        assert_eq!(window.record(false, false).calls, 2);
        assert!(!window.is_quiet());
        assert_eq!(window.record(false, false).calls, 3);
        assert!(window.is_quiet());
        // A time window is never quiet: every call lands in a bucket.
        assert!(!Ring::new(Window::Time(Duration::from_secs(1))).is_quiet());
    }

    #[test]
    fn a_time_window_forgets_calls_a_bucket_at_a_time() {
        const S: u64 = 1_000_000_000;
        let window = TimeWindow::new(Duration::from_secs(10));
        window.record(0, true, false);
        window.record(S / 2, true, true);
        window.record(5 * S, false, false);
        assert_eq!(
            window.tally(9 * S),
            Tally {
                calls: 3,
                failures: 2,
                slow: 1,
                run: 0
            }
        );
        // At 10 s the first one-second bucket has aged out.
        assert_eq!(
            window.tally(10 * S),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0,
                run: 0
            }
        );
        // A bucket reused for a new slice starts from zero.
        assert_eq!(
            window.record(20 * S, true, false),
            Tally {
                calls: 1,
                failures: 1,
                slow: 0,
                run: 1
            }
        );
        window.reset();
        assert_eq!(window.tally(20 * S), Tally::default());
    }

    #[test]
    fn the_run_of_failures_outlives_the_window_and_ends_with_a_success() {
        const S: u64 = 1_000_000_000;
        let window = TimeWindow::new(Duration::from_secs(10));
        window.record(0, true, false);
        window.record(S, true, false);
        // Both failures have aged out of the window; the run has not.
        let tally = window.record(30 * S, true, false);
        assert_eq!((tally.failures, tally.run), (1, 3));
        assert_eq!(window.record(31 * S, false, false).run, 0);
        let count = CountWindow::new(2);
        for _ in 0..5 {
            count.record(true, false);
        }
        assert_eq!(count.tally().run, 5, "longer than the window");
        count.record(false, false);
        assert_eq!(count.tally().run, 0);
    }
}
