//! A custom fallback: when the EHR is down, the clinician sees a clear
//! "records temporarily unavailable" answer instead of an error page.
//!
//! ```text
//! cargo run --example ehr
//! ```
//!
//! A fake EHR runs on `127.0.0.1` (an ephemeral port) and goes down (503)
//! halfway through. The contract's policy names a function that answers a
//! failed read — `fallback = with(unavailable)` — which receives the call's
//! arguments and its error. For an outage (a retryable error or a vendor
//! fault) it returns `Records::Unavailable` with a message a person can act
//! on; a permanent error (the patient does not exist) still reaches the
//! caller as an error. The example exits non-zero unless that happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Classify, ErrorClass, Resilient, Runtime, contract};

/// What the chart shows.
#[derive(Debug, PartialEq)]
pub enum Records {
    /// The patient's records.
    Found(Vec<String>),
    /// The EHR cannot answer now; the message says so and what to do.
    Unavailable(String),
}

/// What an EHR call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum EhrError {
    /// The EHR answered with an error status.
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

/// The degraded mode, decided before it is needed: an outage becomes a clear
/// answer; a wrong request stays an error.
pub fn unavailable(patient: &str, error: EhrError) -> Result<Records, EhrError> {
    match error.class() {
        ErrorClass::Retryable | ErrorClass::VendorFault => Ok(Records::Unavailable(format!(
            "Records for patient {patient} are temporarily unavailable: the EHR is not \
             answering. Check the paper chart or try again in a few minutes."
        ))),
        _ => Err(error),
    }
}

/// What our system needs from the EHR.
#[contract(name = "ehr")]
pub trait Ehr {
    /// A patient's records.
    #[integration(read, timeout = "500ms", retry(attempts = 2, base = "20ms", cap = "50ms"),
                  breaker, fallback = with(unavailable))]
    async fn records(&self, patient: &str) -> Result<Records, EhrError>;
}

/// The adapter.
pub struct EhrHttp {
    http: Client,
    base_url: String,
}

impl Ehr for EhrHttp {
    async fn records(&self, patient: &str) -> Result<Records, EhrError> {
        let response = self
            .http
            .get(format!("{}/patients/{patient}/records", self.base_url))
            .send()
            .await?
            .error_for_vendor()?;
        Ok(Records::Found(response.json().await?))
    }
}

#[derive(Default)]
struct FakeEhr {
    down: AtomicBool,
}

async fn records(
    State(ehr): State<Arc<FakeEhr>>,
    Path(patient): Path<String>,
) -> Result<Json<Vec<String>>, StatusCode> {
    if ehr.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    if patient == "unknown" {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Json(vec![format!("{patient}: allergy to penicillin")]))
}

/// What the chart showed, in order: before, during the outage, and for a
/// patient that does not exist.
#[derive(Debug)]
pub struct Outcome {
    /// While the EHR was up.
    pub before: Records,
    /// While it was down.
    pub during: Records,
    /// A patient the EHR does not know, while it was up: still an error.
    pub unknown: Result<Records, String>,
}

/// Runs the scenario against a fresh EHR on loopback.
pub async fn run() -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    let ehr = Arc::new(FakeEhr::default());
    let app = Router::new()
        .route("/patients/{patient}/records", get(records))
        .with_state(ehr.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build()?;
    let runtime = Runtime::in_memory();
    let client = Resilient::new(EhrHttp { http, base_url }, &runtime);

    let before = client.records("p-17").await?;
    let unknown = client.records("unknown").await.map_err(|e| e.to_string());
    ehr.down.store(true, Ordering::SeqCst);
    let during = client.records("p-17").await?;
    server.abort();
    Ok(Outcome {
        before,
        during,
        unknown,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let outcome = run().await?;
    println!("ehr drill: a chart reads patient p-17 before and during an EHR outage");
    println!("  before:  {:?}", outcome.before);
    println!("  during:  {:?}", outcome.during);
    println!("  unknown patient: {:?}", outcome.unknown);
    let expected = matches!(outcome.before, Records::Found(_))
        && matches!(outcome.during, Records::Unavailable(_))
        && outcome.unknown.is_err();
    if !expected {
        return Err("expected records, then a clear unavailable answer, and an error for an unknown patient".into());
    }
    println!("the outage became a clear answer; the wrong request stayed an error");
    Ok(())
}
