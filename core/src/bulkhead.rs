//! The bulkhead stage: at most `max` attempts in flight to the vendor at
//! once, `queue` more callers waiting in order, the rest refused.
//!
//! **Why.** A vendor that slows down holds every task that calls it, and
//! with them connections, memory and the threads' time: a slow vendor
//! becomes a slow service. A bulkhead bounds what one vendor can hold, so
//! the rest of the service keeps its capacity. Each attempt takes a place
//! and gives it back when it ends (answered, failed, timed out, cancelled
//! or unwound by a panic: the place is a guard); a caller with no place
//! waits in order (tokio's semaphore is fair) while fewer than `queue`
//! wait, for up to `max_wait` and never past its deadline; else it is
//! refused at once with [`Error::BulkheadFull`](crate::Error::BulkheadFull),
//! without calling the vendor.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::BulkheadPolicy;

/// One method's bulkhead.
pub struct Bulkhead {
    name: std::sync::Arc<str>,
    policy: BulkheadPolicy,
    places: Semaphore,
    waiting: AtomicUsize,
    admitted: AtomicU64,
    queued: AtomicU64,
    refused: AtomicU64,
}

/// An attempt's place, given back when dropped.
pub(crate) type Place<'a> = SemaphorePermit<'a>;

/// Why a caller got no place.
#[derive(Debug)]
pub(crate) enum Full {
    /// Every place taken and the queue full (or none).
    QueueFull,
    /// It waited `max_wait` (or what was left of its deadline).
    Waited,
}

impl Bulkhead {
    /// A bulkhead named `name` with `policy` (assumed checked).
    pub fn new(name: impl Into<std::sync::Arc<str>>, policy: &BulkheadPolicy) -> Self {
        Self {
            name: name.into(),
            policy: policy.clone(),
            places: Semaphore::new(policy.max() as usize),
            waiting: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The bulkhead's name (`contract.method`).
    pub fn name(&self) -> &std::sync::Arc<str> {
        &self.name
    }

    /// Its policy.
    pub fn policy(&self) -> &BulkheadPolicy {
        &self.policy
    }

    /// A place for one attempt if one is free now (a hedge's: it never
    /// waits, and is not counted as refused when there is none).
    pub(crate) fn try_enter(&self) -> Option<Place<'_>> {
        let place = self.places.try_acquire().ok()?;
        self.admitted.fetch_add(1, Relaxed);
        Some(place)
    }

    /// A place for one attempt, waiting for one at most `max_wait` (the
    /// policy's, or less when the deadline is nearer).
    pub(crate) async fn enter(&self, max_wait: Duration) -> Result<SemaphorePermit<'_>, Full> {
        if let Ok(place) = self.places.try_acquire() {
            self.admitted.fetch_add(1, Relaxed);
            return Ok(place);
        }
        self.wait(max_wait).await
    }

    #[cold]
    async fn wait(&self, max_wait: Duration) -> Result<SemaphorePermit<'_>, Full> {
        // A place in the queue, if one is free.
        let queue = self.policy.queue() as usize;
        let joined = self
            .waiting
            .fetch_update(Relaxed, Relaxed, |waiting| {
                (waiting < queue).then_some(waiting + 1)
            })
            .is_ok();
        if !joined || max_wait.is_zero() {
            if joined {
                self.waiting.fetch_sub(1, Relaxed);
            }
            self.refused.fetch_add(1, Relaxed);
            return Err(Full::QueueFull);
        }
        self.queued.fetch_add(1, Relaxed);
        // Leaves the queue however the wait ends (a cancelled caller too).
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        let _leave = Leave(&self.waiting);
        match tokio::time::timeout(max_wait, self.places.acquire()).await {
            Ok(Ok(place)) => {
                self.admitted.fetch_add(1, Relaxed);
                Ok(place)
            }
            // The semaphore is never closed; a timeout is the only way out.
            Ok(Err(_)) | Err(_) => {
                self.refused.fetch_add(1, Relaxed);
                Err(Full::Waited)
            }
        }
    }

    /// The bulkhead as it is now.
    pub fn status(&self) -> BulkheadStatus {
        let max = self.policy.max();
        BulkheadStatus {
            name: self.name.to_string(),
            max,
            queue: self.policy.queue(),
            in_flight: u64::from(max).saturating_sub(self.places.available_permits() as u64),
            waiting: self.waiting.load(Relaxed) as u64,
            admitted: self.admitted.load(Relaxed),
            queued: self.queued.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A bulkhead's state and counts ([`Runtime::health`](crate::Runtime::health)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BulkheadStatus {
    /// The bulkhead's name (`contract.method`).
    pub name: String,
    /// Places: attempts in flight at most.
    pub max: u32,
    /// Callers that may wait for a place.
    pub queue: u32,
    /// Attempts in flight now.
    pub in_flight: u64,
    /// Callers waiting now.
    pub waiting: u64,
    /// Attempts let through.
    pub admitted: u64,
    /// Callers that had to wait (and then got a place or not).
    pub queued: u64,
    /// Callers refused: the queue full, or no place within their wait.
    pub refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn places_are_taken_and_given_back_and_the_queue_is_bounded() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(1));
        let first = bulkhead.enter(Duration::from_secs(1)).await.unwrap();
        assert_eq!(bulkhead.status().in_flight, 1);
        // The second waits; the third finds the queue full.
        let second = bulkhead.enter(Duration::from_secs(1));
        tokio::pin!(second);
        assert!(futures_poll(&mut second).is_none());
        assert!(matches!(
            bulkhead.enter(Duration::from_secs(1)).await,
            Err(Full::QueueFull)
        ));
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(bulkhead.status().in_flight, 1);
        drop(second);
        let status = bulkhead.status();
        assert_eq!(
            (
                status.in_flight,
                status.waiting,
                status.admitted,
                status.queued,
                status.refused
            ),
            (0, 0, 2, 1, 1)
        );
    }

    /// Polls `future` once.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}
