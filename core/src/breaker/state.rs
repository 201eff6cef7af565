//! The breaker's state, packed into atomic words so that every transition is
//! one compare-and-swap.

use super::BreakerState;

// The state word: kind (3 bits) | epoch (12 bits) | probes admitted (10 bits)
// | milliseconds since the breaker's base instant (39 bits: open-until while
// open, entered-at while half-open). The epoch changes on every transition,
// so a call admitted in one state never records into the next.
const KIND_BITS: u32 = 3;
const EPOCH_BITS: u32 = 12;
const ADMITTED_BITS: u32 = 10;
const EPOCH_SHIFT: u32 = KIND_BITS;
const ADMITTED_SHIFT: u32 = EPOCH_SHIFT + EPOCH_BITS;
const MS_SHIFT: u32 = ADMITTED_SHIFT + ADMITTED_BITS;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;
pub(super) const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const ADMITTED_MASK: u64 = (1 << ADMITTED_BITS) - 1;
const MS_MAX: u64 = (1 << (64 - MS_SHIFT)) - 1;
/// One more admitted probe.
pub(super) const ONE_PROBE: u64 = 1 << ADMITTED_SHIFT;

pub(super) const CLOSED: u64 = 0;
pub(super) const OPEN: u64 = 1;
pub(super) const HALF_OPEN: u64 = 2;
pub(super) const FORCED_OPEN: u64 = 3;
pub(super) const DISABLED: u64 = 4;
pub(super) const METRICS_ONLY: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Word(pub(super) u64);

impl Word {
    pub(super) fn new(kind: u64, epoch: u64, admitted: u64, ms: u64) -> Self {
        Self(
            kind | (epoch & EPOCH_MASK) << EPOCH_SHIFT
                | (admitted & ADMITTED_MASK) << ADMITTED_SHIFT
                | ms.min(MS_MAX) << MS_SHIFT,
        )
    }

    #[inline]
    pub(super) fn kind(self) -> u64 {
        self.0 & KIND_MASK
    }

    #[inline]
    pub(super) fn epoch(self) -> u64 {
        (self.0 >> EPOCH_SHIFT) & EPOCH_MASK
    }

    pub(super) fn admitted(self) -> u64 {
        (self.0 >> ADMITTED_SHIFT) & ADMITTED_MASK
    }

    pub(super) fn ms(self) -> u64 {
        self.0 >> MS_SHIFT
    }

    /// The word of the next state: a new epoch.
    pub(super) fn next(self, kind: u64, admitted: u64, ms: u64) -> Self {
        Self::new(kind, self.epoch() + 1, admitted, ms)
    }

    pub(super) fn state(self) -> BreakerState {
        match self.kind() {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            FORCED_OPEN => BreakerState::ForcedOpen,
            DISABLED => BreakerState::Disabled,
            METRICS_ONLY => BreakerState::MetricsOnly,
            _ => BreakerState::Closed,
        }
    }
}

/// The half-open probes' results: epoch (12 bits) | done (12) | failures
/// (12) | slow (12). A tally whose epoch is not the current one reads as
/// empty, so entering half-open needs no reset that could race with the
/// probes it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ProbeTally {
    pub(super) done: u64,
    pub(super) failures: u64,
    pub(super) slow: u64,
}

impl ProbeTally {
    pub(super) fn unpack(word: u64, epoch: u64) -> Self {
        if word & EPOCH_MASK != epoch {
            return Self {
                done: 0,
                failures: 0,
                slow: 0,
            };
        }
        Self {
            done: (word >> 12) & 0xfff,
            failures: (word >> 24) & 0xfff,
            slow: (word >> 36) & 0xfff,
        }
    }

    pub(super) fn pack(self, epoch: u64) -> u64 {
        epoch | self.done << 12 | self.failures << 24 | self.slow << 36
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_word_round_trips() {
        let word = Word::new(METRICS_ONLY, 4095, 1000, MS_MAX);
        assert_eq!(word.kind(), METRICS_ONLY);
        assert_eq!(word.epoch(), 4095);
        assert_eq!(word.admitted(), 1000);
        assert_eq!(word.ms(), MS_MAX);
        // The epoch wraps instead of spilling into the other fields, and the
        // time saturates.
        let next = word.next(OPEN, 0, u64::MAX);
        assert_eq!((next.epoch(), next.kind(), next.ms()), (0, OPEN, MS_MAX));
        assert_eq!(Word(word.0 - ONE_PROBE).admitted(), 999);
    }

    #[test]
    fn a_tally_of_another_epoch_reads_as_empty() {
        let tally = ProbeTally {
            done: 1000,
            failures: 7,
            slow: 999,
        };
        assert_eq!(ProbeTally::unpack(tally.pack(9), 9), tally);
        assert_eq!(ProbeTally::unpack(tally.pack(9), 10).done, 0);
    }
}
