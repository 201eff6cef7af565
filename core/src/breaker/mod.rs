//! The circuit breaker: stop calling a vendor that is failing, and find out
//! cheaply when it has recovered.
//!
//! Without a breaker, every caller of a dead vendor waits out its full
//! timeout (and its retries), holding a connection and a task the whole time;
//! enough of them and services that never touch that vendor go down too. A
//! breaker that has seen too many failures answers at once instead, and after
//! `open_for` lets a few probe calls through to decide whether to close again.
//!
//! ```text
//!            failure rate ≥ threshold            open_for elapsed
//!  Closed ─────────────────────────────▶ Open ─────────────────────▶ HalfOpen
//!    ▲                                    ▲                             │
//!    │        probes' failure rate < threshold (window reset)           │
//!    └──────────────────────────────────────────────────────────────────┤
//!                                         └─────────────────────────────┘
//!                                          probes' failure rate ≥ threshold
//! ```
//!
//! The state lives in one atomic word, and the window of recent outcomes in a
//! ring of atomics: admitting a call while closed is a single load, and
//! recording a success touches three atomics, reads no clock and allocates
//! nothing. The clock is read only while the breaker is open.
//!
//! ```
//! use seawall_core::{Breaker, BreakerPolicy, BreakerState, breaker::Outcome};
//!
//! let breaker = Breaker::new("crm.account", BreakerPolicy::new().with_window(4).with_min_calls(2))?;
//! for _ in 0..2 {
//!     let permit = breaker.try_acquire().expect("closed");
//!     permit.record(Outcome::Failure);
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(breaker.try_acquire().is_err());
//! # Ok::<(), seawall_core::PolicyError>(())
//! ```

mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{BreakerTransition, Event, Subscribers};
use crate::{BreakerPolicy, PolicyError};
use window::CountWindow;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through; outcomes are recorded in the window.
    Closed,
    /// Calls are rejected at once until `open_for` has passed.
    Open,
    /// A limited number of probe calls go through; the rest are rejected.
    HalfOpen,
}

impl BreakerState {
    /// A short lowercase name for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call admitted by the breaker ended, as far as the breaker cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The vendor answered (a permanent client error is an answer too).
    Success,
    /// The vendor failed: a retryable error, a vendor fault or a timeout.
    Failure,
    /// Neither: the permit is freed and nothing is recorded.
    Ignored,
}

impl Outcome {
    /// The outcome the breaker records for an error of this class.
    pub const fn of(class: crate::ErrorClass) -> Self {
        if class.is_failure() {
            Self::Failure
        } else if matches!(class, crate::ErrorClass::Ignored) {
            Self::Ignored
        } else {
            Self::Success
        }
    }
}

/// A breaker's refusal to let a call through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// How long until the breaker lets a call through again. Zero while
    /// half-open with every probe in flight: their outcome is due within one
    /// attempt's timeout.
    pub retry_in: Duration,
}

// The state word: kind (2 bits) | epoch (12 bits) | probes admitted (10 bits)
// | milliseconds since `base` (40 bits: open-until while open, entered-at
// while half-open). The epoch changes on every transition, so a call admitted
// in one state never records into the next.
const KIND_BITS: u32 = 2;
const EPOCH_BITS: u32 = 12;
const ADMITTED_BITS: u32 = 10;
const EPOCH_SHIFT: u32 = KIND_BITS;
const ADMITTED_SHIFT: u32 = EPOCH_SHIFT + EPOCH_BITS;
const MS_SHIFT: u32 = ADMITTED_SHIFT + ADMITTED_BITS;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const ADMITTED_MASK: u64 = (1 << ADMITTED_BITS) - 1;
const MS_MAX: u64 = (1 << (64 - MS_SHIFT)) - 1;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(kind: u64, epoch: u64, admitted: u64, ms: u64) -> Self {
        Self(
            kind | (epoch & EPOCH_MASK) << EPOCH_SHIFT
                | (admitted & ADMITTED_MASK) << ADMITTED_SHIFT
                | ms.min(MS_MAX) << MS_SHIFT,
        )
    }
    fn kind(self) -> u64 {
        self.0 & ((1 << KIND_BITS) - 1)
    }
    fn epoch(self) -> u64 {
        (self.0 >> EPOCH_SHIFT) & EPOCH_MASK
    }
    fn admitted(self) -> u64 {
        (self.0 >> ADMITTED_SHIFT) & ADMITTED_MASK
    }
    fn ms(self) -> u64 {
        self.0 >> MS_SHIFT
    }
    fn next(self, kind: u64, admitted: u64, ms: u64) -> Self {
        Self::new(kind, self.epoch() + 1, admitted, ms)
    }
    fn state(self) -> BreakerState {
        match self.kind() {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

// The half-open probes' results: epoch (12 bits) | done (12) | failures (12).
// A tally whose epoch is not the current one counts as empty, so entering
// half-open needs no reset that could race with admitted probes.
#[derive(Clone, Copy)]
struct ProbeTally(u64);

impl ProbeTally {
    fn of_epoch(self, epoch: u64) -> (u64, u64) {
        if self.0 & EPOCH_MASK == epoch {
            ((self.0 >> 12) & 0xfff, (self.0 >> 24) & 0xfff)
        } else {
            (0, 0)
        }
    }
    fn new(epoch: u64, done: u64, failures: u64) -> Self {
        Self(epoch | done << 12 | failures << 24)
    }
}

/// A circuit breaker guarding one vendor endpoint (or several, when shared by
/// name).
///
/// Usually built by the [`Runtime`](crate::Runtime) from a method's policy;
/// usable on its own through [`try_acquire`](Self::try_acquire) and
/// [`Permit::record`].
pub struct Breaker {
    name: Arc<str>,
    policy: BreakerPolicy,
    threshold_ppm: u64,
    state: AtomicU64,
    probe_tally: AtomicU64,
    window: CountWindow,
    base: Instant,
    subscribers: Arc<Subscribers>,
}

impl Breaker {
    /// A closed breaker.
    ///
    /// # Errors
    ///
    /// The errors of [`BreakerPolicy::validate`].
    pub fn new(name: impl Into<Arc<str>>, policy: BreakerPolicy) -> Result<Self, PolicyError> {
        Self::with_subscribers(name.into(), policy, Arc::default())
    }

    pub(crate) fn with_subscribers(
        name: Arc<str>,
        policy: BreakerPolicy,
        subscribers: Arc<Subscribers>,
    ) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Self {
            threshold_ppm: (policy.failure_rate * 1_000_000.0).round() as u64,
            window: CountWindow::new(policy.window),
            name,
            policy,
            state: AtomicU64::new(Word::new(CLOSED, 0, 0, 0).0),
            probe_tally: AtomicU64::new(0),
            base: Instant::now(),
            subscribers,
        })
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// The current state. An open breaker whose `open_for` has passed still
    /// reads [`BreakerState::Open`] until a call arrives to probe the vendor.
    pub fn state(&self) -> BreakerState {
        Word(self.state.load(Acquire)).state()
    }

    /// The failures and calls currently in the closed-state window.
    pub fn window(&self) -> (u64, u64) {
        let tally = self.window.tally();
        (tally.failures, tally.calls)
    }

    /// Asks to let one call through.
    ///
    /// # Errors
    ///
    /// [`Rejected`] while open, or while half-open with every probe admitted.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let mut word = Word(self.state.load(Acquire));
        loop {
            match word.kind() {
                CLOSED => return Ok(self.permit(word.epoch(), false)),
                OPEN => {
                    let now = self.elapsed();
                    let until = Duration::from_millis(word.ms());
                    if now < until {
                        return Err(Rejected {
                            retry_in: until - now,
                        });
                    }
                    // The wait is over: this call becomes the first probe.
                    let next = word.next(HALF_OPEN, 1, now.as_millis() as u64);
                    match self.swap(word, next) {
                        Ok(()) => return Ok(self.permit(next.epoch(), true)),
                        Err(actual) => word = actual,
                    }
                }
                _ => {
                    if word.admitted() >= u64::from(self.policy.probes) {
                        return Err(Rejected {
                            retry_in: Duration::ZERO,
                        });
                    }
                    let next = Word(word.0 + (1 << ADMITTED_SHIFT));
                    match self
                        .state
                        .compare_exchange_weak(word.0, next.0, AcqRel, Acquire)
                    {
                        Ok(_) => return Ok(self.permit(word.epoch(), true)),
                        Err(actual) => word = Word(actual),
                    }
                }
            }
        }
    }

    /// While open, how long until calls are let through again; `None` when
    /// closed or half-open. The retry loop asks this after a failure so an
    /// opened breaker ends it at once instead of after a pointless backoff.
    pub fn open_for_now(&self) -> Option<Duration> {
        let word = Word(self.state.load(Acquire));
        if word.kind() != OPEN {
            return None;
        }
        let until = Duration::from_millis(word.ms());
        let now = self.elapsed();
        (now < until).then(|| until - now)
    }

    fn permit(&self, epoch: u64, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            epoch,
            probe,
            recorded: false,
        }
    }

    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.base)
    }

    /// Milliseconds since `base` at which an opening now ends, rounded up so
    /// the breaker never half-opens early.
    fn open_until(&self) -> u64 {
        let until = self.elapsed() + self.policy.open_for;
        until.as_nanos().div_ceil(1_000_000) as u64
    }

    fn trips(&self, failures: u64, calls: u64) -> bool {
        failures > 0 && failures * 1_000_000 >= self.threshold_ppm * calls
    }

    fn record(&self, epoch: u64, probe: bool, outcome: Outcome) {
        if probe {
            self.record_probe(epoch, outcome);
            return;
        }
        if outcome == Outcome::Ignored {
            return;
        }
        let word = Word(self.state.load(Acquire));
        if word.kind() != CLOSED || word.epoch() != epoch {
            return; // admitted before the last transition: no longer relevant
        }
        let tally = self.window.record(outcome == Outcome::Failure);
        if tally.calls >= u64::from(self.policy.min_calls)
            && self.trips(tally.failures, tally.calls)
        {
            let _ = self.swap(word, word.next(OPEN, 0, self.open_until()));
        }
    }

    fn record_probe(&self, epoch: u64, outcome: Outcome) {
        if outcome == Outcome::Ignored {
            // Free the probe's slot so another call can probe instead.
            let _ = self.state.fetch_update(AcqRel, Acquire, |w| {
                let word = Word(w);
                (word.kind() == HALF_OPEN && word.epoch() == epoch && word.admitted() > 0)
                    .then(|| w - (1 << ADMITTED_SHIFT))
            });
            return;
        }
        let failed = u64::from(outcome == Outcome::Failure);
        let probes = u64::from(self.policy.probes);
        let Ok(previous) = self.probe_tally.fetch_update(AcqRel, Acquire, |t| {
            let (done, failures) = ProbeTally(t).of_epoch(epoch);
            (done < probes).then(|| ProbeTally::new(epoch, done + 1, failures + failed).0)
        }) else {
            return;
        };
        let (done, failures) = ProbeTally(previous).of_epoch(epoch);
        if done + 1 < probes {
            return;
        }
        // The last probe is in: judge the vendor on the probes alone.
        let word = Word(self.state.load(Acquire));
        if word.kind() != HALF_OPEN || word.epoch() != epoch {
            return;
        }
        if self.trips(failures + failed, probes) {
            let _ = self.swap(word, word.next(OPEN, 0, self.open_until()));
        } else {
            self.window.reset();
            let _ = self.swap(word, word.next(CLOSED, 0, 0));
        }
    }

    /// Publishes a transition; reports it only if this call made it.
    fn swap(&self, from: Word, to: Word) -> Result<(), Word> {
        match self.state.compare_exchange(from.0, to.0, AcqRel, Acquire) {
            Ok(_) => {
                self.announce(from.state(), to.state());
                Ok(())
            }
            Err(actual) => Err(Word(actual)),
        }
    }

    fn announce(&self, from: BreakerState, to: BreakerState) {
        if to == BreakerState::Open {
            tracing::warn!(target: "seawall::breaker", breaker = %self.name, %from, %to, "circuit breaker opened");
        } else {
            tracing::info!(target: "seawall::breaker", breaker = %self.name, %from, %to, "circuit breaker changed state");
        }
        self.subscribers.emit(&Event::Breaker(BreakerTransition {
            breaker: self.name.clone(),
            from,
            to,
            at: Instant::now(),
        }));
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (failures, calls) = self.window();
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .field("failures", &failures)
            .field("calls", &calls)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Leave to make one call, from [`Breaker::try_acquire`].
///
/// Report how the call ended with [`record`](Self::record). A permit dropped
/// without a record (its call was cancelled) counts as
/// [`Outcome::Ignored`]: a half-open probe slot is freed for another call.
#[must_use = "a permit records nothing unless told how the call ended"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    epoch: u64,
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Whether this call is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records how the call ended.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.epoch, self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker
                .record(self.epoch, self.probe, Outcome::Ignored);
        }
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name)
            .field("probe", &self.probe)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_word_round_trips() {
        let word = Word::new(HALF_OPEN, 4095, 1000, (1 << 40) - 1);
        assert_eq!(word.kind(), HALF_OPEN);
        assert_eq!(word.epoch(), 4095);
        assert_eq!(word.admitted(), 1000);
        assert_eq!(word.ms(), (1 << 40) - 1);
        // The epoch wraps instead of spilling into the other fields.
        assert_eq!(word.next(OPEN, 0, 5).epoch(), 0);
        assert_eq!(word.next(OPEN, 0, 5).kind(), OPEN);
    }
}
