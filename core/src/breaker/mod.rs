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
//!          failure or slow rate ≥ threshold              open_for elapsed
//!  Closed ──────────────────────────────────▶ Open ─────────────────────▶ HalfOpen
//!    ▲                                         ▲                             │
//!    │        probes' rates under the thresholds (window reset)             │
//!    └───────────────────────────────────────────────────────────────────────┤
//!                                              └─────────────────────────────┘
//!                       probes' rates at a threshold, or half_open_max elapsed
//! ```
//!
//! Besides the automatic states an operator can hold a breaker
//! [forced open](Breaker::force_open), [disable](Breaker::disable) it
//! (everything passes, nothing is recorded), run it
//! [metrics-only](Breaker::metrics_only) (everything passes, rates are
//! recorded and a crossing is reported) or [reset](Breaker::reset) it.
//!
//! The state lives in one atomic word, and the window of recent outcomes in
//! atomics: admitting a call while closed is one load, and recording a
//! success into a count window touches three atomics, reads no clock and
//! allocates nothing. The clock is read while open, for time windows and for
//! slow-call detection.
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

mod state;
mod window;

use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{BreakerRateCrossed, BreakerTransition, Event, Subscribers};
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
    /// Calls are rejected at once until `open_for` has passed.
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
    /// Neither: the permit is freed and nothing is recorded.
    Ignored,
}

/// A breaker's refusal to let a call through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// How long until the breaker lets a call through again: while open,
    /// until it half-opens; while half-open with every probe out, until
    /// `half_open_max` runs out at the latest. `None` while forced open: only
    /// [`Breaker::reset`] lets calls through again.
    pub retry_in: Option<Duration>,
}

/// A breaker's counts and rates, for health views and status pages.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BreakerMetrics {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: BreakerState,
    /// Calls in the window.
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them (zero unless the policy sets `slow`).
    pub slow_calls: u64,
    /// `failures / calls`, when there are calls.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, when there are calls.
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
    policy: BreakerPolicy,
    failure_ppm: u64,
    slow_ppm: u64,
    slow_after: Option<Duration>,
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
}

fn ppm(rate: f64) -> u64 {
    (rate * 1_000_000.0).round() as u64
}

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
            failure_ppm: ppm(policy.failure_rate()),
            slow_ppm: ppm(policy.slow_rate()),
            slow_after: policy.slow(),
            window: Ring::new(policy.window()),
            name,
            policy,
            state: AtomicU64::new(Word::new(CLOSED, 0, 0, 0).0),
            probe_tally: AtomicU64::new(0),
            reopens: AtomicU32::new(0),
            above: AtomicBool::new(false),
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

    /// The state with the counts and rates of the window.
    pub fn metrics(&self) -> BreakerMetrics {
        let tally = self.window.tally(self.nanos());
        let rate = |part: u64| (tally.calls > 0).then(|| part as f64 / tally.calls as f64);
        BreakerMetrics {
            name: self.name.to_string(),
            state: self.state(),
            calls: tally.calls,
            failures: tally.failures,
            slow_calls: tally.slow,
            failure_rate: rate(tally.failures),
            slow_rate: rate(tally.slow),
        }
    }

    /// How the breaker records an error of `class`, under its policy.
    pub fn outcome_of(&self, class: ErrorClass) -> Outcome {
        if class == ErrorClass::Ignored {
            Outcome::Ignored
        } else if self.policy.failure_classes().contains(class) {
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
    fn try_acquire_slow(&self, mut word: Word) -> Result<Permit<'_>, Rejected> {
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
                OPEN => {
                    let now = self.elapsed();
                    let until = Duration::from_millis(word.ms());
                    if now < until {
                        return Err(Rejected {
                            retry_in: Some(until - now),
                        });
                    }
                    // The wait is over: this call becomes the first probe.
                    let next = word.next(HALF_OPEN, 1, now.as_millis() as u64);
                    match self.transition(word, next) {
                        Ok(()) => return Ok(self.permit(next.epoch(), true)),
                        Err(actual) => word = actual,
                    }
                }
                _ => {
                    if word.admitted() < u64::from(self.policy.probes()) {
                        let next = Word(word.0 + ONE_PROBE);
                        match self
                            .state
                            .compare_exchange_weak(word.0, next.0, AcqRel, Acquire)
                        {
                            Ok(_) => return Ok(self.permit(word.epoch(), true)),
                            Err(actual) => word = Word(actual),
                        }
                        continue;
                    }
                    // Every probe is out. Past `half_open_max` the missing
                    // ones count as failed: open again, for longer.
                    let now = self.elapsed();
                    let give_up = Duration::from_millis(word.ms()) + self.policy.half_open_max();
                    if now < give_up {
                        return Err(Rejected {
                            retry_in: Some(give_up - now),
                        });
                    }
                    match self.reopen(word) {
                        Ok(open_for) => {
                            return Err(Rejected {
                                retry_in: Some(open_for),
                            });
                        }
                        Err(actual) => word = actual,
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
        let word = Word(self.state.load(Acquire));
        match word.kind() {
            OPEN => self.elapsed() < Duration::from_millis(word.ms()),
            FORCED_OPEN => true,
            _ => false,
        }
    }

    /// How long until an open breaker lets a call through again; `None`
    /// when it is not open (or is forced open, with no end).
    pub fn retry_in(&self) -> Option<Duration> {
        let word = Word(self.state.load(Acquire));
        if word.kind() != OPEN {
            return None;
        }
        Duration::from_millis(word.ms()).checked_sub(self.elapsed())
    }

    /// Holds the breaker open: every call is rejected, with no automatic
    /// recovery, until [`reset`](Self::reset) (or another manual state).
    pub fn force_open(&self) {
        self.set(FORCED_OPEN, false);
    }

    /// Turns the breaker off: every call goes through and nothing is
    /// recorded, until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.set(DISABLED, false);
    }

    /// Records and reports without ever rejecting: a rate reaching its
    /// threshold is reported once (an [`Event::BreakerRate`] and a warning)
    /// until it falls back under it. Starts from an empty window.
    pub fn metrics_only(&self) {
        self.set(METRICS_ONLY, true);
    }

    /// Back to closed, with an empty window and the first open duration.
    pub fn reset(&self) {
        self.set(CLOSED, true);
    }

    fn set(&self, kind: u64, reset_window: bool) {
        let mut word = Word(self.state.load(Acquire));
        loop {
            if reset_window {
                self.window.reset();
                self.above.store(false, Relaxed);
            }
            self.reopens.store(0, Relaxed);
            let next = word.next(kind, 0, 0);
            match self.state.compare_exchange(word.0, next.0, AcqRel, Acquire) {
                Ok(_) => {
                    if word.kind() != kind {
                        self.announce(word.state(), next.state());
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
            started: if self.slow_after.is_some() {
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
    /// now ends, rounded up so that the breaker never half-opens early.
    fn open_until(&self, open_for: Duration) -> u64 {
        let until = self.elapsed() + open_for;
        u64::try_from(until.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Whether a tally reaches a threshold (never before `min_calls`).
    fn trips(&self, tally: Tally, min_calls: u64) -> bool {
        if tally.calls < min_calls || tally.calls == 0 {
            return false;
        }
        let reaches =
            |part: u64, threshold: u64| part > 0 && part * 1_000_000 >= threshold * tally.calls;
        reaches(tally.failures, self.failure_ppm)
            || (self.slow_after.is_some() && reaches(tally.slow, self.slow_ppm))
    }

    fn record(&self, epoch: u64, probe: bool, started: u64, outcome: Outcome) {
        if outcome == Outcome::Ignored {
            if probe {
                self.free_probe(epoch);
            }
            return;
        }
        let failure = outcome == Outcome::Failure;
        let slow = match self.slow_after {
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
        // A success can only bring a rate down, except by completing
        // `min_calls`; a time window judges on failures and slow calls only.
        let min_calls = u64::from(self.policy.min_calls());
        if !failure && !slow && (self.window.needs_clock() || tally.failures + tally.slow == 0) {
            if word.kind() == METRICS_ONLY
                && self.above.load(Relaxed)
                && !self.trips(tally, min_calls)
            {
                self.above.store(false, Relaxed);
            }
            return;
        }
        let trips = self.trips(tally, min_calls);
        if word.kind() == CLOSED {
            if trips {
                let open_for = self.policy.open_duration(0);
                let _ = self.transition(word, word.next(OPEN, 0, self.open_until(open_for)));
            }
        } else if trips {
            // Metrics-only: report the crossing once, never act on it.
            if !self.above.swap(true, Relaxed) {
                self.report_crossing(tally);
            }
        } else {
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
        let probes = u64::from(self.policy.probes());
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
        let previous = ProbeTally::unpack(previous, epoch);
        if previous.done + 1 < probes {
            return;
        }
        // The last probe is in: judge the vendor on the probes alone.
        let word = Word(self.state.load(Acquire));
        if word.kind() != HALF_OPEN || word.epoch() != epoch {
            return;
        }
        let probes_tally = Tally {
            calls: probes,
            failures: previous.failures + u64::from(failure),
            slow: previous.slow + u64::from(slow),
        };
        if self.trips(probes_tally, 1) {
            let _ = self.reopen(word);
        } else {
            self.window.reset();
            self.reopens.store(0, Relaxed);
            let _ = self.transition(word, word.next(CLOSED, 0, 0));
        }
    }

    /// Half-open to open, for the next (possibly longer) open duration.
    fn reopen(&self, half_open: Word) -> Result<Duration, Word> {
        let reopens = self.reopens.load(Relaxed).saturating_add(1);
        let open_for = self.policy.open_duration(reopens);
        self.transition(
            half_open,
            half_open.next(OPEN, 0, self.open_until(open_for)),
        )?;
        self.reopens.store(reopens, Relaxed);
        Ok(open_for)
    }

    /// Publishes a transition; announces it only if this call made it.
    fn transition(&self, from: Word, to: Word) -> Result<(), Word> {
        match self.state.compare_exchange(from.0, to.0, AcqRel, Acquire) {
            Ok(_) => {
                self.announce(from.state(), to.state());
                Ok(())
            }
            Err(actual) => Err(Word(actual)),
        }
    }

    fn announce(&self, from: BreakerState, to: BreakerState) {
        if matches!(to, BreakerState::Open | BreakerState::ForcedOpen) {
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

    fn report_crossing(&self, tally: Tally) {
        let failure_rate = tally.failures as f64 / tally.calls as f64;
        let slow_rate = tally.slow as f64 / tally.calls as f64;
        tracing::warn!(
            target: "seawall::breaker",
            breaker = %self.name,
            failure_rate,
            slow_rate,
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

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("metrics", &self.metrics())
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
    pub fn is_probe(&self) -> bool {
        self.tag & PROBE != 0
    }

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
    pub fn record(mut self, outcome: Outcome) {
        self.report(outcome);
    }

    /// Records an error of `class`, as the breaker's policy counts it.
    pub fn record_error(self, class: ErrorClass) {
        let outcome = self.breaker.outcome_of(class);
        self.record(outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.report(Outcome::Ignored);
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
