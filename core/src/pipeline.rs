//! The call pipeline: the stages every call of a contract method passes,
//! composed by the runtime in one order.
//!
//! ```text
//! deadline                       the call's whole time (timeout.rs)
//! └─ fallback                    with(..) · cache · queue (fallback.rs, cache/stage.rs, queue/stage.rs)
//!    └─ idempotency              idempotent(store) (idempotency/stage.rs)
//!       └─ retry + budget        attempts, backoff, Retry-After (retry/stage.rs)
//!          └─ rate limiter       a turn per attempt, waited for; paused by Retry-After (rate.rs)
//!             bulkhead           a place per attempt, waited for (bulkhead.rs)
//!             breaker            admission, outcome (breaker/mod.rs, `admit`)
//!             └─ hedge           more attempts once one is late (hedge.rs)
//!                └─ attempt timeout (timeout.rs)
//!                   └─ adapter
//! ```
//!
//! **Why the runtime, not the generated code, composes them.** The macro
//! describes a call — its endpoint (the checked policy and the state it
//! resolved), what it read from its arguments (idempotency key,
//! fingerprint, cache key, the arguments a queued write keeps), how its
//! answer looks to the fallbacks, and how to make an attempt — in one
//! [`Call`], and hands it to [`run`]. Which stages run, and in what order,
//! is decided here, once, so a new stage is a new module and a few lines
//! in `run`, not a change to every expansion. The stages share the call's
//! span and correlation id by argument, not through thread-locals.
//!
//! A stage the policy does not configure costs a branch: the success path
//! of a call with only a timeout, a breaker and retries allocates nothing
//! and reads no clock it does not need (see BENCHMARKS.md).

use std::future::Future;

use crate::__private_v1::args::PreparedArguments;
use crate::ContractError;
use crate::endpoint::Endpoint;
use crate::fallback::{Answer, Fallback};
use crate::idempotency::IdempotencyKey;
use crate::idempotency::stage::Record;
use crate::telemetry::{CallOutcome, CallTrace};
use crate::timeout::Deadline;

/// One call, as the generated code describes it.
///
/// `attempts` makes each attempt (`None` when it can make no more: a call
/// whose arguments move into its single attempt); `answer` and `record`
/// say how the fallbacks and the idempotency store see the answer; the
/// `Option`s are what was read from the arguments for the stages that
/// need it; `fallback` is `with(..)`'s function, if any.
pub struct Call<F, A, S, R, B> {
    /// Makes each attempt.
    pub attempts: F,
    /// How the fallbacks see the answer ([`Plain`](crate::fallback::Plain)
    /// without `cache` or `queue`).
    pub answer: A,
    /// How the idempotency store sees the answer
    /// ([`NotStored`](crate::idempotency::stage::NotStored) without
    /// `idempotent(store)`).
    pub record: S,
    /// What was read from the arguments: [`NoReads`] when the policy needs
    /// nothing of them, else a [`Read`].
    pub reads: R,
    /// `fallback = with(..)`.
    pub fallback: B,
}

/// What a call read from its arguments, for the stages that need it.
pub trait Reads {
    /// Whether the call read nothing (known when it is compiled, so a call
    /// that reads nothing carries no space for it and tests nothing).
    const NOTHING: bool = false;

    /// What was read.
    fn into_read(self) -> Read;
}

/// A call whose policy needs nothing of its arguments.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReads;

impl Reads for NoReads {
    const NOTHING: bool = true;

    #[inline]
    fn into_read(self) -> Read {
        Read::default()
    }
}

/// What a call read from its arguments.
#[derive(Default)]
pub struct Read {
    /// The idempotency key, for a keyed write.
    pub key: Option<IdempotencyKey>,
    /// The whole payload's fingerprint, for `idempotent(store)`.
    pub fingerprint: Option<String>,
    /// The hash of the arguments, for `fallback = cache(..)`.
    pub cache_key: Option<u128>,
    /// The arguments a queued write keeps, for `fallback = queue`; `None`
    /// when the drain re-issues a queued write (which is not queued again).
    pub queued: Option<PreparedArguments>,
}

impl Reads for Read {
    #[inline]
    fn into_read(self) -> Read {
        self
    }
}

/// The body of [`run`] and [`run_hedged`]: the same stages, with the
/// attempts hedged or not (`hedged`, a literal).
macro_rules! pipeline {
    ($endpoint:ident, $call:ident, hedged = $hedged:tt) => {
        // A call that only retries (with its breaker and timeouts) or reads
        // through a cache runs in this future; one that needs a key, the store,
        // a queue or `with(..)` runs in a boxed one, so that their state never
        // weighs on the others. (One async block, not an enum of two futures:
        // the block is built where it is awaited, an enum's variant would be
        // copied there.)
        async move {
            // The call's parts are used where they were captured: bound to
            // locals, they would take space of their own in this future.
            let plain = $call.record.ops().is_none() && $call.fallback.passes_through();
            // The cache key as two words: a `u128` would align this part of
            // the future to 16 bytes, with padding to match.
            let cache_key: Option<[u64; 2]> = if R::NOTHING && plain {
                None
            } else {
                let read = $call.reads.into_read();
                if !plain || read.key.is_some() || read.queued.is_some() {
                    let full = full(
                        $endpoint,
                        $call.attempts,
                        $call.answer,
                        $call.record,
                        read,
                        $call.fallback,
                    );
                    return Box::pin(full).await;
                }
                read.cache_key.map(|key| [(key >> 64) as u64, key as u64])
            };
            // One read of the policy's current version for the whole call.
            let tuned = $endpoint.tuned();
            let deadline = Deadline::start(&tuned.policy);
            let mut trace = CallTrace::new($endpoint);
            trace.start();
            let result = crate::retry::stage::run!(
                $endpoint,
                tuned,
                deadline,
                trace,
                $call.attempts,
                |a| a,
                hedged = $hedged
            );
            match (&$endpoint.cache, cache_key) {
                (Some(cache), Some([high, low])) => match result {
                    Ok(value) => {
                        let key = (u128::from(high) << 64) | u128::from(low);
                        crate::cache::stage::keep(&$call.answer, cache, key, &value);
                        let result = Ok(value);
                        trace.end(&result, CallOutcome::Ok);
                        result
                    }
                    // Boxed: the cache's read (from disk, perhaps) is only for
                    // a failed read.
                    Err(error) => {
                        let key = (u128::from(high) << 64) | u128::from(low);
                        let result = Box::pin(crate::cache::stage::serve_stale(
                            &$call.answer,
                            $endpoint,
                            cache,
                            key,
                            error,
                            || trace.correlation_id(),
                        ))
                        .await;
                        trace.end(&result, CallOutcome::Stale);
                        result
                    }
                },
                _ => {
                    trace.end(&result, CallOutcome::Ok);
                    result
                }
            }
        }
    };
}

/// Runs one call of `endpoint`'s method through every stage its policy
/// configures, its attempts not hedged (see [`run_hedged`]).
///
/// # Errors
///
/// The adapter's error, or one of seawall's (as `E::from`), as each stage
/// documents; a `with(..)` fallback may turn any of them into an answer.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in its future (as arguments and as locals)"
)]
#[inline]
pub fn run<T, E, F, Fut, A, S, R, B>(
    endpoint: &Endpoint,
    mut call: Call<F, A, S, R, B>,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<T, E>>,
    A: Answer<T>,
    S: Record<T>,
    R: Reads,
    B: Fallback<T, E>,
    E: ContractError,
{
    pipeline!(endpoint, call, hedged = false)
}

/// [`run`] for a method with `hedge(..)`: the same stages, each attempt
/// raced against its hedges once it is late. An entry point of its own, so
/// that no other call's future holds a race. (Two functions written out,
/// not one made by a macro: a bound the user's error type misses is then
/// reported at a plain function.)
///
/// # Errors
///
/// The adapter's error, or one of seawall's (as `E::from`), as each stage
/// documents; a `with(..)` fallback may turn any of them into an answer.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in its future (as arguments and as locals)"
)]
#[inline]
pub fn run_hedged<T, E, F, Fut, A, S, R, B>(
    endpoint: &Endpoint,
    mut call: Call<F, A, S, R, B>,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<T, E>>,
    A: Answer<T>,
    S: Record<T>,
    R: Reads,
    B: Fallback<T, E>,
    E: ContractError,
{
    pipeline!(endpoint, call, hedged = true)
}

/// A call with any of the other stages.
fn full<T, E, F, Fut, A, S, B>(
    endpoint: &Endpoint,
    mut attempts: F,
    answer_shape: A,
    record: S,
    read: Read,
    fallback: B,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<T, E>>,
    A: Answer<T>,
    S: Record<T>,
    B: Fallback<T, E>,
    E: ContractError,
{
    let Read {
        key,
        fingerprint,
        cache_key,
        queued,
    } = read;
    async move {
        // One read of the policy's current version for the whole call.
        let tuned = endpoint.tuned();
        let deadline = Deadline::start(&tuned.policy);
        let mut trace = CallTrace::new(endpoint);
        trace.start();
        // The key travels as the attempts' task-local context, and names a
        // queued write.
        let context = key.map(|key| endpoint.key_context(key));
        let cache = endpoint.cache.as_ref().zip(cache_key);
        let mut queue = match (&endpoint.queue, queued, &context) {
            (Some(queue), Some(arguments), Some(context)) => Some((queue, arguments, &context.key)),
            _ => None,
        };
        use crate::queue::stage;
        if let Some((queue, arguments, _)) = &queue
            && let Some(refused) = stage::refusal(endpoint, queue, arguments)
        {
            return answer_or_fallback(&mut trace, Err(refused), CallOutcome::Ok, fallback);
        }
        if let Some((queue, arguments, key)) =
            queue.take_if(|(queue, arguments, _)| stage::behind_others(queue, arguments))
        {
            let ahead = "writes of this contract (or of its ordering key) are queued ahead of it";
            // Boxed: the log's append is a large future that only a write
            // that queues needs, kept out of every call's own.
            let ticket = Box::pin(stage::enqueue(
                endpoint,
                queue,
                key,
                arguments,
                ahead,
                std::time::Duration::ZERO,
                || trace.correlation_id(),
            ))
            .await;
            let result = queued_answer(&answer_shape, ticket);
            return answer_or_fallback(&mut trace, result, CallOutcome::Queued, fallback);
        }
        // The idempotency stage, then the retry stage (and within it the
        // breaker and the attempt timeout). The retry stage's future is
        // built where it is awaited: bound to a local first, it would take
        // space of its own in this future beside the awaited copy.
        let result = match (record.ops(), &context, fingerprint.as_deref()) {
            (Some(ops), Some(keyed), Some(fingerprint)) => {
                // Boxed: the store's claim and record are large futures
                // that only a write with `idempotent(store)` needs (and it
                // does I/O).
                Box::pin(crate::idempotency::stage::run(
                    ops,
                    endpoint,
                    &keyed.key,
                    fingerprint,
                    deadline.at,
                    async {
                        crate::retry::stage::run!(
                            endpoint,
                            tuned,
                            deadline,
                            trace,
                            attempts,
                            |attempt| crate::idempotency::keyed(Some(keyed), attempt),
                            hedged = true,
                        )
                    },
                ))
                .await
            }
            _ => {
                let context = context.as_ref();
                crate::retry::stage::run!(
                    endpoint,
                    tuned,
                    deadline,
                    trace,
                    attempts,
                    |attempt| crate::idempotency::keyed(context, attempt),
                    hedged = true,
                )
            }
        };
        let (result, answered) = match (result, cache, queue) {
            (Ok(answer), Some((cache, cache_key)), _) => {
                crate::cache::stage::keep(&answer_shape, cache, cache_key, &answer);
                (Ok(answer), CallOutcome::Ok)
            }
            (Err(error), Some((cache, cache_key)), _) => {
                // Boxed: the cache's read (from disk, perhaps) is only for
                // a failed read.
                let stale = Box::pin(crate::cache::stage::serve_stale(
                    &answer_shape,
                    endpoint,
                    cache,
                    cache_key,
                    error,
                    || trace.correlation_id(),
                ))
                .await;
                (stale, CallOutcome::Stale)
            }
            (Err(error), None, Some((queue, arguments, key))) if stage::covers(&error) => {
                let wait = stage::wait_after(endpoint, &error);
                // Boxed, as above.
                let ticket = Box::pin(stage::enqueue(
                    endpoint,
                    queue,
                    key,
                    arguments,
                    error,
                    wait,
                    || trace.correlation_id(),
                ))
                .await;
                (queued_answer(&answer_shape, ticket), CallOutcome::Queued)
            }
            (result, _, _) => (result, CallOutcome::Ok),
        };
        answer_or_fallback(&mut trace, result, answered, fallback)
    }
}

/// The call's answer (`answered` says what an `Ok` is), or what
/// `fallback = with(..)` makes of its error; the call's end reported.
fn answer_or_fallback<T, E: ContractError, B: Fallback<T, E>>(
    trace: &mut CallTrace<'_>,
    result: Result<T, E>,
    answered: CallOutcome,
    fallback: B,
) -> Result<T, E> {
    let (result, answered) = match result {
        Ok(answer) => (Ok(answer), answered),
        Err(error) if fallback.passes_through() => (Err(error), answered),
        Err(error) => (fallback.answer(error), CallOutcome::Fallback),
    };
    trace.end(&result, answered);
    result
}

/// A queued write's answer from its ticket.
fn queued_answer<T, E: ContractError, A: Answer<T>>(
    shape: &A,
    ticket: Result<crate::wal::Ticket, E>,
) -> Result<T, E> {
    let ticket = ticket?;
    shape.queued(ticket).ok_or_else(|| {
        E::from(crate::Error::NotQueued {
            reason: "the method's answer cannot carry a ticket".into(),
            last: "queued by a method that does not return `Delivery`".into(),
        })
    })
}
