//! The rate limiter stage: at most `count` calls per `period` reach the
//! vendor, each attempt counted, shared by name across methods and
//! contracts.
//!
//! **Why a limiter of our own, and why this algorithm.** Vendors ration
//! their capacity per account (HubSpot, Salesforce, Twilio answer 429 past
//! it). A caller that finds the quota spent with a rejected request of its
//! own wastes a request and the vendor's patience; one that knows the quota
//! waits for its turn instead. The limiter is a generic cell rate algorithm
//! (GCRA) in one atomic word: the *theoretical arrival time* (TAT) of the
//! next call. A call may go when `now ≥ TAT − τ` (τ the burst tolerance,
//! `(burst − 1)` intervals) and moves the TAT one interval (`period /
//! count`) on. A call that may not go yet *reserves* the next slot with the
//! same compare-and-swap and sleeps until it: callers are served first come
//! first served, and none waits longer than `max_wait` (nor past its
//! deadline) — it is refused at once with [`Error::RateLimited`], without
//! calling the vendor. A waiter that is cancelled hands its slot back when
//! no one reserved after it.
//!
//! **Feedback.** A vendor that answers with `Retry-After` (a 429 or a 503)
//! *pauses* the limiter the call came through for that long: the TAT moves
//! past the pause, so every caller waits or fails fast instead of each one
//! discovering the limit with a rejected request. A method without a
//! limiter pauses its whole contract instead: every call of it fails fast
//! until the pause ends.
//!
//! **The clock.** A turn taken at once reads the clock once, so the clock
//! is most of the stage's cost: the limiter reads quanta's TSC clock (a few
//! nanoseconds, as governor does), not the operating system's (a
//! `clock_gettime` call, about 20). Where tokio's clock is paused when the
//! limiter is made (`#[tokio::test(start_paused = true)]`, tokio's
//! `test-util`), it reads tokio's instead, so tests on the paused clock drive
//! it; a limiter made before the clock is paused keeps the real one.
//!
//! ```
//! use std::time::Duration;
//! use seawall_core::RatePolicy;
//! use seawall_core::rate::RateLimiter;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let quota = RateLimiter::new("hubspot", &RatePolicy::new(100, Duration::from_secs(10)));
//! assert_eq!(quota.try_acquire(), Ok(()));
//! // The next call is due 100 ms later.
//! assert_eq!(quota.try_acquire(), Err(Duration::from_millis(100)));
//! # }
//! ```
//!
//! [`Error::RateLimited`]: crate::Error::RateLimited

use std::sync::Arc;
#[cfg(feature = "redis")]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::RatePolicy;
use crate::tunable::Tunable;

/// One rate limiter, shared by every method that names it.
pub struct RateLimiter {
    name: Arc<str>,
    /// Its policy and the pace it gives, replaced in place by a reload
    /// (the turns already taken stay).
    pace: Tunable<Pace>,
    clock: Clock,
    /// The theoretical arrival time of the next call, in nanoseconds since
    /// the clock's start.
    tat: AtomicU64,
    /// Until when a vendor's `Retry-After` paused it (nanoseconds since
    /// the clock's start; 0: never).
    paused_until: AtomicU64,
    admitted: AtomicU64,
    waited: AtomicU64,
    refused: AtomicU64,
    pauses: AtomicU64,
    series: Series,
    /// The fleet's limit this one serves from leases of, with Redis
    /// (`fleet/rate.rs`); set once, when the limiter is registered.
    #[cfg(feature = "redis")]
    fleet: OnceLock<Arc<crate::fleet::rate::FleetRate>>,
}

/// A rate policy and the GCRA's terms for it.
#[derive(Debug)]
struct Pace {
    policy: RatePolicy,
    /// Nanoseconds between turns.
    interval: u64,
    /// How far ahead of now the next turn may be and still go at once:
    /// the burst.
    tolerance: u64,
}

impl Pace {
    fn new(policy: &RatePolicy) -> Self {
        let interval = nanos(policy.interval()).max(1);
        Self {
            policy: policy.clone(),
            interval,
            tolerance: interval.saturating_mul(u64::from(policy.burst().max(1)) - 1),
        }
    }
}

/// The limiter's `seawall_rate_limiter_*` series: only what is off the
/// fast path (a turn taken at once is an attempt, counted there).
struct Series {
    waited: crate::telemetry::metrics::Counter,
    refused: crate::telemetry::metrics::Counter,
    pauses: crate::telemetry::metrics::Counter,
}

impl Series {
    fn new(name: &str) -> Self {
        use crate::telemetry::metrics::counter;
        let outcome = |outcome: &'static str| counter!("seawall_rate_limiter_total", "limiter" => name.to_owned(), "outcome" => outcome);
        Self {
            waited: outcome("waited"),
            refused: outcome("refused"),
            pauses: counter!("seawall_rate_limiter_pauses_total", "limiter" => name.to_owned()),
        }
    }
}

/// What [`RateLimiter::reserve`] decided for one call.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Go now.
    Now,
    /// Wait this long for the reserved slot (handed back if the wait is
    /// abandoned; see [`Reserved`]).
    After(Duration, Reserved),
    /// No slot within the wait allowed: the next is this far away.
    Refused(Duration),
    /// A limiter shared by a fleet whose lease is spent: take a turn with
    /// [`lease_turn`] (a round trip to the fleet's store).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Lease,
}

/// A slot reserved ahead: the TAT it set. Hand it back with
/// [`RateLimiter::release`] if the call will not use it.
#[derive(Debug)]
pub(crate) struct Reserved(u64);

impl Reserved {
    /// The slot that moved a TAT to `next`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn at(next: u64) -> Self {
        Self(next)
    }
}

impl RateLimiter {
    /// A limiter named `name` with `policy` (assumed checked).
    pub fn new(name: impl Into<Arc<str>>, policy: &RatePolicy) -> Self {
        let name: Arc<str> = name.into();
        Self {
            series: Series::new(&name),
            name,
            pace: Tunable::new(Pace::new(policy)),
            clock: Clock::new(),
            tat: AtomicU64::new(0),
            paused_until: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            fleet: OnceLock::new(),
        }
    }

    /// Serves calls from leases of the fleet's limit from now on.
    #[cfg(feature = "redis")]
    pub(crate) fn share_with_fleet(&self, fleet: Arc<crate::fleet::rate::FleetRate>) {
        let _ = self.fleet.set(fleet);
    }

    /// Whether a fleet shares it (its rate is the fleet's).
    pub(crate) fn is_fleet_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.fleet.get().is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The limiter's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its policy (as of the last reload).
    pub fn policy(&self) -> &RatePolicy {
        &self.pace.get().policy
    }

    /// Paces turns by `policy` from now on; turns already taken stay
    /// taken.
    pub(crate) fn retune(&self, policy: &RatePolicy) {
        self.pace.set(Pace::new(policy));
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Takes a slot if one is free now; else says how long until the next
    /// (taking nothing). A limiter shared by a fleet takes from the lease
    /// it holds (or its share, while Redis is away): with its lease spent,
    /// `Err(Duration::ZERO)` — [`acquire`](Self::acquire) asks Redis.
    ///
    /// # Errors
    ///
    /// How long until a call may go.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        match self.reserve(crate::telemetry::clock().raw(), Duration::ZERO, None) {
            Admission::Now => Ok(()),
            Admission::After(wait, reserved) => {
                self.release(reserved);
                Err(wait)
            }
            Admission::Refused(wait) => Err(wait),
            // A fleet's limiter whose lease is spent: no turn without a
            // round trip (see `acquire`).
            Admission::Lease => Err(Duration::ZERO),
        }
    }

    /// Waits for a turn up to `max_wait`; a limiter shared by a fleet takes
    /// a lease of turns from Redis when it has none left.
    ///
    /// # Errors
    ///
    /// How long until a call may go, when that is more than `max_wait`.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        match self.reserve(crate::telemetry::clock().raw(), max_wait, None) {
            Admission::Now => Ok(()),
            Admission::After(wait, reserved) => {
                wait_turn(self, wait, reserved).await;
                Ok(())
            }
            Admission::Refused(wait) => Err(wait),
            Admission::Lease => lease_turn(self, max_wait).await,
        }
    }

    /// Reserves the next slot if it is at most `max_wait` away and before
    /// `deadline`; `raw` is a reading of [`telemetry::clock`] taken now
    /// (the attempt's start, which the retry stage reads anyway). A turn
    /// free now costs one compare-and-swap: the deadline is read only when
    /// there is a wait.
    ///
    /// [`telemetry::clock`]: crate::telemetry::clock
    #[inline]
    pub(crate) fn reserve(
        &self,
        raw: u64,
        max_wait: Duration,
        deadline: Option<Instant>,
    ) -> Admission {
        #[cfg(feature = "redis")]
        if let Some(fleet) = self.fleet.get() {
            return self.counted(fleet.reserve(bounded(max_wait, deadline)));
        }
        let now = self.clock.at(raw);
        let pace = self.pace.get();
        let mut allowed = None;
        let mut tat = self.tat.load(Acquire);
        loop {
            let wait = tat.saturating_sub(pace.tolerance).saturating_sub(now);
            if wait > 0 && wait > *allowed.get_or_insert_with(|| nanos(bounded(max_wait, deadline)))
            {
                self.refused.fetch_add(1, Relaxed);
                self.series.refused.increment(1);
                return Admission::Refused(Duration::from_nanos(wait));
            }
            let next = tat.max(now).saturating_add(pace.interval);
            match self.tat.compare_exchange_weak(tat, next, AcqRel, Acquire) {
                Ok(_) if wait == 0 => {
                    self.admitted.fetch_add(1, Relaxed);
                    return Admission::Now;
                }
                Ok(_) => {
                    self.admitted.fetch_add(1, Relaxed);
                    self.waited.fetch_add(1, Relaxed);
                    self.series.waited.increment(1);
                    return Admission::After(Duration::from_nanos(wait), Reserved(next));
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Counts what a fleet's lease decided.
    #[cfg(feature = "redis")]
    fn counted(&self, admission: Admission) -> Admission {
        match &admission {
            Admission::Now => {
                self.admitted.fetch_add(1, Relaxed);
            }
            Admission::After(..) => {
                self.admitted.fetch_add(1, Relaxed);
                self.waited.fetch_add(1, Relaxed);
                self.series.waited.increment(1);
            }
            Admission::Refused(_) => {
                self.refused.fetch_add(1, Relaxed);
                self.series.refused.increment(1);
            }
            Admission::Lease => {}
        }
        admission
    }

    /// Hands a reserved slot back, if no call reserved one after it (then
    /// the slot is lost: the limiter stays on the safe side).
    pub(crate) fn release(&self, reserved: Reserved) {
        let Reserved(next) = reserved;
        #[cfg(feature = "redis")]
        if let Some(fleet) = self.fleet.get() {
            fleet.release(next);
            return;
        }
        let _ = self.tat.compare_exchange(
            next,
            next.saturating_sub(self.pace.get().interval),
            AcqRel,
            Relaxed,
        );
    }

    /// Pauses the limiter for `pause` from now: no call goes before it
    /// ends (a vendor's `Retry-After`).
    pub fn pause(&self, pause: Duration) {
        let until = self.now().saturating_add(nanos(pause));
        self.tat
            .fetch_max(until.saturating_add(self.pace.get().tolerance), AcqRel);
        self.paused_until.fetch_max(until, Relaxed);
        self.pauses.fetch_add(1, Relaxed);
        self.series.pauses.increment(1);
        #[cfg(feature = "redis")]
        if let Some(fleet) = self.fleet.get() {
            fleet.pause(pause);
        }
        tracing::info!(
            target: "seawall::rate",
            limiter = %self.name,
            pause_ms = pause.as_secs_f64() * 1000.0,
            "the vendor asked to wait; the rate limiter pauses"
        );
    }

    /// The limiter as it is now.
    pub fn status(&self) -> RateStatus {
        let now = self.now();
        let tat = self.tat.load(Acquire);
        let paused_until = self.paused_until.load(Relaxed);
        let Pace {
            policy,
            interval,
            tolerance,
        } = self.pace.get();
        let (interval, tolerance) = (*interval, *tolerance);
        // Slots free now: how far the TAT is behind `now + τ`, in intervals
        // (a reservation ahead of now leaves none).
        let free = now
            .saturating_add(tolerance)
            .saturating_sub(tat.max(now))
            .saturating_add(interval)
            / interval;
        #[allow(unused_mut)]
        let mut status = RateStatus {
            name: self.name.to_string(),
            limit: format!("{}/{:?}", policy.count(), policy.period()),
            burst: policy.burst(),
            available: free.min(u64::from(policy.burst())),
            next_in_ms: Duration::from_nanos(tat.saturating_sub(tolerance).saturating_sub(now))
                .as_secs_f64()
                * 1000.0,
            paused_for_ms: (paused_until > now)
                .then(|| Duration::from_nanos(paused_until - now).as_secs_f64() * 1000.0),
            admitted: self.admitted.load(Relaxed),
            waited: self.waited.load(Relaxed),
            refused: self.refused.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            fleet: None,
        };
        #[cfg(feature = "redis")]
        if let Some(fleet) = self.fleet.get() {
            fleet.amend(&mut status);
        }
        status
    }
}

/// The pause of a contract without a rate limiter: a vendor's
/// `Retry-After` on any of its methods holds every call of the contract
/// until it ends. Calls in the pause fail fast with
/// [`Error::RateLimited`](crate::Error::RateLimited), named after the
/// contract.
pub(crate) struct ContractPause {
    contract: Arc<str>,
    base: Instant,
    /// Until when, in nanoseconds since `base` (0: never paused).
    until: AtomicU64,
    pauses: AtomicU64,
}

impl ContractPause {
    pub(crate) fn new(contract: Arc<str>) -> Self {
        Self {
            contract,
            base: Instant::now(),
            until: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    /// How long the pause has left, if the contract is paused (one relaxed
    /// load while it never was).
    #[inline]
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let until = self.until.load(Relaxed);
        if until == 0 {
            return None;
        }
        self.left(until)
    }

    #[cold]
    fn left(&self, until: u64) -> Option<Duration> {
        let now = nanos(Instant::now().saturating_duration_since(self.base));
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Pauses the contract for `pause` from now.
    #[cold]
    pub(crate) fn pause(&self, pause: Duration) {
        let now = nanos(Instant::now().saturating_duration_since(self.base));
        self.until
            .fetch_max(now.saturating_add(nanos(pause)).max(1), Relaxed);
        self.pauses.fetch_add(1, Relaxed);
        tracing::info!(
            target: "seawall::rate",
            contract = %self.contract,
            pause_ms = pause.as_secs_f64() * 1000.0,
            "the vendor asked to wait; the contract's calls pause"
        );
    }

    pub(crate) fn contract(&self) -> &Arc<str> {
        &self.contract
    }

    /// The pause as health reports it, while it lasts.
    pub(crate) fn status(&self) -> Option<ContractPaused> {
        self.remaining().map(|left| ContractPaused {
            contract: self.contract.to_string(),
            paused_for_ms: left.as_secs_f64() * 1000.0,
            pauses: self.pauses.load(Relaxed),
        })
    }
}

/// A contract paused by a vendor's `Retry-After` (it has no rate limiter).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ContractPaused {
    /// The contract.
    pub contract: String,
    /// How long the pause has left, in milliseconds.
    pub paused_for_ms: f64,
    /// Pauses so far.
    pub pauses: u64,
}

/// Waits `wait` for the slot `reserved` of `limiter`; a wait abandoned
/// (the call cancelled) hands the slot back.
pub(crate) async fn wait_turn(limiter: &RateLimiter, wait: Duration, reserved: Reserved) {
    struct HandBack<'a>(&'a RateLimiter, Option<Reserved>);

    impl Drop for HandBack<'_> {
        fn drop(&mut self) {
            if let Some(reserved) = self.1.take() {
                self.0.release(reserved);
            }
        }
    }

    let mut hand_back = HandBack(limiter, Some(reserved));
    tokio::time::sleep(wait).await;
    hand_back.1 = None;
}

/// Takes a turn of a fleet's limiter whose lease is spent: a round trip to
/// Redis for the next lease (one caller at a time), or its share of the
/// limit while Redis is away.
pub(crate) async fn lease_turn(limiter: &RateLimiter, max_wait: Duration) -> Result<(), Duration> {
    #[cfg(feature = "redis")]
    if let Some(fleet) = limiter.fleet.get() {
        // Boxed: the round trip's future stays out of every call's.
        return Box::pin(crate::fleet::rate::turn(limiter, fleet, max_wait)).await;
    }
    // Only a fleet's limiter asks for a lease.
    let _ = (limiter, max_wait);
    Ok(())
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.name)
            .field("policy", self.policy())
            .finish_non_exhaustive()
    }
}

/// A rate limiter's state and counts ([`Runtime::health`](crate::Runtime::health)).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RateStatus {
    /// The limiter's name.
    pub name: String,
    /// Its limit, as calls per period.
    pub limit: String,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Calls that could go now without waiting.
    pub available: u64,
    /// How long until the next call may go (0 when one may go now), in
    /// milliseconds.
    pub next_in_ms: f64,
    /// How long the vendor's `Retry-After` still pauses it, in
    /// milliseconds.
    pub paused_for_ms: Option<f64>,
    /// Calls let through (at once or after a wait).
    pub admitted: u64,
    /// Calls that waited for their turn.
    pub waited: u64,
    /// Calls refused: no turn within `max_wait` or the deadline.
    pub refused: u64,
    /// Pauses asked by the vendor.
    pub pauses: u64,
    /// How it shares its limit with the fleet, when the runtime has Redis
    /// (`RuntimeBuilder::redis`).
    pub fleet: Option<FleetLimit>,
}

/// A rate limiter's side of the fleet's limit ([`RateStatus::fleet`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetLimit {
    /// Whether it runs on the fleet's limit (Redis answers); `false` while
    /// it runs on its share.
    pub shared: bool,
    /// Its share of the limit, what it runs on while Redis is away
    /// (`"25/10s"`).
    pub share: String,
    /// Replicas that leased from this limit recently, as Redis last said.
    pub replicas: u32,
    /// Turns left in its current lease.
    pub lease_left: u64,
    /// Round trips to Redis that asked for a lease (a call the fleet
    /// refuses costs one too, unless this replica could tell from its last
    /// answer).
    pub round_trips: u64,
    /// Round trips that leased turns.
    pub leases: u64,
    /// Turns leased from the fleet in all.
    pub leased: u64,
    /// Times it fell back to its share (Redis away).
    pub fallbacks: u64,
}

/// `max_wait`, shortened to what is left before `deadline`.
pub(crate) fn bounded(max_wait: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(at) => max_wait.min(at.saturating_duration_since(Instant::now())),
        None => max_wait,
    }
}

/// A rate limiter's clock, in nanoseconds since the limiter was made:
/// quanta's TSC clock (calibrated once per process, the one attempts are
/// timed with), or tokio's where tokio's clock was paused.
enum Clock {
    Tsc {
        clock: &'static quanta::Clock,
        start: u64,
    },
    Tokio(Instant),
}

impl Clock {
    fn new() -> Self {
        if tokio_clock_is_paused() {
            Self::Tokio(Instant::now())
        } else {
            let clock = crate::telemetry::clock();
            Self::Tsc {
                clock,
                start: clock.raw(),
            }
        }
    }

    fn now(&self) -> u64 {
        self.at(crate::telemetry::clock().raw())
    }

    /// The time of `raw`, a reading of the TSC clock taken now (ignored on
    /// tokio's paused clock, which is read instead).
    #[inline]
    fn at(&self, raw: u64) -> u64 {
        match self {
            Self::Tsc { clock, start } => clock.delta_as_nanos(*start, raw),
            Self::Tokio(start) => nanos(Instant::now().saturating_duration_since(*start)),
        }
    }
}

/// Whether tokio's clock is paused here (`test-util`). tokio says so only
/// by its clock standing still: a running clock moves within a
/// microsecond, a paused one never does by itself.
fn tokio_clock_is_paused() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let tokio = Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    Instant::now() == tokio
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limiter(count: u32, period: Duration, burst: u32) -> RateLimiter {
        RateLimiter::new("test", &RatePolicy::new(count, period).with_burst(burst))
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_one_interval_apart_after_the_burst() {
        let quota = limiter(10, Duration::from_secs(1), 3);
        for _ in 0..3 {
            assert_eq!(quota.try_acquire(), Ok(()), "the burst");
        }
        assert_eq!(quota.try_acquire(), Err(MS * 100));
        tokio::time::advance(MS * 100).await;
        assert_eq!(quota.try_acquire(), Ok(()));
        assert_eq!(quota.try_acquire(), Err(MS * 100));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_reserve_consecutive_slots_and_a_late_release_is_kept() {
        let quota = limiter(10, Duration::from_secs(1), 1);
        assert!(matches!(
            quota.reserve(crate::telemetry::clock().raw(), MS * 500, None),
            Admission::Now
        ));
        let Admission::After(first, first_slot) =
            quota.reserve(crate::telemetry::clock().raw(), MS * 500, None)
        else {
            panic!("a wait");
        };
        let Admission::After(second, second_slot) =
            quota.reserve(crate::telemetry::clock().raw(), MS * 500, None)
        else {
            panic!("a wait");
        };
        assert_eq!(
            (first, second),
            (MS * 100, MS * 200),
            "first come, first served"
        );
        // The first waiter gives up: someone reserved after it, so its slot
        // stays taken (never more calls than the limit).
        quota.release(first_slot);
        assert!(
            matches!(quota.reserve(crate::telemetry::clock().raw(), MS * 500, None), Admission::After(wait, _) if wait == MS * 300)
        );
        // The last one gives up: its slot goes back.
        let Admission::After(_, last) =
            quota.reserve(crate::telemetry::clock().raw(), MS * 500, None)
        else {
            panic!("a wait");
        };
        quota.release(last);
        let _ = second_slot;
        assert!(
            matches!(quota.reserve(crate::telemetry::clock().raw(), MS * 500, None), Admission::After(wait, _) if wait == MS * 400)
        );
        // Past `max_wait`: refused, nothing taken.
        assert!(
            matches!(quota.reserve(crate::telemetry::clock().raw(), MS * 100, None), Admission::Refused(wait) if wait == MS * 500)
        );
        assert_eq!(quota.status().refused, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_call_until_it_ends() {
        let quota = limiter(100, Duration::from_secs(1), 5);
        quota.pause(Duration::from_secs(2));
        assert_eq!(quota.try_acquire(), Err(Duration::from_secs(2)));
        assert!(quota.status().paused_for_ms.is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(quota.try_acquire(), Ok(()));
        assert_eq!(quota.status().paused_for_ms, None);
        assert_eq!(quota.status().pauses, 1);
    }
}
