//! A method's whole policy ([`Policy`]): its kind, timeouts and every
//! optional key, and the rules that look across them.

use std::borrow::Cow;
use std::time::Duration;

use crate::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, CachePolicy, DEFAULT_IDEMPOTENCY_HEADER, Field,
    HedgeAfter, HedgePolicy, PolicyError, RatePolicy, Redact, RetryPolicy, StorePolicy,
    check_duration, show,
};

/// Whether a method reads from or writes to the vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The call changes nothing at the vendor; repeating it is harmless.
    Read,
    /// The call changes something at the vendor.
    Write,
}

/// The whole policy of one contract method.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub(crate) kind: Kind,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: Option<BreakerPolicy>,
    pub(crate) budget: Option<BudgetPolicy>,
    pub(crate) idempotency_header: Cow<'static, str>,
    pub(crate) store: Option<StorePolicy>,
    pub(crate) idempotent: bool,
    pub(crate) cache: Option<CachePolicy>,
    pub(crate) queue: bool,
    pub(crate) redact: Redact,
    pub(crate) rate: Option<RatePolicy>,
    pub(crate) bulkhead: Option<BulkheadPolicy>,
    pub(crate) hedge: Option<HedgePolicy>,
}

impl Policy {
    /// A policy with a per-attempt `timeout`, one attempt, no breaker, and
    /// the default retry budget (which matters once retries are on).
    pub const fn new(kind: Kind, timeout: Duration) -> Self {
        Self {
            kind,
            timeout,
            deadline: None,
            retry: RetryPolicy::none(),
            breaker: None,
            budget: Some(BudgetPolicy::new()),
            idempotency_header: Cow::Borrowed(DEFAULT_IDEMPOTENCY_HEADER),
            store: None,
            idempotent: false,
            cache: None,
            queue: false,
            redact: Redact::none(),
            rate: None,
            bulkhead: None,
            hedge: None,
        }
    }

    /// Sends another attempt in parallel when one has not answered in time
    /// (`hedge(..)`).
    pub fn with_hedge(mut self, hedge: HedgePolicy) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// See [`with_hedge`](Self::with_hedge).
    pub const fn hedge(&self) -> Option<&HedgePolicy> {
        self.hedge.as_ref()
    }

    /// Bounds the attempts in flight to the vendor at once (`bulkhead(..)`).
    pub fn with_bulkhead(mut self, bulkhead: BulkheadPolicy) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// See [`with_bulkhead`](Self::with_bulkhead).
    pub const fn bulkhead(&self) -> Option<&BulkheadPolicy> {
        self.bulkhead.as_ref()
    }

    /// Limits the calls that reach the vendor (each attempt counts) to a
    /// rate, shared by name with other methods (`rate(..)`).
    pub fn with_rate(mut self, rate: RatePolicy) -> Self {
        self.rate = Some(rate);
        self
    }

    /// See [`with_rate`](Self::with_rate).
    pub const fn rate(&self) -> Option<&RatePolicy> {
        self.rate.as_ref()
    }

    /// Records this write's completed outcomes in the runtime's idempotency
    /// store and replays them for repeats of its key (see
    /// `seawall::idempotency`).
    pub const fn with_idempotency_store(mut self, store: StorePolicy) -> Self {
        self.store = Some(store);
        self
    }

    /// See [`with_idempotency_store`](Self::with_idempotency_store).
    pub const fn idempotency_store(&self) -> Option<&StorePolicy> {
        self.store.as_ref()
    }

    /// The header `seawall::http` sends a keyed call's idempotency key in
    /// (`Idempotency-Key` unless the vendor wants another).
    pub fn with_idempotency_header(mut self, header: impl Into<String>) -> Self {
        self.idempotency_header = Cow::Owned(header.into());
        self
    }

    /// See [`with_idempotency_header`](Self::with_idempotency_header).
    pub fn idempotency_header(&self) -> &str {
        &self.idempotency_header
    }

    /// Bounds this method's retries with a budget shared by every endpoint
    /// of the same contract (see [`BudgetPolicy`]).
    pub const fn with_retry_budget(mut self, budget: BudgetPolicy) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries without a budget: only `attempts` bounds them.
    pub const fn without_retry_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The retry budget, if retries are bounded by one.
    pub const fn retry_budget(&self) -> Option<&BudgetPolicy> {
        self.budget.as_ref()
    }

    /// Sets the per-attempt timeout (a policy always has one; see
    /// [`new`](Self::new)).
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Caps the whole logical call, every attempt and backoff included.
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Retries retryable failures.
    pub const fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Puts a circuit breaker in front of the vendor.
    pub fn with_breaker(mut self, breaker: BreakerPolicy) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Read or write.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The per-attempt timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadline of the whole logical call, if any.
    pub const fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The retry policy (one attempt when the method has none).
    pub const fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The breaker policy, if the method has a breaker.
    pub const fn breaker(&self) -> Option<&BreakerPolicy> {
        self.breaker.as_ref()
    }

    /// The longest one logical call can take when every attempt times out:
    /// `attempts × timeout + every backoff delay before jitter`, or
    /// `max_elapsed + timeout` when that is less.
    pub fn worst_case(&self) -> Duration {
        let by_attempts = self
            .timeout
            .saturating_mul(self.retry.attempts())
            .saturating_add(self.retry.max_total_backoff());
        // No attempt starts after `max_elapsed`, so none ends later than
        // `max_elapsed + timeout`.
        match self.retry.max_elapsed() {
            Some(max) => by_attempts.min(max.saturating_add(self.timeout)),
            None => by_attempts,
        }
    }

    /// Marks the method as deriving an idempotency key for every call
    /// (`idempotent` in its policy): a `write` may retry only then.
    pub const fn with_idempotency_key(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// See [`with_idempotency_key`](Self::with_idempotency_key).
    pub const fn has_idempotency_key(&self) -> bool {
        self.idempotent
    }

    /// Serves the last good answer of this read, no older than the cache
    /// policy's `max_stale`, when the vendor cannot answer.
    pub const fn with_cache_fallback(mut self, cache: CachePolicy) -> Self {
        self.cache = Some(cache);
        self
    }

    /// See [`with_cache_fallback`](Self::with_cache_fallback).
    pub const fn cache_fallback(&self) -> Option<&CachePolicy> {
        self.cache.as_ref()
    }

    /// Queues this write in the runtime's write-ahead log when the vendor
    /// cannot take it, for delivery in order once it can (`fallback =
    /// queue`). Only for an idempotent write: the log re-sends it with its
    /// key.
    pub const fn with_queue_fallback(mut self) -> Self {
        self.queue = true;
        self
    }

    /// See [`with_queue_fallback`](Self::with_queue_fallback).
    pub const fn queue_fallback(&self) -> bool {
        self.queue
    }

    /// Never records the values of these arguments (`redact = [..]`):
    /// `with_redact(["card_number"])`.
    pub fn with_redact(mut self, redact: impl Into<Redact>) -> Self {
        self.redact = redact.into();
        self
    }

    /// See [`with_redact`](Self::with_redact).
    pub const fn redact(&self) -> &Redact {
        &self.redact
    }

    /// Every rule this policy breaks, in the order of its keys. The macro
    /// reports them all at once, each at its key.
    pub fn violations(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        check_duration(Field::Timeout, self.timeout, &mut errors);
        if !is_header_name(&self.idempotency_header) {
            errors.push(PolicyError::Header(self.idempotency_header.to_string()));
        }
        self.retry.check(&mut errors);
        if self.kind == Kind::Write && self.retry.attempts() > 1 && !self.idempotent {
            errors.push(PolicyError::RetriedWriteWithoutKey);
        }
        if let Some(budget) = &self.budget {
            budget.check(&mut errors);
        }
        if let Some(store) = &self.store {
            store.check(&mut errors);
        }
        if let Some(breaker) = &self.breaker {
            breaker.check(&mut errors);
            if breaker.half_open_max() < self.timeout {
                errors.push(PolicyError::HalfOpenMax {
                    half_open_max: breaker.half_open_max(),
                    timeout: self.timeout,
                });
            }
        }
        if let Some(cache) = &self.cache {
            if self.kind == Kind::Write {
                errors.push(PolicyError::CacheOnWrite);
            }
            cache.check(&mut errors);
        }
        if self.queue {
            if self.kind == Kind::Read {
                errors.push(PolicyError::QueueOnRead);
            } else if !self.idempotent {
                errors.push(PolicyError::QueueWithoutKey);
            }
        }
        if let Some(deadline) = self.deadline {
            check_duration(Field::Deadline, deadline, &mut errors);
            let worst_case = self.worst_case();
            if worst_case > deadline {
                errors.push(PolicyError::OverDeadline {
                    worst_case,
                    deadline,
                    how: self.worst_case_breakdown(),
                });
            }
        }
        self.redact.check(&mut errors);
        if let Some(rate) = &self.rate {
            rate.check(&mut errors);
            if let Some(deadline) = self.deadline
                && rate.max_wait() >= deadline
            {
                errors.push(PolicyError::RateWaitOverDeadline {
                    max_wait: rate.max_wait(),
                    deadline,
                });
            }
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.check(&mut errors);
            if let Some(deadline) = self.deadline
                && bulkhead.queue() > 0
                && bulkhead.max_wait() >= deadline
            {
                errors.push(PolicyError::BulkheadWaitOverDeadline {
                    max_wait: bulkhead.max_wait(),
                    deadline,
                });
            }
        }
        if let Some(hedge) = &self.hedge {
            if self.kind == Kind::Write && !self.idempotent {
                errors.push(PolicyError::HedgeOnWrite);
            }
            hedge.check(&mut errors);
            if let HedgeAfter::Fixed(after) = hedge.after()
                && !after.is_zero()
                && after >= self.timeout
            {
                errors.push(PolicyError::HedgeAfterTimeout {
                    after,
                    timeout: self.timeout,
                });
            }
        }
        errors
    }

    /// Every rule this policy breaks about the arguments of the method it
    /// is for, named `method` and taking `arguments` (in order, without
    /// the receiver): each name in `redact` is one of them. The macro knows
    /// the arguments at compile time; other callers pass them when they
    /// have them. [`violations`](Self::violations) checks the rest.
    pub fn argument_violations(&self, method: &str, arguments: &[&str]) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        self.redact.check_arguments(method, arguments, &mut errors);
        errors
    }

    /// Checks the policy: the same rules `#[integration]` checks at compile
    /// time.
    ///
    /// # Errors
    ///
    /// The first rule the policy breaks; [`violations`](Self::violations)
    /// lists them all.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match self.violations().into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// How [`worst_case`](Self::worst_case) adds up, for messages.
    fn worst_case_breakdown(&self) -> String {
        let attempts = self.retry.attempts();
        let backoff = self.retry.max_total_backoff();
        let by_attempts = self
            .timeout
            .saturating_mul(attempts)
            .saturating_add(backoff);
        match self.retry.max_elapsed() {
            Some(max) if max.saturating_add(self.timeout) < by_attempts => format!(
                "`max_elapsed` {} + {} timeout",
                show(max),
                show(self.timeout)
            ),
            _ => format!(
                "{attempts} attempt(s) × {} timeout + {} of backoff",
                show(self.timeout),
                show(backoff)
            ),
        }
    }
}

/// Whether `name` is an HTTP header name (a token of RFC 9110).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClassSet, ErrorClass, Jitter, Window};

    const MS: Duration = Duration::from_millis(1);

    fn read() -> Policy {
        Policy::new(Kind::Read, MS * 100)
    }

    #[test]
    fn worst_case_counts_every_attempt_and_every_backoff_or_max_elapsed() {
        let retry = RetryPolicy::new(4)
            .with_base(MS * 10)
            .with_cap(MS * 30)
            .with_jitter(Jitter::None);
        let policy = read().with_retry(retry.clone());
        // 4 × 100 ms + (10 + 20 + 30) ms
        assert_eq!(policy.worst_case(), MS * 460);
        assert!(matches!(
            policy.clone().with_deadline(MS * 459).violations().as_slice(),
            [PolicyError::OverDeadline { worst_case, .. }] if *worst_case == MS * 460
        ));
        assert_eq!(policy.with_deadline(MS * 460).validate(), Ok(()));
        // No attempt starts after 150 ms, so none ends after 250 ms.
        let bounded = read().with_retry(retry.with_max_elapsed(MS * 150));
        assert_eq!(bounded.worst_case(), MS * 250);
    }

    #[test]
    fn every_violation_is_listed_with_its_field() {
        let policy = Policy::new(Kind::Write, Duration::ZERO)
            .with_retry(RetryPolicy::new(11).with_base(MS * 2).with_cap(MS))
            .with_breaker(BreakerPolicy::new().with_probes(0).with_failure_rate(1.5))
            .with_idempotency_header("not a header");
        let fields: Vec<Field> = policy.violations().iter().map(PolicyError::field).collect();
        assert_eq!(
            fields,
            [
                Field::Timeout,
                Field::IdempotencyHeader,
                Field::RetryAttempts,
                Field::RetryCap,
                Field::Retry, // a retried write without a key
                Field::BreakerFailureRate,
                Field::BreakerProbes,
            ]
        );
    }

    #[test]
    fn the_rules_the_macro_relies_on_hold_at_run_time_too() {
        let fails = |policy: Policy| policy.validate().unwrap_err();
        assert_eq!(
            fails(Policy::new(Kind::Read, Duration::ZERO)),
            PolicyError::ZeroDuration(Field::Timeout)
        );
        assert_eq!(
            fails(read().with_retry(RetryPolicy::new(0))),
            PolicyError::Attempts(0)
        );
        for rate in [0.0, -0.1, 1.01, f64::NAN] {
            let error = fails(read().with_breaker(BreakerPolicy::new().with_failure_rate(rate)));
            assert_eq!(error.field(), Field::BreakerFailureRate);
        }
        assert_eq!(
            fails(read().with_breaker(BreakerPolicy::new().with_window(5).with_min_calls(6))),
            PolicyError::MinCalls {
                min_calls: 6,
                window: 5
            }
        );
        assert_eq!(
            fails(read().with_breaker(BreakerPolicy::new().with_time_window(Duration::ZERO))),
            PolicyError::ZeroDuration(Field::BreakerWindow)
        );
        assert_eq!(
            fails(read().with_breaker(
                BreakerPolicy::new().with_failure_classes(ClassSet::of([ErrorClass::Ignored]))
            )),
            PolicyError::FailureClasses
        );
        assert_eq!(
            fails(
                Policy::new(Kind::Read, Duration::from_secs(120))
                    .with_breaker(BreakerPolicy::new())
            ),
            PolicyError::HalfOpenMax {
                half_open_max: Duration::from_secs(60),
                timeout: Duration::from_secs(120)
            }
        );
        assert_eq!(
            fails(read().with_retry(RetryPolicy::new(2).with_retry_on(ClassSet::of([])))),
            PolicyError::RetryClasses
        );
        assert_eq!(
            fails(read().with_retry_budget(BudgetPolicy::new().with_max(2_000_000))),
            PolicyError::BudgetMax(2_000_000)
        );
        let write = Policy::new(Kind::Write, MS).with_retry(RetryPolicy::new(2));
        assert_eq!(fails(write.clone()), PolicyError::RetriedWriteWithoutKey);
        assert_eq!(write.with_idempotency_key().validate(), Ok(()));
        assert_eq!(
            read()
                .with_breaker(
                    BreakerPolicy::new()
                        .with_failure_rate(1.0)
                        .with_window(3)
                        .with_min_calls(3)
                )
                .with_retry(RetryPolicy::new(10))
                .validate(),
            Ok(())
        );
        assert!(matches!(
            BreakerPolicy::new().with_window(3).window(),
            Window::Calls(3)
        ));
    }

    #[test]
    fn slow_rate_needs_slow() {
        let error = read()
            .with_breaker(BreakerPolicy::new().with_slow_rate(0.9))
            .validate()
            .unwrap_err();
        assert_eq!(error, PolicyError::SlowRateWithoutSlow);
        assert_eq!(error.field(), Field::BreakerSlowRate);
        assert_eq!(
            error.to_string(),
            "`slow_rate` needs `slow`, the duration from which a call counts as slow"
        );
        let slow = BreakerPolicy::new().with_slow(MS * 50);
        assert_eq!(read().with_breaker(slow.clone()).validate(), Ok(()));
        assert_eq!(
            read().with_breaker(slow.with_slow_rate(0.9)).validate(),
            Ok(())
        );
        assert_eq!(BreakerPolicy::new().slow_rate(), crate::DEFAULT_SLOW_RATE);
    }

    #[test]
    fn a_breaker_name_is_not_empty() {
        for name in ["", "  "] {
            let error = read()
                .with_breaker(BreakerPolicy::new().with_name(name))
                .validate()
                .unwrap_err();
            assert_eq!(error, PolicyError::EmptyBreakerName);
            assert_eq!(error.field(), Field::BreakerName);
            assert_eq!(error.to_string(), "a breaker `name` must not be empty");
        }
        assert_eq!(
            read()
                .with_breaker(BreakerPolicy::new().with_name("payments"))
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn redact_names_whole_arguments_of_the_method() {
        let policy = Policy::new(Kind::Write, MS).with_redact(["card_numbr", "card.number", "cvc"]);
        // On its own: a field path is refused, at its entry.
        let errors = policy.violations();
        assert_eq!(
            errors,
            [PolicyError::RedactPath {
                path: "card.number".to_owned(),
                entry: 1
            }]
        );
        assert_eq!(errors[0].field(), Field::Redact);
        assert_eq!(errors[0].entry(), Some(1));
        assert_eq!(
            errors[0].to_string(),
            "`redact` names whole arguments: write `card`"
        );
        // Against the arguments: a name that is not one is refused; the
        // field path is left to the rule above.
        let errors = policy.argument_violations("charge", &["card_number", "cvc", "cents"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field(), Field::Redact);
        assert_eq!(errors[0].entry(), Some(0));
        assert_eq!(
            errors[0].to_string(),
            "`card_numbr` is not an argument of `charge`: its arguments are `card_number`, \
             `cvc`, `cents`"
        );
        let none = Policy::new(Kind::Write, MS).with_redact(["token"]);
        assert_eq!(
            none.argument_violations("ping", &[])[0].to_string(),
            "`token` is not an argument of `ping`: the method has no arguments"
        );
        let fine = Policy::new(Kind::Write, MS).with_redact(["cvc"]);
        assert_eq!(fine.validate(), Ok(()));
        assert!(fine.argument_violations("charge", &["cvc"]).is_empty());
        assert!(fine.redact().contains("cvc"));
        assert!(read().redact().is_empty());
    }

    #[test]
    fn messages_name_the_key_and_what_to_write() {
        assert_eq!(
            PolicyError::Attempts(0).to_string(),
            "`attempts` counts the first call too, so it is at least 1; to turn retries off, \
             remove `retry`"
        );
        assert_eq!(
            PolicyError::ZeroDuration(Field::RetryBase).to_string(),
            "`base` of zero would fail every call: give it a positive duration"
        );
        let over = read()
            .with_retry(
                RetryPolicy::new(3)
                    .with_base(MS * 500)
                    .with_cap(Duration::from_secs(1)),
            )
            .with_deadline(MS * 500)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(over.starts_with("the worst case of this policy is 1s 800ms (3 attempt(s) × 100ms timeout + 1s 500ms of backoff)"), "{over}");
    }
}
