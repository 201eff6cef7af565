use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// The outcomes of the last `N` calls, kept in a ring of atomics.
///
/// Recording is one `fetch_add` on the cursor, one `swap` of the slot and, only
/// when the slot changes between success and failure, one add to the failure
/// count: no lock, no allocation, no clock. Under concurrent recording the
/// failure count can lag the ring by the calls in flight, which moves a rate by
/// at most those few calls; it never drifts, because each slot change is
/// counted exactly once.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    failures: AtomicI64,
}

/// What the window holds right after a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            slots: (0..size.max(1)).map(|_| AtomicU8::new(EMPTY)).collect(),
            cursor: AtomicU64::new(0),
            failures: AtomicI64::new(0),
        }
    }

    pub(crate) fn record(&self, failure: bool) -> Tally {
        let len = self.slots.len() as u64;
        let index = self.cursor.fetch_add(1, Relaxed);
        let new = if failure { FAILURE } else { SUCCESS };
        let old = self.slots[(index % len) as usize].swap(new, Relaxed);
        let failures = match (old == FAILURE, failure) {
            (true, false) => self.failures.fetch_sub(1, Relaxed) - 1,
            (false, true) => self.failures.fetch_add(1, Relaxed) + 1,
            _ => self.failures.load(Relaxed),
        };
        Tally {
            calls: (index + 1).min(len),
            failures: failures.max(0) as u64,
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        let len = self.slots.len() as u64;
        Tally {
            calls: self.cursor.load(Relaxed).min(len),
            failures: self.failures.load(Relaxed).max(0) as u64,
        }
    }

    /// Empties the window. Called only while no call records into it (the
    /// breaker is half-open, and closed-state permits of older epochs are
    /// turned away before they reach the window).
    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(EMPTY, Relaxed);
        }
        self.failures.store(0, Relaxed);
        self.cursor.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_n_outcomes() {
        let window = CountWindow::new(4);
        for failure in [true, true, false, false] {
            window.record(failure);
        }
        assert_eq!(
            window.tally(),
            Tally {
                calls: 4,
                failures: 2
            }
        );
        // Two successes push both failures out.
        window.record(false);
        let tally = window.record(false);
        assert_eq!(
            tally,
            Tally {
                calls: 4,
                failures: 0
            }
        );
        window.reset();
        assert_eq!(
            window.tally(),
            Tally {
                calls: 0,
                failures: 0
            }
        );
        assert_eq!(
            window.record(true),
            Tally {
                calls: 1,
                failures: 1
            }
        );
    }
}
