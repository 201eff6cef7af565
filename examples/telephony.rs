//! Call-routing changes queued during a telephony outage and delivered, in
//! order and once each, when the vendor comes back.
//!
//! ```text
//! cargo run --example telephony
//! ```
//!
//! A fake telephony vendor runs on `127.0.0.1` (an ephemeral port). Like
//! most telephony APIs it honours the `Idempotency-Key` header: a rule sent
//! again with a key it has applied is answered with the change it already
//! made. The contact centre writes routing rules ("calls to +15550100 go to
//! the billing queue") through a contract whose policy says that a rule the
//! vendor cannot take now is queued: `fallback = queue`. Two rules go
//! through while the vendor is up; then it answers 503, and the next rules
//! are appended to the write-ahead log (a redb file in a temporary
//! directory) and answered with a ticket each, without waiting for the
//! vendor. The vendor comes back; the drain re-sends the queued rules, oldest
//! first, each with the key it was queued with. Two of them re-route the
//! same number, so the order decides where its calls end up. The example
//! prints the timeline, and exits non-zero unless the vendor applied every
//! rule exactly once (one accepted request per idempotency key), in the
//! order the rules were written, and the log ended empty.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use axum::{Json, Router};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::wal::{Ticket, TicketStatus};
use seawall::{Classify, Delivery, Event, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A routing rule: where the calls to one of our numbers go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingRule {
    /// Our number, as the vendor knows it.
    pub number: String,
    /// Where its calls go: an agent, a queue, voicemail.
    pub target: String,
    /// The rule's revision for this number; a change of route is a new
    /// revision, so it gets a new idempotency key.
    pub revision: u32,
}

/// A routing change, as the vendor applied it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// The vendor's sequence number of the change.
    pub change: u64,
    /// The number re-routed.
    pub number: String,
    /// Where its calls now go.
    pub target: String,
}

/// What a telephony call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum TelephonyError {
    /// The vendor answered with an error status.
    #[error(transparent)]
    #[classify(delegate)]
    Vendor(#[from] ResponseError),
    /// The request did not get an answer.
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call.
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// What our system needs from the telephony vendor.
#[contract(name = "telephony")]
pub trait Telephony {
    /// Sets where a number's calls go. When the vendor is unavailable the
    /// rule is queued and delivered later, in order, with the same key
    /// (derived from the number and the revision).
    #[integration(write, timeout = "300ms", retry(attempts = 2, base = "20ms", cap = "50ms"),
                  breaker(failure_rate = 0.5, window = 4, min_calls = 2, open_for = "300ms"),
                  idempotent(key = [rule.number, rule.revision]), fallback = queue)]
    async fn route(&self, rule: &RoutingRule) -> Result<Delivery<Routed>, TelephonyError>;
}

/// The contract's name, as the write-ahead log counts its writes.
const CONTRACT: &str = "telephony";

/// The adapter: `seawall::http` sends the call's `Idempotency-Key` itself.
pub struct TelephonyHttp {
    http: Client,
    base_url: String,
}

impl Telephony for TelephonyHttp {
    async fn route(&self, rule: &RoutingRule) -> Result<Delivery<Routed>, TelephonyError> {
        let response = self
            .http
            .put(format!("{}/numbers/{}/route", self.base_url, rule.number))
            .json(&serde_json::json!({ "target": rule.target, "revision": rule.revision }))
            .send()
            .await?
            .error_for_vendor()?;
        Ok(response.json::<Routed>().await?.into())
    }
}

/// What happened when, stamped from the start of the run.
#[derive(Clone)]
struct Timeline {
    start: Instant,
    lines: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl Timeline {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            lines: Arc::default(),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn note(&self, text: impl Into<String>) {
        let at = self.now();
        self.lines.lock().unwrap().push((at, text.into()));
    }

    fn lines(&self) -> Vec<(Duration, String)> {
        let mut lines = self.lines.lock().unwrap().clone();
        lines.sort_by_key(|(at, _)| *at);
        lines
    }
}

/// One request the vendor received.
#[derive(Clone, Debug)]
pub struct Request {
    /// When, from the start of the run.
    pub at: Duration,
    /// Its `Idempotency-Key` header.
    pub key: String,
    /// The number it re-routes.
    pub number: String,
    /// Where to.
    pub target: String,
    /// The status the vendor answered.
    pub status: u16,
    /// Whether the vendor had applied this key already and answered with
    /// the change it made then.
    pub replayed: bool,
}

/// The fake vendor's switch and books.
struct Vendor {
    timeline: Timeline,
    down: AtomicBool,
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    requests: Vec<Request>,
    by_key: HashMap<String, Routed>,
    table: BTreeMap<String, String>,
    changes: u64,
}

#[derive(Deserialize)]
struct RouteBody {
    target: String,
}

async fn put_route(
    State(vendor): State<Arc<Vendor>>,
    Path(number): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RouteBody>,
) -> Result<Json<Routed>, StatusCode> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or(StatusCode::BAD_REQUEST)?
        .to_owned();
    let down = vendor.down.load(Ordering::SeqCst);
    let mut books = vendor.books.lock().unwrap();
    let (answer, replayed) = if down {
        (Err(StatusCode::SERVICE_UNAVAILABLE), false)
    } else if let Some(routed) = books.by_key.get(&key) {
        (Ok(routed.clone()), true)
    } else {
        books.changes += 1;
        let routed = Routed {
            change: books.changes,
            number: number.clone(),
            target: body.target.clone(),
        };
        books.table.insert(number.clone(), body.target.clone());
        books.by_key.insert(key.clone(), routed.clone());
        (Ok(routed), false)
    };
    let status = answer.as_ref().map_or_else(|s| s.as_u16(), |_| 200);
    let at = vendor.timeline.now();
    vendor.timeline.note(format!(
        "vendor: PUT {number} -> {}, key {}: {status}{}",
        body.target,
        short(&key),
        match (&answer, replayed) {
            (Ok(routed), false) => format!(" (change {})", routed.change),
            (Ok(routed), true) => format!(" (replay of change {})", routed.change),
            (Err(_), _) => String::new(),
        }
    ));
    books.requests.push(Request {
        at,
        key,
        number,
        target: body.target,
        status,
        replayed,
    });
    answer.map(Json)
}

/// The start of a key, enough to tell keys apart on the timeline.
fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// How a write came back, for the timeline.
fn describe(delivery: &Delivery<Routed>) -> String {
    match delivery {
        Delivery::Done(routed) => format!("done, change {}", routed.change),
        Delivery::Queued(ticket) => format!("queued as {ticket}"),
    }
}

/// What the run saw, for the printout and for the test that runs it.
#[derive(Debug)]
pub struct Outcome {
    /// The rules, in the order they were written, with how each came back.
    pub writes: Vec<(RoutingRule, Delivery<Routed>)>,
    /// The idempotency keys of the queued writes, in ticket order.
    pub queued_keys: Vec<String>,
    /// How each queued write settled, in ticket order.
    pub settled: Vec<(Ticket, TicketStatus)>,
    /// Every request the vendor received, in order.
    pub requests: Vec<Request>,
    /// The vendor's routing table at the end.
    pub table: BTreeMap<String, String>,
    /// The write-ahead log's depth at the end.
    pub depth: u64,
    /// The timeline, in order.
    pub timeline: Vec<(Duration, String)>,
}

impl Outcome {
    /// The requests the vendor applied: accepted, and not replays.
    pub fn applied(&self) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.status == 200 && !r.replayed)
            .collect()
    }
}

/// The rules, in the order the contact centre writes them. The first two
/// are written while the vendor is up, the rest during its outage; two of
/// those re-route +15550101, so only the order tells which route it keeps.
fn rules() -> Vec<RoutingRule> {
    let rule = |number: &str, target: &str, revision| RoutingRule {
        number: number.into(),
        target: target.into(),
        revision,
    };
    vec![
        rule("+15550100", "queue:billing", 1),
        rule("+15550101", "queue:support", 1),
        rule("+15550100", "agent:ana", 2),
        rule("+15550102", "queue:sales", 1),
        rule("+15550101", "queue:overflow", 2),
        rule("+15550101", "voicemail:support", 3),
    ]
}

/// How many of [`rules`] are written before the outage.
const BEFORE_OUTAGE: usize = 2;
/// How long the vendor stays down: longer than the drain's first wait (1 s
/// after the first write is queued), so its first attempt meets the outage
/// and it holds the line.
const OUTAGE: Duration = Duration::from_millis(1_500);
/// How long the run waits for the drain before it gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Runs the scenario against a fresh vendor on loopback.
pub async fn run() -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    // The write-ahead log lives in a redb file: a queued rule is on disk
    // before the caller gets its ticket.
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::embedded(dir.path())?;

    let timeline = Timeline::new();
    let vendor = Arc::new(Vendor {
        timeline: timeline.clone(),
        down: AtomicBool::new(false),
        books: Mutex::default(),
    });
    let app = Router::new()
        .route("/numbers/{number}/route", put(put_route))
        .with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let queued_keys: Arc<Mutex<BTreeMap<Ticket, String>>> = Arc::default();
    let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel();
    runtime.subscribe({
        let timeline = timeline.clone();
        let queued_keys = queued_keys.clone();
        move |event| match event {
            Event::Queued(queued) => {
                queued_keys
                    .lock()
                    .unwrap()
                    .insert(queued.ticket, queued.key.clone());
            }
            Event::Delivered(delivered) => {
                timeline.note(format!(
                    "drain: {} delivered (key {})",
                    delivered.ticket,
                    short(&delivered.key)
                ));
                let _ = reports.send(delivered.ticket);
            }
            Event::DeadLetter(dead) => {
                timeline.note(format!(
                    "drain: {} refused for good: {}",
                    dead.ticket, dead.error
                ));
                let _ = reports.send(dead.ticket);
            }
            Event::Breaker(transition) => timeline.note(format!(
                "breaker {}: {} -> {}",
                transition.breaker, transition.from, transition.to
            )),
            _ => {}
        }
    });
    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build()?;
    let telephony = Resilient::new(TelephonyHttp { http, base_url }, &runtime);
    // At start-up: deliver whatever an earlier run of this process left
    // queued, without waiting for the first routing write.
    telephony.resume_queued();
    let log = runtime.write_ahead_log();

    timeline.note("the vendor is up");
    let mut writes = Vec::new();
    let mut outage_started = timeline.now();
    for (n, rule) in rules().into_iter().enumerate() {
        if n == BEFORE_OUTAGE {
            vendor.down.store(true, Ordering::SeqCst);
            outage_started = timeline.now();
            timeline.note("the vendor goes down: every request is answered 503");
        }
        let answer = telephony.route(&rule).await?;
        let depth = log.depth().await?;
        timeline.note(format!(
            "caller: {} -> {} (revision {}): {}; queue depth {depth}",
            rule.number,
            rule.target,
            rule.revision,
            describe(&answer)
        ));
        writes.push((rule, answer));
    }

    tokio::time::sleep(OUTAGE.saturating_sub(timeline.now() - outage_started)).await;
    vendor.down.store(false, Ordering::SeqCst);
    timeline.note("the vendor is back");

    let tickets: Vec<Ticket> = writes
        .iter()
        .filter_map(|(_, answer)| answer.ticket())
        .collect();
    let mut settled = Vec::new();
    for &ticket in &tickets {
        let status = tokio::time::timeout(DRAIN_LIMIT, log.settled(ticket))
            .await
            .map_err(|_| format!("{ticket} was not delivered within {DRAIN_LIMIT:?}"))??
            .ok_or_else(|| format!("the log does not know {ticket}"))?;
        settled.push((ticket, status));
    }
    // The drain reports a settle to subscribers just after the log records
    // it: wait for the last report, so that the timeline is complete.
    for _ in &tickets {
        tokio::time::timeout(DRAIN_LIMIT, reported.recv())
            .await
            .map_err(|_| "the drain did not report every settled rule")?;
    }
    let depth = log.depth().await?;
    timeline.note(format!(
        "every queued rule settled; queue depth {depth}, {} pending for {CONTRACT}",
        log.pending_count(CONTRACT)
    ));

    drop(telephony);
    drop(runtime);
    server.abort();
    let books = std::mem::take(&mut *vendor.books.lock().unwrap());
    let queued_keys = std::mem::take(&mut *queued_keys.lock().unwrap());
    Ok(Outcome {
        writes,
        queued_keys: queued_keys.into_values().collect(),
        settled,
        requests: books.requests,
        table: books.table,
        depth,
        timeline: timeline.lines(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let started = std::time::Instant::now();
    let outcome = run().await?;
    println!(
        "telephony drill: {} routing rules, {} written before the vendor goes down for {} ms",
        outcome.writes.len(),
        BEFORE_OUTAGE,
        OUTAGE.as_millis()
    );
    for (at, line) in &outcome.timeline {
        println!("  {:>8}  {line}", format!("+{:.3}s", at.as_secs_f64()));
    }
    println!("  vendor routing table: {:?}", outcome.table);
    println!("  took {:.2} s", started.elapsed().as_secs_f64());

    let mut problems = Vec::new();
    let applied = outcome.applied();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for request in &applied {
        *per_key.entry(&request.key).or_default() += 1;
    }
    if applied.len() != outcome.writes.len() || per_key.values().any(|&n| n != 1) {
        problems.push(format!(
            "expected each of the {} rules applied once, under its own key; the vendor applied \
             {} requests under {} keys",
            outcome.writes.len(),
            applied.len(),
            per_key.len()
        ));
    }
    let written: Vec<(&str, &str)> = outcome
        .writes
        .iter()
        .map(|(rule, _)| (rule.number.as_str(), rule.target.as_str()))
        .collect();
    let taken: Vec<(&str, &str)> = applied
        .iter()
        .map(|r| (r.number.as_str(), r.target.as_str()))
        .collect();
    if taken != written {
        problems.push(format!(
            "the vendor applied the rules in another order: {taken:?}"
        ));
    }
    let queued = outcome.writes.len() - BEFORE_OUTAGE;
    let delivered_keys: Vec<&str> = applied[applied.len().saturating_sub(queued)..]
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    if outcome.queued_keys.len() != queued || delivered_keys != outcome.queued_keys {
        problems.push(format!(
            "expected the {queued} rules written during the outage queued and delivered with \
             the keys they were queued with, in ticket order; {} were queued",
            outcome.queued_keys.len()
        ));
    }
    let undelivered = outcome
        .settled
        .iter()
        .filter(|(_, status)| !matches!(status, TicketStatus::Delivered { .. }))
        .count();
    if undelivered > 0 || outcome.depth != 0 {
        problems.push(format!(
            "{undelivered} queued rule(s) not delivered; the log ended {} deep",
            outcome.depth
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("; ").into());
    }
    println!(
        "every rule applied exactly once, in the order written: the {queued} written during the \
         outage were queued, then delivered by the drain with their original keys"
    );
    Ok(())
}
