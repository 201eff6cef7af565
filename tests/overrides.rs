//! Policy overrides without a rebuild: a TOML file and `SEAWALL__…`
//! variables change a method's values, a method's value wins over its
//! contract's and a variable over the file; an override that breaks a rule
//! (with the compiler's message), adds a stage or names a key that does not
//! exist changes nothing and says why. On tokio's paused clock; the
//! environment is set only in a child process (this binary, run again).
#![cfg(feature = "overrides")]

mod support;

use std::time::Duration;

use seawall::overrides::Overrides;
use seawall::{Error, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};

const SECOND: Duration = Duration::from_secs(1);

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn contact(&self) -> Result<usize, VendorError>;

    #[integration(write, timeout = "1s")]
    async fn note(&self) -> Result<usize, VendorError>;

    #[integration(read, timeout = "1s", rate(limit = "100/1s", name = "hubspot"))]
    async fn company(&self) -> Result<usize, VendorError>;
}

impl Crm for Script {
    async fn account(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn contact(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn note(&self) -> Result<usize, VendorError> {
        self.play().await
    }
    async fn company(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

fn runtime(overrides: Overrides) -> Runtime {
    Runtime::builder().overrides(overrides).in_memory()
}

fn timed_out<T: std::fmt::Debug>(result: &Result<T, VendorError>) -> bool {
    matches!(seawall_error(result), Error::Timeout { .. })
}

#[tokio::test(start_paused = true)]
async fn a_methods_value_wins_over_its_contracts_which_wins_over_the_compiled_one() {
    let overrides = Overrides::from_toml_str(
        "[crm]\ntimeout = \"3s\"\n\n[crm.account]\ntimeout = \"5s\"\n",
        "ops.toml",
    )
    .expect("valid overrides");
    let runtime = runtime(overrides);
    // The vendor takes 4 s: only a 5 s timeout lets it answer.
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 4)), &runtime);
    assert_eq!(vendor.account().await.unwrap(), 1, "5 s, the method's");
    assert!(timed_out(&vendor.contact().await), "3 s, the contract's");
    vendor.inner().then([Step::Slow(SECOND * 2)]);
    assert!(
        vendor.contact().await.is_ok(),
        "2 s is within the contract's 3 s, past the compiled 1 s"
    );

    let health = runtime.health();
    let account = health
        .overrides
        .iter()
        .find(|m| m.method == "crm.account")
        .expect("health lists the method");
    assert!(account.errors.is_empty(), "{account:?}");
    assert_eq!(account.applied.len(), 1, "{account:?}");
    let timeout = &account.applied[0];
    assert_eq!(
        (
            timeout.key.as_str(),
            timeout.value.as_str(),
            timeout.source.as_str(),
            timeout.scope.as_str()
        ),
        ("timeout", "5s", "ops.toml", "crm.account")
    );
    let contact = health
        .overrides
        .iter()
        .find(|m| m.method == "crm.contact")
        .unwrap();
    assert_eq!(contact.applied[0].scope, "crm", "{contact:?}");
    assert!(runtime.readiness().degraded.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_override_that_breaks_a_rule_changes_nothing_and_gives_the_compilers_message() {
    let mut overrides = Overrides::new();
    // Retries on a write without an idempotency key: the compiler refuses
    // them, and so does an override.
    overrides.set("crm.note", "retry.attempts", "3").unwrap();
    let runtime = runtime(overrides);
    let refused = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = refused.clone();
    runtime.subscribe(move |event| {
        if let seawall::Event::OverridesRefused(method) = event {
            seen.lock().unwrap().push(method.method.clone());
        }
    });
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    assert!(vendor.note().await.is_err());
    assert_eq!(
        vendor.inner().calls(),
        1,
        "the compiled policy: one attempt"
    );
    assert_eq!(
        *refused.lock().unwrap(),
        ["crm.note"],
        "subscribers were told"
    );

    let health = runtime.health();
    let note = health
        .overrides
        .iter()
        .find(|m| m.method == "crm.note")
        .unwrap();
    assert!(note.applied.is_empty(), "{note:?}");
    let compiler = seawall::Policy::new(seawall::Kind::Write, SECOND)
        .with_retry(seawall::RetryPolicy::new(3))
        .violations();
    assert!(!compiler.is_empty());
    for rule in &compiler {
        assert!(
            note.errors
                .iter()
                .any(|e| e.message.contains(&rule.to_string())),
            "the compiler's message \"{rule}\" is in {:?}",
            note.errors
        );
    }
    let readiness = runtime.readiness();
    assert!(
        readiness.ready,
        "a refused override does not fail readiness"
    );
    assert_eq!(
        readiness.degraded,
        ["crm.note: 1 override(s) refused, its compiled policy applies"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_is_refused_and_the_compiled_timeout_kept() {
    let mut overrides = Overrides::new();
    overrides.set("crm.account", "timeout", "0s").unwrap();
    let runtime = runtime(overrides);
    let vendor = Resilient::new(Script::always(Step::Slow(SECOND * 2)), &runtime);
    assert!(timed_out(&vendor.account().await), "still 1 s");
    let errors = &runtime.health().overrides[0].errors;
    assert!(
        errors.iter().any(|e| e.message.contains("timeout")),
        "{errors:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_override_tunes_a_declared_stage_and_cannot_add_one() {
    let mut overrides = Overrides::new();
    overrides
        .set("crm.account", "breaker.open_for", "1m")
        .unwrap();
    let runtime = runtime(overrides);
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    vendor.account().await.unwrap();
    assert!(runtime.breakers().is_empty(), "no breaker was added");
    let errors = &runtime.health().overrides[0].errors;
    assert!(
        errors[0].message.contains("declares no breaker"),
        "{errors:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_name_reaches_every_method_that_uses_it() {
    let overrides = Overrides::from_toml_str(
        "[shared.hubspot]\nrate = { limit = \"1/1s\" }\n",
        "ops.toml",
    )
    .unwrap();
    let runtime = runtime(overrides);
    let vendor = Resilient::new(Script::always(Step::Ok), &runtime);
    vendor.company().await.unwrap();
    let limiter = &runtime.health().limiters[0];
    assert_eq!(limiter.name, "hubspot");
    assert_eq!(limiter.limit, "1/1s", "{limiter:?}");
    let company = &runtime.health().overrides[0];
    assert_eq!(company.applied[0].scope, "shared.hubspot");
}

#[test]
fn every_unknown_key_and_unreadable_value_fails_the_load() {
    let errors = Overrides::from_toml_str(
        "[crm.account]\ntimeot = \"5s\"\nretry = { attempts = \"many\" }\n\n[shared.hubspot]\ntimeout = \"1s\"\n",
        "ops.toml",
    )
    .expect_err("three errors");
    assert_eq!(errors.len(), 3, "{errors:?}");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|e| e.contains("`timeot` is not a key")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("\"many\" is not a whole number")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("a shared name is a rate limiter's or a breaker's")),
        "{text:?}"
    );
    let mut overrides = Overrides::new();
    assert!(overrides.set("crm.account", "timeout", "soon").is_err());
    assert!(overrides.is_empty(), "nothing was set");
}

/// The environment, in a child process: `SEAWALL__CRM__ACCOUNT__TIMEOUT`
/// beats the file's value for the same key.
#[test]
fn a_variable_wins_over_the_file() {
    const CHILD: &str = "SEAWALL_TEST_OVERRIDES_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let path = std::env::var("SEAWALL_TEST_OVERRIDES_FILE").unwrap();
        let overrides = Overrides::load(Some(path.as_ref())).expect("valid overrides");
        let policy = seawall::Policy::new(seawall::Kind::Read, SECOND);
        let (effective, applied) = overrides.apply("crm", "account", &policy).unwrap();
        assert_eq!(effective.timeout(), SECOND * 5);
        assert_eq!(applied[0].source, "the environment");
        let (contact, applied) = overrides.apply("crm", "contact", &policy).unwrap();
        assert_eq!(
            contact.timeout(),
            SECOND * 3,
            "the file's, for the contract"
        );
        assert!(applied[0].source.ends_with("ops.toml"), "{applied:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.toml");
    std::fs::write(
        &path,
        "[crm]\ntimeout = \"3s\"\n[crm.account]\ntimeout = \"2s\"\n",
    )
    .unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_variable_wins_over_the_file", "--nocapture"])
        .env(CHILD, "1")
        .env("SEAWALL_TEST_OVERRIDES_FILE", &path)
        .env("SEAWALL__CRM__ACCOUNT__TIMEOUT", "5s")
        .status()
        .unwrap();
    assert!(status.success(), "the child's assertions held");
}

/// A file that is empty, not TOML, or missing: an empty file overrides
/// nothing; the others fail the load with an error naming the file, never a
/// panic.
#[test]
fn a_damaged_empty_or_missing_file_is_an_error_or_nothing_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let overrides = Overrides::load(Some(&empty)).expect("an empty file is no overrides");
    assert!(overrides.is_empty());

    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, b"[crm.account\ntimeout = \xff\xfe\"5s\n").unwrap();
    let errors = Overrides::load(Some(&garbage)).expect_err("not TOML");
    assert!(
        errors[0].message.contains("garbage.toml"),
        "the error names the file: {errors:?}"
    );

    let missing = dir.path().join("missing.toml");
    let errors = Overrides::load(Some(&missing)).expect_err("no such file");
    assert!(
        errors[0].message.contains("missing.toml"),
        "the error names the file: {errors:?}"
    );
}
