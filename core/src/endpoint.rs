//! A contract method's share of the runtime, resolved once: its policy and
//! the state its stages use (breaker, retry budget, backoff, idempotency
//! store, cache, queue, counters). The stages themselves are modules of
//! their own, composed by [`pipeline`](crate::pipeline).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::cache::LastKnownGood;
use crate::idempotency::{CallContext, IdempotencyKey, IdempotencyStore};
use crate::queue::ContractQueue;
use crate::retry::{Backoff, RetryBudget, RngSource};
use crate::telemetry::EndpointStats;
use crate::tunable::Tunable;
use crate::{ContractError, Error, Policy};

/// One contract method's share of the runtime: its policy, its breaker and
/// its backoff, resolved once when the wrapper is first used so that a call
/// never looks anything up by name.
///
/// [`call`](Self::call) runs one logical call through the pipeline:
/// retry ⟶ breaker ⟶ per-attempt timeout ⟶ the adapter. (A `#[contract]`
/// wrapper's calls also pass the fallbacks and the idempotency store its
/// policy declares.)
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
    pub(crate) contract: Arc<str>,
    pub(crate) method: Arc<str>,
    /// Its policy and backoff as operators' overrides make them now.
    pub(crate) tuning: Arc<EndpointTuning>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) limiter: Option<Arc<crate::rate::RateLimiter>>,
    pub(crate) pause: Arc<crate::rate::ContractPause>,
    pub(crate) bulkhead: Option<Arc<crate::bulkhead::Bulkhead>>,
    pub(crate) hedge: Option<Arc<crate::hedge::Hedger>>,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) rng: Arc<RngSource>,
    pub(crate) key_header: Arc<str>,
    pub(crate) store: Option<Arc<IdempotencyStore>>,
    pub(crate) cache: Option<LastKnownGood>,
    pub(crate) queue: Option<Arc<ContractQueue>>,
    pub(crate) stats: Arc<EndpointStats>,
}

/// A method's policy as compiled, and as it is now: the versions a reload
/// made are kept while calls may borrow them (`tunable.rs`).
pub(crate) struct EndpointTuning {
    pub(crate) contract: Arc<str>,
    pub(crate) method: Arc<str>,
    /// What the contract declares, which every reload starts again from.
    pub(crate) compiled: Policy,
    current: Tunable<Tuned>,
}

/// One version of a method's effective policy.
pub(crate) struct Tuned {
    pub(crate) policy: Policy,
    pub(crate) backoff: Backoff,
}

impl Tuned {
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            backoff: Backoff::new(policy.retry()),
            policy,
        }
    }
}

impl EndpointTuning {
    pub(crate) fn new(
        contract: Arc<str>,
        method: Arc<str>,
        compiled: Policy,
        effective: Policy,
    ) -> Self {
        Self {
            contract,
            method,
            compiled,
            current: Tunable::new(Tuned::new(effective)),
        }
    }

    /// The effective policy now.
    #[inline]
    pub(crate) fn get(&self) -> &Tuned {
        self.current.get()
    }

    /// A reload's new effective policy, for the calls that start from now.
    pub(crate) fn set(&self, effective: Policy) {
        self.current.set(Tuned::new(effective));
    }
}

/// The runtime state an endpoint uses, resolved by the runtime.
pub(crate) struct Resolved {
    pub(crate) tuning: Arc<EndpointTuning>,
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) limiter: Option<Arc<crate::rate::RateLimiter>>,
    pub(crate) pause: Arc<crate::rate::ContractPause>,
    pub(crate) bulkhead: Option<Arc<crate::bulkhead::Bulkhead>>,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) rng: Arc<RngSource>,
    pub(crate) store: Option<Arc<IdempotencyStore>>,
    pub(crate) queue: Option<Arc<ContractQueue>>,
    pub(crate) cache_beyond: crate::cache::Beyond,
}

impl Endpoint {
    pub(crate) fn new(contract: Arc<str>, method: Arc<str>, state: Resolved) -> Self {
        let policy = &state.tuning.compiled;
        Self {
            key_header: policy.idempotency_header().into(),
            cache: policy.cache_fallback().map(|cache| {
                LastKnownGood::new(
                    cache,
                    state.cache_beyond,
                    Arc::from(format!("{contract}.{method}")),
                )
            }),
            contract,
            method,
            tuning: state.tuning,
            breaker: state.breaker,
            limiter: state.limiter,
            pause: state.pause,
            bulkhead: state.bulkhead,
            hedge: state.stats.hedger().cloned(),
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

    /// The method's policy: as compiled, with the operator's overrides
    /// (as of the last reload; see [`Runtime::reload`](crate::Runtime::reload)).
    pub fn policy(&self) -> &Policy {
        &self.tuning.get().policy
    }

    /// The effective policy and backoff now: a call reads them once.
    #[inline]
    pub(crate) fn tuned(&self) -> &Tuned {
        self.tuning.get()
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
    pub fn call<T, E, F, Fut>(&self, attempt: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ContractError,
    {
        crate::pipeline::run(
            self,
            crate::pipeline::Call {
                attempts: crate::__private_v1::each(attempt),
                answer: crate::fallback::Plain,
                record: crate::idempotency::stage::NotStored,
                reads: crate::pipeline::NoReads,
                fallback: crate::fallback::NoFallback,
            },
        )
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

    pub(crate) fn key_context(&self, key: IdempotencyKey) -> CallContext {
        CallContext {
            key,
            header: self.key_header.clone(),
        }
    }

    #[cold]
    pub(crate) fn rejected<E: From<Error>>(&self, retry_in: Option<Duration>) -> E {
        self.stats.turned_away();
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

    #[cold]
    pub(crate) fn rate_limited<E: From<Error>>(&self, retry_in: Duration) -> E {
        self.stats.turned_away();
        let limiter = self
            .limiter
            .as_ref()
            .map_or_else(|| self.pause.contract().clone(), |l| l.name().clone());
        tracing::debug!(
            target: "seawall::rate",
            contract = %self.contract,
            method = %self.method,
            %limiter,
            ?retry_in,
            "call refused: no turn within the rate limiter's wait"
        );
        E::from(Error::RateLimited { limiter, retry_in })
    }

    #[cold]
    pub(crate) fn bulkhead_full<E: From<Error>>(&self, full: crate::bulkhead::Full) -> E {
        self.stats.turned_away();
        let (bulkhead, max) = match &self.bulkhead {
            Some(b) => (b.name().clone(), b.policy().max()),
            None => (self.method.clone(), 0),
        };
        let waited = matches!(full, crate::bulkhead::Full::Waited);
        tracing::debug!(
            target: "seawall::bulkhead",
            contract = %self.contract,
            method = %self.method,
            %bulkhead,
            waited,
            "call refused: the bulkhead is full"
        );
        E::from(Error::BulkheadFull {
            bulkhead,
            max,
            waited,
        })
    }

    /// The vendor asked to wait (`retry_after` of a failed attempt): the
    /// limiter pauses, or the contract when the method has none.
    #[cold]
    pub(crate) fn vendor_asked_to_wait(&self, pause: Duration) {
        match &self.limiter {
            Some(limiter) => limiter.pause(pause),
            None => self.pause.pause(pause),
        }
    }

    pub(crate) fn deadline_exceeded<E: From<Error>>(&self, attempts: u32) -> E {
        let deadline = self.policy().deadline().unwrap_or_default();
        E::from(Error::DeadlineExceeded { deadline, attempts })
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("contract", &self.contract)
            .field("method", &self.method)
            .field("policy", self.policy())
            .field("breaker", &self.breaker.as_ref().map(|b| b.name()))
            .finish()
    }
}
