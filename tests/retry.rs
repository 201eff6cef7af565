//! Retries: only retryable errors, spaced by exponential backoff within its
//! jitter bounds, on tokio's paused clock.

mod support;

use std::time::Duration;

use seawall::{Error, ErrorClass, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "1s", retry(attempts = 3, base = "100ms", cap = "1s"))]
    async fn three(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 5, base = "100ms", cap = "1s", jitter = "full")
    )]
    async fn full(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 6, base = "100ms", cap = "500ms", jitter = "none")
    )]
    async fn exact(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn single(&self) -> Result<usize, VendorError>;
}

impl Vendor for Script {
    async fn three(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn full(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn exact(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn single(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_until_one_attempt_succeeds() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Fail(503), Step::Fail(429)], Step::Ok);
    let vendor = Resilient::new(script, &runtime);
    assert_eq!(vendor.three().await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Slow(MS * 5000)], Step::Ok);
    let vendor = Resilient::new(script, &runtime);
    assert_eq!(vendor.three().await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_carry_the_last_error_and_its_class() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let result = vendor.three().await;
    let Error::RetriesExhausted {
        attempts,
        class,
        last,
    } = seawall_error(&result)
    else {
        panic!("expected exhausted retries, got {result:?}");
    };
    assert_eq!(*attempts, 3);
    assert_eq!(*class, ErrorClass::Retryable);
    let last = last
        .downcast_ref::<VendorError>()
        .expect("the vendor's own error");
    assert!(matches!(last, VendorError::Status(s) if s.as_u16() == 503));
    assert_eq!(vendor.inner().calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_stops_the_retries_and_reaches_the_caller_as_it_is() {
    for code in [400, 401, 403, 404, 409, 422, 500, 501] {
        let runtime = Runtime::in_memory();
        let vendor = Resilient::new(Script::always(Step::Fail(code)), &runtime);
        let start = Instant::now();
        let result = vendor.three().await;
        assert!(
            matches!(&result, Err(VendorError::Status(s)) if s.as_u16() == code),
            "{code}: {result:?}"
        );
        assert_eq!(vendor.inner().calls(), 1, "{code} must not be retried");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn without_retry_the_vendor_error_reaches_the_caller_unwrapped() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let result = vendor.single().await;
    assert!(matches!(&result, Err(VendorError::Status(s)) if s.as_u16() == 503));
    assert_eq!(vendor.inner().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_jitter_delays_double_from_base_up_to_cap() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let _ = vendor.exact().await;
    assert_eq!(
        gaps(&vendor.inner().call_times()),
        [100, 200, 400, 500, 500].map(|ms| MS * ms)
    );
}

#[tokio::test(start_paused = true)]
async fn full_jitter_keeps_every_delay_within_its_bound_and_spreads_them() {
    let mut first_gaps = Vec::new();
    for _ in 0..50 {
        let runtime = Runtime::in_memory();
        let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
        let _ = vendor.full().await;
        let gaps = gaps(&vendor.inner().call_times());
        assert_eq!(gaps.len(), 4);
        for (retry, gap) in gaps.iter().enumerate() {
            let bound = (MS * 100 * (1 << retry)).min(MS * 1000);
            assert!(*gap <= bound, "retry {retry} slept {gap:?}, over {bound:?}");
        }
        first_gaps.push(gaps[0]);
    }
    // Fifty clients failing together must not retry together. Timers tick in
    // whole milliseconds, so the first delay takes one of 101 values in
    // 0..=100 ms; fifty uniform draws hit about 40 distinct ones and span
    // most of the range (fewer than 20, or a span under 60 ms, has odds
    // below one in a billion).
    let spread = *first_gaps.iter().max().unwrap() - *first_gaps.iter().min().unwrap();
    assert!(spread >= MS * 60, "the first delays span only {spread:?}");
    first_gaps.sort();
    first_gaps.dedup();
    assert!(
        first_gaps.len() >= 20,
        "only {} distinct delays",
        first_gaps.len()
    );
}
