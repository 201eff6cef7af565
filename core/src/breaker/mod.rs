//! The circuit breaker: stop calling a vendor that is failing, and find out
//! cheaply when it has recovered.
//!
//! Without a breaker, every caller of a dead vendor waits out its full
//! timeout (and its retries), holding a connection and a task the whole time;
//! enough of them and services that never touch that vendor go down too. A
//! breaker that has seen too many failures (or too many slow calls) answers
//! at once instead, and after `open_for` lets a few probe calls through to
//! decide whether to close again.
//!
//! ```text
//!     failure or slow rate ≥ threshold over ≥ min_calls,
//!     or consecutive_failures in a row                       open_for elapsed
//!  Closed ──────────────────────────────────────────▶ Open ─────────────────▶ HalfOpen
//!    ▲                                                 ▲                         │
//!    │        probes' rates under the thresholds (window reset)                 │
//!    └───────────────────────────────────────────────────────────────────────────┤
//!                                                      └─────────────────────────┘
//!          probes' rates at a threshold, or half_open_max elapsed since the first
//!          probe with probes still out (they count as failed)
//! ```
//!
//! What the breaker judges are vendor *attempts*: with a retry policy, each
//! attempt of a call is one entry of the window.
//!
//! Why two rules. A rate over a window is the right measure of a vendor that
//! fails some of the time, but a window small enough to react within a few
//! attempts is one that crosses 50 % by chance: at a 30 % failure rate, a
//! window of 20 judged from 10 calls opened 16 to 21 times per 10 000 calls.
//! The default window (100 attempts, judged from 100) almost never crosses
//! by chance, and a run of `consecutive_failures` (10) catches a hard outage
//! within ten attempts, long before the large window turns: ten failures in a
//! row happen by chance with probability `p¹⁰`, 6·10⁻⁶ at `p` = 0.3.
//!
//! The state is read as of now: an open period that has run out reads
//! half-open, and a half-open period past `half_open_max` is judged, by any
//! read ([`state`](Breaker::state), [`metrics`](Breaker::metrics),
//! [`retry_in`](Breaker::retry_in)) as by a call. Inside a tokio runtime, a
//! breaker built by the [`Runtime`](crate::Runtime) also wakes itself at
//! those moments, so subscribers and the state gauge see the change without
//! a call or a read.
//!
//! Besides the automatic states an operator can hold a breaker
//! [forced open](Breaker::force_open), open [for a while](Breaker::force_open_for),
//! [disable](Breaker::disable) it (everything passes, nothing is recorded),
//! run it [metrics-only](Breaker::metrics_only) (everything passes, rates are
//! recorded and a crossing is reported) or [reset](Breaker::reset) it.
//!
//! The state lives in one atomic word, and the window of recent outcomes in
//! atomics: admitting a call while closed is one load, and recording a
//! success into a count window touches a few atomics, reads no clock and
//! allocates nothing. The clock is read while open or half-open, for time
//! windows and for slow-call detection.
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

// Without the `redis` feature no fleet links a breaker: the link is always
// empty, and only its checks on the slow paths remain.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
mod fleet;
mod state;
mod window;

pub(crate) use fleet::FleetLink;
#[cfg(feature = "redis")]
pub(crate) use fleet::{FleetState, Report, Seen};

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{BreakerRateCrossed, BreakerTransition, Event, OpenedBy, Subscribers};
use crate::tunable::Tunable;
use crate::{BreakerPolicy, ErrorClass, PolicyError};
use state::{
    CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, METRICS_ONLY, ONE_PROBE, OPEN, ProbeTally, Word,
};
use window::{Ring, Tally};

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through; outcomes are recorded and judged.
    Closed,
    /// Calls are rejected at once until `open_for` (or the hold of
    /// [`Breaker::force_open_for`]) has passed.
    Open,
    /// A limited number of probe calls go through; the rest are rejected.
    HalfOpen,
    /// Held open by [`Breaker::force_open`]: every call is rejected until
    /// [`Breaker::reset`].
    ForcedOpen,
    /// Turned off by [`Breaker::disable`]: every call goes through and
    /// nothing is recorded.
    Disabled,
    /// Set by [`Breaker::metrics_only`]: every call goes through; outcomes
    /// are recorded and a rate crossing its threshold is reported, never
    /// acted on.
    MetricsOnly,
}

impl BreakerState {
    /// A short lowercase name for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
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
    /// The vendor answered (a permanent client error is an answer too,
    /// unless the policy counts it as a failure).
    Success,
    /// The vendor failed.
    Failure,
    /// Neither: nothing is recorded, and a half-open probe's slot is freed
    /// for another call.
    Ignored,
}

/// A breaker's refusal to let a call through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// How long until the breaker lets a call through again: while open,
    /// until it half-opens; while half-open with every probe out, until
    /// `half_open_max` runs out at the latest. `None` while forced open: only
    /// [`Breaker::reset`] lets calls through again.
    pub retry_in: Option<Duration>,
}

/// A breaker's counts and rates, for health views and status pages.
///
/// Closed, open or metrics-only, the counts are the window's; half-open,
/// they are the probes' that have reported.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The breaker's name.
    pub name: String,
    /// Its state, as of now.
    pub state: BreakerState,
    /// Calls counted (attempts, with retries).
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them (zero unless the policy sets `slow`).
    pub slow_calls: u64,
    /// Failed calls in a row, up to now (closed or metrics-only).
    pub consecutive_failures: u64,
    /// `failures / calls`, once there are enough calls to judge: `min_calls`
    /// in the window, or every probe while half-open. `None` before, as
    /// Resilience4j reports "not yet known".
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, under the same condition.
    pub slow_rate: Option<f64>,
}

/// A circuit breaker guarding one vendor endpoint, or several when shared by
/// name.
///
/// Usually built by the [`Runtime`](crate::Runtime) from a method's policy
/// and listed by [`Runtime::breakers`](crate::Runtime::breakers); usable on
/// its own through [`try_acquire`](Self::try_acquire) and
/// [`Permit::record`].
pub struct Breaker {
    name: Arc<str>,
    /// Its policy and the thresholds it gives, replaced in place by a
    /// reload (the state and the window stay).
    tuning: Tunable<Thresholds>,
    state: AtomicU64,
    probe_tally: AtomicU64,
    /// Consecutive re-opens, for a growing open duration. Written only by
    /// the caller that wins a transition.
    reopens: AtomicU32,
    /// Whether a metrics-only breaker has reported its rate above a
    /// threshold (reset when the rate falls back under it).
    above: AtomicBool,
    window: Ring,
    base: Instant,
    subscribers: Arc<Subscribers>,
    /// Itself, for the timers that settle an expired open or half-open
    /// period (set by the runtime, which holds breakers in an `Arc`).
    this: OnceLock<Weak<Breaker>>,
    /// Set when the breaker is shared by a fleet (see [`fleet`]).
    fleet: OnceLock<FleetLink>,
}

/// A breaker policy and what the hot path reads of it.
#[derive(Debug)]
struct Thresholds {
    policy: BreakerPolicy,
    failure_ppm: u64,
    slow_ppm: u64,
    slow_after: Option<Duration>,
    /// The run of failures that opens it; `u64::MAX` when that rule is off.
    run_limit: u64,
}

impl Thresholds {
    fn new(policy: BreakerPolicy) -> Self {
        Self {
            failure_ppm: ppm(policy.failure_rate()),
            slow_ppm: ppm(policy.slow_rate()),
            slow_after: policy.slow(),
            run_limit: policy.consecutive_failures().map_or(u64::MAX, u64::from),
            policy,
        }
    }
}

fn ppm(rate: f64) -> u64 {
    (rate * 1_000_000.0).round() as u64
}

/// A timer further out than this is not armed: reads still see the state
/// as of now.
const LONGEST_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

impl Breaker {
    /// A closed breaker.
    ///
    /// # Errors
    ///
    /// The first rule of [`BreakerPolicy::check`] the policy breaks.
    pub fn new(name: impl Into<Arc<str>>, policy: BreakerPolicy) -> Result<Self, PolicyError> {
        Self::with_subscribers(name.into(), policy, Arc::default())
    }

    pub(crate) fn with_subscribers(
        name: Arc<str>,
        policy: BreakerPolicy,
        subscribers: Arc<Subscribers>,
    ) -> Result<Self, PolicyError> {
        let mut errors = Vec::new();
        policy.check(&mut errors);
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        Ok(Self {
            window: Ring::new(policy.window()),
            name,
            tuning: Tunable::new(Thresholds::new(policy)),
            state: AtomicU64::new(Word::new(CLOSED, 0, 0, 0).0),
            probe_tally: AtomicU64::new(0),
            reopens: AtomicU32::new(0),
            above: AtomicBool::new(false),
            base: Instant::now(),
            subscribers,
            this: OnceLock::new(),
            fleet: OnceLock::new(),
        })
    }

    /// Lets the breaker arm timers that settle an expired open or half-open
    /// period on their own (inside a tokio runtime), so that subscribers see
    /// the transition when it is due rather than at the next call or read.
    pub(crate) fn wake_when_due(self: &Arc<Self>) {
        let _ = self.this.set(Arc::downgrade(self));
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The policy it enforces (as of the last reload).
    pub fn policy(&self) -> &BreakerPolicy {
        &self.tuning.get().policy
    }

    /// Enforces `policy` from now on, keeping the state, the window and
    /// the open period under way (a new `open_for` applies to the next
    /// opening). Only values a reload may change differ: the window's
    /// kind and size stay.
    pub(crate) fn retune(&self, policy: BreakerPolicy) {
        self.tuning.set(Thresholds::new(policy));
    }

    #[inline]
    fn thresholds(&self) -> &Thresholds {
        self.tuning.get()
    }

    /// The state as of now: an open breaker whose wait is over reads
    /// [`BreakerState::HalfOpen`], and a half-open one past `half_open_max`
    /// is judged first (its missing probes count as failed).
    pub fn state(&self) -> BreakerState {
        self.current().state()
    }

    /// The state with its counts and rates, as of now.
    pub fn metrics(&self) -> BreakerMetrics {
        let word = self.current();
        let (tally, judged_from) = if word.kind() == HALF_OPEN {
            let probes = ProbeTally::unpack(self.probe_tally.load(Acquire), word.epoch());
            let tally = Tally {
                calls: probes.done,
                failures: probes.failures,
                slow: probes.slow,
                run: 0,
            };
            (tally, u64::from(self.policy().probes()))
        } else {
            let tally = self.window.tally(self.nanos());
            (tally, u64::from(self.policy().min_calls()))
        };
        let judged = tally.calls > 0 && tally.calls >= judged_from;
        let rate = |part: u64| judged.then(|| part as f64 / tally.calls as f64);
        BreakerMetrics {
            name: self.name.to_string(),
            state: word.state(),
            calls: tally.calls,
            failures: tally.failures,
            slow_calls: tally.slow,
            consecutive_failures: tally.run,
            failure_rate: rate(tally.failures),
            slow_rate: rate(tally.slow),
        }
    }

    /// How the breaker records an error of `class`, under its policy.
    pub fn outcome_of(&self, class: ErrorClass) -> Outcome {
        if class == ErrorClass::Ignored {
            Outcome::Ignored
        } else if self.policy().failure_classes().contains(class) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// Asks to let one call through.
    ///
    /// # Errors
    ///
    /// [`Rejected`] while open or forced open, or while half-open with every
    /// probe admitted.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        // The common case, closed, is inlined into the caller; the rest is
        // not.
        match self.admit_closed() {
            Some(permit) => Ok(permit),
            None => self.try_acquire_slow(Word(self.state.load(Acquire))),
        }
    }

    /// A permit if the breaker is closed (or only measuring), else `None`:
    /// the fast path of [`try_acquire`](Self::try_acquire), for callers that
    /// keep the permit in a future. (An `Option<Permit>` is three words;
    /// moving it out of a `Result` that shares its space with the
    /// rejection's `Duration` measured slower.)
    #[inline]
    pub(crate) fn admit_closed(&self) -> Option<Permit<'_>> {
        let word = Word(self.state.load(Acquire));
        match word.kind() {
            CLOSED | METRICS_ONLY => Some(self.permit(word.epoch(), false)),
            _ => None,
        }
    }

    #[inline(never)]
    fn try_acquire_slow(&self, word: Word) -> Result<Permit<'_>, Rejected> {
        let mut word = self.settle(word);
        loop {
            match word.kind() {
                CLOSED | METRICS_ONLY => return Ok(self.permit(word.epoch(), false)),
                DISABLED => {
                    return Ok(Permit {
                        breaker: self,
                        started: NOT_TIMED,
                        tag: word.epoch() | RECORDED, // nothing to record
                    });
                }
                FORCED_OPEN => return Err(Rejected { retry_in: None }),
                OPEN => match ms(word.ms()).checked_sub(self.elapsed()) {
                    Some(left) if !left.is_zero() => {
                        return Err(Rejected {
                            retry_in: Some(left),
                        });
                    }
                    // The wait ran out since the word was settled.
                    _ => word = self.settle(word),
                },
                _ => {
                    let admitted = word.admitted();
                    if admitted >= self.probe_cap() {
                        // Shared by a fleet that governs it: the fleet's
                        // probes are elsewhere, or not granted yet.
                        if let Some(wait) = self.wants_probe() {
                            return Err(Rejected {
                                retry_in: Some(wait),
                            });
                        }
                        // Every probe is out; settling judged the period if
                        // `half_open_max` had passed.
                        let left = self.half_open_ends(word).saturating_sub(self.elapsed());
                        return Err(Rejected {
                            retry_in: Some(left),
                        });
                    }
                    // The first probe starts the half-open period's clock.
                    let next = if admitted == 0 {
                        Word::new(
                            HALF_OPEN,
                            word.epoch(),
                            1,
                            self.elapsed().as_millis() as u64,
                        )
                    } else {
                        Word(word.0 + ONE_PROBE)
                    };
                    match self.state.compare_exchange(word.0, next.0, AcqRel, Acquire) {
                        Ok(_) => {
                            if admitted == 0 {
                                self.wake_at(self.half_open_ends(next));
                            }
                            return Ok(self.permit(word.epoch(), true));
                        }
                        Err(actual) => word = self.settle(Word(actual)),
                    }
                }
            }
        }
    }

    /// Whether the breaker is rejecting calls right now: open with its wait
    /// not over, or forced open. The retry loop asks this after a failure so
    /// that an opened breaker ends it at once instead of after a pointless
    /// backoff.
    pub fn is_open(&self) -> bool {
        matches!(self.current().kind(), OPEN | FORCED_OPEN)
    }

    /// Whether it lets every call through now (closed, or only measuring):
    /// hedges go only then.
    pub(crate) fn is_closed(&self) -> bool {
        let word = Word(self.state.load(Acquire));
        matches!(word.kind(), CLOSED | METRICS_ONLY)
    }

    /// How long until an open breaker lets a call through again (the rest
    /// of `open_for`, or of a [`force_open_for`](Self::force_open_for)
    /// hold); `None` when it is not open, or is forced open with no end.
    pub fn retry_in(&self) -> Option<Duration> {
        let word = self.current();
        if word.kind() != OPEN {
            return None;
        }
        ms(word.ms()).checked_sub(self.elapsed())
    }

    /// Holds the breaker open: every call is rejected, with no automatic
    /// recovery, until [`reset`](Self::reset) (or another manual state).
    pub fn force_open(&self) {
        self.set(FORCED_OPEN, false, 0);
    }

    /// Holds the breaker open for `hold`, then returns it to the automatic
    /// cycle: it half-opens and lets its probes decide, as after `open_for`.
    /// Reads [`BreakerState::Open`] meanwhile, and
    /// [`retry_in`](Self::retry_in) reports what is left of the hold.
    pub fn force_open_for(&self, hold: Duration) {
        let until = self.open_until(self.elapsed(), hold);
        self.set(OPEN, false, until);
        self.wake_at(ms(until));
    }

    /// Turns the breaker off: every call goes through and nothing is
    /// recorded, until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.set(DISABLED, false, 0);
    }

    /// Records and reports without ever rejecting: a rate reaching its
    /// threshold is reported once (an [`Event::BreakerRate`] and a warning)
    /// until it falls back under it. Starts from an empty window.
    pub fn metrics_only(&self) {
        self.set(METRICS_ONLY, true, 0);
    }

    /// Back to closed, with an empty window and the first open duration.
    pub fn reset(&self) {
        self.set(CLOSED, true, 0);
    }

    fn set(&self, kind: u64, reset_window: bool, ms: u64) {
        self.let_go_of_fleet();
        let mut word = Word(self.state.load(Acquire));
        loop {
            if reset_window {
                self.window.reset();
                self.above.store(false, Relaxed);
            }
            self.reopens.store(0, Relaxed);
            let next = word.next(kind, 0, ms);
            match self.state.compare_exchange(word.0, next.0, AcqRel, Acquire) {
                Ok(_) => {
                    if word.kind() != kind {
                        self.announce(word.state(), next.state(), None);
                    }
                    return;
                }
                Err(actual) => word = Word(actual),
            }
        }
    }

    #[inline]
    fn permit(&self, epoch: u64, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            started: if self.thresholds().slow_after.is_some() {
                self.nanos()
            } else {
                NOT_TIMED
            },
            tag: epoch | if probe { PROBE } else { 0 },
        }
    }

    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.base)
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since `base` at which an opening of `open_for` starting
    /// at `from` ends, rounded up so that the breaker never half-opens
    /// early.
    fn open_until(&self, from: Duration, open_for: Duration) -> u64 {
        let until = from.saturating_add(open_for);
        u64::try_from(until.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// When a half-open period whose first probe was admitted at
    /// `word.ms()` gives up waiting for its probes.
    fn half_open_ends(&self, word: Word) -> Duration {
        ms(word.ms()).saturating_add(self.policy().half_open_max())
    }

    /// The state word as of now (see [`settle`](Self::settle)).
    #[inline]
    fn current(&self) -> Word {
        let word = Word(self.state.load(Acquire));
        match word.kind() {
            OPEN | HALF_OPEN => self.settle(word),
            _ => word,
        }
    }

    /// Makes the transitions that are due: an open period that has run out
    /// half-opens (no probe admitted yet), and a half-open period whose
    /// first probe was admitted `half_open_max` ago is judged with every
    /// probe still out counted as failed. Returns the word as of now.
    fn settle(&self, mut word: Word) -> Word {
        loop {
            let now = self.elapsed();
            let result = match word.kind() {
                OPEN if now >= ms(word.ms()) => {
                    self.transition(word, word.next(HALF_OPEN, 0, 0), None)
                }
                // The fleet judges its own half-open periods.
                HALF_OPEN
                    if word.admitted() > 0
                        && now >= self.half_open_ends(word)
                        && self.governed().is_none() =>
                {
                    let probes = ProbeTally::unpack(self.probe_tally.load(Acquire), word.epoch());
                    let outstanding = word.admitted().saturating_sub(probes.done);
                    let judged = Tally {
                        calls: word.admitted().max(probes.done),
                        failures: probes.failures + outstanding,
                        slow: probes.slow,
                        run: 0,
                    };
                    self.judge_probes(word, judged, self.half_open_ends(word))
                }
                _ => return word,
            };
            if let Err(actual) = result {
                word = actual;
            } else {
                word = Word(self.state.load(Acquire));
            }
        }
    }

    /// Whether a tally reaches a threshold (never before `min_calls`).
    fn trips(&self, tally: Tally, min_calls: u64) -> bool {
        if tally.calls < min_calls || tally.calls == 0 {
            return false;
        }
        let reaches =
            |part: u64, threshold: u64| part > 0 && part * 1_000_000 >= threshold * tally.calls;
        let thresholds = self.thresholds();
        reaches(tally.failures, thresholds.failure_ppm)
            || (thresholds.slow_after.is_some() && reaches(tally.slow, thresholds.slow_ppm))
    }

    /// Whether a fast success admitted closed in `epoch` would change
    /// nothing: the breaker is still closed in that epoch and its window is
    /// quiet (see [`record`](Self::record), which would read the same and
    /// return). Metrics-only breakers take the full path, which clears
    /// their crossing flag.
    #[inline]
    fn changes_nothing(&self, epoch: u64) -> bool {
        let word = Word(self.state.load(Acquire));
        word.kind() == CLOSED && word.epoch() == epoch && self.window.is_quiet()
    }

    fn record(&self, epoch: u64, probe: bool, started: u64, outcome: Outcome) {
        if outcome == Outcome::Ignored {
            if probe {
                self.free_probe(epoch);
            }
            return;
        }
        let failure = outcome == Outcome::Failure;
        let slow = match self.thresholds().slow_after {
            Some(after) if started != NOT_TIMED => {
                Duration::from_nanos(self.nanos().saturating_sub(started)) >= after
            }
            _ => false,
        };
        if probe {
            self.record_probe(epoch, failure, slow);
            return;
        }
        let word = Word(self.state.load(Acquire));
        if word.epoch() != epoch || !matches!(word.kind(), CLOSED | METRICS_ONLY) {
            return; // admitted before the last transition: no longer relevant
        }
        let now = if self.window.needs_clock() {
            self.nanos()
        } else {
            0
        };
        let tally = self.window.record(now, failure, slow);
        // A window with neither failures nor slow calls reaches no
        // threshold. (A success still counts: it may be the call that
        // completes `min_calls`, in a count window or a time window.)
        if tally.failures + tally.slow == 0 {
            if word.kind() == METRICS_ONLY {
                self.below();
            }
            return;
        }
        let thresholds = self.thresholds();
        let min_calls = u64::from(thresholds.policy.min_calls());
        let trips = self.trips(tally, min_calls) || tally.run >= thresholds.run_limit;
        if word.kind() == CLOSED {
            if trips {
                let open_for = self.policy().open_duration(0);
                let until = self.open_until(self.elapsed(), open_for);
                let _ = self.transition(word, word.next(OPEN, 0, until), Some(tally));
            }
        } else if trips {
            // Metrics-only: report the crossing once, never act on it.
            if !self.above.swap(true, Relaxed) {
                self.report_crossing(tally);
            }
        } else {
            self.below();
        }
    }

    /// A metrics-only breaker's rate is below its thresholds: the next
    /// crossing is reported again. Read first, so that a healthy breaker,
    /// which records this on every call, writes nothing shared.
    #[inline]
    fn below(&self) {
        if self.above.load(Relaxed) {
            self.above.store(false, Relaxed);
        }
    }

    fn free_probe(&self, epoch: u64) {
        let _ = self.state.fetch_update(AcqRel, Acquire, |w| {
            let word = Word(w);
            (word.kind() == HALF_OPEN && word.epoch() == epoch && word.admitted() > 0)
                .then(|| w - ONE_PROBE)
        });
    }

    fn record_probe(&self, epoch: u64, failure: bool, slow: bool) {
        let probes = u64::from(self.policy().probes());
        let Ok(previous) = self.probe_tally.fetch_update(AcqRel, Acquire, |t| {
            let tally = ProbeTally::unpack(t, epoch);
            (tally.done < probes).then(|| {
                ProbeTally {
                    done: tally.done + 1,
                    failures: tally.failures + u64::from(failure),
                    slow: tally.slow + u64::from(slow),
                }
                .pack(epoch)
            })
        }) else {
            return;
        };
        if let Some(link) = self.governed() {
            // The fleet judges the probes: the next sync reports this one.
            link.nudge.notify_one();
            return;
        }
        let previous = ProbeTally::unpack(previous, epoch);
        if previous.done + 1 < probes {
            return;
        }
        // The last probe is in: judge the vendor on the probes alone.
        let word = Word(self.state.load(Acquire));
        if word.kind() != HALF_OPEN || word.epoch() != epoch {
            return;
        }
        let judged = Tally {
            calls: probes,
            failures: previous.failures + u64::from(failure),
            slow: previous.slow + u64::from(slow),
            run: 0,
        };
        let _ = self.judge_probes(word, judged, self.elapsed());
    }

    /// Ends a half-open period on its probes' tally: open again (the next,
    /// possibly longer, open duration counted from `at`) if they reach a
    /// threshold, else closed with an empty window.
    fn judge_probes(&self, half_open: Word, probes: Tally, at: Duration) -> Result<(), Word> {
        if self.trips(probes, 1) {
            let reopens = self.reopens.load(Relaxed).saturating_add(1);
            let until = self.open_until(at, self.policy().open_duration(reopens));
            self.transition(half_open, half_open.next(OPEN, 0, until), None)?;
            self.reopens.store(reopens, Relaxed);
            Ok(())
        } else {
            // Emptied before the transition, so that calls admitted once it
            // is visible record into a fresh window; calls still in flight
            // from before are turned away by their epoch.
            self.window.reset();
            self.reopens.store(0, Relaxed);
            self.transition(half_open, half_open.next(CLOSED, 0, 0), None)
        }
    }

    /// Publishes a transition; announces it only if this call made it.
    /// `why` holds the window (and its run of failures) that opened a
    /// closed breaker.
    fn transition(&self, from: Word, to: Word, why: Option<Tally>) -> Result<(), Word> {
        match self.state.compare_exchange(from.0, to.0, AcqRel, Acquire) {
            Ok(_) => {
                self.announce(from.state(), to.state(), why);
                if to.kind() == OPEN {
                    self.wake_at(ms(to.ms()));
                    // Opened on this replica's own window: tell the fleet
                    // now rather than at the next tick.
                    if let Some(link) = self.fleet.get()
                        && !link.governs()
                    {
                        link.nudge.notify_one();
                    }
                }
                Ok(())
            }
            Err(actual) => Err(Word(actual)),
        }
    }

    /// Arms a timer that settles the breaker at `at` (since `base`), when
    /// the runtime allows it: see [`wake_when_due`](Self::wake_when_due).
    fn wake_at(&self, at: Duration) {
        let Some(this) = self.this.get() else {
            return;
        };
        if at.saturating_sub(self.elapsed()) > LONGEST_TIMER {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = this.clone();
        let deadline = self.base + at;
        runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(breaker) = this.upgrade() {
                let _ = breaker.current();
            }
        });
    }

    fn announce(&self, from: BreakerState, to: BreakerState, why: Option<Tally>) {
        let mut opened_by = None;
        match (to, why) {
            (BreakerState::Open, Some(tally)) => {
                let (failure_rate, slow_rate) = rates(tally);
                opened_by = Some(OpenedBy {
                    calls: tally.calls,
                    failures: tally.failures,
                    slow_calls: tally.slow,
                    failure_rate,
                    slow_rate,
                    consecutive_failures: tally.run,
                });
                tracing::warn!(
                    target: "seawall::breaker",
                    breaker = %self.name,
                    %from,
                    %to,
                    calls = tally.calls,
                    failures = tally.failures,
                    slow_calls = tally.slow,
                    failure_rate,
                    slow_rate,
                    consecutive_failures = tally.run,
                    "circuit breaker opened"
                );
            }
            (BreakerState::Open | BreakerState::ForcedOpen, _) => {
                tracing::warn!(target: "seawall::breaker", breaker = %self.name, %from, %to, "circuit breaker opened");
            }
            _ => {
                tracing::info!(target: "seawall::breaker", breaker = %self.name, %from, %to, "circuit breaker changed state");
            }
        }
        self.subscribers.emit(&Event::Breaker(BreakerTransition {
            breaker: self.name.clone(),
            from,
            to,
            at: Instant::now(),
            opened_by,
        }));
    }

    fn report_crossing(&self, tally: Tally) {
        let (failure_rate, slow_rate) = rates(tally);
        tracing::warn!(
            target: "seawall::breaker",
            breaker = %self.name,
            failure_rate,
            slow_rate,
            consecutive_failures = tally.run,
            "metrics-only circuit breaker would have opened"
        );
        self.subscribers
            .emit(&Event::BreakerRate(BreakerRateCrossed {
                breaker: self.name.clone(),
                failure_rate,
                slow_rate,
                at: Instant::now(),
            }));
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn rates(tally: Tally) -> (f64, f64) {
    let calls = tally.calls.max(1) as f64;
    (tally.failures as f64 / calls, tally.slow as f64 / calls)
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("metrics", &self.metrics())
            .field("policy", self.policy())
            .finish()
    }
}

/// Leave to make one call, from [`Breaker::try_acquire`].
///
/// Report how the call ended with [`record`](Self::record). A permit dropped
/// without a record (its call was cancelled, by a caller's own timeout or a
/// `select!`) records nothing while closed; a half-open probe dropped so
/// counts as failed at once. Cancelling probes therefore never lets more
/// than `probes` calls reach a vendor per half-open period: the caller gave
/// up on the vendor's answer, which is what a failure is to the breaker.
#[must_use = "a permit records nothing unless told how the call ended"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// When the call was admitted, in nanoseconds since the breaker's base,
    /// or [`NOT_TIMED`] when the policy counts no slow calls.
    started: u64,
    /// The epoch the call was admitted in, with the [`PROBE`] and
    /// [`RECORDED`] flags. (Word-sized fields only: the permit is returned
    /// and moved on every call, and copies of narrower fields measured
    /// slower.)
    tag: u64,
}

const NOT_TIMED: u64 = u64::MAX;
const PROBE: u64 = 1 << 62;
const RECORDED: u64 = 1 << 63;

impl Permit<'_> {
    /// Whether this call is one of the half-open probes.
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.tag & PROBE != 0
    }

    #[inline]
    fn epoch(&self) -> u64 {
        self.tag & state::EPOCH_MASK
    }

    fn report(&mut self, outcome: Outcome) {
        if self.tag & RECORDED == 0 {
            self.tag |= RECORDED;
            self.breaker
                .record(self.epoch(), self.is_probe(), self.started, outcome);
        }
    }

    /// Records how the call ended.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        // The healthy path inline: a fast success of a call admitted while
        // closed, into a window it would not change, records nothing (the
        // same reads, in the same order, as `Breaker::record`, without the
        // call).
        if outcome == Outcome::Success
            && self.tag & (PROBE | RECORDED) == 0
            && self.started == NOT_TIMED
            && self.breaker.changes_nothing(self.epoch())
        {
            return;
        }
        self.report(outcome);
    }

    /// Records an error of `class`, as the breaker's policy counts it.
    pub fn record_error(self, class: ErrorClass) {
        let outcome = self.breaker.outcome_of(class);
        self.record(outcome);
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.is_probe() {
            self.report(Outcome::Failure);
        }
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name)
            .field("probe", &self.is_probe())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Window of 10 judged from 10, opening at 50 % (the run of failures
    /// off), open for 10 s.
    fn ten() -> BreakerPolicy {
        BreakerPolicy::new()
            .with_window(10)
            .with_min_calls(10)
            .with_failure_rate(0.5)
            .with_consecutive_failures(1_000)
            .with_open_for(SECOND * 10)
    }

    fn breaker(policy: BreakerPolicy) -> Breaker {
        Breaker::new("test", policy).expect("a valid policy")
    }

    /// One call, admitted and recorded on a thread of its own.
    fn on_another_thread(breaker: &Breaker, outcome: Outcome) {
        std::thread::scope(|scope| {
            scope.spawn(|| breaker.try_acquire().expect("admitted").record(outcome));
        });
    }

    #[test]
    fn min_calls_and_the_rate_are_judged_the_same_on_any_thread() {
        use Outcome::{Failure as F, Success as S};
        // Healthy stretches long enough for the quiet path, each broken by
        // failures; the same calls, one breaker on this thread, the other a
        // thread per call.
        let mut outcomes = vec![S; 25];
        for round in 0..6 {
            outcomes.extend(std::iter::repeat_n(F, round % 5));
            outcomes.extend(std::iter::repeat_n(S, 12 + round));
        }
        outcomes.extend([F, S, F, S, F, S, F, S]);
        let here = breaker(ten());
        let there = breaker(ten());
        for (i, outcome) in outcomes.iter().enumerate() {
            here.try_acquire().expect("admitted").record(*outcome);
            on_another_thread(&there, *outcome);
            assert_eq!(here.metrics().state, BreakerState::Closed, "call {i}");
            let metrics = here.metrics();
            assert_eq!(metrics, there.metrics(), "call {i}");
            if i < 9 {
                assert_eq!(metrics.failure_rate, None, "under min_calls");
            }
        }
        // 4 failures in the last 10: closed; the fifth reaches 50 %.
        assert_eq!(here.metrics().failures, 4);
        here.try_acquire().expect("admitted").record(F);
        on_another_thread(&there, F);
        assert_eq!(here.state(), BreakerState::Open);
        assert_eq!(there.state(), BreakerState::Open);
    }

    #[test]
    fn a_quiet_window_still_counts_a_failure_from_another_thread() {
        let breaker = breaker(ten());
        for _ in 0..10 {
            on_another_thread(&breaker, Outcome::Success);
        }
        assert!(breaker.window.is_quiet());
        on_another_thread(&breaker, Outcome::Failure);
        let metrics = breaker.metrics();
        assert_eq!(
            (
                metrics.failures,
                metrics.consecutive_failures,
                metrics.failure_rate
            ),
            (1, 1, Some(0.1))
        );
        // Nine successes keep the failure in the window; the tenth pushes
        // it out.
        for _ in 0..9 {
            on_another_thread(&breaker, Outcome::Success);
        }
        assert_eq!(breaker.metrics().failures, 1);
        on_another_thread(&breaker, Outcome::Success);
        assert_eq!(breaker.metrics().failures, 0);
        assert!(breaker.window.is_quiet());
    }

    #[tokio::test(start_paused = true)]
    async fn a_transition_empties_a_quiet_window_and_stale_permits_record_nothing() {
        let breaker = breaker(ten().with_probes(1));
        for _ in 0..10 {
            on_another_thread(&breaker, Outcome::Success);
        }
        // Admitted while closed and quiet, recorded after the breaker has
        // opened, half-opened and closed again.
        let stale_success = breaker.try_acquire().expect("admitted");
        let stale_failure = breaker.try_acquire().expect("admitted");
        // On this thread: the breaker's clock is the runtime's paused one
        // only here.
        for _ in 0..5 {
            breaker
                .try_acquire()
                .expect("admitted")
                .record(Outcome::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(SECOND * 10).await;
        breaker
            .try_acquire()
            .expect("a probe")
            .record(Outcome::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
        let empty = |breaker: &Breaker| {
            let metrics = breaker.metrics();
            (
                metrics.calls,
                metrics.failures,
                metrics.consecutive_failures,
            )
        };
        assert_eq!(empty(&breaker), (0, 0, 0));
        assert!(!breaker.window.is_quiet(), "empty, not quiet");
        stale_success.record(Outcome::Success);
        stale_failure.record(Outcome::Failure);
        assert_eq!(empty(&breaker), (0, 0, 0), "another epoch's calls");
        on_another_thread(&breaker, Outcome::Success);
        assert_eq!(
            empty(&breaker),
            (1, 0, 0),
            "a success into an empty window counts"
        );
        // A reset (and a forced opening before it) empties it again.
        for _ in 0..9 {
            on_another_thread(&breaker, Outcome::Success);
        }
        assert!(breaker.window.is_quiet());
        let stale = breaker.try_acquire().expect("admitted");
        breaker.force_open();
        breaker.reset();
        assert_eq!(empty(&breaker), (0, 0, 0));
        stale.record(Outcome::Success);
        assert_eq!(empty(&breaker), (0, 0, 0), "another epoch's call");
    }
}
