//! What can be wrong with a policy ([`PolicyError`]) and which key it names
//! ([`Field`]), so the macro reports it at that key's tokens.

use std::time::Duration;

use crate::{MAX_ATTEMPTS, MAX_BUDGET_TOKENS, MAX_DURATION, MAX_PROBES, show};

/// Which key of a policy a rule is about, so the macro can point at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `timeout`.
    Timeout,
    /// `deadline`.
    Deadline,
    /// `retry` as a whole.
    Retry,
    /// `retry(attempts)`.
    RetryAttempts,
    /// `retry(base)`.
    RetryBase,
    /// `retry(cap)`.
    RetryCap,
    /// `retry(max_elapsed)`.
    RetryMaxElapsed,
    /// `retry(on)`.
    RetryOn,
    /// `breaker` as a whole.
    Breaker,
    /// `breaker(failure_rate)`.
    BreakerFailureRate,
    /// `breaker(window)`.
    BreakerWindow,
    /// `breaker(min_calls)`.
    BreakerMinCalls,
    /// `breaker(open_for)`.
    BreakerOpenFor,
    /// `breaker(open_for_max)`.
    BreakerOpenForMax,
    /// `breaker(probes)`.
    BreakerProbes,
    /// `breaker(half_open_max)`.
    BreakerHalfOpenMax,
    /// `breaker(slow)`.
    BreakerSlow,
    /// `breaker(slow_rate)`.
    BreakerSlowRate,
    /// `breaker(failure_classes)`.
    BreakerFailureClasses,
    /// `breaker(name)`.
    BreakerName,
    /// The contract's `retry_budget` as a whole.
    RetryBudget,
    /// The contract's `retry_budget(ratio)`.
    BudgetRatio,
    /// The contract's `retry_budget(max)`.
    BudgetMax,
    /// `idempotent` as a whole.
    Idempotent,
    /// `idempotent(key)`.
    IdempotentKey,
    /// `idempotent(retention)`.
    StoreRetention,
    /// The contract's `idempotency_header`.
    IdempotencyHeader,
    /// `fallback` as a whole.
    Fallback,
    /// `fallback = cache(max_stale)`.
    FallbackMaxStale,
    /// `fallback = cache(capacity)`.
    FallbackCapacity,
    /// `redact`.
    Redact,
    /// `fallback = queue(order_by)`.
    FallbackOrderBy,
    /// `rate` as a whole.
    Rate,
    /// `rate(limit)`.
    RateLimit,
    /// `rate(burst)`.
    RateBurst,
    /// `rate(max_wait)`.
    RateMaxWait,
    /// `rate(name)`.
    RateName,
    /// `bulkhead` as a whole.
    Bulkhead,
    /// `bulkhead(max)`.
    BulkheadMax,
    /// `bulkhead(queue)`.
    BulkheadQueue,
    /// `bulkhead(max_wait)`.
    BulkheadMaxWait,
    /// `bulkhead(adaptive)`.
    BulkheadAdaptive,
    /// `bulkhead(min)`.
    BulkheadMin,
    /// `hedge` as a whole.
    Hedge,
    /// `hedge(after)`.
    HedgeAfter,
    /// `hedge(max)`.
    HedgeMax,
}

impl Field {
    /// Every field, in the order of the enum (which is the order a policy's
    /// keys are checked in).
    pub const ALL: [Self; 46] = [
        Self::Timeout,
        Self::Deadline,
        Self::Retry,
        Self::RetryAttempts,
        Self::RetryBase,
        Self::RetryCap,
        Self::RetryMaxElapsed,
        Self::RetryOn,
        Self::Breaker,
        Self::BreakerFailureRate,
        Self::BreakerWindow,
        Self::BreakerMinCalls,
        Self::BreakerOpenFor,
        Self::BreakerOpenForMax,
        Self::BreakerProbes,
        Self::BreakerHalfOpenMax,
        Self::BreakerSlow,
        Self::BreakerSlowRate,
        Self::BreakerFailureClasses,
        Self::BreakerName,
        Self::RetryBudget,
        Self::BudgetRatio,
        Self::BudgetMax,
        Self::Idempotent,
        Self::IdempotentKey,
        Self::StoreRetention,
        Self::IdempotencyHeader,
        Self::Fallback,
        Self::FallbackMaxStale,
        Self::FallbackCapacity,
        Self::Redact,
        Self::FallbackOrderBy,
        Self::Rate,
        Self::RateLimit,
        Self::RateBurst,
        Self::RateMaxWait,
        Self::RateName,
        Self::Bulkhead,
        Self::BulkheadMax,
        Self::BulkheadQueue,
        Self::BulkheadMaxWait,
        Self::BulkheadAdaptive,
        Self::BulkheadMin,
        Self::Hedge,
        Self::HedgeAfter,
        Self::HedgeMax,
    ];

    /// The key as a policy writes it.
    pub const fn key(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Deadline => "deadline",
            Self::Retry => "retry",
            Self::RetryAttempts => "attempts",
            Self::RetryBase => "base",
            Self::RetryCap => "cap",
            Self::RetryMaxElapsed => "max_elapsed",
            Self::RetryOn => "on",
            Self::Breaker => "breaker",
            Self::BreakerFailureRate => "failure_rate",
            Self::BreakerWindow => "window",
            Self::BreakerMinCalls => "min_calls",
            Self::BreakerOpenFor => "open_for",
            Self::BreakerOpenForMax => "open_for_max",
            Self::BreakerProbes => "probes",
            Self::BreakerHalfOpenMax => "half_open_max",
            Self::BreakerSlow => "slow",
            Self::BreakerSlowRate => "slow_rate",
            Self::BreakerFailureClasses => "failure_classes",
            Self::BreakerName => "name",
            Self::RetryBudget => "retry_budget",
            Self::BudgetRatio => "ratio",
            Self::BudgetMax => "max",
            Self::Idempotent => "idempotent",
            Self::IdempotentKey => "key",
            Self::StoreRetention => "retention",
            Self::IdempotencyHeader => "idempotency_header",
            Self::Fallback => "fallback",
            Self::FallbackMaxStale => "max_stale",
            Self::FallbackCapacity => "capacity",
            Self::Redact => "redact",
            Self::FallbackOrderBy => "order_by",
            Self::Rate => "rate",
            Self::RateLimit => "limit",
            Self::RateBurst => "burst",
            Self::RateMaxWait => "max_wait",
            Self::RateName => "name",
            Self::Bulkhead => "bulkhead",
            Self::BulkheadMax => "max",
            Self::BulkheadQueue => "queue",
            Self::BulkheadMaxWait => "max_wait",
            Self::BulkheadAdaptive => "adaptive",
            Self::BulkheadMin => "min",
            Self::Hedge => "hedge",
            Self::HedgeAfter => "after",
            Self::HedgeMax => "max",
        }
    }

    /// The key this one is nested in, if any (`cap` in `retry`).
    pub const fn parent(self) -> Option<Self> {
        match self {
            Self::RetryAttempts
            | Self::RetryBase
            | Self::RetryCap
            | Self::RetryMaxElapsed
            | Self::RetryOn => Some(Self::Retry),
            Self::BreakerFailureRate
            | Self::BreakerWindow
            | Self::BreakerMinCalls
            | Self::BreakerOpenFor
            | Self::BreakerOpenForMax
            | Self::BreakerProbes
            | Self::BreakerHalfOpenMax
            | Self::BreakerSlow
            | Self::BreakerSlowRate
            | Self::BreakerFailureClasses
            | Self::BreakerName => Some(Self::Breaker),
            Self::BudgetRatio | Self::BudgetMax => Some(Self::RetryBudget),
            Self::IdempotentKey | Self::StoreRetention => Some(Self::Idempotent),
            Self::FallbackMaxStale | Self::FallbackCapacity | Self::FallbackOrderBy => {
                Some(Self::Fallback)
            }
            Self::RateLimit | Self::RateBurst | Self::RateMaxWait | Self::RateName => {
                Some(Self::Rate)
            }
            Self::BulkheadMax
            | Self::BulkheadQueue
            | Self::BulkheadMaxWait
            | Self::BulkheadAdaptive
            | Self::BulkheadMin => Some(Self::Bulkhead),
            Self::HedgeAfter | Self::HedgeMax => Some(Self::Hedge),
            Self::Timeout
            | Self::Deadline
            | Self::Retry
            | Self::Breaker
            | Self::RetryBudget
            | Self::Idempotent
            | Self::IdempotencyHeader
            | Self::Fallback
            | Self::Redact
            | Self::Rate
            | Self::Bulkhead
            | Self::Hedge => None,
        }
    }

    /// The key's path from the top of its attribute, each key it is nested
    /// in first: `retry.attempts`, `breaker.slow_rate`, `timeout`,
    /// `retry_budget.ratio` (of the contract). The macro finds where a key
    /// was written by this path.
    pub fn path(self) -> String {
        match self.parent() {
            Some(parent) => format!("{}.{}", parent.path(), self.key()),
            None => self.key().to_owned(),
        }
    }

    /// Whether the key belongs to the contract rather than to one method.
    pub const fn is_contract_level(self) -> bool {
        matches!(
            self,
            Self::RetryBudget | Self::BudgetRatio | Self::BudgetMax | Self::IdempotencyHeader
        )
    }
}

// `ALL` lists every field in the order of the enum. A field added in the
// middle and left out of `ALL` fails here; one added last does not, so add
// each new field to `ALL` (the macro's test then checks that it is found
// where its key is written).
const _: () = {
    let mut i = 0;
    while i < Field::ALL.len() {
        assert!(
            Field::ALL[i] as usize == i,
            "`Field::ALL` is in the order of the enum"
        );
        i += 1;
    }
};

/// A rule of seawall's that a policy breaks. The message says what to
/// write instead; [`field`](Self::field) says which key it is about.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration that must be positive is zero.
    #[error("`{}` of zero would fail every call: give it a positive duration", .0.key())]
    ZeroDuration(Field),
    /// A duration past [`MAX_DURATION`].
    #[error("`{}` of {} is longer than seawall's limit of {}", .0.key(), show(*.1), show(MAX_DURATION))]
    TooLong(Field, Duration),
    /// `attempts` is zero or above [`MAX_ATTEMPTS`].
    #[error("{}", attempts_message(*.0))]
    Attempts(u32),
    /// The backoff cap is below its base.
    #[error(
        "the backoff `cap` ({}) is below its `base` ({}): the cap bounds the longest delay, so \
         make it at least the base",
        show(*cap),
        show(*base)
    )]
    CapBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// No class to retry, or `Ignored` among them.
    #[error(
        "`on` lists the classes to retry: one or more of \"retryable\", \"vendor_fault\" and \
         \"permanent\" (an ignored error is never retried)"
    )]
    RetryClasses,
    /// A rate outside `(0, 1]`.
    #[error("`{}` is a share of calls in (0, 1], such as 0.5; {} is outside it", .0.key(), .1)]
    Rate(Field, f64),
    /// A count window of zero calls.
    #[error("a breaker `window` must hold at least one call")]
    Window,
    /// `min_calls` zero, or larger than a count window.
    #[error(
        "`min_calls` must be between 1 and the window ({window} calls): the breaker can never \
         judge more calls than its window holds"
    )]
    MinCalls {
        /// The minimum number of calls.
        min_calls: u32,
        /// The window's size (`u32::MAX` for a time window).
        window: u32,
    },
    /// Zero probes, or more than [`MAX_PROBES`].
    #[error(
        "`probes` must be between 1 and {MAX_PROBES}, not {0}: with no probe, an open breaker \
         could never find out the vendor has recovered"
    )]
    Probes(u32),
    /// `open_for_max` below `open_for`.
    #[error(
        "`open_for_max` ({}) is below `open_for` ({}): it caps how far the open duration grows, \
         so make it at least `open_for`",
        show(*max),
        show(*open_for)
    )]
    OpenForMax {
        /// The first open duration.
        open_for: Duration,
        /// Its cap.
        max: Duration,
    },
    /// `half_open_max` shorter than the method's timeout.
    #[error(
        "`half_open_max` ({}) is shorter than this method's `timeout` ({}): a probe could never \
         report back in time; set `half_open_max` to at least the timeout",
        show(*half_open_max),
        show(*timeout)
    )]
    HalfOpenMax {
        /// How long half-open waits for its probes.
        half_open_max: Duration,
        /// The method's per-attempt timeout.
        timeout: Duration,
    },
    /// No failure class, or `Ignored` among them.
    #[error(
        "`failure_classes` lists one or more of \"retryable\", \"vendor_fault\" and \
         \"permanent\" (an ignored error is never recorded, so it cannot count as a failure)"
    )]
    FailureClasses,
    /// `slow_rate` set without `slow`.
    #[error("`slow_rate` needs `slow`, the duration from which a call counts as slow")]
    SlowRateWithoutSlow,
    /// A breaker `name` that is empty or only whitespace.
    #[error("a breaker `name` must not be empty")]
    EmptyBreakerName,
    /// A retry budget of more than [`MAX_BUDGET_TOKENS`].
    #[error("a retry budget holds at most {MAX_BUDGET_TOKENS} tokens, not {0}")]
    BudgetMax(u32),
    /// An idempotency header name that is not an HTTP header name.
    #[error(
        "\"{0}\" is not an HTTP header name: use letters, digits and `-`, such as \
         \"Idempotency-Key\""
    )]
    Header(String),
    /// A retried write without an idempotency key.
    #[error(
        "a retried write needs an idempotency key: when an attempt times out after the vendor \
         processed it, the retry would run the write twice. Add `idempotent` (keyed on every \
         argument) or `idempotent(key = [..])`, or remove `retry`"
    )]
    RetriedWriteWithoutKey,
    /// `fallback = cache(..)` on a write.
    #[error(
        "`fallback = cache(..)` serves the last good answer of a read; a write has none to \
         serve. Remove the fallback, or mark the call `read` if it changes nothing"
    )]
    CacheOnWrite,
    /// `fallback = queue` on a read.
    #[error(
        "`fallback = queue` keeps a write to deliver later; a read's caller needs its answer \
         now. For a read, use `fallback = cache(max_stale = \"1h\")`"
    )]
    QueueOnRead,
    /// `fallback = queue` on a write without an idempotency key.
    #[error(
        "a queued write needs an idempotency key: it is sent again when the vendor recovers, \
         and only the key stops a write the vendor half-took from running twice. Add \
         `idempotent` (keyed on every argument) or `idempotent(key = [..])`"
    )]
    QueueWithoutKey,
    /// A cache that holds no entry.
    #[error("a cache `capacity` of zero would never hold a value: give it a number of entries")]
    CacheCapacity,
    /// A rate limit of zero calls.
    #[error(
        "a rate `limit` of zero calls would refuse every call: give it a count, such as \"100/10s\""
    )]
    RateCount,
    /// `bulkhead(max = 0)`.
    #[error(
        "a bulkhead with `max = 0` would let no call through: give it the calls the vendor may have in flight at once"
    )]
    BulkheadMax,
    /// A bulkhead queue whose callers wait no time.
    #[error(
        "a bulkhead `queue` needs a `max_wait` above zero: a caller that waits no time is not queued"
    )]
    BulkheadQueueWithoutWait,
    /// `bulkhead(adaptive, min = 0)`.
    #[error(
        "an adaptive bulkhead's `min = 0` would let its limit fall to no call at all, and then \
         nothing would measure the vendor again: give it `min = 1` or more"
    )]
    BulkheadMinZero,
    /// An adaptive bulkhead whose floor is above its ceiling.
    #[error(
        "an adaptive bulkhead's `min` of {min} is above its `max` of {max}: the limit moves \
         between the two, so `min` must not exceed `max`"
    )]
    BulkheadMinOverMax {
        /// The floor written.
        min: u32,
        /// The ceiling written (or the default).
        max: u32,
    },
    /// `min` on a fixed bulkhead.
    #[error(
        "`min` is the floor of an adaptive limit: write `bulkhead(adaptive, min = ..)`, or drop \
         `min` (a fixed bulkhead has `max` places)"
    )]
    BulkheadMinWithoutAdaptive,
    /// A queued caller could wait as long as the whole deadline.
    #[error(
        "the bulkhead's `max_wait` of {} is not shorter than the deadline of {}: a caller could \
         spend its whole call waiting for a place. Lower `max_wait`, or raise `deadline`",
        show(*max_wait),
        show(*deadline)
    )]
    BulkheadWaitOverDeadline {
        /// The bulkhead's `max_wait`.
        max_wait: Duration,
        /// The declared deadline.
        deadline: Duration,
    },
    /// `hedge(after = "pNN")` outside (0, 100).
    #[error("a hedge's percentile must be in (0, 100), such as \"p95\"; p{0} is outside it")]
    HedgePercentile(f64),
    /// `hedge(max = 0)`, or more than `MAX_HEDGES`.
    #[error(
        "a hedge `max` of {0} is outside 1 to {max}: each hedge is one more request to a vendor \
         that is already slow",
        max = crate::MAX_HEDGES
    )]
    HedgeMax(u32),
    /// `hedge(after = "0s")`.
    #[error(
        "a hedge `after` of zero would send every attempt twice at once: give it the wait after \
         which an attempt is late, such as \"150ms\" or \"p95\""
    )]
    HedgeAfterZero,
    /// `hedge` on a write that is not `idempotent`.
    #[error(
        "`hedge` sends a second request while the first is still running: on a `write` that is \
         not `idempotent` the vendor would act twice. Mark it `idempotent(key = ..)`, or do not \
         hedge it"
    )]
    HedgeOnWrite,
    /// A hedge that would go no sooner than the attempt times out.
    #[error(
        "a hedge `after` {} is not shorter than the timeout of {}: the attempt would time out \
         before its hedge went. Lower `after`, or raise `timeout`",
        show(*after),
        show(*timeout)
    )]
    HedgeAfterTimeout {
        /// The hedge's `after`.
        after: Duration,
        /// The attempt's timeout.
        timeout: Duration,
    },
    /// A rate limit over a period of zero.
    #[error(
        "a rate `limit` over a period of zero is no limit at all: give it a period, such as \"100/10s\""
    )]
    RatePeriod,
    /// `rate(burst = 0)`.
    #[error(
        "a rate `burst` of zero would never let a call go: 1 (the default) spaces calls evenly"
    )]
    RateBurst,
    /// `rate(name = "")`.
    #[error("a rate limiter's `name` must not be empty")]
    EmptyRateName,
    /// A caller could wait for its turn as long as the whole deadline.
    #[error(
        "`max_wait` of {} is not shorter than the deadline of {}: a caller could spend its whole \
         call waiting for its turn. Lower `max_wait`, or raise `deadline`",
        show(*max_wait),
        show(*deadline)
    )]
    RateWaitOverDeadline {
        /// The rate limiter's `max_wait`.
        max_wait: Duration,
        /// The declared deadline.
        deadline: Duration,
    },
    /// The worst case of the policy exceeds its deadline.
    #[error(
        "the worst case of this policy is {} ({how}), over the deadline of {}: raise \
         `deadline`, or lower `timeout`, `retry(attempts = ..)`, the backoff `cap` or \
         `max_elapsed`",
        show(*worst_case),
        show(*deadline)
    )]
    OverDeadline {
        /// The worst case.
        worst_case: Duration,
        /// The declared deadline.
        deadline: Duration,
        /// How the worst case adds up.
        how: String,
    },
    /// A field path (`card.number`) in `redact`, which names whole
    /// arguments.
    #[error("`redact` names whole arguments: write `{}`", root(path))]
    RedactPath {
        /// The path as written.
        path: String,
        /// Its place in the list, from 0.
        entry: usize,
    },
    /// A name in a list of arguments (`redact`, an idempotency `key`) that
    /// is not an argument of the method.
    #[error(
        "`{}` is not an argument of `{method}`: {}",
        root(name),
        known(arguments)
    )]
    NotAnArgument {
        /// The list: [`Field::Redact`], [`Field::IdempotentKey`] or
        /// [`Field::FallbackOrderBy`].
        field: Field,
        /// The name as written (for a key, its argument is what is checked).
        name: String,
        /// Its place in the list, from 0.
        entry: usize,
        /// The method's name.
        method: String,
        /// The method's arguments, in order.
        arguments: Vec<String>,
    },
}

/// `card` of `card.number`.
fn root(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

fn known(arguments: &[String]) -> String {
    if arguments.is_empty() {
        "the method has no arguments".to_owned()
    } else {
        format!("its arguments are `{}`", arguments.join("`, `"))
    }
}

fn attempts_message(attempts: u32) -> String {
    if attempts == 0 {
        "`attempts` counts the first call too, so it is at least 1; to turn retries off, remove \
         `retry`"
            .to_owned()
    } else {
        format!(
            "{attempts} attempts is more than seawall allows ({MAX_ATTEMPTS}): past a handful, \
             retries stop helping the caller and start hurting the vendor"
        )
    }
}

impl PolicyError {
    /// A name in the list `field` (entry `entry`) that is none of
    /// `method`'s `arguments`.
    pub fn not_an_argument(
        field: Field,
        name: &str,
        entry: usize,
        method: &str,
        arguments: &[&str],
    ) -> Self {
        Self::NotAnArgument {
            field,
            name: name.to_owned(),
            entry,
            method: method.to_owned(),
            arguments: arguments
                .iter()
                .map(|&argument| argument.to_owned())
                .collect(),
        }
    }

    /// The key the rule is about.
    pub fn field(&self) -> Field {
        match self {
            Self::ZeroDuration(field) | Self::TooLong(field, _) | Self::Rate(field, _) => *field,
            Self::Attempts(_) => Field::RetryAttempts,
            Self::CapBelowBase { .. } => Field::RetryCap,
            Self::RetryClasses => Field::RetryOn,
            Self::Window => Field::BreakerWindow,
            Self::MinCalls { .. } => Field::BreakerMinCalls,
            Self::Probes(_) => Field::BreakerProbes,
            Self::OpenForMax { .. } => Field::BreakerOpenForMax,
            Self::HalfOpenMax { .. } => Field::BreakerHalfOpenMax,
            Self::FailureClasses => Field::BreakerFailureClasses,
            Self::SlowRateWithoutSlow => Field::BreakerSlowRate,
            Self::EmptyBreakerName => Field::BreakerName,
            Self::RedactPath { .. } => Field::Redact,
            Self::NotAnArgument { field, .. } => *field,
            Self::BudgetMax(_) => Field::BudgetMax,
            Self::Header(_) => Field::IdempotencyHeader,
            Self::RetriedWriteWithoutKey => Field::Retry,
            Self::OverDeadline { .. } => Field::Deadline,
            Self::CacheOnWrite | Self::QueueOnRead | Self::QueueWithoutKey => Field::Fallback,
            Self::CacheCapacity => Field::FallbackCapacity,
            Self::RateCount | Self::RatePeriod => Field::RateLimit,
            Self::RateBurst => Field::RateBurst,
            Self::EmptyRateName => Field::RateName,
            Self::RateWaitOverDeadline { .. } => Field::RateMaxWait,
            Self::BulkheadMax => Field::BulkheadMax,
            Self::BulkheadQueueWithoutWait => Field::BulkheadQueue,
            Self::BulkheadMinZero
            | Self::BulkheadMinOverMax { .. }
            | Self::BulkheadMinWithoutAdaptive => Field::BulkheadMin,
            Self::BulkheadWaitOverDeadline { .. } => Field::BulkheadMaxWait,
            Self::HedgePercentile(_) | Self::HedgeAfterZero | Self::HedgeAfterTimeout { .. } => {
                Field::HedgeAfter
            }
            Self::HedgeMax(_) => Field::HedgeMax,
            Self::HedgeOnWrite => Field::Hedge,
        }
    }

    /// Which entry of a list key (`redact = [..]`, `key = [..]`) the rule
    /// is about, counting from 0; `None` for a rule about a whole key.
    pub fn entry(&self) -> Option<usize> {
        match self {
            Self::RedactPath { entry, .. } | Self::NotAnArgument { entry, .. } => Some(*entry),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_the_keys_a_field_is_nested_in() {
        assert_eq!(Field::Timeout.path(), "timeout");
        assert_eq!(Field::RetryAttempts.path(), "retry.attempts");
        assert_eq!(Field::BreakerSlowRate.path(), "breaker.slow_rate");
        assert_eq!(Field::BudgetRatio.path(), "retry_budget.ratio");
        assert_eq!(Field::FallbackMaxStale.path(), "fallback.max_stale");
        assert_eq!(Field::IdempotentKey.path(), "idempotent.key");
        let mut paths: Vec<String> = Field::ALL.iter().map(|field| field.path()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), Field::ALL.len(), "one path per field");
    }

    #[test]
    fn a_key_is_reported_as_not_an_argument_by_the_argument_it_starts_from() {
        let error = PolicyError::NotAnArgument {
            field: Field::IdempotentKey,
            name: "invoce.number".to_owned(),
            entry: 2,
            method: "create".to_owned(),
            arguments: vec!["invoice".to_owned()],
        };
        assert_eq!(
            error.to_string(),
            "`invoce` is not an argument of `create`: its arguments are `invoice`"
        );
        assert_eq!(
            (error.field(), error.entry()),
            (Field::IdempotentKey, Some(2))
        );
    }
}
