//! Crash test for queued writes, end to end: a child process queues 1 000
//! writes through a contract with `fallback = queue` while a real HTTP
//! vendor on loopback answers `503`, and acknowledges each write once the
//! wrapper has answered `Delivery::Queued`; the parent kills it with SIGKILL
//! at a random moment, brings the vendor back, opens the same store in a new
//! runtime and lets the drain deliver what was queued. The vendor must take
//! every acknowledged write exactly once by idempotency key, in the order of
//! its ticket; writes appended but killed before their acknowledgement may be
//! delivered too (they are in the log), in order and once each, and nothing
//! that was never appended may arrive.
//!
//! The child is this same test binary, started with `SEAWALL_QUEUE_CRASH_DIR`
//! (the store) and `SEAWALL_QUEUE_CRASH_VENDOR` (the vendor's URL) set.
//! `SEAWALL_CRASH_KILLS` sets how many kill points one run makes (default 5).

mod loopback_api;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use seawall::http::{Client, ResponseExt};
use seawall::wal::{Ticket, TicketStatus};
use seawall::{Delivery, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};

use loopback_api::ApiError;

/// How many writes the child queues.
const WRITES: u64 = 1_000;
/// How many tasks of the child queue writes at the same time: their appends
/// share group commits, and their order is the order of their tickets.
const WRITERS: u64 = 4;
/// The longest the child may take to acknowledge the writes the parent
/// waits for.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// The longest the drain may take to deliver everything left in the log.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
const CONTRACT: &str = "telephony";
const STORE_VAR: &str = "SEAWALL_QUEUE_CRASH_DIR";
const VENDOR_VAR: &str = "SEAWALL_QUEUE_CRASH_VENDOR";

// ---------------------------------------------------------------------------
// The contract and its adapter over `seawall::http`
// ---------------------------------------------------------------------------

/// One call to route; `seq` numbers it in the child's run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub seq: u64,
    pub number: String,
}

#[contract(name = "telephony")]
pub trait Telephony {
    #[integration(write, timeout = "2s", retry(attempts = 2, base = "10ms", jitter = "none"),
                  breaker(failure_rate = 0.5, window = 10, min_calls = 10, open_for = "1s"),
                  idempotent(key = [route.seq]), fallback = queue)]
    async fn route(&self, route: &Route) -> Result<Delivery<String>, ApiError>;

    #[integration(read, timeout = "2s")]
    async fn health(&self) -> Result<String, ApiError>;
}

/// The adapter: `seawall::http` sends the call's `Idempotency-Key` itself.
struct TelephonyHttp {
    http: Client,
    base_url: String,
}

impl Telephony for TelephonyHttp {
    async fn route(&self, route: &Route) -> Result<Delivery<String>, ApiError> {
        let response = self
            .http
            .post(format!("{}/route", self.base_url))
            .json(route)
            .send()
            .await?
            .error_for_vendor()?;
        Ok(response.text().await?.into())
    }

    async fn health(&self) -> Result<String, ApiError> {
        let response = self
            .http
            .get(format!("{}/health", self.base_url))
            .send()
            .await?
            .error_for_vendor()?;
        Ok(response.text().await?)
    }
}

fn telephony(base_url: &str, runtime: &Runtime) -> Resilient<TelephonyHttp> {
    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client with both timeouts");
    let adapter = TelephonyHttp {
        http,
        base_url: base_url.to_owned(),
    };
    Resilient::new(adapter, runtime)
}

// ---------------------------------------------------------------------------
// The fake vendor: a real axum server on 127.0.0.1, run by the parent
// ---------------------------------------------------------------------------

/// What the vendor saw.
#[derive(Default)]
struct Books {
    /// Writes taken, in arrival order: (idempotency key, seq). A key is
    /// taken once; a repeat gets the first answer back.
    taken: Vec<(String, u64)>,
    answers: HashMap<String, String>,
    /// Requests with a key already taken.
    repeats: u64,
    /// Writes answered `503` during the outage.
    refused: u64,
    /// Writes without an `Idempotency-Key` header.
    keyless: u64,
}

#[derive(Default)]
struct Vendor {
    recovered: AtomicBool,
    books: Mutex<Books>,
}

impl Vendor {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn route(
    State(vendor): State<Arc<Vendor>>,
    headers: HeaderMap,
    Json(route): Json<Route>,
) -> (StatusCode, String) {
    let mut books = vendor.books();
    if !vendor.recovered.load(Ordering::Acquire) {
        books.refused += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        books.keyless += 1;
        return (StatusCode::BAD_REQUEST, "no idempotency key".into());
    };
    if let Some(answer) = books.answers.get(key) {
        let answer = answer.clone();
        books.repeats += 1;
        return (StatusCode::OK, answer);
    }
    let answer = format!("routed {} ({})", route.number, route.seq);
    books.answers.insert(key.to_owned(), answer.clone());
    books.taken.push((key.to_owned(), route.seq));
    (StatusCode::OK, answer)
}

/// Starts a vendor that is down; returns it and its base URL.
async fn start_vendor() -> (Arc<Vendor>, String, tokio::task::JoinHandle<()>) {
    let vendor = Arc::new(Vendor::default());
    let app = Router::new()
        .route("/route", post(route))
        .route("/health", get(|| async { "up" }))
        .with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (vendor, format!("http://{address}"), server)
}

// ---------------------------------------------------------------------------
// The child: queues writes during the outage
// ---------------------------------------------------------------------------

/// Queues `WRITES` writes from `WRITERS` tasks, printing each answer:
/// `queued <seq> <ticket>`, or `done <seq>` / `error <seq> <error>` (both
/// failures during an outage). Then waits for stdin to close, so that the
/// parent's SIGKILL finds it alive.
fn child(dir: &Path, base_url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let seawall = Runtime::embedded(dir).expect("the store opens");
        let telephony = telephony(base_url, &seawall);
        let next = Arc::new(AtomicU64::new(0));
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let telephony = telephony.clone();
            let next = next.clone();
            writers.spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= WRITES {
                        return;
                    }
                    let route = Route {
                        seq,
                        number: format!("+1555{seq:07}"),
                    };
                    let line = match telephony.route(&route).await {
                        Ok(Delivery::Queued(ticket)) => format!("queued {seq} {}", ticket.0),
                        Ok(Delivery::Done(answer)) => format!("done {seq} {answer}"),
                        Err(error) => format!("error {seq} {error}"),
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}").expect("stdout");
                    out.flush().expect("stdout");
                }
            });
        }
        while writers.join_next().await.is_some() {}
        println!("finished");
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
            .await
            .expect("the stdin reader")
            .expect("stdin");
    });
}

// ---------------------------------------------------------------------------
// The parent: kill points
// ---------------------------------------------------------------------------

fn main() {
    if let (Ok(dir), Ok(base_url)) = (std::env::var(STORE_VAR), std::env::var(VENDOR_VAR)) {
        child(Path::new(&dir), &base_url);
        return;
    }
    let kills: u64 = std::env::var("SEAWALL_CRASH_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let mut failed = 0;
    // Over the kill points that passed.
    let (mut acked, mut delivered, mut repeats) = (Vec::new(), 0, 0);
    for round in 0..kills {
        // Kill points spread over the run: after a pseudo-random number of
        // acknowledged writes (a fixed LCG, so a failure can be re-run).
        let kill_after = 1
            + (round
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                >> 33)
                % (WRITES - 1);
        let round_started = Instant::now();
        match crash_round(&runtime, kill_after) {
            Ok(outcome) => {
                println!(
                    "kill point {round}: killed after {} acknowledged writes ({} appended); \
                     {} delivered once each in ticket order, {} repeated, {} refused during \
                     the outage; queued for {:.1} s, drained in {:.1} s, {:.1} s in all",
                    outcome.acked,
                    outcome.appended,
                    outcome.delivered,
                    outcome.repeats,
                    outcome.refused,
                    outcome.queueing.as_secs_f64(),
                    outcome.draining.as_secs_f64(),
                    round_started.elapsed().as_secs_f64()
                );
                acked.push(outcome.acked);
                delivered += outcome.delivered;
                repeats += outcome.repeats;
            }
            Err(error) => {
                failed += 1;
                println!(
                    "kill point {round} (after {kill_after} acknowledged writes) FAILED: {error}"
                );
            }
        }
    }
    println!(
        "queue_crash: {} passed, {failed} failed; acknowledged {}..{} writes per kill point, \
         {delivered} delivered in all, {repeats} repeated; {:.1} s",
        kills - failed,
        acked.iter().min().unwrap_or(&0),
        acked.iter().max().unwrap_or(&0),
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

/// What one kill point saw.
struct Outcome {
    acked: usize,
    appended: usize,
    delivered: usize,
    repeats: u64,
    refused: u64,
    /// From the child's start to its kill.
    queueing: Duration,
    /// From the first call of the new runtime to the last settle.
    draining: Duration,
}

fn crash_round(runtime: &tokio::runtime::Runtime, kill_after: u64) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (vendor, base_url, server) = runtime.block_on(start_vendor());
    let result = (|| {
        let queueing = Instant::now();
        let acked = outage(dir.path(), &base_url, kill_after)?;
        let queueing = queueing.elapsed();
        vendor.recovered.store(true, Ordering::Release);
        let refused = vendor.books().refused;
        let mut outcome = runtime.block_on(recover(dir.path(), &base_url, &vendor, &acked))?;
        outcome.refused = refused;
        outcome.queueing = queueing;
        Ok(outcome)
    })();
    server.abort();
    result
}

/// Runs the child against the vendor while it is down, and kills it once
/// `kill_after` writes were acknowledged as queued; returns them, by ticket:
/// ticket → seq.
fn outage(dir: &Path, base_url: &str, kill_after: u64) -> Result<BTreeMap<u64, u64>, String> {
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(STORE_VAR, dir)
        .env(VENDOR_VAR, base_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // Lines arrive through a thread, so that a child that hangs without a
    // word is noticed at the deadline.
    let (lines, arrived) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut acked = BTreeMap::new();
    let result = loop {
        if acked.len() as u64 >= kill_after {
            break Ok(());
        }
        let line = match arrived.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => break Err(error.to_string()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(format!(
                    "only {} writes acknowledged in {CHILD_DEADLINE:?}",
                    acked.len()
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!(
                    "the child ended after {} acknowledged writes",
                    acked.len()
                ));
            }
        };
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("queued"), Some(seq), Some(ticket)) => {
                let seq: u64 = seq.parse().map_err(|_| format!("a bad line: {line}"))?;
                let ticket: u64 = ticket.parse().map_err(|_| format!("a bad line: {line}"))?;
                if acked.insert(ticket, seq).is_some() {
                    break Err(format!("ticket {ticket} was acknowledged twice"));
                }
            }
            (Some("done"), ..) => {
                break Err(format!("a write was delivered during the outage: {line}"));
            }
            _ => break Err(format!("the child says: {line}")),
        }
    };
    // SIGKILL: no destructor, no flush, no goodbye.
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    result.map(|()| acked)
}

/// Opens the store the child left, with the vendor back, lets the drain run
/// and checks what the vendor took against what the child acknowledged.
async fn recover(
    dir: &Path,
    base_url: &str,
    vendor: &Vendor,
    acked: &BTreeMap<u64, u64>,
) -> Result<Outcome, String> {
    let seawall = Runtime::embedded(dir).map_err(|e| e.to_string())?;
    let log = seawall.write_ahead_log();

    // What the log holds: every acknowledged write, perhaps a few more
    // appended before the kill, in ticket order.
    let pending = log
        .pending(CONTRACT, usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let mut appended = Vec::with_capacity(pending.len());
    for (ticket, write) in &pending {
        let seq = write.arguments["route"]["seq"]
            .as_u64()
            .ok_or_else(|| format!("ticket {ticket} has no seq: {}", write.arguments))?;
        appended.push((*ticket, write.key.clone(), seq));
    }
    if log.pending_count(CONTRACT) != appended.len() as u64 {
        return Err(format!(
            "the pending count says {}, the log holds {}",
            log.pending_count(CONTRACT),
            appended.len()
        ));
    }
    let in_log: BTreeMap<u64, u64> = appended.iter().map(|(t, _, seq)| (t.0, *seq)).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(ticket, seq)| in_log.get(ticket) != Some(seq))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "acknowledged writes (ticket, seq) missing from the log after the crash: {lost:?}"
        ));
    }
    let mut seqs: Vec<u64> = appended.iter().map(|(_, _, seq)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    if seqs.len() != appended.len() {
        return Err("the log holds a write twice".into());
    }

    // The first call of the contract starts the drain of what was left.
    let draining = Instant::now();
    let telephony = telephony(base_url, &seawall);
    telephony.health().await.map_err(|e| e.to_string())?;
    let settled = tokio::time::timeout(DRAIN_DEADLINE, async {
        let mut statuses = Vec::with_capacity(appended.len());
        for (ticket, _, _) in &appended {
            statuses.push((*ticket, log.settled(*ticket).await));
        }
        statuses
    })
    .await
    .map_err(|_| {
        format!(
            "the drain left {} of {} writes pending after {DRAIN_DEADLINE:?}",
            log.pending_count(CONTRACT),
            appended.len()
        )
    })?;
    let draining = draining.elapsed();
    for (ticket, status) in settled {
        match status {
            Ok(Some(TicketStatus::Delivered { .. })) => {}
            other => return Err(format!("ticket {ticket} settled as {other:?}")),
        }
    }
    let left = log.depth().await.map_err(|e| e.to_string())?;
    if log.pending_count(CONTRACT) != 0 || left != 0 {
        return Err(format!(
            "after the drain: pending count {}, depth {left}",
            log.pending_count(CONTRACT)
        ));
    }

    // The vendor took each appended write once by key, in ticket order,
    // and nothing else.
    let books = vendor.books();
    let expected: Vec<(String, u64)> = appended
        .iter()
        .map(|(_, key, seq)| (key.clone(), *seq))
        .collect();
    if books.taken != expected {
        return Err(describe_mismatch(&books.taken, &appended));
    }
    if books.keyless > 0 {
        return Err(format!("{} writes arrived without a key", books.keyless));
    }
    Ok(Outcome {
        acked: acked.len(),
        appended: appended.len(),
        delivered: books.taken.len(),
        repeats: books.repeats,
        refused: 0,
        queueing: Duration::ZERO,
        draining,
    })
}

/// Says where what the vendor took departs from the log's order.
fn describe_mismatch(taken: &[(String, u64)], appended: &[(Ticket, String, u64)]) -> String {
    let position = taken
        .iter()
        .zip(appended)
        .position(|((key, seq), (_, k, s))| key != k || seq != s)
        .unwrap_or(taken.len().min(appended.len()));
    let from = position.saturating_sub(2);
    let taken_seqs: Vec<u64> = taken
        .iter()
        .skip(from)
        .take(5)
        .map(|(_, seq)| *seq)
        .collect();
    let appended_seqs: Vec<(u64, u64)> = appended
        .iter()
        .skip(from)
        .take(5)
        .map(|(ticket, _, seq)| (ticket.0, *seq))
        .collect();
    format!(
        "the vendor took {} writes, the log held {}; first difference at position {position}: \
         vendor seqs {taken_seqs:?}, log (ticket, seq) {appended_seqs:?}",
        taken.len(),
        appended.len()
    )
}
