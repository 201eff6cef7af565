//! A charge that is retried after a timeout and still charged exactly once.
//!
//! ```text
//! cargo run --example payments
//! ```
//!
//! A fake payments vendor runs on `127.0.0.1` (an ephemeral port). Like
//! Stripe, it honours the `Idempotency-Key` header: the first request with a
//! key creates the charge, and any later request with the same key gets that
//! same charge back. On the first request it also stalls for longer than our
//! per-attempt timeout, *after* it has created the charge: the answer is
//! lost, the write is not. seawall times the attempt out, retries it, and
//! because both attempts carry the same key (derived from the customer and
//! the amount), the vendor answers the retry with the charge it already made.
//! The example exits non-zero unless the vendor charged exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Classify, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};

/// A charge, as the vendor returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The vendor's id for the charge.
    pub id: String,
    /// The amount charged, in cents.
    pub cents: u64,
}

/// What a payment call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum PaymentError {
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

/// What our system needs from the payments vendor.
#[contract(name = "payments")]
pub trait Payments {
    /// Charges a customer. A write that retries must be idempotent: the key
    /// is derived from the customer and the amount, the same on every attempt.
    #[integration(write, timeout = "300ms", retry(attempts = 3, base = "50ms", cap = "200ms"),
                  idempotent(key = [customer, cents]))]
    async fn charge(&self, customer: &str, cents: u64) -> Result<Charge, PaymentError>;
}

/// The adapter: `seawall::http` sends the call's `Idempotency-Key` itself.
pub struct PaymentsHttp {
    http: Client,
    base_url: String,
}

impl Payments for PaymentsHttp {
    async fn charge(&self, customer: &str, cents: u64) -> Result<Charge, PaymentError> {
        let response = self
            .http
            .post(format!("{}/charges", self.base_url))
            .json(&serde_json::json!({ "customer": customer, "cents": cents }))
            .send()
            .await?
            .error_for_vendor()?;
        Ok(response.json().await?)
    }
}

/// The fake vendor's books.
#[derive(Default)]
struct Vendor {
    charges: Mutex<Vec<Charge>>,
    by_key: Mutex<HashMap<String, Charge>>,
    requests: Mutex<Vec<String>>,
}

#[derive(Deserialize)]
struct NewCharge {
    cents: u64,
}

async fn create_charge(
    State(vendor): State<Arc<Vendor>>,
    headers: HeaderMap,
    Json(body): Json<NewCharge>,
) -> Result<Json<Charge>, StatusCode> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or(StatusCode::BAD_REQUEST)?
        .to_owned();
    let first_request = {
        let mut requests = vendor.requests.lock().unwrap();
        requests.push(key.clone());
        requests.len() == 1
    };
    let (charge, replayed) = {
        let mut by_key = vendor.by_key.lock().unwrap();
        match by_key.get(&key) {
            Some(charge) => (charge.clone(), true),
            None => {
                let mut charges = vendor.charges.lock().unwrap();
                let charge = Charge {
                    id: format!("ch_{}", charges.len() + 1),
                    cents: body.cents,
                };
                charges.push(charge.clone());
                by_key.insert(key, charge.clone());
                (charge, false)
            }
        }
    };
    if first_request && !replayed {
        // The charge is made; the answer is late. The caller will give up.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    Ok(Json(charge))
}

/// What the run saw, for the printout and for the test that runs it.
#[derive(Debug)]
pub struct Outcome {
    /// The charge the caller got.
    pub charge: Charge,
    /// The idempotency keys of the requests the vendor received, in order.
    pub keys: Vec<String>,
    /// The charges the vendor made.
    pub charges: Vec<Charge>,
}

/// Runs the scenario against a fresh vendor on loopback.
pub async fn run() -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    let vendor = Arc::new(Vendor::default());
    let app = Router::new()
        .route("/charges", post(create_charge))
        .with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()?;
    let runtime = Runtime::in_memory();
    let payments = Resilient::new(PaymentsHttp { http, base_url }, &runtime);
    let charge = payments.charge("cus_42", 1_250).await;
    server.abort();
    let charge = charge?;
    let keys = vendor.requests.lock().unwrap().clone();
    let charges = vendor.charges.lock().unwrap().clone();
    Ok(Outcome {
        charge,
        keys,
        charges,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let outcome = run().await?;
    println!("payments drill: charge cus_42 1250 cents, 300 ms per attempt, 3 attempts");
    for (n, key) in outcome.keys.iter().enumerate() {
        println!("  vendor request {}: Idempotency-Key {key}", n + 1);
    }
    println!("  caller got: {:?}", outcome.charge);
    println!("  vendor charges made: {:?}", outcome.charges);
    let same_key = outcome.keys.windows(2).all(|pair| pair[0] == pair[1]);
    if outcome.keys.len() < 2 || !same_key || outcome.charges.len() != 1 {
        return Err(format!(
            "expected a retried request with one key and exactly one charge, got {} requests \
             and {} charges",
            outcome.keys.len(),
            outcome.charges.len()
        )
        .into());
    }
    println!(
        "charged exactly once: the first attempt timed out after the vendor charged, the retry \
         carried the same key, and the vendor answered it with the same charge"
    );
    Ok(())
}
