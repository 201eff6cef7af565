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

use std::time::Duration;

use crate::breaker::{Outcome, Permit};
use crate::{ContractError, Error, ErrorClass};

/// Why an attempt failed, kept until the loop knows whether it was the last.
pub(crate) enum Failed<E> {
    Vendor(E, ErrorClass),
    Timeout(Duration),
}

impl<E: ContractError> Failed<E> {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Failed::Vendor(_, class) => *class,
            Failed::Timeout(_) => ErrorClass::Retryable,
        }
    }

    pub(crate) fn boxed(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            Failed::Vendor(error, _) => Box::new(error),
            Failed::Timeout(after) => Box::new(Error::Timeout { after }),
        }
    }
}

pub(crate) fn retry_after<E: ContractError>(
    failed: Failed<E>,
    asked: Duration,
    attempts: u32,
) -> E {
    E::from(Error::RetryAfter {
        retry_after: asked,
        attempts,
        last: failed.boxed(),
    })
}

/// Runs the attempts of one call, as a block expression of the call's
/// `Result` inside the caller's `async` block: `next_attempt` makes each
/// attempt (or `None` when it can make no more: a call whose arguments move
/// into its one attempt), and `wrap` runs around each (to set a keyed
/// write's task-local context; the identity otherwise).
///
/// `hedged` says whether the attempts may be hedged (`hedge(..)`): a call
/// that is not carries none of a race's state (measured: the hedged branch
/// cost every call of the full stack about 3.5 ns, BENCHMARKS.md).
///
/// A macro, not an `async fn`: a future of its own, nested in the
/// pipeline's, cost every call about 70 instructions (its arguments copied
/// in, its own state and drop) — a third of what the whole stack adds to a
/// call (BENCHMARKS.md).
macro_rules! run {
    ($endpoint:expr, $tuned:expr, $deadline:expr, $trace:ident, $next_attempt:expr, $wrap:expr, hedged = $hedged:tt $(,)?) => {
        'retry: {
            #[allow(unused_imports)]
            use $crate::Classify as _;
            let endpoint: &$crate::endpoint::Endpoint = $endpoint;
            let deadline: $crate::timeout::Deadline = $deadline;
            // Borrowed where it is: moved into a local, it would take
            // space of its own beside the place it came from.
            let next_attempt = &mut $next_attempt;
            let wrap = $wrap;
            // The call's version of its policy, read once by the pipeline
            // (its deadline came from the same one): a reload meanwhile
            // applies from the next call.
            let tuned: &$crate::endpoint::Tuned = $tuned;
            let retry = tuned.policy.retry();
            let timeout = tuned.policy.timeout();
            let max_attempts = retry.attempts().max(1);
            let mut rng = None;
            let mut previous_delay = ::std::time::Duration::ZERO;
            let mut attempts = 0;
            let clock = $crate::telemetry::clock();
            let failed = loop {
                // The attempt's start, when the rate limiter read it for a
                // turn taken at once (one clock read for both); read below
                // otherwise, and after any wait.
                let mut timer = None;
                // The rate limiter: every attempt takes a turn, waiting for
                // it up to `max_wait` (never past the deadline).
                if let Some(limiter) = endpoint.limiter.as_deref() {
                    let max_wait = limiter.policy().max_wait();
                    let now = clock.raw();
                    timer = Some(now);
                    match limiter.reserve(now, max_wait, deadline.at) {
                        $crate::rate::Admission::Now => {}
                        $crate::rate::Admission::After(wait, reserved) => {
                            ::tracing::debug!(
                                target: "seawall::rate",
                                contract = %endpoint.contract,
                                method = %endpoint.method,
                                limiter = %limiter.name(),
                                wait_ms = wait.as_secs_f64() * 1000.0,
                                "waiting for the rate limiter's turn"
                            );
                            $crate::rate::wait_turn(limiter, wait, reserved).await;
                            timer = None;
                        }
                        $crate::rate::Admission::Refused(retry_in) => {
                            $trace.rejected = true;
                            break 'retry Err(endpoint.rate_limited(retry_in));
                        }
                        // A fleet's limiter whose lease is spent.
                        $crate::rate::Admission::Lease => {
                            let max_wait = $crate::rate::bounded(max_wait, deadline.at);
                            if let Err(retry_in) = $crate::rate::lease_turn(limiter, max_wait).await {
                                $trace.rejected = true;
                                break 'retry Err(endpoint.rate_limited(retry_in));
                            }
                            timer = None;
                        }
                    }
                } else if let Some(retry_in) = endpoint.pause.remaining() {
                    // A contract without a limiter, paused by a vendor's
                    // Retry-After: fail fast until it ends.
                    $trace.rejected = true;
                    break 'retry Err(endpoint.rate_limited(retry_in));
                }
                // The bulkhead: a place for the attempt, given back once it
                // has ended. Its fast path inline (one compare-and-swap); the
                // clock is read only by a caller that has to wait.
                let place = match endpoint.bulkhead.as_deref() {
                    None => None,
                    Some(bulkhead) => match bulkhead.try_enter() {
                        Some(place) => Some(place),
                        None => match bulkhead.wait(deadline.at).await {
                            Ok(place) => {
                                timer = None;
                                Some(place)
                            }
                            Err(full) => {
                                $trace.rejected = true;
                                break 'retry Err(endpoint.bulkhead_full(full));
                            }
                        },
                    },
                };
                // The breaker stage's admission: its closed fast path inline,
                // the rest in the breaker. (An `Option<Permit>` moved out of a
                // `Result` measured slower.)
                let permit = match endpoint.breaker.as_deref() {
                    None => None,
                    Some(breaker) => match breaker.admit_closed() {
                        Some(permit) => Some(permit),
                        None => match breaker.try_acquire() {
                            Ok(permit) => Some(permit),
                            Err(rejected) => {
                                $trace.rejected = true;
                                break 'retry Err(endpoint.rejected(rejected.retry_in));
                            }
                        },
                    },
                };
                let (limit, limited_by_deadline) = deadline.attempt_limit(timeout);
                if limit.is_zero() {
                    break 'retry Err(endpoint.deadline_exceeded(attempts));
                }
                let Some(call) = next_attempt() else {
                    break None;
                };
                attempts += 1;
                $trace.begin_attempt(attempts);
                let probe = permit.as_ref().is_some_and($crate::breaker::Permit::is_probe);
                let timer = match timer {
                    Some(timer) => timer,
                    None => clock.raw(),
                };
                let answer = $crate::retry::stage::attempt!(
                    $hedged, endpoint, $trace, call, limit, timer, wrap, next_attempt
                );
                if let Some(place) = place {
                    place.ended(match &answer {
                        $crate::timeout::Attempt::Answered(Ok(_)) => $crate::bulkhead::Sample::Answered,
                        $crate::timeout::Attempt::TimedOut => $crate::bulkhead::Sample::TimedOut,
                        _ => $crate::bulkhead::Sample::Ignored,
                    });
                }
                let elapsed = clock.delta_as_nanos(timer, clock.raw());
                if $crate::timeout::overran(elapsed, limit) && matches!(answer, $crate::timeout::Attempt::Answered(_)) {
                    endpoint.stats.blocked(::std::time::Duration::from_nanos(elapsed), limit);
                }
                let failed = match answer {
                    $crate::timeout::Attempt::Answered(Ok(value)) => {
                        $trace.observe($crate::telemetry::Outcome::Success, elapsed, || "");
                        $crate::retry::stage::record(permit, $crate::breaker::Outcome::Success);
                        if let Some(budget) = &endpoint.budget {
                            budget.deposit();
                        }
                        break 'retry Ok(value);
                    }
                    $crate::timeout::Attempt::Answered(Err(error)) => {
                        let class = error.class();
                        // The vendor asked everyone to wait: the limiter
                        // this call came through (or its contract) pauses
                        // for that long.
                        if let Some(asked) = error.retry_after() {
                            endpoint.vendor_asked_to_wait(asked);
                        }
                        $trace.observe($crate::telemetry::Outcome::Error(class), elapsed, || $crate::telemetry::error_type_of(&error));
                        $crate::retry::stage::record_error(permit, class);
                        if !retry.retry_on().contains(class) {
                            break 'retry Err(error);
                        }
                        $crate::retry::stage::Failed::Vendor(error, class)
                    }
                    $crate::timeout::Attempt::Panicked(panic) => {
                        // A vendor fault for the breaker, the counts and the attempt
                        // event; never retried: the panic goes on to the caller as it
                        // was raised.
                        $trace.observe(
                            $crate::telemetry::Outcome::Error($crate::ErrorClass::VendorFault),
                            elapsed,
                            || "panic",
                        );
                        $crate::retry::stage::record_error(permit, $crate::ErrorClass::VendorFault);
                        ::std::panic::resume_unwind(panic);
                    }
                    $crate::timeout::Attempt::TimedOut => {
                        $trace.observe($crate::telemetry::Outcome::Timeout, elapsed, || "timeout");
                        $crate::retry::stage::record(permit, $crate::breaker::Outcome::Failure);
                        if limited_by_deadline {
                            break 'retry Err(endpoint.deadline_exceeded(attempts));
                        }
                        if !retry.retry_on().contains($crate::ErrorClass::Retryable) {
                            break 'retry Err(::core::convert::From::from($crate::Error::Timeout { after: timeout }));
                        }
                        $crate::retry::stage::Failed::Timeout(timeout)
                    }
                };
                // The failed attempt's span closes: the backoff is not
                // part of it.
                $trace.attempt = ::tracing::Span::none();
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
                let mut delay = tuned.backoff.delay(attempts - 1, previous_delay, rng);
                // Never sooner than the vendor asked; never a wait the policy does
                // not allow.
                let asked = match &failed {
                    $crate::retry::stage::Failed::Vendor(error, _) => error.retry_after(),
                    $crate::retry::stage::Failed::Timeout(_) => None,
                };
                if let Some(asked) = asked {
                    if asked > retry.cap() {
                        break 'retry Err($crate::retry::stage::retry_after(failed, asked, attempts));
                    }
                    delay = delay.max(asked);
                }
                let now = deadline.started.map(|_| ::tokio::time::Instant::now());
                if let (Some(now), Some(at)) = (now, deadline.at)
                    && now + delay >= at
                {
                    break 'retry Err(match asked {
                        Some(asked) if asked >= at - now => $crate::retry::stage::retry_after(failed, asked, attempts),
                        _ => endpoint.deadline_exceeded(attempts),
                    });
                }
                if let (Some(now), Some(started), Some(max)) =
                    (now, deadline.started, retry.max_elapsed())
                    && now + delay - started > max
                {
                    match asked {
                        Some(asked) => break 'retry Err($crate::retry::stage::retry_after(failed, asked, attempts)),
                        None => break Some(failed),
                    }
                }
                if let Some(budget) = &endpoint.budget
                    && !budget.try_withdraw()
                {
                    endpoint.stats.budget_exhausted();
                    break 'retry Err(::core::convert::From::from($crate::Error::RetryBudgetExhausted {
                        budget: budget.shared_name().clone(),
                        attempts,
                        last: failed.boxed(),
                    }));
                }
                previous_delay = delay;
                ::tracing::debug!(
                    target: "seawall::retry",
                    contract = %endpoint.contract,
                    method = %endpoint.method,
                    attempt = attempts,
                    ?delay,
                    "attempt failed with a retryable error; retrying"
                );
                ::tokio::time::sleep(delay).await;
            };
            Err(match failed {
                Some(failed) if max_attempts == 1 => match failed {
                    $crate::retry::stage::Failed::Vendor(error, _) => error,
                    $crate::retry::stage::Failed::Timeout(after) => ::core::convert::From::from($crate::Error::Timeout { after }),
                },
                Some(failed) => {
                    let class = failed.class();
                    ::core::convert::From::from($crate::Error::RetriesExhausted {
                        attempts,
                        class,
                        last: failed.boxed(),
                    })
                }
                // Only a call whose one attempt moves its arguments runs out of
                // attempts to make, and only once that attempt was made; it never
                // loops back.
                None => ::core::convert::From::from($crate::Error::RetriesExhausted {
                    attempts,
                    class: $crate::ErrorClass::Retryable,
                    last: "no further attempt could be made".into(),
                }),
            })
        }
    };
}
pub(crate) use run;

/// One attempt under its timeout, raced against its hedges where the call
/// may be hedged (`true`) and its endpoint has a hedger.
macro_rules! attempt {
    (false, $endpoint:ident, $trace:ident, $call:ident, $limit:ident, $timer:ident, $wrap:ident, $next_attempt:ident) => {
        $crate::timeout::within(
            $limit,
            $timer,
            &$trace.attempt,
            &mut $trace.correlation,
            $wrap($call),
        )
        .await
    };
    (true, $endpoint:ident, $trace:ident, $call:ident, $limit:ident, $timer:ident, $wrap:ident, $next_attempt:ident) => {
        match $endpoint.hedge.as_deref() {
            None => $crate::retry::stage::attempt!(
                false,
                $endpoint,
                $trace,
                $call,
                $limit,
                $timer,
                $wrap,
                $next_attempt
            ),
            // Hedged: once the attempt is late, more go in parallel, each
            // with what it needs taken at once.
            Some(hedger) => {
                $crate::hedge::race(
                    hedger,
                    $limit,
                    $timer,
                    &$trace.attempt,
                    &mut $trace.correlation,
                    $wrap($call),
                    || {
                        let place = $crate::hedge::admit($endpoint)?;
                        Some(($wrap($next_attempt()?), place))
                    },
                )
                .await
            }
        }
    };
}

pub(crate) use attempt;

#[inline]
pub(crate) fn record(permit: Option<Permit<'_>>, outcome: Outcome) {
    if let Some(permit) = permit {
        permit.record(outcome);
    }
}

pub(crate) fn record_error(permit: Option<Permit<'_>>, class: ErrorClass) {
    if let Some(permit) = permit {
        permit.record_error(class);
    }
}
