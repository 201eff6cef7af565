//! The local half of a breaker shared by a fleet: what the breaker reports
//! to the fleet's store and how it takes on the fleet's decisions.
//!
//! The breaker itself never waits on the store. A background task (see
//! `crate::fleet`) calls [`Breaker::fleet_report`] at each sync, sends the
//! report to the store in one atomic script, and hands the answer to
//! [`Breaker::adopt`]. Between syncs the breaker runs on its own atomics,
//! exactly as an unshared one:
//!
//! - **Closed.** Admission and recording stay local. The breaker may still
//!   open on its own window (its own path to the vendor may be broken); the
//!   fleet opens every replica only on the fleet's counts.
//! - **Open by the fleet.** The breaker holds open for what the fleet says is
//!   left of its open period ("governed" below).
//! - **Half-open by the fleet.** The breaker lets through only the probes the
//!   fleet granted *this* replica (an atomic count in the store, so the whole
//!   fleet sends `probes` probes per half-open period); other calls are
//!   refused and asked for at the next sync. The fleet judges the probes; the
//!   breaker does not judge them itself.
//!
//! When the store cannot be reached the link stops governing, and an open or
//! half-open breaker runs its cycle on local rules until the store answers
//! again.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};
use std::time::Duration;

use tokio::sync::Notify;

use super::Breaker;
use super::state::{CLOSED, HALF_OPEN, OPEN, ProbeTally};
use super::window::Tally;

/// What the fleet decided, as one sync's answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FleetState {
    Closed,
    /// Open for `remaining` more.
    Open {
        remaining: Duration,
    },
    /// Half-open, with `granted` probes granted to this replica.
    HalfOpen {
        granted: u64,
    },
}

/// One sync's answer: the fleet's state and its epoch (a number that
/// changes with every fleet transition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) state: FleetState,
    pub(crate) epoch: u64,
    /// The epoch the fleet's state began at: another one means the store
    /// lost it (emptied, or restarted without persistence).
    pub(crate) born: u64,
}

/// What a replica tells the fleet at a sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// The fleet epoch this replica last took on: a tally reported under
    /// an older epoch is not counted (it was measured before a decision).
    pub(crate) epoch: u64,
    /// The local window (zeros unless closed).
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
    pub(crate) run: u64,
    /// Calls refused while half-open for want of a probe: asks for probes.
    pub(crate) want: u64,
    /// This replica's probes in the fleet's half-open period `epoch`.
    pub(crate) probes_admitted: u64,
    pub(crate) probes_done: u64,
    pub(crate) probe_failures: u64,
    pub(crate) probe_slow: u64,
}

/// The fleet's hold on one local breaker.
pub(crate) struct FleetLink {
    /// Whether the current open or half-open period is the fleet's.
    governs: AtomicBool,
    /// The fleet epoch last taken on (0: none yet).
    epoch: AtomicU64,
    /// The `born` of the fleet state last seen (0: none yet).
    born: AtomicU64,
    /// Probes the fleet granted this replica in its half-open period.
    granted: AtomicU64,
    /// Calls refused for want of a probe since the last sync.
    want: AtomicU64,
    /// How often the link syncs: what a refused caller is told to wait.
    pub(crate) every: Duration,
    /// Wakes the sync task early: the breaker opened on its own, or a probe
    /// finished.
    pub(crate) nudge: Notify,
}

impl FleetLink {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            governs: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            born: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            want: AtomicU64::new(0),
            every,
            nudge: Notify::new(),
        }
    }

    pub(crate) fn governs(&self) -> bool {
        self.governs.load(Acquire)
    }
}

impl Breaker {
    /// Puts the breaker under a fleet's sync (once; later calls do nothing).
    pub(crate) fn link_to_fleet(&self, every: Duration) -> Option<&FleetLink> {
        let _ = self.fleet.set(FleetLink::new(every));
        self.fleet.get()
    }

    /// The link, if the breaker is shared by a fleet.
    pub(crate) fn fleet_link(&self) -> Option<&FleetLink> {
        self.fleet.get()
    }

    /// The link, if the breaker is shared and the fleet governs it now.
    #[inline]
    pub(super) fn governed(&self) -> Option<&FleetLink> {
        self.fleet.get().filter(|link| link.governs())
    }

    /// How many probes a half-open breaker may admit now: those the fleet
    /// granted this replica while it governs, else the policy's.
    pub(super) fn probe_cap(&self) -> u64 {
        match self.governed() {
            Some(link) => link.granted.load(Acquire),
            None => u64::from(self.policy().probes()),
        }
    }

    /// A call refused for want of a probe: ask the fleet for one at the
    /// next sync, which is also when to come back.
    pub(super) fn wants_probe(&self) -> Option<Duration> {
        let link = self.governed()?;
        link.want.fetch_add(1, AcqRel);
        link.nudge.notify_one();
        Some(link.every)
    }

    /// What to send the fleet at a sync.
    pub(crate) fn fleet_report(&self) -> Report {
        let Some(link) = self.fleet.get() else {
            return Report::default();
        };
        let word = self.current();
        let mut report = Report {
            epoch: link.epoch.load(Acquire),
            want: link.want.swap(0, AcqRel),
            ..Report::default()
        };
        match word.kind() {
            // The window as it stands, also when this replica opened on its
            // own (it holds what opened it until it closes).
            CLOSED | OPEN | HALF_OPEN if !link.governs() => {
                let Tally {
                    calls,
                    failures,
                    slow,
                    run,
                } = self.window.tally(self.nanos());
                (report.calls, report.failures, report.slow, report.run) =
                    (calls, failures, slow, run);
            }
            HALF_OPEN if link.governs() => {
                let probes = ProbeTally::unpack(self.probe_tally.load(Acquire), word.epoch());
                report.probes_admitted = word.admitted();
                report.probes_done = probes.done;
                report.probe_failures = probes.failures;
                report.probe_slow = probes.slow;
            }
            _ => {}
        }
        report
    }

    /// The store could not be reached (or an operator set a state here):
    /// the breaker runs on local rules until the next answer.
    pub(crate) fn let_go_of_fleet(&self) {
        if let Some(link) = self.fleet.get() {
            link.governs.store(false, Release);
        }
    }

    /// Takes on the fleet's decision from a sync's answer. A state an
    /// operator set on this replica (forced open, disabled, metrics-only)
    /// is left alone: the operator's word is local and wins.
    pub(crate) fn adopt(&self, seen: Seen) {
        let Some(link) = self.fleet.get() else {
            return;
        };
        let born = link.born.swap(seen.born, AcqRel);
        let previous = link.epoch.swap(seen.epoch, AcqRel);
        if born != 0 && born != seen.born {
            // The store lost the fleet's state: what this replica holds is
            // the best knowledge left. Keep it, as local state; the next
            // sync reports it and the fleet decides afresh.
            link.granted.store(0, Release);
            link.governs.store(false, Release);
            return;
        }
        let new_epoch = previous != seen.epoch;
        if new_epoch {
            link.granted.store(0, Release);
        }
        let mut word = self.current();
        loop {
            if !matches!(word.kind(), CLOSED | OPEN | HALF_OPEN) {
                link.governs.store(false, Release);
                return;
            }
            let governs = link.governs();
            if !governs && !new_epoch && seen.state != FleetState::Closed {
                // This replica let go of this period (an operator set a
                // state here, or Redis was away): it follows the fleet
                // again from its next decision.
                return;
            }
            let next = match seen.state {
                FleetState::Open { remaining } => {
                    if governs && !new_epoch && word.kind() == OPEN {
                        return; // already holding this open period
                    }
                    if governs && !new_epoch && word.kind() == HALF_OPEN {
                        return; // the local wait ran out first; the fleet follows
                    }
                    let until = self.open_until(self.elapsed(), remaining);
                    word.next(OPEN, 0, until)
                }
                FleetState::HalfOpen { granted } => {
                    link.granted.store(granted, Release);
                    if governs && word.kind() == HALF_OPEN {
                        return;
                    }
                    word.next(HALF_OPEN, 0, 0)
                }
                FleetState::Closed => {
                    if new_epoch && previous != 0 && word.kind() == CLOSED {
                        // The fleet decided since this replica's window
                        // began (a recovery, or a store that was emptied):
                        // start it again, as a local close does.
                        self.window.reset();
                    }
                    if !governs || word.kind() == CLOSED {
                        link.governs.store(false, Release);
                        return;
                    }
                    word.next(CLOSED, 0, 0)
                }
            };
            if next.kind() == CLOSED {
                self.window.reset();
                self.reopens.store(0, Relaxed);
            }
            // Governing before the transition is visible: a caller that sees
            // the new state also sees whose it is.
            link.governs.store(next.kind() != CLOSED, Release);
            match self.transition(word, next, None) {
                Ok(()) => {
                    if next.kind() == OPEN {
                        tracing::debug!(target: "seawall::breaker", breaker = %self.name, "opened by the fleet");
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }
}
