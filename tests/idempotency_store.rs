//! The idempotency store: completed writes are replayed, duplicates in
//! flight make no second vendor call, conflicts are refused, and the record
//! survives a restart with the embedded store.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use seawall::{Error, ErrorClass, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};

#[contract(name = "ledger")]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(key = [account], store))]
    async fn post(&self, account: &str, cents: u64) -> Result<usize, VendorError>;

    #[integration(write, timeout = "5s", idempotent(store, replay_failures = false))]
    async fn post_forgetful(&self, account: &str) -> Result<usize, VendorError>;

    #[integration(write, timeout = "5s", idempotent(store, concurrent = "reject"))]
    async fn post_once(&self, account: &str) -> Result<usize, VendorError>;

    #[integration(write, timeout = "5s", idempotent(store, retention = "50ms"))]
    async fn post_briefly(&self, account: &str) -> Result<usize, VendorError>;
}

impl Ledger for Script {
    async fn post(&self, _account: &str, _cents: u64) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn post_forgetful(&self, _account: &str) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn post_once(&self, _account: &str) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn post_briefly(&self, _account: &str) -> Result<usize, VendorError> {
        self.play().await
    }
}

#[tokio::test]
async fn a_completed_write_is_replayed_without_calling_the_vendor() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(Script::always(Step::Ok), &runtime);
    assert_eq!(ledger.post("acct-1", 100).await.unwrap(), 1);
    assert_eq!(
        ledger.post("acct-1", 100).await.unwrap(),
        1,
        "the recorded answer"
    );
    assert_eq!(ledger.inner().calls(), 1);
    assert_eq!(
        ledger.post("acct-2", 100).await.unwrap(),
        2,
        "another key calls"
    );
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_a_conflict() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(Script::always(Step::Ok), &runtime);
    ledger.post("acct-1", 100).await.unwrap();
    // The key names only the account; the amount differs.
    let result = ledger.post("acct-1", 999).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyConflict { .. }),
        "{result:?}"
    );
    assert_eq!(ledger.inner().calls(), 1);
}

#[tokio::test]
async fn retryable_failures_are_not_recorded() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(Script::new([Step::Fail(503)], Step::Ok), &runtime);
    assert!(ledger.post("acct-1", 100).await.is_err());
    assert_eq!(ledger.post("acct-1", 100).await.unwrap(), 2, "tried again");
    assert_eq!(ledger.inner().calls(), 2);
}

#[tokio::test]
async fn permanent_failures_are_replayed_unless_the_policy_says_not_to() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(
        Script::new([Step::Fail(422), Step::Fail(422)], Step::Ok),
        &runtime,
    );
    assert!(
        matches!(ledger.post("acct-1", 1).await, Err(VendorError::Status(s)) if s.as_u16() == 422)
    );
    let replayed = ledger.post("acct-1", 1).await;
    assert!(
        matches!(seawall_error(&replayed), Error::Replayed { class: ErrorClass::Permanent, message }
            if message.contains("422")),
        "{replayed:?}"
    );
    assert_eq!(ledger.inner().calls(), 1);

    assert!(ledger.post_forgetful("acct-1").await.is_err());
    assert_eq!(
        ledger.post_forgetful("acct-1").await.unwrap(),
        3,
        "not replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_in_flight_can_be_rejected_instead_of_waiting() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(
        Script::always(Step::Slow(Duration::from_millis(100))),
        &runtime,
    );
    let (first, second) = tokio::join!(ledger.post_once("acct-1"), ledger.post_once("acct-1"));
    assert_eq!(first.unwrap(), 1);
    assert!(
        matches!(seawall_error(&second), Error::IdempotencyInFlight { .. }),
        "{second:?}"
    );
    assert_eq!(ledger.inner().calls(), 1);
}

#[tokio::test]
async fn a_record_expires_after_its_retention() {
    let runtime = Runtime::in_memory();
    let ledger = Resilient::new(Script::always(Step::Ok), &runtime);
    ledger.post_briefly("acct-1").await.unwrap();
    ledger.post_briefly("acct-1").await.unwrap();
    assert_eq!(ledger.inner().calls(), 1);
    // The retention is measured on the wall clock, which a restarted
    // process shares: this test waits it out.
    tokio::time::sleep(Duration::from_millis(80)).await;
    ledger.post_briefly("acct-1").await.unwrap();
    assert_eq!(ledger.inner().calls(), 2);
}

#[tokio::test]
async fn a_restarted_runtime_on_the_same_directory_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        let ledger = Resilient::new(Script::always(Step::Ok), &runtime);
        assert_eq!(ledger.post("acct-1", 100).await.unwrap(), 1);
    }
    // A new process, as far as seawall can tell: a new runtime, a new
    // adapter, the same directory.
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let ledger = Resilient::new(Script::always(Step::Ok), &runtime);
    assert_eq!(
        ledger.post("acct-1", 100).await.unwrap(),
        1,
        "the recorded answer"
    );
    assert_eq!(ledger.inner().calls(), 0, "the vendor was not called again");
    let result = ledger.post("acct-1", 5).await;
    assert!(matches!(
        seawall_error(&result),
        Error::IdempotencyConflict { .. }
    ));
}

// A hundred identical calls at once against a real vendor on loopback.

#[contract(name = "payments")]
pub trait Payments {
    #[integration(
        write,
        timeout = "5s",
        retry(attempts = 3, base = "10ms", cap = "50ms"),
        idempotent(store)
    )]
    async fn charge(&self, customer: &str, cents: u64) -> Result<u64, VendorError>;
}

struct PaymentsHttp {
    http: seawall::http::Client,
    url: String,
    seen: Arc<AtomicUsize>,
}

impl Payments for PaymentsHttp {
    async fn charge(&self, _customer: &str, cents: u64) -> Result<u64, VendorError> {
        let response = self
            .http
            .post(&self.url)
            .send()
            .await
            .map_err(|_| VendorError::status(503))?;
        if !response.status().is_success() {
            return Err(VendorError::Status(response.status()));
        }
        Ok(cents)
    }
}

async fn charges(State(seen): State<Arc<AtomicUsize>>) -> &'static str {
    seen.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_identical_calls_make_one_vendor_call() {
    let seen = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/charges", post(charges))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/charges", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = seawall::http::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let runtime = Runtime::in_memory();
    let payments = Arc::new(Resilient::new(
        PaymentsHttp {
            http,
            url,
            seen: seen.clone(),
        },
        &runtime,
    ));
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let payments = payments.clone();
            tokio::spawn(async move { payments.charge("cus_1", 700).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 700);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1, "exactly one vendor call");
    assert_eq!(payments.inner().seen.load(Ordering::SeqCst), 1);
    server.abort();
}
