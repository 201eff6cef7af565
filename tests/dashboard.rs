//! The status page (`seawall::dashboard`) served on a real loopback socket
//! and read with reqwest: its JSON, its event stream, its page, and the
//! operator actions behind the authorisation hook.

#![cfg(feature = "dashboard")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use seawall::dashboard::{self, Dashboard};
use seawall::wal::{Ticket, TicketStatus};
use seawall::{BreakerState, Classify, Delivery, ErrorClass, Resilient, Runtime, contract};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
enum VendorError {
    #[error("the vendor is down")]
    Down,
    #[error("the vendor refused the note for good")]
    Refused,
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        match self {
            VendorError::Down => ErrorClass::Retryable,
            VendorError::Refused => ErrorClass::Permanent,
            VendorError::Seawall(error) => error.class(),
        }
    }
}

#[contract(name = "crm")]
trait Crm {
    #[integration(
        read,
        timeout = "1s",
        breaker(window = 10, min_calls = 4, open_for = "30s")
    )]
    async fn account(&self, id: &str) -> Result<String, VendorError>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn add_note(&self, id: &str, note: &str) -> Result<Delivery<()>, VendorError>;
}

#[derive(Clone, Default)]
struct Vendor {
    down: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
}

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, VendorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(VendorError::Down);
        }
        Ok(format!("account {id}"))
    }

    async fn add_note(&self, _id: &str, _note: &str) -> Result<Delivery<()>, VendorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(VendorError::Down);
        }
        if self.refuse.load(Ordering::SeqCst) {
            return Err(VendorError::Refused);
        }
        Ok(Delivery::Done(()))
    }
}

struct Setup {
    runtime: Runtime,
    vendor: Vendor,
    crm: Resilient<Vendor>,
}

/// A runtime with a called `crm.account` (and so its breaker).
async fn setup() -> Setup {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let crm = Resilient::new(vendor.clone(), &runtime);
    crm.account("1").await.expect("the vendor is up");
    Setup {
        runtime,
        vendor,
        crm,
    }
}

impl Setup {
    /// A note the vendor refuses for good, kept as a dead letter; its
    /// ticket.
    async fn dead_letter(&self) -> Ticket {
        self.vendor.down.store(true, Ordering::SeqCst);
        self.vendor.refuse.store(true, Ordering::SeqCst);
        let Delivery::Queued(ticket) = self.crm.add_note("1", "a note").await.expect("queued")
        else {
            panic!("the vendor is down: the note is queued");
        };
        self.vendor.down.store(false, Ordering::SeqCst);
        let settled = self.runtime.write_ahead_log().settled(ticket).await;
        assert!(
            matches!(settled, Ok(Some(TicketStatus::Dead { .. }))),
            "{settled:?}"
        );
        self.vendor.refuse.store(false, Ordering::SeqCst);
        ticket
    }
}

/// Serves `router` on 127.0.0.1; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/status.json"))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

fn breaker<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["breakers"]
        .as_array()
        .expect("a list of breakers")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no breaker {name} in {status}"))
}

async fn post(base: &str, path: &str, body: Value, operator: bool) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if operator {
        request = request.header("x-operator", "alice");
    }
    let response = request.send().await.expect("answered");
    let code = response.status().as_u16();
    (code, response.json().await.expect("a JSON answer"))
}

/// Every action, for a breaker and a dead letter.
fn actions(ticket: Ticket) -> Vec<(String, Value)> {
    vec![
        (
            "/actions/breakers/crm.account/hold".into(),
            json!({"seconds": 60}),
        ),
        ("/actions/breakers/crm.account/reset".into(), json!({})),
        (
            format!("/actions/dead-letters/{}/retry", ticket.0),
            json!({}),
        ),
        (
            format!("/actions/dead-letters/{}/purge", ticket.0),
            json!({}),
        ),
    ]
}

#[tokio::test]
async fn status_json_holds_health_breakers_dead_letters_history_and_alerts() {
    let setup = setup().await;
    let router = Dashboard::new(&setup.runtime)
        .sample_every(Duration::from_millis(20))
        .router();
    let base = serve(router).await;
    // After the dashboard is made, so that its alerts show it.
    let ticket = setup.dead_letter().await;
    // Two samples at least, so the history has a difference to show.
    let mut status = status(&base).await;
    while status["history"]["samples"].as_array().map_or(0, Vec::len) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = self::status(&base).await;
    }
    assert_eq!(status["actions"], false, "no hook: no actions");
    assert_eq!(status["readiness"]["ready"], true);
    assert!(
        status["readiness"]["blocking"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(status["readiness"]["degraded"].is_array());
    assert!(status["at_ms"].as_u64().is_some());
    let endpoints = status["health"]["endpoints"].as_array().expect("endpoints");
    let account = endpoints
        .iter()
        .find(|e| e["contract"] == "crm" && e["method"] == "account")
        .expect("crm.account");
    assert_eq!(account["calls"]["total"], 1);
    assert!(account["latency"]["p99_ms"].as_f64().is_some());
    assert!(status["health"]["queues"].is_array());
    assert!(status["health"]["limiters"].is_array());
    assert!(status["health"]["bulkheads"].is_array());
    assert_eq!(status["health"]["quarantined"], 0);

    let crm_account = breaker(&status, "crm.account");
    assert_eq!(crm_account["state"], "closed");
    assert_eq!(crm_account["calls"], 1);
    assert_eq!(crm_account["retry_in_ms"], Value::Null);
    assert!(crm_account.get("failure_rate").is_some());

    let letters = status["dead_letters"].as_array().expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["ticket"], ticket.0);
    assert_eq!(letters[0]["contract"], "crm");
    assert_eq!(letters[0]["method"], "add_note");
    assert_eq!(letters[0]["error"], "the vendor refused the note for good");
    assert!(letters[0].get("arguments").is_none(), "never the arguments");

    assert_eq!(status["history"]["every_ms"], 20);
    let sample = &status["history"]["samples"][0];
    assert!(sample["seq"].as_u64().is_some() && sample["at_ms"].as_u64().is_some());
    let point = sample["endpoints"]
        .as_array()
        .expect("points")
        .iter()
        .find(|p| p["endpoint"] == "crm.account")
        .expect("crm.account sampled");
    for field in ["calls", "failed", "attempts", "failed_attempts"] {
        assert!(point[field].as_u64().is_some(), "{field} in {point}");
    }
    let alerts = status["alerts"].as_array().expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "dead_letter" && a["subject"] == "crm.add_note"),
        "the dead letter is an alert: {alerts:?}"
    );
}

#[tokio::test]
async fn health_json_is_the_runtimes_health_alone() {
    let setup = setup().await;
    let base = serve(dashboard::router(&setup.runtime)).await;
    let served: Value = reqwest::get(format!("{base}/health.json"))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    // Through text, as the served JSON came: serde_json's parser does not
    // round-trip every float to the last bit (0.003855 may read back as
    // 0.0038550000000000004), so both sides are parsed by it.
    let expected: Value =
        serde_json::from_str(&serde_json::to_string(&setup.runtime.health()).unwrap()).unwrap();
    assert_eq!(served["endpoints"], expected["endpoints"]);
    assert_eq!(served["queues"], expected["queues"]);
    assert!(served.get("breakers").is_none(), "only the health");
}

#[tokio::test]
async fn the_history_counts_calls_and_failures_per_sample() {
    let setup = setup().await;
    let router = Dashboard::new(&setup.runtime)
        .sample_every(Duration::from_millis(20))
        .router();
    let base = serve(router).await;
    setup.vendor.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = setup.crm.account("1").await;
    }
    // Every sample after the calls: their differences add up to them.
    let mut totals = (0, 0);
    for _ in 0..200 {
        let status = status(&base).await;
        totals = status["history"]["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["endpoint"] == "crm.account")
            .fold((0, 0), |(calls, failed), p| {
                (
                    calls + p["calls"].as_u64().unwrap_or(0),
                    failed + p["failed"].as_u64().unwrap_or(0),
                )
            });
        if totals == (4, 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(totals, (4, 3), "4 calls, the last 3 failed");
}

#[tokio::test]
async fn the_page_is_one_self_contained_html_document() {
    let setup = setup().await;
    let base = serve(dashboard::router(&setup.runtime)).await;
    let response = reqwest::get(format!("{base}/")).await.expect("answered");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let page = response.text().await.expect("the page");
    assert!(page.starts_with("<!doctype html>"));
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!page.contains(external), "an external asset: {external}");
    }
    assert!(
        !page.contains("innerHTML") && !page.contains("insertAdjacentHTML"),
        "names and messages go through textContent"
    );
    assert!(page.contains("new EventSource"));
}

/// Reads the event stream until an event satisfies `until`; that event.
async fn next_status(
    response: &mut reqwest::Response,
    buffer: &mut String,
    until: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            assert!(event.starts_with("event: status\n"), "{event}");
            let data: String = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            let status: Value = serde_json::from_str(&data).expect("JSON data");
            if until(&status) {
                return status;
            }
        }
        let chunk = response
            .chunk()
            .await
            .expect("the stream goes on")
            .expect("not ended");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
}

#[tokio::test]
async fn the_event_stream_delivers_each_change() {
    let setup = setup().await;
    let router = Dashboard::new(&setup.runtime)
        .sample_every(Duration::from_millis(20))
        .router();
    let base = serve(router).await;
    // Let the history grow, so the first event has more than one sample.
    while status(&base).await["history"]["samples"]
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut response = reqwest::get(format!("{base}/events"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let first = next_status(&mut response, &mut buffer, |_| true).await;
    assert!(
        first["history"]["samples"].as_array().unwrap().len() >= 3,
        "the first event holds the whole history"
    );
    assert_eq!(breaker(&first, "crm.account")["state"], "closed");

    setup
        .runtime
        .breaker("crm.account")
        .expect("the breaker")
        .force_open();
    let open = next_status(&mut response, &mut buffer, |s| {
        breaker(s, "crm.account")["state"] == "forced_open"
    })
    .await;
    assert_eq!(
        open["history"]["samples"].as_array().unwrap().len(),
        1,
        "later events hold the newest sample only"
    );
    setup.runtime.breaker("crm.account").unwrap().reset();
    let closed = next_status(&mut response, &mut buffer, |s| {
        breaker(s, "crm.account")["state"] == "closed"
    })
    .await;
    let alerts = closed["alerts"].as_array().expect("alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "breaker" && a["subject"] == "crm.account"),
        "the transitions are alerts: {alerts:?}"
    );
}

#[tokio::test]
async fn actions_are_refused_without_an_authorisation_hook() {
    let setup = setup().await;
    let ticket = setup.dead_letter().await;
    let base = serve(dashboard::router(&setup.runtime)).await;
    for (path, body) in actions(ticket) {
        let (code, answer) = post(&base, &path, body, true).await;
        assert_eq!(code, 403, "{path}: {answer}");
        assert_eq!(answer["ok"], false);
    }
    let breaker = setup.runtime.breaker("crm.account").unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed, "not held open");
    let wal = setup.runtime.write_ahead_log();
    assert!(
        wal.dead_letter(ticket).await.unwrap().is_some(),
        "neither retried nor purged"
    );
}

#[tokio::test]
async fn actions_are_refused_when_the_hook_says_no() {
    let setup = setup().await;
    let ticket = setup.dead_letter().await;
    let router = Dashboard::new(&setup.runtime)
        .authorize(|request| {
            request
                .headers
                .get("x-operator")
                .is_some_and(|v| v == "alice")
        })
        .router();
    let base = serve(router).await;
    assert_eq!(status(&base).await["actions"], true);
    for (path, body) in actions(ticket) {
        let (code, answer) = post(&base, &path, body, false).await;
        assert_eq!(code, 403, "{path}: {answer}");
    }
    assert_eq!(
        setup.runtime.breaker("crm.account").unwrap().state(),
        BreakerState::Closed
    );
    assert!(
        setup
            .runtime
            .write_ahead_log()
            .dead_letter(ticket)
            .await
            .unwrap()
            .is_some()
    );
}

fn operators(runtime: &Runtime) -> axum::Router {
    Dashboard::new(runtime)
        .authorize(|request| {
            request
                .headers
                .get("x-operator")
                .is_some_and(|v| v == "alice")
        })
        .router()
}

#[tokio::test]
async fn an_approved_operator_holds_a_breaker_open_then_resets_it() {
    let setup = setup().await;
    let base = serve(operators(&setup.runtime)).await;
    let breaker = setup.runtime.breaker("crm.account").unwrap();

    let (code, answer) = post(
        &base,
        "/actions/breakers/crm.account/hold",
        json!({"seconds": 60}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(breaker.state(), BreakerState::Open);
    let retry_in = breaker.retry_in().expect("open for the hold");
    assert!(
        // The breaker keeps time in whole milliseconds.
        retry_in > Duration::from_secs(59) && retry_in <= Duration::from_millis(60_001),
        "{retry_in:?}"
    );
    let shown = status(&base).await;
    let shown = breaker_json(&shown);
    assert_eq!(shown["state"], "open");
    assert!(shown["retry_in_ms"].as_u64().unwrap() > 59_000);
    assert!(
        setup.crm.account("1").await.is_err(),
        "calls are turned away"
    );

    let (code, answer) = post(
        &base,
        "/actions/breakers/crm.account/reset",
        json!({}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(
        setup.crm.account("1").await.is_ok(),
        "calls go through again"
    );

    let alerts = status(&base).await["alerts"].clone();
    let operator: Vec<_> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "operator")
        .collect();
    assert_eq!(operator.len(), 2, "each action is an alert: {alerts}");
}

fn breaker_json(status: &Value) -> Value {
    breaker(status, "crm.account").clone()
}

#[tokio::test]
async fn actions_check_their_input() {
    let setup = setup().await;
    let base = serve(operators(&setup.runtime)).await;
    let hold = "/actions/breakers/crm.account/hold";
    for seconds in [0, 86_401] {
        let (code, _) = post(&base, hold, json!({ "seconds": seconds }), true).await;
        assert_eq!(code, 422, "a hold of {seconds} s");
    }
    let (code, _) = post(&base, "/actions/breakers/nope/reset", json!({}), true).await;
    assert_eq!(code, 404, "an unknown breaker");
    let (code, _) = post(&base, "/actions/dead-letters/999/purge", json!({}), true).await;
    assert_eq!(code, 404, "an unknown ticket");
    let (code, _) = post(&base, "/actions/dead-letters/x/retry", json!({}), true).await;
    assert_eq!(code, 400, "not a ticket");
    // A form (what a page elsewhere could make a browser send) is refused.
    let response = reqwest::Client::new()
        .post(format!("{base}{hold}"))
        .header("x-operator", "alice")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("seconds=60")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(
        setup.runtime.breaker("crm.account").unwrap().state(),
        BreakerState::Closed
    );
}

#[tokio::test]
async fn an_approved_operator_retries_a_dead_letter_and_purges_another() {
    let setup = setup().await;
    let retried = setup.dead_letter().await;
    let purged = setup.dead_letter().await;
    let base = serve(operators(&setup.runtime)).await;
    let wal = setup.runtime.write_ahead_log();

    let (code, answer) = post(
        &base,
        &format!("/actions/dead-letters/{}/retry", retried.0),
        json!({}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let queued = Ticket(answer["ticket"].as_u64().expect("the new ticket"));
    assert!(
        matches!(
            wal.settled(queued).await,
            Ok(Some(TicketStatus::Delivered { .. }))
        ),
        "the vendor takes it now"
    );
    assert!(wal.dead_letter(retried).await.unwrap().is_none());

    let path = format!("/actions/dead-letters/{}/purge", purged.0);
    let (code, answer) = post(&base, &path, json!({}), true).await;
    assert_eq!(code, 200, "{answer}");
    assert!(
        wal.dead_letter(purged).await.unwrap().is_none(),
        "forgotten"
    );
    assert_eq!(wal.dead_count("crm"), 0);
    let (code, _) = post(&base, &path, json!({}), true).await;
    assert_eq!(code, 404, "purged once only");
    assert!(
        status(&base).await["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// What a `tracing` subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the server's tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn every_action_is_logged_done_or_refused() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_target(true)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let setup = setup().await;
    let base = serve(operators(&setup.runtime)).await;
    let reset = "/actions/breakers/crm.account/reset";
    let (code, _) = post(&base, reset, json!({}), false).await;
    assert_eq!(code, 403);
    let (code, _) = post(&base, reset, json!({}), true).await;
    assert_eq!(code, 200);
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("seawall::dashboard"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("refused by the authorisation hook"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("INFO")
            && lines[1].contains("action=\"reset\"")
            && lines[1].contains("crm.account"),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn a_refused_reload_is_an_alert_and_degrades_readiness_until_one_applies() {
    let setup = setup().await;
    let base = serve(dashboard::router(&setup.runtime)).await;
    let reload = |target: &str, key: &str, value: &str| {
        let mut overrides = seawall::overrides::Overrides::new();
        overrides.set(target, key, value).expect("a valid override");
        setup.runtime.reload_with(overrides)
    };
    // The method declares no rate limiter: an override does not add one.
    reload("crm.account", "rate.limit", "10/1s").expect_err("refused");
    let refused = status(&base).await;
    let alerts = refused["alerts"].as_array().expect("alerts");
    let alert = alerts
        .iter()
        .find(|a| a["kind"] == "overrides" && a["subject"] == "reload")
        .unwrap_or_else(|| panic!("the refused reload is an alert: {alerts:?}"));
    let message = alert["message"].as_str().expect("a message");
    assert!(
        message.starts_with("reload refused, nothing changed") && message.contains("crm.account"),
        "{message}"
    );
    assert_eq!(refused["readiness"]["ready"], true, "degraded, not blocked");
    let degraded = refused["readiness"]["degraded"].to_string();
    assert!(
        degraded.contains("reload of the overrides was refused"),
        "{degraded}"
    );
    assert_eq!(refused["health"]["last_reload"]["applied"], false);

    reload("crm.account", "timeout", "2s").expect("a valid reload");
    let applied = status(&base).await;
    assert_eq!(applied["health"]["last_reload"]["applied"], true);
    let degraded = applied["readiness"]["degraded"].to_string();
    assert!(!degraded.contains("reload"), "{degraded}");
    let alerts = applied["alerts"].as_array().expect("alerts");
    assert!(
        alerts.iter().any(|a| a["kind"] == "overrides"
            && a["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reloaded; 1 method(s) changed"))),
        "the applied reload is an alert too: {alerts:?}"
    );
}
