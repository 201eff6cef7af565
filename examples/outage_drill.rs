//! An outage drill: a scripted vendor outage, run against a real HTTP server,
//! showing what seawall's timeouts, retries and circuit breaker do about it.
//!
//! ```text
//! cargo run --example outage_drill
//! ```
//!
//! The drill starts a fake CRM vendor (an axum server on `127.0.0.1`, on a
//! port the OS picks; nothing leaves the machine) and calls it through a
//! `#[seawall::contract]` trait whose adapter uses `reqwest`. The vendor then
//! goes through four phases, each a fixed number of calls a few tens of
//! milliseconds apart:
//!
//! | phase       | the vendor answers               | what seawall does                          |
//! |-------------|----------------------------------|--------------------------------------------|
//! | `healthy`   | `200` at once                    | nothing: one attempt per call              |
//! | `failing`   | `503 Service Unavailable`        | retries, then opens the breaker: fail-fast |
//! | `slow`      | `200` after [`SLOW_DELAY`]       | fail-fast; probes time out, stays open     |
//! | `recovered` | `200` at once again              | after `open_for`, probes succeed: closes   |
//!
//! It prints a timeline (phase starts, breaker transitions, the first call
//! of each kind of outcome in each phase), then a summary per phase: calls,
//! successes, errors, the requests the vendor actually received, attempts
//! cut off by the timeout, breaker transitions, fail-fast rejections and the
//! p50/p99 latency of the logical calls. It exits non-zero when the drill's
//! own expectations fail: the healthy phase had errors, the breaker never
//! opened while the vendor was failing, nothing was rejected while it was
//! open, no attempt timed out against the slow vendor or a caller waited it
//! out, or the breaker did not end closed after the recovery.
//!
//! The whole drill takes about six seconds.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use seawall::{BreakerState, Classify, ErrorClass, Event, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// The contract, its error type and the adapter
// ---------------------------------------------------------------------------

/// An account, as the vendor sends it (and as our system uses it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    /// The vendor's account id.
    pub id: String,
    /// The account's display name.
    pub name: String,
}

/// Everything a CRM call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// The vendor answered, with a status that is not a success.
    #[error("vendor answered {0}")]
    Status(http::StatusCode),
    /// The request did not get an answer: connection refused, timed out,
    /// body cut off, or a body that is not an account.
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call: a timeout, an open breaker, retries used up.
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl Classify for CrmError {
    fn class(&self) -> ErrorClass {
        match self {
            CrmError::Status(status) => status.class(),
            // A body we cannot decode will not decode on the next attempt
            // either, and it is the vendor that is broken.
            CrmError::Transport(error) if error.is_decode() => ErrorClass::VendorFault,
            // Refused connections, connect timeouts, cut-off bodies.
            CrmError::Transport(_) => ErrorClass::Retryable,
            CrmError::Seawall(error) => error.class(),
        }
    }
}

/// What our system needs from the CRM.
///
/// The literals in the policy are mirrored by [`ATTEMPT_TIMEOUT`] and
/// [`OPEN_FOR`], which the drill uses to pace itself and to check its
/// expectations.
#[contract(name = "crm")]
pub trait Crm {
    /// Reads one account.
    #[integration(
        read,
        timeout = "200ms",
        retry(attempts = 3, base = "20ms", cap = "100ms"),
        breaker(
            failure_rate = 0.5,
            window = 10,
            min_calls = 5,
            open_for = "1s",
            probes = 2
        )
    )]
    async fn account(&self, id: &str) -> Result<Account, CrmError>;
}

/// The breaker `#[contract(name = "crm")]` builds for `account`.
const BREAKER: &str = "crm.account";
/// The policy's `timeout`.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// The policy's `breaker(open_for)`.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// The adapter: the one place that knows the vendor's URLs and wire format.
pub struct CrmHttp {
    client: reqwest::Client,
    base_url: String,
    /// Attempts the adapter started: one per request sent.
    started: AtomicU64,
    /// Attempts that ran to the end, with an answer or an error. The others
    /// were dropped by the per-attempt timeout.
    finished: AtomicU64,
}

impl CrmHttp {
    fn new(base_url: String) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            // Loopback only: ignore any proxy set in the environment.
            .no_proxy()
            .connect_timeout(Duration::from_millis(100))
            // A backstop for use outside seawall; the policy's 200 ms
            // per-attempt timeout is the one that fires.
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            client,
            base_url,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        })
    }

    /// Attempts started and attempts finished so far.
    fn attempts(&self) -> (u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }

    async fn fetch(&self, id: &str) -> Result<Account, CrmError> {
        let url = format!("{}/accounts/{id}", self.base_url);
        let response = self.client.get(url).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(CrmError::Status(status));
        }
        Ok(response.json().await?)
    }
}

impl Crm for CrmHttp {
    async fn account(&self, id: &str) -> Result<Account, CrmError> {
        self.started.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch(id).await;
        // Not reached when seawall's timeout drops this future.
        self.finished.fetch_add(1, Ordering::Relaxed);
        result
    }
}

// ---------------------------------------------------------------------------
// The fake vendor
// ---------------------------------------------------------------------------

/// How long the vendor takes to answer in the `slow` phase: three times the
/// per-attempt timeout, and more than a probe call's two attempts.
const SLOW_DELAY: Duration = Duration::from_millis(800);

/// The phases of the drill, which are also the vendor's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Healthy,
    Failing,
    Slow,
    Recovered,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Healthy,
        Phase::Failing,
        Phase::Slow,
        Phase::Recovered,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Failing => "failing",
            Phase::Slow => "slow",
            Phase::Recovered => "recovered",
        }
    }

    fn vendor_behaviour(self) -> String {
        match self {
            Phase::Healthy => "the vendor answers 200 at once".into(),
            Phase::Failing => "the vendor answers 503 Service Unavailable".into(),
            Phase::Slow => format!(
                "the vendor answers 200 after {} ms (timeout: {} ms)",
                SLOW_DELAY.as_millis(),
                ATTEMPT_TIMEOUT.as_millis()
            ),
            Phase::Recovered => "the vendor answers 200 at once again".into(),
        }
    }
}

/// The vendor's switchable behaviour and what it saw.
#[derive(Default)]
struct Vendor {
    mode: AtomicU8,
    /// Requests received, by the phase they arrived in.
    requests: [AtomicU64; 4],
}

impl Vendor {
    fn set_phase(&self, phase: Phase) {
        self.mode.store(phase as u8, Ordering::SeqCst);
    }

    fn phase(&self) -> Phase {
        let mode = usize::from(self.mode.load(Ordering::SeqCst));
        Phase::ALL.get(mode).copied().unwrap_or(Phase::Healthy)
    }

    fn requests(&self, phase: Phase) -> u64 {
        self.requests[phase.index()].load(Ordering::SeqCst)
    }
}

/// `GET /accounts/{id}`.
async fn get_account(State(vendor): State<Arc<Vendor>>, Path(id): Path<String>) -> Response {
    let phase = vendor.phase();
    vendor.requests[phase.index()].fetch_add(1, Ordering::SeqCst);
    let account = Account {
        name: format!("Customer {}", id.trim_start_matches("acct-")),
        id,
    };
    match phase {
        Phase::Healthy | Phase::Recovered => Json(account).into_response(),
        Phase::Failing => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Phase::Slow => {
            tokio::time::sleep(SLOW_DELAY).await;
            Json(account).into_response()
        }
    }
}

// ---------------------------------------------------------------------------
// The drill
// ---------------------------------------------------------------------------

/// One phase of the script: how many calls, how far apart.
struct Step {
    phase: Phase,
    calls: u32,
    spacing: Duration,
}

/// The script. Each phase after `healthy` lasts longer than [`OPEN_FOR`], so
/// an open breaker half-opens within it at least once: in `failing` and
/// `slow` its probes fail, in `recovered` they succeed.
const SCRIPT: [Step; 4] = [
    Step {
        phase: Phase::Healthy,
        calls: 20,
        spacing: Duration::from_millis(25),
    },
    Step {
        phase: Phase::Failing,
        calls: 30,
        spacing: Duration::from_millis(50),
    },
    Step {
        phase: Phase::Slow,
        calls: 30,
        spacing: Duration::from_millis(50),
    },
    Step {
        phase: Phase::Recovered,
        calls: 30,
        spacing: Duration::from_millis(50),
    },
];

/// A breaker transition, as the subscriber saw it.
struct Transition {
    at: Duration,
    to: BreakerState,
}

/// Prints timeline lines, stamped relative to the drill's start.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(self) -> Duration {
        self.start.elapsed()
    }

    fn note(self, text: impl fmt::Display) {
        note_at(self.now(), text);
    }
}

fn note_at(at: Duration, text: impl fmt::Display) {
    println!("{:>9}  {text}", format!("+{:.3}s", at.as_secs_f64()));
}

/// What one phase did.
struct PhaseReport {
    phase: Phase,
    started: Duration,
    ended: Duration,
    calls: u32,
    ok: u32,
    /// Every call that did not succeed, fail-fast rejections included.
    errors: u32,
    /// Calls the breaker rejected without the vendor being called at all.
    fail_fast: u32,
    /// Requests the vendor received during the phase.
    vendor_attempts: u64,
    /// Attempts the per-attempt timeout cut off.
    timed_out: u64,
    transitions: usize,
    breaker_after: Option<BreakerState>,
    /// Latency of each logical call (every attempt and backoff included).
    latencies: Vec<Duration>,
    last_call_ok: bool,
}

impl PhaseReport {
    fn max_latency(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// Nearest-rank percentile of `sorted` (ascending): the smallest value that
/// at least `percent`% of the values are at or below.
fn percentile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    let rank = (percent.min(100) * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A short label per kind of failure, so the timeline shows the first call
/// of each kind in each phase and not every call.
fn failure_kind(error: &CrmError) -> &'static str {
    match error {
        CrmError::Status(_) => "status",
        CrmError::Transport(_) => "transport",
        CrmError::Seawall(seawall::Error::Timeout { .. }) => "timeout",
        CrmError::Seawall(seawall::Error::BreakerOpen { .. }) => "breaker-open",
        CrmError::Seawall(seawall::Error::RetriesExhausted { .. }) => "retries-exhausted",
        CrmError::Seawall(seawall::Error::DeadlineExceeded { .. }) => "deadline",
        CrmError::Seawall(_) => "other",
    }
}

fn explain(from: BreakerState, to: BreakerState) -> &'static str {
    match (from, to) {
        (BreakerState::Closed, BreakerState::Open) => {
            "too many failures in the window: failing fast from now on"
        }
        (BreakerState::Open, BreakerState::HalfOpen) => {
            "open_for has passed: letting probes through"
        }
        (BreakerState::HalfOpen, BreakerState::Open) => "the probes failed: open again",
        (BreakerState::HalfOpen, BreakerState::Closed) => "the probes succeeded: back to normal",
        _ => "",
    }
}

/// Runs one phase of the script.
async fn run_phase(
    crm: &Resilient<CrmHttp>,
    runtime: &Runtime,
    vendor: &Vendor,
    clock: Clock,
    step: &Step,
) -> PhaseReport {
    vendor.set_phase(step.phase);
    let started = clock.now();
    note_at(
        started,
        format!(
            "== {} phase: {}; {} calls, one every {} ms",
            step.phase.name(),
            step.phase.vendor_behaviour(),
            step.calls,
            step.spacing.as_millis()
        ),
    );
    let mut report = PhaseReport {
        phase: step.phase,
        started,
        ended: started,
        calls: 0,
        ok: 0,
        errors: 0,
        fail_fast: 0,
        vendor_attempts: 0,
        timed_out: 0,
        transitions: 0,
        breaker_after: None,
        latencies: Vec::with_capacity(step.calls as usize),
        last_call_ok: false,
    };
    // The kinds of outcome already shown in this phase's timeline.
    let mut shown: Vec<&'static str> = Vec::new();
    let mut first = |kind: &'static str| {
        let new = !shown.contains(&kind);
        if new {
            shown.push(kind);
        }
        new
    };

    for n in 1..=step.calls {
        let (started_before, finished_before) = crm.inner().attempts();
        let call_started = Instant::now();
        let result = crm.account(&format!("acct-{n}")).await;
        let latency = call_started.elapsed();
        let (started_after, finished_after) = crm.inner().attempts();
        let attempts = started_after - started_before;
        let timed_out = attempts - (finished_after - finished_before);
        report.timed_out += timed_out;

        report.calls += 1;
        report.latencies.push(latency);
        report.last_call_ok = result.is_ok();
        let tried = match (attempts, timed_out) {
            (1, 0) => "1 vendor attempt".to_string(),
            (a, 0) => format!("{a} vendor attempts"),
            (1, _) => "1 vendor attempt, cut off by the timeout".to_string(),
            (a, t) if t == a => format!("{a} vendor attempts, all cut off by the timeout"),
            (a, t) => format!("{a} vendor attempts, {t} cut off by the timeout"),
        };
        match result {
            Ok(account) => {
                report.ok += 1;
                if first("ok") {
                    clock.note(format!(
                        "   call {n:>2}: ok in {:.2} ms after {tried}: {} is {:?}",
                        millis(latency),
                        account.id,
                        account.name
                    ));
                }
            }
            // The breaker turned the call away before it reached the vendor.
            Err(CrmError::Seawall(error @ seawall::Error::BreakerOpen { .. })) => {
                report.errors += 1;
                report.fail_fast += 1;
                if first("fail-fast") {
                    clock.note(format!(
                        "   call {n:>2}: rejected in {:.2} ms without calling the vendor \
                         (first fail-fast of the phase): {error}",
                        millis(latency),
                    ));
                }
            }
            Err(error) => {
                report.errors += 1;
                if first(failure_kind(&error)) {
                    clock.note(format!(
                        "   call {n:>2}: failed in {:.2} ms after {tried}: {}",
                        millis(latency),
                        error
                    ));
                }
            }
        }
        tokio::time::sleep(step.spacing).await;
    }

    report.ended = clock.now();
    report.vendor_attempts = vendor.requests(step.phase);
    report.breaker_after = runtime.breaker(BREAKER).map(|breaker| breaker.state());
    report
}

fn print_summary(reports: &[PhaseReport]) {
    println!();
    println!(
        "{:<10} {:>5} {:>4} {:>6} {:>15} {:>9} {:>11} {:>9} {:>8} {:>8}  breaker after",
        "phase",
        "calls",
        "ok",
        "errors",
        "vendor attempts",
        "timed out",
        "transitions",
        "fail-fast",
        "p50 ms",
        "p99 ms",
    );
    println!("{}", "-".repeat(108));
    for report in reports {
        let mut sorted = report.latencies.clone();
        sorted.sort_unstable();
        let p50 = percentile(&sorted, 50).map_or(0.0, millis);
        let p99 = percentile(&sorted, 99).map_or(0.0, millis);
        let breaker = report.breaker_after.map_or("-", BreakerState::as_str);
        println!(
            "{:<10} {:>5} {:>4} {:>6} {:>15} {:>9} {:>11} {:>9} {:>8.2} {:>8.2}  {}",
            report.phase.name(),
            report.calls,
            report.ok,
            report.errors,
            report.vendor_attempts,
            report.timed_out,
            report.transitions,
            report.fail_fast,
            p50,
            p99,
            breaker
        );
    }
    println!();
    println!("errors: every call that failed, fail-fast rejections included");
    println!("vendor attempts: requests the fake vendor received (counted by the server)");
    println!("timed out: attempts cut off by the per-attempt timeout (counted by the adapter)");
    println!("fail-fast: calls the open breaker rejected without calling the vendor");
    println!("p50/p99: nearest-rank latency of the logical calls, retries and backoff included");
}

/// The drill's own expectations; every failed one is listed.
fn check(reports: &[PhaseReport], transitions: &[Transition]) -> Vec<String> {
    let mut failures = Vec::new();
    let phase = |p: Phase| reports.iter().find(|r| r.phase == p);
    let opened_during = |report: &PhaseReport| {
        transitions
            .iter()
            .any(|t| t.to == BreakerState::Open && t.at >= report.started && t.at < report.ended)
    };

    match phase(Phase::Healthy) {
        Some(healthy) if healthy.errors > 0 || healthy.transitions > 0 => failures.push(format!(
            "the healthy phase had {} error(s) and {} breaker transition(s); expected none",
            healthy.errors, healthy.transitions
        )),
        Some(_) => {}
        None => failures.push("the healthy phase did not run".into()),
    }

    match phase(Phase::Failing) {
        Some(failing) => {
            if !opened_during(failing) {
                failures.push("the breaker never opened while the vendor answered 503".into());
            }
            if failing.fail_fast == 0 {
                failures.push(
                    "no call was rejected without reaching the vendor while the breaker was open"
                        .into(),
                );
            }
        }
        None => failures.push("the failing phase did not run".into()),
    }

    match phase(Phase::Slow) {
        Some(slow) => {
            // The breaker half-opens during the phase, so its probes meet
            // the slow vendor.
            if slow.timed_out == 0 {
                failures.push("no attempt was cut off by the timeout in the slow phase".into());
            }
            // Timeouts (and the open breaker) must answer every caller well
            // before the slow vendor would have.
            if slow.max_latency() >= SLOW_DELAY {
                failures.push(format!(
                    "a call in the slow phase took {:.0} ms: the {} ms timeout did not protect \
                     the caller from the vendor's {} ms delay",
                    millis(slow.max_latency()),
                    ATTEMPT_TIMEOUT.as_millis(),
                    SLOW_DELAY.as_millis()
                ));
            }
        }
        None => failures.push("the slow phase did not run".into()),
    }

    match phase(Phase::Recovered) {
        Some(recovered) => {
            if recovered.breaker_after != Some(BreakerState::Closed) {
                failures.push(format!(
                    "the breaker ended {} after the vendor recovered; expected closed",
                    recovered
                        .breaker_after
                        .map_or("missing", BreakerState::as_str)
                ));
            }
            if !recovered.last_call_ok {
                failures.push("the last call after the recovery did not succeed".into());
            }
        }
        None => failures.push("the recovered phase did not run".into()),
    }
    failures
}

/// The drill's expectations that did not hold.
struct DrillFailed(Vec<String>);

impl fmt::Display for DrillFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the outage drill's expectations failed:")?;
        for failure in &self.0 {
            write!(f, "\n  - {failure}")?;
        }
        Ok(())
    }
}

// `main` prints an `Err` with `Debug`: make that the readable list too.
impl fmt::Debug for DrillFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl StdError for DrillFailed {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    // The vendor.
    let vendor = Arc::new(Vendor::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/accounts/{id}", get(get_account))
        .with_state(vendor.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The resilient client, and a subscriber that puts every breaker
    // transition on the timeline.
    let runtime = Runtime::in_memory();
    let clock = Clock {
        start: Instant::now(),
    };
    let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
    runtime.subscribe({
        let transitions = transitions.clone();
        move |event| {
            let Event::Breaker(transition) = event else {
                return;
            };
            let at = clock.now();
            note_at(
                at,
                format!(
                    "breaker `{}`: {} -> {} ({})",
                    transition.breaker,
                    transition.from,
                    transition.to,
                    explain(transition.from, transition.to)
                ),
            );
            transitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Transition {
                    at,
                    to: transition.to,
                });
        }
    });
    let crm = Resilient::new(CrmHttp::new(format!("http://{addr}"))?, &runtime);

    println!("seawall outage drill against a fake vendor at http://{addr}");
    println!(
        "policy of crm.account: {} ms per attempt, 3 attempts (backoff 20..100 ms); the breaker \
         opens at 50% failures over the last 10 attempts (at least 5), stays open {} ms, then \
         lets 2 probes through",
        ATTEMPT_TIMEOUT.as_millis(),
        OPEN_FOR.as_millis()
    );
    println!();

    let mut reports = Vec::with_capacity(SCRIPT.len());
    for step in &SCRIPT {
        reports.push(run_phase(&crm, &runtime, &vendor, clock, step).await);
    }
    clock.note("== drill over");

    // Done with the network: close the client's connections, stop the server.
    drop(crm);
    server.abort();
    match server.await {
        Err(join) if join.is_cancelled() => {}
        Err(join) => return Err(format!("the fake vendor's task failed: {join}").into()),
        Ok(Err(io)) => return Err(format!("the fake vendor stopped serving: {io}").into()),
        Ok(Ok(())) => return Err("the fake vendor stopped serving early".into()),
    }

    let transitions =
        std::mem::take(&mut *transitions.lock().unwrap_or_else(PoisonError::into_inner));
    for report in &mut reports {
        report.transitions = transitions
            .iter()
            .filter(|t| t.at >= report.started && t.at < report.ended)
            .count();
    }
    print_summary(&reports);

    let failures = check(&reports, &transitions);
    if !failures.is_empty() {
        return Err(DrillFailed(failures).into());
    }
    println!("drill passed: every expectation held.");
    Ok(())
}
