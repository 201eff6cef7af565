use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::ErrorClass as Class;
use crate::breaker::{Breaker, Outcome, Permit};
use crate::cache::{CacheValue, Cached, DiskCache, LastKnownGood};
use crate::idempotency::{
    self, Begin, CallContext, IdempotencyKey, IdempotencyStore, RecordedOutcome,
};
use crate::queue::{ContractQueue, Delivery};
use crate::retry::{Backoff, RetryBudget, RngSource};
use crate::telemetry::{CorrelationId, EndpointStats, Outcome as Seen};
use crate::wal::QueuedWrite;
use crate::{ContractError, Error, ErrorClass, Policy};

/// One contract method's share of the runtime: its policy, its breaker and
/// its backoff, resolved once when the wrapper is first used so that a call
/// never looks anything up by name.
///
/// [`call`](Self::call) runs one logical call through the pipeline:
/// retry ⟶ breaker ⟶ per-attempt timeout ⟶ the adapter.
///
/// ```
/// use std::time::Duration;
/// use seawall_core::{policy::Kind, Policy, RetryPolicy, Runtime};
/// # #[derive(Debug, thiserror::Error)] #[error("{0}")] struct VendorError(seawall_core::Error);
/// # impl From<seawall_core::Error> for VendorError { fn from(e: seawall_core::Error) -> Self { Self(e) } }
/// # impl seawall_core::Classify for VendorError { fn class(&self) -> seawall_core::ErrorClass { self.0.class() } }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = Runtime::in_memory();
/// let policy = Policy::new(Kind::Read, Duration::from_secs(2)).with_retry(RetryPolicy::new(3));
/// let endpoint = runtime.endpoint("crm", "account", policy)?;
/// let answer = endpoint.call(|| async { Ok::<_, VendorError>(42) }).await?;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
pub struct Endpoint {
    contract: Arc<str>,
    method: Arc<str>,
    policy: Policy,
    backoff: Backoff,
    breaker: Option<Arc<Breaker>>,
    budget: Option<Arc<RetryBudget>>,
    rng: Arc<RngSource>,
    key_header: Arc<str>,
    store: Option<Arc<IdempotencyStore>>,
    cache: Option<LastKnownGood>,
    queue: Option<Arc<ContractQueue>>,
    stats: Arc<EndpointStats>,
}

/// Why an attempt failed, kept until the loop knows whether it was the last.
enum Failed<E> {
    Vendor(E, ErrorClass),
    Timeout(Duration),
}

impl<E: ContractError> Failed<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Failed::Vendor(_, class) => *class,
            Failed::Timeout(_) => ErrorClass::Retryable,
        }
    }

    fn boxed(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            Failed::Vendor(error, _) => Box::new(error),
            Failed::Timeout(after) => Box::new(Error::Timeout { after }),
        }
    }
}

fn retry_after<E: ContractError>(failed: Failed<E>, asked: Duration, attempts: u32) -> E {
    E::from(Error::RetryAfter {
        retry_after: asked,
        attempts,
        last: failed.boxed(),
    })
}

/// The runtime state an endpoint uses, resolved by the runtime.
pub(crate) struct Resolved {
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) rng: Arc<RngSource>,
    pub(crate) store: Option<Arc<IdempotencyStore>>,
    pub(crate) queue: Option<Arc<ContractQueue>>,
    pub(crate) disk_cache: Option<Arc<DiskCache>>,
}

impl Endpoint {
    pub(crate) fn new(
        contract: Arc<str>,
        method: Arc<str>,
        policy: Policy,
        state: Resolved,
    ) -> Self {
        Self {
            backoff: Backoff::new(policy.retry()),
            key_header: policy.idempotency_header().into(),
            cache: policy.cache_fallback().map(|cache| {
                let disk = state
                    .disk_cache
                    .map(|disk| (disk, Arc::from(format!("{contract}.{method}"))));
                LastKnownGood::new(cache, disk)
            }),
            contract,
            method,
            policy,
            breaker: state.breaker,
            budget: state.budget,
            rng: state.rng,
            store: state.store,
            queue: state.queue,
            stats: state.stats,
        }
    }

    /// The contract's name.
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// The method's name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The method's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The breaker guarding this method, if its policy has one.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref()
    }

    /// The retry budget bounding this method's retries, if it retries.
    pub fn retry_budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// Runs one logical call, making a fresh attempt with `attempt` each time
    /// the policy allows another.
    ///
    /// # Errors
    ///
    /// The adapter's own error when it is not retryable, or when the policy
    /// makes a single attempt; otherwise `E::from` one of
    /// [`Error::Timeout`] (a single attempt timed out),
    /// [`Error::BreakerOpen`] (rejected without calling the vendor),
    /// [`Error::RetriesExhausted`] (attempts failed until none were left, the
    /// breaker opened, or a half-open probe failed) or
    /// [`Error::DeadlineExceeded`].
    pub fn call<T, E, F, Fut>(&self, mut attempt: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        // Not an `async fn`: the pipeline's future is returned as it is,
        // not stored (with `attempt`) inside another one.
        self.run(move || Some(attempt()), |call| call)
    }

    /// Runs a call that can be made only once (its arguments are moved into
    /// it), for methods whose policy makes a single attempt.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_once<T, E, F, Fut>(&self, attempt: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        let mut attempt = Some(attempt);
        self.run(move || attempt.take().map(|make| make()), |call| call)
    }

    /// [`call`](Self::call) for a write with an idempotency key: every
    /// attempt runs with `key` as [`current_key`](crate::idempotency::current_key),
    /// and `seawall::http` sends it in the policy's idempotency header.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_keyed<T, E, F, Fut>(
        &self,
        key: IdempotencyKey,
        mut attempt: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        let context = self.key_context(key);
        self.run(
            move || Some(attempt()),
            move |call| idempotency::scope(context.clone(), call),
        )
    }

    /// [`call_once`](Self::call_once) with an idempotency key.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_once_keyed<T, E, F, Fut>(
        &self,
        key: IdempotencyKey,
        attempt: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        let context = self.key_context(key);
        let mut attempt = Some(attempt);
        self.run(
            move || attempt.take().map(|make| make()),
            move |call| idempotency::scope(context.clone(), call),
        )
    }

    /// Runs a keyed write through the idempotency store, when its policy
    /// has one: a completed key replays its recorded outcome, a key in
    /// flight waits for it (or is rejected), a key with another payload
    /// `fingerprint` is a conflict, and a new key runs `call` (the pipeline
    /// with the key, usually [`call_keyed`](Self::call_keyed)) and records
    /// what it completed with. Without a store it just runs `call`.
    ///
    /// # Errors
    ///
    /// Those of `call`; [`Error::Replayed`] for a recorded failure;
    /// [`Error::IdempotencyConflict`], [`Error::IdempotencyInFlight`] or
    /// [`Error::Store`] when the vendor was not called.
    pub async fn stored<T, E, C, Fut>(
        &self,
        key: IdempotencyKey,
        fingerprint: &str,
        call: C,
    ) -> Result<T, E>
    where
        C: FnOnce(IdempotencyKey) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: idempotency::StoredOutcome,
        E: ContractError,
    {
        let (Some(store), Some(policy)) = (&self.store, self.policy.idempotency_store()) else {
            return call(key).await;
        };
        let guard = match store.begin(key.as_str(), fingerprint, policy).await {
            Err(error) => return Err(E::from(Error::Store(error))),
            Ok(Begin::Conflict) => {
                return Err(E::from(Error::IdempotencyConflict {
                    key: key.to_string(),
                }));
            }
            Ok(Begin::Rejected) => {
                return Err(E::from(Error::IdempotencyInFlight {
                    key: key.to_string(),
                }));
            }
            Ok(Begin::Completed(record)) => {
                tracing::debug!(
                    target: "seawall::idempotency",
                    contract = %self.contract,
                    method = %self.method,
                    %key,
                    "replaying a completed write"
                );
                return match record.outcome {
                    RecordedOutcome::Value(value) => serde_json::from_value(value).map_err(|e| {
                        E::from(Error::Store(crate::StoreError::Record(e.to_string())))
                    }),
                    RecordedOutcome::Failure { class, message } => Err(E::from(Error::Replayed {
                        class: ErrorClass::from_name(&class).unwrap_or(ErrorClass::Permanent),
                        message,
                    })),
                };
            }
            Ok(Begin::Started(guard)) => guard,
        };
        let result = call(key.clone()).await;
        let outcome = match &result {
            // An answer JSON cannot hold faithfully is not recorded: a
            // repeat calls the vendor again rather than replay a `null`.
            Ok(value) => match crate::faithful::to_value(value) {
                Ok(value) => Some(RecordedOutcome::Value(value)),
                Err(reason) => {
                    tracing::warn!(
                        target: "seawall::idempotency",
                        contract = %self.contract,
                        method = %self.method,
                        %key,
                        %reason,
                        "the vendor's answer cannot be recorded faithfully; a repeat will call the vendor again"
                    );
                    None
                }
            },
            Err(error) if policy.replay_failures() && error.class() == ErrorClass::Permanent => {
                Some(RecordedOutcome::Failure {
                    class: ErrorClass::Permanent.as_str().to_owned(),
                    message: error.to_string(),
                })
            }
            Err(_) => None,
        };
        if let Some(outcome) = outcome
            && let Err(error) = store
                .record(key.as_str(), fingerprint, outcome, policy.retention())
                .await
        {
            // The write happened; only the record of it is lost, so the
            // caller still gets the vendor's answer.
            tracing::warn!(
                target: "seawall::idempotency",
                contract = %self.contract,
                method = %self.method,
                %key,
                %error,
                "could not record a completed write; a repeat will call the vendor again"
            );
        }
        drop(guard);
        result
    }

    /// Runs a read whose policy has `fallback = cache(..)`: a success is
    /// stored under `key` (the hash of the arguments); when `call` fails
    /// with an error that says the vendor is unavailable (retryable or a
    /// vendor fault), an answer no older than `max_stale` is returned
    /// instead, marked stale. Without a cache policy it just runs `call`.
    ///
    /// # Errors
    ///
    /// `call`'s error, when there is no fresh-enough answer to serve or the
    /// error is the vendor's real answer (permanent or ignored).
    pub async fn cached<T, E, Fut>(&self, key: u128, call: Fut) -> Result<Cached<T>, E>
    where
        Fut: Future<Output = Result<Cached<T>, E>>,
        T: CacheValue,
        E: ContractError,
    {
        let Some(cache) = &self.cache else {
            return call.await;
        };
        let listened = cache_events_enabled();
        if listened {
            crate::telemetry::clear_failed_correlation();
        }
        match call.await {
            Ok(answer) => {
                cache.store(key, answer.value());
                Ok(answer)
            }
            Err(error) => {
                let correlation = listened.then(crate::telemetry::take_failed_correlation);
                self.serve_stale(cache, key, error, correlation).await
            }
        }
    }

    /// [`cached`](Self::cached) for a read that returns its value without
    /// [`Cached`]: staleness is not visible to the caller (only in the
    /// `seawall::cache` events).
    ///
    /// # Errors
    ///
    /// As [`cached`](Self::cached).
    pub async fn cached_plain<T, E, Fut>(&self, key: u128, call: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        T: CacheValue,
        E: ContractError,
    {
        let Some(cache) = &self.cache else {
            return call.await;
        };
        let listened = cache_events_enabled();
        if listened {
            crate::telemetry::clear_failed_correlation();
        }
        match call.await {
            Ok(value) => {
                cache.store(key, &value);
                Ok(value)
            }
            Err(error) => {
                let correlation = listened.then(crate::telemetry::take_failed_correlation);
                self.serve_stale(cache, key, error, correlation)
                    .await
                    .map(Cached::into_value)
            }
        }
    }

    /// Runs a write whose policy has `fallback = queue`: `call` (the
    /// pipeline with `key`) delivers it, or, when its final error says the
    /// vendor is unavailable (retryable or a vendor fault), the write is
    /// appended to the write-ahead log with `arguments()` and `key`, and
    /// [`Delivery::Queued`] returned once the append is durable. While the
    /// contract has writes queued, `call` is not made: the write is queued
    /// behind them, so that it does not overtake them. Without a queue
    /// policy it just runs `call`.
    ///
    /// # Errors
    ///
    /// `call`'s error when it is the vendor's real answer (permanent or
    /// ignored); [`Error::NotQueued`] when the write could be neither
    /// delivered nor queued.
    pub async fn queued<T, E, Fut>(
        &self,
        key: IdempotencyKey,
        call: Fut,
        arguments: crate::__private::PreparedArguments,
    ) -> Result<Delivery<T>, E>
    where
        Fut: Future<Output = Result<Delivery<T>, E>>,
        E: ContractError,
    {
        let Some(queue) = &self.queue else {
            return call.await;
        };
        // Refused before the vendor is called: once delivered or queued,
        // it would be too late to say.
        if let Some(reason) = queue.refusal(&arguments.redacted) {
            return Err(E::from(Error::Unrepresentable {
                contract: self.contract.clone(),
                method: self.method.clone(),
                reason: reason.into(),
            }));
        }
        if queue.pending() > 0 {
            let ahead = "writes of this contract are queued ahead of it";
            let correlation = queue_events_enabled().then(fallback_correlation);
            return self
                .enqueue(queue, key, arguments, ahead, Duration::ZERO, correlation)
                .await;
        }
        let listened = queue_events_enabled();
        if listened {
            crate::telemetry::clear_failed_correlation();
        }
        match call.await {
            Ok(delivery) => Ok(delivery),
            Err(error) if matches!(error.class(), Class::Retryable | Class::VendorFault) => {
                // The drain leaves the vendor alone for as long as it asked,
                // or as the breaker stays open (whether it turned this call
                // away or the call's failures opened it), else for a first
                // backoff.
                let wait = self
                    .unavailable_for(&error)
                    .unwrap_or(crate::queue::FIRST_WAIT);
                let correlation = listened.then(crate::telemetry::take_failed_correlation);
                self.enqueue(queue, key, arguments, error, wait, correlation)
                    .await
            }
            Err(error) => Err(error),
        }
    }

    async fn enqueue<T, E>(
        &self,
        queue: &Arc<ContractQueue>,
        key: IdempotencyKey,
        arguments: crate::__private::PreparedArguments,
        why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
        wait: Duration,
        correlation: Option<CorrelationId>,
    ) -> Result<Delivery<T>, E>
    where
        E: ContractError,
    {
        let not_queued = |reason: String, why| E::from(Error::NotQueued { reason, last: why });
        let mut write = QueuedWrite::new(
            &*self.contract,
            &*self.method,
            key.as_str(),
            arguments.arguments,
        );
        write.redacted = arguments.redacted;
        match queue.append(write, wait).await {
            Ok(ticket) => {
                self.stats.queued();
                tracing::info!(
                    target: "seawall::queue",
                    contract = %self.contract,
                    method = %self.method,
                    outcome = "queued",
                    correlation_id = correlation.map(tracing::field::display),
                    %ticket,
                    "vendor unavailable; write queued"
                );
                Ok(Delivery::Queued(ticket))
            }
            Err(error) => Err(not_queued(error.to_string(), why.into())),
        }
    }

    async fn serve_stale<T, E>(
        &self,
        cache: &LastKnownGood,
        key: u128,
        error: E,
        correlation: Option<CorrelationId>,
    ) -> Result<Cached<T>, E>
    where
        T: CacheValue,
        E: ContractError,
    {
        if !matches!(error.class(), Class::Retryable | Class::VendorFault) {
            return Err(error);
        }
        match cache.serve::<T>(key).await {
            Some(stale) => {
                self.stats.stale_served();
                tracing::info!(
                    target: "seawall::cache",
                    contract = %self.contract,
                    method = %self.method,
                    outcome = "stale",
                    correlation_id = correlation.map(tracing::field::display),
                    age_ms = stale.age().as_secs_f64() * 1000.0,
                    %error,
                    "vendor unavailable; serving the last good answer"
                );
                Ok(stale)
            }
            None => {
                self.stats.cache_missed();
                Err(error)
            }
        }
    }

    /// How long the vendor is known to be unavailable after `error`: what
    /// it asked for (`Retry-After`), else what is left of an open breaker's
    /// wait (read from the breaker itself, so it does not depend on the
    /// error type passing `retry_in` on).
    pub(crate) fn unavailable_for<E: ContractError>(&self, error: &E) -> Option<Duration> {
        error
            .retry_after()
            .or_else(|| self.breaker.as_ref().and_then(|b| b.retry_in()))
    }

    fn key_context(&self, key: IdempotencyKey) -> CallContext {
        CallContext {
            key,
            header: self.key_header.clone(),
        }
    }

    /// The pipeline. `wrap` runs around each attempt's future (to set the
    /// call's task-local context); for unkeyed calls it is the identity.
    async fn run<T, E, F, Fut, W, Wrapped>(&self, mut next_attempt: F, wrap: W) -> Result<T, E>
    where
        F: FnMut() -> Option<Fut>,
        Fut: Future<Output = Result<T, E>>,
        W: Fn(Fut) -> Wrapped,
        Wrapped: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        let retry = self.policy.retry();
        let timeout = self.policy.timeout();
        // Clock reads only for the limits that need them.
        let started =
            (self.policy.deadline().is_some() || retry.max_elapsed().is_some()).then(Instant::now);
        let deadline = started
            .zip(self.policy.deadline())
            .map(|(started, deadline)| started + deadline);
        let max_attempts = retry.attempts().max(1);
        // The logical call's span, and its correlation id: the caller's, or
        // its own (made now if the span records it, else when first asked
        // for, by `seawall::http` say). Both cover each attempt's polls.
        let span = tracing::info_span!(
            target: "seawall::call",
            "seawall.call",
            contract = %self.contract,
            method = %self.method,
            correlation_id = tracing::field::Empty,
            "otel.kind" = "client",
            "http.request.method" = tracing::field::Empty,
            "server.address" = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
        );
        let mut correlation = crate::telemetry::correlation_for_call(!span.is_disabled());
        if !span.is_disabled() {
            span.record(
                "correlation_id",
                tracing::field::display(format_args!("{correlation:032x}")),
            );
        }
        let failure: Result<T, E> = 'failed: {
            let mut rng = None;
            let mut previous_delay = Duration::ZERO;
            let mut attempts = 0;
            let failed = loop {
                let permit = match &self.breaker {
                    None => None,
                    Some(breaker) => match breaker.admit_closed() {
                        Some(permit) => Some(permit),
                        None => match breaker.try_acquire() {
                            Ok(permit) => Some(permit),
                            Err(rejected) => break 'failed Err(self.rejected(rejected.retry_in)),
                        },
                    },
                };
                // The attempt's limit is its timeout, or what is left of the
                // deadline when that is shorter.
                let (limit, limited_by_deadline) = match deadline {
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        (left.min(timeout), left < timeout)
                    }
                    None => (timeout, false),
                };
                if limit.is_zero() {
                    break 'failed Err(self.deadline_exceeded(attempts));
                }
                let Some(call) = next_attempt() else {
                    break None;
                };
                attempts += 1;
                let probe = permit.as_ref().is_some_and(Permit::is_probe);
                let clock = crate::telemetry::clock();
                let timer = clock.raw();
                let answer = within(limit, timer, &span, &mut correlation, wrap(call)).await;
                let elapsed = clock.delta_as_nanos(timer, clock.raw());
                // An answer far past the limit: the timer never had the
                // thread (a blocking adapter). Half as long again leaves
                // room for a busy scheduler.
                let limit_nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
                if elapsed > limit_nanos.saturating_add(limit_nanos / 2)
                    && matches!(answer, Attempt::Answered(_))
                {
                    self.stats.blocked(Duration::from_nanos(elapsed), limit);
                }
                let failed = match answer {
                    Attempt::Answered(Ok(value)) => {
                        self.observe(&span, Seen::Success, attempts, elapsed);
                        record(permit, Outcome::Success);
                        if let Some(budget) = &self.budget {
                            budget.deposit();
                        }
                        return Ok(value);
                    }
                    Attempt::Answered(Err(error)) => {
                        let class = error.class();
                        self.observe(&span, Seen::Error(class), attempts, elapsed);
                        record_error(permit, class);
                        if !retry.retry_on().contains(class) {
                            break 'failed Err(error);
                        }
                        Failed::Vendor(error, class)
                    }
                    Attempt::Panicked(panic) => {
                        // A vendor fault for the breaker, the counts and the
                        // attempt event; never retried: the panic goes on
                        // to the caller as it was raised.
                        self.observe(&span, Seen::Error(Class::VendorFault), attempts, elapsed);
                        record_error(permit, Class::VendorFault);
                        std::panic::resume_unwind(panic);
                    }
                    Attempt::TimedOut => {
                        self.observe(&span, Seen::Timeout, attempts, elapsed);
                        record(permit, Outcome::Failure);
                        if limited_by_deadline {
                            break 'failed Err(self.deadline_exceeded(attempts));
                        }
                        if !retry.retry_on().contains(Class::Retryable) {
                            break 'failed Err(E::from(Error::Timeout { after: timeout }));
                        }
                        Failed::Timeout(timeout)
                    }
                };
                if attempts >= max_attempts {
                    break Some(failed);
                }
                // A breaker that opened ends the loop now, not after a backoff
                // into a certain rejection. A failed half-open probe ends it too:
                // the breaker judges the vendor on separate calls, and this
                // call's retries would take the other probes' places.
                if probe || self.breaker.as_ref().is_some_and(|b| b.is_open()) {
                    break Some(failed);
                }
                let rng = rng.get_or_insert_with(|| self.rng.for_call());
                let mut delay = self.backoff.delay(attempts - 1, previous_delay, rng);
                // Never sooner than the vendor asked; never a wait the policy
                // does not allow.
                let asked = match &failed {
                    Failed::Vendor(error, _) => error.retry_after(),
                    Failed::Timeout(_) => None,
                };
                if let Some(asked) = asked {
                    if asked > retry.cap() {
                        break 'failed Err(retry_after(failed, asked, attempts));
                    }
                    delay = delay.max(asked);
                }
                let now = started.map(|_| Instant::now());
                if let (Some(now), Some(at)) = (now, deadline)
                    && now + delay >= at
                {
                    break 'failed Err(match asked {
                        Some(asked) if asked >= at - now => retry_after(failed, asked, attempts),
                        _ => self.deadline_exceeded(attempts),
                    });
                }
                if let (Some(now), Some(started), Some(max)) = (now, started, retry.max_elapsed())
                    && now + delay - started > max
                {
                    match asked {
                        Some(asked) => break 'failed Err(retry_after(failed, asked, attempts)),
                        None => break Some(failed),
                    }
                }
                if let Some(budget) = &self.budget
                    && !budget.try_withdraw()
                {
                    self.stats.budget_exhausted();
                    break 'failed Err(E::from(Error::RetryBudgetExhausted {
                        budget: budget.shared_name().clone(),
                        attempts,
                        last: failed.boxed(),
                    }));
                }
                previous_delay = delay;
                tracing::debug!(
                    target: "seawall::retry",
                    contract = %self.contract,
                    method = %self.method,
                    attempt = attempts,
                    ?delay,
                    "attempt failed with a retryable error; retrying"
                );
                tokio::time::sleep(delay).await;
            };
            Err(match failed {
                Some(failed) if max_attempts == 1 => match failed {
                    Failed::Vendor(error, _) => error,
                    Failed::Timeout(after) => E::from(Error::Timeout { after }),
                },
                Some(failed) => {
                    let class = failed.class();
                    E::from(Error::RetriesExhausted {
                        attempts,
                        class,
                        last: failed.boxed(),
                    })
                }
                // Only `call_once` runs out of attempts to make, and only when
                // its one attempt was already made; it never loops back.
                None => E::from(Error::RetriesExhausted {
                    attempts,
                    class: ErrorClass::Retryable,
                    last: "no further attempt could be made".into(),
                }),
            })
        };
        // For the event of a fallback that follows (a stale answer, a
        // queued write): the id of the call that failed.
        crate::telemetry::note_failed_correlation(correlation);
        failure
    }

    /// Records one attempt, which took `nanos`: counts, latency, the change
    /// detector, and an `info` event (target `seawall::attempt`) for
    /// whoever listens.
    fn observe(&self, span: &tracing::Span, seen: Seen, attempt: u32, nanos: u64) {
        self.stats.attempt(seen, nanos);
        let failed = seen != Seen::Success;
        let _in_call = span.enter();
        tracing::info!(
            target: "seawall::attempt",
            contract = %self.contract,
            method = %self.method,
            attempt,
            outcome = seen.as_str(),
            "error.type" = failed.then(|| seen.as_str()),
            duration_ms = nanos as f64 / 1e6,
            breaker = self.breaker.as_ref().map(|b| b.state().as_str()),
            "attempt"
        );
    }

    #[cold]
    fn rejected<E: From<Error>>(&self, retry_in: Option<Duration>) -> E {
        self.stats.rejected();
        self.breaker_open(retry_in)
    }

    fn breaker_open<E: From<Error>>(&self, retry_in: Option<Duration>) -> E {
        let breaker = self
            .breaker
            .as_ref()
            .map(|b| b.shared_name().clone())
            .unwrap_or_else(|| self.method.clone());
        tracing::debug!(
            target: "seawall::breaker",
            contract = %self.contract,
            method = %self.method,
            %breaker,
            ?retry_in,
            "call rejected by an open circuit breaker"
        );
        E::from(Error::BreakerOpen { breaker, retry_in })
    }

    fn deadline_exceeded<E: From<Error>>(&self, attempts: u32) -> E {
        let deadline = self.policy.deadline().unwrap_or_default();
        E::from(Error::DeadlineExceeded { deadline, attempts })
    }
}

fn cache_events_enabled() -> bool {
    tracing::enabled!(target: "seawall::cache", tracing::Level::INFO)
}

fn queue_events_enabled() -> bool {
    tracing::enabled!(target: "seawall::queue", tracing::Level::INFO)
}

/// The correlation id of a write queued behind others, which makes no
/// call: the caller's, or a new one.
fn fallback_correlation() -> CorrelationId {
    crate::telemetry::current_correlation().unwrap_or_else(CorrelationId::generate)
}

/// How one attempt ended.
enum Attempt<T> {
    Answered(T),
    TimedOut,
    /// The adapter panicked; the payload is raised again once the panic is
    /// recorded.
    Panicked(crate::unwind::Panic),
}

/// Runs one attempt under its time limit.
///
/// The attempt is polled first: one that answers at once (a cache, a
/// fake, a pooled connection with the answer ready) never arms a timer.
/// One that must wait arms it then, for the limit less the whole
/// milliseconds its first poll took.
///
/// Each poll runs in the call's span and correlation scope.
fn within<'a, F: Future>(
    limit: Duration,
    started: u64,
    span: &'a tracing::Span,
    correlation: &'a mut u128,
    attempt: F,
) -> Within<'a, F> {
    Within {
        attempt,
        timer: None,
        limit,
        started,
        span,
        correlation,
    }
}

pin_project_lite::pin_project! {
    struct Within<'a, F> {
        #[pin]
        attempt: F,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Duration,
        started: u64,
        span: &'a tracing::Span,
        correlation: &'a mut u128,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Attempt<F::Output>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let mut this = self.project();
        let _in_call = this.span.enter();
        let attempt = this.attempt;
        // Unwinding is caught here only to be recorded; `run` raises it
        // again. (No cost while nothing panics.)
        let (answer, correlation) =
            crate::telemetry::polled_in_correlation(**this.correlation, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt.poll(cx)))
            });
        **this.correlation = correlation;
        match answer {
            Ok(Poll::Ready(answer)) => return Poll::Ready(Attempt::Answered(answer)),
            Err(panic) => return Poll::Ready(Attempt::Panicked(panic)),
            Ok(Poll::Pending) => {}
        }
        if this.timer.is_none() {
            let clock = crate::telemetry::clock();
            let spent = clock.delta_as_nanos(*this.started, clock.raw()) / 1_000_000;
            let spent = Duration::from_millis(spent);
            this.timer
                .set(Some(tokio::time::sleep(this.limit.saturating_sub(spent))));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Attempt::TimedOut),
            _ => Poll::Pending,
        }
    }
}

fn record(permit: Option<Permit<'_>>, outcome: Outcome) {
    if let Some(permit) = permit {
        permit.record(outcome);
    }
}

fn record_error(permit: Option<Permit<'_>>, class: Class) {
    if let Some(permit) = permit {
        permit.record_error(class);
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("contract", &self.contract)
            .field("method", &self.method)
            .field("policy", &self.policy)
            .field("breaker", &self.breaker.as_ref().map(|b| b.name()))
            .finish()
    }
}
