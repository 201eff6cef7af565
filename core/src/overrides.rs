//! Policy values an operator changes without a rebuild: a TOML file and
//! environment variables, read through the [config](https://docs.rs/config) crate, applied when a
//! method's endpoint is resolved (feature `overrides`).
//!
//! ```toml
//! [crm]                    # every method of contract `crm`
//! timeout = "3s"
//!
//! [crm.account]            # one method
//! timeout = "5s"
//! retry = { attempts = 4 }
//! breaker = { open_for = "1m" }
//!
//! [shared.hubspot]         # the rate limiter or breaker named `hubspot`
//! rate = { limit = "80/10s" }
//! ```
//!
//! or `SEAWALL__CRM__ACCOUNT__TIMEOUT=5s`, `SEAWALL__SHARED__HUBSPOT__RATE__LIMIT=80/10s`
//! (variables win over the file). A method's value wins over its
//! contract's, which wins over a shared name's, which wins over the
//! compiled policy.
//!
//! **What the compiler guaranteed stays guaranteed.** An override tunes a
//! stage the method declares; it cannot add one (a breaker, a limiter, a
//! bulkhead, hedging) nor take one away, nor change what the method is (a
//! read or a write, its idempotency). The policy it makes passes
//! [`Policy::violations`], the rules and messages `#[integration]` applies
//! at compile time: no zero timeout, no retries on a write without a key,
//! no worst case past the deadline. A method whose overrides break any rule
//! keeps its compiled policy, and every error is reported (an ERROR event
//! on `seawall::overrides`, and [`Health::overrides`](crate::telemetry::Health::overrides)).

use std::collections::BTreeMap;
use std::fmt;
#[cfg(feature = "overrides")]
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::{Policy, RetryPolicy};

/// Where a value comes from: the file, a variable, or code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source(String);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an override applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// The rate limiter or breaker of this name, wherever it is used.
    Shared(String),
    /// Every method of a contract.
    Contract(String),
    /// One method.
    Method(String, String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared(name) => write!(f, "shared.{name}"),
            Self::Contract(contract) => f.write_str(contract),
            Self::Method(contract, method) => write!(f, "{contract}.{method}"),
        }
    }
}

/// The keys an override may set, as `stage.key` (or `key` for the
/// method's own).
pub const KEYS: &[&str] = &[
    "timeout",
    "deadline",
    "retry.attempts",
    "retry.base",
    "retry.cap",
    "retry.max_elapsed",
    "breaker.failure_rate",
    "breaker.min_calls",
    "breaker.consecutive_failures",
    "breaker.open_for",
    "breaker.open_for_max",
    "breaker.probes",
    "breaker.slow",
    "breaker.slow_rate",
    "rate.limit",
    "rate.burst",
    "rate.max_wait",
    "bulkhead.max",
    "bulkhead.queue",
    "bulkhead.max_wait",
    "bulkhead.min",
    "hedge.after",
    "hedge.max",
];

/// The first word of a key: the stages a contract-level table may hold.
const STAGES: &[&str] = &[
    "timeout", "deadline", "retry", "breaker", "rate", "bulkhead", "hedge",
];

/// One value set by an operator.
#[derive(Clone, Debug, PartialEq)]
struct Setting {
    value: String,
    source: Source,
}

/// A set of policy overrides: where each value comes from, by contract,
/// method and shared name. Build one with `load` (or `from_toml_str`, both
/// with the feature `overrides`) or [`set`](Self::set), and give
/// it to [`RuntimeBuilder::overrides`](crate::RuntimeBuilder::overrides).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    settings: BTreeMap<Scope, BTreeMap<&'static str, Setting>>,
    /// Where `load` read them, to read them again on a reload.
    #[cfg(feature = "overrides")]
    origin: Option<Origin>,
    /// What `set` added, in order, to add again after a reload reads the
    /// file and the variables.
    code: Vec<(String, String, String)>,
}

/// The sources `load` read.
#[cfg(feature = "overrides")]
#[derive(Clone, Debug, PartialEq)]
struct Origin {
    /// The file, if one was named.
    path: Option<std::path::PathBuf>,
    /// Its bytes when they were read, to tell a change (`watch`).
    read: Option<Vec<u8>>,
}

/// What one reload did ([`Runtime::reload`](crate::Runtime::reload)):
/// listed in [`Health::last_reload`](crate::telemetry::Health::last_reload)
/// and sent as [`Event::OverridesReloaded`](crate::Event::OverridesReloaded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReloadStatus {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether it applied. A refused reload changed nothing.
    pub applied: bool,
    /// The methods whose effective policy it changed (`contract.method`).
    pub changed: Vec<String>,
    /// Why it was refused: every error, each naming what it applies to.
    pub errors: Vec<OverrideError>,
}

/// A reload that changed nothing, with every reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the overrides were not reloaded, nothing changed: {}", list(.errors))]
pub struct ReloadRefused {
    /// Every error, each naming what it applies to.
    pub errors: Vec<OverrideError>,
}

fn list(errors: &[OverrideError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ReloadStatus {
    pub(crate) fn new(changed: Vec<String>, errors: Vec<OverrideError>) -> Self {
        Self {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
            applied: errors.is_empty(),
            changed,
            errors,
        }
    }
}

/// An override that cannot be applied: a key that does not exist, a value
/// that does not parse, a stage the method does not declare, or a rule of
/// the policy it would make (with the message the compiler gives).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{target}: {message}")]
pub struct OverrideError {
    /// What it applies to: `crm.account`, `crm` or `shared.hubspot`.
    pub target: String,
    /// What is wrong, naming the key and where its value came from.
    pub message: String,
}

/// What overrides did to one method ([`Health::overrides`](crate::telemetry::Health::overrides)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MethodOverrides {
    /// The method: `contract.method`.
    pub method: String,
    /// The values that apply, each with where it came from.
    pub applied: Vec<Overridden>,
    /// Why none applies: every override that could not, and every rule
    /// the result would break. Empty when `applied` holds.
    pub errors: Vec<OverrideError>,
}

impl MethodOverrides {
    pub(crate) fn applied(method: &str, applied: Vec<Overridden>) -> Self {
        Self {
            method: method.to_owned(),
            applied,
            errors: Vec::new(),
        }
    }

    pub(crate) fn refused(method: &str, errors: Vec<OverrideError>) -> Self {
        Self {
            method: method.to_owned(),
            applied: Vec::new(),
            errors,
        }
    }
}

/// One value of a method's effective policy that an override set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overridden {
    /// The key, such as `retry.attempts`.
    pub key: String,
    /// The value, as written.
    pub value: String,
    /// Where it came from: the file's path, `environment`, or `code`.
    pub source: String,
    /// What it applies to: the method, its contract, or a shared name.
    pub scope: String,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(feature = "overrides")]
    /// The file at `path` (TOML; none is fine when `path` is `None`) and
    /// then the environment's `SEAWALL__…` variables, which win.
    ///
    /// # Errors
    ///
    /// Every key that does not exist and every value that does not parse,
    /// and a file that cannot be read or is not TOML.
    pub fn load(path: Option<&Path>) -> Result<Self, Vec<OverrideError>> {
        // Read for `watch` to compare with; config reads it again below.
        let read = path.and_then(|path| std::fs::read(path).ok());
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SEAWALL")
                .prefix_separator("__")
                .separator("__"),
        );
        let mut overrides = Self::from_config(builder)?;
        overrides.origin = Some(Origin {
            path: path.map(Path::to_path_buf),
            read,
        });
        Ok(overrides)
    }

    /// The same sources read again: the file and the variables `load`
    /// read, then what `set` added. Overrides not loaded from anywhere
    /// come back as they are.
    ///
    /// # Errors
    ///
    /// As `load`.
    pub fn reread(&self) -> Result<Self, Vec<OverrideError>> {
        #[cfg(feature = "overrides")]
        if let Some(origin) = &self.origin {
            let mut fresh = Self::load(origin.path.as_deref())?;
            for (target, key, value) in &self.code {
                fresh.set(target, key, value).map_err(|error| vec![error])?;
            }
            return Ok(fresh);
        }
        Ok(self.clone())
    }

    /// The file `load` read, if any, with its bytes as read then.
    #[cfg(feature = "overrides")]
    pub(crate) fn file(&self) -> Option<(&Path, Option<&[u8]>)> {
        let origin = self.origin.as_ref()?;
        Some((origin.path.as_deref()?, origin.read.as_deref()))
    }

    #[cfg(feature = "overrides")]
    /// Overrides written as TOML (`source` names them in messages and
    /// health).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn from_toml_str(toml: &str, source: &str) -> Result<Self, Vec<OverrideError>> {
        let mut overrides = Self::from_config(
            config::Config::builder()
                .add_source(config::File::from_str(toml, config::FileFormat::Toml)),
        )?;
        for settings in overrides.settings.values_mut() {
            for setting in settings.values_mut() {
                setting.source = Source(source.to_owned());
            }
        }
        Ok(overrides)
    }

    /// Sets one value in code: `target` is `crm.account`, `crm` or
    /// `shared.hubspot`, `key` one of [`KEYS`].
    ///
    /// # Errors
    ///
    /// A key that does not exist or a value that does not parse.
    pub fn set(
        &mut self,
        target: &str,
        key: &str,
        value: &str,
    ) -> Result<&mut Self, OverrideError> {
        let mut path: Vec<String> = target.split('.').map(str::to_owned).collect();
        path.extend(key.split('.').map(str::to_owned));
        self.insert(&path, value.to_owned(), Source("code".to_owned()))?;
        self.code
            .push((target.to_owned(), key.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    #[cfg(feature = "overrides")]
    fn from_config(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<Self, Vec<OverrideError>> {
        let config = builder.build().map_err(|error| {
            vec![OverrideError {
                target: "overrides".to_owned(),
                message: error.to_string(),
            }]
        })?;
        let table = config.cache.into_table().map_err(|error| {
            vec![OverrideError {
                target: "overrides".to_owned(),
                message: error.to_string(),
            }]
        })?;
        let mut overrides = Self::default();
        let mut errors = Vec::new();
        let mut path = Vec::new();
        overrides.walk(&mut path, table, &mut errors);
        if errors.is_empty() {
            Ok(overrides)
        } else {
            Err(errors)
        }
    }

    #[cfg(feature = "overrides")]
    fn walk(
        &mut self,
        path: &mut Vec<String>,
        table: config::Map<String, config::Value>,
        errors: &mut Vec<OverrideError>,
    ) {
        for (key, value) in table {
            path.push(key);
            let source = Source(match value.origin() {
                Some(origin) if !origin.is_empty() => origin.to_owned(),
                _ => "environment".to_owned(),
            });
            match value.kind {
                config::ValueKind::Table(table) => self.walk(path, table, errors),
                config::ValueKind::Nil | config::ValueKind::Array(_) => {
                    errors.push(OverrideError {
                        target: path.join("."),
                        message: format!("not a value (from {source})"),
                    })
                }
                kind => {
                    let value = config::Value::new(None, kind).to_string();
                    if let Err(error) = self.insert(path, value, source) {
                        errors.push(error);
                    }
                }
            }
            path.pop();
        }
    }

    /// Files a value found at `path` (`contract.method.stage.key`,
    /// `contract.stage.key`, `shared.name.stage.key`).
    fn insert(
        &mut self,
        path: &[String],
        value: String,
        source: Source,
    ) -> Result<(), OverrideError> {
        let whole = path.join(".");
        let unknown = |message: String| OverrideError {
            target: whole.clone(),
            message,
        };
        let (scope, key) = match path {
            [shared, name, rest @ ..] if shared == "shared" => (Scope::Shared(name.clone()), rest),
            [contract, first, rest @ ..] if STAGES.contains(&first.as_str()) => (
                Scope::Contract(contract.clone()),
                &path[1..][..1 + rest.len()],
            ),
            [contract, method, rest @ ..] => {
                (Scope::Method(contract.clone(), method.clone()), rest)
            }
            _ => {
                return Err(unknown(format!(
                    "not a policy value: write `contract.method.key`, `contract.key` or \
                     `shared.name.key` (from {source})"
                )));
            }
        };
        let key = key.join(".");
        let Some(&known) = KEYS.iter().find(|k| **k == key) else {
            return Err(unknown(format!(
                "`{key}` is not a key an override may set (from {source}); the keys are: {}",
                KEYS.join(", ")
            )));
        };
        if matches!(scope, Scope::Shared(_))
            && !(known.starts_with("rate.") || known.starts_with("breaker."))
        {
            return Err(unknown(format!(
                "a shared name is a rate limiter's or a breaker's: `{key}` does not apply to one \
                 (from {source})"
            )));
        }
        // Parsed now, so that a value that cannot be read is an error of
        // the load, not of the first call.
        parse(known, &value).map_err(|message| unknown(format!("{message} (from {source})")))?;
        self.settings
            .entry(scope)
            .or_default()
            .insert(known, Setting { value, source });
        Ok(())
    }

    /// `compiled` with every override for `contract.method` applied,
    /// checked by the policy's rules, and what set each value. The
    /// compiled policy when nothing applies.
    ///
    /// # Errors
    ///
    /// Every override that cannot apply and every rule the result breaks:
    /// the method then keeps its compiled policy.
    pub fn apply(
        &self,
        contract: &str,
        method: &str,
        compiled: &Policy,
    ) -> Result<(Policy, Vec<Overridden>), Vec<OverrideError>> {
        let target = format!("{contract}.{method}");
        // Lowest first: shared names, the contract, the method.
        let mut layers = Vec::new();
        let shared_names = [
            compiled
                .breaker()
                .and_then(|b| b.name())
                .map(|n| ("breaker.", n)),
            compiled.rate().and_then(|r| r.name()).map(|n| ("rate.", n)),
        ];
        for (stage, name) in shared_names.into_iter().flatten() {
            if let Some(settings) = self.settings.get(&Scope::Shared(name.to_owned())) {
                for (key, setting) in settings {
                    if key.starts_with(stage) {
                        layers.push((Scope::Shared(name.to_owned()), *key, setting));
                    }
                }
            }
        }
        for scope in [
            Scope::Contract(contract.to_owned()),
            Scope::Method(contract.to_owned(), method.to_owned()),
        ] {
            if let Some(settings) = self.settings.get(&scope) {
                for (key, setting) in settings {
                    layers.push((scope.clone(), *key, setting));
                }
            }
        }
        if layers.is_empty() {
            return Ok((compiled.clone(), Vec::new()));
        }
        let mut policy = compiled.clone();
        let mut errors = Vec::new();
        let mut applied: BTreeMap<&str, Overridden> = BTreeMap::new();
        for (scope, key, setting) in layers {
            match set(policy.clone(), key, &setting.value) {
                Ok(next) => {
                    policy = next;
                    applied.insert(
                        key,
                        Overridden {
                            key: key.to_owned(),
                            value: setting.value.clone(),
                            source: setting.source.to_string(),
                            scope: scope.to_string(),
                        },
                    );
                }
                Err(message) => errors.push(OverrideError {
                    target: target.clone(),
                    message: format!("`{key}` from {scope} ({}): {message}", setting.source),
                }),
            }
        }
        // The compiler's rules, with its messages.
        errors.extend(policy.violations().into_iter().map(|rule| OverrideError {
            target: target.clone(),
            message: format!("the overridden policy breaks a rule: {rule}"),
        }));
        if errors.is_empty() {
            Ok((policy, applied.into_values().collect()))
        } else {
            Err(errors)
        }
    }
}

/// A value as the key wants it.
enum Parsed {
    Duration(Duration),
    Count(u32),
    Rate(f64),
    Limit(u32, Duration),
    After(crate::policy::HedgeAfter),
}

fn parse(key: &str, value: &str) -> Result<Parsed, String> {
    let value = value.trim();
    let duration = || {
        humantime::parse_duration(value).map(Parsed::Duration).map_err(|error| {
            format!(
                "`{key}`: invalid duration \"{value}\" ({error}): write a number and a unit, such \
                 as \"250ms\", \"10s\", \"1m 30s\" or \"2h\""
            )
        })
    };
    match key {
        "rate.limit" => seawall_policy::parse_limit(value)
            .map(|(count, period)| Parsed::Limit(count, period))
            .map_err(|error| format!("`{key}`: {error}")),
        "hedge.after" => crate::policy::HedgeAfter::parse(value)
            .map(Parsed::After)
            .map_err(|error| format!("`{key}`: {error}")),
        "breaker.failure_rate" | "breaker.slow_rate" => value
            .parse::<f64>()
            .map(Parsed::Rate)
            .map_err(|_| format!("`{key}`: \"{value}\" is not a number such as 0.5")),
        "retry.attempts"
        | "breaker.min_calls"
        | "breaker.consecutive_failures"
        | "breaker.probes"
        | "rate.burst"
        | "bulkhead.max"
        | "bulkhead.queue"
        | "bulkhead.min"
        | "hedge.max" => value
            .parse::<u32>()
            .map(Parsed::Count)
            .map_err(|_| format!("`{key}`: \"{value}\" is not a whole number")),
        _ => duration(),
    }
}

/// `policy` with `key` set to `value`, or why it cannot be.
fn set(policy: Policy, key: &str, value: &str) -> Result<Policy, String> {
    let parsed = parse(key, value)?;
    let missing = |stage: &str| {
        format!(
            "the method declares no {stage}: an override tunes the stages the contract declares, \
             it does not add one"
        )
    };
    let (stage, _) = key.split_once('.').unwrap_or((key, ""));
    Ok(match (key, parsed) {
        ("timeout", Parsed::Duration(d)) => policy.with_timeout(d),
        ("deadline", Parsed::Duration(d)) => {
            if policy.deadline().is_none() {
                return Err(missing("deadline"));
            }
            policy.with_deadline(d)
        }
        (_, parsed) if stage == "retry" => {
            let retry = policy.retry().clone();
            let retry = match (key, parsed) {
                ("retry.attempts", Parsed::Count(n)) => {
                    let mut next = RetryPolicy::new(n)
                        .with_base(retry.base())
                        .with_cap(retry.cap())
                        .with_jitter(retry.jitter())
                        .with_retry_on(retry.retry_on());
                    if let Some(max) = retry.max_elapsed() {
                        next = next.with_max_elapsed(max);
                    }
                    next
                }
                ("retry.base", Parsed::Duration(d)) => retry.with_base(d),
                ("retry.cap", Parsed::Duration(d)) => retry.with_cap(d),
                ("retry.max_elapsed", Parsed::Duration(d)) => retry.with_max_elapsed(d),
                _ => unreachable!("a retry key parsed as its kind"),
            };
            policy.with_retry(retry)
        }
        (_, parsed) if stage == "breaker" => {
            let Some(breaker) = policy.breaker().cloned() else {
                return Err(missing("breaker"));
            };
            let breaker = match (key, parsed) {
                ("breaker.failure_rate", Parsed::Rate(r)) => breaker.with_failure_rate(r),
                ("breaker.slow_rate", Parsed::Rate(r)) => breaker.with_slow_rate(r),
                ("breaker.min_calls", Parsed::Count(n)) => breaker.with_min_calls(n),
                ("breaker.consecutive_failures", Parsed::Count(n)) => {
                    breaker.with_consecutive_failures(n)
                }
                ("breaker.probes", Parsed::Count(n)) => breaker.with_probes(n),
                ("breaker.open_for", Parsed::Duration(d)) => breaker.with_open_for(d),
                ("breaker.open_for_max", Parsed::Duration(d)) => breaker.with_open_for_max(d),
                ("breaker.slow", Parsed::Duration(d)) => breaker.with_slow(d),
                _ => unreachable!("a breaker key parsed as its kind"),
            };
            policy.with_breaker(breaker)
        }
        (_, parsed) if stage == "rate" => {
            let Some(rate) = policy.rate().cloned() else {
                return Err(missing("rate limiter"));
            };
            let rate = match (key, parsed) {
                ("rate.limit", Parsed::Limit(count, period)) => {
                    let next = crate::RatePolicy::new(count, period)
                        .with_burst(rate.burst())
                        .with_max_wait(rate.max_wait());
                    match rate.name() {
                        Some(name) => next.with_name(name.to_owned()),
                        None => next,
                    }
                }
                ("rate.burst", Parsed::Count(n)) => rate.with_burst(n),
                ("rate.max_wait", Parsed::Duration(d)) => rate.with_max_wait(d),
                _ => unreachable!("a rate key parsed as its kind"),
            };
            policy.with_rate(rate)
        }
        (_, parsed) if stage == "bulkhead" => {
            let Some(bulkhead) = policy.bulkhead().cloned() else {
                return Err(missing("bulkhead"));
            };
            let bulkhead = match (key, parsed) {
                ("bulkhead.max", Parsed::Count(n)) => bulkhead.with_max(n),
                ("bulkhead.queue", Parsed::Count(n)) => bulkhead.with_queue(n),
                ("bulkhead.min", Parsed::Count(n)) => bulkhead.with_min(n),
                ("bulkhead.max_wait", Parsed::Duration(d)) => bulkhead.with_max_wait(d),
                _ => unreachable!("a bulkhead key parsed as its kind"),
            };
            policy.with_bulkhead(bulkhead)
        }
        (_, parsed) if stage == "hedge" => {
            let Some(hedge) = policy.hedge().cloned() else {
                return Err(missing("hedging"));
            };
            let hedge = match (key, parsed) {
                ("hedge.after", Parsed::After(after)) => {
                    crate::HedgePolicy::new(after).with_max(hedge.max())
                }
                ("hedge.max", Parsed::Count(n)) => hedge.with_max(n),
                _ => unreachable!("a hedge key parsed as its kind"),
            };
            policy.with_hedge(hedge)
        }
        _ => unreachable!("every key of KEYS has a stage"),
    })
}
