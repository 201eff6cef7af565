//! `fallback = cache(..)`: reads served from their last good answer while
//! the vendor is unavailable, with its age; on tokio's paused clock, against
//! the generated double (`#[contract(mock)]`), and across a restart with the
//! embedded store.

mod support;

use std::time::Duration;

use seawall::{Cached, Resilient, Runtime, contract};
use support::{Script, Step, VendorError};

const MINUTE: Duration = Duration::from_secs(60);

#[contract(name = "crm", mock)]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(attempts = 2, base = "10ms", cap = "10ms", jitter = "none"),
                  breaker(window = 4, min_calls = 4), fallback = cache(max_stale = "1h"))]
    async fn account(&self, id: &str) -> Result<Cached<String>, VendorError>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "10m"))]
    async fn name(&self, id: &str) -> Result<String, VendorError>;
}

/// The generated double, and the wrapper around it.
fn crm() -> (MockCrm, Resilient<MockCrm>) {
    let mock = MockCrm::new();
    let crm = Resilient::new(mock.clone(), &Runtime::in_memory());
    (mock, crm)
}

/// The vendor's answer for `id`, fresh.
fn answer(id: &String, version: u32) -> Result<Cached<String>, VendorError> {
    Ok(format!("{id} v{version}").into())
}

#[tokio::test(start_paused = true)]
async fn a_fresh_answer_says_so() {
    let (mock, crm) = crm();
    mock.account().returns_with(|id| answer(id, 1));
    let answer = crm.account("a-1").await.unwrap();
    assert_eq!(answer.value(), "a-1 v1");
    assert!(!answer.is_stale());
    assert_eq!(answer.age(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn while_the_vendor_fails_the_last_good_answer_is_served_with_its_age() {
    let (mock, crm) = crm();
    mock.account()
        .returns_with(|id| answer(id, 1))
        .otherwise_fails(|| VendorError::status(503));
    crm.account("a-1").await.unwrap();
    tokio::time::advance(MINUTE * 5).await;
    let answer = crm.account("a-1").await.unwrap();
    assert_eq!(answer.value(), "a-1 v1");
    assert!(answer.is_stale());
    // Five minutes, plus the retry's 10 ms backoff before giving up.
    assert_eq!(answer.age(), MINUTE * 5 + Duration::from_millis(10));
    mock.account().assert_called(3);
}

#[tokio::test(start_paused = true)]
async fn an_answer_older_than_max_stale_is_not_served() {
    let (mock, crm) = crm();
    mock.account()
        .returns_with(|id| answer(id, 1))
        .otherwise_fails(|| VendorError::status(503));
    crm.account("a-1").await.unwrap();
    tokio::time::advance(MINUTE * 61).await;
    assert!(crm.account("a-1").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_the_vendors_answer_and_is_not_papered_over() {
    let (mock, crm) = crm();
    mock.account()
        .returns_with(|id| answer(id, 1))
        .otherwise_fails(|| VendorError::status(404));
    crm.account("a-1").await.unwrap();
    let result = crm.account("a-1").await;
    assert!(matches!(result, Err(VendorError::Status(s)) if s.as_u16() == 404));
}

#[tokio::test(start_paused = true)]
async fn each_set_of_arguments_has_its_own_answer() {
    let (mock, crm) = crm();
    mock.account()
        .returns_with(|id| answer(id, 1))
        .returns_with(|id| answer(id, 2))
        .otherwise_fails(|| VendorError::status(503));
    crm.account("a-1").await.unwrap();
    crm.account("a-2").await.unwrap();
    assert_eq!(crm.account("a-1").await.unwrap().value(), "a-1 v1");
    assert_eq!(crm.account("a-2").await.unwrap().value(), "a-2 v2");
    assert!(
        crm.account("a-3").await.is_err(),
        "never answered, nothing to serve"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_answered_from_the_cache_without_calling_the_vendor() {
    let (mock, crm) = crm();
    mock.account()
        .returns_with(|id| answer(id, 1))
        .otherwise_fails(|| VendorError::status(503));
    crm.account("a-1").await.unwrap();
    // Two calls, two attempts each: four failures open the breaker.
    for _ in 0..2 {
        assert!(crm.account("a-1").await.unwrap().is_stale());
    }
    let calls = mock.account().call_count();
    let answer = crm.account("a-1").await.unwrap();
    assert!(answer.is_stale());
    mock.account().assert_called(calls); // the breaker rejected the call
}

#[tokio::test(start_paused = true)]
async fn a_read_without_cached_in_its_type_gets_the_value_alone() {
    let (mock, crm) = crm();
    mock.name()
        .returns_with(|id| Ok(format!("{id} v1")))
        .returns_with(|id| Ok(format!("{id} v2")))
        .delays(Duration::from_secs(5))
        .otherwise_fails(|| VendorError::status(503));
    assert_eq!(crm.name("a-1").await.unwrap(), "a-1 v1");
    tokio::time::advance(MINUTE).await;
    assert_eq!(
        crm.name("a-1").await.unwrap(),
        "a-1 v1",
        "served after a timeout"
    );
    tokio::time::advance(MINUTE * 10).await;
    assert!(crm.name("a-1").await.is_err(), "older than 10 minutes");
}

#[contract(name = "directory")]
pub trait Directory {
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn profile(&self, id: &str) -> Result<Cached<String>, VendorError>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "200ms"))]
    async fn presence(&self, id: &str) -> Result<String, VendorError>;
}

impl Directory for Script {
    async fn profile(&self, id: &str) -> Result<Cached<String>, VendorError> {
        let call = self.play().await?;
        Ok(format!("{id} v{call}").into())
    }

    async fn presence(&self, id: &str) -> Result<String, VendorError> {
        let call = self.play().await?;
        Ok(format!("{id} online v{call}"))
    }
}

#[tokio::test]
async fn with_the_embedded_store_cached_answers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        let directory = Resilient::new(Script::always(Step::Ok), &runtime);
        assert!(!directory.profile("a-1").await.unwrap().is_stale());
        directory.presence("a-1").await.unwrap();
        // Dropping the runtime writes what is pending and closes the file.
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let runtime = Runtime::embedded(dir.path()).unwrap();
    let directory = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let answer = directory.profile("a-1").await.unwrap();
    assert_eq!(answer.value(), "a-1 v1");
    assert!(answer.is_stale());
    assert!(
        answer.age() >= Duration::from_millis(300) && answer.age() < MINUTE,
        "the age counts from the first process's answer: {:?}",
        answer.age()
    );
    // Other arguments had no answer to keep.
    assert!(directory.profile("a-2").await.is_err());
    // An answer kept on disk is still bound by its `max_stale`.
    assert!(directory.presence("a-1").await.is_err());
}
