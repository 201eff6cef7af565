//! `hedge(after = .., max = ..)`: once an attempt is late, more go in
//! parallel; the first success wins and the others are cancelled. Hedges
//! never go while the breaker is not closed, take a rate limiter turn or a
//! bulkhead place only when one is free at once, draw from the retry
//! budget, and end with the attempt's timeout. On tokio's paused clock,
//! with a vendor whose latency is scripted or drawn from a seeded
//! generator.

mod support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::idempotency::{IdempotencyKey, current_key};
use seawall::{Resilient, Runtime, contract};
use support::VendorError;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// What one request does: wait this long, then answer this.
#[derive(Clone, Copy, Debug)]
enum Step {
    Answer(Duration, u32),
    Fail(Duration, u16),
    Panic(Duration),
}

/// A vendor whose requests follow a script (then a seeded draw: 10 ms, or
/// 1 s for one request in twenty), counting requests and the ones dropped
/// before they answered.
#[derive(Clone)]
struct Vendor {
    script: Arc<Mutex<VecDeque<Step>>>,
    rng: Arc<Mutex<SmallRng>>,
    requests: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
    /// The idempotency key each request of a keyed write ran with.
    keys: Arc<Mutex<Vec<Option<IdempotencyKey>>>>,
}

impl Vendor {
    fn new(script: impl IntoIterator<Item = Step>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(20))),
            requests: Arc::default(),
            cancelled: Arc::default(),
            keys: Arc::default(),
        }
    }

    async fn request(&self) -> Result<u32, VendorError> {
        let n = self.requests.fetch_add(1, SeqCst);
        let step = self.script.lock().unwrap().pop_front().unwrap_or_else(|| {
            let mut rng = self.rng.lock().unwrap();
            if rng.random_bool(0.05) {
                Step::Answer(Duration::from_secs(1), n)
            } else {
                Step::Answer(MS * rng.random_range(5..=15), n)
            }
        });
        struct Dropped<'a>(&'a AtomicU32, bool);
        impl Drop for Dropped<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_add(1, SeqCst);
                }
            }
        }
        let mut guard = Dropped(&self.cancelled, false);
        let (wait, answer) = match step {
            Step::Answer(wait, value) => (wait, Ok(value)),
            Step::Fail(wait, status) => (wait, Err(VendorError::status(status))),
            Step::Panic(wait) => {
                tokio::time::sleep(wait).await;
                guard.1 = true;
                panic!("the adapter could not parse the answer");
            }
        };
        tokio::time::sleep(wait).await;
        guard.1 = true;
        answer
    }
}

#[contract(name = "search")]
pub trait Search {
    #[integration(read, timeout = "2s")]
    async fn plain(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "2s", hedge(after = "50ms"))]
    async fn fixed(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "2s", hedge(after = "p95"))]
    async fn tracking(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "200ms", hedge(after = "50ms", max = 2))]
    async fn twice(&self) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "2s",
        hedge(after = "50ms"),
        breaker(
            window = 4,
            min_calls = 4,
            failure_rate = 0.5,
            open_for = "1s",
            probes = 1
        )
    )]
    async fn guarded(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "2s", hedge(after = "50ms"), rate(limit = "1/s"))]
    async fn rationed(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "2s", hedge(after = "50ms"), bulkhead(max = 1))]
    async fn narrow(&self) -> Result<u32, VendorError>;

    #[integration(write, timeout = "2s", idempotent(key = [order]), hedge(after = "50ms"))]
    async fn place(&self, order: u32) -> Result<u32, VendorError>;
}

impl Search for Vendor {
    async fn plain(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn fixed(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn tracking(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn twice(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn guarded(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn rationed(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn narrow(&self) -> Result<u32, VendorError> {
        self.request().await
    }
    async fn place(&self, _order: u32) -> Result<u32, VendorError> {
        self.keys.lock().unwrap().push(current_key());
        self.request().await
    }
}

fn search(script: impl IntoIterator<Item = Step>) -> (Runtime, Vendor, Arc<Resilient<Vendor>>) {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::new(script);
    let search = Arc::new(Resilient::new(vendor.clone(), &runtime));
    (runtime, vendor, search)
}

fn hedges(runtime: &Runtime, method: &str) -> seawall::hedge::HedgeStatus {
    runtime
        .health()
        .endpoints
        .into_iter()
        .find(|e| e.method == method)
        .and_then(|e| e.hedges)
        .expect("the method hedges")
}

/// A hedged keyed write: the hedge is the same write, so it carries the
/// same idempotency key as the attempt it races (the vendor sees one
/// operation twice, and keeps one).
#[tokio::test(start_paused = true)]
async fn a_hedged_keyed_write_sends_the_same_key_on_every_request() {
    let (_runtime, vendor, search) = search([
        Step::Answer(Duration::from_secs(1), 1),
        Step::Answer(MS * 10, 2),
    ]);
    assert_eq!(search.place(42).await.unwrap(), 2, "the hedge's answer");
    let keys = vendor.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2, "the attempt and its hedge: {keys:?}");
    assert!(keys[0].is_some(), "{keys:?}");
    assert_eq!(keys[0], keys[1], "one key for both requests");
    // Another order is another operation: another key.
    vendor
        .script
        .lock()
        .unwrap()
        .push_back(Step::Answer(MS * 10, 3));
    search.place(43).await.unwrap();
    let keys = vendor.keys.lock().unwrap().clone();
    assert_ne!(keys[2], keys[0], "{keys:?}");
}

#[tokio::test(start_paused = true)]
async fn the_first_answer_wins_and_the_late_attempt_is_cancelled() {
    let (runtime, vendor, search) = search([
        Step::Answer(Duration::from_secs(1), 1),
        Step::Answer(MS * 10, 2),
    ]);
    let started = Instant::now();
    assert_eq!(search.fixed().await.unwrap(), 2, "the hedge's answer");
    assert_eq!(started.elapsed(), MS * 60, "50 ms late, then 10 ms");
    assert_eq!(vendor.requests.load(SeqCst), 2);
    assert_eq!(vendor.cancelled.load(SeqCst), 1, "the late one dropped");
    let status = hedges(&runtime, "fixed");
    assert_eq!((status.sent, status.won, status.skipped), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_answers_in_time_sends_no_hedge() {
    let (runtime, vendor, search) = search([Step::Answer(MS * 49, 7)]);
    assert_eq!(search.fixed().await.unwrap(), 7);
    assert_eq!(vendor.requests.load(SeqCst), 1);
    assert_eq!(hedges(&runtime, "fixed").sent, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_while_a_hedge_is_out_waits_for_the_hedge() {
    let (_runtime, _vendor, search) =
        search([Step::Fail(MS * 100, 503), Step::Answer(MS * 100, 2)]);
    let started = Instant::now();
    assert_eq!(search.fixed().await.unwrap(), 2);
    assert_eq!(started.elapsed(), MS * 150);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_first_failure_is_the_answer() {
    let (_runtime, vendor, search) = search([Step::Fail(MS * 100, 503), Step::Fail(MS * 100, 500)]);
    let error = search.fixed().await.unwrap_err();
    assert!(
        matches!(error, VendorError::Status(s) if s.as_u16() == 503),
        "{error:?}"
    );
    assert_eq!(vendor.requests.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_attempt_and_its_hedges_end_together_at_its_timeout() {
    let slow = Step::Answer(Duration::from_secs(1), 0);
    let (runtime, vendor, search) = search([slow, slow, slow]);
    let started = Instant::now();
    let error = search.twice().await.unwrap_err();
    assert!(
        matches!(error.seawall(), Some(seawall::Error::Timeout { .. })),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), MS * 200, "never longer than the timeout");
    assert_eq!(vendor.requests.load(SeqCst), 3, "one attempt, two hedges");
    assert_eq!(vendor.cancelled.load(SeqCst), 3);
    assert_eq!(hedges(&runtime, "twice").sent, 2);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_cancels_cancels_every_attempt() {
    let slow = Step::Answer(Duration::from_secs(1), 0);
    let (_runtime, vendor, search) = search([slow, slow]);
    let cut = tokio::time::timeout(MS * 100, search.fixed()).await;
    assert!(cut.is_err(), "the caller gave up");
    assert_eq!(vendor.requests.load(SeqCst), 2);
    assert_eq!(vendor.cancelled.load(SeqCst), 2, "neither left running");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_hedge_panics_the_call_and_stops_the_rest() {
    let (_runtime, vendor, search) = search([
        Step::Answer(Duration::from_secs(1), 1),
        Step::Panic(MS * 10),
    ]);
    let call = tokio::spawn(async move { search.fixed().await });
    let joined = call.await;
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic reaches the caller"
    );
    assert_eq!(
        vendor.cancelled.load(SeqCst),
        1,
        "the first attempt dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn no_hedge_goes_while_the_breaker_is_not_closed() {
    let fail = Step::Fail(MS, 503);
    let (runtime, vendor, search) = search([
        fail,
        fail,
        fail,
        fail,
        // The half-open probe: slow, and alone.
        Step::Answer(MS * 500, 9),
    ]);
    for _ in 0..4 {
        search.guarded().await.unwrap_err();
    }
    let breaker = runtime.breaker("search.guarded").unwrap();
    assert!(breaker.is_open());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(search.guarded().await.unwrap(), 9);
    assert_eq!(vendor.requests.load(SeqCst), 5, "no hedge beside the probe");
    let status = hedges(&runtime, "guarded");
    assert_eq!((status.sent, status.skipped), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_takes_a_rate_limiter_turn_only_when_one_is_free_at_once() {
    let slow = Step::Answer(MS * 500, 1);
    let (runtime, vendor, search) = search([slow]);
    // One call a second: the attempt took this second's turn, and a hedge
    // never waits for the next.
    assert_eq!(search.rationed().await.unwrap(), 1);
    assert_eq!(vendor.requests.load(SeqCst), 1);
    assert_eq!(hedges(&runtime, "rationed").skipped, 1);
    let limiter = runtime.rate_limiter("search.rationed").unwrap();
    assert_eq!(
        limiter.status().admitted,
        1,
        "the skipped hedge took no turn"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_takes_a_bulkhead_place_only_when_one_is_free_at_once() {
    let slow = Step::Answer(MS * 500, 1);
    let (runtime, vendor, search) = search([slow]);
    assert_eq!(search.narrow().await.unwrap(), 1);
    assert_eq!(vendor.requests.load(SeqCst), 1, "the one place was taken");
    assert_eq!(hedges(&runtime, "narrow").skipped, 1);
}

#[tokio::test(start_paused = true)]
async fn after_a_percentile_hedges_only_once_it_has_measured_the_method() {
    let (runtime, vendor, search) = search([]);
    for _ in 0..seawall::hedge::WARM_UP - 1 {
        search.tracking().await.unwrap();
    }
    let status = hedges(&runtime, "tracking");
    assert_eq!((status.after_ms, status.sent), (None, 0));
    assert_eq!(
        u64::from(vendor.requests.load(SeqCst)),
        seawall::hedge::WARM_UP - 1
    );
    search.tracking().await.unwrap();
    let after = hedges(&runtime, "tracking").after_ms.expect("measured");
    assert!((5.0..=1100.0).contains(&after), "{after} ms");
}

/// The p99 of `latencies`, sorted.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies[latencies.len() * 99 / 100]
}

/// 20 callers, 100 calls each, against a vendor answering in 5–15 ms but
/// in 1 s for one request in twenty (seeded). The p99 the callers saw, and
/// the vendor's requests per call.
async fn tail(method: fn(&Resilient<Vendor>) -> seawall_future::Call<'_>) -> (Duration, f64) {
    let (_runtime, vendor, search) = search([]);
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let search = search.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for _ in 0..100 {
                    let started = Instant::now();
                    method(&search).await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.extend(caller.await.unwrap());
    }
    let requests = f64::from(vendor.requests.load(SeqCst));
    (p99(&mut latencies), requests / latencies.len() as f64)
}

mod seawall_future {
    use super::VendorError;
    pub type Call<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, VendorError>> + Send + 'a>>;
}

#[tokio::test(start_paused = true)]
async fn hedging_cuts_the_tail_for_a_few_percent_more_requests() {
    let (plain_p99, plain_load) = tail(|s| Box::pin(s.plain())).await;
    let (fixed_p99, fixed_load) = tail(|s| Box::pin(s.fixed())).await;
    let (tracking_p99, tracking_load) = tail(|s| Box::pin(s.tracking())).await;
    eprintln!(
        "p99 / vendor requests per call — no hedge: {plain_p99:?} / {plain_load:.3}; \
         after 50ms: {fixed_p99:?} / {fixed_load:.3}; after p95: {tracking_p99:?} / {tracking_load:.3}"
    );
    assert!(
        plain_p99 >= Duration::from_secs(1),
        "the tail is the slow 5 %"
    );
    assert_eq!(plain_load, 1.0);
    assert!(
        fixed_p99 <= MS * 70,
        "{fixed_p99:?}: 50 ms late, then a fast answer"
    );
    assert!(fixed_load <= 1.07, "{fixed_load}: a hedge for the slow 5 %");
    assert!(tracking_p99 <= MS * 100, "{tracking_p99:?}");
    assert!(tracking_load <= 1.15, "{tracking_load}");
}

#[cfg(feature = "metrics")]
#[test]
fn hedges_go_through_the_metrics_facade() {
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
            let (_runtime, _vendor, search) = search([
                Step::Answer(Duration::from_secs(1), 1),
                Step::Answer(MS * 10, 2),
                Step::Answer(MS * 500, 3),
            ]);
            search.fixed().await.unwrap();
            // One place: the second call's hedge is skipped.
            search.narrow().await.unwrap();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let hedges = |method: &str, outcome: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            let labelled = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
            (key.name() == "seawall_hedges_total"
                && labelled("method", method)
                && labelled("outcome", outcome))
            .then_some(value)
        })
    };
    assert_eq!(hedges("fixed", "sent"), Some(&DebugValue::Counter(1)));
    assert_eq!(hedges("fixed", "won"), Some(&DebugValue::Counter(1)));
    assert_eq!(hedges("narrow", "skipped"), Some(&DebugValue::Counter(1)));
}

#[contract(
    name = "budgeted",
    retry_budget(ratio = 0.1, max = 1, min_per_second = 0)
)]
pub trait Budgeted {
    #[integration(read, timeout = "2s", retry(attempts = 2), hedge(after = "50ms"))]
    async fn find(&self) -> Result<u32, VendorError>;
}

impl Budgeted for Vendor {
    async fn find(&self) -> Result<u32, VendorError> {
        self.request().await
    }
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_from_the_retry_budget_and_stop_when_it_is_spent() {
    let slow = Step::Answer(Duration::from_secs(1), 1);
    let runtime = Runtime::in_memory();
    let vendor = Vendor::new([slow, Step::Answer(MS * 10, 2), slow]);
    let budgeted = Resilient::new(vendor.clone(), &runtime);
    // The budget's one token pays for the first call's hedge...
    assert_eq!(budgeted.find().await.unwrap(), 2);
    // ...and none is left for the second's: it waits for its slow answer.
    let started = Instant::now();
    assert_eq!(budgeted.find().await.unwrap(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(vendor.requests.load(SeqCst), 3);
    let status = hedges(&runtime, "find");
    assert_eq!((status.sent, status.won, status.skipped), (1, 1, 1));
}
