//! Per-thread rows for the counters every call writes.
//!
//! Each attempt adds to its endpoint's latency histogram and error-rate
//! detector. With one counter shared by every thread, each add took the
//! counter's cache line from the core that wrote it last: with 64 tasks on
//! two worker threads, the two adds were two thirds of a call's CPU time
//! (BENCHMARKS.md, "Against peers: the whole stack"). So each counter has
//! rows, and a thread adds to its own.
//!
//! The first threads to record — a runtime's workers, in practice — each
//! own a row: the only thread that ever writes it, so its add is a plain
//! load and store of the atomic, without a locked instruction, and its
//! line stays in that core's cache. Every later thread adds to one shared
//! row with atomic read-modify-writes. Readers (health, the detector's
//! windows) sum the rows, off the call path. No `unsafe`: a row is still
//! an atomic, read by others while its owner writes it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A value alone on its cache lines: 128 bytes, since x86's adjacent-line
/// prefetcher moves lines in pairs.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// The indices handed out so far (saturating: never handed out twice).
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's row, `usize::MAX` until its first record.
    static ROW: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// How many threads own a row: twice the machine's parallelism (a
/// runtime's workers and the threads that start it), at least 2 and at
/// most 16. A counter has one more row, the shared one.
pub(crate) fn owned() -> usize {
    static OWNED: OnceLock<usize> = OnceLock::new();
    *OWNED.get_or_init(|| {
        let parallelism =
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (parallelism * 2).clamp(2, 16)
    })
}

/// This thread's row: one only this thread writes, for the first
/// [`owned`] threads to record, the shared row for the others. One
/// thread-local read after the thread's first record.
#[inline]
pub(crate) fn row() -> Row {
    Row(ROW.with(|row| {
        let current = row.get();
        if current != usize::MAX {
            return current;
        }
        let index = NEXT
            .fetch_update(Relaxed, Relaxed, |next| next.checked_add(1))
            .unwrap_or(usize::MAX);
        let taken = if index < owned() { index } else { SHARED };
        row.set(taken);
        taken
    }))
}

/// The shared row's mark in [`Row`].
const SHARED: usize = usize::MAX - 1;

/// A thread's row in every sharded counter (see [`row`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row(usize);

impl Row {
    /// The shared row.
    #[cfg(test)]
    pub(crate) const SHARED: Row = Row(SHARED);

    /// An owned row (tests give rows by hand).
    #[cfg(test)]
    pub(crate) const fn owned(index: usize) -> Row {
        Row(index)
    }

    /// Whether this thread is the only one that writes the row.
    #[inline]
    pub(crate) fn is_owned(self) -> bool {
        self.0 != SHARED
    }

    /// The row's index in a counter of [`owned`] + 1 rows.
    #[inline]
    pub(crate) fn index(self) -> usize {
        if self.is_owned() {
            self.0
        } else {
            owned_rows()
        }
    }
}

/// [`owned`], without the `OnceLock` once known (a relaxed load).
#[inline]
fn owned_rows() -> usize {
    static CACHED: AtomicUsize = AtomicUsize::new(0);
    match CACHED.load(Relaxed) {
        0 => {
            let owned = owned();
            CACHED.store(owned, Relaxed);
            owned
        }
        owned => owned,
    }
}

/// Adds `n` to `counter`, a cell of `row`: a load and a store when the
/// thread owns the row (nobody else writes it), an atomic add on the
/// shared row. The value before.
#[inline]
pub(crate) fn add(counter: &AtomicU64, row: Row, n: u64) -> u64 {
    if row.is_owned() {
        let before = counter.load(Relaxed);
        counter.store(before.wrapping_add(n), Relaxed);
        before
    } else {
        counter.fetch_add(n, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_row_and_no_two_threads_own_the_same() {
        let mine = row();
        assert_eq!(row(), mine, "the same thread, the same row");
        let rows: Vec<Row> = (0..40)
            .map(|_| std::thread::spawn(row).join().unwrap())
            .chain([mine])
            .collect();
        let owners: Vec<usize> = rows
            .iter()
            .filter(|r| r.is_owned())
            .map(|r| r.index())
            .collect();
        for (n, row) in owners.iter().enumerate() {
            assert!(!owners[..n].contains(row), "{rows:?}");
        }
        // 41 threads: more than rows to own, so the rest share one.
        assert!(rows.contains(&Row::SHARED), "{rows:?}");
        assert_eq!(Row::SHARED.index(), owned());
    }

    #[test]
    fn threads_adding_on_the_shared_row_lose_no_count() {
        let counter = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        add(&counter, Row::SHARED, 1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.load(Relaxed), 40_000);
    }

    #[test]
    fn an_owned_row_adds_as_the_shared_one_does() {
        let counter = AtomicU64::new(0);
        assert_eq!(add(&counter, Row::owned(0), 5), 0);
        assert_eq!(add(&counter, Row::SHARED, 1), 5);
        assert_eq!(add(&counter, Row::owned(0), 2), 6);
        assert_eq!(counter.load(Relaxed), 8);
        assert_eq!(std::mem::align_of::<Padded<u64>>(), 128);
        assert!((2..=16).contains(&owned()));
    }
}
