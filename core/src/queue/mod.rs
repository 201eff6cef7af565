//! Queued writes: `fallback = queue`, [`Delivery`], and the drain that
//! delivers what was queued once the vendor is back.
//!
//! A write whose policy says `fallback = queue` (it must be `idempotent`)
//! runs through its pipeline as usual. When it cannot be delivered — its
//! final error is retryable or a vendor fault: an open breaker, a timeout,
//! exhausted retries or budget, a `503` — it is appended to the runtime's
//! [write-ahead log](crate::wal) with its serialized arguments and its
//! idempotency key, and the caller gets [`Delivery::Queued`] with a
//! [`Ticket`] once the append is durable. A permanent error (`400`, `422`)
//! is the vendor's real answer and goes back to the caller.
//!
//! **Order.** Writes of one contract are delivered in the order they
//! entered the log (FIFO per contract). While a contract has writes
//! queued, its new queued writes do not overtake them: they are appended
//! behind them without calling the vendor. Writes of different contracts
//! are not ordered against each other.
//!
//! **The drain.** One task per contract re-issues the pending writes, oldest
//! first, each through its method's pipeline (timeout, retries, breaker)
//! with its original idempotency key. It starts when a write is queued, when
//! a wrapper first serves a contract that has writes left from an earlier
//! process, and it is woken when a breaker closes. A retryable failure stops
//! it at that write (head of line: order is kept) until the breaker lets
//! calls through again (`retry_in`), or after a backoff of 1 s doubling to
//! 60 s. A permanent failure, arguments that can no longer be read, or a
//! panic in the adapter (a bug for that input, not an outage; the dead
//! letter carries the panic's message) make the write a
//! [dead letter](crate::wal::DeadLetter) and the drain goes on.
//! Each settled write is reported as an [`Event`] and by
//! [`WriteAheadLog::settled`].
//!
//! **Delivery guarantee.** At least once to the vendor and exactly once by
//! idempotency key: a process killed between the vendor's answer and the
//! settle re-sends the write with the same key on restart, which a vendor
//! (or the idempotency store) that honours keys turns into one effect.

pub(crate) mod stage;
pub(crate) mod transaction;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::event::{DeadLettered, Delivered, Queued, Subscribers};
use crate::seal::Sealing;
use crate::telemetry::metrics;
use crate::unwind::{self, CatchUnwind};
use crate::wal::{QueuedWrite, Ticket, TicketStatus, WriteAheadLog, now_ms};
use crate::{ErrorClass, Event, StoreError};

/// The answer of a write with `fallback = queue`: delivered now, or queued
/// durably for delivery when the vendor recovers.
///
/// Adapters always deliver: they answer `Ok(value.into())`
/// (`Delivery::Done`). Only the wrapper answers `Queued`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery<T> {
    /// The vendor took the write; its answer.
    Done(T),
    /// The vendor could not take it now; it is in the write-ahead log and
    /// will be delivered in order. The ticket's status says when.
    Queued(Ticket),
}

impl<T> Delivery<T> {
    /// Whether the write reached the vendor.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }

    /// Whether the write was queued.
    pub fn is_queued(&self) -> bool {
        matches!(self, Self::Queued(_))
    }

    /// The vendor's answer, if delivered now.
    pub fn done(&self) -> Option<&T> {
        match self {
            Self::Done(value) => Some(value),
            Self::Queued(_) => None,
        }
    }

    /// The vendor's answer, owned, if delivered now.
    pub fn into_done(self) -> Option<T> {
        match self {
            Self::Done(value) => Some(value),
            Self::Queued(_) => None,
        }
    }

    /// The ticket, if queued.
    pub fn ticket(&self) -> Option<Ticket> {
        match self {
            Self::Done(_) => None,
            Self::Queued(ticket) => Some(*ticket),
        }
    }
}

impl<T> From<T> for Delivery<T> {
    fn from(value: T) -> Self {
        Self::Done(value)
    }
}

/// A boxed, sendable future.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How re-issuing one queued write ended.
#[doc(hidden)]
#[derive(Debug)]
pub enum Replayed {
    /// The vendor took it; its answer, serialized.
    Delivered(serde_json::Value),
    /// The pipeline failed.
    Failed {
        /// The final error's class.
        class: ErrorClass,
        /// The final error.
        error: String,
        /// When the vendor (or the breaker) will take calls again, if known.
        retry_in: Option<Duration>,
    },
    /// The stored write cannot be turned back into a call (an unknown
    /// method, or arguments of another shape).
    Undecodable(String),
}

/// What re-issues a contract's queued writes: generated by `#[contract]`,
/// holding its wrapper weakly.
#[doc(hidden)]
pub trait Drainer: Send + Sync + 'static {
    /// Re-issues `write`; `None` once the wrapper is gone.
    fn replay(&self, write: QueuedWrite) -> Option<BoxFuture<'static, Replayed>>;
}

/// How many pending writes the drain reads at once.
const BATCH: usize = 32;
/// The drain's backoff after a failure that does not say when to retry.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// How long the drain leaves a vendor alone after a write was queued
/// because it failed, when the failure does not say.
pub(crate) const FIRST_WAIT: Duration = BACKOFF_BASE;
const BACKOFF_CAP: Duration = Duration::from_secs(60);

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_CAP)
}

/// One contract's share of the log: its pending count, its drain, and the
/// wrappers that can deliver its writes.
pub(crate) struct ContractQueue {
    contract: Arc<str>,
    pending: Arc<AtomicU64>,
    /// Pending writes per ordering key, once known: `None` while writes
    /// queued before this process (not counted by key) may be pending,
    /// until the drain has found the log empty.
    lanes: Mutex<Option<HashMap<String, u64>>>,
    draining: AtomicBool,
    wake: Notify,
    /// A write was appended while the drain runs: it may start a lane.
    arrived: Notify,
    drainers: Mutex<Vec<Arc<dyn Drainer>>>,
    // Weak, so a drain waiting out an outage does not keep the database
    // open after the runtime is dropped.
    wal: Weak<WriteAheadLog>,
    subscribers: Arc<Subscribers>,
    /// `seawall_queue_depth{contract}`.
    depth: metrics::Gauge,
    /// How redacted arguments are kept at rest.
    sealing: Arc<Sealing>,
}

impl ContractQueue {
    pub(crate) fn new(
        contract: Arc<str>,
        wal: &Arc<WriteAheadLog>,
        subscribers: Arc<Subscribers>,
        sealing: Arc<Sealing>,
    ) -> Self {
        let depth = metrics::gauge!("seawall_queue_depth", "contract" => contract.to_string());
        let pending = wal.counter(&contract);
        depth.set(pending.load(Ordering::Acquire) as f64);
        let known = pending.load(Ordering::Acquire) == 0;
        Self {
            lanes: Mutex::new(known.then(HashMap::new)),
            pending,
            depth,
            contract,
            draining: AtomicBool::new(false),
            wake: Notify::new(),
            arrived: Notify::new(),
            drainers: Mutex::default(),
            wal: Arc::downgrade(wal),
            subscribers,
            sealing,
        }
    }

    /// Whether a wrapper ever offered to deliver this contract's writes.
    #[cfg(feature = "embedded")]
    pub(crate) fn has_drainers(&self) -> bool {
        !self.drainers().is_empty()
    }

    /// Why a write with these redacted arguments cannot be queued here
    /// (a durable log and no sealing key), if it cannot.
    pub(crate) fn refusal(&self, redacted: &[String]) -> Option<String> {
        let durable = self.wal.upgrade().is_some_and(|wal| wal.is_durable());
        self.sealing.refusal(redacted, durable)
    }

    /// The schema of the PostgreSQL outbox the contract's writes go to, if
    /// the runtime has one.
    pub(crate) fn outbox_schema(&self) -> Option<String> {
        self.wal.upgrade()?.outbox_schema()
    }

    /// `write` with its redacted arguments sealed, as it is kept at rest.
    pub(crate) fn sealed(&self, mut write: QueuedWrite) -> Result<QueuedWrite, StoreError> {
        self.sealing.seal(&mut write).map_err(StoreError::Record)?;
        Ok(write)
    }

    /// How many of the contract's writes are waiting.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, u64>>> {
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether writes are waiting that a new one with `order_key` must
    /// queue behind: writes of the same key; without a key, any write of
    /// the contract. While the counts by key are not known (writes left by
    /// an earlier process), any write of the contract.
    pub(crate) fn waiting_ahead(&self, order_key: Option<&str>) -> bool {
        if self.pending() == 0 {
            return false;
        }
        // Other processes' writes are counted, but not by key.
        if self.wal.upgrade().is_some_and(|wal| wal.is_shared()) {
            return true;
        }
        match (order_key, &*self.lanes()) {
            (Some(key), Some(lanes)) => lanes.get(key).is_some_and(|&n| n > 0),
            _ => true,
        }
    }

    fn lane_queued(&self, order_key: Option<&str>) {
        if let (Some(key), Some(lanes)) = (order_key, &mut *self.lanes()) {
            *lanes.entry(key.to_owned()).or_default() += 1;
        }
    }

    fn lane_settled(&self, order_key: Option<&str>) {
        if let (Some(key), Some(lanes)) = (order_key, &mut *self.lanes())
            && let Some(count) = lanes.get_mut(key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                lanes.remove(key);
            }
        }
    }

    /// The drain found nothing pending: from now on every write is counted
    /// by its key.
    fn lanes_known(&self) {
        let mut lanes = self.lanes();
        if lanes.is_none() && self.pending() == 0 {
            *lanes = Some(HashMap::new());
        }
    }

    /// Adds a wrapper that can deliver this contract's writes, and starts a
    /// drain if writes are waiting (left by an earlier process, say).
    pub(crate) fn register(self: &Arc<Self>, drainer: Arc<dyn Drainer>) {
        self.drainers().push(drainer);
        // A shared log may hold other processes' writes, uncounted here.
        if self.pending() > 0 || self.wal.upgrade().is_some_and(|wal| wal.is_shared()) {
            self.nudge(Duration::ZERO);
        }
    }

    /// Wakes a drain that is waiting out a failure (a breaker closed). Only
    /// a drain waiting now: no permit is stored, so a later wait is kept.
    pub(crate) fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Appends a write to the log and makes sure a drain will deliver it.
    /// `wait` is how long the drain should leave the vendor alone first.
    pub(crate) async fn append(
        self: &Arc<Self>,
        write: QueuedWrite,
        wait: Duration,
    ) -> Result<Ticket, StoreError> {
        let wal = self
            .wal
            .upgrade()
            .ok_or_else(|| StoreError::Embedded("the runtime's log is closed".into()))?;
        let write = self.sealed(write)?;
        // Counted by key before the append is visible, so that a drain that
        // delivers it at once finds the count to take it from.
        self.lane_queued(write.order_key.as_deref());
        let ticket = match wal.append(&write).await {
            Ok(ticket) => ticket,
            Err(error) => {
                self.lane_settled(write.order_key.as_deref());
                return Err(error);
            }
        };
        self.depth.set(self.pending() as f64);
        tracing::debug!(
            target: "seawall::queue",
            contract = %write.contract,
            method = %write.method,
            %ticket,
            "write queued"
        );
        self.subscribers.emit(&Event::Queued(Queued {
            contract: self.contract.clone(),
            method: write.method,
            ticket,
            key: write.key,
        }));
        self.nudge(wait);
        Ok(ticket)
    }

    fn drainers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn Drainer>>> {
        self.drainers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn replay(&self, write: &QueuedWrite) -> Option<BoxFuture<'static, Replayed>> {
        let mut drainers = self.drainers();
        while let Some(drainer) = drainers.first() {
            if let Some(replay) = drainer.replay(write.clone()) {
                return Some(replay);
            }
            // Its wrapper is gone.
            drainers.remove(0);
        }
        None
    }

    /// Starts the drain unless it is running.
    fn nudge(self: &Arc<Self>, wait: Duration) {
        if self
            .draining
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Running: it looks for lanes to start when told (one permit
            // is kept, so a write appended before it waits is not missed).
            self.arrived.notify_one();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let guard = Cancelled {
                    queue: self.clone(),
                    ended: false,
                };
                handle.spawn(drain(guard, wait));
            }
            Err(_) => {
                self.draining.store(false, Ordering::Release);
                tracing::warn!(
                    target: "seawall::queue",
                    contract = %self.contract,
                    "no tokio runtime to drain queued writes on; they stay in the log"
                );
            }
        }
    }

    /// Ends a drain; returns whether it must go on after all (writes
    /// arrived, or a wrapper registered, as it was stopping).
    fn stop(&self) -> bool {
        self.draining.store(false, Ordering::Release);
        self.pending() > 0
            && !self.drainers().is_empty()
            && self
                .draining
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn settled(&self, write: QueuedWrite, ticket: Ticket, status: &TicketStatus) {
        let event = match status {
            TicketStatus::Delivered { answer, .. } => {
                tracing::debug!(
                    target: "seawall::queue",
                    contract = %self.contract,
                    method = %write.method,
                    %ticket,
                    "queued write delivered"
                );
                Event::Delivered(Delivered {
                    contract: self.contract.clone(),
                    method: write.method,
                    ticket,
                    key: write.key,
                    answer: answer.clone(),
                })
            }
            TicketStatus::Dead { error, .. } => {
                tracing::warn!(
                    target: "seawall::queue",
                    contract = %self.contract,
                    method = %write.method,
                    %ticket,
                    %error,
                    "queued write refused for good; kept as a dead letter"
                );
                Event::DeadLetter(DeadLettered {
                    contract: self.contract.clone(),
                    method: write.method,
                    ticket,
                    key: write.key,
                    error: error.clone(),
                })
            }
            TicketStatus::Pending => return,
        };
        self.subscribers.emit(&event);
    }
}

/// Clears the `draining` flag if the drain task is dropped before it ends
/// (its tokio runtime shut down), so that a later write or wrapper can
/// start a new one.
struct Cancelled {
    queue: Arc<ContractQueue>,
    ended: bool,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if !self.ended {
            self.queue.draining.store(false, Ordering::Release);
        }
    }
}

/// Delivers the contract's pending writes in order until none is left.
/// The guard is made before the task is spawned, so that a task dropped
/// before its first poll clears the flag too.
async fn drain(mut guard: Cancelled, wait: Duration) {
    let queue = guard.queue.clone();
    drain_until_empty(&queue, wait).await;
    // The loop cleared the flag itself (or handed it to nobody).
    guard.ended = true;
}

/// The most writes one lane delivers in a turn while other lanes run, so
/// that its place is re-read every few writes.
const LANE_TURN: usize = 8;
/// The most lanes with a turn running at once. The log is read for new
/// lanes when half of them have ended (or a write arrives, a wait runs out,
/// a breaker closes), not at every turn's end: each read scans the log.
const LANES: usize = 32;

/// How one lane's turn ended.
enum Turn {
    /// Each of its writes was settled (delivered or dead): how many.
    Done(usize),
    /// The vendor is still unavailable for it, or a settle failed: how many
    /// were settled first, and how long the lane waits.
    Wait(usize, Duration),
    /// No wrapper is left to deliver with: how many were settled first.
    NoDrainer(usize),
    /// The runtime is gone.
    Gone,
}

/// Delivers the contract's pending writes until none is left, in lanes:
/// one per ordering key (`order_by`) and one for the writes without. Each
/// lane runs its own turns (a few writes in order, on a task of its own)
/// side by side with the others, so a slow or failing key never holds back
/// the rest: a lane whose vendor is unavailable waits out its own backoff
/// and is left out of the log's reads meanwhile, and a lane that ends its
/// turn, a write that arrives, or a wait that runs out lets the drain look
/// for lanes to start.
async fn drain_until_empty(queue: &Arc<ContractQueue>, mut wait: Duration) {
    // Per lane: failures in a row (for the backoff), and until when it
    // waits.
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut waiting: HashMap<String, tokio::time::Instant> = HashMap::new();
    // The lanes with a turn running, by their task.
    let mut running = tokio::task::JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut read_failures = 0;
    // Flushes that failed in a row: their settles were not durable (a full
    // disk), so a reopened store may hand the same writes back. Their own
    // count, reset only by a flush that succeeds, keeps the resends to one
    // per growing step even though each settle itself seemed to work.
    let mut unflushed = 0;
    // While flushes fail (a full disk), no lane starts a turn until then.
    let mut held_until: Option<tokio::time::Instant> = None;
    let mut no_drainer = false;
    // Settles not flushed yet: flushed together every `BATCH`, and whenever
    // no turn runs (a crash before the flush sends those writes once more,
    // with their keys).
    let mut unflushed_settles = 0;
    loop {
        if !wait.is_zero() && running.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // A breaker closed: every lane may try again now.
                () = queue.wake.notified() => waiting.clear(),
            }
        }
        wait = Duration::ZERO;
        let now = tokio::time::Instant::now();
        waiting.retain(|_, until| *until > now);
        held_until = held_until.filter(|until| *until > now);
        if !no_drainer && held_until.is_none() && running.len() <= LANES / 2 {
            let Some(wal) = queue.wal.upgrade() else {
                queue.draining.store(false, Ordering::Release);
                return;
            };
            let skip: HashSet<String> = waiting.keys().chain(busy.values()).cloned().collect();
            match wal
                .pending_in_lanes(
                    &queue.contract,
                    // A shared log reads each lane's next turn, no more.
                    if wal.is_shared() { LANE_TURN } else { BATCH },
                    Arc::new(skip),
                    LANES - running.len(),
                )
                .await
            {
                Ok(batch) => {
                    read_failures = 0;
                    // New lanes in the order of their oldest write, each in
                    // order.
                    let mut lanes: Vec<(String, Vec<(Ticket, QueuedWrite)>)> = Vec::new();
                    for (ticket, write) in batch {
                        let lane = write.lane().to_owned();
                        match lanes.iter_mut().find(|(name, _)| *name == lane) {
                            Some((_, writes)) => writes.push((ticket, write)),
                            None => lanes.push((lane, vec![(ticket, write)])),
                        }
                    }
                    lanes.truncate(LANES - running.len());
                    let shared = lanes.len() + running.len() > 1;
                    for (lane, mut writes) in lanes {
                        if shared {
                            writes.truncate(LANE_TURN);
                        }
                        let lane_failures = failures.get(&lane).copied().unwrap_or(0);
                        let turn = lane_turn(queue.clone(), writes, lane_failures);
                        let task = running.spawn(turn);
                        busy.insert(task.id(), lane);
                    }
                }
                Err(error) => {
                    read_failures += 1;
                    wait = backoff(read_failures);
                    tracing::warn!(
                        target: "seawall::queue",
                        contract = %queue.contract,
                        %error,
                        ?wait,
                        "could not read the write-ahead log; the drain will try again"
                    );
                    if running.is_empty() {
                        continue;
                    }
                }
            }
        }
        if running.is_empty() {
            if no_drainer {
                // No wrapper left to deliver with; the writes stay in the
                // log for the next one.
                if !queue.stop() {
                    return;
                }
                no_drainer = false;
                continue;
            }
            if let Some(next) = waiting.values().chain(&held_until).min() {
                wait = next
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1));
                continue;
            }
            // A shared log: other processes append, and leave lanes behind
            // when they die. Looked at again now and then while a wrapper
            // can deliver (bounded by the runtime's life: the loop ends when
            // the log is gone).
            if queue.wal.upgrade().is_some_and(|wal| wal.is_shared())
                && !queue.drainers().is_empty()
            {
                wait = crate::wal::SHARED_POLL;
                continue;
            }
            queue.lanes_known();
            if queue.stop() {
                // A write is counted a moment before its append is
                // visible: give it that moment rather than spin.
                wait = Duration::from_millis(5);
                continue;
            }
            return;
        }
        // A lane ends its turn, a write arrives, a waiting lane is due, or a
        // breaker closes: look again.
        let due = waiting.values().chain(&held_until).min().copied();
        let ended = tokio::select! {
            ended = running.join_next_with_id() => ended,
            () = queue.arrived.notified() => None,
            () = sleep_until(due) => None,
            () = queue.wake.notified() => {
                waiting.clear();
                None
            }
        };
        let Some(ended) = ended else {
            continue;
        };
        let (id, turn) = match ended {
            Ok((id, turn)) => (id, Some(turn)),
            // A turn that panicked outside the adapter (whose panics are
            // caught) leaves its writes pending for the next.
            Err(error) => (error.id(), None),
        };
        let lane = busy.remove(&id).unwrap_or_default();
        let settled = match turn {
            Some((Turn::Done(n), _)) => {
                failures.remove(&lane);
                n
            }
            Some((Turn::Wait(n, lane_wait), lane_failures)) => {
                failures.insert(lane.clone(), lane_failures);
                waiting.insert(lane, tokio::time::Instant::now() + lane_wait);
                n
            }
            Some((Turn::NoDrainer(n), _)) => {
                no_drainer = true;
                n
            }
            Some((Turn::Gone, _)) => {
                running.abort_all();
                queue.draining.store(false, Ordering::Release);
                return;
            }
            None => 0,
        };
        unflushed_settles += settled;
        if unflushed_settles > 0 && (unflushed_settles >= BATCH || running.is_empty()) {
            unflushed_settles = 0;
            let Some(wal) = queue.wal.upgrade() else {
                running.abort_all();
                queue.draining.store(false, Ordering::Release);
                return;
            };
            match wal.flush().await {
                Ok(()) => unflushed = 0,
                Err(error) => {
                    unflushed += 1;
                    let hold = backoff(unflushed);
                    held_until = Some(tokio::time::Instant::now() + hold);
                    tracing::warn!(
                        target: "seawall::queue",
                        contract = %queue.contract,
                        %error,
                        wait = ?hold,
                        "could not flush settled writes; they may be sent again, with their keys, after the wait"
                    );
                }
            }
        }
    }
}

/// Sleeps until `due`, or for ever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Delivers one lane's writes of a round, in order, stopping at the first
/// that the vendor could not take yet. Returns how the turn ended and the
/// lane's failures in a row.
async fn lane_turn(
    queue: Arc<ContractQueue>,
    writes: Vec<(Ticket, QueuedWrite)>,
    mut failures: u32,
) -> (Turn, u32) {
    let mut settled = 0;
    // When the lane's lease was last renewed (asked), this turn.
    let mut held: Option<std::time::Instant> = None;
    let lane = writes
        .first()
        .map(|(_, write)| write.lane().to_owned())
        .unwrap_or_default();
    for (ticket, write) in writes {
        let Some(wal) = queue.wal.upgrade() else {
            return (Turn::Gone, failures);
        };
        // Redacted arguments are opened in memory only, for delivery; one
        // that will not open is a dead letter (named, not shown).
        let mut open = write.clone();
        if let Err(error) = queue.sealing.unseal(&mut open) {
            settle_dead(&queue, &wal, ticket, write, error).await;
            settled += 1;
            continue;
        }
        // In a shared log, only while this process holds the lane's lease
        // and the write is still pending: another process may have taken
        // the lane over (this one was too slow to renew it). Renewed at
        // the turn's first write, then whenever half the lease has gone
        // by (measured from when the renewal was asked, so it errs early).
        let good = held.is_some_and(|at: std::time::Instant| at.elapsed() < wal.hold_good_for());
        let asked = std::time::Instant::now();
        match if good {
            Ok(true)
        } else {
            wal.hold(ticket).await
        } {
            Ok(true) if good => {}
            Ok(true) => held = Some(asked),
            Ok(false) => return (Turn::Done(settled), failures),
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    target: "seawall::queue",
                    contract = %queue.contract,
                    %ticket,
                    %error,
                    "could not renew the lease on a lane; it waits"
                );
                return (Turn::Wait(settled, backoff(failures)), failures);
            }
        }
        let Some(replay) = queue.replay(&open) else {
            return (Turn::NoDrainer(settled), failures);
        };
        // The log is let go while the vendor is called.
        drop(wal);
        let replayed = CatchUnwind::new(replay).await;
        let Some(wal) = queue.wal.upgrade() else {
            return (Turn::Gone, failures);
        };
        let status = match replayed {
            // A bug in the adapter for this input, not an outage: waiting
            // would only hold back every write behind it.
            Err(panic) => {
                let error = format!(
                    "the adapter panicked delivering this write: {}",
                    unwind::message(&panic)
                );
                TicketStatus::Dead {
                    error,
                    at_ms: now_ms(),
                }
            }
            Ok(Replayed::Delivered(answer)) => TicketStatus::Delivered {
                answer,
                at_ms: now_ms(),
            },
            Ok(Replayed::Failed {
                class: ErrorClass::Retryable | ErrorClass::VendorFault,
                error,
                retry_in,
            }) => {
                failures += 1;
                let wait = retry_in
                    .filter(|d| !d.is_zero())
                    .unwrap_or_else(|| backoff(failures));
                tracing::debug!(
                    target: "seawall::queue",
                    contract = %queue.contract,
                    method = %write.method,
                    %ticket,
                    %error,
                    ?wait,
                    "queued write still undeliverable; its lane waits (order is kept)"
                );
                if let Err(error) = wal.record_attempt(ticket).await {
                    tracing::warn!(target: "seawall::queue", %error, "could not count a delivery attempt");
                }
                return (Turn::Wait(settled, wait), failures);
            }
            Ok(Replayed::Failed { error, .. } | Replayed::Undecodable(error)) => {
                TicketStatus::Dead {
                    error,
                    at_ms: now_ms(),
                }
            }
        };
        if let Err(error) = wal
            .settle_quietly(ticket, &write.contract, status.clone())
            .await
        {
            // The write stays pending and is sent again, with its key,
            // after a backoff that keeps growing while settles fail (a full
            // disk): once per step, never in a tight loop.
            failures += 1;
            tracing::warn!(
                target: "seawall::queue",
                contract = %queue.contract,
                %ticket,
                %error,
                "could not settle a queued write; it will be sent again with its key"
            );
            return (Turn::Wait(settled, backoff(failures)), failures);
        }
        failures = 0;
        queue.lane_settled(write.order_key.as_deref());
        // The event goes out before `settled(ticket)` waiters wake, so
        // whoever waits on the ticket has seen it.
        queue.depth.set(queue.pending() as f64);
        queue.settled(write, ticket, &status);
        wal.wake_settled();
        settled += 1;
    }
    // The lane's turn is over: in a shared log, any process may take the
    // lane's next writes (its lease would run out otherwise).
    if let Some(wal) = queue.wal.upgrade()
        && let Err(error) = wal.release(&queue.contract, &lane).await
    {
        tracing::debug!(target: "seawall::queue", %error, "could not let go of a lane's lease; it runs out");
    }
    (Turn::Done(settled), failures)
}

/// Dead-letters the pending writes of every contract that no wrapper has
/// offered to deliver (`registered` says which have), a batch at a time:
/// after the grace period, a contract renamed or removed by a deploy would
/// otherwise keep its writes queued for ever. Returns how many.
#[cfg(feature = "embedded")]
pub(crate) async fn dead_letter_orphans(
    wal: &WriteAheadLog,
    registered: impl Fn(&str) -> bool,
    subscribers: &Subscribers,
) -> Result<u64, StoreError> {
    let mut settled = 0;
    // A shared log's contracts may be served by other processes.
    if wal.is_shared() {
        return Ok(settled);
    }
    for contract in wal.contracts() {
        if registered(&contract) {
            continue;
        }
        while wal.pending_count(&contract) > 0 {
            let batch = wal.pending(&contract, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for (ticket, write) in batch {
                let error = format!(
                    "no wrapper of contract `{contract}` offered to deliver it within the grace \
                     period (the contract was renamed or removed?)"
                );
                let status = TicketStatus::Dead {
                    error: error.clone(),
                    at_ms: now_ms(),
                };
                wal.settle_quietly(ticket, &contract, status).await?;
                tracing::warn!(
                    target: "seawall::queue",
                    %contract,
                    method = %write.method,
                    %ticket,
                    "queued write for a contract nothing serves; kept as a dead letter"
                );
                subscribers.emit(&Event::DeadLetter(DeadLettered {
                    contract: contract.as_str().into(),
                    method: write.method,
                    ticket,
                    key: write.key,
                    error,
                }));
                settled += 1;
            }
            wal.flush().await?;
            wal.wake_settled();
        }
    }
    Ok(settled)
}

/// Settles a write the drain cannot even offer to the vendor as dead.
async fn settle_dead(
    queue: &Arc<ContractQueue>,
    wal: &WriteAheadLog,
    ticket: Ticket,
    write: QueuedWrite,
    error: String,
) {
    let status = TicketStatus::Dead {
        error,
        at_ms: now_ms(),
    };
    match wal
        .settle_quietly(ticket, &write.contract, status.clone())
        .await
    {
        Ok(()) => {
            queue.lane_settled(write.order_key.as_deref());
            queue.depth.set(queue.pending() as f64);
            queue.settled(write, ticket, &status);
            wal.wake_settled();
        }
        Err(error) => tracing::warn!(
            target: "seawall::queue",
            contract = %queue.contract,
            %ticket,
            %error,
            "could not settle a write whose arguments do not open; it stays queued"
        ),
    }
}

impl std::fmt::Debug for ContractQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractQueue")
            .field("contract", &self.contract)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}
