//! `#[contract(mock)]`: the generated double scripts answers, delays and
//! faults per method, records its calls, and stands in for an adapter
//! behind `Resilient` (breaker, cache, queued writes). On tokio's paused
//! clock.

mod support;

use std::time::Duration;

use seawall::mock::{Faults, Opaque};
use seawall::wal::TicketStatus;
use seawall::{BreakerState, Cached, Delivery, Error, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use support::{VendorError, seawall_error};
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(pub String);

/// Every shape of argument: by reference, by value, a generic, a lifetime,
/// none at all.
#[contract(name = "crm", mock)]
pub trait Crm {
    #[integration(
        read,
        timeout = "1s",
        breaker(failure_rate = 0.5, window = 4, min_calls = 4, open_for = "10s")
    )]
    async fn account(&self, id: &str) -> Result<String, VendorError>;

    #[integration(read, timeout = "1s", retry(attempts = 2, base = "10ms", cap = "10ms", jitter = "none"),
                  fallback = cache(max_stale = "1h"))]
    async fn name(&self, id: &AccountId) -> Result<Cached<String>, VendorError>;

    #[integration(write, timeout = "1s")]
    async fn note(&self, id: &AccountId, text: String, pinned: bool) -> Result<u64, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn search<'a, Q: AsRef<str> + Send + Sync>(
        &self,
        prefix: &'a str,
        query: Q,
        limit: usize,
    ) -> Result<Vec<String>, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn ping(&self) -> Result<(), VendorError>;
}

fn unavailable() -> VendorError {
    VendorError::status(503)
}

fn status(result: &Result<impl std::fmt::Debug, VendorError>) -> u16 {
    match result {
        Err(VendorError::Status(status)) => status.as_u16(),
        other => panic!("expected a vendor status, got {other:?}"),
    }
}

// --- The double on its own -------------------------------------------------

#[tokio::test]
async fn scripted_answers_come_in_order_then_the_default() {
    let crm = MockCrm::new();
    crm.account()
        .returns("first".into())
        .fails_with(VendorError::status(404))
        .returns("third".into());
    crm.account()
        .otherwise(|id| Ok(format!("default for {id}")));

    assert_eq!(Crm::account(&crm, "a-1").await.unwrap(), "first");
    assert_eq!(status(&Crm::account(&crm, "a-1").await), 404);
    assert_eq!(crm.account().remaining(), 1);
    assert_eq!(Crm::account(&crm, "a-1").await.unwrap(), "third");
    assert_eq!(Crm::account(&crm, "a-2").await.unwrap(), "default for a-2");
    assert_eq!(Crm::account(&crm, "a-3").await.unwrap(), "default for a-3");
}

#[tokio::test]
async fn fails_times_fails_that_many_calls_then_succeeds() {
    let crm = MockCrm::new();
    crm.account()
        .fails_times(3, unavailable)
        .returns("up".into());
    for _ in 0..3 {
        assert_eq!(status(&Crm::account(&crm, "a-1").await), 503);
    }
    assert_eq!(Crm::account(&crm, "a-1").await.unwrap(), "up");
}

#[tokio::test]
async fn returns_with_answers_from_the_arguments() {
    let crm = MockCrm::new();
    crm.note()
        .returns_with(|(id, text, pinned)| {
            Ok(id.0.len() as u64 + text.len() as u64 + u64::from(*pinned))
        })
        .returns_with(|_| Err(VendorError::status(422)));
    let id = AccountId("a-1".into());
    assert_eq!(Crm::note(&crm, &id, "hello".into(), true).await.unwrap(), 9);
    assert_eq!(
        status(&Crm::note(&crm, &id, "again".into(), false).await),
        422
    );
}

#[tokio::test]
#[should_panic(
    expected = "MockCrm::account was called (call 1) with \"a-9\", but nothing was scripted for it"
)]
async fn an_unscripted_call_panics_naming_the_method_and_showing_its_arguments() {
    let crm = MockCrm::new();
    let _ = Crm::account(&crm, "a-9").await;
}

#[tokio::test]
#[should_panic(expected = "MockCrm::ping was called 1 time(s), expected 2")]
async fn a_count_assertion_fails_with_the_method_and_both_counts() {
    let crm = MockCrm::new();
    crm.ping().otherwise_returns(());
    Crm::ping(&crm).await.unwrap();
    crm.ping().assert_called(2);
}

#[tokio::test(start_paused = true)]
async fn recorded_calls_keep_owned_arguments_and_arrival_times() {
    let crm = MockCrm::new();
    crm.note().otherwise_returns(1);
    crm.account().assert_not_called();
    let start = Instant::now();
    let id = AccountId("a-1".into());
    Crm::note(&crm, &id, "first".into(), false).await.unwrap();
    tokio::time::advance(SECOND * 5).await;
    Crm::note(&crm, &AccountId("a-2".into()), "second".into(), true)
        .await
        .unwrap();

    crm.note().assert_called(2);
    let calls = crm.note().calls();
    assert_eq!(
        calls
            .iter()
            .map(|call| call.args().clone())
            .collect::<Vec<_>>(),
        [
            (id, "first".to_owned(), false),
            (AccountId("a-2".into()), "second".to_owned(), true)
        ]
    );
    assert_eq!(calls[0].at(), start);
    assert_eq!(calls[1].at(), start + SECOND * 5);
    assert_eq!(calls[1].number(), 2);
    assert_eq!(crm.note().last_call().unwrap().args().1, "second");
}

#[tokio::test]
async fn generic_and_borrowed_arguments_are_recorded_as_far_as_they_can_be() {
    let crm = MockCrm::new();
    crm.search().returns_with(|(prefix, query, limit)| {
        // The generic argument is kept by its type's name alone.
        assert_eq!(query.type_name(), "alloc::string::String");
        Ok((0..*limit).map(|i| format!("{prefix}{i}")).collect())
    });
    let prefix = String::from("p-");
    let hits = Crm::search(&crm, &prefix, String::from("q"), 2)
        .await
        .unwrap();
    assert_eq!(hits, ["p-0", "p-1"]);
    let call = crm.search().last_call().unwrap();
    assert_eq!(call.args().0, "p-");
    assert_eq!(call.args().1, Opaque::of_val(&String::new()));
    assert_eq!(call.args().2, 2);
}

#[tokio::test(start_paused = true)]
async fn delays_run_on_the_paused_clock() {
    let crm = MockCrm::new();
    crm.account()
        .returns("slow".into())
        .delays(Duration::from_millis(50))
        .fails_times(2, unavailable)
        .delays(SECOND * 30);
    crm.account().otherwise_returns("fast".into());
    let start = Instant::now();
    assert_eq!(Crm::account(&crm, "a").await.unwrap(), "slow");
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    Crm::account(&crm, "a").await.unwrap_err();
    Crm::account(&crm, "a").await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(50) + SECOND * 60);
    assert_eq!(Crm::account(&crm, "a").await.unwrap(), "fast");
    assert_eq!(start.elapsed(), Duration::from_millis(50) + SECOND * 60);
}

#[tokio::test]
async fn clones_share_the_script_and_the_calls() {
    let crm = MockCrm::new();
    let handle = crm.clone();
    handle.ping().returns(());
    Crm::ping(&crm).await.unwrap();
    handle.ping().assert_called(1);
    assert_eq!(handle.ping().remaining(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_is_send_sync_and_static_and_its_calls_can_be_spawned() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    let crm = std::sync::Arc::new(MockCrm::new());
    shareable(&crm);
    crm.account().otherwise(|id| Ok(id.to_uppercase()));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let crm = crm.clone();
            tokio::spawn(async move { Crm::account(&*crm, &format!("s-{i}")).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), format!("S-{i}"));
    }
    crm.account().assert_called(8);
}

// --- Fault profiles ---------------------------------------------------------

async fn failures(seed: u64) -> Vec<usize> {
    let crm = MockCrm::new();
    crm.ping().otherwise_returns(());
    crm.ping()
        .faults(Faults::new().failure_rate(0.3).seed(seed), unavailable);
    let mut failed = Vec::new();
    for call in 1..=100 {
        if Crm::ping(&crm).await.is_err() {
            failed.push(call);
        }
    }
    failed
}

#[tokio::test]
async fn a_seeded_failure_rate_fails_the_same_calls_on_every_run() {
    let first = failures(7).await;
    assert_eq!(first, failures(7).await);
    assert_ne!(first, failures(8).await);
    assert!(
        (15..=45).contains(&first.len()),
        "about 30 of 100: {}",
        first.len()
    );
}

#[tokio::test(start_paused = true)]
async fn fault_latency_and_outages_by_call_number_and_by_time() {
    let crm = MockCrm::new();
    crm.ping().otherwise_returns(());
    crm.ping().faults(
        Faults::new()
            .latency(Duration::from_millis(200))
            .outage_calls(2..=3),
        unavailable,
    );
    let start = Instant::now();
    let mut ok = Vec::new();
    for _ in 0..4 {
        ok.push(Crm::ping(&crm).await.is_ok());
    }
    assert_eq!(ok, [true, false, false, true]);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(800),
        "every call waited"
    );

    // A scripted answer is not used up by a call the faults failed.
    crm.account().returns("scripted".into());
    crm.account()
        .faults(Faults::new().outage_during(..SECOND * 30), unavailable);
    assert_eq!(status(&Crm::account(&crm, "a").await), 503);
    tokio::time::advance(SECOND * 30).await;
    assert_eq!(Crm::account(&crm, "a").await.unwrap(), "scripted");
    crm.account().clear_faults();
}

// --- Behind Resilient -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_scripted_failures_and_closes_again() {
    let runtime = Runtime::in_memory();
    let mock = MockCrm::new();
    let crm = Resilient::new(mock.clone(), &runtime);
    mock.account().fails_times(4, unavailable);
    mock.account().otherwise_returns("recovered".into());

    for _ in 0..4 {
        assert!(crm.account("a-1").await.is_err());
    }
    let breaker = runtime.breaker("crm.account").unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    let rejected = crm.account("a-1").await;
    assert!(
        matches!(seawall_error(&rejected), Error::BreakerOpen { .. }),
        "{rejected:?}"
    );
    mock.account().assert_called(4);

    tokio::time::advance(SECOND * 10).await;
    assert_eq!(crm.account("a-1").await.unwrap(), "recovered");
    assert_eq!(breaker.state(), BreakerState::Closed);
    mock.account().assert_called(5);
}

#[tokio::test(start_paused = true)]
async fn an_outage_window_drives_the_breaker_open_and_closed() {
    let runtime = Runtime::in_memory();
    let mock = MockCrm::new();
    mock.account().otherwise(|id| Ok(format!("account {id}")));
    mock.account().faults(
        Faults::new().outage_during(SECOND * 5..SECOND * 20),
        unavailable,
    );
    let crm = Resilient::new(mock.clone(), &runtime);
    let breaker = runtime.breaker("crm.account");
    assert!(breaker.is_none(), "built on the first call");

    let mut states = Vec::new();
    for _ in 0..30 {
        let _ = crm.account("a-1").await;
        states.push(runtime.breaker("crm.account").unwrap().state());
        tokio::time::advance(SECOND).await;
    }
    let opened = states
        .iter()
        .position(|s| *s == BreakerState::Open)
        .unwrap();
    let closed_again = states[opened..]
        .iter()
        .position(|s| *s == BreakerState::Closed)
        .unwrap();
    assert!(
        (5..20).contains(&opened),
        "opened in the outage, at {opened} s"
    );
    assert!(
        opened + closed_again >= 20,
        "closed after it, at {} s",
        opened + closed_again
    );
    assert_eq!(states.last(), Some(&BreakerState::Closed));
}

#[tokio::test(start_paused = true)]
async fn the_cache_serves_the_last_good_answer_while_the_double_is_down() {
    let runtime = Runtime::in_memory();
    let mock = MockCrm::new();
    mock.name().returns(Cached::from("Acme".to_owned()));
    mock.name().otherwise_fails(unavailable);
    let crm = Resilient::new(mock.clone(), &runtime);
    let id = AccountId("a-1".into());

    assert!(!crm.name(&id).await.unwrap().is_stale());
    tokio::time::advance(SECOND * 60).await;
    let answer = crm.name(&id).await.unwrap();
    assert_eq!(answer.value(), "Acme");
    assert!(answer.is_stale());
    mock.name().assert_called(3); // one success, then two failed attempts
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub number: String,
    pub agent: String,
}

#[contract(name = "telephony", mock)]
pub trait Telephony {
    #[integration(write, timeout = "1s", retry(attempts = 2, base = "100ms", jitter = "none"),
                  breaker(window = 4, min_calls = 4, open_for = "5s"),
                  idempotent(key = [rule.number]), fallback = queue)]
    async fn route(&self, rule: &Rule, priority: u8) -> Result<Delivery<String>, VendorError>;
}

fn rule(n: u32) -> Rule {
    Rule {
        number: format!("+1555000{n:04}"),
        agent: format!("agent-{n}"),
    }
}

#[tokio::test(start_paused = true)]
async fn writes_are_queued_during_an_outage_window_and_drained_in_order_after_it() {
    let start = Instant::now();
    let runtime = Runtime::in_memory();
    let mock = MockTelephony::new();
    mock.route()
        .otherwise(|(rule, _)| Ok(Delivery::Done(format!("routed {}", rule.number))));
    mock.route()
        .faults(Faults::new().outage_during(..SECOND * 30), unavailable);
    let telephony = Resilient::new(mock.clone(), &runtime);

    let mut tickets = Vec::new();
    for n in 0..3 {
        let delivery = telephony.route(&rule(n), 1).await.unwrap();
        tickets.push(delivery.ticket().expect("queued during the outage"));
    }
    let log = runtime.write_ahead_log();
    assert_eq!(log.pending_count("telephony"), 3);

    for ticket in &tickets {
        let status = log.settled(*ticket).await.unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "{status:?}"
        );
    }
    // Each write was delivered once the outage was over, in the order it
    // was queued.
    let delivered: Vec<String> = mock
        .route()
        .calls()
        .into_iter()
        .filter(|call| call.at() >= start + SECOND * 30)
        .map(|call| call.args().0.number.clone())
        .collect();
    assert_eq!(
        delivered,
        (0..3).map(|n| rule(n).number).collect::<Vec<_>>()
    );
    assert_eq!(log.pending_count("telephony"), 0);
}

// --- The README's example, run --------------------------------------------

#[contract(name = "directory", mock)]
pub trait Directory {
    #[integration(read, timeout = "2s", retry, breaker, fallback = cache(max_stale = "1h"))]
    async fn account_name(&self, id: &str) -> Result<Cached<String>, seawall::Error>;
}

async fn header(directory: &impl Directory, id: &str) -> String {
    match directory.account_name(id).await {
        Ok(name) if name.is_stale() => format!(
            "{} (as of {} min ago)",
            name.value(),
            name.age().as_secs() / 60
        ),
        Ok(name) => name.value().clone(),
        Err(_) => "account unavailable".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn the_readme_example_shows_the_last_known_name_during_an_outage() {
    let mock = MockDirectory::new();
    mock.account_name().returns("Acme".to_owned().into());
    mock.account_name().with_args("42").times(4);
    let runtime = Runtime::builder().seed(42).in_memory();
    let directory = Resilient::new(mock.clone(), &runtime);
    assert_eq!(header(&directory, "42").await, "Acme");

    let down = Faults::new().outage_during(..Duration::from_secs(600));
    mock.account_name()
        .faults(down, || seawall::Error::Timeout {
            after: Duration::from_secs(2),
        });
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(header(&directory, "42").await, "Acme (as of 5 min ago)");
    mock.account_name().assert_called(4);
}
