//! What the `seawall` tool's tests share: a contract over `seawall::http`,
//! a loopback vendor that can be down or refuse some writes, a real
//! embedded store written by a real runtime, and the tool itself, run as a
//! process.

#![allow(dead_code)]

/// The root crate's PostgreSQL helpers (the shared server on
/// 127.0.0.1:5432, a schema per test), reused as they are.
#[cfg(feature = "postgres")]
#[path = "../../../tests/support/postgres.rs"]
pub mod pg;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use seawall::http::{Client, ResponseError, check};
use seawall::wal::{Ticket, TicketStatus};
use seawall::{Delivery, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, seawall::Classify)]
pub enum ApiError {
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: u32,
    pub cents: u64,
}

#[contract(name = "billing")]
pub trait Billing {
    /// Keyed on two named values, ordered per account.
    #[integration(write, timeout = "2s", idempotent(key = [account, invoice.number]),
                  fallback = queue(order_by = [account]))]
    async fn charge(&self, account: &str, invoice: &Invoice) -> Result<Delivery<String>, ApiError>;

    /// Keyed on every argument; `card` redacted (kept in plaintext here:
    /// the runtime is told so).
    #[integration(write, timeout = "2s", idempotent, fallback = queue, redact = [card])]
    async fn note(&self, account: &str, card: String) -> Result<Delivery<String>, ApiError>;
}

/// The adapter: `seawall::http` sends the call's `Idempotency-Key` itself.
pub struct BillingHttp {
    http: Client,
    url: String,
}

impl Billing for BillingHttp {
    async fn charge(&self, account: &str, invoice: &Invoice) -> Result<Delivery<String>, ApiError> {
        let body = serde_json::json!({ "account": account, "invoice": invoice });
        let response = self
            .http
            .post(format!("{}/charge", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        Ok(check(response)?.text().await?.into())
    }

    async fn note(&self, account: &str, _card: String) -> Result<Delivery<String>, ApiError> {
        let body = serde_json::json!({ "account": account });
        let response = self
            .http
            .post(format!("{}/note", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        Ok(check(response)?.text().await?.into())
    }
}

pub fn billing(url: &str, runtime: &Runtime) -> Resilient<BillingHttp> {
    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client with both timeouts");
    Resilient::new(
        BillingHttp {
            http,
            url: url.to_owned(),
        },
        runtime,
    )
}

/// Every write answers 503.
pub const DOWN: u8 = 0;
/// Writes for account `bad` answer 422 (refused for good); the rest 503.
pub const REFUSING_BAD: u8 = 1;
/// Writes answer 200, but account `bad`'s 422.
pub const UP: u8 = 2;
/// Every write answers 200 (`bad`'s account was reopened).
pub const FIXED: u8 = 3;

/// A vendor on 127.0.0.1 that records each request's `Idempotency-Key`.
#[derive(Clone, Default)]
pub struct Vendor {
    mode: Arc<AtomicU8>,
    keys: Arc<Mutex<Vec<String>>>,
}

impl Vendor {
    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// The keys of the requests so far, in arrival order.
    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }

    /// Serves on 127.0.0.1 in the current tokio runtime; answers its URL.
    pub async fn start(&self) -> String {
        async fn answer(
            State(vendor): State<Vendor>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, String) {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            vendor.keys.lock().unwrap().push(key.clone());
            let bad = body.contains("\"account\":\"bad\"");
            match vendor.mode.load(Ordering::SeqCst) {
                REFUSING_BAD | UP if bad => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "account closed".into())
                }
                UP | FIXED => (StatusCode::OK, format!("done {key}")),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "down".into()),
            }
        }
        let app = Router::new()
            .route("/charge", post(answer))
            .route("/note", post(answer))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

/// A multi-threaded tokio runtime standing for the service's process: when
/// it is dropped, with the seawall runtime, every task that could hold the
/// store is gone and the file is closed.
pub fn service() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What `queued_store` left in the store.
#[derive(Debug)]
pub struct Written {
    /// `acme`'s charges, pending (the vendor still down for them).
    pub pending: Vec<Ticket>,
    /// `bad`'s charges, refused for good: dead letters.
    pub dead: Vec<Ticket>,
    /// A note with a redacted card number, pending.
    pub note: Ticket,
    /// The keys the vendor saw, in order.
    pub vendor_keys: Vec<String>,
}

/// The card number the note carries (and no output may show).
pub const CARD: &str = "4111111111111111";

/// Writes a real store in `dir` the way a service would: three charges
/// for `acme` and two for `bad` queued while the vendor is down, then the
/// vendor refuses `bad`'s for good (dead letters) while `acme`'s stay
/// pending after a failed delivery attempt; a note is queued too. The
/// service then stops.
pub fn queued_store(dir: &Path) -> Written {
    queued(|| {
        Runtime::builder()
            .plaintext_redacted()
            .embedded(dir)
            .expect("the store opens")
    })
}

/// As [`queued_store`], in the PostgreSQL outbox of `schema` (migrated by
/// the runtime), by a runtime that keeps nothing else.
#[cfg(feature = "postgres")]
pub fn queued_outbox(url: &str, schema: &str) -> Written {
    queued(|| {
        Runtime::builder()
            .plaintext_redacted()
            .postgres(outbox_config(url, schema))
            .in_memory()
    })
}

/// How the tests' runtimes name the outbox: a short lease (a lane a
/// runtime left is free again soon) and a generous query timeout (the
/// first query waits for the migration).
#[cfg(feature = "postgres")]
pub fn outbox_config(url: &str, schema: &str) -> seawall::postgres::Postgres {
    seawall::postgres::Postgres::new(url)
        .unwrap()
        .schema(schema)
        .unwrap()
        .store_timeout(Duration::from_secs(10))
        .claim_lease(Duration::from_secs(3))
}

fn queued(runtime: impl FnOnce() -> Runtime) -> Written {
    let service = service();
    let written = service.block_on(async {
        let vendor = Vendor::default();
        let url = vendor.start().await;
        let runtime = runtime();
        let billing = billing(&url, &runtime);
        let queued = |delivery: Delivery<String>| delivery.ticket().expect("queued");
        let mut pending = Vec::new();
        let mut dead = Vec::new();
        for number in 1..=3 {
            let invoice = Invoice {
                number,
                cents: 100 * u64::from(number),
            };
            pending.push(queued(billing.charge("acme", &invoice).await.unwrap()));
        }
        for number in 1..=2 {
            let invoice = Invoice { number, cents: 5 };
            dead.push(queued(billing.charge("bad", &invoice).await.unwrap()));
        }
        let note = queued(billing.note("acme", CARD.into()).await.unwrap());
        // The drain's first round: `bad`'s writes are refused for good,
        // the others still find the vendor down.
        vendor.set(REFUSING_BAD);
        for ticket in &dead {
            let status = runtime.write_ahead_log().settled(*ticket).await.unwrap();
            assert!(
                matches!(status, Some(TicketStatus::Dead { .. })),
                "{status:?}"
            );
        }
        // Until `acme`'s first write was tried (and counted) once more.
        let log = runtime.write_ahead_log();
        for _ in 0..200 {
            let pending = log.pending("billing", 10).await.unwrap();
            if pending.iter().any(|(_, write)| write.attempts > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        drop(billing);
        drop(runtime);
        Written {
            pending,
            dead,
            note,
            vendor_keys: vendor.keys(),
        }
    });
    drop(service);
    written
}

/// Runs the tool with `args`.
pub fn seawall<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(args)
        .env_remove("SEAWALL_STORE")
        .env_remove("SEAWALL_POSTGRES_URL")
        .output()
        .expect("the tool runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the tool succeeded, showing what it said otherwise.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the tool failed ({}):\n{}\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts the tool failed with `code`, without a panic; answers stderr.
pub fn failed(output: &Output, code: i32) -> String {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit code {code}:\n{}\n{err}",
        stdout(output)
    );
    assert!(!err.contains("panicked"), "the tool panicked: {err}");
    err
}
