//! From parsed attributes to a [`seawall_policy::Policy`], checked.
//!
//! The rules of a valid policy live in `seawall-policy`, shared with the
//! runtime: this module builds the policy the attribute describes (every
//! value explicit, defaults from `seawall-policy`), asks it for its
//! violations (`Policy::violations`, and `Policy::argument_violations`
//! with the method's arguments), and reports each at the tokens of the key
//! it is about, found through `spans`. What only the attribute syntax can
//! get wrong (a missing `timeout`, `read` and `write` together, a duration
//! that does not parse, an unknown class name, an idempotency key value
//! that is not an argument) is checked here. Every mistake is reported in
//! the same build.

use std::time::Duration;

use darling::util::{Override, SpannedValue};
use proc_macro2::Span;
use seawall_policy::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, CachePolicy, ClassSet, ErrorClass, Field,
    HedgeAfter, HedgePolicy, Jitter, Kind, OnDuplicate, Policy, PolicyError, RatePolicy, Redact,
    RetryPolicy, StorePolicy,
};

use crate::args::{
    BreakerArgs, BudgetArgs, BulkheadArgs, ClassList, ConcurrentArg, ContractArgs, DurationText,
    FallbackArg, HedgeArgs, IntegrationArgs, JitterArg, KeyPath, RateArgs, RetryArgs, WindowArg,
};
use crate::spans::Spans;

/// A method's checked policy, and what the expander needs beyond it.
#[derive(Debug)]
pub(crate) struct MethodPolicy {
    pub(crate) policy: Policy,
    /// The values of the idempotency key, if the method has one.
    pub(crate) key: Option<KeyValues>,
    /// `fallback = with(path)`: the function that answers a failed call.
    pub(crate) custom_fallback: Option<syn::Path>,
    /// The arguments named in `redact = [..]`.
    pub(crate) redact: Vec<syn::Ident>,
    /// `fallback = queue(order_by = [..])`: the values a queued write is
    /// ordered by (empty: the contract's order).
    pub(crate) order_by: Vec<KeyPath>,
}

/// Which values make a write's idempotency key.
#[derive(Debug)]
pub(crate) enum KeyValues {
    /// Every argument, in order.
    AllArguments,
    /// The values named in `key = [..]`, in order.
    Paths(Vec<KeyPath>),
}

/// What a contract sets for all its methods.
#[derive(Debug)]
pub(crate) struct ContractSettings {
    pub(crate) budget: Option<BudgetPolicy>,
    pub(crate) header: String,
    /// `#[contract(rate(..))]`, named (after the contract by default).
    pub(crate) rate: Option<RatePolicy>,
}

/// Checks `#[contract(...)]`'s settings, once for all its methods.
pub(crate) fn contract(
    name: &str,
    args: &ContractArgs,
    errors: &mut darling::error::Accumulator,
) -> ContractSettings {
    let spans = Spans::of_args(args);
    let budget = budget(args.retry_budget.as_ref(), errors);
    let header = args.idempotency_header.as_ref().map_or_else(
        || seawall_policy::DEFAULT_IDEMPOTENCY_HEADER.to_owned(),
        |h| (**h).clone(),
    );
    // The contract's keys are checked on a policy that holds only them.
    let mut probe =
        Policy::new(Kind::Read, Duration::from_secs(1)).with_idempotency_header(&header);
    if let Some(budget) = &budget {
        probe = probe.with_retry_budget(budget.clone());
    }
    let rate = args
        .rate
        .as_ref()
        .and_then(|rate| rate_policy(rate, errors))
        .map(|rate| match rate.name() {
            Some(_) => rate,
            None => rate.with_name(name.to_owned()),
        });
    if let Some(rate) = &rate {
        probe = probe.with_rate(rate.clone());
    }
    for violation in probe.violations() {
        let at = spans.of(violation.field(), Span::call_site());
        errors.push(darling::Error::custom(violation.to_string()).with_span(&at));
    }
    ContractSettings {
        budget,
        header,
        rate,
    }
}

fn budget(
    args: Option<&SpannedValue<BudgetArgs>>,
    errors: &mut darling::error::Accumulator,
) -> Option<BudgetPolicy> {
    let Some(args) = args else {
        return Some(BudgetPolicy::new());
    };
    if args.off.is_present() {
        if args.ratio.is_some() || args.max.is_some() || args.min_per_second.is_some() {
            errors.push(
                darling::Error::custom("`off` turns the retry budget off: drop the other keys")
                    .with_span(&args.span()),
            );
        }
        return None;
    }
    let mut budget = BudgetPolicy::new();
    if let Some(ratio) = &args.ratio {
        budget = budget.with_ratio(**ratio);
    }
    if let Some(max) = &args.max {
        budget = budget.with_max(**max);
    }
    if let Some(min) = args.min_per_second {
        budget = budget.with_min_per_second(min);
    }
    Some(budget)
}

/// Checks one `#[integration(...)]` of the method `sig`; `attr` spans the
/// attribute's name.
pub(crate) fn integration(
    args: IntegrationArgs,
    attr: Span,
    sig: &syn::Signature,
    contract: &ContractSettings,
) -> darling::Result<MethodPolicy> {
    let mut errors = darling::Error::accumulator();
    let spans = Spans::of_args(&args);

    let kind = match (args.read.is_present(), args.write.is_present()) {
        (true, false) => Some(Kind::Read),
        (false, true) => Some(Kind::Write),
        (false, false) => {
            errors.push(
                darling::Error::custom(
                    "say whether this call reads or writes: add `read` or `write` to the policy",
                )
                .with_span(&attr),
            );
            None
        }
        (true, true) => {
            errors.push(
                darling::Error::custom(
                    "a call is either `read` or `write`, not both: keep the one that describes \
                     what it does at the vendor",
                )
                .with_span(&args.write.span()),
            );
            None
        }
    };

    let timeout = match &args.timeout {
        Some(timeout) => duration(timeout, &mut errors),
        None => {
            errors.push(
                darling::Error::custom(
                    "every integration needs an explicit per-attempt timeout: add \
                     `timeout = \"10s\"` (a default would be a decision nobody made)",
                )
                .with_span(&attr),
            );
            None
        }
    };
    // Without a timeout the other rules are still checked, against a
    // stand-in; the rules that involve the timeout are then left out.
    let mut policy = Policy::new(
        kind.unwrap_or(Kind::Read),
        timeout.unwrap_or(Duration::from_nanos(1)),
    );

    if let Some(deadline) = args
        .deadline
        .as_ref()
        .and_then(|d| duration(d, &mut errors))
    {
        policy = policy.with_deadline(deadline);
    }

    if let Some(retry) = &args.retry {
        let retry = match &**retry {
            Override::Inherit => retry_policy(&RetryArgs::default(), &mut errors),
            Override::Explicit(explicit) => retry_policy(explicit, &mut errors),
        };
        policy = policy.with_retry(retry);
    }
    policy = match &contract.budget {
        Some(budget) => policy.with_retry_budget(budget.clone()),
        None => policy.without_retry_budget(),
    };

    if let Some(breaker) = &args.breaker {
        let breaker = match &**breaker {
            Override::Inherit => breaker_policy(&BreakerArgs::default(), &mut errors),
            Override::Explicit(explicit) => breaker_policy(explicit, &mut errors),
        };
        policy = policy.with_breaker(breaker);
    }

    match &args.rate {
        Some(rate) => {
            if let Some(rate) = rate_policy(rate, &mut errors) {
                policy = policy.with_rate(rate);
            }
        }
        // The contract's limiter, for a method without its own.
        None => {
            if let Some(rate) = &contract.rate {
                policy = policy.with_rate(rate.clone());
            }
        }
    }

    if let Some(bulkhead) = &args.bulkhead
        && let Some(bulkhead) = bulkhead_policy(bulkhead, &mut errors)
    {
        policy = policy.with_bulkhead(bulkhead);
    }

    if let Some(hedge) = &args.hedge
        && let Some(hedge) = hedge_policy(hedge, &mut errors)
    {
        policy = policy.with_hedge(hedge);
    }

    let mut key = None;
    if let Some(idempotent) = &args.idempotent {
        let (values, store) = match &**idempotent {
            Override::Inherit => (KeyValues::AllArguments, None),
            Override::Explicit(explicit) => idempotent_policy(explicit, &mut errors),
        };
        key = Some(values);
        policy = policy
            .with_idempotency_key()
            .with_idempotency_header(contract.header.clone());
        if let Some(store) = store {
            policy = policy.with_idempotency_store(store);
        }
    }

    let mut custom_fallback = None;
    let mut order_by: &[KeyPath] = &[];
    if let Some(fallback) = &args.fallback {
        match &**fallback {
            FallbackArg::With(path) => custom_fallback = Some(path.clone()),
            FallbackArg::Queue(queue) => {
                policy = policy.with_queue_fallback();
                order_by = queue.order_by.as_ref().map_or(&[], |paths| &paths.0);
            }
            FallbackArg::Cache(_) => {}
        }
    }
    if let Some(fallback) = &args.fallback
        && let FallbackArg::Cache(args) = &**fallback
        && let Some(max_stale) = args
            .max_stale
            .as_ref()
            .and_then(|m| duration(m, &mut errors))
    {
        let mut cache = CachePolicy::new(max_stale);
        if let Some(capacity) = &args.capacity {
            cache = cache.with_capacity(**capacity);
        }
        policy = policy.with_cache_fallback(cache);
    }

    let redacted: &[KeyPath] = args.redact.as_ref().map_or(&[], |names| &names.0);
    policy = policy.with_redact(Redact::new(redacted.iter().map(|path| path.name.clone())));

    let method = sig.ident.to_string();
    let arguments = argument_names(sig);
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let mut violations = policy.violations();
    if let Some(KeyValues::Paths(paths)) = &key {
        violations.extend(key_violations(
            Field::IdempotentKey,
            paths,
            &method,
            &arguments,
        ));
    }
    violations.extend(key_violations(
        Field::FallbackOrderBy,
        order_by,
        &method,
        &arguments,
    ));
    violations.extend(policy.argument_violations(&method, &arguments));
    for violation in violations {
        let field = violation.field();
        if field.is_contract_level() {
            continue; // reported once, on the contract
        }
        let stand_in = timeout.is_none()
            && matches!(
                violation,
                PolicyError::ZeroDuration(Field::Timeout)
                    | PolicyError::HalfOpenMax { .. }
                    | PolicyError::OverDeadline { .. }
            );
        let guessed = kind.is_none()
            && matches!(
                violation,
                PolicyError::RetriedWriteWithoutKey | PolicyError::QueueOnRead
            );
        if stand_in || guessed {
            continue;
        }
        // A rule about one entry of a list points at the entry.
        let entries = match (field, &key) {
            (Field::Redact, _) => redacted,
            (Field::IdempotentKey, Some(KeyValues::Paths(paths))) => paths.as_slice(),
            (Field::FallbackOrderBy, _) => order_by,
            _ => &[],
        };
        let at = match violation.entry().and_then(|entry| entries.get(entry)) {
            Some(path) => path.root.span(),
            None => spans.of(field, attr),
        };
        errors.push(darling::Error::custom(violation.to_string()).with_span(&at));
    }

    errors.finish()?;
    Ok(MethodPolicy {
        policy,
        key,
        custom_fallback,
        redact: redacted.iter().map(|path| path.root.clone()).collect(),
        order_by: order_by.to_vec(),
    })
}

/// The names of the method's arguments, in order (without the receiver).
fn argument_names(sig: &syn::Signature) -> Vec<String> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            syn::FnArg::Typed(typed) => match &*typed.pat {
                syn::Pat::Ident(pat) => Some(pat.ident.to_string()),
                _ => None,
            },
            syn::FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Every value of an idempotency key (or of a queued write's ordering key)
/// starts from an argument. (The key is the macro's, not the policy's: the
/// generated code derives it.)
fn key_violations(
    field: Field,
    paths: &[KeyPath],
    method: &str,
    arguments: &[&str],
) -> Vec<PolicyError> {
    paths
        .iter()
        .enumerate()
        .filter(|(_, path)| !arguments.iter().any(|argument| path.root == argument))
        .map(|(entry, path)| {
            PolicyError::not_an_argument(field, &path.name, entry, method, arguments)
        })
        .collect()
}

fn retry_policy(args: &RetryArgs, errors: &mut darling::error::Accumulator) -> RetryPolicy {
    let defaults = RetryPolicy::default();
    let mut retry = RetryPolicy::new(
        args.attempts
            .as_deref()
            .copied()
            .unwrap_or(defaults.attempts()),
    );
    if let Some(base) = args.base.as_ref().and_then(|b| duration(b, errors)) {
        retry = retry.with_base(base);
    }
    if let Some(cap) = args.cap.as_ref().and_then(|c| duration(c, errors)) {
        retry = retry.with_cap(cap);
    }
    if let Some(jitter) = args.jitter {
        retry = retry.with_jitter(match jitter {
            JitterArg::Full => Jitter::Full,
            JitterArg::Equal => Jitter::Equal,
            JitterArg::Decorrelated => Jitter::Decorrelated,
            JitterArg::None => Jitter::None,
        });
    }
    if let Some(max) = args.max_elapsed.as_ref().and_then(|m| duration(m, errors)) {
        retry = retry.with_max_elapsed(max);
    }
    if let Some(on) = args.on.as_ref().and_then(|on| classes(on, errors)) {
        retry = retry.with_retry_on(on);
    }
    retry
}

fn breaker_policy(args: &BreakerArgs, errors: &mut darling::error::Accumulator) -> BreakerPolicy {
    let mut breaker = BreakerPolicy::new();
    if let Some(rate) = &args.failure_rate {
        breaker = breaker.with_failure_rate(**rate);
    }
    match args.window.as_deref() {
        None => {}
        // A small window judges from its size unless told otherwise
        // (`BreakerPolicy::min_calls`).
        Some(WindowArg::Calls(calls)) => breaker = breaker.with_window(*calls),
        Some(WindowArg::Time(text)) => {
            let span = args
                .window
                .as_ref()
                .map_or_else(Span::call_site, SpannedValue::span);
            if let Some(window) = duration(&SpannedValue::new(text.clone(), span), errors) {
                breaker = breaker.with_time_window(window);
            }
        }
    }
    if let Some(min_calls) = &args.min_calls {
        breaker = breaker.with_min_calls(**min_calls);
    }
    if let Some(run) = &args.consecutive_failures {
        breaker = breaker.with_consecutive_failures(**run);
    }
    if let Some(open_for) = args.open_for.as_ref().and_then(|o| duration(o, errors)) {
        breaker = breaker.with_open_for(open_for);
    }
    if let Some(max) = args.open_for_max.as_ref().and_then(|m| duration(m, errors)) {
        breaker = breaker.with_open_for_max(max);
    }
    if let Some(probes) = &args.probes {
        breaker = breaker.with_probes(**probes);
    }
    if let Some(max) = args
        .half_open_max
        .as_ref()
        .and_then(|h| duration(h, errors))
    {
        breaker = breaker.with_half_open_max(max);
    }
    if let Some(slow) = args.slow.as_ref().and_then(|s| duration(s, errors)) {
        breaker = breaker.with_slow(slow);
    }
    if let Some(rate) = &args.slow_rate {
        breaker = breaker.with_slow_rate(**rate);
    }
    if let Some(set) = args
        .failure_classes
        .as_ref()
        .and_then(|list| classes(list, errors))
    {
        breaker = breaker.with_failure_classes(set);
    }
    if let Some(name) = &args.name {
        breaker = breaker.with_name((**name).clone());
    }
    breaker
}

fn idempotent_policy(
    args: &crate::args::IdempotentArgs,
    errors: &mut darling::error::Accumulator,
) -> (KeyValues, Option<StorePolicy>) {
    let values = match &args.key {
        Some(paths) if paths.0.is_empty() => {
            errors.push(
                darling::Error::custom(
                    "an empty key would give every call the same key: name the values that make \
                     one write different from another, or write `idempotent` alone for every \
                     argument",
                )
                .with_span(&paths.span()),
            );
            KeyValues::AllArguments
        }
        Some(paths) => KeyValues::Paths(paths.0.clone()),
        None => KeyValues::AllArguments,
    };
    if !args.store.is_present() {
        let options = [
            args.retention.as_ref().map(SpannedValue::span),
            args.replay_failures.as_ref().map(SpannedValue::span),
            args.concurrent.as_ref().map(SpannedValue::span),
        ];
        for span in options.into_iter().flatten() {
            errors.push(
                darling::Error::custom(
                    "this key configures the idempotency store: add `store` to use it",
                )
                .with_span(&span),
            );
        }
        return (values, None);
    }
    let mut store = StorePolicy::new();
    if let Some(retention) = args.retention.as_ref().and_then(|r| duration(r, errors)) {
        store = store.with_retention(retention);
    }
    if let Some(replay) = &args.replay_failures {
        store = store.with_replay_failures(**replay);
    }
    if let Some(concurrent) = &args.concurrent {
        store = store.with_on_duplicate(match **concurrent {
            ConcurrentArg::Wait => OnDuplicate::Wait,
            ConcurrentArg::Reject => OnDuplicate::Reject,
        });
    }
    (values, Some(store))
}

/// The classes named in a list; unknown and repeated names are errors here
/// (and the list is then left out, so they are not reported twice), an
/// empty list or `ignored` a rule of the policy.
fn classes(
    list: &SpannedValue<ClassList>,
    errors: &mut darling::error::Accumulator,
) -> Option<ClassSet> {
    let mut found = Vec::new();
    let mut wrong = false;
    for name in &list.0 {
        match ErrorClass::from_name(name) {
            Some(class) if !found.contains(&class) => found.push(class),
            Some(_) => {
                wrong = true;
                errors.push(
                    darling::Error::custom(format!("\"{}\" is listed twice", **name))
                        .with_span(&name.span()),
                );
            }
            None => {
                wrong = true;
                errors.push(
                    darling::Error::custom(format!(
                        "unknown error class \"{}\": the classes are \"retryable\", \
                         \"vendor_fault\" and \"permanent\"",
                        **name
                    ))
                    .with_span(&name.span()),
                );
            }
        }
    }
    (!wrong).then(|| ClassSet::of(found))
}

/// `rate(..)`: its limit parsed (reported at its tokens when it does not
/// parse, or when it is missing), the rest copied; the rules are the
/// policy's.
fn rate_policy(
    args: &SpannedValue<RateArgs>,
    errors: &mut darling::error::Accumulator,
) -> Option<RatePolicy> {
    let Some(limit) = &args.limit else {
        errors.push(
            darling::Error::custom(
                "`rate` needs its `limit`: `rate(limit = \"100/10s\")`, the vendor's quota as \
                 calls per period",
            )
            .with_span(&args.span()),
        );
        return None;
    };
    let (count, period) = match seawall_policy::parse_limit(limit) {
        Ok(parsed) => parsed,
        Err(message) => {
            errors.push(
                darling::Error::custom(format!("invalid rate limit: {message}"))
                    .with_span(&limit.span()),
            );
            return None;
        }
    };
    let mut rate = RatePolicy::new(count, period);
    if let Some(burst) = &args.burst {
        rate = rate.with_burst(**burst);
    }
    if let Some(max_wait) = args.max_wait.as_ref().and_then(|m| duration(m, errors)) {
        rate = rate.with_max_wait(max_wait);
    }
    if let Some(name) = &args.name {
        rate = rate.with_name((**name).clone());
    }
    Some(rate)
}

/// `bulkhead(..)`: its `max` required unless `adaptive`, the rest copied;
/// the rules are the policy's.
fn bulkhead_policy(
    args: &SpannedValue<BulkheadArgs>,
    errors: &mut darling::error::Accumulator,
) -> Option<BulkheadPolicy> {
    let mut bulkhead = match (&args.max, args.adaptive.is_present()) {
        (max, true) => {
            let adaptive = BulkheadPolicy::adaptive();
            match max {
                Some(max) => adaptive.with_max(**max),
                None => adaptive,
            }
        }
        (Some(max), false) => BulkheadPolicy::new(**max),
        (None, false) => {
            errors.push(
                darling::Error::custom(
                    "`bulkhead` needs its `max`: `bulkhead(max = 20)`, the calls the vendor may \
                     have in flight at once (or `bulkhead(adaptive)`, a limit that follows the \
                     vendor's latency)",
                )
                .with_span(&args.span()),
            );
            return None;
        }
    };
    if let Some(min) = &args.min {
        bulkhead = bulkhead.with_min(**min);
    }
    if let Some(queue) = &args.queue {
        bulkhead = bulkhead.with_queue(**queue);
    }
    if let Some(max_wait) = args.max_wait.as_ref().and_then(|m| duration(m, errors)) {
        bulkhead = bulkhead.with_max_wait(max_wait);
    }
    Some(bulkhead)
}

/// `hedge(..)`: its `after` required and parsed (a duration or a
/// percentile), `max` copied; the rules are the policy's.
fn hedge_policy(
    args: &SpannedValue<HedgeArgs>,
    errors: &mut darling::error::Accumulator,
) -> Option<HedgePolicy> {
    let Some(after) = &args.after else {
        errors.push(
            darling::Error::custom(
                "`hedge` needs its `after`: `hedge(after = \"150ms\")`, or `after = \"p95\"` to \
                 follow the method's own latency",
            )
            .with_span(&args.span()),
        );
        return None;
    };
    let after = match HedgeAfter::parse(after) {
        Ok(after) => after,
        Err(message) => {
            errors.push(
                darling::Error::custom(format!("invalid hedge `after`: {message}"))
                    .with_span(&after.span()),
            );
            return None;
        }
    };
    let mut hedge = HedgePolicy::new(after);
    if let Some(max) = &args.max {
        hedge = hedge.with_max(**max);
    }
    Some(hedge)
}

/// Parses a duration, reporting one that does not parse at its tokens. Zero
/// and too-long durations are rules of the policy, reported with the key.
fn duration(
    text: &SpannedValue<DurationText>,
    errors: &mut darling::error::Accumulator,
) -> Option<Duration> {
    match humantime::parse_duration(text) {
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.push(
                darling::Error::custom(format!(
                    "invalid duration \"{}\" ({error}): write a number and a unit, such as \
                     \"250ms\", \"10s\", \"1m 30s\" or \"2h\"",
                    **text
                ))
                .with_span(&text.span()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, String> {
        let mut errors = darling::Error::accumulator();
        let value = duration(
            &SpannedValue::new(text.to_owned(), Span::call_site()),
            &mut errors,
        );
        errors.finish().map_err(|e| e.to_string())?;
        Ok(value.expect("a duration when there is no error"))
    }

    #[test]
    fn durations_parse_humantime_forms() {
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse("0s"),
            Ok(Duration::ZERO),
            "zero is the policy's rule to refuse"
        );
        assert!(parse("ten seconds").unwrap_err().contains("\"10s\""));
    }
}
