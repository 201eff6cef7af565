//! The hedging stage: when an attempt has not answered after `after`,
//! another goes in parallel (up to `max`, one each `after`); the first
//! success wins and the others are cancelled.
//!
//! **Why.** A vendor's tail is usually not its typical request made slow
//! but a few requests stuck behind something (a cold cache, a garbage
//! collection, a queue on one of its hosts). A second request, sent once
//! the first is late, most often lands elsewhere and answers at the typical
//! latency: the caller's p99 falls to about the p95 plus `after`, for one
//! extra request in twenty when `after` is the p95.
//!
//! **What a hedge costs, and what bounds it.** Each hedge is one more
//! request to a vendor that is already slow to answer, so:
//!
//! - it goes only while the breaker is closed, and only when the rate
//!   limiter has a turn and the bulkhead a place free *at once* (a hedge
//!   never waits: a late answer is better than a queue of hedges);
//! - it draws a token from the retry budget, when the contract has one, as
//!   a retry does: hedges and retries together are bounded by the budget;
//! - it runs under what is left of the attempt's timeout: the attempt and
//!   its hedges end together, so hedging never lengthens a call.
//!
//! The attempt and its hedges are *one* attempt to the retry stage and the
//! breaker: the first success is the attempt's answer; when every one of
//! them has failed, the first failure is. A timeout or a panic ends them
//! all at once.
//!
//! **`after = "p95"`** follows the method's own latency: every attempt's
//! time to answer (or to be cancelled by a hedge's answer, which keeps the
//! slow ones in the picture) lands in a small histogram of its own, whose
//! percentile is recomputed every [`REFRESH`] attempts and decays by half
//! every [`DECAY`] so that it follows the vendor's recent latency, not its
//! whole history. Until [`WARM_UP`] attempts are measured there is no
//! percentile to go by, and no hedge goes.
//!
//! **Cost on the success path.** An attempt that answers on its first poll
//! reads no clock, arms no timer and allocates nothing: the hedge timer
//! is armed (and boxed: a `Sleep` is large, and would otherwise be copied
//! with every hedged call's future) only when the attempt has to wait.
//! Hedges themselves are boxed too (one allocation per hedge sent).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Sleep;

use crate::endpoint::Endpoint;
use crate::timeout::{Attempt, Within};
use crate::tunable::Tunable;
use crate::{HedgeAfter, HedgePolicy};

/// Attempts measured before `after = "pNN"` has a percentile to go by.
pub const WARM_UP: u64 = 32;
/// How often (in attempts) the percentile is recomputed.
pub const REFRESH: u64 = 64;
/// How many attempts the histogram holds before its counts are halved.
pub const DECAY: u64 = 4096;

/// Sub-buckets per power of two (8: each at most 12.5 % wide).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// The smallest power of two measured apart: 2¹⁰ ns (about 1 µs).
const MIN_EXP: u32 = 10;
/// The largest: 2³⁸ ns (about 4.6 minutes); longer lands in the last.
const MAX_EXP: u32 = 38;
const BUCKETS: usize = ((MAX_EXP - MIN_EXP + 1) * SUB as u32) as usize;

/// One method's hedging: its policy, its latency estimate and its counts.
pub struct Hedger {
    /// Replaced in place by a reload.
    policy: Tunable<HedgePolicy>,
    latency: Option<Quantile>,
    /// The percentile `latency` estimates.
    percentile: Option<f64>,
    sent: AtomicU64,
    won: AtomicU64,
    skipped: AtomicU64,
    /// `seawall_hedges_total{contract, method, outcome}`.
    series: [crate::telemetry::metrics::Counter; 3],
}

impl Hedger {
    /// Hedging for `contract.method` with `policy` (assumed checked).
    pub fn new(contract: &str, method: &str, policy: &HedgePolicy) -> Self {
        let series = ["sent", "won", "skipped"].map(|outcome| {
            crate::telemetry::metrics::counter!(
                "seawall_hedges_total",
                "contract" => contract.to_owned(),
                "method" => method.to_owned(),
                "outcome" => outcome
            )
        });
        Self {
            series,
            policy: Tunable::new(policy.clone()),
            latency: match policy.after() {
                HedgeAfter::Fixed(_) => None,
                HedgeAfter::Percentile(p) => Some(Quantile::new(p / 100.0)),
            },
            percentile: match policy.after() {
                HedgeAfter::Fixed(_) => None,
                HedgeAfter::Percentile(p) => Some(p),
            },
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Its policy (as of the last reload).
    pub fn policy(&self) -> &HedgePolicy {
        self.policy.get()
    }

    /// Why `policy` cannot replace this one at run time, if it cannot: a
    /// percentile other than the one measured needs a latency estimate
    /// that starts with the process.
    pub(crate) fn cannot_retune(&self, policy: &HedgePolicy) -> Option<String> {
        match (policy.after(), self.percentile) {
            (HedgeAfter::Fixed(_), _) => None,
            (HedgeAfter::Percentile(p), Some(measured)) if p == measured => None,
            (HedgeAfter::Percentile(p), _) => Some(format!(
                "`hedge.after` = p{p} takes effect at the next start: the latency estimate a \
                 percentile needs is built when the method is first called"
            )),
        }
    }

    /// Hedges by `policy` from now on (checked by `cannot_retune`).
    pub(crate) fn retune(&self, policy: &HedgePolicy) {
        self.policy.set(policy.clone());
    }

    /// How long an attempt waits before its first hedge; `None` while a
    /// percentile has too few attempts measured to go by.
    pub fn after(&self) -> Option<Duration> {
        match (self.policy().after(), &self.latency) {
            (HedgeAfter::Fixed(after), _) => Some(after),
            (HedgeAfter::Percentile(_), Some(latency)) => latency.current(),
            (HedgeAfter::Percentile(_), None) => None,
        }
    }

    /// Records how long an attempt took (answered, timed out, or cut short
    /// by a hedge's answer), for `after = "pNN"`.
    #[inline]
    pub(crate) fn observe(&self, nanos: u64) {
        if let Some(latency) = &self.latency {
            latency.record(nanos);
        }
    }

    /// Hedging as it is now.
    pub fn status(&self) -> HedgeStatus {
        HedgeStatus {
            after_ms: self.after().map(|after| after.as_secs_f64() * 1000.0),
            max: self.policy().max(),
            sent: self.sent.load(Relaxed),
            won: self.won.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for Hedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedger")
            .field("policy", self.policy())
            .field("after", &self.after())
            .finish_non_exhaustive()
    }
}

/// A method's hedging, in [`EndpointHealth`](crate::telemetry::EndpointHealth).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HedgeStatus {
    /// How long an attempt waits before its first hedge now, in
    /// milliseconds (`None` while `after = "pNN"` is still measuring).
    pub after_ms: Option<f64>,
    /// Hedges per attempt at most.
    pub max: u32,
    /// Hedges sent.
    pub sent: u64,
    /// Hedges whose answer was the attempt's.
    pub won: u64,
    /// Hedges due but not sent: the breaker not closed, or no turn, place
    /// or budget token free at once.
    pub skipped: u64,
}

/// A latency percentile that follows recent attempts: log-linear buckets
/// of relaxed atomic counters, the percentile cached in one word.
struct Quantile {
    quantile: f64,
    buckets: Box<[AtomicU32]>,
    recorded: AtomicU64,
    /// The cached percentile in nanoseconds (0: not known yet).
    current: AtomicU64,
}

fn bucket(nanos: u64) -> usize {
    let exp = (63 - nanos.max(1).leading_zeros()).clamp(MIN_EXP, MAX_EXP);
    let sub = if exp == MIN_EXP && nanos < 1 << MIN_EXP {
        0
    } else {
        (nanos.min((1 << (MAX_EXP + 1)) - 1) >> (exp - SUB_BITS)) & (SUB - 1)
    };
    ((exp - MIN_EXP) as usize) * SUB as usize + sub as usize
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    let exp = i as u64 / SUB + u64::from(MIN_EXP);
    let sub = i as u64 % SUB;
    ((SUB + sub + 1) << (exp - u64::from(SUB_BITS))) - 1
}

impl Quantile {
    fn new(quantile: f64) -> Self {
        Self {
            quantile,
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            recorded: AtomicU64::new(0),
            current: AtomicU64::new(0),
        }
    }

    fn record(&self, nanos: u64) {
        self.buckets[bucket(nanos)].fetch_add(1, Relaxed);
        let recorded = self.recorded.fetch_add(1, Relaxed) + 1;
        if recorded == WARM_UP || recorded.is_multiple_of(REFRESH) {
            self.refresh(recorded);
        }
    }

    #[cold]
    fn refresh(&self, recorded: u64) {
        // Two passes over the counters, no copy: this runs on a call's
        // path, which allocates nothing.
        let count = |b: &AtomicU32| u64::from(b.load(Relaxed));
        let total: u64 = self.buckets.iter().map(count).sum();
        if total == 0 {
            return;
        }
        // The smallest bucket at or past the quantile's rank.
        let rank = ((total as f64) * self.quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += count(bucket);
            if seen >= rank {
                self.current.store(upper(i), Relaxed);
                break;
            }
        }
        // Halve the counts now and then, so the percentile follows the
        // vendor's recent latency. (An increment racing the halving may be
        // halved too: an estimate, not a count.)
        if recorded.is_multiple_of(DECAY) {
            for b in &self.buckets {
                let _ = b.fetch_update(Relaxed, Relaxed, |n| Some(n / 2));
            }
        }
    }

    fn current(&self) -> Option<Duration> {
        match self.current.load(Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

/// Whether a hedge may go now, taking what it needs: the breaker closed, a
/// bulkhead place and a rate limiter turn free at once, a budget token.
/// `Some(place)` (the bulkhead's, if any) when it may.
pub(crate) fn admit(endpoint: &Endpoint) -> Option<Option<crate::bulkhead::Place<'_>>> {
    let hedger = endpoint.hedge.as_deref()?;
    let admitted = (|| {
        if endpoint.breaker.as_deref().is_some_and(|b| !b.is_closed()) {
            return None;
        }
        let place = match endpoint.bulkhead.as_deref() {
            Some(bulkhead) => Some(bulkhead.try_enter()?),
            None => None,
        };
        if let Some(limiter) = endpoint.limiter.as_deref() {
            limiter.try_acquire().ok()?;
        } else if endpoint.pause.remaining().is_some() {
            return None;
        }
        if let Some(budget) = &endpoint.budget
            && !budget.try_withdraw()
        {
            return None;
        }
        Some(place)
    })();
    match &admitted {
        Some(_) => {
            hedger.sent.fetch_add(1, Relaxed);
            hedger.series[0].increment(1);
            tracing::debug!(
                target: "seawall::hedge",
                contract = %endpoint.contract,
                method = %endpoint.method,
                "the attempt is late; a hedge goes"
            );
        }
        None => {
            hedger.skipped.fetch_add(1, Relaxed);
            hedger.series[2].increment(1);
        }
    }
    admitted
}

/// Races an attempt (`attempt`, put under `limit` counted from `started`
/// here) against the hedges `next` makes once it is late: each one `after`
/// the last, at most `max`, each under the same limit counted from the
/// same start.
///
/// The race is built where it is awaited, its first attempt inside it, and
/// reads `after` only once the attempt has to wait: a hedged call whose
/// vendor answers at once costs little more than a plain one.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, in the retry stage"
)]
#[inline]
pub(crate) fn race<'a, W, N, P, T, E>(
    hedger: &'a Hedger,
    limit: Duration,
    started: u64,
    span: &'a tracing::Span,
    correlation: &'a mut u128,
    attempt: W,
    next: N,
) -> Race<'a, W, N, P, T, E>
where
    W: Future<Output = Result<T, E>>,
    N: FnMut() -> Option<(W, P)>,
{
    let hedges_correlation = *correlation;
    Race {
        first: Some(crate::timeout::within(
            limit,
            started,
            span,
            correlation,
            attempt,
        )),
        hedges: Vec::new(),
        timer: None,
        failed: None,
        next,
        hedger,
        after: Duration::ZERO,
        left: None,
        limit,
        started,
        span,
        correlation: hedges_correlation,
        began: None,
        _answer: std::marker::PhantomData,
    }
}

pin_project_lite::pin_project! {
    /// A hedge in flight, with the bulkhead place it holds.
    pub(crate) struct Hedge<'a, W, P> {
        #[pin]
        attempt: Within<'a, W, u128>,
        place: P,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`race`].
    pub(crate) struct Race<'a, W, N, P, T, E> {
        #[pin]
        first: Option<Within<'a, W>>,
        hedges: Vec<Pin<Box<Hedge<'a, W, P>>>>,
        // Boxed: tokio's `Sleep` is large, and a race is moved into its
        // caller's future on every hedged call, fired or not.
        timer: Option<Pin<Box<Sleep>>>,
        failed: Option<E>,
        next: N,
        hedger: &'a Hedger,
        after: Duration,
        // Hedges still to send; `None` until the attempt first waits.
        left: Option<u32>,
        limit: Duration,
        started: u64,
        span: &'a tracing::Span,
        correlation: u128,
        // When the attempt first had to wait (tokio's clock, so that the
        // paused clock drives the percentile too); `None` until then.
        began: Option<tokio::time::Instant>,
        _answer: std::marker::PhantomData<fn() -> T>,
    }
}

impl<'a, W, N, P, T, E> Future for Race<'a, W, N, P, T, E>
where
    W: Future<Output = Result<T, E>>,
    N: FnMut() -> Option<(W, P)>,
{
    type Output = Attempt<Result<T, E>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let hedger = self.hedger;
        let raced = self.race(cx);
        if raced.is_ready() {
            // The attempt's time: until it answered, or until a hedge's
            // answer cut it short (an answer on the first poll took none).
            let began = self.began;
            hedger.observe(began.map_or(0, |began| {
                u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }));
        }
        raced
    }
}

impl<'a, W, N, P, T, E> Race<'a, W, N, P, T, E>
where
    W: Future<Output = Result<T, E>>,
    N: FnMut() -> Option<(W, P)>,
{
    fn race(self: &mut Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Attempt<Result<T, E>>> {
        let mut this = self.as_mut().project();
        loop {
            // The first attempt: its answer ends the race, but for a
            // failure while hedges are still out.
            if let Some(first) = this.first.as_mut().as_pin_mut()
                && let Poll::Ready(attempt) = first.poll(cx)
            {
                match attempt {
                    Attempt::Answered(Err(error)) if !this.hedges.is_empty() => {
                        this.first.set(None);
                        this.failed.get_or_insert(error);
                    }
                    attempt => return Poll::Ready(attempt),
                }
            }
            // The hedges: a success wins; a failure leaves the race.
            let mut i = 0;
            while i < this.hedges.len() {
                match this.hedges[i].as_mut().project().attempt.poll(cx) {
                    Poll::Pending => i += 1,
                    Poll::Ready(Attempt::Answered(Err(error))) => {
                        drop(this.hedges.swap_remove(i));
                        this.failed.get_or_insert(error);
                    }
                    Poll::Ready(attempt) => {
                        if matches!(attempt, Attempt::Answered(Ok(_))) {
                            this.hedger.won.fetch_add(1, Relaxed);
                            this.hedger.series[1].increment(1);
                        }
                        return Poll::Ready(attempt);
                    }
                }
            }
            if this.first.is_none() && this.hedges.is_empty() {
                // Every attempt failed: the first failure is the answer.
                if let Some(error) = this.failed.take() {
                    return Poll::Ready(Attempt::Answered(Err(error)));
                }
            }
            let began = *this.began.get_or_insert_with(tokio::time::Instant::now);
            let hedger = *this.hedger;
            let left = this.left.get_or_insert_with(|| match hedger.after() {
                Some(after) => {
                    *this.after = after;
                    hedger.policy().max()
                }
                // A percentile with too few attempts measured: no hedge.
                None => 0,
            });
            if *left == 0 {
                return Poll::Pending;
            }
            // The next hedge's timer, armed once the attempt has to wait.
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(began + *this.after)));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *left -= 1;
            let more = *left > 0;
            match (this.next)() {
                Some((attempt, place)) => {
                    let attempt = crate::timeout::within(
                        *this.limit,
                        *this.started,
                        this.span,
                        *this.correlation,
                        attempt,
                    );
                    this.hedges.push(Box::pin(Hedge { attempt, place }));
                    if more {
                        let at = tokio::time::Instant::now() + *this.after;
                        timer.as_mut().reset(at);
                    }
                }
                // No hedge may go now: none will for this attempt.
                None => *this.left = Some(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for nanos in [0, 1, 1023, 1024, 1500, 10_000_000, 1 << 38, u64::MAX] {
            let i = bucket(nanos);
            assert!(i < BUCKETS, "{nanos} lands outside");
            assert!(i >= last, "{nanos} lands before a smaller value");
            last = i;
            if (1 << MIN_EXP..1 << (MAX_EXP + 1)).contains(&nanos) {
                assert!(upper(i) >= nanos, "bucket {i} ends before {nanos}");
                assert!(upper(i) - nanos <= nanos / 8, "bucket {i} is too wide");
            }
        }
    }

    #[test]
    fn the_percentile_follows_recent_latency() {
        let quantile = Quantile::new(0.95);
        assert_eq!(quantile.current(), None);
        // 96 % at 10 ms, 4 % at 1 s: the p95 is 10 ms (its bucket's top).
        for i in 0..WARM_UP * 4 {
            let nanos = if i % 25 == 0 {
                1_000_000_000
            } else {
                10_000_000
            };
            quantile.record(nanos);
        }
        let p95 = quantile.current().unwrap();
        assert!(
            (Duration::from_millis(10)..Duration::from_micros(11_300)).contains(&p95),
            "{p95:?}"
        );
        // A long spell with a heavy tail (10 % at 1 s), then the vendor
        // settles at 50 ms: without the decay the old tail would still be
        // 5.5 % of every count and hold the p95 at 1 s.
        for i in 0..10_000 {
            quantile.record(if i % 10 == 0 {
                1_000_000_000
            } else {
                10_000_000
            });
        }
        assert!(quantile.current().unwrap() >= Duration::from_secs(1));
        for _ in 0..DECAY * 2 {
            quantile.record(50_000_000);
        }
        let p95 = quantile.current().unwrap();
        assert!(
            (Duration::from_millis(50)..Duration::from_micros(56_300)).contains(&p95),
            "{p95:?}"
        );
    }
}
