//! The retry stage: attempts until one answers, the policy allows no more,
//! or a limit says stop.
//!
//! Inside it, each attempt passes the breaker (admission, then its outcome
//! recorded) and runs under its timeout ([`timeout::within`]); between
//! attempts it waits the backoff, never less than a `Retry-After` the vendor
//! sent and never past the call's deadline, `max_elapsed` or the retry
//! budget.
//!
//! [`timeout::within`]: crate::timeout::within

use std::future::Future;
use std::time::Duration;

use crate::breaker::{Outcome, Permit};
use crate::endpoint::Endpoint;
use crate::telemetry::{CallTrace, Outcome as Seen};
use crate::timeout::{Attempt, Deadline};
use crate::{ContractError, Error, ErrorClass};

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

/// Runs the attempts of one call: `next_attempt` makes each (or `None` when
/// it can make no more: a call whose arguments move into its one attempt),
/// and `wrap` runs around each (to set a keyed write's task-local context;
/// the identity otherwise).
///
/// Not an `async fn`: one would keep its arguments twice, as arguments and
/// as the locals they become, in every call's future.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in its future (as arguments and as locals)"
)]
pub(crate) fn run<T, E, F, Fut, W, Wrapped>(
    endpoint: &Endpoint,
    deadline: Deadline,
    trace: &mut CallTrace,
    mut next_attempt: F,
    wrap: W,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<T, E>>,
    W: Fn(Fut) -> Wrapped,
    Wrapped: Future<Output = Result<T, E>>,
    E: ContractError,
{
    async move {
        let retry = endpoint.policy.retry();
        let timeout = endpoint.policy.timeout();
        let max_attempts = retry.attempts().max(1);
        let mut rng = None;
        let mut previous_delay = Duration::ZERO;
        let mut attempts = 0;
        let failed = loop {
            // The breaker stage's admission: its closed fast path inline,
            // the rest in the breaker. (An `Option<Permit>` moved out of a
            // `Result` measured slower.)
            let permit = match endpoint.breaker.as_deref() {
                None => None,
                Some(breaker) => match breaker.admit_closed() {
                    Some(permit) => Some(permit),
                    None => match breaker.try_acquire() {
                        Ok(permit) => Some(permit),
                        Err(rejected) => return Err(endpoint.rejected(rejected.retry_in)),
                    },
                },
            };
            let (limit, limited_by_deadline) = deadline.attempt_limit(timeout);
            if limit.is_zero() {
                return Err(endpoint.deadline_exceeded(attempts));
            }
            let Some(call) = next_attempt() else {
                break None;
            };
            attempts += 1;
            let probe = permit.as_ref().is_some_and(Permit::is_probe);
            let clock = crate::telemetry::clock();
            let timer = clock.raw();
            let answer = crate::timeout::within(
                limit,
                timer,
                &trace.span,
                &mut trace.correlation,
                wrap(call),
            )
            .await;
            let elapsed = clock.delta_as_nanos(timer, clock.raw());
            if crate::timeout::overran(elapsed, limit) && matches!(answer, Attempt::Answered(_)) {
                endpoint.stats.blocked(Duration::from_nanos(elapsed), limit);
            }
            let failed = match answer {
                Attempt::Answered(Ok(value)) => {
                    endpoint.observe(trace, Seen::Success, attempts, elapsed);
                    record(permit, Outcome::Success);
                    if let Some(budget) = &endpoint.budget {
                        budget.deposit();
                    }
                    return Ok(value);
                }
                Attempt::Answered(Err(error)) => {
                    let class = error.class();
                    endpoint.observe(trace, Seen::Error(class), attempts, elapsed);
                    record_error(permit, class);
                    if !retry.retry_on().contains(class) {
                        return Err(error);
                    }
                    Failed::Vendor(error, class)
                }
                Attempt::Panicked(panic) => {
                    // A vendor fault for the breaker, the counts and the attempt
                    // event; never retried: the panic goes on to the caller as it
                    // was raised.
                    endpoint.observe(
                        trace,
                        Seen::Error(ErrorClass::VendorFault),
                        attempts,
                        elapsed,
                    );
                    record_error(permit, ErrorClass::VendorFault);
                    std::panic::resume_unwind(panic);
                }
                Attempt::TimedOut => {
                    endpoint.observe(trace, Seen::Timeout, attempts, elapsed);
                    record(permit, Outcome::Failure);
                    if limited_by_deadline {
                        return Err(endpoint.deadline_exceeded(attempts));
                    }
                    if !retry.retry_on().contains(ErrorClass::Retryable) {
                        return Err(E::from(Error::Timeout { after: timeout }));
                    }
                    Failed::Timeout(timeout)
                }
            };
            if attempts >= max_attempts {
                break Some(failed);
            }
            // A breaker that opened ends the loop now, not after a backoff into
            // a certain rejection. A failed half-open probe ends it too: the
            // breaker judges the vendor on separate calls, and this call's
            // retries would take the other probes' places.
            if probe || endpoint.breaker.as_ref().is_some_and(|b| b.is_open()) {
                break Some(failed);
            }
            let rng = rng.get_or_insert_with(|| endpoint.rng.for_call());
            let mut delay = endpoint.backoff.delay(attempts - 1, previous_delay, rng);
            // Never sooner than the vendor asked; never a wait the policy does
            // not allow.
            let asked = match &failed {
                Failed::Vendor(error, _) => error.retry_after(),
                Failed::Timeout(_) => None,
            };
            if let Some(asked) = asked {
                if asked > retry.cap() {
                    return Err(retry_after(failed, asked, attempts));
                }
                delay = delay.max(asked);
            }
            let now = deadline.started.map(|_| tokio::time::Instant::now());
            if let (Some(now), Some(at)) = (now, deadline.at)
                && now + delay >= at
            {
                return Err(match asked {
                    Some(asked) if asked >= at - now => retry_after(failed, asked, attempts),
                    _ => endpoint.deadline_exceeded(attempts),
                });
            }
            if let (Some(now), Some(started), Some(max)) =
                (now, deadline.started, retry.max_elapsed())
                && now + delay - started > max
            {
                match asked {
                    Some(asked) => return Err(retry_after(failed, asked, attempts)),
                    None => break Some(failed),
                }
            }
            if let Some(budget) = &endpoint.budget
                && !budget.try_withdraw()
            {
                endpoint.stats.budget_exhausted();
                return Err(E::from(Error::RetryBudgetExhausted {
                    budget: budget.shared_name().clone(),
                    attempts,
                    last: failed.boxed(),
                }));
            }
            previous_delay = delay;
            tracing::debug!(
                target: "seawall::retry",
                contract = %endpoint.contract,
                method = %endpoint.method,
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
            // Only a call whose one attempt moves its arguments runs out of
            // attempts to make, and only once that attempt was made; it never
            // loops back.
            None => E::from(Error::RetriesExhausted {
                attempts,
                class: ErrorClass::Retryable,
                last: "no further attempt could be made".into(),
            }),
        })
    }
}

fn record(permit: Option<Permit<'_>>, outcome: Outcome) {
    if let Some(permit) = permit {
        permit.record(outcome);
    }
}

fn record_error(permit: Option<Permit<'_>>, class: ErrorClass) {
    if let Some(permit) = permit {
        permit.record_error(class);
    }
}
