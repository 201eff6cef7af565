//! Behaviour under failure (issue 22, item 3): one scripted vendor timeline
//! — healthy, a hard outage, recovery, a 30 % brownout, a slow vendor, a
//! quota enforced with `429`, healthy again — met by four client strategies
//! under the same offered load: seawall, tower-resilience's stack, naive
//! retries and plain calls.
//!
//! `cargo bench -p seawall-bench --bench failure`. The figures and what they
//! show are in BENCHMARKS.md ("Under failure"); the chart it draws is
//! `BENCHMARKS-failure.svg` at the repository's root.
//!
//! Each strategy gets a vendor of its own: an axum server on `127.0.0.1` (a
//! port the OS picks; nothing leaves the machine) whose behaviour follows
//! [`TIMELINE`] from the moment the strategy's callers start, and which
//! counts every request it receives in 100 ms buckets. [`CALLERS`] callers
//! each start one call every [`PERIOD`], whatever became of the ones before
//! (an open loop, so every strategy is offered the same calls at the same
//! moments), each call through reqwest with a per-attempt timeout of
//! [`TIMEOUT`]:
//!
//! - **seawall**: a `#[contract]` trait with the policy the README recommends
//!   for a read, `timeout`, `retry(attempts = 3)` with the contract's default
//!   retry budget, and the default `breaker`, its `open_for` shortened to 1 s
//!   to fit the phases (as the peers' wait in open). No `rate(..)`: the
//!   vendor's quota exists only in one phase, and a limiter at the quota
//!   would hold back the healthy phases' calls too; seawall's answer to the
//!   429s is the contract's pause on `Retry-After`.
//! - **tower-resilience**: its retry (`exponential_backoff()` preset: 3
//!   attempts from 100 ms, not retrying an open circuit) around its circuit
//!   breaker (`standard()` preset: 50 % of 100 calls, 3 half-open calls, its
//!   wait in open set to 1 s) around its time limiter.
//! - **naive retries**: up to 3 attempts, 100 ms apart, each under
//!   `tokio::time::timeout`.
//! - **plain calls**: one attempt under `tokio::time::timeout`.
//!
//! It prints, per strategy and phase, the calls offered, the vendor's
//! requests per offered call, the callers' success rate and the calls'
//! p50/p99 latency (all calls, failed ones too, as the caller waits for
//! them); per strategy, how long after the outage began the first call was
//! failed without reaching the vendor (an open breaker) and the first call
//! failed at all, and how long after the vendor recovered the first call
//! succeeded and from when on every 100 ms of calls succeeded at 95 % or
//! more; then the failures by kind. The strategies run one after another,
//! about 25 s each.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use plotters::prelude::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::http::{Client, ResponseError, check};
use seawall::{Resilient, Runtime, contract};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt};
use tower_resilience::circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer};
use tower_resilience::retry::RetryLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

/// Concurrent callers.
const CALLERS: u32 = 15;
/// Each caller starts one call this often: with [`CALLERS`], 150 calls a
/// second, over the quota phase's 100.
const PERIOD: Duration = Duration::from_millis(100);
/// The per-attempt timeout of every strategy. The `#[integration]` below
/// repeats it as a literal.
const TIMEOUT: Duration = Duration::from_millis(200);
/// How long the slow vendor takes to answer: ten times [`TIMEOUT`].
const SLOW: Duration = Duration::from_millis(2_000);
/// The share of requests the browned-out vendor fails with `503`.
const BROWNOUT_FAILURES: f64 = 0.3;
/// Requests per second the vendor takes in the quota phase; past them,
/// `429` with `Retry-After` until the next second.
const QUOTA: u64 = 100;
/// The naive strategy's attempts and the fixed delay between them.
const NAIVE_ATTEMPTS: u32 = 3;
const NAIVE_DELAY: Duration = Duration::from_millis(100);
/// The width of the vendor's request counts and of the recovery test.
const BUCKET: Duration = Duration::from_millis(100);
/// The vendor's seed: each strategy meets the same sequence of brownout
/// failures, in the order its requests arrive.
const VENDOR_SEED: u64 = 22;
/// The longest a strategy's calls may run past the timeline's end (a call
/// is at most three attempts, two backoffs and a `Retry-After`: under 3 s).
const DRAIN: Duration = Duration::from_secs(10);
/// Where the chart goes: beside BENCHMARKS.md.
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS-failure.svg");

// ---------------------------------------------------------------------------
// The timeline
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// `200` at once.
    Healthy,
    /// `503` to every request: the vendor's service is down behind a load
    /// balancer that still answers.
    Outage,
    /// `503` to [`BROWNOUT_FAILURES`] of the requests, chosen at random.
    Brownout,
    /// `200` after [`SLOW`].
    Slow,
    /// `200` to the first [`QUOTA`] requests of each second, then `429` with
    /// `Retry-After` (the seconds until the next one).
    Quota,
}

/// The phases, in order, with their lengths in milliseconds.
const TIMELINE: [(&str, Behaviour, u64); 7] = [
    ("healthy", Behaviour::Healthy, 2_000),
    ("outage", Behaviour::Outage, 4_000),
    ("recovered", Behaviour::Healthy, 4_000),
    ("brownout 30 %", Behaviour::Brownout, 3_000),
    ("slow (10x timeout)", Behaviour::Slow, 4_000),
    ("quota 100/s", Behaviour::Quota, 4_000),
    ("healthy again", Behaviour::Healthy, 3_000),
];

/// The timeline as run: the smoke run (`cargo test --benches`) divides every
/// length by ten.
#[derive(Clone, Debug)]
struct Timeline {
    /// Each phase's name, behaviour, start and end, from the callers' start.
    phases: Vec<(&'static str, Behaviour, Duration, Duration)>,
}

impl Timeline {
    fn new(divisor: u64) -> Self {
        let mut at = Duration::ZERO;
        let phases = TIMELINE
            .iter()
            .map(|&(name, behaviour, millis)| {
                let start = at;
                at += Duration::from_millis(millis / divisor);
                (name, behaviour, start, at)
            })
            .collect();
        Self { phases }
    }

    fn length(&self) -> Duration {
        self.phases.last().map_or(Duration::ZERO, |phase| phase.3)
    }

    /// The phase at `at` from the start; past the end, the last one.
    fn phase_at(&self, at: Duration) -> usize {
        self.phases
            .iter()
            .position(|phase| at < phase.3)
            .unwrap_or(self.phases.len() - 1)
    }

    /// The first phase with this behaviour after `after`.
    fn find(&self, behaviour: Behaviour, after: usize) -> Option<usize> {
        (after..self.phases.len()).find(|&index| self.phases[index].1 == behaviour)
    }
}

// ---------------------------------------------------------------------------
// The vendor
// ---------------------------------------------------------------------------

struct Vendor {
    timeline: Timeline,
    start: Instant,
    /// Requests received, per [`BUCKET`] from `start`.
    buckets: Vec<AtomicU64>,
    /// Of those, the ones answered `429`.
    refused: Vec<AtomicU64>,
    rng: Mutex<SmallRng>,
    /// The quota phase's current second and the requests taken in it.
    quota: Mutex<(u64, u64)>,
}

impl Vendor {
    fn counts(buckets: &[AtomicU64]) -> Vec<u64> {
        buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect()
    }
}

async fn answer(State(vendor): State<Arc<Vendor>>) -> Response {
    let at = vendor.start.elapsed();
    let bucket = bucket_of(at).min(vendor.buckets.len() - 1);
    vendor.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    let (_, behaviour, phase_start, _) = vendor.timeline.phases[vendor.timeline.phase_at(at)];
    match behaviour {
        Behaviour::Healthy => StatusCode::OK.into_response(),
        Behaviour::Outage => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Behaviour::Brownout => {
            let fail = vendor
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .random_bool(BROWNOUT_FAILURES);
            if fail {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
        Behaviour::Slow => {
            tokio::time::sleep(SLOW).await;
            StatusCode::OK.into_response()
        }
        Behaviour::Quota => {
            let second = (at - phase_start).as_secs();
            let taken = {
                let mut quota = vendor.quota.lock().unwrap_or_else(PoisonError::into_inner);
                if quota.0 != second {
                    *quota = (second, 0);
                }
                quota.1 += 1;
                quota.1
            };
            if taken <= QUOTA {
                StatusCode::OK.into_response()
            } else {
                vendor.refused[bucket].fetch_add(1, Ordering::Relaxed);
                // The seconds until the quota's next second, rounded up:
                // always 1 here.
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response()
            }
        }
    }
}

async fn start_vendor(
    timeline: Timeline,
    start: Instant,
) -> std::io::Result<(String, Arc<Vendor>, tokio::task::JoinHandle<()>)> {
    let buckets = ((timeline.length() + DRAIN).as_millis() / BUCKET.as_millis()) as usize + 1;
    let vendor = Arc::new(Vendor {
        timeline,
        start,
        buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        refused: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        rng: Mutex::new(SmallRng::seed_from_u64(VENDOR_SEED)),
        quota: Mutex::new((u64::MAX, 0)),
    });
    let app = Router::new().fallback(answer).with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{address}/items/1"), vendor, server))
}

// ---------------------------------------------------------------------------
// The strategies
// ---------------------------------------------------------------------------

/// The seawall strategy's error type, as README's complete example writes it.
#[derive(Debug, thiserror::Error, seawall::Classify)]
pub enum VendorError {
    #[error(transparent)]
    #[classify(delegate)]
    Http(#[from] ResponseError),
    #[error("transport error: {0}")]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// What the callers need from the vendor, with the policy README recommends
/// for a read; `open_for` is the default's 30 s shortened to fit a phase of
/// a few seconds.
#[contract(name = "vendor")]
pub trait Items {
    #[integration(read, timeout = "200ms", retry(attempts = 3), breaker(open_for = "1s"))]
    async fn item(&self) -> Result<(), VendorError>;
}

/// seawall's adapter: one GET, its status checked by `seawall::http`.
pub struct ItemsHttp {
    client: Client,
    url: String,
}

impl Items for ItemsHttp {
    async fn item(&self) -> Result<(), VendorError> {
        check(self.client.get(&self.url).send().await?)?;
        Ok(())
    }
}

/// The failure of one request, for the strategies that are not seawall.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("vendor answered {0}")]
    Status(StatusCode),
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
}

type TowerError = CircuitBreakerError<TimeLimiterError<Fault>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Seawall,
    Tower,
    Naive,
    Plain,
}

impl Strategy {
    const ALL: [Strategy; 4] = [
        Strategy::Seawall,
        Strategy::Tower,
        Strategy::Naive,
        Strategy::Plain,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Seawall => "seawall",
            Strategy::Tower => "tower-resilience",
            Strategy::Naive => "naive retries",
            Strategy::Plain => "plain calls",
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Strategy::Seawall => RGBColor(0x1f, 0x77, 0xb4),
            Strategy::Tower => RGBColor(0xff, 0x7f, 0x0e),
            Strategy::Naive => RGBColor(0xd6, 0x27, 0x28),
            Strategy::Plain => RGBColor(0x55, 0x55, 0x55),
        }
    }
}

/// One strategy, ready to call: cheap to clone into each call's task.
#[derive(Clone)]
enum Caller {
    Seawall(Arc<Resilient<ItemsHttp>>),
    Tower(BoxCloneService<(), (), TowerError>),
    Naive(reqwest::Client, Arc<str>),
    Plain(reqwest::Client, Arc<str>),
}

/// How a call ended: `Ok`, or a failure's kind. A kind that starts with
/// `rejected` never reached the vendor.
type Outcome = Result<(), &'static str>;

/// A reqwest client as every strategy builds it: loopback only, a pool
/// large enough for every caller.
fn reqwest_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(TIMEOUT)
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(4 * CALLERS as usize)
        .build()
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(), Fault> {
    let response = client.get(url).send().await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(Fault::Status(response.status()))
    }
}

fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Status(StatusCode::SERVICE_UNAVAILABLE) => "503",
        Fault::Status(StatusCode::TOO_MANY_REQUESTS) => "429",
        Fault::Status(_) => "other status",
        Fault::Transport(error) if error.is_timeout() => "transport timeout",
        Fault::Transport(error) if error.is_connect() => "connect",
        Fault::Transport(_) => "transport",
    }
}

fn seawall_kind(error: &VendorError) -> &'static str {
    match error {
        VendorError::Http(error) => match error.status {
            StatusCode::SERVICE_UNAVAILABLE => "503",
            StatusCode::TOO_MANY_REQUESTS => "429",
            _ => "other status",
        },
        VendorError::Transport(_) => "transport",
        VendorError::Seawall(error) => match error {
            seawall::Error::Timeout { .. } => "timeout",
            seawall::Error::BreakerOpen { .. } => "rejected: breaker open",
            seawall::Error::RateLimited { .. } => "rejected: paused by 429",
            seawall::Error::RetriesExhausted { .. } => "retries exhausted",
            seawall::Error::RetryBudgetExhausted { .. } => "retry budget spent",
            seawall::Error::RetryAfter { .. } => "Retry-After past the policy",
            _ => "other",
        },
    }
}

impl Caller {
    async fn new(
        strategy: Strategy,
        url: &str,
    ) -> Result<(Self, Option<Runtime>), Box<dyn StdError>> {
        Ok(match strategy {
            Strategy::Seawall => {
                let client = Client::builder()
                    .configure(|builder| {
                        builder
                            .no_proxy()
                            .pool_max_idle_per_host(4 * CALLERS as usize)
                    })
                    .connect_timeout(TIMEOUT)
                    .timeout(Duration::from_secs(5))
                    .build()?;
                let runtime = Runtime::builder().seed(7).in_memory();
                let items = ItemsHttp {
                    client,
                    url: url.to_owned(),
                };
                let resilient = Arc::new(Resilient::new(items, &runtime));
                (Caller::Seawall(resilient), Some(runtime))
            }
            Strategy::Tower => {
                let client = reqwest_client()?;
                let url: Arc<str> = url.into();
                let vendor = tower::service_fn(move |()| {
                    let client = client.clone();
                    let url = url.clone();
                    async move { get(&client, &url).await }
                });
                let limiter = TimeLimiterLayer::builder()
                    .timeout_duration(TIMEOUT)
                    .build();
                let breaker = CircuitBreakerLayer::standard()
                    .wait_duration_in_open(Duration::from_secs(1))
                    .build()?;
                let retry = RetryLayer::<(), (), TowerError>::exponential_backoff()
                    .retry_on(|error: &TowerError| !error.is_circuit_open())
                    .build();
                let stack = retry.layer(breaker.layer(limiter.layer(vendor)));
                (Caller::Tower(BoxCloneService::new(stack)), None)
            }
            Strategy::Naive => (Caller::Naive(reqwest_client()?, url.into()), None),
            Strategy::Plain => (Caller::Plain(reqwest_client()?, url.into()), None),
        })
    }

    async fn call(self) -> Outcome {
        match self {
            Caller::Seawall(items) => items.item().await.map_err(|error| seawall_kind(&error)),
            Caller::Tower(service) => service.oneshot(()).await.map_err(|error| match error {
                CircuitBreakerError::OpenCircuit => "rejected: breaker open",
                CircuitBreakerError::Inner(TimeLimiterError::Timeout) => "timeout",
                CircuitBreakerError::Inner(TimeLimiterError::Inner(fault)) => fault_kind(&fault),
            }),
            Caller::Naive(client, url) => {
                let mut last = "none";
                for attempt in 0..NAIVE_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(NAIVE_DELAY).await;
                    }
                    match tokio::time::timeout(TIMEOUT, get(&client, &url)).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(fault)) => last = fault_kind(&fault),
                        Err(_) => last = "timeout",
                    }
                }
                Err(last)
            }
            Caller::Plain(client, url) => {
                match tokio::time::timeout(TIMEOUT, get(&client, &url)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(fault)) => Err(fault_kind(&fault)),
                    Err(_) => Err("timeout"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One strategy's run
// ---------------------------------------------------------------------------

/// One offered call.
struct Record {
    /// When it was offered, from the callers' start.
    offered: Duration,
    /// When it ended, from the callers' start.
    ended: Duration,
    outcome: Outcome,
}

impl Record {
    fn latency(&self) -> Duration {
        self.ended.saturating_sub(self.offered)
    }
}

struct Run {
    strategy: Strategy,
    records: Vec<Record>,
    /// The vendor's requests per [`BUCKET`].
    received: Vec<u64>,
    /// Those it answered `429`.
    refused: Vec<u64>,
}

async fn run(strategy: Strategy, timeline: &Timeline) -> Result<Run, Box<dyn StdError>> {
    // The callers start a little after the vendor and the client are up.
    let start = Instant::now() + Duration::from_millis(300);
    let (url, vendor, server) = start_vendor(timeline.clone(), start).await?;
    let (caller, runtime) = Caller::new(strategy, &url).await?;
    let calls_per_caller = (timeline.length().as_millis() / PERIOD.as_millis()) as u32;

    let mut callers = JoinSet::new();
    for index in 0..CALLERS {
        let caller = caller.clone();
        let offset = PERIOD * index / CALLERS;
        callers.spawn(async move {
            let mut calls = JoinSet::new();
            for n in 0..calls_per_caller {
                let offered = offset + PERIOD * n;
                tokio::time::sleep_until(start + offered).await;
                let caller = caller.clone();
                calls.spawn(async move {
                    let outcome = caller.call().await;
                    Record {
                        offered,
                        ended: start.elapsed(),
                        outcome,
                    }
                });
            }
            let mut records = Vec::with_capacity(calls_per_caller as usize);
            while let Some(record) = calls.join_next().await {
                if let Ok(record) = record {
                    records.push(record);
                }
            }
            records
        });
    }
    let bound = start + timeline.length() + DRAIN;
    let mut records = Vec::new();
    loop {
        match tokio::time::timeout_at(bound, callers.join_next()).await {
            Ok(Some(Ok(mut some))) => records.append(&mut some),
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(None) => break,
            Err(_) => {
                callers.abort_all();
                return Err(format!(
                    "{}: calls still running {DRAIN:?} after the timeline",
                    strategy.name()
                )
                .into());
            }
        }
    }
    let received = Vendor::counts(&vendor.buckets);
    let refused = Vendor::counts(&vendor.refused);
    server.abort();
    drop(runtime);
    records.sort_by_key(|record| record.offered);
    Ok(Run {
        strategy,
        records,
        received,
        refused,
    })
}

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

struct PhaseFigures {
    offered: usize,
    requests: u64,
    refused: u64,
    successes: usize,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bucket_of(at: Duration) -> usize {
    (at.as_millis() / BUCKET.as_millis()) as usize
}

impl Run {
    fn phase(&self, timeline: &Timeline, index: usize) -> PhaseFigures {
        let (_, _, start, end) = timeline.phases[index];
        let last = index == timeline.phases.len() - 1;
        let calls: Vec<&Record> = self
            .records
            .iter()
            .filter(|record| record.offered >= start && record.offered < end)
            .collect();
        let mut latencies: Vec<Duration> = calls.iter().map(|record| record.latency()).collect();
        latencies.sort_unstable();
        let (first, past) = (bucket_of(start), bucket_of(end));
        let in_phase = |counts: &[u64]| -> u64 {
            counts
                .iter()
                .enumerate()
                .filter(|&(bucket, _)| bucket >= first && (last || bucket < past))
                .map(|(_, count)| count)
                .sum()
        };
        PhaseFigures {
            offered: calls.len(),
            requests: in_phase(&self.received),
            refused: in_phase(&self.refused),
            successes: calls.iter().filter(|record| record.outcome.is_ok()).count(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
        }
    }

    /// From the outage's start: the first call failed without reaching the
    /// vendor, and the first call failed at all (both by when they ended,
    /// among the calls offered during the outage).
    fn detection(&self, timeline: &Timeline) -> (Option<Duration>, Option<Duration>) {
        let Some(outage) = timeline.find(Behaviour::Outage, 0) else {
            return (None, None);
        };
        let (_, _, start, end) = timeline.phases[outage];
        let during = || {
            self.records
                .iter()
                .filter(move |record| record.offered >= start && record.offered < end)
        };
        let rejected = during()
            .filter(|record| matches!(record.outcome, Err(kind) if kind.starts_with("rejected")))
            .map(|record| record.ended - start)
            .min();
        let failed = during()
            .filter(|record| record.outcome.is_err())
            .map(|record| record.ended - start)
            .min();
        (rejected, failed)
    }

    /// From the recovery's start: the first success to end after it, and
    /// the start of the first 100 ms from which every 100 ms of calls
    /// offered until the phase's end succeeded at 95 % or more.
    fn resumption(&self, timeline: &Timeline) -> (Option<Duration>, Option<Duration>) {
        let Some(outage) = timeline.find(Behaviour::Outage, 0) else {
            return (None, None);
        };
        let Some(recovery) = timeline.find(Behaviour::Healthy, outage) else {
            return (None, None);
        };
        let (_, _, start, end) = timeline.phases[recovery];
        let first = self
            .records
            .iter()
            .filter(|record| record.outcome.is_ok() && record.ended >= start)
            .map(|record| record.ended - start)
            .min();
        let (from, to) = (bucket_of(start), bucket_of(end));
        let mut tally = vec![(0usize, 0usize); to - from];
        for record in &self.records {
            let bucket = bucket_of(record.offered);
            if (from..to).contains(&bucket) {
                tally[bucket - from].0 += 1;
                tally[bucket - from].1 += usize::from(record.outcome.is_ok());
            }
        }
        let good = |&(offered, succeeded): &(usize, usize)| succeeded * 100 >= offered * 95;
        let mut settled = None;
        for index in (0..tally.len()).rev() {
            if good(&tally[index]) {
                settled = Some(index);
            } else {
                break;
            }
        }
        (first, settled.map(|index| BUCKET * index as u32))
    }

    /// Failures by kind in each phase.
    fn failures(&self, timeline: &Timeline) -> Vec<BTreeMap<&'static str, usize>> {
        let mut kinds = vec![BTreeMap::new(); timeline.phases.len()];
        for record in &self.records {
            if let Err(kind) = record.outcome {
                *kinds[timeline.phase_at(record.offered)]
                    .entry(kind)
                    .or_insert(0) += 1;
            }
        }
        kinds
    }
}

fn millis(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis()))
}

fn print(runs: &[Run], timeline: &Timeline) {
    println!(
        "\n| strategy | phase | offered calls | vendor requests (429s) | requests / call | success | p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for run in runs {
        let (mut offered, mut requests, mut refused, mut successes) = (0, 0, 0, 0);
        for (index, &(name, ..)) in timeline.phases.iter().enumerate() {
            let phase = run.phase(timeline, index);
            offered += phase.offered;
            requests += phase.requests;
            refused += phase.refused;
            successes += phase.successes;
            println!(
                "| {} | {name} | {} | {}{} | {:.2} | {:.1} % | {} ms | {} ms |",
                run.strategy.name(),
                phase.offered,
                phase.requests,
                if phase.refused > 0 {
                    format!(" ({})", phase.refused)
                } else {
                    String::new()
                },
                phase.requests as f64 / phase.offered.max(1) as f64,
                100.0 * phase.successes as f64 / phase.offered.max(1) as f64,
                phase.p50.as_millis(),
                phase.p99.as_millis(),
            );
        }
        println!(
            "| **{}** | **whole run** | {offered} | {requests} ({refused}) | **{:.2}** | **{:.1} %** | | |",
            run.strategy.name(),
            requests as f64 / offered.max(1) as f64,
            100.0 * successes as f64 / offered.max(1) as f64,
        );
    }

    println!(
        "\n| strategy | outage: first call refused unsent | outage: first failed call | recovery: first success | recovery: ≥ 95 % success from |"
    );
    println!("|---|---|---|---|---|");
    for run in runs {
        let (rejected, failed) = run.detection(timeline);
        let (first, settled) = run.resumption(timeline);
        println!(
            "| {} | {} | {} | {} | {} |",
            run.strategy.name(),
            millis(rejected),
            millis(failed),
            millis(first),
            millis(settled),
        );
    }

    println!("\nfailures by kind:");
    for run in runs {
        for (index, kinds) in run.failures(timeline).iter().enumerate() {
            if kinds.is_empty() {
                continue;
            }
            let list: Vec<String> = kinds
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            println!(
                "  {:<16} {:<20} {}",
                run.strategy.name(),
                timeline.phases[index].0,
                list.join(", ")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------

/// The chart's resolution: 200 ms.
const CHART_BUCKETS: usize = 2;

/// Per 200 ms: the vendor's requests a second, and the share of the calls
/// offered in it that succeeded.
/// A line of the chart: (seconds from the callers' start, value).
type Points = Vec<(f64, f64)>;

fn series(run: &Run, timeline: &Timeline) -> (Points, Points) {
    let width = BUCKET.as_secs_f64() * CHART_BUCKETS as f64;
    let slots = bucket_of(timeline.length()) / CHART_BUCKETS;
    let load = (0..slots)
        .map(|slot| {
            let received: u64 = run
                .received
                .iter()
                .skip(slot * CHART_BUCKETS)
                .take(CHART_BUCKETS)
                .sum();
            (slot as f64 * width, received as f64 / width)
        })
        .collect();
    let mut tally = vec![(0usize, 0usize); slots];
    for record in &run.records {
        let slot = bucket_of(record.offered) / CHART_BUCKETS;
        if slot < slots {
            tally[slot].0 += 1;
            tally[slot].1 += usize::from(record.outcome.is_ok());
        }
    }
    let success = tally
        .iter()
        .enumerate()
        .map(|(slot, &(offered, succeeded))| {
            (
                slot as f64 * width,
                100.0 * succeeded as f64 / offered.max(1) as f64,
            )
        })
        .collect();
    (load, success)
}

fn chart(runs: &[Run], timeline: &Timeline, path: &str) -> Result<(), Box<dyn StdError>> {
    let root = SVGBackend::new(path, (1200, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(430);
    let length = timeline.length().as_secs_f64();
    let all: Vec<_> = runs
        .iter()
        .map(|run| (run.strategy, series(run, timeline)))
        .collect();
    let peak = all
        .iter()
        .flat_map(|(_, (load, _))| load.iter().map(|&(_, y)| y))
        .fold(0.0_f64, f64::max);
    let offered = f64::from(CALLERS) / PERIOD.as_secs_f64();
    let load_top = (peak.max(offered) * 1.15 / 50.0).ceil() * 50.0;

    let panels: [(&DrawingArea<SVGBackend, _>, String, &str, f64, bool); 2] = [
        (
            &top,
            format!(
                "Vendor load: requests received per second ({} calls offered per second, every strategy)",
                offered
            ),
            "vendor requests / s",
            load_top,
            true,
        ),
        (
            &bottom,
            "Callers: share of the calls offered in each 200 ms that succeeded".to_owned(),
            "calls succeeded (%)",
            115.0,
            false,
        ),
    ];
    for (area, caption, label, top_y, is_load) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..length, 0.0..top_y)?;
        chart
            .configure_mesh()
            .x_desc("time from the callers' start (s)")
            .y_desc(label)
            .x_labels(16)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .max_light_lines(0)
            .draw()?;
        for &(name, _, start, _) in &timeline.phases {
            let x = start.as_secs_f64();
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, top_y)],
                BLACK.mix(0.3),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                name,
                (x + 0.08, top_y * 0.97),
                ("sans-serif", 13),
            )))?;
        }
        if is_load {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, offered), (length, offered)],
                BLACK.mix(0.5).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("offered: {offered} calls/s"),
                (length * 0.86, offered + top_y * 0.05),
                ("sans-serif", 12),
            )))?;
        }
        for (strategy, (load, success)) in &all {
            let colour = strategy.colour();
            let points = if is_load { load } else { success };
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(strategy.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            // Over the recovered phase, where no line runs (the
            // phases' lengths put it at about 7 s).
            .position(SeriesLabelPosition::Coordinate(
                330,
                if is_load { 40 } else { 90 },
            ))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // gets a smoke run with every phase a tenth as long.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let timeline = Timeline::new(if measuring { 1 } else { 10 });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("no tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "under failure: {CALLERS} callers, one call each every {} ms ({} calls/s); \
         per-attempt timeout {} ms; phases: {}",
        PERIOD.as_millis(),
        f64::from(CALLERS) / PERIOD.as_secs_f64(),
        TIMEOUT.as_millis(),
        timeline
            .phases
            .iter()
            .map(|(name, _, start, end)| format!("{name} {:.1} s", (*end - *start).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut runs = Vec::new();
    for strategy in Strategy::ALL {
        let began = std::time::Instant::now();
        match runtime.block_on(run(strategy, &timeline)) {
            Ok(run) => {
                eprintln!(
                    "  {}: {} calls in {:.1} s",
                    strategy.name(),
                    run.records.len(),
                    began.elapsed().as_secs_f64()
                );
                runs.push(run);
            }
            Err(error) => {
                eprintln!("{}: {error}", strategy.name());
                return ExitCode::FAILURE;
            }
        }
    }
    print(&runs, &timeline);
    let path = if measuring {
        CHART.to_owned()
    } else {
        std::env::temp_dir()
            .join("seawall-failure-smoke.svg")
            .display()
            .to_string()
    };
    if let Err(error) = chart(&runs, &timeline, &path) {
        eprintln!("the chart: {error}");
        return ExitCode::FAILURE;
    }
    println!("\nchart: {path}");
    ExitCode::SUCCESS
}
