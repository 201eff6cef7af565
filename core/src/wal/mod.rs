//! The write-ahead log: writes that could not be delivered, kept in order
//! until they are.
//!
//! When a vendor is down, a write with `fallback = queue` is not lost: it is
//! appended here (its contract, method, idempotency key and serialized
//! arguments) and the caller learns it is queued only once the append is
//! durable. When the vendor recovers, the log is drained in enqueue order,
//! each write re-issued with its original idempotency key; a write the vendor
//! refuses for good becomes a dead letter, kept with its error.
//!
//! This module is the log itself: append, read what is pending in order,
//! settle entries as delivered or dead, and report. Draining is the
//! runtime's work (see the README's "Queued writes").
//!
//! **Where it lives.** On `Runtime::embedded` (the `embedded` feature)
//! the log is in the redb file next to the idempotency store, and an append
//! is on disk before it is acknowledged. On
//! [`Runtime::in_memory`](crate::Runtime::in_memory) it is a map in the
//! process, gone when the process ends: for tests and demos only;
//! [`is_durable`](WriteAheadLog::is_durable) says which, and the first write
//! queued in a memory log logs a warning.
//!
//! With `RuntimeBuilder::postgres` (feature `postgres`) (the
//! `postgres` feature) the log is the `outbox` table in PostgreSQL instead,
//! whatever the local store: queued writes outlive the node, and every
//! runtime naming the database and schema drains them, a lane (ordering
//! key) at a time under a lease, so that each write is delivered by one
//! process, in order ([`is_shared`](WriteAheadLog::is_shared) says so). An
//! append while the database is away goes to the runtime's embedded log
//! when it has one (its ticket has bit 62 set; that process delivers it),
//! else fails, and the write is not queued.
//!
//! **Group commit.** An fsync costs milliseconds, so embedded appends are
//! not committed one by one: a committer thread takes every append waiting
//! at that moment, writes them in one transaction, commits once, and then
//! acknowledges them all. A burst of queued writes shares its fsyncs. The
//! outbox does the same with one `INSERT` per batch.

#[cfg(feature = "embedded")]
pub(crate) mod embedded;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "postgres")]
pub(crate) use postgres::insert_on;

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::StoreError;

/// A write waiting for its vendor.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueuedWrite {
    /// The contract.
    pub contract: String,
    /// The method.
    pub method: String,
    /// The write's idempotency key, sent again when it is delivered.
    pub key: String,
    /// The method's arguments, serialized: an object of argument names.
    pub arguments: serde_json::Value,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// Delivery attempts made so far by the drain (each may retry, as the
    /// method's policy says).
    pub attempts: u32,
    /// The arguments `redact = [..]` names: sealed at rest, shown as
    /// `<redacted>` by `Debug`, never quoted in an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// With `fallback = queue(order_by = [..])`: the values the write is
    /// ordered by (`account="acme"`). Writes with the same key are
    /// delivered in the order they were queued; writes with different keys
    /// in parallel. `None`: ordered with the contract's other writes
    /// without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let arguments = self.shown_arguments();
        f.debug_struct("QueuedWrite")
            .field("contract", &self.contract)
            .field("method", &self.method)
            .field("key", &self.key)
            .field("arguments", &arguments)
            .field("enqueued_at_ms", &self.enqueued_at_ms)
            .field("attempts", &self.attempts)
            .field("redacted", &self.redacted)
            .finish()
    }
}

impl QueuedWrite {
    /// The lane it drains in: its ordering key, or `""` (the contract's
    /// writes without one).
    pub(crate) fn lane(&self) -> &str {
        self.order_key.as_deref().unwrap_or("")
    }

    /// The arguments as they may be shown to a person or exported: those
    /// `redact = [..]` names replaced by `"<redacted>"` (sealed or not), the
    /// others as stored.
    pub fn shown_arguments(&self) -> serde_json::Value {
        let mut arguments = self.arguments.clone();
        if let serde_json::Value::Object(map) = &mut arguments {
            for name in &self.redacted {
                if let Some(value) = map.get_mut(name) {
                    *value = serde_json::Value::String("<redacted>".into());
                }
            }
        }
        arguments
    }

    /// A write queued now.
    pub fn new(
        contract: impl Into<String>,
        method: impl Into<String>,
        key: impl Into<String>,
        arguments: serde_json::Value,
    ) -> Self {
        Self {
            contract: contract.into(),
            method: method.into(),
            key: key.into(),
            arguments,
            enqueued_at_ms: now_ms(),
            attempts: 0,
            redacted: Vec::new(),
            order_key: None,
        }
    }
}

/// A queued write's place in the log: the order in which writes were
/// queued, across every contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ticket(pub u64);

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a queued write stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TicketStatus {
    /// Waiting in the log.
    Pending,
    /// Delivered; the vendor's answer, serialized.
    Delivered {
        /// The answer.
        answer: serde_json::Value,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// Refused by the vendor for good; kept with the error (and listed by
    /// [`WriteAheadLog::dead_letters`]).
    Dead {
        /// The vendor's error.
        error: String,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

/// A write the vendor refused for good, kept so that nothing is dropped
/// silently: an operator can read it, fix the cause and send it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The write, as it was queued.
    pub write: QueuedWrite,
    /// Why it was refused.
    pub error: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A stored record that could not be decoded when the log was opened
/// (damaged on disk, or edited by hand): set aside byte for byte, so that
/// the rest of the log opens and drains, and an operator can read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quarantined {
    /// The ticket (sequence number) it was stored under.
    pub ticket: Ticket,
    /// Where it came from and why it could not be read.
    pub reason: String,
    /// The record as it was on disk.
    pub bytes: Vec<u8>,
}

/// The settled entries' table, for the sweeper.
#[cfg(feature = "embedded")]
pub(crate) use embedded::SETTLED as SETTLED_TABLE;

/// When a settled entry was settled, read from its stored status.
#[cfg(feature = "embedded")]
pub(crate) fn settled_at_ms(bytes: &[u8]) -> Option<u64> {
    if let Ok(moved) = serde_json::from_slice::<embedded::MovedTo>(bytes) {
        return Some(moved.at_ms);
    }
    match serde_json::from_slice::<TicketStatus>(bytes).ok()? {
        TicketStatus::Delivered { at_ms, .. } | TicketStatus::Dead { at_ms, .. } => Some(at_ms),
        TicketStatus::Pending => None,
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(feature = "embedded")]
fn record_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Record(error.to_string())
}

enum Log {
    #[cfg(feature = "embedded")]
    Embedded(embedded::Embedded),
    Memory(memory::Memory),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Outbox),
}

/// The log of one runtime.
pub struct WriteAheadLog {
    log: Log,
    /// Pending writes per contract, kept in step with the log (counted at
    /// open, raised by appends, lowered by settles), so a call can ask
    /// "is anything queued ahead of me?" without reading the store.
    pending: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Dead letters per contract, kept the same way.
    dead: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Woken on every settle, for [`settled`](Self::settled).
    settles: Notify,
    warned: AtomicBool,
    /// Records in the quarantine.
    quarantined: u64,
    /// Beside the outbox: the runtime's embedded log, where a write goes
    /// while the database is away (its tickets marked with [`LOCAL`]).
    local: Option<Box<WriteAheadLog>>,
}

/// The most writes one move from the local log to the outbox takes.
#[cfg(feature = "postgres")]
const MOVE_BATCH: usize = 1024;

/// The mark of a ticket of the local log beside an outbox: a write queued
/// there while the database was away.
const LOCAL: u64 = 1 << 62;

impl WriteAheadLog {
    #[cfg(feature = "embedded")]
    pub(crate) fn embedded(db: Arc<crate::store::handle::DbHandle>) -> Result<Self, StoreError> {
        let (log, opened) = embedded::Embedded::open(db)?;
        let mut wal = Self::with(Log::Embedded(log), opened.pending, opened.dead);
        wal.quarantined = opened.quarantined;
        Ok(wal)
    }

    /// The outbox in PostgreSQL (`Runtime::builder().postgres(..)`),
    /// shared by every process that names the database and schema.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(
        db: Arc<crate::postgres::Database>,
        local: Option<WriteAheadLog>,
    ) -> Self {
        let mut wal = Self::with(
            Log::Postgres(postgres::Outbox::open(db)),
            HashMap::new(),
            HashMap::new(),
        );
        wal.local = local.filter(Self::is_durable).map(Box::new);
        wal
    }

    /// The local log and its own ticket, for a ticket it issued.
    fn local_of(&self, ticket: Ticket) -> Option<(&WriteAheadLog, Ticket)> {
        match &self.local {
            Some(local) if ticket.0 & LOCAL != 0 => Some((local, Ticket(ticket.0 & !LOCAL))),
            _ => None,
        }
    }

    /// The outbox ticket of a write this (embedded) log moved to the
    /// PostgreSQL outbox.
    #[cfg(feature = "embedded")]
    async fn moved_to(&self, ticket: Ticket) -> Result<Option<Ticket>, StoreError> {
        match &self.log {
            Log::Embedded(log) => Ok(match log.status(ticket).await? {
                Some(embedded::Stored::Moved(to)) => Some(to),
                _ => None,
            }),
            _ => Ok(None),
        }
    }

    /// Moves up to a batch of `contract`'s writes from the local log into
    /// the outbox, oldest first, leaving out the lanes in `skip` (this
    /// process is delivering them, or they wait for their vendor): each is
    /// inserted with its origin (unique, so a move cut short by a crash
    /// and done again inserts it once), then settled locally as moved, so
    /// that its local ticket reads the outbox's status.
    #[cfg(feature = "postgres")]
    async fn move_local(
        &self,
        outbox: &postgres::Outbox,
        local: &WriteAheadLog,
        contract: &str,
        skip: &Arc<HashSet<String>>,
    ) -> Result<(), StoreError> {
        let writes = Box::pin(local.pending_outside(contract, MOVE_BATCH, skip.clone())).await?;
        if writes.is_empty() {
            return Ok(());
        }
        let moved = outbox.insert_moved(&writes).await?;
        let count = moved.len();
        #[cfg(feature = "embedded")]
        if let Log::Embedded(log) = &local.log {
            let settled = log.moved(moved).await?;
            let counter = local.counter(contract);
            for _ in 0..settled {
                decrement(&counter);
            }
        }
        #[cfg(not(feature = "embedded"))]
        drop(moved);
        tracing::info!(
            target: "seawall::queue",
            contract,
            writes = count,
            "writes queued in the local log while the database was away moved to the outbox"
        );
        self.wake_settled();
        Ok(())
    }

    /// Whether other processes append to and drain this log too (the
    /// PostgreSQL outbox): its pending count is then read from the store,
    /// and a drain polls for their writes.
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "postgres")]
        return matches!(self.log, Log::Postgres(_));
        #[cfg(not(feature = "postgres"))]
        false
    }

    /// The schema of the PostgreSQL outbox, when this log is one.
    pub(crate) fn outbox_schema(&self) -> Option<String> {
        #[cfg(feature = "postgres")]
        if let Log::Postgres(log) = &self.log {
            return Some(log.schema().to_owned());
        }
        None
    }

    /// Whether this process may deliver `ticket` now: always, but in a
    /// shared log only while it holds the lease on the write's lane
    /// (renewed by this call) and the write is still pending.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn hold(&self, ticket: Ticket) -> Result<bool, StoreError> {
        if self.local_of(ticket).is_some() {
            return Ok(true);
        }
        #[cfg(feature = "postgres")]
        if let Log::Postgres(log) = &self.log {
            return log.hold(ticket).await;
        }
        Ok(true)
    }

    /// How long a successful [`hold`](Self::hold) stays good, from the
    /// moment it was asked: half the lease in a shared log (the lease runs
    /// from when the database ran the renewal, after it was asked), for
    /// ever otherwise. A lane's turn renews only when it runs out.
    pub(crate) fn hold_good_for(&self) -> std::time::Duration {
        #[cfg(feature = "postgres")]
        if let Log::Postgres(log) = &self.log {
            return log.lease_duration() / 2;
        }
        std::time::Duration::MAX
    }

    /// Lets go of the lease on a lane of `contract` (a shared log; a no-op
    /// otherwise), so that any process may drain it next.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn release(&self, contract: &str, lane: &str) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Log::Postgres(log) = &self.log {
            return log.release(contract, lane).await;
        }
        Ok(())
    }

    pub(crate) fn memory() -> Self {
        Self::with(
            Log::Memory(memory::Memory::default()),
            HashMap::new(),
            HashMap::new(),
        )
    }

    fn with(log: Log, counts: HashMap<String, u64>, dead: HashMap<String, u64>) -> Self {
        let counters = |counts: HashMap<String, u64>| {
            counts
                .into_iter()
                .map(|(contract, n)| (contract, Arc::new(AtomicU64::new(n))))
                .collect()
        };
        Self {
            log,
            pending: Mutex::new(counters(counts)),
            dead: Mutex::new(counters(dead)),
            settles: Notify::new(),
            warned: AtomicBool::new(false),
            quarantined: 0,
            local: None,
        }
    }

    /// How many stored records could not be decoded when a log on this
    /// file was opened, and were set aside (see [`quarantined`](Self::quarantined)).
    pub fn quarantined_count(&self) -> u64 {
        self.quarantined
    }

    /// Up to `limit` of the records set aside because they could not be
    /// decoded, oldest first, each byte for byte with where it came from and
    /// why. (They are kept until an operator deals with them.)
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    #[cfg_attr(not(feature = "embedded"), allow(unused_variables))]
    pub async fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>, StoreError> {
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.quarantined(limit).await,
            Log::Memory(_) => Ok(Vec::new()),
            #[cfg(feature = "postgres")]
            Log::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// Whether an acknowledged append survives the process (embedded), or
    /// not (in memory).
    pub fn is_durable(&self) -> bool {
        match self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(_) => true,
            Log::Memory(_) => false,
            #[cfg(feature = "postgres")]
            Log::Postgres(_) => true,
        }
    }

    /// The live count of `contract`'s pending writes.
    pub(crate) fn counter(&self, contract: &str) -> Arc<AtomicU64> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.entry(contract.to_owned()).or_default().clone()
    }

    /// How many dead letters `contract` has.
    pub fn dead_count(&self, contract: &str) -> u64 {
        self.dead
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(contract)
            .map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// The contracts that have had writes pending or dead in this log.
    pub(crate) fn contracts(&self) -> Vec<String> {
        let mut contracts: Vec<String> = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect();
        for contract in self
            .dead
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
        {
            if !contracts.contains(contract) {
                contracts.push(contract.clone());
            }
        }
        contracts
    }

    fn count_dead(&self, contract: &str) {
        self.dead
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(contract.to_owned())
            .or_default()
            .fetch_add(1, Ordering::AcqRel);
    }

    /// How many writes of `contract` are pending, from the live count.
    pub fn pending_count(&self, contract: &str) -> u64 {
        self.counter(contract).load(Ordering::Acquire)
    }

    /// Appends a write; returns its ticket once the append is durable (on
    /// disk for an embedded log).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the entry cannot be encoded or the commit fails;
    /// the write is then not queued.
    pub async fn append(&self, write: &QueuedWrite) -> Result<Ticket, StoreError> {
        // Counted before the entry can be seen (and settled by a drain), so
        // the count never misses it; uncounted if the append fails.
        let counter = self.counter(&write.contract);
        counter.fetch_add(1, Ordering::AcqRel);
        let appended = self.append_uncounted(write).await;
        if appended.is_err() {
            decrement(&counter);
        }
        appended
    }

    async fn append_uncounted(&self, write: &QueuedWrite) -> Result<Ticket, StoreError> {
        // Behind writes of its contract still in the local log (queued while
        // the database was away, not yet moved): there too, so that it
        // cannot overtake them; it is moved with them.
        #[cfg(feature = "postgres")]
        if let (Log::Postgres(_), Some(local)) = (&self.log, &self.local)
            && local.pending_count(&write.contract) > 0
        {
            return Ok(Ticket(Box::pin(local.append(write)).await?.0 | LOCAL));
        }
        let ticket = match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => {
                let bytes = serde_json::to_vec(write).map_err(record_error)?;
                log.append(bytes).await?
            }
            Log::Memory(log) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "seawall::wal",
                        contract = %write.contract,
                        method = %write.method,
                        "a write was queued in an in-memory log, which is lost when the process \
                         ends; use `Runtime::embedded` outside tests"
                    );
                }
                log.append(write.clone())
            }
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => match (log.append(write.clone()).await, &self.local) {
                (Ok(ticket), _) => ticket,
                (Err(error), Some(local)) => {
                    tracing::warn!(
                        target: "seawall::queue",
                        contract = %write.contract,
                        %error,
                        "the outbox is away: the write is queued in the local log"
                    );
                    Ticket(Box::pin(local.append(write)).await?.0 | LOCAL)
                }
                (Err(error), None) => return Err(error),
            },
        };
        Ok(ticket)
    }

    /// The pending writes of `contract`, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn pending(
        &self,
        contract: &str,
        limit: usize,
    ) -> Result<Vec<(Ticket, QueuedWrite)>, StoreError> {
        self.pending_outside(contract, limit, Arc::default()).await
    }

    /// The pending writes of `contract` whose ordering key (`""` for none)
    /// is not in `skip`, oldest first, at most `limit`: the drain leaves
    /// out the keys that are waiting for their vendor.
    pub(crate) async fn pending_outside(
        &self,
        contract: &str,
        limit: usize,
        skip: Arc<HashSet<String>>,
    ) -> Result<Vec<(Ticket, QueuedWrite)>, StoreError> {
        self.pending_in_lanes(contract, limit, skip, usize::MAX)
            .await
    }

    /// [`pending_outside`](Self::pending_outside) for a drain with room for
    /// `lanes` more lanes: a shared log leases at most that many, and
    /// reads up to `limit` writes of each (the lanes' next turns) instead
    /// of `limit` in all.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn pending_in_lanes(
        &self,
        contract: &str,
        limit: usize,
        skip: Arc<HashSet<String>>,
        lanes: usize,
    ) -> Result<Vec<(Ticket, QueuedWrite)>, StoreError> {
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.pending(contract, limit, skip).await,
            Log::Memory(log) => Ok(log.pending(contract, limit, &skip)),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => {
                let local = self
                    .local
                    .as_ref()
                    .filter(|local| local.pending_count(contract) > 0);
                if let Some(local) = local {
                    // The database may be back: move what waits locally
                    // (outside the lanes this process is delivering) into
                    // the outbox, where any process can deliver it.
                    if let Err(error) = self.move_local(log, local, contract, &skip).await {
                        tracing::debug!(
                            target: "seawall::queue",
                            contract,
                            %error,
                            "the local log's writes stay there for now"
                        );
                    }
                }
                let mut writes = match log.pending(contract, lanes, limit, skip.clone()).await {
                    Ok((writes, count, dead)) => {
                        // Every process's writes: the counts follow the
                        // store (dead letters too, so that one retried or
                        // purged by another process or by the `seawall`
                        // tool is not counted here still).
                        let local_count = local.map_or(0, |l| l.pending_count(contract));
                        self.counter(contract)
                            .store(count + local_count, Ordering::Release);
                        let local_dead = self.local.as_ref().map_or(0, |l| l.dead_count(contract));
                        self.dead
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .entry(contract.to_owned())
                            .or_default()
                            .store(dead + local_dead, Ordering::Release);
                        writes
                    }
                    // The database away: the local writes drain meanwhile.
                    Err(_) if local.is_some() => Vec::new(),
                    Err(error) => return Err(error),
                };
                if let Some(local) = local {
                    // Behind the outbox's writes of the same lanes (queued
                    // before them).
                    let mut behind: HashSet<String> = (*skip).clone();
                    behind.extend(writes.iter().map(|(_, write)| write.lane().to_owned()));
                    let queued = Box::pin(local.pending_outside(contract, limit, Arc::new(behind)));
                    for (ticket, write) in queued.await? {
                        writes.push((Ticket(ticket.0 | LOCAL), write));
                    }
                }
                Ok(writes)
            }
        }
    }

    /// How many writes are pending, across every contract, as the store
    /// says.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.depth().await,
            Log::Memory(log) => Ok(log.depth()),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => {
                let local = match &self.local {
                    Some(local) => Box::pin(local.depth()).await?,
                    None => 0,
                };
                Ok(log.depth().await? + local)
            }
        }
    }

    /// Records one more delivery attempt on a pending write.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be written.
    pub async fn record_attempt(&self, ticket: Ticket) -> Result<(), StoreError> {
        if let Some((local, ticket)) = self.local_of(ticket) {
            return Box::pin(local.record_attempt(ticket)).await;
        }
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.record_attempt(ticket).await,
            Log::Memory(log) => {
                log.record_attempt(ticket);
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.record_attempt(ticket).await,
        }
    }

    /// Settles a pending write: delivered with the vendor's answer, or dead
    /// with its error (a [`DeadLetter`] keeps the write). It leaves the
    /// pending list in the same transaction. Settling a ticket that is not
    /// pending changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be written.
    pub async fn settle(&self, ticket: Ticket, status: TicketStatus) -> Result<(), StoreError> {
        if let Some((local, ticket)) = self.local_of(ticket) {
            Box::pin(local.settle(ticket, status)).await?;
            self.wake_settled();
            return Ok(());
        }
        let dead = matches!(status, TicketStatus::Dead { .. });
        let contract = match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.settle(ticket, status, true).await?,
            Log::Memory(log) => log.settle(ticket, status),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.settle(ticket, status, true).await?,
        };
        if let Some(contract) = contract {
            decrement(&self.counter(&contract));
            if dead {
                self.count_dead(&contract);
            }
        }
        self.wake_settled();
        Ok(())
    }

    /// [`settle`](Self::settle) without waiting for the disk (durable at
    /// the next [`flush`](Self::flush) or append) and without waking
    /// [`settled`](Self::settled) waiters ([`wake_settled`](Self::wake_settled)
    /// does). The drain settles this way, reports the settle, then wakes the
    /// waiters, and flushes once per batch: a settle lost in a crash only
    /// means the write is sent again, with its key.
    ///
    /// The write, of `contract`, leaves the pending count before the
    /// settle is visible, so whoever sees it settled sees the count without
    /// it. (It has been delivered or refused already, so a new write need not
    /// wait behind it.)
    pub(crate) async fn settle_quietly(
        &self,
        ticket: Ticket,
        contract: &str,
        status: TicketStatus,
    ) -> Result<(), StoreError> {
        let counter = self.counter(contract);
        decrement(&counter);
        let dead = matches!(status, TicketStatus::Dead { .. });
        if let Some((local, ticket)) = self.local_of(ticket) {
            let settled = Box::pin(local.settle_quietly(ticket, contract, status)).await;
            if settled.is_err() {
                counter.fetch_add(1, Ordering::AcqRel);
            }
            return settled;
        }
        let settled = match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.settle(ticket, status, false).await,
            Log::Memory(log) => Ok(log.settle(ticket, status)),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.settle(ticket, status, false).await,
        };
        match settled {
            Ok(Some(_)) => {
                if dead {
                    self.count_dead(contract);
                }
                Ok(())
            }
            Ok(None) => {
                counter.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                counter.fetch_add(1, Ordering::AcqRel);
                Err(error)
            }
        }
    }

    /// Wakes [`settled`](Self::settled) waiters.
    pub(crate) fn wake_settled(&self) {
        self.settles.notify_waiters();
    }

    /// Makes every earlier settle durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.flush().await,
            Log::Memory(_) => Ok(()),
            // (PostgreSQL commits each settle.)
            #[cfg(feature = "postgres")]
            Log::Postgres(_) => Ok(()),
        }
    }

    /// Where a ticket stands; `None` for a ticket this log never issued.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn status(&self, ticket: Ticket) -> Result<Option<TicketStatus>, StoreError> {
        if let Some((local, ticket)) = self.local_of(ticket) {
            #[cfg(feature = "embedded")]
            if let Some(to) = local.moved_to(ticket).await? {
                return Box::pin(self.status(to)).await;
            }
            return Box::pin(local.status(ticket)).await;
        }
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => Ok(match log.status(ticket).await? {
                Some(embedded::Stored::Status(status)) => Some(status),
                // (Only a log beside an outbox moves writes; see `moved_to`.)
                Some(embedded::Stored::Moved(_)) | None => None,
            }),
            Log::Memory(log) => Ok(log.status(ticket)),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.status(ticket).await,
        }
    }

    /// Waits until a ticket is settled (delivered or dead) and returns how;
    /// `None` for a ticket this log never issued.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn settled(&self, ticket: Ticket) -> Result<Option<TicketStatus>, StoreError> {
        loop {
            let notified = self.settles.notified();
            tokio::pin!(notified);
            // Registered before the status is read, so a settle in between
            // is not missed.
            notified.as_mut().enable();
            match self.status(ticket).await? {
                // Another process may settle it, unseen here: look again
                // now and then.
                Some(TicketStatus::Pending) if self.is_shared() => {
                    let _ = tokio::time::timeout(SHARED_POLL, notified).await;
                }
                Some(TicketStatus::Pending) => notified.await,
                other => return Ok(other),
            }
        }
    }

    /// The dead letter kept under `ticket`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn dead_letter(&self, ticket: Ticket) -> Result<Option<DeadLetter>, StoreError> {
        if let Some((local, ticket)) = self.local_of(ticket) {
            #[cfg(feature = "embedded")]
            if let Some(to) = local.moved_to(ticket).await? {
                return Box::pin(self.dead_letter(to)).await;
            }
            return Box::pin(local.dead_letter(ticket)).await;
        }
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.dead_letter(ticket).await,
            Log::Memory(log) => Ok(log.dead_letter(ticket)),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.dead_letter(ticket).await,
        }
    }

    /// Forgets the dead letter under `ticket` (after it was queued again);
    /// whether there was one.
    pub(crate) async fn remove_dead(
        &self,
        ticket: Ticket,
        contract: &str,
    ) -> Result<bool, StoreError> {
        if let Some((local, ticket)) = self.local_of(ticket) {
            return Box::pin(local.remove_dead(ticket, contract)).await;
        }
        let removed = match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.remove_dead(ticket).await?,
            Log::Memory(log) => log.remove_dead(ticket),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => log.remove_dead(ticket).await?,
        };
        if removed
            && let Some(counter) = self
                .dead
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(contract)
        {
            decrement(counter);
        }
        Ok(removed)
    }

    /// The dead letters, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<(Ticket, DeadLetter)>, StoreError> {
        match &self.log {
            #[cfg(feature = "embedded")]
            Log::Embedded(log) => log.dead_letters(limit).await,
            Log::Memory(log) => Ok(log.dead_letters(limit)),
            #[cfg(feature = "postgres")]
            Log::Postgres(log) => {
                let mut letters = log.dead_letters(limit).await?;
                if let Some(local) = &self.local {
                    let kept = Box::pin(local.dead_letters(limit)).await?;
                    letters.extend(
                        kept.into_iter()
                            .map(|(ticket, letter)| (Ticket(ticket.0 | LOCAL), letter)),
                    );
                    letters.truncate(limit);
                }
                Ok(letters)
            }
        }
    }
}

/// How often a shared log is read again for what other processes did
/// (their appends to drain, their settles to wait for).
pub(crate) const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One less, never below zero (even if the store and the count disagree).
fn decrement(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

impl std::fmt::Debug for WriteAheadLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAheadLog")
            .field("durable", &self.is_durable())
            .finish_non_exhaustive()
    }
}
