//! A latency histogram that records without locks: log-linear buckets of
//! atomic counters (the layout of an HDR histogram), read and merged only
//! when a snapshot is taken.
//!
//! A value `v` (nanoseconds) lands in bucket `v` itself below 32; above, in
//! one of 32 linear sub-buckets of its power of two, so every bucket is at
//! most 1/32 (3.1 %) wide relative to its values. Values above 2⁴² ns (about
//! 73 minutes) land in the last bucket; the maximum is kept exactly.
//!
//! The buckets are kept in rows (`shard.rs`): a thread adds to its own row,
//! made at its first record, and a snapshot sums the rows.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::shard;

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 42;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

pub(crate) struct Histogram {
    /// `BUCKETS` counters per row (`shard.rs`), each made at its first
    /// record.
    rows: Box<[OnceLock<Box<[AtomicU64]>>]>,
    max: AtomicU64,
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = (63 - value.leading_zeros()).min(MAX_EXP);
    let value = value.min((1 << (MAX_EXP + 1)) - 1);
    let sub = (value >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + u64::from(SUB_BITS) - 1;
    let sub = i % SUB;
    ((SUB + sub + 1) << (exp - u64::from(SUB_BITS))) - 1
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            rows: (0..=shard::owned()).map(|_| OnceLock::new()).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value in this thread's row.
    #[cfg(test)]
    pub(crate) fn record(&self, nanos: u64) {
        self.record_in(shard::row(), nanos);
    }

    /// Records one value in `row`: one add (a plain load and store in a
    /// row the thread owns), and a load of the maximum (written only when
    /// it grows).
    #[inline]
    pub(crate) fn record_in(&self, row: shard::Row, nanos: u64) {
        let buckets = self.rows[row.index()]
            .get_or_init(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect());
        shard::add(&buckets[index(nanos)], row, 1);
        if nanos > self.max.load(Relaxed) {
            self.max.fetch_max(nanos, Relaxed);
        }
    }

    /// The counts, every row's summed, off the hot path.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut counts = vec![0; BUCKETS];
        for row in self.rows.iter().filter_map(OnceLock::get) {
            for (count, bucket) in counts.iter_mut().zip(row.iter()) {
                *count += bucket.load(Relaxed);
            }
        }
        Snapshot {
            counts,
            max: self.max.load(Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
pub(crate) struct Snapshot {
    counts: Vec<u64>,
    max: u64,
}

impl Snapshot {
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at `quantile` (0..=1): the upper bound of the bucket that
    /// holds it (never above the maximum), or `None` with no values.
    pub(crate) fn quantile(&self, quantile: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(upper(i).min(self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }

    pub(crate) fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it_within_a_32nd() {
        let mut previous_upper = None;
        for i in 0..BUCKETS {
            let top = upper(i);
            assert_eq!(index(top), i, "bucket {i}'s upper bound {top}");
            if let Some(previous) = previous_upper {
                assert_eq!(index(previous + 1), i, "bucket {i} starts after {previous}");
                let width = top - previous;
                assert!(
                    width <= 1 || (width as f64) / (previous as f64 + 1.0) <= 1.0 / 32.0 + 1e-9,
                    "bucket {i}: width {width} from {previous}"
                );
            }
            previous_upper = Some(top);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_the_bucket_precision() {
        let histogram = Histogram::new();
        for micros in 1..=1000u64 {
            histogram.record(micros * 1000);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 1000);
        for (quantile, exact) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = snapshot.quantile(quantile).unwrap().as_nanos() as f64;
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 32.0),
                "p{quantile}: {got} for {exact}"
            );
        }
        assert_eq!(snapshot.max(), Some(Duration::from_millis(1)));
        assert_eq!(Histogram::new().snapshot().quantile(0.5), None);
    }

    #[test]
    fn a_snapshot_sums_every_row() {
        let histogram = Histogram::new();
        for row in [
            shard::Row::owned(0),
            shard::Row::owned(1),
            shard::Row::SHARED,
        ] {
            histogram.record_in(row, 1_000);
        }
        histogram.record_in(shard::Row::SHARED, 5_000);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 4);
        assert_eq!(snapshot.quantile(0.5), Some(Duration::from_nanos(1_007)));
        assert_eq!(snapshot.max(), Some(Duration::from_nanos(5_000)));
        // Rows nobody recorded in are never made.
        assert_eq!(
            histogram.rows.iter().filter(|r| r.get().is_some()).count(),
            3
        );
    }

    #[test]
    fn threads_recording_at_once_lose_no_count() {
        let histogram = std::sync::Arc::new(Histogram::new());
        // More threads than rows to own: some add on the shared row.
        let threads: Vec<_> = (0..40)
            .map(|n| {
                let histogram = histogram.clone();
                std::thread::spawn(move || {
                    for value in 0..10_000u64 {
                        histogram.record(value * (n + 1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 400_000);
        assert_eq!(snapshot.max(), Some(Duration::from_nanos(9_999 * 40)));
    }
}
