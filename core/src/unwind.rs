//! A panic out of an adapter's future is a bug in the adapter for that
//! input, not an outage: the pipeline records it as a vendor fault and the
//! drain turns the write into a dead letter. Both need the panic caught at
//! the future's poll, which is what [`CatchUnwind`] does.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The payload of a caught panic.
pub(crate) type Panic = Box<dyn Any + Send>;

pin_project_lite::pin_project! {
    /// A future that answers `Err(payload)` when polling the inner future
    /// panics. (The inner future is not polled again after that.)
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        // Unwind safety: after a panic the future is never polled again,
        // and the caller only reads the payload.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// What a panic said: its message when it was a string, else a placeholder.
pub(crate) fn message(panic: &Panic) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a payload that is not a string".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_future_answers_its_payload() {
        let caught = CatchUnwind::new(async { panic!("bad answer {}", 7) }).await;
        let panic: Panic = match caught {
            Err(panic) => panic,
            Ok(()) => unreachable!("the future panicked"),
        };
        assert_eq!(message(&panic), "bad answer 7");
        let fine = CatchUnwind::new(async { 3 }).await;
        assert!(matches!(fine, Ok(3)));
    }
}
