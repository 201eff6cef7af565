//! The generated double's argument matchers and expectations: `with(..)` and
//! `with_args(..)` pick which scripted answer a call gets; `times(..)` and
//! `never()` fail the test, at the call that passes their most or when the
//! double's last clone is dropped with too few, and never while the thread
//! is already panicking.

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use seawall::{Resilient, Runtime, contract};
use support::VendorError;

#[contract(name = "crm", mock)]
pub trait Crm {
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "10ms", cap = "10ms", jitter = "none")
    )]
    async fn account(&self, id: &str) -> Result<String, VendorError>;

    #[integration(write, timeout = "1s")]
    async fn note(&self, id: &str, text: String) -> Result<u64, VendorError>;
}

const FILE: &str = "tests/mock_expectations.rs";

/// Runs `future` on a current-thread runtime of its own, on the paused
/// clock (inside `catch_unwind`, where `#[tokio::test]` cannot reach).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// What `scope` panicked with; fails the test if it did not panic.
#[track_caller]
fn panic_of(scope: impl FnOnce()) -> String {
    let payload =
        catch_unwind(AssertUnwindSafe(scope)).expect_err("the scope should have panicked");
    if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else {
        panic!("a panic without a message")
    }
}

/// Where the line `offset` lines below the caller's is, as messages say it.
#[track_caller]
fn at(offset: u32) -> String {
    format!("{FILE}:{}:", std::panic::Location::caller().line() + offset)
}

#[test]
fn a_times_expectation_that_is_met_passes_when_the_double_is_dropped() {
    let outcome = catch_unwind(|| {
        let crm = MockCrm::new();
        crm.account().otherwise(|id| Ok(format!("account {id}")));
        crm.account().times(2);
        crm.account().with_args("42").times(1);
        block_on(async {
            Crm::account(&crm, "42").await.unwrap();
            Crm::account(&crm, "7").await.unwrap();
        });
        drop(crm);
    });
    assert!(outcome.is_ok(), "two calls, one for 42: both met");
}

#[test]
fn an_unmet_times_expectation_fails_the_test_when_the_double_is_dropped() {
    let set_at = at(6);
    let matcher_at = at(5);
    let message = panic_of(|| {
        let crm = MockCrm::new();
        crm.account().otherwise(|id| Ok(format!("account {id}")));
        crm.note().otherwise_returns(1).times(1); // met: not reported
        crm.account().with(|id| id.starts_with("acme-")).times(2);
        block_on(async {
            Crm::account(&crm, "acme-1").await.unwrap();
            Crm::account(&crm, "initech-1").await.unwrap();
            Crm::note(&crm, "acme-1", "hello".into()).await.ok();
        });
        // The note's handle goes first, the account's when `crm` is done.
    });
    assert!(
        message.starts_with(
            "MockCrm::account: an expectation was not met when the double was dropped (its last \
             clone):\n  - expected exactly 2 calls with arguments accepted by the `with(..)` at"
        ),
        "{message}"
    );
    assert!(message.contains(&matcher_at), "{message}");
    assert!(
        message.contains("got 1 matching call (2 calls in all since it was set)"),
        "{message}"
    );
    assert!(
        message.contains(&format!("(expectation set at {set_at}")),
        "{message}"
    );
}

#[test]
fn never_panics_at_the_call_naming_the_method_the_arguments_and_the_expectation() {
    let set_at = at(3);
    let crm = MockCrm::new();
    crm.account().otherwise_returns("someone".into());
    crm.account().with_args("x-1").never();
    let message = panic_of(|| {
        block_on(async {
            Crm::account(&crm, "a-1").await.unwrap();
            let _ = Crm::account(&crm, "x-1").await;
        });
    });
    assert!(
        message.starts_with(
            "MockCrm::account was called (call 2) with \"x-1\", but it expected no call with \
             arguments equal to \"x-1\", and this is the 1st (expectation set at"
        ),
        "{message}"
    );
    assert!(message.contains(&set_at), "{message}");
    crm.account().assert_called(2);
    // The test caught that panic; the double, dropped, fails it again.
    let again = panic_of(move || drop(crm));
    assert!(
        again.contains(
            "expected no call with arguments equal to \"x-1\", got 1 matching call (2 calls in \
             all since it was set)"
        ),
        "{again}"
    );
}

#[test]
fn a_call_past_the_most_of_times_panics_at_that_call() {
    let message = panic_of(|| {
        let crm = MockCrm::new();
        crm.note().otherwise_returns(1).times(1..=2);
        block_on(async {
            for n in 0..3 {
                Crm::note(&crm, "a-1", format!("note {n}")).await.unwrap();
            }
        });
    });
    assert!(
        message.starts_with(
            "MockCrm::note was called (call 3) with (\"a-1\", \"note 2\"), but it expected \
             between 1 and 2 calls, and this is the 3rd"
        ),
        "{message}"
    );
}

#[test]
fn matchers_pick_the_scripted_answer_for_the_arguments_among_several() {
    block_on(async {
        let crm = MockCrm::new();
        crm.account()
            .with_args("42")
            .returns("Acme".into())
            .returns("Acme, renamed".into());
        crm.account()
            .with(|id| id.starts_with("x-"))
            .fails_with(VendorError::status(404));
        crm.account()
            .with(|id| id.len() > 5)
            .otherwise(|id| Ok(format!("long {id}")));
        crm.account().otherwise_returns("anyone".into());

        let mut answers = Vec::new();
        for id in ["7", "x-1", "42", "abcdefgh", "x-2", "42", "42"] {
            answers.push(match Crm::account(&crm, id).await {
                Ok(name) => name,
                Err(error) => format!("error: {error}"),
            });
        }
        assert_eq!(
            answers,
            [
                "anyone",
                "error: vendor answered 404 Not Found",
                "Acme",
                "long abcdefgh",
                "anyone",
                "Acme, renamed",
                "anyone"
            ]
        );
        assert_eq!(crm.account().remaining(), 0);
    });
}

#[test]
fn a_call_no_matcher_accepts_and_without_a_default_panics_with_the_method_and_arguments() {
    let message = panic_of(|| {
        block_on(async {
            let crm = MockCrm::new();
            crm.account().with_args("42").returns("Acme".into());
            let _ = Crm::account(&crm, "7").await;
        });
    });
    assert!(
        message.starts_with(
            "MockCrm::account was called (call 1) with \"7\", but nothing was scripted for it (1 \
             scripted answer is left, for other arguments)"
        ),
        "{message}"
    );
}

#[test]
fn expectations_on_a_double_behind_resilient_are_checked_when_the_last_clone_drops() {
    let set_at = at(6);
    let message = panic_of(|| {
        block_on(async {
            let mock = MockCrm::new();
            // One call for 42, retried twice: three attempts reach the double.
            mock.account().with_args("42").times(3);
            mock.account().times(4);
            mock.account()
                .fails_times(2, || VendorError::status(503))
                .otherwise(|id| Ok(format!("account {id}")));
            let crm = Resilient::new(mock.clone(), &Runtime::in_memory());
            assert_eq!(crm.account("42").await.unwrap(), "account 42");
            // The wrapper holds a clone: the test's going checks nothing.
            assert!(catch_unwind(AssertUnwindSafe(|| drop(mock))).is_ok());
            // The wrapper's is the last.
            drop(crm);
        });
    });
    assert!(
        message.starts_with(
            "MockCrm::account: an expectation was not met when the double was dropped (its last \
             clone):\n  - expected exactly 4 calls, got 3 calls (expectation set at"
        ),
        "{message}"
    );
    assert!(message.contains(&set_at), "{message}");
    assert!(
        !message.contains("equal to \"42\""),
        "the met one is not reported: {message}"
    );
}

#[test]
fn never_behind_resilient_panics_out_of_the_call() {
    let message = panic_of(|| {
        block_on(async {
            let mock = MockCrm::new();
            mock.note().never();
            let crm = Resilient::new(mock, &Runtime::in_memory());
            let _ = crm.note("a-1", "hello".into()).await;
        });
    });
    assert!(
        message.starts_with(
            "MockCrm::note was called (call 1) with (\"a-1\", \"hello\"), but it expected no \
             call, and this is the 1st"
        ),
        "{message}"
    );
}

#[test]
fn an_unmet_expectation_does_not_panic_again_while_the_thread_is_panicking() {
    // Were the double to panic in `drop` during this unwinding, the process
    // would abort and the test binary with it.
    let message = panic_of(|| {
        let crm = MockCrm::new();
        crm.account().times(5);
        crm.note().never();
        panic!("the test's own assertion failed");
    });
    assert_eq!(message, "the test's own assertion failed");
}

#[test]
fn checkpoint_checks_the_expectations_so_far_and_forgets_them() {
    let crm = MockCrm::new();
    crm.note().otherwise_returns(1);
    crm.note().times(1);
    block_on(async {
        Crm::note(&crm, "a-1", "first".into()).await.unwrap();
    });
    crm.note().checkpoint();

    // The next phase: no more notes, and one expected that does not come.
    crm.note().never();
    let second = ("a-2".to_owned(), "second".to_owned());
    let set_at = at(1);
    crm.note().with_args(second).times(1);
    let checked_at = at(1);
    let message = panic_of(|| crm.note().checkpoint());
    assert!(
        message.starts_with(&format!(
            "MockCrm::note: an expectation was not met at the checkpoint at {checked_at}"
        )),
        "{message}"
    );
    assert!(
        message.contains(
            "expected exactly 1 call with arguments equal to (\"a-2\", \"second\"), got 0 \
             matching calls (0 calls in all since it was set)"
        ),
        "{message}"
    );
    assert!(message.contains(&set_at), "{message}");
    // Forgotten: dropping the double now checks nothing.
    assert!(catch_unwind(AssertUnwindSafe(|| drop(crm))).is_ok());
}
