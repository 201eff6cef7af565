//! What seawall reports about the calls it makes: per-endpoint counts and
//! latency ([`Runtime::health`](crate::Runtime::health)), metrics through
//! the [`metrics`](https://docs.rs/metrics) facade, `tracing` spans and
//! events with correlation ids, and alerts when an endpoint's error rate
//! changes.
//!
//! **Spans and events** follow OpenTelemetry's conventions for HTTP
//! clients: a `seawall.call` span per call, a `seawall.attempt` span of
//! kind client per request under it, an event per attempt and one when the
//! call ends, saying how (the field list is in `call.rs` and the README).
//!
//! **Recording costs nothing it does not have to.** Each attempt is timed
//! with a TSC clock ([quanta](https://docs.rs/quanta), read raw: a few ns,
//! against 30 ns for `std::time::Instant`), counted and put in a
//! lock-free histogram (relaxed atomic adds); metric handles are resolved
//! once per endpoint, so with no metrics recorder installed they are no-ops;
//! spans and events are skipped by `tracing`'s own level check when nothing
//! listens. Snapshots merge the counters off the hot path.
//!
//! **Metrics**, with the `metrics` feature (a default one; without it these
//! series are not emitted). Install a recorder, such as
//! `metrics-exporter-prometheus`, before the first call of a wrapper: each
//! endpoint resolves its handles once, and registers only the series its
//! policy can move.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `seawall_calls_total` | counter | `contract`, `method`, `outcome` | calls by how they ended for the caller ([`CallOutcome`]): `ok`, `error`, `stale`, `queued`, `fallback` (registered on first use), `rejected` (by an open breaker, without calling the vendor), `cancelled`, `panicked` |
//! | `seawall_attempts_total` | counter | `contract`, `method`, `outcome` | attempts by outcome: `success`, `retryable`, `vendor_fault`, `permanent`, `ignored`, `timeout` |
//! | `seawall_call_duration_seconds` | histogram | `contract`, `method` | the latency of each attempt that reached the vendor |
//! | `seawall_cache_stale_total` | counter | `contract`, `method` | reads answered from the last-known-good cache |
//! | `seawall_cache_misses_total` | counter | `contract`, `method` | failed reads the cache had no fresh-enough answer for |
//! | `seawall_queued_total` | counter | `contract`, `method` | writes queued in the write-ahead log |
//! | `seawall_retry_budget_exhausted_total` | counter | `contract`, `method` | calls that stopped because the retry budget was spent |
//! | `seawall_error_rate_alerts_total` | counter | `contract`, `method` | error-rate changes detected |
//! | `seawall_breaker_state` | gauge | `breaker` | 0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled, 5 metrics-only |
//! | `seawall_queue_depth` | gauge | `contract` | writes waiting in the write-ahead log |
//! | `seawall_rate_limiter_total` | counter | `limiter`, `outcome` | callers that had to wait for their turn (`waited`) or got none within their wait (`refused`); a turn taken at once is just an attempt |
//! | `seawall_rate_limiter_pauses_total` | counter | `limiter` | pauses of the limiter by a vendor's `Retry-After` |
//! | `seawall_hedges_total` | counter | `contract`, `method`, `outcome` | hedges `sent`, hedges whose answer `won`, and hedges due but `skipped` (the breaker not closed, or no turn, place or budget token free at once) |

mod call;
mod correlation;
mod detector;
mod histogram;
pub(crate) mod metrics;
mod scrub;
mod shard;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

pub use call::CallOutcome;
pub(crate) use call::{CallTrace, error_type_of};
pub use correlation::{
    CorrelationId, Scoped, current as current_correlation, scope as correlation_scope,
};
pub(crate) use correlation::{
    for_call as correlation_for_call, polled_in as polled_in_correlation,
};
pub use detector::ChangeDetector;
pub(crate) use scrub::message as scrubbed;

use crate::breaker::Breaker;
use crate::event::Subscribers;
use crate::{BreakerState, ErrorClass, Event};

/// The clock attempts are timed with: quanta's TSC clock, calibrated once
/// per process, read raw (no scaling until a duration is needed).
#[inline]
pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Error(ErrorClass),
    Timeout,
}

const OUTCOMES: [&str; 6] = [
    "success",
    "retryable",
    "vendor_fault",
    "permanent",
    "ignored",
    "timeout",
];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Success => 0,
            Outcome::Error(ErrorClass::Retryable) => 1,
            Outcome::Error(ErrorClass::VendorFault) => 2,
            Outcome::Error(ErrorClass::Permanent) => 3,
            Outcome::Error(_) => 4,
            Outcome::Timeout => 5,
        }
    }

    /// The outcome's name, as in metrics and events.
    pub(crate) fn as_str(self) -> &'static str {
        OUTCOMES[self.index()]
    }

    /// Whether the change detector counts it as an error: a failure (an
    /// ignored error is an answer).
    fn is_error(self) -> bool {
        !matches!(self, Outcome::Success | Outcome::Error(ErrorClass::Ignored))
    }
}

struct Metrics {
    attempts: [metrics::Counter; 6],
    calls: [metrics::Counter; 8],
    /// `outcome = "fallback"`, registered on first use: whether a method
    /// has `fallback = with(..)` is not part of its policy.
    fallback: std::sync::OnceLock<metrics::Counter>,
    latency: metrics::Histogram,
    stale: metrics::Counter,
    cache_misses: metrics::Counter,
    queued: metrics::Counter,
    budget_exhausted: metrics::Counter,
    alerts: metrics::Counter,
}

impl Metrics {
    /// Registers the series the method's policy can move; the others are
    /// no-op handles, so a method without a cache has no cache series.
    fn new(contract: &str, method: &str, can: Series) -> Self {
        let (c, m) = (contract.to_owned(), method.to_owned());
        let counter = |name: &'static str, registered: bool| {
            if registered {
                metrics::counter!(name, "contract" => c.clone(), "method" => m.clone())
            } else {
                metrics::Counter::noop()
            }
        };
        let attempts = OUTCOMES.map(|outcome| {
            metrics::counter!("seawall_attempts_total", "contract" => c.clone(), "method" => m.clone(), "outcome" => outcome)
        });
        let calls = CallOutcome::ALL.map(|outcome| {
            let registered = match outcome {
                CallOutcome::Stale => can.cache,
                CallOutcome::Queued => can.queue,
                CallOutcome::Rejected => can.reject,
                CallOutcome::Fallback => false,
                _ => true,
            };
            if !registered {
                return metrics::Counter::noop();
            }
            metrics::counter!("seawall_calls_total", "contract" => c.clone(), "method" => m.clone(), "outcome" => outcome.as_str())
        });
        Self {
            attempts,
            calls,
            fallback: std::sync::OnceLock::new(),
            latency: metrics::histogram!("seawall_call_duration_seconds", "contract" => c.clone(), "method" => m.clone()),
            stale: counter("seawall_cache_stale_total", can.cache),
            cache_misses: counter("seawall_cache_misses_total", can.cache),
            queued: counter("seawall_queued_total", can.queue),
            budget_exhausted: counter("seawall_retry_budget_exhausted_total", can.retry),
            alerts: counter("seawall_error_rate_alerts_total", true),
        }
    }
}

/// How often a method warns that its adapter blocked its thread, at most.
const BLOCKED_WARNING_EVERY_MS: u64 = 60_000;

/// Which series a method's policy can move.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Series {
    /// It has a breaker, which can turn calls away.
    pub(crate) reject: bool,
    /// It has `fallback = cache(..)`.
    pub(crate) cache: bool,
    /// It has `fallback = queue`.
    pub(crate) queue: bool,
    /// It retries (and so can spend its retry budget).
    pub(crate) retry: bool,
}

/// One endpoint's counters, shared by every wrapper of its contract method.
pub(crate) struct EndpointStats {
    contract: Arc<str>,
    method: Arc<str>,
    outcomes: [AtomicU64; 6],
    /// Calls by how they ended, but for the calls answered by an attempt
    /// (counted as that attempt's success); `calls[0]` holds the calls
    /// answered without one (replayed by the idempotency store).
    calls: [AtomicU64; 8],
    latency: histogram::Histogram,
    stale: AtomicU64,
    cache_misses: AtomicU64,
    queued: AtomicU64,
    budget_exhausted: AtomicU64,
    alerts: AtomicU64,
    turned_away: AtomicU64,
    blocked: AtomicU64,
    /// When the last "blocked thread" warning went out, in milliseconds
    /// since `created` plus one (zero: never).
    blocked_warned: AtomicU64,
    created: tokio::time::Instant,
    detector: detector::Detector,
    metrics: Metrics,
    breaker: Option<Arc<Breaker>>,
    hedger: Option<Arc<crate::hedge::Hedger>>,
    subscribers: Arc<Subscribers>,
}

impl EndpointStats {
    pub(crate) fn new(
        contract: Arc<str>,
        method: Arc<str>,
        series: Series,
        detector: ChangeDetector,
        breaker: Option<Arc<Breaker>>,
        hedger: Option<Arc<crate::hedge::Hedger>>,
        subscribers: Arc<Subscribers>,
    ) -> Self {
        Self {
            metrics: Metrics::new(&contract, &method, series),
            contract,
            method,
            outcomes: Default::default(),
            calls: Default::default(),
            latency: histogram::Histogram::new(),
            stale: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            blocked_warned: AtomicU64::new(0),
            created: tokio::time::Instant::now(),
            detector: detector::Detector::new(detector),
            breaker,
            hedger,
            subscribers,
        }
    }

    /// The method's hedging, if its policy hedges.
    pub(crate) fn hedger(&self) -> Option<&Arc<crate::hedge::Hedger>> {
        self.hedger.as_ref()
    }

    /// Records one attempt that reached the vendor. Successes are not
    /// counted on their own: they are the histogram's count less the
    /// failures, which saves the success path an atomic add.
    #[inline]
    pub(crate) fn attempt(&self, outcome: Outcome, nanos: u64) {
        let index = outcome.index();
        if outcome != Outcome::Success {
            self.outcomes[index].fetch_add(1, Relaxed);
        }
        self.metrics.attempts[index].increment(1);
        // This thread's row of the two counters every attempt adds to.
        let row = shard::row();
        self.latency.record_in(row, nanos);
        self.metrics.latency.record(nanos as f64 / 1e9);
        if let Some(change) = self.detector.record_in(row, outcome.is_error()) {
            self.alert(change);
        }
    }

    /// A call answered by its attempt: counted as that attempt's success,
    /// but for the metric.
    #[inline]
    pub(crate) fn call_answered(&self) {
        self.metrics.calls[CallOutcome::Ok.index()].increment(1);
    }

    /// A call that ended otherwise than answered by its first attempt,
    /// after `attempts` attempts.
    #[cold]
    pub(crate) fn call_ended(&self, outcome: CallOutcome, attempts: u32) {
        // An answer from an attempt is counted as the attempt's success.
        if outcome != CallOutcome::Ok || attempts == 0 {
            self.calls[outcome.index()].fetch_add(1, Relaxed);
        }
        if outcome == CallOutcome::Fallback {
            let (c, m) = (self.contract.to_string(), self.method.to_string());
            self.metrics
                .fallback
                .get_or_init(|| metrics::counter!("seawall_calls_total", "contract" => c, "method" => m, "outcome" => "fallback"))
                .increment(1);
        } else {
            self.metrics.calls[outcome.index()].increment(1);
        }
    }

    pub(crate) fn stale_served(&self) {
        self.stale.fetch_add(1, Relaxed);
        self.metrics.stale.increment(1);
    }

    pub(crate) fn cache_missed(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
        self.metrics.cache_misses.increment(1);
    }

    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Relaxed);
        self.metrics.queued.increment(1);
    }

    /// A call turned away without calling the vendor: an open breaker, a
    /// rate limiter or a bulkhead (whatever answers it then).
    pub(crate) fn turned_away(&self) {
        self.turned_away.fetch_add(1, Relaxed);
    }

    pub(crate) fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Relaxed);
        self.metrics.budget_exhausted.increment(1);
    }

    /// An attempt answered `took` after it started, far past its `limit`:
    /// the timer could not fire because the thread was blocked (a blocking
    /// call inside the adapter, or another task hogging the thread).
    /// Counted every time; a warning at most once a minute per method.
    #[cold]
    pub(crate) fn blocked(&self, took: Duration, limit: Duration) {
        self.blocked.fetch_add(1, Relaxed);
        if self.claim_blocked_warning() {
            tracing::warn!(
                target: "seawall::attempt",
                contract = %self.contract,
                method = %self.method,
                took_ms = took.as_secs_f64() * 1000.0,
                timeout_ms = limit.as_secs_f64() * 1000.0,
                "the adapter blocked its thread for {took:?}; the {limit:?} timeout could not be \
                 enforced (adapters must not block: wrap blocking clients in \
                 tokio::task::spawn_blocking)"
            );
        }
    }

    /// Whether this caller is the one to warn about a blocked thread now:
    /// the first time, then once a minute at most (among concurrent callers,
    /// only one wins).
    fn claim_blocked_warning(&self) -> bool {
        let now = u64::try_from(self.created.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.blocked_warned.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= BLOCKED_WARNING_EVERY_MS;
        due && self
            .blocked_warned
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    }

    #[cold]
    fn alert(&self, change: detector::Change) {
        self.alerts.fetch_add(1, Relaxed);
        self.metrics.alerts.increment(1);
        tracing::warn!(
            target: "seawall::alert",
            contract = %self.contract,
            method = %self.method,
            baseline = change.baseline,
            rate = change.rate,
            threshold = change.threshold,
            calls = change.calls,
            "error rate jumped: {:.2}% in the last {} calls, against a baseline of {:.2}%",
            change.rate * 100.0,
            change.calls,
            change.baseline * 100.0,
        );
        self.subscribers
            .emit(&Event::ErrorRateChanged(ErrorRateChanged {
                contract: self.contract.clone(),
                method: self.method.clone(),
                baseline: change.baseline,
                rate: change.rate,
                threshold: change.threshold,
                calls: change.calls,
            }));
    }

    /// The endpoint's health, merged from its counters now.
    pub(crate) fn health(&self) -> EndpointHealth {
        let snapshot = self.latency.snapshot();
        let count = |i: usize| self.outcomes[i].load(Relaxed);
        let failed = (1..6).map(count).sum::<u64>();
        let attempted = snapshot.count().max(failed);
        let attempts = Attempts {
            total: attempted,
            success: attempted - failed,
            retryable: count(1),
            vendor_fault: count(2),
            permanent: count(3),
            ignored: count(4),
            timeout: count(5),
        };
        let call = |outcome: CallOutcome| self.calls[outcome.index()].load(Relaxed);
        let mut calls = Calls {
            total: 0,
            // Each answer from an attempt is that attempt's success.
            ok: attempts.success + call(CallOutcome::Ok),
            error: call(CallOutcome::Error),
            stale: call(CallOutcome::Stale),
            queued: call(CallOutcome::Queued),
            fallback: call(CallOutcome::Fallback),
            rejected: call(CallOutcome::Rejected),
            cancelled: call(CallOutcome::Cancelled),
            panicked: call(CallOutcome::Panicked),
        };
        calls.total = calls.ok
            + calls.error
            + calls.stale
            + calls.queued
            + calls.fallback
            + calls.rejected
            + calls.cancelled
            + calls.panicked;
        let rate = |n: u64| n as f64 / attempted as f64;
        let failures =
            attempts.retryable + attempts.vendor_fault + attempts.permanent + attempts.timeout;
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        EndpointHealth {
            contract: self.contract.to_string(),
            method: self.method.to_string(),
            called: calls.total > 0,
            error_rate: (attempted > 0).then(|| rate(failures)),
            error_rates: (attempted > 0).then(|| ErrorRates {
                retryable: rate(attempts.retryable),
                vendor_fault: rate(attempts.vendor_fault),
                permanent: rate(attempts.permanent),
                timeout: rate(attempts.timeout),
            }),
            calls,
            attempts,
            latency: Latency {
                count: snapshot.count(),
                p50_ms: ms(snapshot.quantile(0.50)),
                p95_ms: ms(snapshot.quantile(0.95)),
                p99_ms: ms(snapshot.quantile(0.99)),
                max_ms: ms(snapshot.max()),
            },
            breaker: self.breaker.as_ref().map(|b| b.state()),
            hedges: self.hedger.as_ref().map(|h| h.status()),
            stale_serves: self.stale.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            queued: self.queued.load(Relaxed),
            budget_exhausted: self.budget_exhausted.load(Relaxed),
            turned_away: self.turned_away.load(Relaxed),
            rate_alerts: self.alerts.load(Relaxed),
            baseline_error_rate: self.detector.baseline(),
            blocked_attempts: self.blocked.load(Relaxed),
        }
    }
}

/// An endpoint's error rate jumped against its own baseline (see
/// [`ChangeDetector`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ErrorRateChanged {
    /// The contract.
    pub contract: Arc<str>,
    /// The method.
    pub method: Arc<str>,
    /// The baseline error rate before this window.
    pub baseline: f64,
    /// The error rate of the window that alerted.
    pub rate: f64,
    /// The rate above which the window alerted.
    pub threshold: f64,
    /// The calls in that window.
    pub calls: u64,
}

/// What [`Runtime::health`](crate::Runtime::health) returns: every endpoint
/// and every contract queue, as they are now. Serializes to JSON.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Each contract method of every contract a wrapper has served, by
    /// contract then method (methods not called yet are marked
    /// `called: false`).
    pub endpoints: Vec<EndpointHealth>,
    /// Each contract with queued writes.
    pub queues: Vec<QueueHealth>,
    /// Each rate limiter, by name: its turns, waits, refusals and pauses.
    pub limiters: Vec<crate::rate::RateStatus>,
    /// Each bulkhead (`contract.method`): places in flight, callers
    /// waiting, and its counts.
    pub bulkheads: Vec<crate::bulkhead::BulkheadStatus>,
    /// Each contract without a rate limiter that a vendor's `Retry-After`
    /// pauses now: its calls fail fast with `Error::RateLimited` until it
    /// ends.
    pub paused: Vec<crate::rate::ContractPaused>,
    /// Stored records of the write-ahead log that could not be decoded and
    /// were set aside (`WriteAheadLog::quarantined`); anything but zero
    /// needs an operator.
    pub quarantined: u64,
    /// Each method an operator's overrides touched
    /// (`RuntimeBuilder::overrides`): the values that apply and where each
    /// came from, or the errors that kept its compiled policy.
    pub overrides: Vec<crate::overrides::MethodOverrides>,
    /// The last reload of the overrides, if there was one
    /// ([`Runtime::reload`](crate::Runtime::reload)): what it changed, or
    /// every error that made it change nothing.
    pub last_reload: Option<crate::overrides::ReloadStatus>,
    /// Whether the embedded store failed to write (a full disk) and has not
    /// been reopened yet: appends fail at once meanwhile.
    pub store_degraded: bool,
    /// The fleet store, when the runtime shares state with a fleet
    /// ([`RuntimeBuilder::redis`](crate::RuntimeBuilder::redis)).
    pub fleet: Option<FleetHealth>,
    /// The PostgreSQL database, when the runtime keeps state there
    /// (`RuntimeBuilder::postgres`, feature `postgres`).
    pub postgres: Option<PostgresHealth>,
}

impl Health {
    /// What this snapshot means for an orchestrator's readiness probe: see
    /// [`Readiness`].
    pub fn readiness(&self) -> Readiness {
        let mut blocking = Vec::new();
        let mut degraded = Vec::new();
        if self.store_degraded {
            blocking.push(
                "the embedded store cannot write (a full disk?): queued writes and idempotency \
                 records are refused until it can"
                    .to_owned(),
            );
        }
        if let Some(postgres) = &self.postgres {
            let why = postgres
                .last_error
                .as_deref()
                .unwrap_or("no error recorded");
            if !postgres.ready {
                blocking.push(format!(
                    "PostgreSQL (schema {}) is not connected and migrated yet: {why}",
                    postgres.schema
                ));
            } else if !postgres.available {
                blocking.push(format!(
                    "PostgreSQL (schema {}) does not answer: {why}",
                    postgres.schema
                ));
            }
        }
        if let Some(fleet) = &self.fleet
            && !fleet.available
        {
            degraded.push(format!(
                "the fleet store ({}) does not answer: breakers run on local state, rate \
                 limiters on this replica's share",
                fleet.backend
            ));
        }
        for endpoint in &self.endpoints {
            if let Some(state) = endpoint.breaker
                && !matches!(
                    state,
                    BreakerState::Closed | BreakerState::Disabled | BreakerState::MetricsOnly
                )
            {
                degraded.push(format!(
                    "{}.{}: breaker {}",
                    endpoint.contract,
                    endpoint.method,
                    state.as_str()
                ));
            }
        }
        for paused in &self.paused {
            degraded.push(format!(
                "{}: paused by the vendor's Retry-After for {:.0} ms more",
                paused.contract, paused.paused_for_ms
            ));
        }
        for method in &self.overrides {
            if !method.errors.is_empty() {
                degraded.push(format!(
                    "{}: {} override(s) refused, its compiled policy applies",
                    method.method,
                    method.errors.len()
                ));
            }
        }
        if let Some(reload) = self.last_reload.as_ref().filter(|r| !r.applied) {
            degraded.push(format!(
                "the last reload of the overrides was refused ({} error(s)); the policies \
                 before it apply",
                reload.errors.len()
            ));
        }
        if self.quarantined > 0 {
            degraded.push(format!(
                "{} stored records quarantined (undecodable): an operator should look",
                self.quarantined
            ));
        }
        Readiness {
            ready: blocking.is_empty(),
            blocking,
            degraded,
        }
    }
}

/// Whether the service should take traffic, for an orchestrator's
/// readiness probe ([`Runtime::readiness`](crate::Runtime::readiness)).
///
/// **A vendor's outage is not the service's.** An open breaker means
/// seawall is doing its job — failing fast, serving the cache, queueing
/// writes — and a replica taken out of the load balancer for it would
/// only move its traffic to replicas whose breakers are open too. So open
/// breakers, vendor pauses, a fleet store that does not answer (each
/// replica runs on local state) and quarantined records are listed in
/// `degraded` and never make `ready` false. What does is seawall's own
/// state being unusable, because a promise it makes to callers depends on
/// it: the embedded store unable to write (queued writes and idempotency
/// records would be refused) or the PostgreSQL database, when the runtime
/// keeps state there, not connected or not answering.
///
/// Liveness is another question: nothing here should restart a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Whether nothing in `blocking` holds.
    pub ready: bool,
    /// Why the service cannot keep seawall's promises now; empty when
    /// `ready`.
    pub blocking: Vec<String>,
    /// What is degraded but handled, for the operator: never a reason to
    /// take the replica out of service.
    pub degraded: Vec<String>,
}

/// Whether the runtime's PostgreSQL database answers.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct PostgresHealth {
    /// Whether its last query (or attempt to connect and migrate)
    /// succeeded. While it does not, keyed writes with a store are refused
    /// (or run on the local store, if told to).
    pub available: bool,
    /// Whether the runtime has connected and migrated (or was told not to
    /// migrate): queries run from then on.
    pub ready: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The schema that holds seawall's tables.
    pub schema: String,
}

/// Whether the fleet's store answers.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct FleetHealth {
    /// Which store: `"redis"`.
    pub backend: &'static str,
    /// Whether its last command succeeded. While it does not, breakers run
    /// on local state and rate limiters on this replica's share.
    pub available: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// This replica's name in the fleet.
    pub replica: String,
}

/// One contract method's calls since the runtime started.
///
/// A method its callers have not called yet says so (`called: false`,
/// rates and percentiles `None`) rather than reporting zeros as data.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct EndpointHealth {
    /// The contract.
    pub contract: String,
    /// The method.
    pub method: String,
    /// Whether it was called since the runtime started.
    pub called: bool,
    /// Calls by how they ended for their callers.
    pub calls: Calls,
    /// Attempts by outcome (a call makes one or more; retries count one
    /// each).
    pub attempts: Attempts,
    /// The share of attempts that failed (retryable, vendor fault,
    /// permanent or timed out); `None` before the first attempt.
    pub error_rate: Option<f64>,
    /// The share of attempts that failed, by class; `None` before the
    /// first attempt.
    pub error_rates: Option<ErrorRates>,
    /// The latency of attempts.
    pub latency: Latency,
    /// The breaker's state, if the method has one.
    pub breaker: Option<BreakerState>,
    /// Its hedging, if its policy hedges (`hedge(..)`).
    pub hedges: Option<crate::hedge::HedgeStatus>,
    /// Reads answered from the last-known-good cache.
    pub stale_serves: u64,
    /// Failed reads with no fresh-enough cached answer.
    pub cache_misses: u64,
    /// Writes queued in the write-ahead log.
    pub queued: u64,
    /// Calls stopped because the retry budget was spent.
    pub budget_exhausted: u64,
    /// Calls turned away without calling the vendor — by an open breaker,
    /// a rate limiter or a bulkhead — whatever answered them then (the
    /// error, or a fallback: such a call counts in `calls.stale` when the
    /// cache answered it, in `calls.rejected` when nothing did).
    pub turned_away: u64,
    /// Error-rate changes detected.
    pub rate_alerts: u64,
    /// The change detector's baseline error rate, once it has one.
    pub baseline_error_rate: Option<f64>,
    /// Attempts that answered far past their timeout (more than half as
    /// long again) because their thread was blocked, so the timeout could
    /// not be enforced.
    pub blocked_attempts: u64,
}

/// Calls by how they ended for their callers (see [`CallOutcome`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Calls {
    /// Every call.
    pub total: u64,
    /// Answered by the vendor (after retries or not), or replayed by the
    /// idempotency store.
    pub ok: u64,
    /// Ended with an error for the caller.
    pub error: u64,
    /// Answered from the last-known-good cache.
    pub stale: u64,
    /// Queued in the write-ahead log or outbox.
    pub queued: u64,
    /// Answered by `fallback = with(..)`.
    pub fallback: u64,
    /// Turned away by the open breaker, without calling the vendor.
    pub rejected: u64,
    /// Dropped by their caller before they ended.
    pub cancelled: u64,
    /// Ended by a panic of the adapter.
    pub panicked: u64,
}

/// Attempts by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Attempts {
    /// Every attempt that reached the vendor.
    pub total: u64,
    /// Answered.
    pub success: u64,
    /// Failed, worth retrying.
    pub retryable: u64,
    /// Failed: the vendor's fault, not retried.
    pub vendor_fault: u64,
    /// Failed: the vendor's real answer.
    pub permanent: u64,
    /// An error that is an answer (not counted as a failure).
    pub ignored: u64,
    /// Cut off by the timeout.
    pub timeout: u64,
}

/// Failure rates by class, as shares of attempts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ErrorRates {
    /// Retryable failures.
    pub retryable: f64,
    /// Vendor faults.
    pub vendor_fault: f64,
    /// Permanent failures.
    pub permanent: f64,
    /// Timeouts.
    pub timeout: f64,
}

/// Latency percentiles, in milliseconds, within 3.1 % (the histogram's
/// bucket width); `None` before the first attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// Attempts measured.
    pub count: u64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The slowest attempt (exact).
    pub max_ms: Option<f64>,
}

/// One contract's write-ahead-log queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueHealth {
    /// The contract.
    pub contract: String,
    /// Writes waiting to be delivered.
    pub pending: u64,
    /// Writes refused for good, kept as dead letters.
    pub dead_letters: u64,
}

/// The number a breaker state is reported as, in `seawall_breaker_state`.
pub(crate) fn breaker_state_code(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
        BreakerState::ForcedOpen => 3.0,
        BreakerState::Disabled => 4.0,
        _ => 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_blocked_thread_is_counted_every_time_and_warned_about_once_a_minute() {
        let series = Series {
            reject: false,
            cache: false,
            queue: false,
            retry: false,
        };
        let stats = EndpointStats::new(
            "crm".into(),
            "account".into(),
            series,
            ChangeDetector::new(),
            None,
            None,
            Arc::default(),
        );
        assert!(stats.claim_blocked_warning(), "the first one");
        assert!(!stats.claim_blocked_warning());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!stats.claim_blocked_warning(), "within the minute");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(stats.claim_blocked_warning(), "a minute on");
        for _ in 0..3 {
            stats.blocked(Duration::from_secs(2), Duration::from_millis(300));
        }
        assert_eq!(stats.health().blocked_attempts, 3);
    }
}
