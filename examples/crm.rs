//! Reads served from the last-known-good cache while the CRM is down, with
//! their age.
//!
//! ```text
//! cargo run --example crm
//! ```
//!
//! A fake CRM runs on `127.0.0.1` (an ephemeral port). The account page
//! reads an account through a contract whose policy says an answer up to an
//! hour old is good enough when the CRM cannot answer:
//! `fallback = cache(max_stale = "1h")`. The CRM answers, then goes down
//! (503), then comes back: while it is down, every read is answered from the
//! cache, marked stale with its age; once it is back, answers are fresh
//! again. The example exits non-zero unless exactly that happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Cached, Classify, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};

/// An account, as our system uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The CRM's id.
    pub id: String,
    /// The account's name.
    pub name: String,
    /// How many times the CRM has served this account (shows freshness).
    pub version: usize,
}

/// What a CRM call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum CrmError {
    /// The CRM answered with an error status.
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

/// What our system needs from the CRM.
#[contract(name = "crm")]
pub trait Crm {
    /// An account; up to an hour old when the CRM is down.
    #[integration(read, timeout = "500ms", retry(attempts = 2, base = "20ms", cap = "50ms"),
                  breaker(window = 4, min_calls = 4, open_for = "200ms"),
                  fallback = cache(max_stale = "1h"))]
    async fn account(&self, id: &str) -> Result<Cached<Account>, CrmError>;
}

/// The adapter.
pub struct CrmHttp {
    http: Client,
    base_url: String,
}

impl Crm for CrmHttp {
    async fn account(&self, id: &str) -> Result<Cached<Account>, CrmError> {
        let response = self
            .http
            .get(format!("{}/accounts/{id}", self.base_url))
            .send()
            .await?
            .error_for_vendor()?;
        Ok(response.json::<Account>().await?.into())
    }
}

#[derive(Default)]
struct FakeCrm {
    down: AtomicBool,
    served: AtomicUsize,
}

async fn account(
    State(crm): State<Arc<FakeCrm>>,
    Path(id): Path<String>,
) -> Result<Json<Account>, StatusCode> {
    if crm.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let version = crm.served.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Json(Account {
        name: format!("Account {id}"),
        id,
        version,
    }))
}

/// One read, as the page saw it.
#[derive(Debug)]
pub struct Read {
    /// The phase it happened in.
    pub phase: &'static str,
    /// The version of the account it got.
    pub version: usize,
    /// Whether it came from the cache.
    pub stale: bool,
    /// How old the answer was.
    pub age: Duration,
}

/// Runs the scenario against a fresh CRM on loopback.
pub async fn run() -> Result<Vec<Read>, Box<dyn std::error::Error + Send + Sync>> {
    let crm = Arc::new(FakeCrm::default());
    let app = Router::new()
        .route("/accounts/{id}", get(account))
        .with_state(crm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build()?;
    let runtime = Runtime::in_memory();
    let client = Resilient::new(CrmHttp { http, base_url }, &runtime);

    let mut reads = Vec::new();
    for (phase, down, count) in [("up", false, 3), ("down", true, 6), ("back", false, 2)] {
        crm.down.store(down, Ordering::SeqCst);
        if phase == "back" {
            // Give the breaker its `open_for` to half-open and probe.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for _ in 0..count {
            let answer = client.account("acct-7").await?;
            reads.push(Read {
                phase,
                version: answer.version,
                stale: answer.is_stale(),
                age: answer.age(),
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    server.abort();
    Ok(reads)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let reads = run().await?;
    println!("crm drill: the account page reads acct-7; the CRM goes down, then comes back");
    for read in &reads {
        println!(
            "  {:<5} version {:>2}  {}",
            read.phase,
            read.version,
            if read.stale {
                format!("stale, {} ms old (from the cache)", read.age.as_millis())
            } else {
                "fresh".to_owned()
            }
        );
    }
    let down_all_stale = reads.iter().filter(|r| r.phase == "down").all(|r| r.stale);
    let up_and_back_fresh = reads.iter().filter(|r| r.phase != "down").all(|r| !r.stale);
    if !down_all_stale || !up_and_back_fresh {
        return Err("expected every read while down to be stale and every other read fresh".into());
    }
    println!(
        "every read was answered: from the CRM when it was up, from the cache while it was down"
    );
    Ok(())
}
