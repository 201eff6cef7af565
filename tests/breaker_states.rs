//! The breaker's state machine, state by state, on tokio's paused clock:
//! slow calls, time windows, growing open durations, hung probes, manual
//! states, ignored outcomes, failure classes and shared breakers.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::breaker::{Outcome, Rejected};
use seawall::{Breaker, BreakerPolicy, BreakerState, ClassSet, Error, ErrorClass, Event};
use seawall::{Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn breaker(policy: BreakerPolicy) -> Breaker {
    Breaker::new("test", policy).expect("a valid policy")
}

fn call(breaker: &Breaker, outcome: Outcome) {
    breaker.try_acquire().expect("admitted").record(outcome);
}

fn calls(breaker: &Breaker, outcomes: &[Outcome]) {
    for outcome in outcomes {
        call(breaker, *outcome);
    }
}

fn rejected(breaker: &Breaker) -> Rejected {
    breaker.try_acquire().expect_err("rejected")
}

use Outcome::{Failure as F, Success as S};

/// Window of 4, judged from 4 calls, opening at 50 %, open for 10 s.
fn four() -> BreakerPolicy {
    BreakerPolicy::new()
        .with_window(4)
        .with_min_calls(4)
        .with_open_for(SECOND * 10)
}

#[tokio::test(start_paused = true)]
async fn no_rate_is_judged_before_min_calls() {
    let breaker = breaker(four());
    calls(&breaker, &[F, F, F]);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "3 failures of 3 calls, under min_calls"
    );
    call(&breaker, S);
    assert_eq!(breaker.state(), BreakerState::Open, "3 of 4 failed");
}

#[tokio::test(start_paused = true)]
async fn the_threshold_is_inclusive() {
    let under = breaker(four().with_failure_rate(0.75));
    calls(&under, &[S, S, F, F]);
    assert_eq!(under.state(), BreakerState::Closed, "50 % is under 75 %");
    let at = breaker(four());
    calls(&at, &[S, S, F, F]);
    assert_eq!(at.state(), BreakerState::Open, "50 % reaches 50 %");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_says_exactly_when_it_lets_calls_through() {
    let breaker = breaker(four());
    calls(&breaker, &[F, F, F, F]);
    assert_eq!(rejected(&breaker).retry_in, Some(SECOND * 10));
    tokio::time::advance(MS * 2_500).await;
    assert_eq!(rejected(&breaker).retry_in, Some(MS * 7_500));
    tokio::time::advance(MS * 7_499).await;
    assert_eq!(rejected(&breaker).retry_in, Some(MS));
    tokio::time::advance(MS).await;
    let probe = breaker.try_acquire().expect("half-open after exactly 10 s");
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_its_probes_and_rejects_the_next() {
    let breaker = breaker(four().with_probes(3));
    calls(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    let probes: Vec<_> = (0..3)
        .map(|_| breaker.try_acquire().expect("a probe"))
        .collect();
    assert!(probes.iter().all(|p| p.is_probe()));
    // The fourth waits for the probes, at most `half_open_max` (60 s).
    assert_eq!(rejected(&breaker).retry_in, Some(SECOND * 60));
    for probe in probes {
        probe.record(S);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn good_probes_close_with_a_fresh_window_and_failing_ones_reopen() {
    let breaker = breaker(four().with_probes(2).with_failure_rate(0.5));
    calls(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    calls(&breaker, &[S, F]);
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "1 of 2 probes failed: 50 %"
    );
    tokio::time::advance(SECOND * 10).await;
    calls(&breaker, &[S, S]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls, metrics.failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_open_duration_grows_on_each_reopen_up_to_its_cap_and_resets_on_close() {
    let breaker = breaker(four().with_open_for_max(SECOND * 35));
    calls(&breaker, &[F, F, F, F]);
    let mut waits = vec![rejected(&breaker).retry_in];
    for _ in 0..3 {
        tokio::time::advance(waits.last().unwrap().unwrap()).await;
        call(&breaker, F); // the probe fails: open again, for longer
        waits.push(rejected(&breaker).retry_in);
    }
    assert_eq!(waits, [10, 20, 35, 35].map(|s| Some(SECOND * s)));
    tokio::time::advance(SECOND * 35).await;
    call(&breaker, S);
    assert_eq!(breaker.state(), BreakerState::Closed);
    calls(&breaker, &[F, F, F, F]);
    assert_eq!(
        rejected(&breaker).retry_in,
        Some(SECOND * 10),
        "back to the first duration"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_cannot_wedge_the_breaker_half_open() {
    let breaker = breaker(four().with_half_open_max(SECOND * 5));
    calls(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    let hung = breaker.try_acquire().expect("the probe");
    tokio::time::advance(SECOND * 4).await;
    assert_eq!(rejected(&breaker).retry_in, Some(SECOND));
    tokio::time::advance(SECOND).await;
    // Past `half_open_max` the missing probe counts as failed: open again.
    assert_eq!(rejected(&breaker).retry_in, Some(SECOND * 10));
    assert_eq!(breaker.state(), BreakerState::Open);
    // When the hung call finally returns, its outcome belongs to a past
    // half-open and changes nothing.
    hung.record(S);
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(SECOND * 10).await;
    call(&breaker, S);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_free_their_permit_and_record_nothing() {
    let breaker = breaker(four());
    calls(&breaker, &[Outcome::Ignored; 10]);
    assert_eq!(breaker.metrics().calls, 0);
    calls(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    // The only probe is ignored: its slot is free for another call. (A
    // probe whose call is dropped counts as failed instead:
    // `breaker_semantics.rs`.)
    for _ in 0..2 {
        breaker
            .try_acquire()
            .expect("the probe, and the slot again")
            .record(Outcome::Ignored);
    }
    let probe = breaker.try_acquire().expect("and again");
    assert!(breaker.try_acquire().is_err(), "still one probe at a time");
    probe.record(S);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_past_any_wait_until_reset() {
    let breaker = breaker(four());
    breaker.force_open();
    assert_eq!(breaker.state(), BreakerState::ForcedOpen);
    tokio::time::advance(SECOND * 3600).await;
    assert_eq!(rejected(&breaker).retry_in, None);
    breaker.reset();
    call(&breaker, S);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn disabled_lets_everything_through_and_records_nothing() {
    let breaker = breaker(four());
    breaker.disable();
    calls(&breaker, &[F; 100]);
    assert_eq!(breaker.state(), BreakerState::Disabled);
    assert_eq!(breaker.metrics().calls, 0);
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_never_blocks_but_reports_each_crossing_once() {
    let runtime = Runtime::in_memory();
    let crossings = Arc::new(Mutex::new(Vec::new()));
    let sink = crossings.clone();
    runtime.subscribe(move |event| {
        if let Event::BreakerRate(crossed) = event {
            sink.lock().unwrap().push(crossed.failure_rate);
        }
    });
    let endpoint = runtime
        .endpoint(
            "vendor",
            "get",
            seawall::Policy::new(seawall::Kind::Read, SECOND).with_breaker(four()),
        )
        .unwrap();
    let breaker = endpoint.breaker().unwrap().clone();
    breaker.metrics_only();
    calls(&breaker, &[F; 20]);
    assert_eq!(breaker.state(), BreakerState::MetricsOnly, "never opens");
    assert_eq!(breaker.metrics().failure_rate, Some(1.0));
    // Judged from the fourth call on (min_calls), when all four had failed;
    // the next sixteen failures are the same crossing.
    assert_eq!(*crossings.lock().unwrap(), [1.0], "reported once");
    // Back under the threshold, then over it again: a second report.
    calls(&breaker, &[S, S, S, S]);
    calls(&breaker, &[F, F]);
    assert_eq!(*crossings.lock().unwrap(), [1.0, 0.5]);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_failures_once_they_age_out() {
    let breaker = breaker(
        BreakerPolicy::new()
            .with_time_window(SECOND * 10)
            .with_min_calls(4),
    );
    calls(&breaker, &[F, F, F]);
    tokio::time::advance(SECOND * 11).await;
    // The three old failures have aged out: one more is 1 of 1, under
    // min_calls, and then three successes make it 1 of 4.
    calls(&breaker, &[F, S, S, S]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().calls, 4);
    calls(&breaker, &[F, F]);
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "3 of 6 in the last 10 s"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_count_when_the_policy_says_so() {
    let default = breaker(four());
    assert_eq!(default.outcome_of(ErrorClass::Permanent), Outcome::Success);
    assert_eq!(
        default.outcome_of(ErrorClass::VendorFault),
        Outcome::Failure
    );
    assert_eq!(default.outcome_of(ErrorClass::Ignored), Outcome::Ignored);
    let strict = breaker(
        four().with_failure_classes(ClassSet::of([ErrorClass::Retryable, ErrorClass::Permanent])),
    );
    assert_eq!(strict.outcome_of(ErrorClass::Permanent), Outcome::Failure);
    assert_eq!(strict.outcome_of(ErrorClass::VendorFault), Outcome::Success);
}

// Through the pipeline: slow calls, failure classes and shared names as the
// macro declares them.

#[contract(name = "vendor")]
pub trait Vendor {
    #[integration(
        read,
        timeout = "5s",
        breaker(
            window = 4,
            min_calls = 4,
            slow = "2s",
            slow_rate = 0.75,
            open_for = "10s"
        )
    )]
    async fn slow(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "5s",
                  breaker(window = 2, min_calls = 2, failure_classes = ["permanent"]))]
    async fn strict(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        breaker(window = 2, min_calls = 2, name = "shared")
    )]
    async fn first(&self) -> Result<usize, VendorError>;

    #[integration(
        write,
        timeout = "1s",
        breaker(window = 2, min_calls = 2, name = "shared")
    )]
    async fn second(&self) -> Result<usize, VendorError>;
}

impl Vendor for Script {
    async fn slow(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn strict(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn first(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn second(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker_while_every_call_succeeds() {
    let runtime = Runtime::in_memory();
    let script = Script::new(
        [
            Step::Slow(MS * 2_500),
            Step::Slow(MS * 2_000),
            Step::Slow(MS * 3_000),
            Step::Slow(MS * 1_999),
        ],
        Step::Ok,
    );
    let vendor = Resilient::new(script, &runtime);
    for _ in 0..4 {
        assert!(vendor.slow().await.is_ok());
    }
    let breaker = runtime.breaker("vendor.slow").unwrap();
    let metrics = breaker.metrics();
    assert_eq!(
        (metrics.failures, metrics.slow_calls),
        (0, 3),
        "2 s counts as slow; 1.999 s not"
    );
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "3 of 4 slow reaches 75 %"
    );
    let result = vendor.slow().await;
    assert!(matches!(seawall_error(&result), Error::BreakerOpen { .. }));
}

/// A tripped vendor must not take the whole service out of its load
/// balancer: readiness stays true, and names the breaker as degraded.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_leaves_the_service_ready_and_is_listed_as_degraded() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(
        Script::new([Step::Fail(422), Step::Fail(422)], Step::Ok),
        &runtime,
    );
    assert_eq!(runtime.readiness().degraded, Vec::<String>::new());
    let _ = vendor.strict().await;
    let _ = vendor.strict().await;
    assert_eq!(state(&runtime, "vendor.strict"), BreakerState::Open);
    let readiness = runtime.readiness();
    assert!(readiness.ready, "{readiness:?}");
    assert!(readiness.blocking.is_empty(), "{readiness:?}");
    assert_eq!(readiness.degraded, ["vendor.strict: breaker open"]);
    let json = serde_json::to_value(&readiness).unwrap();
    assert_eq!(json["ready"], true, "{json}");

    // The vendor is back: once a probe closes the breaker, nothing is
    // degraded any more (bounded: the open period is far shorter).
    for _ in 0..20 {
        if state(&runtime, "vendor.strict") == BreakerState::Closed {
            break;
        }
        tokio::time::sleep(SECOND * 10).await;
        let _ = vendor.strict().await;
    }
    assert_eq!(state(&runtime, "vendor.strict"), BreakerState::Closed);
    let readiness = runtime.readiness();
    assert!(
        readiness.ready && readiness.degraded.is_empty(),
        "{readiness:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_classes_decide_what_opens_the_breaker() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    for _ in 0..4 {
        let _ = vendor.strict().await;
    }
    assert_eq!(
        state(&runtime, "vendor.strict"),
        BreakerState::Closed,
        "503s do not count here"
    );
    vendor.inner().then([Step::Fail(422), Step::Fail(422)]);
    let _ = vendor.strict().await;
    let _ = vendor.strict().await;
    assert_eq!(
        state(&runtime, "vendor.strict"),
        BreakerState::Open,
        "422s do"
    );
}

#[tokio::test(start_paused = true)]
async fn a_named_breaker_is_shared_across_methods() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let _ = vendor.first().await;
    let _ = vendor.second().await;
    assert_eq!(
        state(&runtime, "shared"),
        BreakerState::Open,
        "one failure from each method"
    );
    assert!(
        runtime.breaker("vendor.first").is_none(),
        "no breaker of its own"
    );
    let calls = vendor.inner().calls();
    let result = vendor.first().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { breaker, .. } if &**breaker == "shared")
    );
    let result = vendor.second().await;
    assert!(
        matches!(seawall_error(&result), Error::BreakerOpen { breaker, .. } if &**breaker == "shared")
    );
    assert_eq!(vendor.inner().calls(), calls);
    let names: Vec<_> = runtime
        .breakers()
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    // A contract's breakers are all registered when it is first used.
    assert_eq!(names, ["shared", "vendor.slow", "vendor.strict"]);
}

#[tokio::test(start_paused = true)]
async fn the_registry_reports_each_breaker_with_its_window() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::new([Step::Fail(503)], Step::Ok), &runtime);
    let _ = vendor.strict().await;
    for _ in 0..4 {
        let _ = vendor.slow().await;
    }
    let metrics: Vec<_> = runtime.breakers().iter().map(|b| b.metrics()).collect();
    let json = serde_json::to_value(&metrics).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"name": "shared", "state": "closed", "calls": 0, "failures": 0,
             "slow_calls": 0, "consecutive_failures": 0,
             "failure_rate": null, "slow_rate": null},
            // Four calls, min_calls 4: judged.
            {"name": "vendor.slow", "state": "closed", "calls": 4, "failures": 0,
             "slow_calls": 0, "consecutive_failures": 0,
             "failure_rate": 0.0, "slow_rate": 0.0},
            // One call, min_calls 2: no rate yet.
            {"name": "vendor.strict", "state": "closed", "calls": 1, "failures": 0,
             "slow_calls": 0, "consecutive_failures": 0,
             "failure_rate": null, "slow_rate": null},
        ])
    );
}

fn state(runtime: &Runtime, name: &str) -> BreakerState {
    runtime.breaker(name).expect("registered").state()
}
