//! The circuit breaker inside the pipeline: opens on the failure rate,
//! rejects fast while open, half-opens after the wait, closes or re-opens on
//! its probes, and ends retry loops at once. On tokio's paused clock.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::{BreakerState, Error, Event, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[contract(name = "vendor")]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        breaker(
            failure_rate = 0.5,
            window = 4,
            min_calls = 4,
            open_for = "10s",
            probes = 2
        )
    )]
    async fn guarded(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 5, base = "100ms", cap = "100ms", jitter = "none"),
        breaker(failure_rate = 1.0, window = 2, min_calls = 2, open_for = "10s")
    )]
    async fn retried(&self) -> Result<usize, VendorError>;
}

impl Vendor for Script {
    async fn guarded(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn retried(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

fn wrapped(script: Script) -> (Runtime, Resilient<Script>) {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(script, &runtime);
    (runtime, vendor)
}

fn state(runtime: &Runtime, name: &str) -> BreakerState {
    runtime.breaker(name).expect("breaker registered").state()
}

/// Two successes and two failures: exactly the 50 % threshold.
async fn trip(vendor: &Resilient<Script>) {
    vendor
        .inner()
        .then([Step::Ok, Step::Ok, Step::Fail(503), Step::Fail(503)]);
    for _ in 0..4 {
        let _ = vendor.guarded().await;
    }
}

#[tokio::test(start_paused = true)]
async fn no_rate_is_judged_before_min_calls() {
    let (runtime, vendor) = wrapped(Script::always(Step::Fail(503)));
    for _ in 0..3 {
        let _ = vendor.guarded().await;
    }
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Closed);
    let _ = vendor.guarded().await;
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_at_exactly_the_threshold_and_then_rejects_without_calling() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    trip(&vendor).await;
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Open);
    let start = Instant::now();
    let result = vendor.guarded().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { breaker, retry_in }
            if &**breaker == "vendor.guarded" && *retry_in == Some(MS * 10_000)),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "a rejection is immediate");
    assert_eq!(vendor.inner().calls(), 4, "the vendor was not called");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_do_not_open_the_breaker() {
    let (runtime, vendor) = wrapped(Script::always(Step::Fail(404)));
    for _ in 0..20 {
        let _ = vendor.guarded().await;
    }
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn rejections_count_down_and_half_open_comes_only_after_the_wait() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    trip(&vendor).await;
    tokio::time::advance(MS * 9_999).await;
    let result = vendor.guarded().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { retry_in, .. } if *retry_in == Some(MS))
    );
    assert_eq!(vendor.inner().calls(), 4);
    tokio::time::advance(MS).await;
    assert!(
        vendor.guarded().await.is_ok(),
        "the first probe goes through"
    );
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_its_probes() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    trip(&vendor).await;
    tokio::time::advance(MS * 10_000).await;
    vendor
        .inner()
        .then([Step::Slow(MS * 50), Step::Slow(MS * 50)]);
    let (first, second, third) = tokio::join!(vendor.guarded(), vendor.guarded(), vendor.guarded());
    assert!(first.is_ok() && second.is_ok());
    assert!(
        // Until the probes report, or `half_open_max` (60 s) runs out.
        matches!(seawall_error(&third), Error::BreakerOpen { retry_in, .. } if *retry_in == Some(MS * 60_000)),
        "{third:?}"
    );
    assert_eq!(vendor.inner().calls(), 6);
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn good_probes_close_the_breaker_with_an_empty_window() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    trip(&vendor).await;
    tokio::time::advance(MS * 10_000).await;
    vendor.inner().then([Step::Ok, Step::Ok]);
    vendor.guarded().await.unwrap();
    vendor.guarded().await.unwrap();
    let breaker = runtime.breaker("vendor.guarded").unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    let metrics = breaker.metrics();
    assert_eq!(
        (metrics.calls, metrics.failures),
        (0, 0),
        "closing starts a fresh window"
    );
    // The old failures are gone: three new failures are below min_calls.
    vendor
        .inner()
        .then([Step::Fail(503), Step::Fail(503), Step::Fail(503)]);
    for _ in 0..3 {
        let _ = vendor.guarded().await;
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn failing_probes_open_the_breaker_again_for_a_full_wait() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    trip(&vendor).await;
    tokio::time::advance(MS * 10_000).await;
    vendor.inner().then([Step::Fail(503), Step::Fail(503)]);
    let _ = vendor.guarded().await;
    let _ = vendor.guarded().await;
    assert_eq!(state(&runtime, "vendor.guarded"), BreakerState::Open);
    let result = vendor.guarded().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { retry_in, .. } if *retry_in == Some(MS * 10_000))
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_ends_the_retry_loop_at_once() {
    // The breaker opens on the second failed attempt; the remaining three
    // attempts and their backoff are skipped, and the caller gets the
    // vendor's last error rather than a rejection it never received.
    let (runtime, vendor) = wrapped(Script::always(Step::Fail(503)));
    let start = Instant::now();
    let result = vendor.retried().await;
    assert!(
        matches!(seawall_error(&result), Error::RetriesExhausted { attempts: 2, last, .. }
            if matches!(last.downcast_ref::<VendorError>(), Some(VendorError::Status(s)) if s.as_u16() == 503)),
        "{result:?}"
    );
    assert_eq!(vendor.inner().calls(), 2);
    assert_eq!(start.elapsed(), MS * 100, "one backoff, then no more");
    assert_eq!(state(&runtime, "vendor.retried"), BreakerState::Open);
    // The next call does not reach the vendor at all.
    let result = vendor.retried().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { breaker, .. } if &**breaker == "vendor.retried")
    );
    assert_eq!(vendor.inner().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_is_not_retried_into_the_other_probe_slots() {
    // `retried` allows 5 attempts, but a half-open probe that fails ends its
    // call: one call's retries must not decide the vendor's fate alone.
    let (runtime, vendor) = wrapped(Script::always(Step::Fail(503)));
    let _ = vendor.retried().await;
    assert_eq!(state(&runtime, "vendor.retried"), BreakerState::Open);
    tokio::time::advance(MS * 10_000).await;
    let before = vendor.inner().calls();
    let result = vendor.retried().await;
    assert!(
        matches!(
            seawall_error(&result),
            Error::RetriesExhausted { attempts: 1, .. }
        ),
        "{result:?}"
    );
    assert_eq!(vendor.inner().calls(), before + 1);
    assert_eq!(state(&runtime, "vendor.retried"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_reported_to_subscribers() {
    let (runtime, vendor) = wrapped(Script::always(Step::Ok));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    runtime.subscribe(move |event| {
        let Event::Breaker(transition) = event else {
            return;
        };
        sink.lock().unwrap().push((
            transition.breaker.to_string(),
            transition.from,
            transition.to,
            transition.opened_by,
        ));
    });
    trip(&vendor).await;
    tokio::time::advance(MS * 10_000).await;
    vendor.inner().then([Step::Ok, Step::Ok]);
    vendor.guarded().await.unwrap();
    vendor.guarded().await.unwrap();
    use BreakerState::*;
    let name = String::from("vendor.guarded");
    let seen = seen.lock().unwrap();
    let transitions: Vec<_> = seen
        .iter()
        .map(|(name, from, to, _)| (name.clone(), *from, *to))
        .collect();
    assert_eq!(
        transitions,
        [
            (name.clone(), Closed, Open),
            (name.clone(), Open, HalfOpen),
            (name, HalfOpen, Closed)
        ]
    );
    // The opening carries the window behind it: 2 of 4 failed, the last two
    // in a row; the other transitions carry nothing.
    let window = seen[0].3.expect("what opened it");
    assert_eq!(
        (window.calls, window.failures, window.slow_calls),
        (4, 2, 0)
    );
    assert_eq!((window.failure_rate, window.slow_rate), (0.5, 0.0));
    assert_eq!(window.consecutive_failures, 2);
    assert!(seen[1].3.is_none() && seen[2].3.is_none());
}
