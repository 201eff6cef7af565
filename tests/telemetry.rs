//! Telemetry: the health snapshot, metrics through the `metrics` facade,
//! error-rate change alerts, and what spans and events carry (and never
//! carry).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::telemetry::ChangeDetector;
use seawall::{Cached, Delivery, Event, Resilient, Runtime, contract};
use support::{Script, Step, VendorError};

#[contract(name = "crm")]
pub trait Crm {
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 2, base = "10ms", jitter = "none"),
        breaker(window = 100, min_calls = 100)
    )]
    async fn account(&self, id: u32) -> Result<String, VendorError>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn card(&self, id: u32) -> Result<Cached<String>, VendorError>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn note(&self, id: u32) -> Result<Delivery<()>, VendorError>;
}

impl Crm for Script {
    async fn account(&self, id: u32) -> Result<String, VendorError> {
        self.play().await?;
        Ok(format!("account {id}"))
    }

    async fn card(&self, id: u32) -> Result<Cached<String>, VendorError> {
        self.play().await?;
        Ok(format!("card {id}").into())
    }

    async fn note(&self, _id: u32) -> Result<Delivery<()>, VendorError> {
        self.play().await?;
        Ok(().into())
    }
}

fn endpoint<'a>(
    health: &'a seawall::telemetry::Health,
    method: &str,
) -> &'a seawall::telemetry::EndpointHealth {
    health
        .endpoints
        .iter()
        .find(|e| e.contract == "crm" && e.method == method)
        .unwrap_or_else(|| panic!("no endpoint crm.{method} in {health:?}"))
}

#[tokio::test(start_paused = true)]
async fn health_counts_attempts_by_outcome_and_calls_the_breaker_turned_away() {
    let runtime = Runtime::in_memory();
    let script = Script::new(
        [Step::Ok, Step::Fail(503), Step::Ok, Step::Fail(422)],
        Step::Ok,
    );
    let crm = Resilient::new(script, &runtime);
    crm.account(1).await.unwrap(); // success
    crm.account(2).await.unwrap(); // 503, then success on the retry
    crm.account(3).await.unwrap_err(); // 422: permanent, not retried
    let health = runtime.health();
    let account = endpoint(&health, "account");
    assert_eq!(account.attempts.total, 4);
    assert_eq!(account.attempts.success, 2);
    assert_eq!(account.attempts.retryable, 1);
    assert_eq!(account.attempts.permanent, 1);
    assert_eq!((account.calls.total, account.calls.ok), (3, 2));
    assert_eq!((account.calls.error, account.calls.rejected), (1, 0));
    assert_eq!(account.error_rate, Some(0.5));
    assert_eq!(account.error_rates.as_ref().unwrap().retryable, 0.25);
    assert_eq!(account.latency.count, 4);
    assert_eq!(
        account.breaker,
        Some(seawall::BreakerState::Closed),
        "{account:?}"
    );

    runtime.breaker("crm.account").unwrap().force_open();
    crm.account(4).await.unwrap_err();
    let health = runtime.health();
    let account = endpoint(&health, "account");
    assert_eq!((account.calls.total, account.calls.rejected), (4, 1));
    assert_eq!(account.turned_away, 1);
    assert_eq!(
        account.attempts.total, 4,
        "a rejected call never reached the vendor"
    );
}

#[tokio::test(start_paused = true)]
async fn health_counts_calls_by_how_they_ended_for_the_caller() {
    let runtime = Runtime::in_memory();
    let script = Script::new(
        [
            Step::Ok,                           // card 1: ok
            Step::Fail(503),                    // card 1: stale
            Step::Fail(503),                    // card 2: nothing cached
            Step::Slow(Duration::from_secs(5)), // card 3: cancelled
            Step::Fail(503),                    // note 1: queued
        ],
        Step::Ok,
    );
    let crm = Resilient::new(script, &runtime);
    crm.card(1).await.unwrap();
    assert!(crm.card(1).await.unwrap().is_stale());
    crm.card(2).await.unwrap_err();
    tokio::time::timeout(Duration::from_millis(100), crm.card(3))
        .await
        .expect_err("the caller gave up first");
    assert!(crm.note(1).await.unwrap().is_queued());
    // Queued behind the first, without a call to the vendor.
    assert!(crm.note(2).await.unwrap().is_queued());

    let health = runtime.health();
    let card = endpoint(&health, "card");
    assert!(card.called);
    let calls = &card.calls;
    assert_eq!(
        (
            calls.total,
            calls.ok,
            calls.stale,
            calls.error,
            calls.cancelled
        ),
        (4, 1, 1, 1, 1),
        "{card:?}"
    );
    assert_eq!(card.attempts.total, 3, "the cancelled attempt is not one");
    assert_eq!(card.turned_away, 0, "card has no breaker");
    let note = endpoint(&health, "note");
    assert_eq!((note.calls.total, note.calls.queued), (2, 2), "{note:?}");
    assert_eq!(note.attempts.total, 1);

    // Never called: marked, and no rate or percentile made of nothing.
    let account = endpoint(&health, "account");
    assert!(!account.called, "{account:?}");
    assert_eq!(account.calls.total, 0);
    assert_eq!(account.error_rate, None);
    assert!(account.error_rates.is_none());
    assert_eq!(account.latency.p50_ms, None);
    let json = serde_json::to_value(&health).unwrap();
    let never = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "account")
        .unwrap();
    assert_eq!(never["called"], false);
    assert!(never["error_rate"].is_null());
}

#[tokio::test]
async fn health_reports_latency_percentiles_of_the_attempts() {
    let runtime = Runtime::in_memory();
    // 19 fast answers and one that takes 60 ms (real time: latency is
    // measured with a real clock).
    let mut steps = vec![Step::Ok; 19];
    steps.push(Step::Slow(Duration::from_millis(60)));
    let crm = Resilient::new(Script::new(steps, Step::Ok), &runtime);
    for id in 0..20 {
        crm.account(id).await.unwrap();
    }
    let health = runtime.health();
    let latency = &endpoint(&health, "account").latency;
    assert_eq!(latency.count, 20);
    let p50 = latency.p50_ms.unwrap();
    let max = latency.max_ms.unwrap();
    assert!(p50 < 20.0, "{latency:?}");
    assert!((60.0..1000.0).contains(&max), "{latency:?}");
    assert_eq!(latency.p99_ms, Some(max), "{latency:?}");
}

#[tokio::test(start_paused = true)]
async fn health_shows_stale_serves_queued_writes_and_the_queue() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Ok], Step::Fail(503));
    let crm = Resilient::new(script, &runtime);
    crm.card(1).await.unwrap();
    assert!(crm.card(1).await.unwrap().is_stale());
    crm.card(2).await.unwrap_err(); // nothing cached for 2
    assert!(crm.note(1).await.unwrap().is_queued());

    let health = runtime.health();
    let card = endpoint(&health, "card");
    assert_eq!(card.stale_serves, 1);
    assert_eq!(card.cache_misses, 1);
    assert_eq!(endpoint(&health, "note").queued, 1);
    let queue = health.queues.iter().find(|q| q.contract == "crm").unwrap();
    assert_eq!(queue.pending, 1);
    assert_eq!(queue.dead_letters, 0);

    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["queues"][0]["pending"], 1);
    let card = json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "card")
        .unwrap();
    assert!(card["latency"]["p50_ms"].is_number(), "{card}");
    assert_eq!(card["stale_serves"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_jump_in_an_endpoints_error_rate_raises_one_alert() {
    let runtime = Runtime::builder()
        .change_detector(ChangeDetector::new().with_window(100))
        .in_memory();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let seen = alerts.clone();
    runtime.subscribe(move |event| {
        if let Event::ErrorRateChanged(change) = event {
            seen.lock()
                .unwrap()
                .push((change.baseline, change.rate, change.calls));
        }
    });
    // 1 000 calls with no error, then 20 % of calls fail (permanent
    // errors, so no retry muddies the count).
    let mut steps = vec![Step::Ok; 1000];
    for n in 0..1000 {
        steps.push(if n % 5 == 0 {
            Step::Fail(422)
        } else {
            Step::Ok
        });
    }
    let crm = Resilient::new(Script::new(steps, Step::Ok), &runtime);
    for id in 0..1000 {
        crm.account(id).await.unwrap();
    }
    assert!(alerts.lock().unwrap().is_empty());
    for id in 0..1000 {
        let _ = crm.account(id).await;
    }
    let alerts = alerts.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "one alert per change: {alerts:?}");
    let (baseline, rate, calls) = alerts[0];
    assert_eq!(baseline, 0.0);
    assert!((rate - 0.2).abs() < 0.02, "{rate}");
    assert_eq!(calls, 100);
    assert_eq!(endpoint(&runtime.health(), "account").rate_alerts, 1);
}

#[test]
fn metrics_go_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tokio.block_on(async {
            let runtime = Runtime::in_memory();
            let script = Script::new([Step::Ok, Step::Fail(503), Step::Ok], Step::Ok);
            let crm = Resilient::new(script, &runtime);
            crm.account(1).await.unwrap();
            crm.account(2).await.unwrap();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, outcome: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "outcome" && l.value() == outcome)
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "method" && l.value() == "account")
            })
            .map(|(_, _, _, value)| value)
    };
    let attempts = |outcome| counter("seawall_attempts_total", outcome);
    let calls = |outcome| counter("seawall_calls_total", outcome);
    assert_eq!(attempts("success"), Some(&DebugValue::Counter(2)));
    assert_eq!(attempts("retryable"), Some(&DebugValue::Counter(1)));
    assert_eq!(calls("ok"), Some(&DebugValue::Counter(2)));
    assert_eq!(calls("error"), Some(&DebugValue::Counter(0)));
    assert_eq!(calls("fallback"), None, "registered on first use");
    // Each method has only the series its policy can move.
    let has = |name: &str, method: &str| {
        snapshot.iter().any(|(key, _, _, _)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "method" && l.value() == method)
        })
    };
    let has_outcome = |name: &str, method: &str, outcome: &str| {
        snapshot.iter().any(|(key, _, _, _)| {
            let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
            key.key().name() == name
                && labels.contains(&("method", method))
                && labels.contains(&("outcome", outcome))
        })
    };
    assert!(has_outcome("seawall_calls_total", "account", "rejected"));
    assert!(!has_outcome("seawall_calls_total", "card", "rejected"));
    assert!(has_outcome("seawall_calls_total", "card", "stale"));
    assert!(!has_outcome("seawall_calls_total", "account", "stale"));
    assert!(has_outcome("seawall_calls_total", "note", "queued"));
    assert!(!has_outcome("seawall_calls_total", "card", "queued"));
    assert!(has("seawall_cache_stale_total", "card"));
    assert!(!has("seawall_cache_stale_total", "account"));
    assert!(has("seawall_queued_total", "note"));
    assert!(!has("seawall_queued_total", "card"));
    assert!(has("seawall_retry_budget_exhausted_total", "account"));
    assert!(!has("seawall_retry_budget_exhausted_total", "card"));
    assert_eq!(
        calls("rejected"),
        Some(&DebugValue::Counter(0)),
        "account has a breaker"
    );
    let histogram = snapshot
        .iter()
        .find(|(key, _, _, _)| key.key().name() == "seawall_call_duration_seconds")
        .map(|(_, _, _, value)| value);
    assert!(
        matches!(histogram, Some(DebugValue::Histogram(v)) if v.len() == 3),
        "{histogram:?}"
    );
}

/// Calls `method` of `crm` `calls` times from each of `threads` OS
/// threads, each with a runtime of its own.
fn from_threads<F, Fut>(threads: usize, calls: u32, call: F)
where
    F: Fn(u32) -> Fut + Sync,
    Fut: std::future::Future,
{
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let tokio = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                tokio.block_on(async {
                    for id in 0..calls {
                        call(id).await;
                    }
                });
            });
        }
    });
}

/// Each thread counts in a row of its own (the first few) or a shared one
/// (the rest): 24 threads are more than there are rows to own, and no call
/// may go uncounted either way; the detector's windows, filled from every
/// row, still alert once on a change.
#[test]
fn calls_from_more_threads_than_rows_are_all_counted_and_still_alert_once() {
    let runtime = Runtime::builder()
        .change_detector(ChangeDetector::new().with_window(100).with_warmup(3))
        .in_memory();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let seen = alerts.clone();
    runtime.subscribe(move |event| {
        if let Event::ErrorRateChanged(change) = event {
            seen.lock().unwrap().push((change.rate, change.calls));
        }
    });
    // Two wrappers of the same method share its counters.
    let good = Resilient::new(Script::always(Step::Ok), &runtime);
    let bad = Resilient::new(Script::always(Step::Fail(422)), &runtime);
    from_threads(24, 200, |id| {
        let good = &good;
        async move { good.card(id).await.unwrap() }
    });
    let card = endpoint(&runtime.health(), "card").clone();
    assert_eq!(card.attempts.total, 4_800);
    assert_eq!(card.attempts.success, 4_800);
    assert_eq!(card.latency.count, 4_800);
    assert!(card.latency.p99_ms.is_some());
    assert!(alerts.lock().unwrap().is_empty(), "no errors, no alert");

    from_threads(24, 100, |id| {
        let bad = &bad;
        // Ids never read before: no stale answer to fall back on.
        async move { bad.card(1_000 + id).await.unwrap_err() }
    });
    let card = endpoint(&runtime.health(), "card").clone();
    assert_eq!(card.attempts.total, 7_200);
    assert_eq!(card.attempts.permanent, 2_400);
    let alerts = alerts.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "one alert per change: {alerts:?}");
    let (rate, calls) = alerts[0];
    // Above the threshold (a baseline of 0 and a rise of 1 point); the
    // window that alerted may begin with successes of the first phase (a
    // window not yet full, and up to 3 calls per row not yet moved).
    assert!(rate > 0.01, "{rate}");
    // A window holds its 100 calls, and at most what the shared row
    // brought in with its last batch.
    assert!((100..200).contains(&calls), "{calls}");
}
