//! A value a reload may replace while calls read it: [`Tunable`].
//!
//! Calls borrow what they read for as long as they run (a policy, a
//! backoff), so a new value cannot overwrite the old one in place. Each
//! value is kept for as long as its owner lives instead, in an append-only
//! vector ([`boxcar`]), and an index says which is current. Reading it is
//! one load and a branch while nothing was ever reloaded, one more load
//! after. Keeping every version costs memory only per reload that changed
//! the value (a policy is a few hundred bytes), and needs no `unsafe`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Acquire, Ordering::Release};

/// A value with its later versions: the latest is current.
pub(crate) struct Tunable<T> {
    /// 0 while the first value is current; `n` when `later[n - 1]` is.
    latest: AtomicUsize,
    first: T,
    later: OnceLock<Box<boxcar::Vec<T>>>,
}

impl<T> Tunable<T> {
    pub(crate) fn new(first: T) -> Self {
        Self {
            latest: AtomicUsize::new(0),
            first,
            later: OnceLock::new(),
        }
    }

    /// The current value.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        match self.latest.load(Acquire) {
            0 => &self.first,
            n => self.later(n),
        }
    }

    #[cold]
    fn later(&self, n: usize) -> &T {
        // Published only after it was pushed: both are there.
        self.later
            .get()
            .and_then(|later| later.get(n - 1))
            .unwrap_or(&self.first)
    }

    /// Makes `value` current. Calls already running keep the value they
    /// read. Writers are serialised by their caller (the runtime's reload).
    pub(crate) fn set(&self, value: T) {
        let later = self.later.get_or_init(Box::default);
        let index = later.push(value);
        self.latest.store(index + 1, Release);
    }

    /// How many times it was replaced.
    #[cfg(test)]
    pub(crate) fn versions(&self) -> usize {
        self.latest.load(Acquire)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tunable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Tunable;

    #[test]
    fn the_latest_value_is_current_and_earlier_borrows_stay_valid() {
        let tunable = Tunable::new(String::from("first"));
        let first = tunable.get();
        tunable.set(String::from("second"));
        let second = tunable.get();
        tunable.set(String::from("third"));
        assert_eq!(first, "first");
        assert_eq!(second, "second");
        assert_eq!(tunable.get(), "third");
        assert_eq!(tunable.versions(), 2);
    }

    #[test]
    fn readers_on_other_threads_see_only_whole_values_in_order() {
        let tunable = Tunable::new(vec![0_u64; 8]);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    let mut last = 0;
                    for _ in 0..20_000 {
                        let value = tunable.get();
                        // Every element of one version is the same number,
                        // and versions only move forward.
                        assert!(value.iter().all(|v| *v == value[0]));
                        assert!(value[0] >= last);
                        last = value[0];
                    }
                });
            }
            for version in 1..=500_u64 {
                tunable.set(vec![version; 8]);
            }
        });
        assert_eq!(tunable.get()[0], 500);
    }
}
