//! `rate(limit = .., burst = .., max_wait = .., name = ..)`: calls reach
//! the vendor at the rate, callers wait their turn first come first served
//! or are refused without calling it, a named limiter is shared across
//! contracts, a cancelled waiter hands its turn back, and a vendor's
//! `Retry-After` pauses every caller. Then a simulation against a vendor
//! that enforces its quota with 429s: the limiter against naive retries.
//! All on tokio's paused clock.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::{Resilient, Runtime, contract};
use support::VendorError;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A vendor that records when each request arrived; it answers at once,
/// or with 429 and `Retry-After` when told to.
#[derive(Clone, Default)]
struct Vendor {
    arrivals: Arc<Mutex<Vec<Duration>>>,
    throttle_next: Arc<Mutex<Option<Duration>>>,
    /// Requests to answer 503 (no `Retry-After`) before the others.
    fail_next: Arc<Mutex<u32>>,
    start: Arc<Mutex<Option<Instant>>>,
}

impl Vendor {
    fn answer(&self) -> Result<u32, VendorError> {
        let mut start = self.start.lock().unwrap();
        let start = *start.get_or_insert_with(Instant::now);
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(start.elapsed());
        let mut fail = self.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(VendorError::status(503));
        }
        if let Some(after) = self.throttle_next.lock().unwrap().take() {
            return Err(VendorError::Throttled(
                http::StatusCode::TOO_MANY_REQUESTS,
                after,
            ));
        }
        Ok(arrivals.len() as u32)
    }

    fn arrivals(&self) -> Vec<Duration> {
        self.arrivals.lock().unwrap().clone()
    }
}

#[contract(name = "crm")]
pub trait Crm {
    #[integration(
        read,
        timeout = "1s",
        rate(limit = "10/1s", burst = 2, max_wait = "1s")
    )]
    async fn account(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "1s", rate(limit = "10/1s", max_wait = "150ms"))]
    async fn impatient(&self) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "500ms",
        deadline = "2s",
        retry(attempts = 2, base = "600ms", cap = "600ms", jitter = "none"),
        rate(limit = "5/6s", max_wait = "1900ms")
    )]
    async fn bounded(&self) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        rate(limit = "10/1s", max_wait = "5s", name = "hubspot")
    )]
    async fn shared(&self) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 2, base = "10ms", cap = "5s"),
        rate(limit = "100/1s", burst = 10, max_wait = "500ms")
    )]
    async fn throttled(&self) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "10ms", cap = "10ms", jitter = "none"),
        rate(limit = "10/1s", max_wait = "1s")
    )]
    async fn retried(&self) -> Result<u32, VendorError>;
}

#[contract(name = "billing")]
pub trait Billing {
    #[integration(
        read,
        timeout = "1s",
        rate(limit = "10/1s", max_wait = "5s", name = "hubspot")
    )]
    async fn invoice(&self) -> Result<u32, VendorError>;
}

/// One limiter for the whole contract, named after it; a method with a
/// `rate` of its own keeps its own.
#[contract(name = "erp", rate(limit = "10/1s", max_wait = "5s"))]
pub trait Erp {
    #[integration(read, timeout = "1s")]
    async fn order(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn stock(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "1s", rate(limit = "1000/1s"))]
    async fn ping(&self) -> Result<u32, VendorError>;
}

impl Erp for Vendor {
    async fn order(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn stock(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn ping(&self) -> Result<u32, VendorError> {
        self.answer()
    }
}

#[tokio::test(start_paused = true)]
async fn a_contracts_rate_is_one_limiter_for_its_methods_without_their_own() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let erp = Resilient::new(vendor.clone(), &runtime);
    erp.order().await.unwrap();
    erp.stock().await.unwrap();
    erp.order().await.unwrap();
    erp.ping().await.unwrap();
    assert_eq!(
        vendor.arrivals(),
        [Duration::ZERO, MS * 100, MS * 200, MS * 200],
        "order and stock share the contract's turns; ping has its own"
    );
    assert_eq!(runtime.rate_limiter("erp").unwrap().status().admitted, 3);
    assert_eq!(
        runtime.rate_limiter("erp.ping").unwrap().status().admitted,
        1
    );
}

impl Crm for Vendor {
    async fn account(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn impatient(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn bounded(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn shared(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn throttled(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn retried(&self) -> Result<u32, VendorError> {
        self.answer()
    }
}

impl Billing for Vendor {
    async fn invoice(&self) -> Result<u32, VendorError> {
        self.answer()
    }
}

fn crm(runtime: &Runtime) -> (Vendor, Arc<Resilient<Vendor>>) {
    let vendor = Vendor::default();
    (vendor.clone(), Arc::new(Resilient::new(vendor, runtime)))
}

fn rate_limited(error: &VendorError) -> Option<Duration> {
    match error.seawall() {
        Some(seawall::Error::RateLimited { retry_in, .. }) => Some(*retry_in),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn calls_reach_the_vendor_at_the_rate_and_the_rest_wait_their_turn_in_order() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    let mut calls = Vec::new();
    for n in 0..6 {
        let crm = crm.clone();
        calls.push(tokio::spawn(async move { (n, crm.account().await) }));
        // Each caller starts after the one before.
        tokio::task::yield_now().await;
    }
    for call in calls {
        let (n, answer) = call.await.unwrap();
        assert_eq!(answer.unwrap(), n + 1, "served in the order they came");
    }
    // Two at once (the burst), then one every 100 ms.
    assert_eq!(
        vendor.arrivals(),
        [
            Duration::ZERO,
            Duration::ZERO,
            MS * 100,
            MS * 200,
            MS * 300,
            MS * 400
        ]
    );
    let status = runtime.rate_limiter("crm.account").unwrap().status();
    assert_eq!((status.admitted, status.waited, status.refused), (6, 4, 0));
}

#[tokio::test(start_paused = true)]
async fn every_attempt_takes_a_turn_so_retries_stay_within_the_quota() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    // Two 503s, then an answer: the backoff is 10 ms, but each retry waits
    // for the limiter's next turn, 100 ms after the one before.
    *vendor.fail_next.lock().unwrap() = 2;
    assert_eq!(crm.retried().await.unwrap(), 3);
    assert_eq!(vendor.arrivals(), [Duration::ZERO, MS * 100, MS * 200]);
    let status = runtime.rate_limiter("crm.retried").unwrap().status();
    assert_eq!((status.admitted, status.waited), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_call_with_no_turn_within_max_wait_is_refused_without_calling_the_vendor() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let crm = crm.clone();
            tokio::spawn(async move { crm.impatient().await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    // At 0 and at 100 ms; the third's turn (200 ms) is past its 150 ms wait.
    assert_eq!(vendor.arrivals(), [Duration::ZERO, MS * 100]);
    let refused = answers[2].as_ref().unwrap_err();
    assert_eq!(rate_limited(refused), Some(MS * 200), "{refused}");
    let health = runtime.health();
    let limiter = health
        .limiters
        .iter()
        .find(|l| l.name == "crm.impatient")
        .unwrap();
    assert_eq!((limiter.admitted, limiter.refused), (2, 1));
    let endpoint = health
        .endpoints
        .iter()
        .find(|e| e.method == "impatient")
        .unwrap();
    assert_eq!(endpoint.calls.rejected, 1, "{endpoint:?}");
    assert_eq!(endpoint.attempts.total, 2);
}

#[tokio::test(start_paused = true)]
async fn no_caller_waits_past_its_deadline() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    // One request every 1.2 s. The first call's request fails (503) and it
    // retries at 600 ms; meanwhile another caller took the turn at 1.2 s,
    // so the retry's turn is at 2.4 s: within `max_wait` (1.8 s away) but
    // past the deadline (1.4 s left). It is refused at once.
    *vendor.fail_next.lock().unwrap() = 1;
    let first = tokio::spawn({
        let crm = crm.clone();
        async move { (crm.bounded().await, Instant::now()) }
    });
    tokio::time::sleep(MS).await;
    let second = tokio::spawn({
        let crm = crm.clone();
        async move { crm.bounded().await }
    });
    let (refused, at) = first.await.unwrap();
    let refused = refused.unwrap_err();
    assert_eq!(rate_limited(&refused), Some(MS * 1800), "{refused}");
    assert_eq!(second.await.unwrap().unwrap(), 2);
    assert_eq!(vendor.arrivals(), [Duration::ZERO, MS * 1200]);
    let started = at - MS * 600;
    assert!(
        at.duration_since(started) == MS * 600,
        "refused when it retried, not later"
    );
}

#[tokio::test(start_paused = true)]
async fn a_named_limiter_is_shared_by_every_method_of_any_contract_that_names_it() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let crm = Arc::new(Resilient::new(vendor.clone(), &runtime));
    let billing = Arc::new(Resilient::new(vendor.clone(), &runtime));
    let mut calls = Vec::new();
    for n in 0..4 {
        let (crm, billing) = (crm.clone(), billing.clone());
        calls.push(tokio::spawn(async move {
            if n % 2 == 0 {
                crm.shared().await
            } else {
                billing.invoice().await
            }
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        vendor.arrivals(),
        [Duration::ZERO, MS * 100, MS * 200, MS * 300]
    );
    let names: Vec<_> = runtime
        .rate_limiters()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    assert!(names.contains(&"hubspot".to_owned()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n == "crm.shared" || n == "billing.invoice"),
        "one limiter for both methods: {names:?}"
    );
    assert_eq!(
        runtime.rate_limiter("hubspot").unwrap().status().admitted,
        4
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_hands_its_turn_back() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    // The burst of two goes; the third waits for 100 ms, and gives up.
    crm.account().await.unwrap();
    crm.account().await.unwrap();
    let gave_up = tokio::time::timeout(MS * 50, crm.account()).await;
    assert!(gave_up.is_err(), "cancelled while waiting");
    // Its turn was handed back: the next caller has it, at 100 ms.
    crm.account().await.unwrap();
    assert_eq!(
        vendor.arrivals(),
        [Duration::ZERO, Duration::ZERO, MS * 100]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_every_caller_of_the_limiter() {
    let runtime = Runtime::in_memory();
    let (vendor, crm) = crm(&runtime);
    *vendor.throttle_next.lock().unwrap() = Some(Duration::from_secs(2));
    let started = Instant::now();
    let first = tokio::spawn({
        let crm = crm.clone();
        async move { crm.throttled().await }
    });
    tokio::time::sleep(MS * 10).await;
    // Paused for 2 s: a caller whose wait is 500 ms fails fast, without a
    // request of its own.
    let refused = crm.throttled().await.unwrap_err();
    assert!(rate_limited(&refused).is_some(), "{refused}");
    assert!(started.elapsed() < MS * 20, "at once");
    // The throttled call retries once the pause is over.
    assert_eq!(first.await.unwrap().unwrap(), 2);
    assert_eq!(vendor.arrivals(), [Duration::ZERO, MS * 2000]);
    let status = runtime.rate_limiter("crm.throttled").unwrap().status();
    assert_eq!((status.pauses, status.refused), (1, 1));
}

/// A contract without a rate limiter.
#[contract(name = "mail")]
pub trait Mail {
    #[integration(read, timeout = "1s", retry(attempts = 2, base = "10ms", cap = "5s"))]
    async fn inbox(&self) -> Result<u32, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn folders(&self) -> Result<u32, VendorError>;
}

impl Mail for Vendor {
    async fn inbox(&self) -> Result<u32, VendorError> {
        self.answer()
    }

    async fn folders(&self) -> Result<u32, VendorError> {
        self.answer()
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_limiter_retry_after_pauses_the_whole_contract() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let mail = Arc::new(Resilient::new(vendor.clone(), &runtime));
    *vendor.throttle_next.lock().unwrap() = Some(Duration::from_secs(3));
    let first = tokio::spawn({
        let mail = mail.clone();
        async move { mail.inbox().await }
    });
    tokio::time::sleep(MS * 10).await;
    // Another method of the contract, during the pause: refused at once,
    // named after the contract, without a request.
    let refused = mail.folders().await.unwrap_err();
    match refused.seawall() {
        Some(seawall::Error::RateLimited { limiter, retry_in }) => {
            assert_eq!(&**limiter, "mail");
            assert_eq!(*retry_in, MS * 2990);
        }
        other => panic!("{other:?}"),
    }
    let health = runtime.health();
    assert_eq!(health.paused.len(), 1, "{:?}", health.paused);
    assert_eq!(health.paused[0].contract, "mail");
    // The throttled call retries when the pause ends, and so may everyone.
    assert_eq!(first.await.unwrap().unwrap(), 2);
    assert_eq!(mail.folders().await.unwrap(), 3);
    assert_eq!(vendor.arrivals(), [Duration::ZERO, MS * 3000, MS * 3000]);
    assert!(runtime.health().paused.is_empty());
}

// ---------------------------------------------------------------------------
// The quota simulation: a vendor enforcing 100 requests per 10 s with 429
// and `Retry-After`, 20 callers offering 30 requests/s for 60 s.

/// A vendor that takes at most `limit` requests in any `period` (a sliding
/// log), and answers the rest 429 with `Retry-After` until the oldest leaves
/// the window.
#[derive(Clone)]
struct Quota {
    limit: usize,
    period: Duration,
    taken: Arc<Mutex<VecDeque<Instant>>>,
    counts: Arc<Mutex<(u64, u64)>>,
}

impl Quota {
    fn new(limit: usize, period: Duration) -> Self {
        Self {
            limit,
            period,
            taken: Arc::default(),
            counts: Arc::default(),
        }
    }

    fn request(&self) -> Result<u32, VendorError> {
        let now = Instant::now();
        let mut taken = self.taken.lock().unwrap();
        while taken
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.period)
        {
            taken.pop_front();
        }
        let mut counts = self.counts.lock().unwrap();
        if taken.len() < self.limit {
            taken.push_back(now);
            counts.0 += 1;
            Ok(0)
        } else {
            counts.1 += 1;
            let oldest = *taken.front().expect("a full window");
            let after = self.period - now.duration_since(oldest);
            // Retry-After is in whole seconds, rounded up.
            let after = Duration::from_secs(after.as_secs() + u64::from(after.subsec_nanos() > 0));
            Err(VendorError::Throttled(
                http::StatusCode::TOO_MANY_REQUESTS,
                after,
            ))
        }
    }
}

#[contract(name = "quota")]
pub trait Limited {
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "100ms", cap = "10s"),
        rate(limit = "100/10s", max_wait = "2s")
    )]
    async fn fetch(&self) -> Result<u32, VendorError>;
}

#[contract(name = "unlimited")]
pub trait Unlimited {
    #[integration(read, timeout = "1s", retry(attempts = 3, base = "100ms", cap = "10s"))]
    async fn fetch(&self) -> Result<u32, VendorError>;
}

impl Limited for Quota {
    async fn fetch(&self) -> Result<u32, VendorError> {
        self.request()
    }
}

impl Unlimited for Quota {
    async fn fetch(&self) -> Result<u32, VendorError> {
        self.request()
    }
}

/// What one strategy got: vendor requests accepted and refused with 429,
/// and caller calls answered.
#[derive(Debug)]
struct Run {
    accepted: u64,
    throttled: u64,
    answered: u64,
}

impl Run {
    fn throttled_share(&self) -> f64 {
        self.throttled as f64 / (self.accepted + self.throttled) as f64
    }
}

/// 20 callers, each offering a call every 2/3 s (30 per second together),
/// for 60 s, against a fresh quota.
async fn simulate<F, Fut>(quota: &Quota, call: F) -> Run
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let answered = Arc::new(Mutex::new(0u64));
    let end = Instant::now() + Duration::from_secs(60);
    let mut callers = Vec::new();
    for caller in 0..20u64 {
        let (call, answered) = (call.clone(), answered.clone());
        callers.push(tokio::spawn(async move {
            // Staggered, so that the offered load is even.
            let mut next = Instant::now() + Duration::from_millis(caller * 2000 / 60);
            while next < end {
                tokio::time::sleep_until(next).await;
                let call = call.clone();
                let answered = answered.clone();
                // Each call on its own task: a slow call does not hold back
                // the caller's next one.
                tokio::spawn(async move {
                    if call().await {
                        *answered.lock().unwrap() += 1;
                    }
                });
                next += Duration::from_millis(2000 / 3);
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    // Let the calls in flight end (retries and waits are bounded).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (accepted, throttled) = *quota.counts.lock().unwrap();
    let answered = *answered.lock().unwrap();
    Run {
        accepted,
        throttled,
        answered,
    }
}

#[tokio::test(start_paused = true)]
async fn against_a_vendors_quota_the_limiter_keeps_429s_under_1_percent_and_goodput_over_95_percent()
 {
    let runtime = Runtime::builder().seed(7).in_memory();
    let quota = Quota::new(100, Duration::from_secs(10));
    let limited = Arc::new(Resilient::new(quota.clone(), &runtime));
    let with_limiter = simulate(&quota, move || {
        let limited = limited.clone();
        async move { Limited::fetch(&*limited).await.is_ok() }
    })
    .await;

    // seawall without a limiter: the first 429's `Retry-After` pauses the
    // contract, and every caller fails fast until it ends.
    let runtime = Runtime::builder().seed(7).in_memory();
    let quota = Quota::new(100, Duration::from_secs(10));
    let paused = Arc::new(Resilient::new(quota.clone(), &runtime));
    let contract_pause = simulate(&quota, move || {
        let paused = paused.clone();
        async move { Unlimited::fetch(&*paused).await.is_ok() }
    })
    .await;

    // Naive per-call retries, by hand: 3 attempts, each retry after the
    // vendor's `Retry-After`; every caller finds the limit on its own.
    let quota = Quota::new(100, Duration::from_secs(10));
    let naive_quota = quota.clone();
    let naive_retries = simulate(&quota, move || {
        let quota = naive_quota.clone();
        async move {
            for _ in 0..3 {
                match quota.request() {
                    Ok(_) => return true,
                    Err(VendorError::Throttled(_, after)) => tokio::time::sleep(after).await,
                    Err(_) => return false,
                }
            }
            false
        }
    })
    .await;

    for (what, run) in [
        ("with the limiter", &with_limiter),
        ("contract paused", &contract_pause),
        ("naive retries", &naive_retries),
    ] {
        println!(
            "{what:>16}: {run:?}, 429s {:.2} %",
            run.throttled_share() * 100.0
        );
    }
    // The quota over the 60 s of offered load is 600 requests (the calls
    // still waiting at the end may take up to one more window's worth).
    let quota_60s = 600.0;
    assert!(
        with_limiter.throttled_share() <= 0.01,
        "429s: {with_limiter:?}"
    );
    assert!(
        with_limiter.answered as f64 >= 0.95 * quota_60s,
        "goodput: {with_limiter:?}"
    );
    // The pause alone: one 429 per window or so, and the quota's goodput.
    assert!(
        contract_pause.throttled_share() <= 0.02,
        "{contract_pause:?}"
    );
    assert!(contract_pause.answered as f64 >= 0.95 * quota_60s);
    // Naive retries find the limit with a rejected request each time.
    assert!(naive_retries.throttled_share() > 0.5, "{naive_retries:?}");
}

/// The value of the counter `name` whose labels include `labels`, in a
/// metrics snapshot.
#[cfg(feature = "metrics")]
fn counter_in(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        metrics_util::debugging::DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key = key.key();
        let matches = key.name() == name
            && labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
        match (matches, value) {
            (true, metrics_util::debugging::DebugValue::Counter(n)) => Some(*n),
            _ => None,
        }
    })
}

#[cfg(feature = "metrics")]
#[test]
fn waits_refusals_and_pauses_go_through_the_metrics_facade() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tokio.block_on(async {
            let runtime = Runtime::in_memory();
            let (vendor, crm) = crm(&runtime);
            // Three at once against "10/1s" with a 150 ms wait: one goes,
            // one waits its turn, one is refused.
            let calls: Vec<_> = (0..3)
                .map(|_| {
                    let crm = crm.clone();
                    tokio::spawn(async move { crm.impatient().await })
                })
                .collect();
            for call in calls {
                let _ = call.await.unwrap();
            }
            // A 429 with Retry-After pauses the throttled method's limiter.
            *vendor.throttle_next.lock().unwrap() = Some(Duration::from_secs(1));
            crm.throttled().await.unwrap();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let limiter = |outcome| {
        counter_in(
            &snapshot,
            "seawall_rate_limiter_total",
            &[("limiter", "crm.impatient"), ("outcome", outcome)],
        )
    };
    assert_eq!(limiter("waited"), Some(1));
    assert_eq!(limiter("refused"), Some(1));
    assert_eq!(
        counter_in(
            &snapshot,
            "seawall_rate_limiter_pauses_total",
            &[("limiter", "crm.throttled")]
        ),
        Some(1)
    );
}
