//! Per-attempt timeouts and the deadline of a whole logical call, on tokio's
//! paused clock.

mod support;

use std::time::Duration;

use seawall::{Error, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "100ms")]
    async fn once(&self) -> Result<usize, VendorError>;

    #[integration(
        read,
        timeout = "100ms",
        deadline = "320ms",
        retry(attempts = 3, base = "10ms", cap = "10ms", jitter = "none")
    )]
    async fn bounded(&self) -> Result<usize, VendorError>;
}

impl Vendor for Script {
    async fn once(&self) -> Result<usize, VendorError> {
        self.play().await
    }

    async fn bounded(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_slower_than_its_timeout_is_cut_off_at_the_timeout() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Slow(MS * 1000)), &runtime);
    let start = Instant::now();
    let result = vendor.once().await;
    assert!(matches!(seawall_error(&result), Error::Timeout { after } if *after == MS * 100));
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_within_its_timeout_is_left_alone() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Slow(MS * 99)), &runtime);
    let start = Instant::now();
    assert_eq!(vendor.once().await.unwrap(), 1);
    assert_eq!(start.elapsed(), MS * 99);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_shortens_an_attempt_to_what_is_left_of_it() {
    // The first attempt overruns its timeout (blocking work no timer can
    // interrupt) and takes 250 ms; after 10 ms of backoff only 60 ms of the
    // 320 ms deadline are left, so the second attempt gets 60 ms, not 100.
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Overrun(MS * 250, 503)], Step::Slow(MS * 1000));
    let vendor = Resilient::new(script, &runtime);
    let start = Instant::now();
    let result = vendor.bounded().await;
    assert!(
        matches!(
            seawall_error(&result),
            Error::DeadlineExceeded { deadline, attempts: 2 } if *deadline == MS * 320
        ),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), MS * 320);
    assert_eq!(vendor.inner().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_that_would_cross_the_deadline_ends_the_call_at_once() {
    // 312 ms in, a 10 ms backoff would end past the 320 ms deadline: the call
    // fails now instead of sleeping into a certain failure.
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Overrun(MS * 312, 503)), &runtime);
    let start = Instant::now();
    let result = vendor.bounded().await;
    assert!(
        matches!(
            seawall_error(&result),
            Error::DeadlineExceeded { attempts: 1, .. }
        ),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), MS * 312);
    assert_eq!(vendor.inner().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_within_its_deadline_keeps_retrying() {
    let runtime = Runtime::in_memory();
    let script = Script::new([Step::Slow(MS * 1000), Step::Slow(MS * 1000)], Step::Ok);
    let vendor = Resilient::new(script, &runtime);
    let start = Instant::now();
    assert_eq!(vendor.bounded().await.unwrap(), 3);
    // Two timeouts and two backoffs: exactly the worst case before the last.
    assert_eq!(start.elapsed(), MS * 220);
}

/// On the real clock: a blocked thread is real time, which tokio's paused
/// clock does not see.
#[tokio::test]
async fn an_adapter_that_blocks_its_thread_is_counted_since_its_timeout_cannot_fire() {
    let runtime = Runtime::in_memory();
    let script = Script::new(
        [Step::Block(MS * 400), Step::Block(MS * 400), Step::Ok],
        Step::Ok,
    );
    let vendor = Resilient::new(script, &runtime);
    // No timer can interrupt a blocked thread: the 100 ms timeout is not
    // enforced, and the answer comes back.
    assert_eq!(vendor.once().await.unwrap(), 1);
    assert_eq!(vendor.once().await.unwrap(), 2);
    assert_eq!(vendor.once().await.unwrap(), 3, "a prompt answer");
    let health = runtime.health();
    let once = health
        .endpoints
        .iter()
        .find(|e| e.method == "once")
        .unwrap();
    assert_eq!(once.blocked_attempts, 2);
}
