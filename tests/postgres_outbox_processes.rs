//! The PostgreSQL outbox, drained by separate OS processes: the parent
//! queues 10 000 writes over 10 contracts (8 200 notes over 100 accounts,
//! each account its own ordering key, and 200 posts in each of nine ledger
//! contracts, each one contract-wide lane),
//! then three child processes (this same test binary, started with
//! `SEAWALL_OUTBOX_CHILD` set) drain the outbox into one loopback HTTP
//! vendor, which logs each request and applies each idempotency key once.
//! Midway one child is killed with SIGKILL: its lanes are taken over when
//! their lease runs out and nothing is lost. Each child also queues ten
//! writes of its own through the transactional outbox, each in a
//! transaction with a row of the application's: five commit, five roll
//! back.
//!
//! Checked: every write applied, each key once (the only requests sent
//! twice are writes the killed child was delivering); per account and in
//! each ledger, the writes applied in the order they were queued; the
//! killed child's lanes finished by the others; the outbox empty; of the
//! transactional writes, the committed ones applied once each, in order,
//! the rolled-back ones never sent, and the application's rows those of
//! the committed transactions.
//!
//! The shared server on 127.0.0.1:5432; skipped (and says so) without it,
//! unless `SEAWALL_REQUIRE_POSTGRES` is set.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use seawall::postgres::Postgres;
use seawall::wal::QueuedWrite;
use seawall::{Delivery, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Connection;
use support::VendorError;
use support::postgres;

const CHILD_VAR: &str = "SEAWALL_OUTBOX_CHILD";
const CHILDREN: usize = 3;
const ACCOUNTS: u32 = 100;
const NOTES_EACH: u32 = 82;
/// Per ledger contract.
const POSTS: u32 = 200;
/// The children's lane lease: short, so that the killed child's lanes are
/// taken over soon.
const LEASE: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(120);
/// Transactions per child, each with a row of the application's and a
/// write through the transactional outbox: the even ones commit.
const TRANSACTIONS: u32 = 10;
const COMMITTED: u32 = TRANSACTIONS / 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub account: String,
    pub seq: u32,
}

#[contract(name = "notes")]
pub trait Notes {
    #[integration(write, timeout = "10s", idempotent(key = [note.account, note.seq]),
                  fallback = queue(order_by = [note.account]))]
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError>;
}

/// Nine contracts without ordering keys, each one contract-wide lane:
/// `ledger1`..`ledger9`, each a module with its trait and its adapter.
macro_rules! ledgers {
    ($($module:ident => $name:tt),* $(,)?) => {$(
        mod $module {
            use super::{Delivery, Http, VendorError, contract};

            #[contract(name = $name)]
            pub trait Ledger {
                #[integration(write, timeout = "10s", idempotent(key = [seq]), fallback = queue)]
                async fn post(&self, seq: u32) -> Result<Delivery<u32>, VendorError>;
            }

            impl Ledger for Http {
                async fn post(&self, seq: u32) -> Result<Delivery<u32>, VendorError> {
                    self.send($name, seq).await
                }
            }
        }
    )*};
}

ledgers!(
    ledger1 => "ledger1", ledger2 => "ledger2", ledger3 => "ledger3",
    ledger4 => "ledger4", ledger5 => "ledger5", ledger6 => "ledger6",
    ledger7 => "ledger7", ledger8 => "ledger8", ledger9 => "ledger9",
);

const LEDGERS: [&str; 9] = [
    "ledger1", "ledger2", "ledger3", "ledger4", "ledger5", "ledger6", "ledger7", "ledger8",
    "ledger9",
];

/// One request, as the vendor sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Request {
    child: usize,
    /// The lane: the account, or the ledger contract's name.
    lane: String,
    seq: u32,
}

// ---------------------------------------------------------------------------
// The child: a drainer
// ---------------------------------------------------------------------------

struct Http {
    http: seawall::http::Client,
    url: String,
    child: usize,
}

impl Http {
    async fn send(&self, lane: &str, seq: u32) -> Result<Delivery<u32>, VendorError> {
        let response = self
            .http
            .post(&self.url)
            .json(&Request {
                child: self.child,
                lane: lane.to_owned(),
                seq,
            })
            .send()
            .await
            .map_err(|_| VendorError::status(503))?;
        if !response.status().is_success() {
            return Err(VendorError::Status(response.status()));
        }
        Ok(seq.into())
    }
}

impl Notes for Http {
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError> {
        self.send(&note.account, note.seq).await
    }
}

/// Drains until stdin closes (or it is killed).
fn child(number: usize) {
    let var = |name: &str| std::env::var(format!("{CHILD_VAR}_{name}")).expect(name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config = Postgres::new(&var("DATABASE"))
            .expect("a URL")
            .schema(&var("SCHEMA"))
            .expect("a schema")
            .claim_lease(LEASE);
        let seawall = Runtime::builder().postgres(config).in_memory();
        let url = var("DATABASE");
        let schema = var("SCHEMA");
        let http = seawall::http::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client");
        let wrapper = Resilient::new(
            Http {
                http,
                url: var("VENDOR"),
                child: number,
            },
            &seawall,
        );
        // The application's transactions: a row and a note in each, as
        // one; the odd ones roll back (their notes numbered from 1001, so
        // one that reached the vendor would show).
        let mut connection = sqlx::PgConnection::connect(&url)
            .await
            .expect("a connection");
        for transaction in 1..=TRANSACTIONS {
            let mut tx = connection.begin().await.expect("a transaction");
            sqlx::query(&format!(
                "INSERT INTO \"{schema}\".orders (child, transaction) VALUES ($1, $2)"
            ))
            .bind(number as i32)
            .bind(transaction as i32)
            .execute(&mut *tx)
            .await
            .expect("the application's row");
            let commits = transaction % 2 == 0;
            let seq = if commits {
                transaction / 2
            } else {
                1000 + transaction
            };
            let note = Note {
                account: format!("tx{number}"),
                seq,
            };
            wrapper
                .outbox(&mut *tx)
                .add_note(&note)
                .await
                .expect("queued in the transaction");
            if commits {
                tx.commit().await.expect("a commit");
            } else {
                tx.rollback().await.expect("a rollback");
            }
        }
        drop(connection);
        Notes::resume_queued(&wrapper);
        ledger1::Ledger::resume_queued(&wrapper);
        ledger2::Ledger::resume_queued(&wrapper);
        ledger3::Ledger::resume_queued(&wrapper);
        ledger4::Ledger::resume_queued(&wrapper);
        ledger5::Ledger::resume_queued(&wrapper);
        ledger6::Ledger::resume_queued(&wrapper);
        ledger7::Ledger::resume_queued(&wrapper);
        ledger8::Ledger::resume_queued(&wrapper);
        ledger9::Ledger::resume_queued(&wrapper);
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
            .await
            .expect("the stdin reader")
            .expect("stdin");
        drop(wrapper);
    });
}

// ---------------------------------------------------------------------------
// The vendor: axum on 127.0.0.1, in the parent
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Vendor {
    /// Every request, in the order taken.
    log: Mutex<Vec<Request>>,
    /// Keys applied: (lane, seq).
    applied: Mutex<HashSet<(String, u32)>>,
    /// The first application of each key, in order, per lane: (seq, child).
    order: Mutex<HashMap<String, Vec<(u32, usize)>>>,
}

async fn deliver(State(vendor): State<Arc<Vendor>>, Json(request): Json<Request>) -> String {
    let key = (request.lane.clone(), request.seq);
    let first = vendor
        .applied
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key);
    if first {
        vendor
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(request.lane.clone())
            .or_default()
            .push((request.seq, request.child));
    }
    let seq = request.seq;
    vendor
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request);
    seq.to_string()
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

struct Drainer(Child);

impl Drainer {
    fn spawn(number: usize, url: &str, schema: &str, vendor: &str) -> Self {
        let child = Command::new(std::env::current_exe().expect("this binary"))
            .env(CHILD_VAR, number.to_string())
            .env(format!("{CHILD_VAR}_DATABASE"), url)
            .env(format!("{CHILD_VAR}_SCHEMA"), schema)
            .env(format!("{CHILD_VAR}_VENDOR"), vendor)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a child");
        Self(child)
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn note(account: &str, seq: u32) -> QueuedWrite {
    let mut write = QueuedWrite::new(
        "notes",
        "add_note",
        format!("notes:{account}:{seq}"),
        json!({ "note": { "account": account, "seq": seq } }),
    );
    write.order_key = Some(format!("account={account:?}"));
    write
}

fn ledger(contract: &str, seq: u32) -> QueuedWrite {
    QueuedWrite::new(
        contract,
        "post",
        format!("{contract}:{seq}"),
        json!({ "seq": seq }),
    )
}

fn scenario(url: &str, schema: &str, runtime: &tokio::runtime::Runtime) -> Result<String, String> {
    let vendor = Arc::new(Vendor::default());
    let (vendor_url, server) = runtime.block_on(async {
        let app = Router::new()
            .route("/deliver", post(deliver))
            .with_state(vendor.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{address}/deliver"), server)
    });
    let config = Postgres::new(url)
        .map_err(|e| e.to_string())?
        .schema(schema)
        .map_err(|e| e.to_string())?;
    let queuer = Runtime::builder().postgres(config.clone()).in_memory();
    let total = (ACCOUNTS * NOTES_EACH + POSTS * LEDGERS.len() as u32) as usize;
    // With the children's committed transactions.
    let delivered = total + CHILDREN * COMMITTED as usize;

    // Queued by 109 tasks at once, one per lane, each in order.
    let started = Instant::now();
    runtime.block_on(async {
        config.migrate().await.map_err(|e| e.to_string())?;
        let app = postgres::connect(url).await;
        sqlx::query(&format!(
            "CREATE TABLE \"{schema}\".orders (child integer, transaction integer)"
        ))
        .execute(&app)
        .await
        .map_err(|e| e.to_string())?;
        let mut lanes = Vec::new();
        for account in 0..ACCOUNTS {
            lanes.push(
                (1..=NOTES_EACH)
                    .map(|seq| note(&format!("a{account:02}"), seq))
                    .collect::<Vec<_>>(),
            );
        }
        for contract in LEDGERS {
            lanes.push((1..=POSTS).map(|seq| ledger(contract, seq)).collect());
        }
        let mut appends = tokio::task::JoinSet::new();
        for writes in lanes {
            let queuer = queuer.clone();
            appends.spawn(async move {
                for write in writes {
                    queuer.write_ahead_log().append(&write).await?;
                }
                Ok::<_, seawall::StoreError>(())
            });
        }
        while let Some(appended) = appends.join_next().await {
            appended
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    let queued_in = started.elapsed();
    let depth = runtime
        .block_on(queuer.write_ahead_log().depth())
        .map_err(|e| e.to_string())?;
    if depth != total as u64 {
        return Err(format!("{depth} writes pending after queueing {total}"));
    }

    let drain_started = Instant::now();
    let mut drainers: Vec<Option<Drainer>> = (0..CHILDREN)
        .map(|n| Some(Drainer::spawn(n, url, schema, &vendor_url)))
        .collect();
    let deadline = Instant::now() + DEADLINE;
    let applied = || {
        vendor
            .applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    };
    let by_child = |child: usize| {
        vendor
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.child == child)
            .count()
    };
    let app = runtime.block_on(postgres::connect(url));
    let orders = || {
        runtime
            .block_on(
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{schema}\".orders"))
                    .fetch_one(&app),
            )
            .map_err(|e| e.to_string())
    };
    // Killed once a third is applied, it has delivered some, and every
    // child's transactions are done.
    while applied() < total / 3
        || by_child(0) == 0
        || orders()? < i64::from(CHILDREN as u32 * COMMITTED)
    {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {total} applied before the kill",
                applied()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drainers[0] = None; // SIGKILL (Drop)
    let killed_after = vendor
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    loop {
        let pending = runtime
            .block_on(queuer.write_ahead_log().depth())
            .map_err(|e| e.to_string())?;
        if applied() == delivered && pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not drained within {DEADLINE:?}: {} of {delivered} applied, {pending} pending",
                applied()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained_in = drain_started.elapsed();
    drop(drainers);
    server.abort();

    // Each key once, but for what the killed child was delivering.
    let log = vendor.log.lock().unwrap_or_else(PoisonError::into_inner);
    let mut requests: HashMap<(String, u32), Vec<usize>> = HashMap::new();
    for request in log.iter() {
        requests
            .entry((request.lane.clone(), request.seq))
            .or_default()
            .push(request.child);
    }
    if requests.len() != delivered {
        return Err(format!(
            "{} keys reached the vendor, not {delivered}",
            requests.len()
        ));
    }
    let twice: Vec<_> = requests
        .iter()
        .filter(|(_, children)| children.len() > 1)
        .collect();
    for (key, children) in &twice {
        if children.len() > 2 || children[0] != 0 {
            return Err(format!("{key:?} was sent by {children:?}"));
        }
    }
    // In order per lane; the killed child's lanes finished by others.
    let order = vendor.order.lock().unwrap_or_else(PoisonError::into_inner);
    let mut taken_over = 0;
    for (lane, applied) in order.iter() {
        let seqs: Vec<u32> = applied.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<u32> = (1..=seqs.len() as u32).collect();
        if seqs != expected {
            return Err(format!("lane {lane:?} applied out of order: {seqs:?}"));
        }
        let last_by_killed = applied.iter().rposition(|(_, child)| *child == 0);
        if last_by_killed.is_some_and(|at| at + 1 < applied.len()) {
            taken_over += 1;
        }
    }
    if taken_over == 0 {
        return Err("no lane of the killed child was finished by another".into());
    }
    for child in 0..CHILDREN {
        let lane = format!("tx{child}");
        let seqs: Vec<u32> = order
            .get(&lane)
            .map(|applied| applied.iter().map(|(seq, _)| *seq).collect())
            .unwrap_or_default();
        if seqs != (1..=COMMITTED).collect::<Vec<_>>() {
            return Err(format!(
                "child {child}'s committed notes applied as {seqs:?}"
            ));
        }
    }
    drop((log, order));
    let rows: Vec<(i32, i32)> = runtime
        .block_on(
            sqlx::query_as(&format!(
                "SELECT child, transaction FROM \"{schema}\".orders ORDER BY 1, 2"
            ))
            .fetch_all(&app),
        )
        .map_err(|e| e.to_string())?;
    let committed: Vec<(i32, i32)> = (0..CHILDREN as i32)
        .flat_map(|child| (1..=COMMITTED as i32).map(move |k| (child, 2 * k)))
        .collect();
    if rows != committed {
        return Err(format!("the application's rows are {rows:?}"));
    }
    runtime.block_on(app.close());
    let counts: Vec<usize> = (0..CHILDREN).map(by_child).collect();
    if counts.contains(&0) {
        return Err(format!("a child delivered nothing: {counts:?}"));
    }
    Ok(format!(
        "{total} writes queued in {queued_in:.2?} ({:.0}/s), drained in {drained_in:.2?} ({:.0}/s); \
         requests by child {counts:?}, the first killed after {killed_after} requests; \
         {} sent twice (the killed child's), {taken_over} of its lanes taken over; \
         {COMMITTED} of {TRANSACTIONS} transactional writes per child committed and applied once",
        total as f64 / queued_in.as_secs_f64(),
        total as f64 / drained_in.as_secs_f64(),
        twice.len()
    ))
}

fn main() {
    if let Ok(number) = std::env::var(CHILD_VAR) {
        child(number.parse().expect("a child number"));
        return;
    }
    let Some(url) = postgres::shared("postgres_outbox_processes") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let schema = postgres::schema("outbox_processes");
    let outcome = scenario(url, &schema, &runtime);
    runtime.block_on(postgres::drop_schema(url, &schema));
    match outcome {
        Ok(summary) => println!("postgres_outbox_processes: ok: {summary}"),
        Err(error) => {
            println!("postgres_outbox_processes: FAILED: {error}");
            std::process::exit(1);
        }
    }
}
