//! The vendor's `Retry-After`, `max_elapsed` and the retry budget, on tokio's
//! paused clock.

mod support;

use std::time::Duration;

use seawall::{Error, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[contract(name = "vendor")]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "10ms", cap = "30s", jitter = "none")
    )]
    async fn patient(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        deadline = "5s",
        retry(
            attempts = 3,
            base = "10ms",
            cap = "30s",
            jitter = "none",
            max_elapsed = "3s"
        )
    )]
    async fn hurried(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(
            attempts = 5,
            base = "100ms",
            cap = "1s",
            jitter = "none",
            max_elapsed = "250ms"
        )
    )]
    async fn brief(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s",
                  retry(attempts = 3, base = "10ms", cap = "10ms", on = ["retryable", "vendor_fault"]))]
    async fn lenient(&self) -> Result<usize, VendorError>;
}

impl Vendor for Script {
    async fn patient(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn hurried(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn brief(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn lenient(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

fn gaps(script: &Script) -> Vec<Duration> {
    script
        .call_times()
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_loop_waits_as_long_as_the_vendor_asked() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Throttled(429, SECOND * 3)], Step::Ok);
    let vendor = Resilient::new(script, &runtime);
    assert_eq!(vendor.patient().await.unwrap(), 2);
    assert_eq!(gaps(vendor.inner()), [SECOND * 3], "not the 10 ms backoff");
}

#[tokio::test(start_paused = true)]
async fn a_backoff_longer_than_the_vendor_asked_is_kept() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Fail(503), Step::Throttled(503, MS * 5)], Step::Ok);
    let vendor = Resilient::new(script, &runtime);
    assert_eq!(vendor.patient().await.unwrap(), 3);
    // The second backoff is 20 ms, longer than the 5 ms asked for.
    assert_eq!(gaps(vendor.inner()), [MS * 10, MS * 20]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_fails_at_once_with_the_vendors_time() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Throttled(503, SECOND * 10)), &runtime);
    let start = Instant::now();
    let result = vendor.hurried().await;
    assert!(
        matches!(seawall_error(&result), Error::RetryAfter { retry_after, attempts: 1, .. }
            if *retry_after == SECOND * 10),
        "{result:?}"
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no sleep into a certain failure"
    );
    assert_eq!(vendor.inner().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_backoff_cap_fails_at_once() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Throttled(429, SECOND * 120)), &runtime);
    let result = vendor.patient().await;
    assert!(
        matches!(seawall_error(&result), Error::RetryAfter { retry_after, .. }
        if *retry_after == SECOND * 120)
    );
    assert_eq!(vendor.inner().calls(), 1);
    // The error says when the vendor takes calls again, in its own words too.
    assert!(result.unwrap_err().to_string().contains("wait 120s"));
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_max_elapsed() {
    // Delays of 100 ms then 200 ms: the second retry would start at 300 ms,
    // past the 250 ms allowed.
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let start = Instant::now();
    let result = vendor.brief().await;
    assert!(
        matches!(
            seawall_error(&result),
            Error::RetriesExhausted { attempts: 2, .. }
        ),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn retry_on_widens_what_is_retried() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::new([Step::Fail(500)], Step::Ok), &runtime);
    assert_eq!(
        vendor.lenient().await.unwrap(),
        2,
        "a 500 retried when asked"
    );
    let vendor = Resilient::new(Script::always(Step::Fail(404)), &runtime);
    assert!(matches!(vendor.lenient().await, Err(VendorError::Status(s)) if s.as_u16() == 404));
    assert_eq!(vendor.inner().calls(), 1, "a 404 still is not");
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_draws_the_same_delays() {
    #[contract]
    pub trait Jittery {
        #[integration(read, timeout = "1s", retry(attempts = 4, base = "100ms", cap = "1s"))]
        async fn get(&self) -> Result<usize, VendorError>;
    }
    impl Jittery for Script {
        async fn get(&self) -> Result<usize, VendorError> {
            self.play().await
        }
    }
    let run = |seed| async move {
        let runtime = Runtime::builder().seed(seed).in_memory();
        let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
        let _ = vendor.get().await;
        let _ = vendor.get().await;
        gaps(vendor.inner())
    };
    let first = run(11).await;
    assert_eq!(first, run(11).await);
    assert_ne!(first, run(12).await);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_given_as_an_http_date_is_honoured_too() {
    // `Retry-After: <HTTP date>` three seconds ahead of the wall clock; HTTP
    // dates have whole seconds, so the wait is between two and three.
    let now = std::time::SystemTime::now();
    let date = httpdate::fmt_http_date(now + SECOND * 3);
    let header = http::HeaderValue::from_str(&date).unwrap();
    let wait = seawall::http::parse_retry_after(&header, now).expect("a date parses");
    assert!(wait > SECOND * 2 && wait <= SECOND * 3, "{wait:?}");
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(
        Script::new([Step::Throttled(503, wait)], Step::Ok),
        &runtime,
    );
    assert_eq!(vendor.patient().await.unwrap(), 2);
    // Timers fire on whole milliseconds: the wait, rounded up.
    let gap = gaps(vendor.inner())[0];
    assert!(gap >= wait && gap < wait + MS, "{gap:?} for {wait:?}");
}
