//! Overrides reloaded while the service runs: `Runtime::reload_with`,
//! `Runtime::reload` (the file read again) and `watch_overrides`. A reload
//! applies to calls that start after it, never to one under way; one error
//! anywhere changes nothing and is reported (error, event, health,
//! readiness); breakers, limiters and bulkheads keep their state. Paused
//! clock, except where a file is watched or calls race a reload.
#![cfg(feature = "overrides")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::overrides::{Overrides, ReloadStatus};
use seawall::{BreakerState, Error, Event, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};

const SECOND: Duration = Duration::from_secs(1);

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn contact(&self) -> Result<usize, VendorError>;

    #[integration(write, timeout = "1s")]
    async fn note(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        breaker(failure_rate = 1.0, window = 2, min_calls = 2, open_for = "10s")
    )]
    async fn guarded(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s", rate(limit = "1/10s", max_wait = "0s"))]
    async fn paced(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "5s", bulkhead(max = 1, queue = 0))]
    async fn narrow(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "2s", hedge(after = "50ms"))]
    async fn hedged(&self) -> Result<usize, VendorError>;
}

impl Crm for Script {
    async fn account(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn contact(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn note(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn guarded(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn paced(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn narrow(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn hedged(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

fn overrides(values: &[(&str, &str, &str)]) -> Overrides {
    let mut overrides = Overrides::new();
    for (target, key, value) in values {
        overrides.set(target, key, value).expect("a valid override");
    }
    overrides
}

fn timed_out<T: std::fmt::Debug>(result: &Result<T, VendorError>) -> bool {
    matches!(seawall_error(result), Error::Timeout { .. })
}

/// Every reload event the runtime sends.
fn reloads(runtime: &Runtime) -> Arc<Mutex<Vec<ReloadStatus>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    runtime.subscribe(move |event| {
        if let Event::OverridesReloaded(status) = event {
            sink.lock().unwrap().push(status.clone());
        }
    });
    seen
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_to_the_next_call_and_a_call_under_way_keeps_its_policy() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 3)), &runtime);
    assert!(timed_out(&vendor.account().await), "the compiled 1 s");

    let status = runtime
        .reload_with(overrides(&[("crm.account", "timeout", "5s")]))
        .expect("a valid reload");
    assert!(status.applied);
    assert_eq!(status.changed, ["crm.account"]);
    assert_eq!(vendor.account().await.unwrap(), 2, "5 s from the reload on");
    assert!(
        timed_out(&vendor.contact().await),
        "another method keeps its own"
    );

    // A call under way with 5 s; the reload back to 1 s lands after 500 ms.
    let call = tokio::spawn({
        let vendor = vendor.clone();
        async move { vendor.account().await }
    });
    tokio::time::sleep(SECOND / 2).await;
    runtime
        .reload_with(Overrides::new())
        .expect("no overrides is valid");
    assert!(
        call.await.unwrap().is_ok(),
        "the call under way keeps the 5 s it started with"
    );
    assert!(
        timed_out(&vendor.account().await),
        "the next call has the compiled 1 s again"
    );
    assert!(
        runtime.health().overrides.is_empty(),
        "no override applies any more"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_with_any_error_changes_nothing_and_reports_every_error() {
    let runtime = Runtime::builder()
        .overrides(overrides(&[("crm.contact", "timeout", "5s")]))
        .in_memory();
    let seen = reloads(&runtime);
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 3)), &runtime);
    assert!(vendor.contact().await.is_ok(), "5 s from the start");
    assert!(vendor.note().await.is_err());
    assert!(vendor.account().await.is_err());

    let mut bad = overrides(&[
        // Valid alone: must not apply either, since the rest is refused.
        ("crm.account", "timeout", "5s"),
        // A write without a key cannot retry: the compiler's rule.
        ("crm.note", "retry.attempts", "3"),
        // The method declares no breaker: an override does not add one.
        ("crm.contact", "breaker.open_for", "1m"),
    ]);
    bad.set("crm.contact", "timeout", "500ms").unwrap();
    let refused = runtime.reload_with(bad).expect_err("two errors");
    assert_eq!(refused.errors.len(), 2, "{refused:?}");
    let text = refused.to_string();
    assert!(text.contains("crm.note"), "{text}");
    assert!(
        text.contains("idempotency key"),
        "the compiler's words: {text}"
    );
    assert!(text.contains("declares no breaker"), "{text}");

    // Nothing changed: not the valid value, not the others.
    assert!(
        timed_out(&vendor.account().await),
        "crm.account's valid 5 s did not apply"
    );
    assert!(vendor.contact().await.is_ok(), "crm.contact keeps its 5 s");
    let health = runtime.health();
    let last = health.last_reload.as_ref().expect("the reload is listed");
    assert!(!last.applied);
    assert_eq!(last.errors, refused.errors);
    assert!(last.changed.is_empty());
    assert_eq!(health.overrides.len(), 1, "{:?}", health.overrides);
    assert_eq!(health.overrides[0].applied[0].value, "5s");
    let readiness = runtime.readiness();
    assert!(
        readiness.ready,
        "a refused reload does not take the service out"
    );
    assert!(
        readiness.degraded.iter().any(|d| d.contains("reload")),
        "{readiness:?}"
    );
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert!(!events[0].applied);

    // A good reload clears it.
    runtime
        .reload_with(overrides(&[("crm.contact", "timeout", "5s")]))
        .unwrap();
    assert!(runtime.readiness().degraded.is_empty());
    assert!(runtime.health().last_reload.unwrap().applied);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_keeps_its_state_when_a_reload_changes_its_policy() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    for _ in 0..2 {
        assert!(vendor.guarded().await.is_err());
    }
    let breaker = runtime.breaker("crm.guarded").unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);

    runtime
        .reload_with(overrides(&[
            ("crm.guarded", "breaker.open_for", "2s"),
            ("crm.guarded", "breaker.min_calls", "1"),
        ]))
        .unwrap();
    assert_eq!(breaker.state(), BreakerState::Open, "still open");
    assert_eq!(breaker.policy().open_duration(0), SECOND * 2);
    assert_eq!(breaker.policy().min_calls(), 1);
    // The period under way keeps its 10 s.
    tokio::time::sleep(SECOND * 3).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "the 10 s period runs on"
    );
    assert!(matches!(
        seawall_error(&vendor.guarded().await),
        Error::BreakerOpen { .. }
    ));
    tokio::time::sleep(SECOND * 8).await;
    // The probe fails: it opens again, now for the reloaded 2 s.
    assert!(vendor.guarded().await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::sleep(SECOND * 2 + Duration::from_millis(10)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "after 2 s, not 10");
    assert!(Arc::ptr_eq(
        &breaker,
        &runtime.breaker("crm.guarded").unwrap()
    ));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiter_and_a_bulkhead_take_their_new_sizes_in_place() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    assert!(vendor.paced().await.is_ok());
    assert!(matches!(
        seawall_error(&vendor.paced().await),
        Error::RateLimited { .. }
    ));

    let slow = Resilient::new(Script::always(Step::Slow(SECOND)), &runtime);
    let first = tokio::spawn({
        let slow = slow.clone();
        async move { slow.narrow().await }
    });
    tokio::task::yield_now().await;
    assert!(
        matches!(
            seawall_error(&slow.narrow().await),
            Error::BulkheadFull { .. }
        ),
        "one place"
    );

    runtime
        .reload_with(overrides(&[
            ("crm.paced", "rate.limit", "100/1s"),
            ("crm.paced", "rate.burst", "5"),
            ("crm.narrow", "bulkhead.max", "2"),
        ]))
        .unwrap();
    // The turn taken 10 s ahead stays taken: the limiter is the same one.
    let limiter = runtime.rate_limiter("crm.paced").unwrap();
    assert_eq!(limiter.policy().count(), 100);
    tokio::time::sleep(SECOND * 10).await;
    for _ in 0..5 {
        assert!(vendor.paced().await.is_ok(), "the new burst");
    }
    // The first call still holds its place; a second one fits now.
    assert!(slow.narrow().await.is_ok(), "two places");
    assert!(first.await.unwrap().is_ok());
    let bulkhead = runtime
        .health()
        .bulkheads
        .into_iter()
        .find(|b| b.name == "crm.narrow")
        .unwrap();
    assert_eq!(bulkhead.limit, 2);
}

#[tokio::test(start_paused = true)]
async fn a_reload_refuses_a_percentile_the_method_does_not_measure() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    assert!(vendor.hedged().await.is_ok());
    let refused = runtime
        .reload_with(overrides(&[("crm.hedged", "hedge.after", "p95")]))
        .expect_err("a percentile needs a restart");
    assert!(refused.to_string().contains("next start"), "{refused}");
    runtime
        .reload_with(overrides(&[("crm.hedged", "hedge.after", "80ms")]))
        .expect("a fixed delay changes in place");
    assert_eq!(
        runtime.health().endpoints[0].contract,
        "crm",
        "health still reads"
    );
}

#[tokio::test(start_paused = true)]
async fn methods_resolved_after_a_reload_and_wrappers_dropped_before_it_are_handled() {
    let runtime = Runtime::in_memory();
    let gone = Resilient::new(Script::always(Step::Ok), &runtime);
    assert!(gone.account().await.is_ok());
    drop(gone);
    runtime
        .reload_with(overrides(&[("crm.account", "timeout", "5s")]))
        .expect("a dropped wrapper is no error");
    // Resolved after the reload: it starts with the reloaded value.
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 3)), &runtime);
    assert!(vendor.account().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn reload_reads_the_file_again_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, "[crm.account]\ntimeout = \"5s\"\n").unwrap();
    let loaded = Overrides::load(Some(&path)).expect("a valid file");
    let runtime = Runtime::builder().overrides(loaded).in_memory();
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 3)), &runtime);
    assert!(vendor.account().await.is_ok());

    std::fs::write(&path, "[crm.account]\ntimeout = \"2s\"\n").unwrap();
    let status = runtime.reload().expect("the changed file applies");
    assert_eq!(status.changed, ["crm.account"]);
    assert!(timed_out(&vendor.account().await), "2 s now");

    for broken in [
        "[crm.account\ntimeout = ",
        "",
        "[crm.account]\ntimeout = \"soon\"\n",
    ] {
        std::fs::write(&path, broken).unwrap();
        match runtime.reload() {
            // An empty file is no overrides: valid, and back to 1 s.
            Ok(status) if broken.is_empty() => {
                assert_eq!(status.changed, ["crm.account"]);
                std::fs::write(&path, "[crm.account]\ntimeout = \"2s\"\n").unwrap();
                runtime.reload().unwrap();
            }
            Ok(status) => panic!("{broken:?} applied: {status:?}"),
            Err(refused) => {
                assert!(!refused.errors.is_empty());
                assert!(timed_out(&vendor.account().await), "still 2 s");
                vendor.inner().then([Step::Slow(SECOND * 3 / 2)]);
                assert!(vendor.account().await.is_ok(), "still 2 s, not 1 s");
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
    let refused = runtime.reload().expect_err("a file that is gone");
    assert!(
        refused.to_string().contains("seawall.toml"),
        "names the file: {refused}"
    );
}

/// Waits, on the real clock and at most 10 s, for `count` reload events.
async fn wait_for(seen: &Mutex<Vec<ReloadStatus>>, count: usize) -> Vec<ReloadStatus> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = seen.lock().unwrap().clone();
        if now.len() >= count {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} reload(s) expected within 10 s, saw {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_applies_when_it_changes_and_a_broken_one_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, "[crm.account]\ntimeout = \"5s\"\n").unwrap();
    let runtime = Runtime::builder()
        .overrides(Overrides::load(Some(&path)).unwrap())
        .in_memory();
    let seen = reloads(&runtime);
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    assert!(vendor.account().await.is_ok());
    let watch = runtime
        .watch_overrides(Duration::from_millis(20))
        .expect("a tokio runtime and a file");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "an unchanged file is not reloaded"
    );

    // Replaced the way an editor or a ConfigMap does it: a new file renamed
    // over the old one.
    let next = dir.path().join("next.toml");
    std::fs::write(&next, "[crm.account]\ntimeout = \"7s\"\n").unwrap();
    std::fs::rename(&next, &path).unwrap();
    let events = wait_for(&seen, 1).await;
    assert!(events[0].applied, "{events:?}");
    assert_eq!(effective_timeout(&runtime), Some(Duration::from_secs(7)));

    std::fs::write(&path, "[crm.account]\ntimeout = \"never\"\n").unwrap();
    let events = wait_for(&seen, 2).await;
    assert!(!events[1].applied);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the same broken file is reported once, not at every poll"
    );
    assert_eq!(
        effective_timeout(&runtime),
        Some(Duration::from_secs(7)),
        "the broken file changed nothing"
    );

    // The task ends with the runtime.
    drop(vendor);
    drop(runtime);
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("the watch ends once the runtime is gone")
        .expect("it did not panic");
}

#[test]
fn watching_needs_a_tokio_runtime_and_a_file() {
    let runtime = Runtime::builder()
        .overrides(overrides(&[("crm.account", "timeout", "5s")]))
        .in_memory();
    let error = runtime
        .watch_overrides(Duration::from_secs(1))
        .expect_err("no tokio runtime here");
    assert!(error.message.contains("tokio"), "{error}");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = tokio.enter();
    let error = runtime
        .watch_overrides(Duration::from_secs(1))
        .expect_err("set in code, not loaded from a file");
    assert!(error.message.contains("file"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_reloads_each_see_one_whole_policy() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    assert!(vendor.account().await.is_ok());
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let vendor = vendor.clone();
            tokio::spawn(async move {
                for _ in 0..20_000 {
                    vendor.account().await.expect("every call answers");
                }
            })
        })
        .collect();
    let reloader = {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            for n in 0..400_u64 {
                let timeout = format!("{}ms", 1000 + n);
                runtime
                    .reload_with(overrides(&[("crm.account", "timeout", &timeout)]))
                    .expect("valid");
            }
        })
    };
    for caller in callers {
        caller.await.unwrap();
    }
    reloader.await.unwrap();
    let last = runtime.health().overrides[0].applied[0].value.clone();
    assert_eq!(last, "1399ms", "the last reload's value stands");
}

/// The timeout an override gives `crm.account` now, as health reports it.
fn effective_timeout(runtime: &Runtime) -> Option<Duration> {
    runtime
        .health()
        .overrides
        .iter()
        .find(|m| m.method == "crm.account")
        .and_then(|m| m.applied.iter().find(|v| v.key == "timeout"))
        .and_then(|v| v.value.strip_suffix('s')?.parse().ok())
        .map(Duration::from_secs)
}
