//! The breaker's semantics under the conditions production brings: noise,
//! reads between calls, hung and cancelled probes, panicking adapters and
//! operators' holds. On tokio's paused clock, through `#[contract]` where a
//! caller would meet the behaviour.
//!
//! Scenarios ported (written from their descriptions, not their code) from
//! Resilience4j's `CircuitBreakerStateMachineTest` and Polly's circuit
//! breaker controller tests, and where each lives:
//!
//! | scenario | test |
//! |---|---|
//! | R4j: failure rate not known (−1) until the minimum number of calls | `rates_are_unknown_until_min_calls_and_half_open_shows_the_probes` |
//! | R4j: the call that completes the minimum number of calls is judged, count- and time-based | `the_call_completing_min_calls_is_judged_in_both_windows` |
//! | R4j: metrics-only mode reports the crossing | `the_call_completing_min_calls_is_judged_in_both_windows` |
//! | R4j: automatic transition from open to half-open after the wait | `state_is_read_as_of_now_by_every_reader` |
//! | R4j: half-open metrics use their own window of permitted calls | `rates_are_unknown_until_min_calls_and_half_open_shows_the_probes` |
//! | R4j: `maxWaitDurationInHalfOpenState` ends half-open whatever the free permits | `half_open_max_counts_from_the_first_probe_whatever_slots_are_free` |
//! | R4j: `transitionToOpenStateFor(duration)` | `force_open_for_holds_then_returns_to_the_automatic_cycle` |
//! | R4j: reset clears the metrics | `rates_are_unknown_until_min_calls_and_half_open_shows_the_probes` |
//! | R4j: ignored errors release a half-open permit | `breaker_states.rs`: `ignored_outcomes_free_their_permit_and_record_nothing` |
//! | R4j: permitted calls in half-open, the next rejected | `breaker_states.rs`: `half_open_admits_exactly_its_probes_and_rejects_the_next` |
//! | R4j: disabled and forced-open states | `breaker_states.rs` |
//! | Polly: `CircuitState` reads half-open once the break has elapsed, with no call | `state_is_read_as_of_now_by_every_reader` |
//! | Polly: a failed half-open execution breaks again for the break duration | `breaker.rs`: `failing_probes_open_the_breaker_again_for_a_full_wait`; `a_panicking_probe_reopens_the_breaker` |
//! | Polly: broken-circuit rejections carry the time left (`RetryAfter`) | `force_open_for_holds_then_returns_to_the_automatic_cycle` |
//! | Polly: a break duration that would overflow is capped, not a crash | `force_open_for_holds_then_returns_to_the_automatic_cycle` |
//! | Polly: isolate holds the circuit past any break duration | `breaker_states.rs`: `forced_open_rejects_past_any_wait_until_reset` |
//!
//! Deliberate differences: a half-open period's `half_open_max` runs from
//! its first probe (Resilience4j: from entering half-open; with no probe
//! there is nothing to wait for, and an idle endpoint would otherwise cycle
//! open and half-open for ever); a cancelled probe counts as failed
//! (Resilience4j releases its permit, which let any number of cancelling
//! callers reach a hung vendor); a panic in the adapter is a vendor fault.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::breaker::Outcome;
use seawall::{Breaker, BreakerPolicy, BreakerState, Event, Resilient, Runtime, contract};
use support::VendorError;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[contract(name = "vendor")]
pub trait Vendor {
    /// The README's policy with the default breaker.
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "100ms", cap = "1s"),
        breaker
    )]
    async fn readme(&self) -> Result<usize, VendorError>;

    /// The breaker as it stood before: a window of 20 judged from 10, and
    /// no run rule.
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "100ms", cap = "1s"),
        breaker(window = 20, min_calls = 10, consecutive_failures = 0)
    )]
    async fn small_window(&self) -> Result<usize, VendorError>;

    /// A small breaker that opens after four failures, for the half-open
    /// scenarios.
    #[integration(
        read,
        timeout = "1s",
        breaker(window = 4, open_for = "10s", half_open_max = "1s")
    )]
    async fn guarded(&self) -> Result<usize, VendorError>;

    /// The same with retries, for panics.
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "10ms", jitter = "none"),
        breaker(window = 4, open_for = "10s", half_open_max = "1s")
    )]
    async fn retried(&self) -> Result<usize, VendorError>;
}

/// What the fake vendor does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Fails each attempt with `503` with this probability (seeded).
    Noisy(f64),
    /// Never answers.
    Hang,
    /// Panics.
    Panic,
}

struct Fake {
    mode: Mutex<Mode>,
    rng: Mutex<SmallRng>,
    attempts: AtomicU64,
}

impl Fake {
    fn new(mode: Mode, seed: u64) -> Self {
        Self {
            mode: Mutex::new(mode),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            attempts: AtomicU64::new(0),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn attempts(&self) -> u64 {
        self.attempts.load(Relaxed)
    }

    async fn play(&self) -> Result<usize, VendorError> {
        self.attempts.fetch_add(1, Relaxed);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Noisy(rate) => {
                if self.rng.lock().unwrap().random_bool(rate) {
                    Err(VendorError::status(503))
                } else {
                    Ok(1)
                }
            }
            Mode::Hang => std::future::pending().await,
            Mode::Panic => panic!("the adapter could not parse the vendor's answer"),
        }
    }
}

impl Vendor for Fake {
    async fn readme(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn small_window(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn guarded(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn retried(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

type Transitions = Arc<Mutex<Vec<(BreakerState, BreakerState)>>>;

fn wrapped(mode: Mode, seed: u64) -> (Runtime, Arc<Resilient<Fake>>, Transitions) {
    let runtime = Runtime::builder().seed(seed).in_memory();
    let transitions = Transitions::default();
    let seen = transitions.clone();
    runtime.subscribe(move |event| {
        if let Event::Breaker(transition) = event {
            seen.lock().unwrap().push((transition.from, transition.to));
        }
    });
    let vendor = Arc::new(Resilient::new(Fake::new(mode, seed), &runtime));
    (runtime, vendor, transitions)
}

fn opens(transitions: &Transitions) -> usize {
    transitions
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, to)| *to == BreakerState::Open)
        .count()
}

// ---------------------------------------------------------------------------
// 1. Sound tripping: seeded checks of the property (the full table comes
// from `cargo run --release --example breaker_noise`).
// ---------------------------------------------------------------------------

/// `calls` calls 100 ms apart, through the default breaker or the old one.
async fn offer(vendor: &Resilient<Fake>, calls: u32, small: bool) {
    let start = tokio::time::Instant::now();
    for call in 0..calls {
        tokio::time::sleep_until(start + Duration::from_millis(100) * call).await;
        let _ = if small {
            vendor.small_window().await
        } else {
            vendor.readme().await
        };
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_breaker_does_not_open_on_a_vendor_that_mostly_works() {
    for rate in [0.1, 0.2, 0.3] {
        for seed in 1..=2 {
            let (_runtime, vendor, transitions) = wrapped(Mode::Noisy(rate), seed);
            offer(&vendor, 3_000, false).await;
            assert_eq!(
                opens(&transitions),
                0,
                "{rate} failing, seed {seed}: {} attempts",
                vendor.inner().attempts()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_old_small_window_opened_on_the_same_noise() {
    // The contrast that shows the check above can fail: the same vendor,
    // the same seed, judged by a window of 20 from 10 calls.
    let (_runtime, vendor, transitions) = wrapped(Mode::Noisy(0.3), 1);
    offer(&vendor, 3_000, true).await;
    assert!(
        opens(&transitions) >= 2,
        "a window of 20 opens by chance at 30 %: {} opens",
        opens(&transitions)
    );
}

/// After a long healthy period, the vendor starts failing `rate` of its
/// attempts: how many attempts until the breaker opens.
async fn attempts_to_open(rate: f64, seed: u64) -> u64 {
    let (runtime, vendor, transitions) = wrapped(Mode::Noisy(0.0), seed);
    offer(&vendor, 200, false).await;
    let metrics = runtime.breaker("vendor.readme").unwrap().metrics();
    assert_eq!((metrics.calls, metrics.failures), (100, 0), "a full window");
    let healthy = vendor.inner().attempts();
    vendor.inner().set(Mode::Noisy(rate));
    let opened_at = Arc::new(AtomicU64::new(0));
    let (fake, at) = (Arc::clone(&vendor), opened_at.clone());
    runtime.subscribe(move |event| {
        if let Event::Breaker(transition) = event
            && transition.to == BreakerState::Open
            && at.load(Relaxed) == 0
        {
            at.store(fake.inner().attempts(), Relaxed);
        }
    });
    for _ in 0..1_000 {
        let _ = vendor.readme().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if opened_at.load(Relaxed) != 0 {
            break;
        }
    }
    assert_eq!(opens(&transitions), 1, "opened once, at {rate}");
    opened_at.load(Relaxed) - healthy
}

#[tokio::test(start_paused = true)]
async fn a_broken_vendor_still_opens_the_breaker_quickly() {
    for seed in 1..=3 {
        assert_eq!(
            attempts_to_open(1.0, seed).await,
            10,
            "ten failures in a row"
        );
        let at_80 = attempts_to_open(0.8, seed).await;
        assert!(at_80 <= 70, "80 %: opened after {at_80} attempts");
        let at_60 = attempts_to_open(0.6, seed).await;
        assert!(at_60 <= 100, "60 %: opened after {at_60} attempts");
    }
}

// ---------------------------------------------------------------------------
// 3, 4. What is judged, and what metrics say.
// ---------------------------------------------------------------------------

use Outcome::{Failure as F, Success as S};

fn run(breaker: &Breaker, outcomes: &[Outcome]) {
    for outcome in outcomes {
        breaker.try_acquire().expect("admitted").record(*outcome);
    }
}

#[tokio::test(start_paused = true)]
async fn the_call_completing_min_calls_is_judged_in_both_windows() {
    for policy in [
        BreakerPolicy::new().with_window(20),
        BreakerPolicy::new().with_time_window(SECOND * 20),
    ] {
        let policy = policy.with_min_calls(5).with_failure_rate(0.5);
        let breaker = Breaker::new("b", policy.clone()).unwrap();
        run(&breaker, &[F, F, F, S]);
        assert_eq!(breaker.state(), BreakerState::Closed, "4 calls: under min");
        run(&breaker, &[S]);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "3 of 5 failed, judged on the fifth call ({:?})",
            policy.window()
        );
        // Metrics-only reports that crossing on the same call.
        let runtime = Runtime::in_memory();
        let crossings = Arc::new(AtomicUsize::new(0));
        let seen = crossings.clone();
        runtime.subscribe(move |event| {
            if matches!(event, Event::BreakerRate(_)) {
                seen.fetch_add(1, Relaxed);
            }
        });
        let endpoint = runtime
            .endpoint(
                "m",
                "only",
                seawall::Policy::new(seawall::Kind::Read, SECOND).with_breaker(policy),
            )
            .unwrap();
        let breaker = endpoint.breaker().unwrap();
        breaker.metrics_only();
        run(breaker, &[F, F, F, S]);
        assert_eq!(crossings.load(Relaxed), 0);
        run(breaker, &[S]);
        assert_eq!(crossings.load(Relaxed), 1, "reported on the fifth call");
    }
}

#[tokio::test(start_paused = true)]
async fn rates_are_unknown_until_min_calls_and_half_open_shows_the_probes() {
    let policy = BreakerPolicy::new()
        .with_window(10)
        .with_min_calls(5)
        .with_open_for(SECOND * 10)
        .with_probes(3);
    let breaker = Breaker::new("b", policy).unwrap();
    run(&breaker, &[F]);
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls, metrics.failures), (1, 1));
    assert_eq!(metrics.failure_rate, None, "one call is not a rate");
    assert_eq!(metrics.slow_rate, None);
    run(&breaker, &[S, S, S, S]);
    assert_eq!(breaker.metrics().failure_rate, Some(0.2), "5 calls judged");
    run(&breaker, &[F, F, F]);
    let open = breaker.metrics();
    assert_eq!(open.state, BreakerState::Open);
    assert_eq!(
        (open.calls, open.failures),
        (8, 4),
        "the window that opened it"
    );

    tokio::time::advance(SECOND * 10).await;
    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    assert!(first.is_probe() && second.is_probe());
    let half_open = breaker.metrics();
    assert_eq!(half_open.state, BreakerState::HalfOpen);
    assert_eq!(
        (half_open.calls, half_open.failures),
        (0, 0),
        "no probe in yet"
    );
    first.record(S);
    second.record(F);
    let half_open = breaker.metrics();
    assert_eq!(
        (half_open.calls, half_open.failures),
        (2, 1),
        "the probes' own tally, not the closed window's"
    );
    assert_eq!(half_open.failure_rate, None, "2 of 3 probes in");
    // The third probe succeeds: 1 of 3 failed, under 50 %: closed, and the
    // window reads empty.
    breaker.try_acquire().unwrap().record(S);
    let closed = breaker.metrics();
    assert_eq!(closed.state, BreakerState::Closed);
    assert_eq!(
        (closed.calls, closed.failures, closed.failure_rate),
        (0, 0, None)
    );
    run(&breaker, &[F, F]);
    breaker.reset();
    let reset = breaker.metrics();
    assert_eq!(
        (
            reset.calls,
            reset.failures,
            reset.consecutive_failures,
            reset.failure_rate
        ),
        (0, 0, 0, None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_of_consecutive_failures_opens_whatever_the_window_holds() {
    let breaker = Breaker::new("b", BreakerPolicy::new().with_consecutive_failures(3)).unwrap();
    // 97 successes fill the window; rates say nothing yet about 3 failures.
    run(&breaker, &[S; 97]);
    run(&breaker, &[F, F, S, F, F]);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "the success broke the run"
    );
    assert_eq!(breaker.metrics().consecutive_failures, 2);
    run(&breaker, &[F]);
    assert_eq!(breaker.state(), BreakerState::Open, "three in a row");
    // Off, only the rate opens it.
    let off = Breaker::new("off", BreakerPolicy::new().with_consecutive_failures(0)).unwrap();
    run(&off, &[F; 99]);
    assert_eq!(
        off.state(),
        BreakerState::Closed,
        "99 calls, under min_calls"
    );
    run(&off, &[F]);
    assert_eq!(off.state(), BreakerState::Open);
}

// ---------------------------------------------------------------------------
// 5, 6. State as of now; half_open_max from the first probe.
// ---------------------------------------------------------------------------

async fn trip(vendor: &Resilient<Fake>) {
    vendor.inner().set(Mode::Noisy(1.0));
    for _ in 0..4 {
        let _ = vendor.guarded().await;
    }
}

#[test]
fn state_is_read_as_of_now_by_every_reader() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, _, _, _)| {
                key.key().name() == "seawall_breaker_state"
                    && key.key().labels().any(|l| l.value() == "vendor.guarded")
            })
            .map(|(_, _, _, value)| value)
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tokio.block_on(async {
            let (runtime, vendor, transitions) = wrapped(Mode::Noisy(0.0), 1);
            trip(&vendor).await;
            let breaker = runtime.breaker("vendor.guarded").unwrap();
            assert_eq!(breaker.state(), BreakerState::Open);
            assert_eq!(gauge(), Some(DebugValue::Gauge(2.0.into())));
            // The wait runs out with no call and no read: the breaker's own
            // timer makes the transition, and the gauge follows.
            tokio::time::sleep(SECOND * 10 + MS).await;
            assert_eq!(
                transitions.lock().unwrap().last(),
                Some(&(BreakerState::Open, BreakerState::HalfOpen))
            );
            assert_eq!(gauge(), Some(DebugValue::Gauge(1.0.into())));
            assert_eq!(breaker.state(), BreakerState::HalfOpen);
            assert_eq!(breaker.retry_in(), None);
            assert_eq!(breaker.metrics().state, BreakerState::HalfOpen);
            assert_eq!(runtime.breakers()[0].state(), BreakerState::HalfOpen);
            let health = runtime.health();
            let guarded = health
                .endpoints
                .iter()
                .find(|e| e.method == "guarded")
                .unwrap();
            assert_eq!(guarded.breaker, Some(BreakerState::HalfOpen));
            assert_eq!(vendor.inner().attempts(), 4, "no call was made");
        });
    });
}

#[tokio::test(start_paused = true)]
async fn reads_judge_an_expired_half_open_period_without_a_call() {
    let breaker = Breaker::new(
        "b",
        BreakerPolicy::new()
            .with_window(4)
            .with_open_for(SECOND * 10)
            .with_half_open_max(SECOND * 3),
    )
    .unwrap();
    run(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "read, not called");
    // Time passes with no probe: nothing to judge, still half-open.
    tokio::time::advance(SECOND * 100).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let hung = breaker.try_acquire().expect("the probe");
    tokio::time::advance(SECOND * 3).await;
    // The probe never reported: the read judges it failed and opens.
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        breaker.retry_in(),
        Some(SECOND * 10),
        "open from the expiry"
    );
    drop(hung);
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "a late probe changes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_max_counts_from_the_first_probe_whatever_slots_are_free() {
    let breaker = Breaker::new(
        "b",
        BreakerPolicy::new()
            .with_window(4)
            .with_open_for(SECOND * 10)
            .with_probes(4)
            .with_half_open_max(SECOND * 3),
    )
    .unwrap();
    run(&breaker, &[F, F, F, F]);
    tokio::time::advance(SECOND * 10).await;
    let _hung = breaker.try_acquire().expect("first probe");
    tokio::time::advance(SECOND * 2).await;
    breaker.try_acquire().expect("second probe").record(S);
    tokio::time::advance(SECOND).await;
    // Two slots are free, but half_open_max has passed since the first
    // probe: the period is judged (1 failed of 2, at 50 %) and re-opens.
    let rejected = breaker.try_acquire().expect_err("not a third probe");
    assert_eq!(rejected.retry_in, Some(SECOND * 10));
    assert_eq!(breaker.state(), BreakerState::Open);
}

// ---------------------------------------------------------------------------
// 7. Cancelled calls.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cancelled_probes_never_let_more_than_probes_calls_reach_a_hung_vendor() {
    let (runtime, vendor, _) = wrapped(Mode::Noisy(0.0), 1);
    trip(&vendor).await;
    vendor.inner().set(Mode::Hang);
    tokio::time::advance(SECOND * 10).await;
    let before = vendor.inner().attempts();
    // 30 callers over 3 s (three times half_open_max), each giving up after
    // 100 ms: half by their own timeout, half by a `select!`.
    let start = tokio::time::Instant::now();
    for caller in 0..30 {
        tokio::time::sleep_until(start + MS * 100 * caller).await;
        if caller % 2 == 0 {
            let _ = tokio::time::timeout(MS * 100, vendor.guarded()).await;
        } else {
            tokio::select! {
                _ = vendor.guarded() => {}
                () = tokio::time::sleep(MS * 100) => {}
            }
        }
    }
    let breaker = runtime.breaker("vendor.guarded").unwrap();
    assert_eq!(
        vendor.inner().attempts() - before,
        1,
        "one probe reached the vendor; its cancellation re-opened the breaker"
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    // Re-opened at 100 ms for 10 s; the last caller came at 2.9 s.
    assert_eq!(breaker.retry_in(), Some(MS * 7_200));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_while_closed_records_nothing() {
    let (runtime, vendor, _) = wrapped(Mode::Hang, 1);
    for _ in 0..10 {
        let _ = tokio::time::timeout(MS * 100, vendor.guarded()).await;
    }
    let metrics = runtime.breaker("vendor.guarded").unwrap().metrics();
    assert_eq!(metrics.state, BreakerState::Closed);
    assert_eq!((metrics.calls, metrics.failures), (0, 0));
}

// ---------------------------------------------------------------------------
// 8. Panics.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_panicking_adapter_is_a_vendor_fault_and_the_panic_reaches_the_caller() {
    let (runtime, vendor, _) = wrapped(Mode::Panic, 1);
    for call in 1..=4 {
        let task = tokio::spawn({
            let vendor = vendor.clone();
            async move { vendor.retried().await }
        });
        let error = task.await.expect_err("the task panicked");
        assert!(error.is_panic());
        let payload = error.into_panic();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the adapter could not parse the vendor's answer"),
            "the panic's own payload"
        );
        assert_eq!(vendor.inner().attempts(), call, "never retried");
    }
    let breaker = runtime.breaker("vendor.retried").unwrap();
    assert_eq!(breaker.state(), BreakerState::Open, "four failures of four");
    let health = runtime.health();
    let retried = health
        .endpoints
        .iter()
        .find(|e| e.method == "retried")
        .unwrap();
    assert_eq!(retried.attempts.vendor_fault, 4);
    assert_eq!(retried.attempts.total, 4);
    assert_eq!(
        (retried.calls.total, retried.calls.panicked),
        (4, 4),
        "each call ended by its adapter's panic"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_reopens_the_breaker() {
    let (runtime, vendor, transitions) = wrapped(Mode::Noisy(0.0), 1);
    trip(&vendor).await;
    vendor.inner().set(Mode::Panic);
    tokio::time::advance(SECOND * 10).await;
    let probe = tokio::spawn({
        let vendor = vendor.clone();
        async move { vendor.guarded().await }
    });
    assert!(probe.await.unwrap_err().is_panic());
    let breaker = runtime.breaker("vendor.guarded").unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        transitions.lock().unwrap().as_slice(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Open),
        ]
    );
}

// ---------------------------------------------------------------------------
// 9. A timed hold.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn force_open_for_holds_then_returns_to_the_automatic_cycle() {
    let (runtime, vendor, transitions) = wrapped(Mode::Noisy(0.0), 1);
    let _ = vendor.guarded().await;
    let breaker = runtime.breaker("vendor.guarded").unwrap();
    breaker.force_open_for(SECOND * 20);
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(SECOND * 5).await;
    assert_eq!(breaker.retry_in(), Some(SECOND * 15));
    let rejected = vendor.guarded().await.unwrap_err();
    assert!(
        matches!(
            rejected.seawall(),
            Some(seawall::Error::BreakerOpen { retry_in: Some(left), .. }) if *left == SECOND * 15
        ),
        "{rejected:?}"
    );
    assert_eq!(vendor.inner().attempts(), 1);
    tokio::time::sleep(SECOND * 15).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    vendor.guarded().await.expect("the probe");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(
        transitions.lock().unwrap().as_slice(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
    // A hold too long to represent is capped, not a panic.
    breaker.force_open_for(Duration::MAX);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(breaker.retry_in().unwrap() > Duration::from_secs(10 * 365 * 24 * 3600));
}
