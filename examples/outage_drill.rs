//! An outage drill: a scripted vendor outage, run against a real HTTP server,
//! showing what seawall's timeouts, retries, circuit breaker, last-known-good
//! cache and queued writes do about it.
//!
//! ```text
//! cargo run --example outage_drill
//! ```
//!
//! The drill starts a fake CRM vendor (an axum server on `127.0.0.1`, on a
//! port the OS picks; nothing leaves the machine) and calls it through a
//! `#[seawall::contract]` trait whose adapter uses [`seawall::http::Client`]
//! (reqwest, plus the call's `Idempotency-Key` header). Its runtime keeps
//! queued writes in a write-ahead log on disk (a redb file in a temporary
//! directory). The vendor then goes through seven phases, each a fixed number
//! of calls a few tens of milliseconds apart, of one of the contract's three
//! methods: `account` (a read), `account_card` (a read with
//! `fallback = cache(..)`) and `add_note` (a write with `fallback = queue`):
//!
//! | phase       | the vendor answers         | calls          | what seawall does                                      |
//! |-------------|----------------------------|----------------|--------------------------------------------------------|
//! | `healthy`   | `200` at once              | `account`      | nothing: one attempt per call                          |
//! | `failing`   | `503 Service Unavailable`  | `account`      | retries, then opens the breaker: fail-fast             |
//! | `slow`      | `200` after [`SLOW_DELAY`] | `account`      | fail-fast; probes time out, stays open                 |
//! | `recovered` | `200` at once again        | `account`      | after `open_for`, probes succeed: closes               |
//! | `browsing`  | `200` at once              | `account_card` | nothing, but remembers each answer                     |
//! | `cached`    | `503 Service Unavailable`  | `account_card` | answers from the cache: stale, with its age            |
//! | `queued`    | `503`, then `200` again    | `add_note`     | queues each note on disk; the drain delivers, in order |
//!
//! In the `queued` phase the vendor is down while the notes are written and
//! recovers once they are all queued; the phase ends when the drain has
//! delivered every one.
//!
//! It prints a timeline (phase starts, breaker transitions, the first call
//! of each kind of outcome in each phase, the drain's deliveries and the
//! depth of the write-ahead log), then a summary per phase: calls, answers,
//! errors, stale answers, queued writes, the requests the vendor actually
//! received, attempts cut off by the timeout, breaker transitions, fail-fast
//! rejections, the p50/p99 latency of the logical calls and the depth of the
//! write-ahead log. Last, it prints the runtime's own account of the drill,
//! [`Runtime::health`](seawall::Runtime::health): per endpoint the attempts
//! that reached the vendor, their error rate, timeouts, fail-fast
//! rejections, latency percentiles, breaker state, stale answers and queued
//! writes, and per contract queue its pending writes and dead letters; as a
//! table, then as the JSON a health endpoint would serve.
//!
//! It exits non-zero when the drill's own expectations fail: the healthy
//! phase had errors, the breaker never opened while the vendor was failing,
//! nothing was rejected while it was open, no attempt timed out against the
//! slow vendor or a caller waited it out, the breaker did not end closed
//! after the recovery, a card read during the outage was not answered stale
//! from the cache, or a note written during the outage was not queued, then
//! delivered exactly once and in order, leaving the log empty; or when the
//! health snapshot disagrees with what the drill counted itself (each
//! method's attempts against the requests the vendor received, its
//! timeouts, rejections, stale answers and queued writes, its breaker's
//! state, and the queue's pending writes and dead letters, none left).
//!
//! The whole drill takes about seven seconds.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use seawall::telemetry::{EndpointHealth, Health};
use seawall::wal::{Ticket, TicketStatus, WriteAheadLog};
use seawall::{
    BreakerState, Cached, Classify, Delivery, ErrorClass, Event, Resilient, Runtime, contract,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
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

/// A note to log on an account, as our system writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewNote {
    /// The call the note is about: with the account, it makes the note's
    /// idempotency key.
    pub call: String,
    /// What the agent wrote.
    pub text: String,
}

/// A note, as the vendor stored it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Note {
    /// The vendor's note id.
    pub id: String,
    /// The account it is on.
    pub account: String,
    /// The call it is about.
    pub call: String,
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

    // An open breaker says when it lets calls through again; a queued
    // write's drain waits that long.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            CrmError::Seawall(error) => error.retry_after(),
            CrmError::Status(_) | CrmError::Transport(_) => None,
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

    /// Reads one account for the agent's screen, where an answer up to an
    /// hour old beats an error page.
    #[integration(
        read,
        timeout = "200ms",
        retry(attempts = 2, base = "20ms", cap = "50ms"),
        breaker(failure_rate = 0.5, window = 4, min_calls = 2, open_for = "1s"),
        fallback = cache(max_stale = "1h")
    )]
    async fn account_card(&self, id: &str) -> Result<Cached<Account>, CrmError>;

    /// Logs a note on an account. When the vendor cannot take it now, it is
    /// queued and delivered later, in order, with the same idempotency key.
    #[integration(
        write,
        timeout = "200ms",
        retry(attempts = 2, base = "20ms", cap = "50ms"),
        breaker(failure_rate = 0.5, window = 4, min_calls = 2, open_for = "500ms"),
        idempotent(key = [account, note.call]),
        fallback = queue
    )]
    async fn add_note(&self, account: &str, note: &NewNote) -> Result<Delivery<Note>, CrmError>;
}

/// The breaker `#[contract(name = "crm")]` builds for `account`.
const BREAKER: &str = "crm.account";
/// The contract's name, under which the write-ahead log counts its writes.
const CONTRACT: &str = "crm";
/// The policy's `timeout`.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// The policy's `breaker(open_for)`.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// The adapter: the one place that knows the vendor's URLs and wire format.
pub struct CrmHttp {
    client: seawall::http::Client,
    base_url: String,
    /// Attempts the adapter started: one per request sent.
    started: AtomicU64,
    /// Attempts that ran to the end, with an answer or an error. The others
    /// were dropped by the per-attempt timeout.
    finished: AtomicU64,
}

impl CrmHttp {
    fn new(base_url: String) -> Result<Self, seawall::http::BuildError> {
        let client = seawall::http::Client::builder()
            // Loopback only: ignore any proxy set in the environment.
            .configure(|builder| builder.no_proxy())
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

    /// Runs one attempt, counting it as started and, unless seawall's
    /// timeout drops it first, as finished.
    async fn counted<T>(
        &self,
        attempt: impl Future<Output = Result<T, CrmError>>,
    ) -> Result<T, CrmError> {
        self.started.fetch_add(1, Ordering::Relaxed);
        let result = attempt.await;
        // Not reached when seawall's timeout drops this future.
        self.finished.fetch_add(1, Ordering::Relaxed);
        result
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

    async fn post_note(&self, account: &str, note: &NewNote) -> Result<Note, CrmError> {
        let url = format!("{}/accounts/{account}/notes", self.base_url);
        // The client adds the call's `Idempotency-Key` header.
        let response = self.client.post(url).json(note).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(CrmError::Status(status));
        }
        Ok(response.json().await?)
    }
}

impl Crm for CrmHttp {
    async fn account(&self, id: &str) -> Result<Account, CrmError> {
        self.counted(self.fetch(id)).await
    }

    async fn account_card(&self, id: &str) -> Result<Cached<Account>, CrmError> {
        Ok(self.counted(self.fetch(id)).await?.into())
    }

    async fn add_note(&self, account: &str, note: &NewNote) -> Result<Delivery<Note>, CrmError> {
        Ok(self.counted(self.post_note(account, note)).await?.into())
    }
}

// ---------------------------------------------------------------------------
// The fake vendor
// ---------------------------------------------------------------------------

/// How long the vendor takes to answer in the `slow` phase: three times the
/// per-attempt timeout, and more than a probe call's two attempts.
const SLOW_DELAY: Duration = Duration::from_millis(800);

/// The phases of the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Healthy,
    Failing,
    Slow,
    Recovered,
    Browsing,
    Cached,
    Queued,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Healthy,
        Phase::Failing,
        Phase::Slow,
        Phase::Recovered,
        Phase::Browsing,
        Phase::Cached,
        Phase::Queued,
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
            Phase::Browsing => "browsing",
            Phase::Cached => "cached",
            Phase::Queued => "queued",
        }
    }

    /// How the vendor answers when the phase starts.
    fn mode(self) -> Mode {
        match self {
            Phase::Healthy | Phase::Recovered | Phase::Browsing => Mode::Up,
            Phase::Failing | Phase::Cached | Phase::Queued => Mode::Unavailable,
            Phase::Slow => Mode::Slow,
        }
    }

    /// What the phase calls.
    fn workload(self) -> Workload {
        match self {
            Phase::Healthy | Phase::Failing | Phase::Slow | Phase::Recovered => Workload::Reads,
            Phase::Browsing | Phase::Cached => Workload::CardReads,
            Phase::Queued => Workload::Notes,
        }
    }

    fn vendor_behaviour(self) -> String {
        match self {
            Phase::Healthy | Phase::Browsing => "the vendor answers 200 at once".into(),
            Phase::Failing | Phase::Cached => "the vendor answers 503 Service Unavailable".into(),
            Phase::Slow => format!(
                "the vendor answers 200 after {} ms (timeout: {} ms)",
                SLOW_DELAY.as_millis(),
                ATTEMPT_TIMEOUT.as_millis()
            ),
            Phase::Recovered => "the vendor answers 200 at once again".into(),
            Phase::Queued => {
                "the vendor answers 503 until every note is written, then 200 again".into()
            }
        }
    }
}

/// Which of the contract's methods a phase calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// `account`: a read with retries and a breaker.
    Reads,
    /// `account_card`: the same read with `fallback = cache(..)`.
    CardReads,
    /// `add_note`: a write with `fallback = queue`.
    Notes,
}

impl Workload {
    fn describe(self) -> &'static str {
        match self {
            Workload::Reads => "account reads",
            Workload::CardReads => "account-card reads (cached read)",
            Workload::Notes => "notes written (queued write)",
        }
    }

    /// The breaker `#[contract(name = "crm")]` builds for the method.
    fn breaker(self) -> &'static str {
        match self {
            Workload::Reads => BREAKER,
            Workload::CardReads => "crm.account_card",
            Workload::Notes => "crm.add_note",
        }
    }
}

/// How the vendor answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Unavailable,
    Slow,
}

/// The vendor's switchable behaviour and what it saw.
#[derive(Default)]
struct Vendor {
    phase: AtomicU8,
    mode: AtomicU8,
    /// Requests received, by the phase they arrived in.
    requests: [AtomicU64; Phase::ALL.len()],
    notes: Mutex<NoteBook>,
}

/// The notes the vendor took, by idempotency key.
#[derive(Default)]
struct NoteBook {
    /// Every note made, in order, with the key it was made under.
    made: Vec<(String, Note)>,
    by_key: HashMap<String, Note>,
    /// Requests that carried a key already made, answered with its note.
    replays: u64,
}

impl Vendor {
    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
        self.set_mode(phase.mode());
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn phase(&self) -> Phase {
        let phase = usize::from(self.phase.load(Ordering::SeqCst));
        Phase::ALL.get(phase).copied().unwrap_or(Phase::Healthy)
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            m if m == Mode::Unavailable as u8 => Mode::Unavailable,
            m if m == Mode::Slow as u8 => Mode::Slow,
            _ => Mode::Up,
        }
    }

    fn requests(&self, phase: Phase) -> u64 {
        self.requests[phase.index()].load(Ordering::SeqCst)
    }

    /// Counts a request in the current phase; answers 503 or waits as the
    /// mode says, and `None` when the request may go on.
    async fn answer(&self) -> Option<Response> {
        self.requests[self.phase().index()].fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            Mode::Up => None,
            Mode::Unavailable => Some(StatusCode::SERVICE_UNAVAILABLE.into_response()),
            Mode::Slow => {
                tokio::time::sleep(SLOW_DELAY).await;
                None
            }
        }
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, NoteBook> {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /accounts/{id}`.
async fn get_account(State(vendor): State<Arc<Vendor>>, Path(id): Path<String>) -> Response {
    if let Some(refused) = vendor.answer().await {
        return refused;
    }
    Json(Account {
        name: format!("Customer {}", id.trim_start_matches("acct-")),
        id,
    })
    .into_response()
}

/// `POST /accounts/{id}/notes`: makes a note once per `Idempotency-Key`,
/// and answers a key it has seen with the note it made then.
async fn post_note(
    State(vendor): State<Arc<Vendor>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Json(note): Json<NewNote>,
) -> Response {
    if let Some(refused) = vendor.answer().await {
        return refused;
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "an Idempotency-Key header is required",
        )
            .into_response();
    };
    let mut book = vendor.notes();
    if let Some(made) = book.by_key.get(key).cloned() {
        book.replays += 1;
        return Json(made).into_response();
    }
    let made = Note {
        id: format!("note-{}", book.made.len() + 1),
        account,
        call: note.call,
    };
    book.made.push((key.to_owned(), made.clone()));
    book.by_key.insert(key.to_owned(), made.clone());
    Json(made).into_response()
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

/// The script. Each phase from `failing` to `recovered` lasts longer than
/// [`OPEN_FOR`], so an open breaker half-opens within it at least once: in
/// `failing` and `slow` its probes fail, in `recovered` they succeed. The
/// `browsing` phase reads the cards of the accounts that the `cached` phase
/// reads again while the vendor is down.
const SCRIPT: [Step; 7] = [
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
    Step {
        phase: Phase::Browsing,
        calls: CARDS,
        spacing: Duration::from_millis(25),
    },
    Step {
        phase: Phase::Cached,
        calls: CARDS,
        spacing: Duration::from_millis(50),
    },
    Step {
        phase: Phase::Queued,
        calls: 6,
        spacing: Duration::from_millis(50),
    },
];

/// How many account cards the `browsing` and `cached` phases read.
const CARDS: u32 = 12;

/// How long the `queued` phase waits for the drain once the vendor is back.
/// The drain leaves a vendor that just failed alone for up to a second (or
/// for as long as the breaker stays open), then delivers in a few
/// milliseconds per note.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

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
    /// Calls answered: fresh, stale from the cache, or queued.
    ok: u32,
    /// Every call that did not get an answer, fail-fast rejections included.
    errors: u32,
    /// Calls answered from the last-known-good cache.
    stale: u32,
    /// Writes answered with a ticket: queued in the write-ahead log.
    queued: u32,
    /// Calls the breaker rejected without the vendor being called at all
    /// (answered from the cache, in the `cached` phase).
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
    /// Writes pending in the write-ahead log when the phase ended.
    depth_after: u64,
    /// In the `queued` phase: what the drain did.
    drain: Option<DrainReport>,
}

impl PhaseReport {
    fn max_latency(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// What the drain did with the notes queued in the `queued` phase.
struct DrainReport {
    /// The idempotency keys of the queued notes, in ticket order.
    queued_keys: Vec<String>,
    /// How many of them the drain settled within [`DRAIN_LIMIT`] (and
    /// reported to subscribers), and how many of those were delivered.
    settled: usize,
    delivered: usize,
    /// How long the drain took from the vendor's recovery to its last
    /// report; `None` when it did not finish within [`DRAIN_LIMIT`].
    took: Option<Duration>,
    /// The keys of the notes the vendor made, in the order it made them.
    made_keys: Vec<String>,
    /// The contract's pending writes at the end, by the live count.
    pending_after: u64,
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

/// The start of an idempotency key, enough to tell keys apart.
fn short(key: &str) -> String {
    match key.get(..12) {
        Some(start) if start.len() < key.len() => format!("{start}…"),
        _ => key.to_owned(),
    }
}

/// What a call got, whichever method it called.
enum Answer {
    /// An account, from the vendor.
    Fresh(Account),
    /// An account from the last-known-good cache, this old.
    Stale(Account, Duration),
    /// A note, made by the vendor.
    Noted(Note),
    /// A note queued in the write-ahead log.
    Queued(Ticket),
}

/// The drill's side of the runtime: the resilient client, the vendor, and
/// what the subscriber hears about queued writes.
struct Drill {
    crm: Resilient<CrmHttp>,
    runtime: Runtime,
    vendor: Arc<Vendor>,
    clock: Clock,
    /// Idempotency keys of queued writes, by ticket.
    queued_keys: Arc<Mutex<BTreeMap<Ticket, String>>>,
    /// Tickets the drain settled, as it reports them.
    settles: mpsc::UnboundedReceiver<Ticket>,
}

impl Drill {
    fn log(&self) -> &WriteAheadLog {
        self.runtime.write_ahead_log()
    }

    /// Calls the phase's method for the `n`th time.
    async fn call(&self, workload: Workload, n: u32) -> Result<Answer, CrmError> {
        let id = format!("acct-{n}");
        match workload {
            Workload::Reads => self.crm.account(&id).await.map(Answer::Fresh),
            Workload::CardReads => {
                let card = self.crm.account_card(&id).await?;
                Ok(if card.is_stale() {
                    let age = card.age();
                    Answer::Stale(card.into_value(), age)
                } else {
                    Answer::Fresh(card.into_value())
                })
            }
            Workload::Notes => {
                let note = NewNote {
                    call: format!("call-{n}"),
                    text: format!("called about order {n}; call back tomorrow"),
                };
                Ok(match self.crm.add_note(&id, &note).await? {
                    Delivery::Done(note) => Answer::Noted(note),
                    Delivery::Queued(ticket) => Answer::Queued(ticket),
                })
            }
        }
    }

    /// Runs one phase of the script.
    async fn run_phase(&mut self, step: &Step) -> PhaseReport {
        let clock = self.clock;
        let workload = step.phase.workload();
        self.vendor.set_phase(step.phase);
        let started = clock.now();
        note_at(
            started,
            format!(
                "== {} phase: {}; {} {}, one every {} ms",
                step.phase.name(),
                step.phase.vendor_behaviour(),
                step.calls,
                workload.describe(),
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
            stale: 0,
            queued: 0,
            fail_fast: 0,
            vendor_attempts: 0,
            timed_out: 0,
            transitions: 0,
            breaker_after: None,
            latencies: Vec::with_capacity(step.calls as usize),
            last_call_ok: false,
            depth_after: 0,
            drain: None,
        };
        let mut tickets = Vec::new();
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
            let (started_before, finished_before) = self.crm.inner().attempts();
            let call_started = Instant::now();
            let result = self.call(workload, n).await;
            let latency = call_started.elapsed();
            let (started_after, finished_after) = self.crm.inner().attempts();
            let attempts = started_after - started_before;
            let timed_out = attempts - (finished_after - finished_before);
            report.timed_out += timed_out;

            report.calls += 1;
            report.latencies.push(latency);
            report.last_call_ok = result.is_ok();
            let tried = match (attempts, timed_out) {
                (0, _) => "no vendor attempt".to_string(),
                (1, 0) => "1 vendor attempt".to_string(),
                (a, 0) => format!("{a} vendor attempts"),
                (1, _) => "1 vendor attempt, cut off by the timeout".to_string(),
                (a, t) if t == a => format!("{a} vendor attempts, all cut off by the timeout"),
                (a, t) => format!("{a} vendor attempts, {t} cut off by the timeout"),
            };
            let ms = millis(latency);
            match result {
                Ok(Answer::Fresh(account)) => {
                    report.ok += 1;
                    if first("ok") {
                        clock.note(format!(
                            "   call {n:>2}: ok in {ms:.2} ms after {tried}: {} is {:?}",
                            account.id, account.name
                        ));
                    }
                }
                Ok(Answer::Stale(account, age)) => {
                    report.ok += 1;
                    report.stale += 1;
                    // No attempt: the open breaker turned the call away, and
                    // the cache answered it.
                    if attempts == 0 {
                        report.fail_fast += 1;
                    }
                    let kind = if attempts == 0 {
                        "stale-fail-fast"
                    } else {
                        "stale"
                    };
                    if first(kind) {
                        clock.note(format!(
                            "   call {n:>2}: stale in {ms:.2} ms after {tried}: {} is {:?}, \
                             from the cache, {:.0} ms old",
                            account.id,
                            account.name,
                            millis(age)
                        ));
                    }
                }
                Ok(Answer::Noted(note)) => {
                    report.ok += 1;
                    if first("noted") {
                        clock.note(format!(
                            "   call {n:>2}: ok in {ms:.2} ms after {tried}: {} on {}",
                            note.id, note.account
                        ));
                    }
                }
                Ok(Answer::Queued(ticket)) => {
                    report.ok += 1;
                    report.queued += 1;
                    tickets.push(ticket);
                    if first("queued") {
                        clock.note(format!(
                            "   call {n:>2}: queued as {ticket} in {ms:.2} ms after {tried}: the \
                             note is on disk in the write-ahead log"
                        ));
                    }
                }
                // The breaker turned the call away before it reached the vendor.
                Err(CrmError::Seawall(error @ seawall::Error::BreakerOpen { .. })) => {
                    report.errors += 1;
                    report.fail_fast += 1;
                    if first("fail-fast") {
                        clock.note(format!(
                            "   call {n:>2}: rejected in {ms:.2} ms without calling the vendor \
                             (first fail-fast of the phase): {error}"
                        ));
                    }
                }
                Err(error) => {
                    report.errors += 1;
                    if first(failure_kind(&error)) {
                        clock.note(format!(
                            "   call {n:>2}: failed in {ms:.2} ms after {tried}: {error}"
                        ));
                    }
                }
            }
            tokio::time::sleep(step.spacing).await;
        }

        if workload == Workload::Notes {
            report.drain = Some(self.drain(&tickets).await);
        }
        report.ended = clock.now();
        report.vendor_attempts = self.vendor.requests(step.phase);
        report.breaker_after = self
            .runtime
            .breaker(workload.breaker())
            .map(|breaker| breaker.state());
        report.depth_after = self.depth().await;
        report
    }

    /// The write-ahead log's depth, as the store says; `u64::MAX` when it
    /// cannot be read (and the checks fail).
    async fn depth(&self) -> u64 {
        match self.log().depth().await {
            Ok(depth) => depth,
            Err(error) => {
                self.clock
                    .note(format!("   the write-ahead log cannot be read: {error}"));
                u64::MAX
            }
        }
    }

    /// The end of the `queued` phase: the vendor recovers, and the drain
    /// delivers the queued notes.
    async fn drain(&mut self, tickets: &[Ticket]) -> DrainReport {
        let clock = self.clock;
        clock.note(format!(
            "   {} notes queued; write-ahead log depth {}",
            tickets.len(),
            self.depth().await
        ));
        self.vendor.set_mode(Mode::Up);
        let recovered = clock.now();
        clock.note("   the vendor recovers: it answers 200 again; waiting for the drain");

        // Every ticket is settled in the log and then reported to the
        // subscriber; wait for the reports, so the timeline is complete.
        let mut settled = 0;
        let mut delivered = 0;
        let waited = tokio::time::timeout(DRAIN_LIMIT, async {
            while settled < tickets.len() {
                let Some(ticket) = self.settles.recv().await else {
                    break;
                };
                if !tickets.contains(&ticket) {
                    continue;
                }
                settled += 1;
                if let Ok(Some(TicketStatus::Delivered { .. })) = self.log().status(ticket).await {
                    delivered += 1;
                }
            }
        })
        .await;
        let took = (waited.is_ok() && settled == tickets.len()).then(|| clock.now() - recovered);
        let depth = self.depth().await;
        let (made_keys, replays) = {
            let book = self.vendor.notes();
            let keys: Vec<String> = book.made.iter().map(|(key, _)| key.clone()).collect();
            (keys, book.replays)
        };
        let vendor_side = format!(
            "the vendor made {} note(s) and answered {replays} repeated key(s)",
            made_keys.len()
        );
        match took {
            Some(took) => clock.note(format!(
                "   drain finished {:.0} ms after the vendor recovered: {delivered} of {} notes \
                 delivered, {vendor_side}; write-ahead log depth {depth}",
                millis(took),
                tickets.len()
            )),
            None => clock.note(format!(
                "   the drain did not finish within {} ms: {settled} of {} notes settled, \
                 {vendor_side}; write-ahead log depth {depth}",
                DRAIN_LIMIT.as_millis(),
                tickets.len()
            )),
        }

        let keys = self
            .queued_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        DrainReport {
            queued_keys: tickets
                .iter()
                .map(|ticket| keys.get(ticket).cloned().unwrap_or_default())
                .collect(),
            settled,
            delivered,
            took,
            made_keys,
            pending_after: self.log().pending_count(CONTRACT),
        }
    }
}

fn print_summary(reports: &[PhaseReport]) {
    println!();
    println!(
        "{:<10} {:>5} {:>4} {:>6} {:>5} {:>6} {:>15} {:>9} {:>11} {:>9} {:>8} {:>8} {:>5}  \
         breaker after",
        "phase",
        "calls",
        "ok",
        "errors",
        "stale",
        "queued",
        "vendor attempts",
        "timed out",
        "transitions",
        "fail-fast",
        "p50 ms",
        "p99 ms",
        "depth",
    );
    println!("{}", "-".repeat(135));
    for report in reports {
        let mut sorted = report.latencies.clone();
        sorted.sort_unstable();
        let p50 = percentile(&sorted, 50).map_or(0.0, millis);
        let p99 = percentile(&sorted, 99).map_or(0.0, millis);
        let breaker = report.breaker_after.map_or("-", BreakerState::as_str);
        println!(
            "{:<10} {:>5} {:>4} {:>6} {:>5} {:>6} {:>15} {:>9} {:>11} {:>9} {:>8.2} {:>8.2} {:>5}  \
             {} ({})",
            report.phase.name(),
            report.calls,
            report.ok,
            report.errors,
            report.stale,
            report.queued,
            report.vendor_attempts,
            report.timed_out,
            report.transitions,
            report.fail_fast,
            p50,
            p99,
            report.depth_after,
            breaker,
            report.phase.workload().breaker()
        );
    }
    println!();
    println!("ok: calls answered: by the vendor, from the cache (stale) or with a ticket (queued)");
    println!("errors: every call that failed, fail-fast rejections included");
    println!("stale: reads answered from the last-known-good cache while the vendor was down");
    println!("queued: writes answered with a ticket, queued in the write-ahead log");
    println!(
        "vendor attempts: requests the fake vendor received (counted by the server), the drain's \
         included"
    );
    println!("timed out: attempts cut off by the per-attempt timeout (counted by the adapter)");
    println!(
        "fail-fast: calls the open breaker rejected without calling the vendor (in `cached`, \
         answered from the cache)"
    );
    println!("p50/p99: nearest-rank latency of the logical calls, retries and backoff included");
    println!("depth: writes pending in the write-ahead log at the end of the phase");
    println!("breaker after: the state of the breaker of the phase's method at its end");
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

    match phase(Phase::Browsing) {
        Some(browsing) if browsing.errors > 0 || browsing.stale > 0 => failures.push(format!(
            "the browsing phase had {} error(s) and {} stale answer(s); expected fresh answers \
             only",
            browsing.errors, browsing.stale
        )),
        Some(_) => {}
        None => failures.push("the browsing phase did not run".into()),
    }

    match phase(Phase::Cached) {
        Some(cached) if cached.errors > 0 || cached.stale != cached.calls => {
            failures.push(format!(
                "while the vendor was down, {} of {} card reads were answered stale from the \
                 cache and {} failed; expected every one answered from the cache",
                cached.stale, cached.calls, cached.errors
            ));
        }
        Some(_) => {}
        None => failures.push("the cached phase did not run".into()),
    }

    match phase(Phase::Queued) {
        Some(queued) => {
            if queued.errors > 0 || queued.queued != queued.calls {
                failures.push(format!(
                    "while the vendor was down, {} of {} notes were queued and {} failed; \
                     expected every one queued",
                    queued.queued, queued.calls, queued.errors
                ));
            }
            match &queued.drain {
                Some(drain) => failures.extend(check_drain(drain, queued.depth_after)),
                None => failures.push("the queued phase did not wait for the drain".into()),
            }
        }
        None => failures.push("the queued phase did not run".into()),
    }
    failures
}

/// Every queued note delivered once, in the order queued, and the log empty.
fn check_drain(drain: &DrainReport, depth_after: u64) -> Vec<String> {
    let mut failures = Vec::new();
    let queued = drain.queued_keys.len();
    if drain.took.is_none() {
        failures.push(format!(
            "the drain settled {} of {queued} queued notes within {} ms of the recovery",
            drain.settled,
            DRAIN_LIMIT.as_millis()
        ));
    }
    if drain.delivered != queued {
        failures.push(format!(
            "the drain delivered {} of {queued} queued notes",
            drain.delivered
        ));
    }
    // The vendor makes one note per key: made in ticket order, once each.
    if drain.made_keys != drain.queued_keys {
        failures.push(format!(
            "the vendor made {} note(s) for {queued} queued; expected one per idempotency key, \
             in the order they were queued",
            drain.made_keys.len()
        ));
    }
    if depth_after != 0 || drain.pending_after != 0 {
        failures.push(format!(
            "the write-ahead log ended {depth_after} deep ({} pending for `{CONTRACT}`); \
             expected empty",
            drain.pending_after
        ));
    }
    failures
}

/// The runtime's health snapshot: a table per endpoint and per queue, then
/// the JSON.
fn print_health(health: &Health) -> Result<(), serde_json::Error> {
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    println!();
    println!("health snapshot at the end (runtime.health()):");
    println!(
        "{:<18} {:>5} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:<9} {:>5} {:>6}",
        "endpoint",
        "attempts",
        "err rate",
        "timed out",
        "turned away",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "breaker",
        "stale",
        "queued",
    );
    println!("{}", "-".repeat(113));
    for endpoint in &health.endpoints {
        println!(
            "{:<18} {:>5} {:>7.1}% {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:<9} {:>5} {:>6}",
            format!("{}.{}", endpoint.contract, endpoint.method),
            endpoint.attempts.total,
            endpoint.error_rate.unwrap_or(0.0) * 100.0,
            endpoint.attempts.timeout,
            endpoint.turned_away,
            ms(endpoint.latency.p50_ms),
            ms(endpoint.latency.p95_ms),
            ms(endpoint.latency.p99_ms),
            ms(endpoint.latency.max_ms),
            endpoint.breaker.map_or("-", BreakerState::as_str),
            endpoint.stale_serves,
            endpoint.queued,
        );
    }
    println!();
    println!("{:<18} {:>7} {:>12}", "queue", "pending", "dead letters");
    println!("{}", "-".repeat(39));
    for queue in &health.queues {
        println!(
            "{:<18} {:>7} {:>12}",
            queue.contract, queue.pending, queue.dead_letters
        );
    }
    println!();
    println!("attempts: attempts that reached the vendor, retries and the drain's included");
    println!("err rate: the share of those attempts that failed (timeouts included)");
    println!(
        "turned away: calls the open breaker turned away, answered stale or failing fast; not counted in attempts"
    );
    println!("p50..max: latency of the attempts (not of the logical calls, as above)");
    println!();
    println!("{}", serde_json::to_string_pretty(health)?);
    Ok(())
}

/// Whether the runtime's health snapshot agrees with what the drill counted
/// itself: the vendor's requests, the adapter's timeouts, the callers'
/// fail-fast, stale and queued answers, the breakers' states and the log.
fn check_health(reports: &[PhaseReport], health: &Health) -> Vec<String> {
    let mut failures = Vec::new();
    for workload in [Workload::Reads, Workload::CardReads, Workload::Notes] {
        let name = workload.breaker();
        let Some(endpoint) = health
            .endpoints
            .iter()
            .find(|e| format!("{}.{}", e.contract, e.method) == name)
        else {
            failures.push(format!("the health snapshot has no endpoint `{name}`"));
            continue;
        };
        let phases: Vec<&PhaseReport> = reports
            .iter()
            .filter(|r| r.phase.workload() == workload)
            .collect();
        let sum = |count: fn(&PhaseReport) -> u64| phases.iter().map(|r| count(r)).sum::<u64>();
        let mut agree = |what: &str, snapshot: u64, drill: u64, counted_by: &str| {
            if snapshot != drill {
                failures.push(format!(
                    "health says `{name}` had {snapshot} {what}; the drill counted {drill} \
                     ({counted_by})"
                ));
            }
        };
        agree(
            "attempts",
            endpoint.attempts.total,
            sum(|r| r.vendor_attempts),
            "requests the vendor received",
        );
        agree(
            "latency samples",
            endpoint.latency.count,
            endpoint.attempts.total,
            "the snapshot's own attempts",
        );
        agree(
            "timeouts",
            endpoint.attempts.timeout,
            sum(|r| r.timed_out),
            "attempts the adapter never finished",
        );
        agree(
            "calls turned away",
            endpoint.turned_away,
            sum(|r| u64::from(r.fail_fast)),
            "calls that got no vendor attempt",
        );
        agree(
            "stale serves",
            endpoint.stale_serves,
            sum(|r| u64::from(r.stale)),
            "answers marked stale",
        );
        agree(
            "queued writes",
            endpoint.queued,
            sum(|r| u64::from(r.queued)),
            "answers with a ticket",
        );
        failures.extend(agree_breaker(endpoint, phases.last().copied()));
    }
    match health.queues.iter().find(|q| q.contract == CONTRACT) {
        Some(queue) if queue.pending != 0 || queue.dead_letters != 0 => failures.push(format!(
            "health says the `{CONTRACT}` queue ended with {} pending and {} dead letters; \
             expected none",
            queue.pending, queue.dead_letters
        )),
        Some(_) => {}
        None => failures.push(format!(
            "the health snapshot has no `{CONTRACT}` queue, though notes were queued"
        )),
    }
    failures
}

/// The breaker's state in the snapshot against the one read at the end of
/// the last phase that called the method. Nothing calls it since, so only
/// time can have moved it: the state is read as of now, and an open breaker
/// whose `open_for` has run out reads half-open.
fn agree_breaker(endpoint: &EndpointHealth, last: Option<&PhaseReport>) -> Option<String> {
    let after = last?.breaker_after;
    let moved_by_time =
        after == Some(BreakerState::Open) && endpoint.breaker == Some(BreakerState::HalfOpen);
    (endpoint.breaker != after && !moved_by_time).then(|| {
        format!(
            "health says the breaker of `{}.{}` is {}; it was {} at the end of its last phase",
            endpoint.contract,
            endpoint.method,
            endpoint.breaker.map_or("missing", BreakerState::as_str),
            after.map_or("missing", BreakerState::as_str)
        )
    })
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
        .route("/accounts/{id}/notes", post(post_note))
        .with_state(vendor.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The resilient client, whose queued writes go to a write-ahead log on
    // disk, and a subscriber that puts every breaker transition and every
    // delivery of a queued write on the timeline.
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::embedded(dir.path())?;
    let clock = Clock {
        start: Instant::now(),
    };
    let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let queued_keys: Arc<Mutex<BTreeMap<Ticket, String>>> = Arc::default();
    let (settled, settles) = mpsc::unbounded_channel();
    runtime.subscribe({
        let transitions = transitions.clone();
        let queued_keys = queued_keys.clone();
        move |event| match event {
            Event::Breaker(transition) => {
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
            Event::Queued(queued) => {
                queued_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(queued.ticket, queued.key.clone());
            }
            Event::Delivered(delivered) => {
                clock.note(format!(
                    "   drain: {} delivered with the key it was queued with, {}",
                    delivered.ticket,
                    short(&delivered.key)
                ));
                let _ = settled.send(delivered.ticket);
            }
            Event::DeadLetter(dead) => {
                clock.note(format!(
                    "   drain: {} refused for good, kept as a dead letter: {}",
                    dead.ticket, dead.error
                ));
                let _ = settled.send(dead.ticket);
            }
            _ => {}
        }
    });
    let crm = Resilient::new(CrmHttp::new(format!("http://{addr}"))?, &runtime);
    // Writes an earlier run left queued are delivered from start-up on.
    crm.resume_queued();

    println!("seawall outage drill against a fake vendor at http://{addr}");
    println!(
        "policy of crm.account: {} ms per attempt, 3 attempts (backoff 20..100 ms); the breaker \
         opens at 50% failures over the last 10 attempts (at least 5), stays open {} ms, then \
         lets 2 probes through",
        ATTEMPT_TIMEOUT.as_millis(),
        OPEN_FOR.as_millis()
    );
    println!(
        "crm.account_card: the same read, answered from the last-known-good cache (up to 1 h \
         old) when the vendor is unavailable; crm.add_note: a write queued in the write-ahead \
         log (on disk: {}) when the vendor is unavailable, and delivered in order later",
        runtime.write_ahead_log().is_durable()
    );
    println!();

    let mut drill = Drill {
        crm,
        runtime: runtime.clone(),
        vendor,
        clock,
        queued_keys,
        settles,
    };
    let mut reports = Vec::with_capacity(SCRIPT.len());
    for step in &SCRIPT {
        reports.push(drill.run_phase(step).await);
    }
    clock.note("== drill over");

    // Done with the network: close the client's connections, stop the server.
    drop(drill);
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

    let health = runtime.health();
    print_health(&health)?;

    let mut failures = check(&reports, &transitions);
    failures.extend(check_health(&reports, &health));
    if !failures.is_empty() {
        return Err(DrillFailed(failures).into());
    }
    println!("drill passed: every expectation held.");
    Ok(())
}
