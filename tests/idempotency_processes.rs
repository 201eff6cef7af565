//! The shared idempotency stores across OS processes, on Redis and on
//! PostgreSQL: four child processes (this same test binary, started with
//! `SEAWALL_IDEM_CHILD` set) share one store (a Redis prefix, or a
//! database schema) and call one loopback HTTP vendor, which counts what
//! reaches it.
//!
//! 1. **Duplicates.** The four children make 25 concurrent calls each of
//!    the same keyed write (100 in all): the vendor takes 1 request, and
//!    every call answers the same.
//! 2. **A killed holder.** A child whose call is held at the vendor
//!    is killed with SIGKILL while its claim is in the store; the claim
//!    stays (nobody released it) until its lease runs out, and a retry of
//!    the key then proceeds to the vendor, and is replayed after that.
//!
//! Each store's scenarios run against its shared server (127.0.0.1:6379,
//! 127.0.0.1:5432); a store whose server does not answer is skipped (and
//! says so), unless `SEAWALL_REQUIRE_REDIS` / `SEAWALL_REQUIRE_POSTGRES` is
//! set.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use seawall::fleet::Redis;
use seawall::idempotency::IdempotencyKey;
use seawall::postgres::Postgres;
use seawall::{Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use support::VendorError;
use support::{postgres, redis};

const CHILD_VAR: &str = "SEAWALL_IDEM_CHILD";
const PROCESSES: usize = 4;
const CALLS_EACH: usize = 25;
/// The lease of the children's claims: short, so that a killed holder's
/// claim runs out soon.
const LEASE: Duration = Duration::from_millis(1_000);
/// The longest a child may take to say it is ready, or to answer.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The contract and its adapter over `seawall::http`
// ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct ChargeRequest {
    customer: String,
    cents: u64,
}

#[contract(name = "payments")]
pub trait Payments {
    #[integration(write, timeout = "30s", idempotent(key = [customer], store))]
    async fn charge(&self, customer: &str, cents: u64) -> Result<String, VendorError>;
}

struct PaymentsHttp {
    http: seawall::http::Client,
    url: String,
}

impl Payments for PaymentsHttp {
    async fn charge(&self, customer: &str, cents: u64) -> Result<String, VendorError> {
        let response = self
            .http
            .post(&self.url)
            .json(&ChargeRequest {
                customer: customer.to_owned(),
                cents,
            })
            .send()
            .await
            .map_err(|_| VendorError::status(503))?;
        if !response.status().is_success() {
            return Err(VendorError::Status(response.status()));
        }
        response.text().await.map_err(|_| VendorError::status(503))
    }
}

/// Where the replicas keep their idempotency records and claims.
#[derive(Clone, Debug)]
enum Store {
    Redis { url: String, prefix: String },
    Postgres { url: String, schema: String },
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// For a child's environment: kind, URL, namespace.
    fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Self::Redis { url, prefix } => ("redis", url, prefix),
            Self::Postgres { url, schema } => ("postgres", url, schema),
        }
    }

    fn from_parts(kind: &str, url: String, space: String) -> Option<Self> {
        match kind {
            "redis" => Some(Self::Redis { url, prefix: space }),
            "postgres" => Some(Self::Postgres { url, schema: space }),
            _ => None,
        }
    }

    /// A runtime on this store, its claims leased for `lease`.
    fn runtime(&self, lease: Duration) -> Result<Runtime, String> {
        Ok(match self {
            Self::Redis { url, prefix } => {
                let redis = Redis::new(url)
                    .map_err(|e| e.to_string())?
                    .prefix(prefix)
                    .claim_lease(lease);
                Runtime::builder().redis(redis).in_memory()
            }
            Self::Postgres { url, schema } => {
                let postgres = Postgres::new(url)
                    .and_then(|postgres| postgres.schema(schema))
                    .map_err(|e| e.to_string())?
                    .claim_lease(lease);
                Runtime::builder().postgres(postgres).in_memory()
            }
        })
    }

    /// Whether a claim on `key` is held in the store now.
    fn claimed(&self, runtime: &tokio::runtime::Runtime, key: &str) -> Result<bool, String> {
        match self {
            Self::Redis { prefix, .. } => {
                let claim = format!("{prefix}:{{idem:{key}}}:claim");
                Ok(
                    redis::command(6379, &format!("EXISTS {claim}")).map_err(|e| e.to_string())?
                        == ":1",
                )
            }
            Self::Postgres { url, schema } => runtime.block_on(async {
                let pool = postgres::connect(url).await;
                let claimed: Option<bool> = sqlx::query_scalar(&format!(
                    "SELECT claim_token IS NOT NULL FROM {schema}.idempotency WHERE key = $1"
                ))
                .bind(key)
                .fetch_optional(&pool)
                .await
                .map_err(|e| e.to_string())?;
                pool.close().await;
                Ok(claimed == Some(true))
            }),
        }
    }
}

fn payments(vendor_url: &str, runtime: &Runtime) -> Resilient<PaymentsHttp> {
    let http = seawall::http::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client with both timeouts");
    Resilient::new(
        PaymentsHttp {
            http,
            url: vendor_url.to_owned(),
        },
        runtime,
    )
}

// ---------------------------------------------------------------------------
// The vendor: a real axum server on 127.0.0.1, run by the parent
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Vendor {
    /// Requests taken, in all.
    taken: AtomicUsize,
    /// Requests by customer.
    by_customer: Mutex<HashMap<String, usize>>,
    /// While set, a request is held (until its client goes away).
    holding: AtomicBool,
}

impl Vendor {
    fn requests(&self, customer: &str) -> usize {
        self.by_customer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(customer)
            .copied()
            .unwrap_or(0)
    }
}

async fn charge(State(vendor): State<Arc<Vendor>>, Json(request): Json<ChargeRequest>) -> String {
    let number = vendor.taken.fetch_add(1, Ordering::SeqCst) + 1;
    *vendor
        .by_customer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(request.customer.clone())
        .or_default() += 1;
    if vendor.holding.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    // Long enough for every duplicate to arrive while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    format!(
        "charge {number}: {} cents for {}",
        request.cents, request.customer
    )
}

async fn start_vendor() -> (Arc<Vendor>, String, tokio::task::JoinHandle<()>) {
    let vendor = Arc::new(Vendor::default());
    let app = Router::new()
        .route("/charges", post(charge))
        .with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (vendor, format!("http://{address}/charges"), server)
}

// ---------------------------------------------------------------------------
// The child: a replica
// ---------------------------------------------------------------------------

/// What the parent tells a child, through its environment.
struct Orders {
    store: Store,
    vendor_url: String,
    customer: String,
    calls: usize,
}

impl Orders {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(format!("{CHILD_VAR}_{name}")).ok();
        std::env::var_os(CHILD_VAR)?;
        Some(Self {
            store: Store::from_parts(&var("STORE")?, var("URL")?, var("SPACE")?)?,
            vendor_url: var("VENDOR")?,
            customer: var("CUSTOMER")?,
            calls: var("CALLS")?.parse().ok()?,
        })
    }
}

/// Builds its runtime, says `ready`, waits for `go` on stdin, makes its
/// calls at once and prints each answer (`answer <text>` or
/// `error <error>`), then `finished`; then waits for stdin to close.
fn child(orders: Orders) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let runtime = orders.store.runtime(LEASE).expect("a store");
        let payments = Arc::new(payments(&orders.vendor_url, &runtime));
        println!("ready");
        let mut stdin = BufReader::new(std::io::stdin());
        let go = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdin.read_line(&mut line).map(|_| (line, stdin))
        })
        .await
        .expect("the stdin reader")
        .expect("stdin");
        let (line, mut stdin) = go;
        if line.trim() != "go" {
            return;
        }
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..orders.calls {
            let payments = payments.clone();
            let customer = orders.customer.clone();
            calls.spawn(async move { payments.charge(&customer, 700).await });
        }
        while let Some(answer) = calls.join_next().await {
            let line = match answer.expect("no panic") {
                Ok(answer) => format!("answer {answer}"),
                Err(error) => format!("error {error}"),
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").expect("stdout");
            out.flush().expect("stdout");
        }
        println!("finished");
        tokio::task::spawn_blocking(move || stdin.read_to_end(&mut Vec::new()))
            .await
            .expect("the stdin reader")
            .expect("stdin");
    });
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// A child, and the lines it prints (through a thread, so that a child
/// that hangs is noticed at a deadline).
struct Replica {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<std::io::Result<String>>,
}

impl Replica {
    fn spawn(
        store: &Store,
        vendor_url: &str,
        customer: &str,
        calls: usize,
    ) -> Result<Self, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(CHILD_VAR, "1")
            .env(format!("{CHILD_VAR}_STORE"), store.parts().0)
            .env(format!("{CHILD_VAR}_URL"), store.parts().1)
            .env(format!("{CHILD_VAR}_SPACE"), store.parts().2)
            .env(format!("{CHILD_VAR}_VENDOR"), vendor_url)
            .env(format!("{CHILD_VAR}_CUSTOMER"), customer)
            .env(format!("{CHILD_VAR}_CALLS"), calls.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    /// The next line, by `deadline`.
    fn line(&self, deadline: Instant) -> Result<String, String> {
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(error)) => Err(error.to_string()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err("a child said nothing in time".into()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("a child ended early".into()),
        }
    }

    fn expect(&self, word: &str, deadline: Instant) -> Result<(), String> {
        let line = self.line(deadline)?;
        if line == word {
            Ok(())
        } else {
            Err(format!("a child said {line:?}, not {word:?}"))
        }
    }

    fn say(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SIGKILL: no destructor, no release of anything it holds.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scenario 1: 100 duplicates over 4 processes.
fn duplicates(store: &Store, vendor_url: &str, vendor: &Vendor) -> Result<String, String> {
    let customer = "cus_duplicates";
    let mut replicas = (0..PROCESSES)
        .map(|_| Replica::spawn(store, vendor_url, customer, CALLS_EACH))
        .collect::<Result<Vec<_>, _>>()?;
    let deadline = Instant::now() + CHILD_DEADLINE;
    for replica in &replicas {
        replica.expect("ready", deadline)?;
    }
    for replica in &mut replicas {
        replica.say("go")?;
    }
    let mut answers = Vec::new();
    for replica in &replicas {
        for _ in 0..CALLS_EACH {
            let line = replica.line(deadline)?;
            match line.strip_prefix("answer ") {
                Some(answer) => answers.push(answer.to_owned()),
                None => return Err(format!("a call failed: {line}")),
            }
        }
        replica.expect("finished", deadline)?;
    }
    let requests = vendor.requests(customer);
    if requests != 1 {
        return Err(format!("the vendor took {requests} requests for one key"));
    }
    let first = answers.first().cloned().unwrap_or_default();
    let different = answers.iter().filter(|answer| **answer != first).count();
    if answers.len() != PROCESSES * CALLS_EACH || different > 0 {
        return Err(format!(
            "{} answers, {different} unlike the first ({first:?})",
            answers.len()
        ));
    }
    Ok(format!(
        "{} calls over {PROCESSES} processes: 1 vendor request, {} identical answers ({first:?})",
        answers.len(),
        answers.len()
    ))
}

/// Scenario 2: the holder of a claim is killed; the claim runs out and a
/// retry proceeds.
fn killed_holder(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    vendor_url: &str,
    vendor: &Vendor,
) -> Result<String, String> {
    let customer = "cus_killed";
    let key = IdempotencyKey::builder("payments", "charge")
        .part("customer", customer)
        .finish()
        .map_err(|e| e.to_string())?
        .to_string();
    vendor.holding.store(true, Ordering::SeqCst);
    let mut holder = Replica::spawn(store, vendor_url, customer, 1)?;
    let deadline = Instant::now() + CHILD_DEADLINE;
    holder.expect("ready", deadline)?;
    holder.say("go")?;
    // Bounded: until the holder's request reaches the vendor.
    while vendor.requests(customer) == 0 {
        if Instant::now() > deadline {
            return Err("the holder's call never reached the vendor".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !store.claimed(runtime, &key)? {
        return Err("the holder's call holds no claim in the store".into());
    }
    drop(holder); // SIGKILL
    if !store.claimed(runtime, &key)? {
        return Err(
            "the claim vanished with its holder at once: nothing should have released it".into(),
        );
    }
    vendor.holding.store(false, Ordering::SeqCst);
    // A retry on another replica: it waits out the lease, then runs.
    let answer = runtime.block_on(async {
        let retry = payments(
            vendor_url,
            &store.runtime(seawall::fleet::DEFAULT_CLAIM_LEASE)?,
        );
        tokio::time::timeout(CHILD_DEADLINE, retry.charge(customer, 700))
            .await
            .map_err(|_| "the retry did not end in time".to_owned())?
            .map_err(|e| format!("the retry failed: {e}"))
    })?;
    let requests = vendor.requests(customer);
    if requests != 2 {
        return Err(format!(
            "the vendor took {requests} requests: the killed one and the retry expected"
        ));
    }
    // And a repeat after that is a replay.
    let replayed = runtime.block_on(async {
        payments(
            vendor_url,
            &store.runtime(seawall::fleet::DEFAULT_CLAIM_LEASE)?,
        )
        .charge(customer, 700)
        .await
        .map_err(|e| format!("the repeat failed: {e}"))
    })?;
    if replayed != answer || vendor.requests(customer) != 2 {
        return Err(format!(
            "the repeat answered {replayed:?} (the retry {answer:?}) and the vendor took {} requests",
            vendor.requests(customer)
        ));
    }
    Ok(format!(
        "a holder killed with its claim in the store: the claim outlived it, the retry \
         proceeded after the lease ({answer:?}), and a repeat was replayed: 2 vendor requests"
    ))
}

fn main() {
    if let Some(orders) = Orders::from_env() {
        child(orders);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut stores = Vec::new();
    if let Some(url) = redis::shared("idempotency_processes (Redis)") {
        stores.push(Store::Redis {
            url: url.to_owned(),
            prefix: redis::prefix("processes"),
        });
    }
    if let Some(url) = postgres::shared("idempotency_processes (PostgreSQL)") {
        // A fresh schema: the four children migrate it together on start.
        stores.push(Store::Postgres {
            url: url.to_owned(),
            schema: postgres::schema("processes"),
        });
    }
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for store in &stores {
        // A vendor per store: its counts start at zero.
        let (vendor, vendor_url, server) = runtime.block_on(start_vendor());
        for (name, outcome) in [
            ("duplicates", duplicates(store, &vendor_url, &vendor)),
            (
                "killed holder",
                killed_holder(&runtime, store, &vendor_url, &vendor),
            ),
        ] {
            match outcome {
                Ok(summary) => {
                    passed += 1;
                    println!("{} {name}: ok: {summary}", store.name());
                }
                Err(error) => {
                    failed += 1;
                    println!("{} {name}: FAILED: {error}", store.name());
                }
            }
        }
        server.abort();
        if let Store::Postgres { url, schema } = store {
            runtime.block_on(postgres::drop_schema(url, schema));
        }
    }
    println!(
        "idempotency_processes: {passed} passed, {failed} failed; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
