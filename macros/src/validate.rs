//! The rules that look across several keys of one `#[integration]`, and the
//! checked policy the expander turns into code.
//!
//! Every rule here has a twin in the runtime (`Policy::validate`), with the
//! same limits; each mistake is reported at its own tokens, all in one build.

use std::time::Duration;

use darling::util::{Override, SpannedValue};
use proc_macro2::Span;

use crate::args::{
    BreakerArgs, BudgetArgs, ClassList, DurationText, IntegrationArgs, JitterArg, KeyPath,
    RetryArgs, WindowArg,
};

/// The most attempts a retry policy may make: `seawall::policy::MAX_ATTEMPTS`.
pub(crate) const MAX_ATTEMPTS: u32 = 10;
/// The most half-open probes: `seawall::policy::MAX_PROBES`.
pub(crate) const MAX_PROBES: u32 = 1000;
/// The longest duration a policy may hold: `seawall::policy::MAX_DURATION`.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100_000_000);

// Defaults, the same as the runtime's `RetryPolicy::new` and
// `BreakerPolicy::new` (an integration test compares them).
const DEFAULT_ATTEMPTS: u32 = 3;
const DEFAULT_BASE: Duration = Duration::from_millis(100);
const DEFAULT_CAP: Duration = Duration::from_secs(5);
const DEFAULT_FAILURE_RATE: f64 = 0.5;
const DEFAULT_WINDOW: u32 = 20;
const DEFAULT_MIN_CALLS: u32 = 10;
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
const DEFAULT_PROBES: u32 = 1;
const DEFAULT_HALF_OPEN_MAX: Duration = Duration::from_secs(60);
const DEFAULT_SLOW_RATE: f64 = 0.5;
/// The error classes a breaker may count as failures, and the default set.
const CLASSES: [&str; 3] = ["retryable", "vendor_fault", "permanent"];
const DEFAULT_FAILURE_CLASSES: [&str; 2] = ["retryable", "vendor_fault"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

#[derive(Debug)]
pub(crate) struct MethodPolicy {
    pub(crate) kind: Kind,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retry: Retry,
    pub(crate) breaker: Option<Breaker>,
    pub(crate) idempotent: Option<Idempotent>,
}

/// A write's idempotency: which values make its key, and whether seawall
/// records its outcomes.
#[derive(Debug)]
pub(crate) struct Idempotent {
    pub(crate) key: KeyValues,
    pub(crate) store: Option<Store>,
}

/// Which values make a write's idempotency key.
#[derive(Debug)]
pub(crate) enum KeyValues {
    /// Every argument, in order.
    AllArguments,
    /// The values named in `key = [..]`, in order.
    Paths(Vec<KeyPath>),
}

/// `idempotent(store, ..)`.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) retention: Duration,
    pub(crate) replay_failures: bool,
    pub(crate) reject_duplicates: bool,
}

#[derive(Debug)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) jitter: JitterArg,
    pub(crate) max_elapsed: Option<Duration>,
    /// Names from [`CLASSES`].
    pub(crate) on: Vec<&'static str>,
}

/// A contract's retry budget: the runtime's `BudgetPolicy`, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Budget {
    On {
        ratio: f64,
        max: u32,
        min_per_second: u32,
    },
    Off,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) failure_rate: f64,
    pub(crate) window: Window,
    pub(crate) min_calls: u32,
    pub(crate) open_for: Duration,
    pub(crate) open_for_max: Option<Duration>,
    pub(crate) probes: u32,
    pub(crate) half_open_max: Duration,
    pub(crate) slow: Option<Duration>,
    pub(crate) slow_rate: f64,
    /// Names from [`CLASSES`], in the order given, without repeats.
    pub(crate) failure_classes: Vec<&'static str>,
    pub(crate) name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    Calls(u32),
    Time(Duration),
}

impl Retry {
    fn none() -> Self {
        Self {
            attempts: 1,
            base: DEFAULT_BASE,
            cap: DEFAULT_CAP,
            jitter: JitterArg::Full,
            max_elapsed: None,
            on: vec!["retryable"],
        }
    }

    /// Every backoff delay before jitter: `Σ min(cap, base × 2^n)`.
    fn max_total_backoff(&self) -> Duration {
        (0..self.attempts.saturating_sub(1))
            .map(|n| {
                let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
                self.base.saturating_mul(factor).min(self.cap)
            })
            .sum()
    }
}

/// Checks one `#[integration(...)]`; `attr` spans the whole attribute.
pub(crate) fn integration(args: IntegrationArgs, attr: Span) -> darling::Result<MethodPolicy> {
    let mut errors = darling::Error::accumulator();

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

    let retry = match &args.retry {
        None => Retry::none(),
        Some(retry) => match &**retry {
            Override::Inherit => retry_policy(&RetryArgs::default(), &mut errors),
            Override::Explicit(explicit) => retry_policy(explicit, &mut errors),
        },
    };

    let breaker = args.breaker.as_ref().map(|breaker| {
        let span = breaker.span();
        match &**breaker {
            Override::Inherit => {
                breaker_policy(&BreakerArgs::default(), timeout, span, &mut errors)
            }
            Override::Explicit(explicit) => breaker_policy(explicit, timeout, span, &mut errors),
        }
    });

    let deadline = args
        .deadline
        .as_ref()
        .and_then(|deadline| duration(deadline, &mut errors));
    if let (Some(deadline_arg), Some(deadline), Some(timeout)) = (&args.deadline, deadline, timeout)
    {
        let attempts = retry.attempts;
        let backoff = retry.max_total_backoff();
        let by_attempts = timeout.saturating_mul(attempts).saturating_add(backoff);
        // No attempt starts after `max_elapsed`, so none ends later than
        // `max_elapsed + timeout`.
        let by_elapsed = retry.max_elapsed.map(|max| max.saturating_add(timeout));
        let worst_case = by_elapsed.map_or(by_attempts, |e| e.min(by_attempts));
        if worst_case > deadline {
            let how = match by_elapsed {
                Some(_) if worst_case < by_attempts => format!(
                    "`max_elapsed` {} + {} timeout",
                    show(retry.max_elapsed.unwrap_or_default()),
                    show(timeout)
                ),
                _ => format!(
                    "{attempts} attempt(s) × {} timeout + {} of backoff",
                    show(timeout),
                    show(backoff)
                ),
            };
            errors.push(
                darling::Error::custom(format!(
                    "the worst case of this policy is {} ({how}), over the deadline of {}: raise \
                     `deadline`, or lower `timeout`, `retry(attempts = ..)`, the backoff `cap` \
                     or `max_elapsed`",
                    show(worst_case),
                    show(deadline),
                ))
                .with_span(&deadline_arg.span()),
            );
        }
    }

    let idempotent = args
        .idempotent
        .as_ref()
        .map(|idempotent| match &**idempotent {
            Override::Inherit => Idempotent {
                key: KeyValues::AllArguments,
                store: None,
            },
            Override::Explicit(explicit) => {
                let key = match &explicit.key {
                    Some(paths) if paths.0.is_empty() => {
                        errors.push(
                            darling::Error::custom(
                                "an empty key would give every call the same key: name the values \
                             that make one write different from another, or write `idempotent` \
                             alone for every argument",
                            )
                            .with_span(&paths.span()),
                        );
                        KeyValues::AllArguments
                    }
                    Some(paths) => KeyValues::Paths(paths.0.clone()),
                    None => KeyValues::AllArguments,
                };
                let store = if explicit.store.is_present() {
                    let retention = explicit
                        .retention
                        .as_ref()
                        .and_then(|r| duration(r, &mut errors))
                        .unwrap_or(Duration::from_secs(24 * 60 * 60));
                    Some(Store {
                        retention,
                        replay_failures: explicit
                            .replay_failures
                            .as_deref()
                            .copied()
                            .unwrap_or(true),
                        reject_duplicates: explicit.concurrent.as_deref()
                            == Some(&crate::args::ConcurrentArg::Reject),
                    })
                } else {
                    let spans = [
                        explicit.retention.as_ref().map(SpannedValue::span),
                        explicit.replay_failures.as_ref().map(SpannedValue::span),
                        explicit.concurrent.as_ref().map(SpannedValue::span),
                    ];
                    for span in spans.into_iter().flatten() {
                        errors.push(
                            darling::Error::custom(
                                "this key configures the idempotency store: add `store` to use it",
                            )
                            .with_span(&span),
                        );
                    }
                    None
                };
                Idempotent { key, store }
            }
        });
    if kind == Some(Kind::Write)
        && retry.attempts > 1
        && idempotent.is_none()
        && let Some(retry_arg) = &args.retry
    {
        errors.push(
            darling::Error::custom(
                "a retried write needs an idempotency key: when an attempt times out after the \
                 vendor processed it, the retry would run the write twice. Add `idempotent` \
                 (keyed on every argument) or `idempotent(key = [..])`, or remove `retry`",
            )
            .with_span(&retry_arg.span()),
        );
    }

    let policy = match (kind, timeout) {
        (Some(kind), Some(timeout)) => Some(MethodPolicy {
            kind,
            timeout,
            deadline,
            retry,
            breaker,
            idempotent,
        }),
        _ => None,
    };
    errors.finish()?;
    policy.ok_or_else(|| darling::Error::custom("invalid policy").with_span(&attr))
}

fn retry_policy(args: &RetryArgs, errors: &mut darling::error::Accumulator) -> Retry {
    let attempts = args.attempts.as_ref().map_or(DEFAULT_ATTEMPTS, |a| **a);
    if let Some(given) = &args.attempts {
        if **given == 0 {
            errors.push(
                darling::Error::custom(
                    "`attempts` counts the first call too, so it is at least 1; to turn retries \
                     off, remove `retry`",
                )
                .with_span(&given.span()),
            );
        } else if **given > MAX_ATTEMPTS {
            errors.push(
                darling::Error::custom(format!(
                    "{} attempts is more than seawall allows ({MAX_ATTEMPTS}): past a handful, \
                     retries stop helping the caller and start hurting the vendor",
                    **given
                ))
                .with_span(&given.span()),
            );
        }
    }
    let base = args
        .base
        .as_ref()
        .map_or(Some(DEFAULT_BASE), |b| duration(b, errors));
    let cap = args
        .cap
        .as_ref()
        .map_or(Some(DEFAULT_CAP), |c| duration(c, errors));
    let (base, cap) = (base.unwrap_or(DEFAULT_BASE), cap.unwrap_or(DEFAULT_CAP));
    if cap < base {
        let span = args
            .cap
            .as_ref()
            .map(SpannedValue::span)
            .or_else(|| args.base.as_ref().map(SpannedValue::span))
            .unwrap_or_else(Span::call_site);
        errors.push(
            darling::Error::custom(format!(
                "the backoff `cap` ({}) is below its `base` ({}): the cap bounds the longest \
                 delay, so make it at least the base",
                show(cap),
                show(base)
            ))
            .with_span(&span),
        );
    }
    let max_elapsed = args.max_elapsed.as_ref().and_then(|m| duration(m, errors));
    let on = args.on.as_ref().map_or_else(
        || vec!["retryable"],
        |list| {
            classes(
                list,
                "for `on` would retry nothing",
                "an ignored error is never retried",
                errors,
            )
        },
    );
    Retry {
        attempts,
        base,
        cap,
        jitter: args.jitter.unwrap_or(JitterArg::Full),
        max_elapsed,
        on,
    }
}

/// Checks `#[contract(idempotency_header = "...")]`: an HTTP header name
/// (a token of RFC 9110).
pub(crate) fn header_name(
    header: Option<&SpannedValue<String>>,
    errors: &mut darling::error::Accumulator,
) -> String {
    let Some(header) = header else {
        return "Idempotency-Key".to_owned();
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || !header.chars().all(token) {
        errors.push(
            darling::Error::custom(format!(
                "\"{}\" is not an HTTP header name: use letters, digits and `-`, such as \
                 \"Idempotency-Key\"",
                **header
            ))
            .with_span(&header.span()),
        );
    }
    (**header).clone()
}

/// Checks `#[contract(retry_budget(...))]`.
pub(crate) fn budget(
    args: Option<&SpannedValue<BudgetArgs>>,
    errors: &mut darling::error::Accumulator,
) -> Budget {
    const DEFAULT: Budget = Budget::On {
        ratio: 0.1,
        max: 10,
        min_per_second: 10,
    };
    let Some(args) = args else {
        return DEFAULT;
    };
    if args.off.is_present() {
        if args.ratio.is_some() || args.max.is_some() || args.min_per_second.is_some() {
            errors.push(
                darling::Error::custom("`off` turns the retry budget off: drop the other keys")
                    .with_span(&args.span()),
            );
        }
        return Budget::Off;
    }
    let Budget::On {
        ratio,
        max,
        min_per_second,
    } = DEFAULT
    else {
        return DEFAULT;
    };
    let ratio = rate(args.ratio.as_ref(), ratio, "ratio", errors);
    let max = args.max.as_ref().map_or(max, |given| {
        if **given > 1_000_000 {
            errors.push(
                darling::Error::custom("a retry budget holds at most 1000000 tokens")
                    .with_span(&given.span()),
            );
        }
        **given
    });
    Budget::On {
        ratio,
        max,
        min_per_second: args.min_per_second.unwrap_or(min_per_second),
    }
}

fn breaker_policy(
    args: &BreakerArgs,
    timeout: Option<Duration>,
    breaker_span: Span,
    errors: &mut darling::error::Accumulator,
) -> Breaker {
    let failure_rate = rate(
        args.failure_rate.as_ref(),
        DEFAULT_FAILURE_RATE,
        "failure_rate",
        errors,
    );
    let slow_rate = rate(
        args.slow_rate.as_ref(),
        DEFAULT_SLOW_RATE,
        "slow_rate",
        errors,
    );
    let window = match args.window.as_deref() {
        None => Window::Calls(DEFAULT_WINDOW),
        Some(WindowArg::Calls(calls)) => {
            if *calls == 0 {
                errors.push(
                    darling::Error::custom("a breaker `window` must hold at least one call")
                        .with_span(
                            &args
                                .window
                                .as_ref()
                                .map_or_else(Span::call_site, SpannedValue::span),
                        ),
                );
            }
            Window::Calls(*calls)
        }
        Some(WindowArg::Time(text)) => {
            let span = args
                .window
                .as_ref()
                .map_or_else(Span::call_site, SpannedValue::span);
            let duration = duration(&SpannedValue::new(text.clone(), span), errors);
            Window::Time(duration.unwrap_or(Duration::from_secs(30)))
        }
    };
    let min_calls = args.min_calls.as_ref().map_or(
        match window {
            Window::Calls(calls) => DEFAULT_MIN_CALLS.min(calls),
            Window::Time(_) => DEFAULT_MIN_CALLS,
        },
        |m| **m,
    );
    if let Some(given) = &args.min_calls {
        match window {
            Window::Calls(calls) if **given == 0 || **given > calls => errors.push(
                darling::Error::custom(format!(
                    "`min_calls` must be between 1 and the window ({calls} calls): the breaker \
                     can never judge more calls than its window holds"
                ))
                .with_span(&given.span()),
            ),
            Window::Time(_) if **given == 0 => errors.push(
                darling::Error::custom("`min_calls` must be at least 1").with_span(&given.span()),
            ),
            _ => {}
        }
    }
    let probes = args.probes.as_ref().map_or(DEFAULT_PROBES, |p| **p);
    if let Some(given) = &args.probes
        && (**given == 0 || **given > MAX_PROBES)
    {
        errors.push(
            darling::Error::custom(format!(
                "`probes` must be between 1 and {MAX_PROBES}: with no probe, an open breaker \
                 could never find out the vendor has recovered"
            ))
            .with_span(&given.span()),
        );
    }
    let open_for = args
        .open_for
        .as_ref()
        .and_then(|o| duration(o, errors))
        .unwrap_or(DEFAULT_OPEN_FOR);
    let open_for_max = args.open_for_max.as_ref().and_then(|max| {
        let value = duration(max, errors)?;
        if value < open_for {
            errors.push(
                darling::Error::custom(format!(
                    "`open_for_max` ({}) is below `open_for` ({}): it caps how far the open \
                     duration grows, so make it at least `open_for`",
                    show(value),
                    show(open_for)
                ))
                .with_span(&max.span()),
            );
        }
        Some(value)
    });
    let half_open_max = args
        .half_open_max
        .as_ref()
        .and_then(|h| duration(h, errors))
        .unwrap_or(DEFAULT_HALF_OPEN_MAX);
    if let Some(timeout) = timeout
        && half_open_max < timeout
    {
        let (span, which) = match &args.half_open_max {
            Some(given) => (given.span(), "`half_open_max`"),
            None => (breaker_span, "the default `half_open_max`"),
        };
        errors.push(
            darling::Error::custom(format!(
                "{which} ({}) is shorter than this method's `timeout` ({}): a probe could \
                 never report back in time; set `half_open_max` to at least the timeout",
                show(half_open_max),
                show(timeout)
            ))
            .with_span(&span),
        );
    }
    let slow = args.slow.as_ref().and_then(|s| duration(s, errors));
    if let (Some(slow_rate), None) = (&args.slow_rate, &args.slow) {
        errors.push(
            darling::Error::custom(
                "`slow_rate` needs `slow`, the duration from which a call counts as slow",
            )
            .with_span(&slow_rate.span()),
        );
    }
    let failure_classes = args.failure_classes.as_ref().map_or_else(
        || DEFAULT_FAILURE_CLASSES.to_vec(),
        |list| {
            classes(
                list,
                "of `failure_classes` would never open the breaker",
                "an ignored error is never recorded, so it cannot count as a failure",
                errors,
            )
        },
    );
    if let Some(name) = &args.name
        && name.trim().is_empty()
    {
        errors.push(
            darling::Error::custom("a breaker `name` must not be empty").with_span(&name.span()),
        );
    }
    Breaker {
        failure_rate,
        window,
        min_calls,
        open_for,
        open_for_max,
        probes,
        half_open_max,
        slow,
        slow_rate,
        failure_classes,
        name: args.name.as_ref().map(|n| (**n).clone()),
    }
}

fn rate(
    given: Option<&SpannedValue<f64>>,
    default: f64,
    key: &str,
    errors: &mut darling::error::Accumulator,
) -> f64 {
    let Some(given) = given else {
        return default;
    };
    if !(**given > 0.0 && **given <= 1.0) {
        errors.push(
            darling::Error::custom(format!(
                "`{key}` is a share of calls in (0, 1], such as 0.5; {} is outside it",
                **given
            ))
            .with_span(&given.span()),
        );
    }
    **given
}

fn classes(
    list: &SpannedValue<ClassList>,
    empty: &str,
    ignored: &str,
    errors: &mut darling::error::Accumulator,
) -> Vec<&'static str> {
    let mut found = Vec::new();
    if list.0.is_empty() {
        errors.push(
            darling::Error::custom(format!(
                "an empty list {empty}: list at least one of \"retryable\", \"vendor_fault\", \
                 \"permanent\""
            ))
            .with_span(&list.span()),
        );
    }
    for name in &list.0 {
        match CLASSES.iter().find(|class| **class == name.as_str()) {
            Some(class) if !found.contains(class) => found.push(*class),
            Some(_) => errors.push(
                darling::Error::custom(format!("\"{}\" is listed twice", **name))
                    .with_span(&name.span()),
            ),
            None if name.as_str() == "ignored" => {
                errors.push(darling::Error::custom(ignored).with_span(&name.span()))
            }
            None => errors.push(
                darling::Error::custom(format!(
                    "unknown error class \"{}\": the classes are \"retryable\", \
                     \"vendor_fault\" and \"permanent\"",
                    **name
                ))
                .with_span(&name.span()),
            ),
        }
    }
    found
}

/// Parses a duration, reporting a bad one at its tokens.
fn duration(
    text: &SpannedValue<DurationText>,
    errors: &mut darling::error::Accumulator,
) -> Option<Duration> {
    const FORMS: &str =
        "write a number and a unit, such as \"250ms\", \"10s\", \"1m 30s\" or \"2h\"";
    let message = match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => {
            format!("a duration of zero would fail every call: {FORMS}")
        }
        Ok(duration) if duration > MAX_DURATION => format!(
            "\"{}\" is longer than seawall's limit of {} seconds",
            **text,
            MAX_DURATION.as_secs()
        ),
        Ok(duration) => return Some(duration),
        Err(error) => format!("invalid duration \"{}\" ({error}): {FORMS}", **text),
    };
    errors.push(darling::Error::custom(message).with_span(&text.span()));
    None
}

fn show(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(duration)
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
    fn durations_parse_humantime_forms_and_refuse_zero_and_excess() {
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("0s").unwrap_err().contains("zero"));
        assert!(parse("ten seconds").unwrap_err().contains("\"10s\""));
        assert!(parse("100years").unwrap_err().contains("limit"));
    }
}
