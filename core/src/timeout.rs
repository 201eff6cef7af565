//! The attempt timeout: the innermost stage, around the adapter's future.
//!
//! **Why a timeout of our own and not `tokio::time::timeout`.** Most
//! attempts against a warm connection pool, a fake or a cache answer on
//! their first poll; tokio's `Timeout` reads the clock and builds its timer
//! before that poll. [`within`] polls the attempt first and arms the timer
//! only when the attempt has to wait, for the limit less what the first
//! poll took, so the success path pays no clock read and no timer.
//!
//! It keeps tokio's guarantee for futures that use up the task's
//! cooperative budget (a loop over a channel that is always ready, say):
//! its timer is polled outside the budget, so it still fires when the
//! attempt has exhausted it, as tokio's own `Timeout` does. The test
//! `a_timeout_fires_when_the_attempt_has_used_up_the_task_budget` pins it.
//!
//! Each poll runs in the call's `tracing` span and correlation scope, and a
//! panic of the adapter is caught as an outcome (recorded by the retry
//! stage, then raised again as it was).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::coop::Unconstrained;
use tokio::time::Sleep;

/// How one attempt ended.
pub(crate) enum Attempt<T> {
    /// The adapter answered (success or error).
    Answered(T),
    /// The limit passed first.
    TimedOut,
    /// The adapter panicked; the payload is raised again once the panic is
    /// recorded.
    Panicked(crate::unwind::Panic),
}

/// Runs `attempt` under `limit`, counted from `started` (a raw reading of
/// [`telemetry::clock`](crate::telemetry::clock)); each poll in `span` and
/// in the correlation scope `correlation` (updated if an id is made during
/// a poll): the call's own (`&mut u128`), or a copy for a hedge.
pub(crate) fn within<'a, F: Future, C: std::borrow::BorrowMut<u128>>(
    limit: Duration,
    started: u64,
    span: &'a tracing::Span,
    correlation: C,
    attempt: F,
) -> Within<'a, F, C> {
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
    /// The future of [`within`].
    pub(crate) struct Within<'a, F, C = &'a mut u128> {
        #[pin]
        attempt: F,
        #[pin]
        timer: Option<Unconstrained<Sleep>>,
        limit: Duration,
        started: u64,
        span: &'a tracing::Span,
        correlation: C,
    }
}

impl<F: Future, C: std::borrow::BorrowMut<u128>> Future for Within<'_, F, C> {
    type Output = Attempt<F::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _in_call = this.span.enter();
        let attempt = this.attempt;
        // Unwinding is caught here only to be recorded; the retry stage
        // raises it again. (No cost while nothing panics.)
        let (answer, correlation) =
            crate::telemetry::polled_in_correlation(*this.correlation.borrow(), || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt.poll(cx)))
            });
        *this.correlation.borrow_mut() = correlation;
        match answer {
            Ok(Poll::Ready(answer)) => return Poll::Ready(Attempt::Answered(answer)),
            Err(panic) => return Poll::Ready(Attempt::Panicked(panic)),
            Ok(Poll::Pending) => {}
        }
        if this.timer.is_none() {
            let clock = crate::telemetry::clock();
            let spent = clock.delta_as_nanos(*this.started, clock.raw()) / 1_000_000;
            let spent = Duration::from_millis(spent);
            // Outside the cooperative budget: an attempt that used it up
            // must not keep its own timeout from firing.
            this.timer
                .set(Some(tokio::task::coop::unconstrained(tokio::time::sleep(
                    this.limit.saturating_sub(spent),
                ))));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Attempt::TimedOut),
            _ => Poll::Pending,
        }
    }
}

/// The call's deadline: the limit on the whole call, every stage and
/// attempt and backoff included, counted from the call's start. The clock
/// is read only when the policy has a limit that needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    /// When the call started, if a limit needs it.
    pub(crate) started: Option<tokio::time::Instant>,
    /// When the deadline passes, if the policy has one.
    pub(crate) at: Option<tokio::time::Instant>,
}

impl Deadline {
    /// Starts the clock for a call under `policy`.
    #[inline]
    pub(crate) fn start(policy: &crate::Policy) -> Self {
        let started = (policy.deadline().is_some() || policy.retry().max_elapsed().is_some())
            .then(tokio::time::Instant::now);
        Self {
            started,
            at: started
                .zip(policy.deadline())
                .map(|(started, deadline)| started + deadline),
        }
    }

    /// The limit of an attempt starting now: `timeout`, or what is left of
    /// the deadline when that is shorter (then `true`).
    #[inline]
    pub(crate) fn attempt_limit(&self, timeout: Duration) -> (Duration, bool) {
        match self.at {
            Some(at) => {
                let left = at.saturating_duration_since(tokio::time::Instant::now());
                (left.min(timeout), left < timeout)
            }
            None => (timeout, false),
        }
    }
}

/// Whether an answer that took `elapsed_nanos` under `limit` came far past
/// it: the timer never had the thread (a blocking adapter). Half as long
/// again leaves room for a busy scheduler.
pub(crate) fn overran(elapsed_nanos: u64, limit: Duration) -> bool {
    let limit_nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    elapsed_nanos > limit_nanos.saturating_add(limit_nanos / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run<F: Future>(limit: Duration, attempt: F) -> Attempt<F::Output> {
        let span = tracing::Span::none();
        let mut correlation = 0;
        let started = crate::telemetry::clock().raw();
        within(limit, started, &span, &mut correlation, attempt).await
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_on_the_first_poll_is_answered() {
        assert!(matches!(
            run(Duration::from_secs(1), async { 7 }).await,
            Attempt::Answered(7)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_waits_past_its_limit_times_out() {
        let attempt = tokio::time::sleep(Duration::from_secs(5));
        assert!(matches!(
            run(Duration::from_secs(1), attempt).await,
            Attempt::TimedOut
        ));
    }

    /// A future that is never ready and spends the task's whole cooperative
    /// budget on every poll (as a loop over an always-ready channel does).
    /// With a timer polled inside the budget, it would never time out.
    // On the real clock: the paused clock only advances while the runtime
    // is idle, and this task never lets it be. Bounded by the 10 s guard.
    #[tokio::test(flavor = "current_thread")]
    async fn a_timeout_fires_when_the_attempt_has_used_up_the_task_budget() {
        let spender = async {
            loop {
                tokio::task::coop::consume_budget().await;
            }
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            run(Duration::from_millis(20), spender),
        )
        .await;
        assert!(
            matches!(outcome, Ok(Attempt::TimedOut)),
            "the attempt's own 20 ms timeout must fire, not the test's 10 s guard"
        );
    }

    #[test]
    fn overran_means_half_as_long_again() {
        let limit = Duration::from_millis(100);
        assert!(!overran(150_000_000, limit));
        assert!(overran(150_000_001, limit));
        assert!(!overran(u64::MAX, Duration::MAX));
    }
}
