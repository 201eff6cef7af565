//! The bulkhead stage: at most `max` attempts in flight to the vendor at
//! once, `queue` more callers waiting in order, the rest refused.
//!
//! **Why.** A vendor that slows down holds every task that calls it, and
//! with them connections, memory and the threads' time: a slow vendor
//! becomes a slow service. A bulkhead bounds what one vendor can hold, so
//! the rest of the service keeps its capacity. Each attempt takes a place
//! and gives it back when it ends (answered, failed, timed out, cancelled
//! or unwound by a panic: the place is a guard); a caller with no place
//! waits in order while fewer than `queue` wait, for up to `max_wait` and
//! never past its deadline; else it is refused at once with
//! [`Error::BulkheadFull`](crate::Error::BulkheadFull), without calling the
//! vendor.
//!
//! **How.** The places are one atomic counter of attempts in flight: a
//! caller takes a place with one compare-and-swap while nobody waits, and
//! gives it back with one decrement and a read of the waiters' count. Only
//! a caller that finds no place takes the queue's lock: it counts itself a
//! waiter *before* it looks at the places once more, and a release counts
//! the places down *before* it looks at the waiters (both sequentially
//! consistent), so one of the two always sees the other — a place freed
//! while a caller joins the queue is never lost. A release that sees
//! waiters hands the free places to the queue's first callers, in the order
//! they came, under the lock; a waiter that was handed a place and is
//! cancelled before it used it gives the place back (to the next waiter).
//! New callers do not pass the queue: while anyone waits they queue too.

mod vegas;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::BulkheadPolicy;
use crate::telemetry::metrics;
use crate::tunable::Tunable;
pub(crate) use vegas::Sample;
use vegas::Vegas;

/// One method's bulkhead.
pub struct Bulkhead {
    name: std::sync::Arc<str>,
    /// Replaced in place by a reload; the places taken stay.
    policy: Tunable<BulkheadPolicy>,
    /// How many places there are (the high 32 bits) and how many are taken
    /// (the low 32: attempts in flight, and places handed to a waiter that
    /// has not woken yet), in one word so that a new limit and the count
    /// in flight are always seen together.
    places: AtomicU64,
    /// Callers in the queue, kept beside it so that the fast paths read it
    /// without the lock (a caller about to join counts too, for a moment).
    waiting: AtomicU32,
    queue: Mutex<Queue>,
    /// The adaptive limit's state (`bulkhead(adaptive)`).
    vegas: Option<Mutex<Vegas>>,
    admitted: AtomicU64,
    queued: AtomicU64,
    refused: AtomicU64,
    /// `seawall_bulkhead_waits_total`, `seawall_bulkhead_rejections_total`
    /// and `seawall_bulkhead_limit` (slow paths and limit changes only).
    metrics: Metrics,
}

/// The bulkhead's series in the metrics facade, labelled `bulkhead`.
struct Metrics {
    waits: metrics::Counter,
    rejections: metrics::Counter,
    limit: metrics::Gauge,
}

/// The callers waiting for a place, first come first.
#[derive(Default)]
struct Queue {
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    next: u64,
}

/// Why a caller got no place.
#[derive(Debug)]
pub(crate) enum Full {
    /// Every place taken and the queue full (or none).
    QueueFull,
    /// It waited `max_wait` (or what was left of its deadline).
    Waited,
}

/// A place for one attempt, given back when dropped (however the attempt
/// ended: a panic unwinds through it too).
#[must_use = "the place is given back when it is dropped"]
pub(crate) struct Place<'a> {
    bulkhead: &'a Bulkhead,
    /// For an adaptive limit: when the attempt started, with how many in
    /// flight (itself included).
    started: Option<(Instant, u32)>,
}

impl Place<'_> {
    /// The attempt ended: an adaptive limit takes its sample, and the place
    /// is given back.
    #[inline]
    pub(crate) fn ended(self, sample: Sample) {
        if let Some((started, in_flight)) = self.started {
            self.bulkhead.sample(started, in_flight, sample);
        }
    }
}

impl Drop for Place<'_> {
    #[inline]
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

impl std::fmt::Debug for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("bulkhead", &self.bulkhead.name)
            .finish()
    }
}

/// The places taken, of a `places` word.
#[inline]
const fn in_flight(places: u64) -> u32 {
    places as u32
}

/// The places there are, of a `places` word.
#[inline]
const fn limit(places: u64) -> u32 {
    (places >> 32) as u32
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Bulkhead {
    /// A bulkhead named `name` with `policy` (assumed checked).
    pub fn new(name: impl Into<std::sync::Arc<str>>, policy: &BulkheadPolicy) -> Self {
        let name = name.into();
        Self {
            name: name.clone(),
            policy: Tunable::new(policy.clone()),
            places: AtomicU64::new(u64::from(policy.initial_limit()) << 32),
            waiting: AtomicU32::new(0),
            queue: Mutex::default(),
            vegas: policy.is_adaptive().then(|| {
                Mutex::new(Vegas::new(
                    policy.initial_limit(),
                    policy.min(),
                    policy.max(),
                ))
            }),
            admitted: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            metrics: Metrics::new(&name, policy.initial_limit()),
        }
    }

    /// The bulkhead's name (`contract.method`).
    pub fn name(&self) -> &std::sync::Arc<str> {
        &self.name
    }

    /// Its policy (as of the last reload).
    pub fn policy(&self) -> &BulkheadPolicy {
        self.policy.get()
    }

    /// Applies `policy` from now on (its kind, fixed or adaptive, is the
    /// same): a fixed bulkhead gets `max` places, an adaptive one new
    /// bounds. Attempts in flight over a lowered limit finish; places a
    /// raised one frees go to the waiters.
    pub(crate) fn retune(&self, policy: &BulkheadPolicy) {
        self.policy.set(policy.clone());
        let limit = match &self.vegas {
            Some(vegas) => {
                let mut vegas = lock(vegas);
                vegas.bound(policy.min(), policy.max());
                vegas.limit()
            }
            None => policy.max(),
        };
        self.set_limit(limit);
    }

    /// A place at once, if one is free and nobody waits for one: one load
    /// and one compare-and-swap.
    #[inline]
    pub(crate) fn try_enter(&self) -> Option<Place<'_>> {
        // Waiters go first.
        if self.waiting.load(SeqCst) != 0 {
            return None;
        }
        let in_flight = self.take_place()?;
        self.admitted.fetch_add(1, Relaxed);
        Some(self.place(in_flight))
    }

    /// Counts one more attempt in flight if a place is free: how many are
    /// then.
    #[inline]
    fn take_place(&self) -> Option<u32> {
        let mut places = self.places.load(Relaxed);
        while in_flight(places) < limit(places) {
            match self
                .places
                .compare_exchange_weak(places, places + 1, SeqCst, Relaxed)
            {
                Ok(_) => return Some(in_flight(places) + 1),
                Err(now) => places = now,
            }
        }
        None
    }

    /// The guard of a place taken, started now for an adaptive limit.
    #[inline]
    fn place(&self, in_flight: u32) -> Place<'_> {
        let started = self.vegas.as_ref().map(|_| (Instant::now(), in_flight));
        Place {
            bulkhead: self,
            started,
        }
    }

    /// An adaptive limit's sample: the limit it gives is the places'.
    #[cold]
    fn sample(&self, started: Instant, in_flight: u32, sample: Sample) {
        let Some(vegas) = &self.vegas else {
            return;
        };
        let rtt = started.elapsed();
        // The algorithm's few numbers change together; a short section of
        // arithmetic, taken only by an adaptive bulkhead's attempts.
        let limit = lock(vegas).sample(started, rtt, in_flight, sample);
        self.set_limit(limit);
    }

    /// A new limit, in the same word as the places taken: attempts in
    /// flight over a lowered limit finish, new ones wait; places a raised
    /// limit frees go to the waiters.
    fn set_limit(&self, new: u32) {
        let old = self.places.fetch_update(SeqCst, SeqCst, |places| {
            (limit(places) != new).then_some(u64::from(new) << 32 | u64::from(in_flight(places)))
        });
        if old.is_ok() {
            self.metrics.limit.set(f64::from(new));
        }
        if let Ok(old) = old
            && new > limit(old)
            && self.waiting.load(SeqCst) != 0
        {
            self.hand_on();
        }
    }

    /// Gives a place back: one decrement, and the queue served only if
    /// someone waits.
    #[inline]
    fn release(&self) {
        self.places.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) != 0 {
            self.hand_on();
        }
    }

    /// Hands the free places to the first waiters, in order.
    #[cold]
    fn hand_on(&self) {
        // The lock orders hand-overs against callers joining and leaving
        // the queue: a waiter is handed a place or leaves, never both.
        let mut queue = lock(&self.queue);
        while !queue.waiters.is_empty() && self.take_place().is_some() {
            let Some((_, waiter)) = queue.waiters.pop_front() else {
                break;
            };
            self.waiting.fetch_sub(1, SeqCst);
            // A waiter leaves the queue (under this lock) before it drops
            // its receiver, so this send reaches it; if it did not, the
            // place would go back.
            if waiter.send(()).is_err() {
                self.places.fetch_sub(1, SeqCst);
            }
        }
    }

    /// The slow path: joins the queue if it has room, and waits for a
    /// place up to `max_wait` and the deadline.
    #[cold]
    pub(crate) async fn wait(&self, deadline: Option<Instant>) -> Result<Place<'_>, Full> {
        let max_wait = self.policy().max_wait();
        let now = Instant::now();
        let until = deadline.map_or(now + max_wait, |at| at.min(now + max_wait));
        let (id, handed) = {
            // The queue's lock, taken only by callers that found no place.
            let mut queue = lock(&self.queue);
            // Counted before it looks at the places again: a release that
            // counted a place down before this sees it and serves the queue;
            // one that counted down after is seen here.
            self.waiting.fetch_add(1, SeqCst);
            if queue.waiters.is_empty()
                && let Some(in_flight) = self.take_place()
            {
                self.waiting.fetch_sub(1, SeqCst);
                self.admitted.fetch_add(1, Relaxed);
                return Ok(self.place(in_flight));
            }
            if queue.waiters.len() >= self.policy().queue() as usize || until <= now {
                self.waiting.fetch_sub(1, SeqCst);
                self.refused.fetch_add(1, Relaxed);
                self.metrics.rejections.increment(1);
                return Err(Full::QueueFull);
            }
            let id = queue.next;
            queue.next += 1;
            let (hand, handed) = oneshot::channel();
            queue.waiters.push_back((id, hand));
            (id, handed)
        };
        self.queued.fetch_add(1, Relaxed);
        self.metrics.waits.increment(1);
        tracing::debug!(
            target: "seawall::bulkhead",
            bulkhead = %self.name,
            wait_ms = until.saturating_duration_since(now).as_secs_f64() * 1000.0,
            "every place taken; waiting for one"
        );
        // Leaves the queue however the wait ends (a cancelled caller too).
        let mut waiter = Waiter {
            bulkhead: self,
            id,
            handed,
            settled: false,
        };
        let handed = match tokio::time::timeout_at(until, &mut waiter.handed).await {
            Ok(answer) => answer.is_ok(),
            // Handed a place in the same instant its wait ended: it takes it.
            Err(_) => waiter.leave(),
        };
        waiter.settled = true;
        if handed {
            self.admitted.fetch_add(1, Relaxed);
            Ok(self.place(in_flight(self.places.load(Relaxed))))
        } else {
            self.refused.fetch_add(1, Relaxed);
            self.metrics.rejections.increment(1);
            Err(Full::Waited)
        }
    }

    /// The bulkhead as it is now.
    pub fn status(&self) -> BulkheadStatus {
        let places = self.places.load(Relaxed);
        BulkheadStatus {
            name: self.name.to_string(),
            max: self.policy().max(),
            adaptive: self.policy().is_adaptive(),
            limit: limit(places),
            min_rtt: self.vegas.as_ref().and_then(|vegas| lock(vegas).no_load()),
            queue: self.policy().queue(),
            in_flight: u64::from(in_flight(places)),
            waiting: u64::from(self.waiting.load(Relaxed)),
            admitted: self.admitted.load(Relaxed),
            queued: self.queued.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

impl Metrics {
    fn new(name: &std::sync::Arc<str>, limit: u32) -> Self {
        let label = name.to_string();
        let metrics = Self {
            waits: metrics::counter!("seawall_bulkhead_waits_total", "bulkhead" => label.clone()),
            rejections: metrics::counter!(
                "seawall_bulkhead_rejections_total",
                "bulkhead" => label.clone()
            ),
            limit: metrics::gauge!("seawall_bulkhead_limit", "bulkhead" => label),
        };
        metrics.limit.set(f64::from(limit));
        metrics
    }
}

/// A caller in the queue.
struct Waiter<'a> {
    bulkhead: &'a Bulkhead,
    id: u64,
    handed: oneshot::Receiver<()>,
    /// Its wait ended and its place (if handed one) is accounted for.
    settled: bool,
}

impl Waiter<'_> {
    /// Leaves the queue, unless it was handed a place: whether it was.
    fn leave(&mut self) -> bool {
        let mut queue = lock(&self.bulkhead.queue);
        if self.handed.try_recv().is_ok() {
            return true;
        }
        if let Some(at) = queue.waiters.iter().position(|(id, _)| *id == self.id) {
            queue.waiters.remove(at);
            self.bulkhead.waiting.fetch_sub(1, SeqCst);
        }
        false
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        // Cancelled while it waited: it leaves the queue, and a place it was
        // handed goes on to the next waiter.
        if !self.settled && self.leave() {
            self.bulkhead.release();
        }
    }
}

impl std::fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("policy", self.policy())
            .finish_non_exhaustive()
    }
}

/// A bulkhead's state and counts ([`Runtime::health`](crate::Runtime::health)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BulkheadStatus {
    /// The bulkhead's name (`contract.method`).
    pub name: String,
    /// Places: attempts in flight at most (an adaptive limit's ceiling).
    pub max: u32,
    /// Whether the limit adapts to the vendor's latency.
    pub adaptive: bool,
    /// The places now: `max` for a fixed bulkhead, the adaptive limit's
    /// value for an adaptive one.
    pub limit: u32,
    /// An adaptive limit's view of the vendor: its latency unloaded (the
    /// lowest seen since its last probe); `None` for a fixed bulkhead, or
    /// before a first answer.
    pub min_rtt: Option<Duration>,
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
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    impl Bulkhead {
        /// A place at once, else waited for (as the retry stage does).
        async fn enter(&self, deadline: Option<Instant>) -> Result<Place<'_>, Full> {
            match self.try_enter() {
                Some(place) => Ok(place),
                None => self.wait(deadline).await,
            }
        }
    }

    fn counts(bulkhead: &Bulkhead) -> (u64, u64, u64, u64, u64) {
        let status = bulkhead.status();
        (
            status.in_flight,
            status.waiting,
            status.admitted,
            status.queued,
            status.refused,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn places_are_taken_and_given_back_and_the_queue_is_bounded() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(1));
        let first = bulkhead.enter(None).await.unwrap();
        assert_eq!(bulkhead.status().in_flight, 1);
        // The second waits; the third finds the queue full.
        let second = bulkhead.enter(None);
        tokio::pin!(second);
        assert!(futures_poll(&mut second).is_none());
        assert!(matches!(bulkhead.enter(None).await, Err(Full::QueueFull)));
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(bulkhead.status().in_flight, 1);
        drop(second);
        assert_eq!(counts(&bulkhead), (0, 0, 2, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_caller_does_not_pass_the_queue() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(2));
        let first = bulkhead.enter(None).await.unwrap();
        let second = bulkhead.enter(None);
        tokio::pin!(second);
        assert!(futures_poll(&mut second).is_none());
        drop(first);
        // The place was handed to the waiter: a newcomer finds none.
        assert!(bulkhead.try_enter().is_none());
        let third = bulkhead.enter(None);
        tokio::pin!(third);
        assert!(futures_poll(&mut third).is_none());
        let second = second.await.unwrap();
        drop(second);
        drop(third.await.unwrap());
        assert_eq!(counts(&bulkhead), (0, 0, 3, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue_and_the_next_one_is_served() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(2));
        let first = bulkhead.enter(None).await.unwrap();
        let mut second = Box::pin(bulkhead.enter(None));
        assert!(futures_poll(&mut second).is_none());
        let third = bulkhead.enter(None);
        tokio::pin!(third);
        assert!(futures_poll(&mut third).is_none());
        assert_eq!(bulkhead.status().waiting, 2);
        // Its caller gives up.
        drop(second);
        assert_eq!(bulkhead.status().waiting, 1);
        drop(first);
        drop(third.await.unwrap());
        assert_eq!(counts(&bulkhead), (0, 0, 2, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_handed_a_place_then_cancelled_passes_it_on() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(2));
        let first = bulkhead.enter(None).await.unwrap();
        let mut second = Box::pin(bulkhead.enter(None));
        assert!(futures_poll(&mut second).is_none());
        let third = bulkhead.enter(None);
        tokio::pin!(third);
        assert!(futures_poll(&mut third).is_none());
        // The place goes to the second, which is cancelled before it runs.
        drop(first);
        assert_eq!(
            (bulkhead.status().in_flight, bulkhead.status().waiting),
            (1, 1)
        );
        drop(second);
        // The third gets it, at once.
        let third = futures_poll(&mut third).expect("handed on").unwrap();
        assert_eq!(bulkhead.status().in_flight, 1);
        drop(third);
        assert_eq!(bulkhead.status().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_deadline_when_it_is_nearer_than_max_wait() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::new(1).with_queue(1));
        let _first = bulkhead.enter(None).await.unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        assert!(matches!(
            bulkhead.enter(Some(deadline)).await,
            Err(Full::Waited)
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        // A deadline already past: refused at once, not queued.
        assert!(matches!(
            bulkhead.enter(Some(started)).await,
            Err(Full::QueueFull)
        ));
        assert_eq!(counts(&bulkhead), (1, 0, 1, 1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lowered_limit_lets_attempts_in_flight_finish_and_new_ones_wait() {
        let bulkhead = Bulkhead::new("t", &BulkheadPolicy::adaptive().with_max(10).with_queue(5));
        assert_eq!(bulkhead.status().limit, 10, "20 at most max");
        let mut places: Vec<_> = (0..4).map(|_| bulkhead.try_enter().unwrap()).collect();
        bulkhead.set_limit(2);
        let status = bulkhead.status();
        assert_eq!((status.in_flight, status.limit), (4, 2));
        let waiter = bulkhead.enter(None);
        tokio::pin!(waiter);
        assert!(futures_poll(&mut waiter).is_none());
        // Two finish: still two in flight, the waiter waits.
        places.truncate(2);
        assert!(futures_poll(&mut waiter).is_none());
        places.truncate(1);
        let handed = futures_poll(&mut waiter).expect("a place under the limit");
        assert_eq!(bulkhead.status().in_flight, 2);
        // A raised limit serves the queue at once.
        let next = bulkhead.enter(None);
        tokio::pin!(next);
        assert!(futures_poll(&mut next).is_none());
        bulkhead.set_limit(3);
        assert!(futures_poll(&mut next).is_some_and(|place| place.is_ok()));
        drop((places, handed));
        assert_eq!(bulkhead.status().in_flight, 0);
    }

    /// Many tasks on several threads take and give back places in every
    /// interleaving the scheduler makes: never more than `max` at once, and
    /// every caller served (no place lost, no waiter forgotten).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_callers_never_exceed_max_and_all_finish() {
        const MAX: u32 = 3;
        let bulkhead = Arc::new(Bulkhead::new(
            "t",
            &BulkheadPolicy::new(MAX)
                .with_queue(64)
                .with_max_wait(Duration::from_secs(3600)),
        ));
        let inside = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let (bulkhead, inside, most) = (bulkhead.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    for round in 0..200u32 {
                        let place = bulkhead.enter(None).await.expect("a place within the hour");
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        if (task + round) % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                        inside.fetch_sub(1, SeqCst);
                        drop(place);
                        // Some callers give up while they wait.
                        if (task + round) % 7 == 0 {
                            let mut waiting = Box::pin(bulkhead.enter(None));
                            let _ = futures_poll(&mut waiting);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("every caller finishes")
                .unwrap();
        }
        assert!(most.load(SeqCst) <= MAX, "{} in flight", most.load(SeqCst));
        let status = bulkhead.status();
        assert_eq!((status.in_flight, status.waiting), (0, 0));
        assert_eq!(status.refused, 0);
    }

    /// Two callers on two threads take turns at one place, many times: a
    /// place freed while the other joins the queue is never lost (else both
    /// would wait for ever, nobody in flight).
    #[test]
    fn a_place_freed_while_a_caller_joins_the_queue_is_not_lost() {
        const ROUNDS: u64 = 100_000;
        let bulkhead = Bulkhead::new(
            "t",
            &BulkheadPolicy::new(1)
                .with_queue(2)
                .with_max_wait(Duration::from_secs(3600)),
        );
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    // A runtime per thread: the two callers run in parallel.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    start.wait();
                    runtime.block_on(async {
                        tokio::time::timeout(Duration::from_secs(60), async {
                            for _ in 0..ROUNDS {
                                let place = bulkhead.enter(None).await;
                                // Held a moment: the other finds no place.
                                for _ in 0..20 {
                                    std::hint::spin_loop();
                                }
                                drop(place.expect("a place within the hour"));
                                for _ in 0..20 {
                                    std::hint::spin_loop();
                                }
                            }
                        })
                        .await
                        .expect("no caller waits for ever");
                    });
                });
            }
        });
        let status = bulkhead.status();
        assert_eq!(
            (status.in_flight, status.waiting, status.admitted),
            (0, 0, 2 * ROUNDS)
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
