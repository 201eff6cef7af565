//! The write-ahead log: writes that could not be delivered, kept durably and
//! in order until they are.
//!
//! When a vendor is down, a write with `fallback = queue` is not lost: it is
//! appended here (its contract, method, idempotency key and serialized
//! arguments) and the caller learns it is queued only once the append is on
//! disk. When the vendor recovers, the log is drained in enqueue order, each
//! write re-issued with its original idempotency key.
//!
//! This module is the durable log itself: append, read what is pending in
//! order, and settle entries as delivered or dead (a permanent failure, kept
//! with its error). It lives in the embedded store's redb file
//! ([`Runtime::embedded`](crate::Runtime::embedded)); an in-memory runtime
//! has no log, since a log that dies with the process would promise what it
//! cannot keep.
//!
//! **Group commit.** Every append must be durable before it is
//! acknowledged, and an fsync costs milliseconds, so appends are not
//! committed one by one: a committer thread takes every append waiting at
//! that moment, writes them in one transaction, commits once, and then
//! acknowledges them all. A burst of queued writes shares its fsyncs.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::StoreError;

const ENTRIES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("wal");
const SETTLED: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("wal_settled");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("wal_meta");

/// The most appends one commit takes at once.
const BATCH: usize = 4096;

/// A write waiting for its vendor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedWrite {
    /// The contract.
    pub contract: String,
    /// The method.
    pub method: String,
    /// The write's idempotency key, sent again when it is delivered.
    pub key: String,
    /// The method's arguments, serialized.
    pub arguments: serde_json::Value,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

impl QueuedWrite {
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
        }
    }
}

/// A queued write's place in the log: the order in which writes were
/// queued, across every contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ticket(pub u64);

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
    /// Refused by the vendor for good; kept with the error.
    Dead {
        /// The vendor's error.
        error: String,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

type Append = (Vec<u8>, oneshot::Sender<Result<Ticket, StoreError>>);

/// The log of one embedded runtime.
pub struct WriteAheadLog {
    db: Arc<Database>,
    // Both `Some` until drop, which closes the queue and waits for the
    // committer, so the database file is free when the runtime is gone.
    appends: Option<mpsc::Sender<Append>>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl WriteAheadLog {
    pub(crate) fn new(db: Arc<Database>) -> Result<Self, StoreError> {
        // Create the tables, and find where the sequence left off.
        let write = db.begin_write().map_err(failed)?;
        let next = {
            write.open_table(ENTRIES).map_err(failed)?;
            write.open_table(SETTLED).map_err(failed)?;
            let meta = write.open_table(META).map_err(failed)?;
            meta.get("next").map_err(failed)?.map_or(1, |v| v.value())
        };
        write.commit().map_err(failed)?;
        let (appends, queue) = mpsc::channel();
        let committer_db = db.clone();
        let committer = std::thread::Builder::new()
            .name("seawall-wal".into())
            .spawn(move || commit_loop(&committer_db, &queue, next))
            .map_err(failed)?;
        Ok(Self {
            db,
            appends: Some(appends),
            committer: Some(committer),
        })
    }

    /// Appends a write; returns its ticket once the append is on disk.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the entry cannot be encoded or the commit fails;
    /// the write is then not queued.
    pub async fn append(&self, write: &QueuedWrite) -> Result<Ticket, StoreError> {
        let bytes = serde_json::to_vec(write).map_err(|e| StoreError::Record(e.to_string()))?;
        let (done, ticket) = oneshot::channel();
        self.appends
            .as_ref()
            .ok_or_else(|| failed("the write-ahead log is closed"))?
            .send((bytes, done))
            .map_err(|_| failed("the write-ahead log's committer has stopped"))?;
        ticket
            .await
            .map_err(|_| failed("the write-ahead log's committer has stopped"))?
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
        let db = self.db.clone();
        let contract = contract.to_owned();
        blocking(move || {
            let read = db.begin_read().map_err(failed)?;
            let table = read.open_table(ENTRIES).map_err(failed)?;
            let mut pending = Vec::new();
            for entry in table.iter().map_err(failed)? {
                let (seq, bytes) = entry.map_err(failed)?;
                let write: QueuedWrite = serde_json::from_slice(bytes.value())
                    .map_err(|e| StoreError::Record(e.to_string()))?;
                if write.contract == contract {
                    pending.push((Ticket(seq.value()), write));
                    if pending.len() == limit {
                        break;
                    }
                }
            }
            Ok(pending)
        })
        .await
    }

    /// How many writes are pending, across every contract.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let read = db.begin_read().map_err(failed)?;
            let table = read.open_table(ENTRIES).map_err(failed)?;
            table.len().map_err(failed)
        })
        .await
    }

    /// Settles a pending write: delivered with the vendor's answer, or dead
    /// with its error. It leaves the pending list in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be written.
    pub async fn settle(&self, ticket: Ticket, status: TicketStatus) -> Result<(), StoreError> {
        let db = self.db.clone();
        let bytes = serde_json::to_vec(&status).map_err(|e| StoreError::Record(e.to_string()))?;
        blocking(move || {
            let write = db.begin_write().map_err(failed)?;
            {
                let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                entries.remove(ticket.0).map_err(failed)?;
                let mut settled = write.open_table(SETTLED).map_err(failed)?;
                settled.insert(ticket.0, bytes.as_slice()).map_err(failed)?;
            }
            write.commit().map_err(failed)
        })
        .await
    }

    /// Where a ticket stands; `None` for a ticket this log never issued.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read.
    pub async fn status(&self, ticket: Ticket) -> Result<Option<TicketStatus>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let read = db.begin_read().map_err(failed)?;
            if read
                .open_table(ENTRIES)
                .map_err(failed)?
                .get(ticket.0)
                .map_err(failed)?
                .is_some()
            {
                return Ok(Some(TicketStatus::Pending));
            }
            let settled = read.open_table(SETTLED).map_err(failed)?;
            match settled.get(ticket.0).map_err(failed)? {
                Some(bytes) => serde_json::from_slice(bytes.value())
                    .map(Some)
                    .map_err(|e| StoreError::Record(e.to_string())),
                None => Ok(None),
            }
        })
        .await
    }
}

impl Drop for WriteAheadLog {
    fn drop(&mut self) {
        drop(self.appends.take());
        if let Some(committer) = self.committer.take() {
            // The committer finishes the appends already queued, then ends.
            let _ = committer.join();
        }
    }
}

impl std::fmt::Debug for WriteAheadLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAheadLog").finish_non_exhaustive()
    }
}

/// The committer: takes every append waiting, commits them together, then
/// acknowledges each. Ends when the log is dropped.
fn commit_loop(db: &Database, queue: &mpsc::Receiver<Append>, mut next: u64) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let result = (|| {
            let write = db.begin_write().map_err(failed)?;
            let first_seq = next;
            {
                let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                for (offset, (bytes, _)) in batch.iter().enumerate() {
                    entries
                        .insert(first_seq + offset as u64, bytes.as_slice())
                        .map_err(failed)?;
                }
                let mut meta = write.open_table(META).map_err(failed)?;
                meta.insert("next", first_seq + batch.len() as u64)
                    .map_err(failed)?;
            }
            write.commit().map_err(failed)?;
            Ok::<u64, StoreError>(first_seq)
        })();
        match result {
            Ok(first_seq) => {
                next = first_seq + batch.len() as u64;
                for (offset, (_, done)) in batch.into_iter().enumerate() {
                    let _ = done.send(Ok(Ticket(first_seq + offset as u64)));
                }
            }
            Err(error) => {
                for (_, done) in batch {
                    let _ = done.send(Err(StoreError::Embedded(error.to_string())));
                }
            }
        }
    }
}

/// Runs disk work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| failed(format!("the log's blocking task failed: {error}")))?
}
