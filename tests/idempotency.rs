//! Idempotency keys: derived once per logical write, the same on every
//! attempt, readable by the adapter and sent by `seawall::http`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use seawall::idempotency::{IdempotencyKey, current_key};
use seawall::{Resilient, Runtime, contract};
use serde::Serialize;
use support::{Script, Step, VendorError};

#[derive(Clone, Debug, Serialize)]
pub struct Invoice {
    pub number: u32,
    pub cents: u64,
}

#[contract(name = "billing")]
pub trait Billing {
    #[integration(write, timeout = "1s", retry(attempts = 3, base = "10ms", cap = "10ms"),
                  idempotent(key = [customer, amount_cents]))]
    async fn charge(&self, customer: &str, amount_cents: u64) -> Result<usize, VendorError>;

    #[integration(write, timeout = "1s", retry(attempts = 2, base = "10ms", cap = "10ms"),
                  idempotent(key = [account, invoice.number]))]
    async fn invoice(&self, account: &str, invoice: &Invoice) -> Result<usize, VendorError>;

    #[integration(write, timeout = "1s", idempotent)]
    async fn note(&self, account: &str, text: String) -> Result<usize, VendorError>;
}

/// A vendor that remembers the key each attempt ran with.
struct Recording {
    script: Script,
    keys: Mutex<Vec<Option<IdempotencyKey>>>,
}

impl Recording {
    fn new(script: Script) -> Self {
        Self {
            script,
            keys: Mutex::new(Vec::new()),
        }
    }

    async fn play(&self) -> Result<usize, VendorError> {
        self.keys.lock().unwrap().push(current_key());
        self.script.play().await
    }

    fn keys(&self) -> Vec<Option<IdempotencyKey>> {
        self.keys.lock().unwrap().clone()
    }
}

impl Billing for Recording {
    async fn charge(&self, _customer: &str, _amount_cents: u64) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn invoice(&self, _account: &str, _invoice: &Invoice) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn note(&self, _account: &str, _text: String) -> Result<usize, VendorError> {
        self.play().await
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_carries_the_same_key_and_it_is_the_golden_one() {
    let runtime = Runtime::in_memory();
    let script = Script::new(
        [Step::Fail(503), Step::Slow(Duration::from_secs(5))],
        Step::Ok,
    );
    let billing = Resilient::new(Recording::new(script), &runtime);
    billing.charge("cus_42", 1250).await.unwrap();
    let keys = billing.inner().keys();
    assert_eq!(keys.len(), 3, "a 503, a timeout, then a success");
    // The same key as the golden vector in core (contract "billing",
    // method "charge", customer "cus_42", amount_cents 1250).
    let golden = "98a4457434979cd07b57b62f68aafa26a4fb72237933a561195e0202089735fb";
    for key in keys {
        assert_eq!(key.expect("a key during every attempt").as_str(), golden);
    }
    assert_eq!(current_key(), None, "no key outside the call");
}

#[tokio::test(start_paused = true)]
async fn keys_follow_the_named_values_and_only_those() {
    let runtime = Runtime::in_memory();
    let billing = Resilient::new(Recording::new(Script::always(Step::Ok)), &runtime);
    let invoice = |number, cents| Invoice { number, cents };
    billing.invoice("acct-1", &invoice(7, 100)).await.unwrap();
    billing.invoice("acct-1", &invoice(7, 999)).await.unwrap(); // cents is not in the key
    billing.invoice("acct-1", &invoice(8, 100)).await.unwrap();
    billing.invoice("acct-2", &invoice(7, 100)).await.unwrap();
    let keys: Vec<_> = billing
        .inner()
        .keys()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[0], keys[2]);
    assert_ne!(keys[0], keys[3]);
    assert_ne!(keys[2], keys[3]);
}

#[tokio::test(start_paused = true)]
async fn a_bare_idempotent_keys_on_every_argument() {
    let runtime = Runtime::in_memory();
    let billing = Resilient::new(Recording::new(Script::always(Step::Ok)), &runtime);
    billing.note("acct-1", "hello".into()).await.unwrap();
    billing.note("acct-1", "hello".into()).await.unwrap();
    billing.note("acct-1", "bye".into()).await.unwrap();
    let keys: Vec<_> = billing
        .inner()
        .keys()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let expected = IdempotencyKey::builder("billing", "note")
        .part("account", "acct-1")
        .part("text", "hello")
        .finish()
        .unwrap();
    assert_eq!(keys[0], expected);
    assert_eq!(keys[1], expected);
    assert_ne!(keys[2], expected);
}

// Against a real vendor on loopback: the first attempt times out after the
// vendor has processed the charge; the retry carries the same key, so a
// vendor that honours keys charges once.

#[derive(Debug, thiserror::Error, seawall::Classify)]
pub enum PaymentError {
    #[error(transparent)]
    #[classify(delegate)]
    Vendor(#[from] seawall::http::ResponseError),
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

#[contract(name = "payments")]
pub trait Payments {
    #[integration(write, timeout = "300ms", retry(attempts = 2, base = "10ms", cap = "10ms"),
                  idempotent(key = [customer, cents]))]
    async fn charge(&self, customer: &str, cents: u64) -> Result<(), PaymentError>;
}

#[contract(name = "payments", idempotency_header = "X-Request-Id")]
pub trait OtherHeader {
    #[integration(write, timeout = "1s", idempotent)]
    async fn charge(&self, customer: &str) -> Result<(), PaymentError>;
}

struct PaymentsHttp {
    http: seawall::http::Client,
    url: String,
}

impl Payments for PaymentsHttp {
    async fn charge(&self, _customer: &str, _cents: u64) -> Result<(), PaymentError> {
        use seawall::http::ResponseExt;
        self.http.post(&self.url).send().await?.error_for_vendor()?;
        Ok(())
    }
}

impl OtherHeader for PaymentsHttp {
    async fn charge(&self, _customer: &str) -> Result<(), PaymentError> {
        use seawall::http::ResponseExt;
        self.http.post(&self.url).send().await?.error_for_vendor()?;
        Ok(())
    }
}

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<HeaderMap>>,
}

async fn vendor(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> StatusCode {
    let first = {
        let mut requests = seen.requests.lock().unwrap();
        requests.push(headers);
        requests.len() == 1
    };
    if first {
        // Processed, but the answer comes too late for the caller.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    StatusCode::OK
}

async fn start() -> (Arc<Seen>, String, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/charges", post(vendor))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/charges", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (seen, url, server)
}

fn client() -> seawall::http::Client {
    seawall::http::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_retry_after_a_timeout_sends_the_vendor_the_same_key() {
    let (seen, url, server) = start().await;
    let runtime = Runtime::in_memory();
    let payments = Resilient::new(
        PaymentsHttp {
            http: client(),
            url,
        },
        &runtime,
    );
    Payments::charge(&payments, "cus_7", 500).await.unwrap();
    let requests = seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "a timed-out attempt, then the retry");
    let expected = IdempotencyKey::builder("payments", "charge")
        .part("customer", "cus_7")
        .part("cents", &500u64)
        .finish()
        .unwrap();
    for headers in &requests {
        assert_eq!(headers["idempotency-key"], expected.as_str());
    }
    server.abort();
}

#[tokio::test]
async fn the_header_name_is_the_contracts_to_choose() {
    let (seen, url, server) = start().await;
    // Skip the slow first answer: this test is about the header.
    seen.requests.lock().unwrap().push(HeaderMap::new());
    let runtime = Runtime::in_memory();
    let payments = Resilient::new(
        PaymentsHttp {
            http: client(),
            url,
        },
        &runtime,
    );
    OtherHeader::charge(&payments, "cus_7").await.unwrap();
    let requests = seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].get("idempotency-key").is_none());
    assert_eq!(requests[1]["x-request-id"].len(), 64);
    server.abort();
}
