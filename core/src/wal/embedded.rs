//! The log in the runtime's redb file, with group commit.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::handle::DbHandle;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{DeadLetter, Quarantined, QueuedWrite, Ticket, TicketStatus, record_error};
use crate::StoreError;
use crate::store::group::GroupCommit;

/// What the log says of a settled ticket: its status, or that it was
/// moved to the PostgreSQL outbox under another ticket.
pub(super) enum Stored {
    Status(TicketStatus),
    Moved(Ticket),
}

/// The settled record of a write moved to the PostgreSQL outbox.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MovedTo {
    pub(crate) moved_to: u64,
    pub(crate) at_ms: u64,
}

pub(crate) const ENTRIES: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("wal");
pub(crate) const SETTLED: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("wal_settled");
pub(crate) const DEAD: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("wal_dead");
pub(crate) const META: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("wal_meta");
/// Records that could not be decoded at open, byte for byte, by their
/// sequence number in the table they came from.
pub(crate) const QUARANTINE: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("wal_quarantine");
/// Why each quarantined record was set aside, and where it came from.
pub(crate) const QUARANTINE_WHY: TableDefinition<'static, u64, &'static str> =
    TableDefinition::new("wal_quarantine_why");

/// The most appends one commit takes at once.
const BATCH: usize = 4096;

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

/// What opening the log found.
pub(super) struct Opened {
    next: u64,
    pub(super) pending: HashMap<String, u64>,
    pub(super) dead: HashMap<String, u64>,
    /// Records in the quarantine, from this open and earlier ones.
    pub(super) quarantined: u64,
}

/// The contract a damaged record names, if enough of it is still JSON.
fn contract_of(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let contract = value
        .get("contract")
        .or_else(|| value.get("write")?.get("contract"))?;
    contract.as_str().map(str::to_owned)
}

pub(super) struct Embedded {
    db: Arc<DbHandle>,
    /// Appends, committed together: one fsync per batch. Dropped before
    /// the final commit of `Drop`, so the appends queued are in by then.
    appends: Option<GroupCommit<Vec<u8>, Ticket>>,
}

impl Embedded {
    /// Opens the log's tables and counts the pending writes and the dead
    /// letters per contract. A record that cannot be decoded (damaged on
    /// disk, or edited by hand) is moved to the quarantine, byte for byte,
    /// and the rest open as usual.
    pub(super) fn open(db: Arc<DbHandle>) -> Result<(Self, Opened), StoreError> {
        let opened = db.run(Self::open_tables)?;
        let mut next = opened.next;

        // Each batch takes the next sequence numbers. (A batch whose commit
        // fails leaves a gap in them: tickets are unique, not contiguous.)
        let appends = GroupCommit::spawn(
            "seawall-wal",
            db.clone(),
            BATCH,
            move |write, batch: &[Vec<u8>]| {
                let first = next;
                next += batch.len() as u64;
                let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                for (offset, bytes) in batch.iter().enumerate() {
                    entries
                        .insert(first + offset as u64, bytes.as_slice())
                        .map_err(failed)?;
                }
                let mut meta = write.open_table(META).map_err(failed)?;
                meta.insert("next", next).map_err(failed)?;
                Ok((first..next).map(Ticket).collect())
            },
        )?;
        let log = Self {
            db,
            appends: Some(appends),
        };
        Ok((log, opened))
    }

    pub(super) async fn dead_letter(
        &self,
        ticket: Ticket,
    ) -> Result<Option<DeadLetter>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let dead = read.open_table(DEAD).map_err(failed)?;
                match dead.get(ticket.0).map_err(failed)? {
                    Some(bytes) => serde_json::from_slice(bytes.value())
                        .map(Some)
                        .map_err(record_error),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    pub(super) async fn remove_dead(&self, ticket: Ticket) -> Result<bool, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let write = db.begin_write().map_err(failed)?;
                let removed = {
                    let mut dead = write.open_table(DEAD).map_err(failed)?;
                    dead.remove(ticket.0).map_err(failed)?.is_some()
                };
                write.commit().map_err(failed)?;
                Ok(removed)
            })
        })
        .await
    }

    /// The records set aside at open, oldest first.
    pub(super) async fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let records = match read.open_table(QUARANTINE) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                    Err(error) => return Err(failed(error)),
                };
                let why = read.open_table(QUARANTINE_WHY).map_err(failed)?;
                let mut found = Vec::new();
                for record in records.iter().map_err(failed)?.take(limit) {
                    let (seq, bytes) = record.map_err(failed)?;
                    let reason = why
                        .get(seq.value())
                        .map_err(failed)?
                        .map(|r| r.value().to_owned())
                        .unwrap_or_default();
                    found.push(Quarantined {
                        ticket: Ticket(seq.value()),
                        reason,
                        bytes: bytes.value().to_vec(),
                    });
                }
                Ok(found)
            })
        })
        .await
    }

    /// The open's one write transaction: counts, quarantine, next ticket.
    fn open_tables(db: &Database) -> Result<Opened, StoreError> {
        let write = db.begin_write().map_err(failed)?;
        let opened = {
            let mut entries = write.open_table(ENTRIES).map_err(failed)?;
            write.open_table(SETTLED).map_err(failed)?;
            let mut dead = write.open_table(DEAD).map_err(failed)?;
            let mut quarantine = write.open_table(QUARANTINE).map_err(failed)?;
            let mut why = write.open_table(QUARANTINE_WHY).map_err(failed)?;
            let mut set_aside = Vec::new();
            let mut dead_counts = HashMap::new();
            for letter in dead.iter().map_err(failed)? {
                let (seq, bytes) = letter.map_err(failed)?;
                match serde_json::from_slice::<DeadLetter>(bytes.value()) {
                    Ok(letter) => *dead_counts.entry(letter.write.contract).or_insert(0) += 1,
                    Err(error) => set_aside.push((
                        "wal_dead",
                        seq.value(),
                        bytes.value().to_vec(),
                        error.to_string(),
                    )),
                }
            }
            let meta = write.open_table(META).map_err(failed)?;
            let next = meta.get("next").map_err(failed)?.map_or(1, |v| v.value());
            let mut counts = HashMap::new();
            for entry in entries.iter().map_err(failed)? {
                let (seq, bytes) = entry.map_err(failed)?;
                match serde_json::from_slice::<QueuedWrite>(bytes.value()) {
                    Ok(write) => *counts.entry(write.contract).or_insert(0) += 1,
                    Err(error) => set_aside.push((
                        "wal",
                        seq.value(),
                        bytes.value().to_vec(),
                        error.to_string(),
                    )),
                }
            }
            for (table, seq, bytes, error) in set_aside {
                let contract = contract_of(&bytes);
                let reason = format!(
                    "table `{table}`, ticket #{seq}{}: the record could not be decoded: {error}",
                    contract
                        .as_deref()
                        .map(|c| format!(", contract `{c}`"))
                        .unwrap_or_default()
                );
                tracing::warn!(
                    target: "seawall::queue",
                    table,
                    ticket = seq,
                    contract = contract.as_deref(),
                    %error,
                    "a stored record could not be decoded; moved to the quarantine (kept byte for byte), the rest of the log goes on"
                );
                match table {
                    "wal" => entries.remove(seq).map_err(failed)?,
                    _ => dead.remove(seq).map_err(failed)?,
                };
                quarantine.insert(seq, bytes.as_slice()).map_err(failed)?;
                why.insert(seq, reason.as_str()).map_err(failed)?;
            }
            Opened {
                next,
                pending: counts,
                dead: dead_counts,
                quarantined: quarantine.len().map_err(failed)?,
            }
        };
        write.commit().map_err(failed)?;
        Ok(opened)
    }

    pub(super) async fn append(&self, bytes: Vec<u8>) -> Result<Ticket, StoreError> {
        self.appends
            .as_ref()
            .ok_or_else(|| failed("the write-ahead log is closed"))?
            .submit(bytes)
            .await
    }

    pub(super) async fn pending(
        &self,
        contract: &str,
        limit: usize,
        skip: std::sync::Arc<std::collections::HashSet<String>>,
    ) -> Result<Vec<(Ticket, QueuedWrite)>, StoreError> {
        let db = self.db.clone();
        let contract = contract.to_owned();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let table = read.open_table(ENTRIES).map_err(failed)?;
                let mut pending = Vec::new();
                if limit == 0 {
                    return Ok(pending);
                }
                for entry in table.iter().map_err(failed)? {
                    let (seq, bytes) = entry.map_err(failed)?;
                    let write: QueuedWrite =
                        serde_json::from_slice(bytes.value()).map_err(record_error)?;
                    if write.contract == contract && !skip.contains(write.lane()) {
                        pending.push((Ticket(seq.value()), write));
                        if pending.len() == limit {
                            break;
                        }
                    }
                }
                Ok(pending)
            })
        })
        .await
    }

    pub(super) async fn depth(&self) -> Result<u64, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let table = read.open_table(ENTRIES).map_err(failed)?;
                table.len().map_err(failed)
            })
        })
        .await
    }

    pub(super) async fn record_attempt(&self, ticket: Ticket) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let write = db.begin_write().map_err(failed)?;
                {
                    let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                    let updated = match entries.get(ticket.0).map_err(failed)? {
                        Some(bytes) => {
                            let mut queued: QueuedWrite =
                                serde_json::from_slice(bytes.value()).map_err(record_error)?;
                            queued.attempts = queued.attempts.saturating_add(1);
                            Some(serde_json::to_vec(&queued).map_err(record_error)?)
                        }
                        None => None,
                    };
                    if let Some(bytes) = updated {
                        entries.insert(ticket.0, bytes.as_slice()).map_err(failed)?;
                    }
                }
                write.commit().map_err(failed)
            })
        })
        .await
    }

    /// Returns the settled write's contract, if it was pending. A settle
    /// that is not `durable` is on disk only after a later durable commit
    /// ([`flush`](Self::flush), an append, a durable settle).
    pub(super) async fn settle(
        &self,
        ticket: Ticket,
        status: TicketStatus,
        durable: bool,
    ) -> Result<Option<String>, StoreError> {
        let db = self.db.clone();
        let status_bytes = serde_json::to_vec(&status).map_err(record_error)?;
        blocking(move || {
            db.run(|db| {
                let mut write = db.begin_write().map_err(failed)?;
                if !durable {
                    write
                        .set_durability(redb::Durability::None)
                        .map_err(failed)?;
                }
                let contract = {
                    let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                    let Some(bytes) = entries.remove(ticket.0).map_err(failed)? else {
                        return Ok(None);
                    };
                    let queued: QueuedWrite =
                        serde_json::from_slice(bytes.value()).map_err(record_error)?;
                    drop(bytes);
                    let contract = queued.contract.clone();
                    if let TicketStatus::Dead { error, at_ms } = status {
                        let letter = DeadLetter {
                            write: queued,
                            error,
                            at_ms,
                        };
                        let letter = serde_json::to_vec(&letter).map_err(record_error)?;
                        let mut dead = write.open_table(DEAD).map_err(failed)?;
                        dead.insert(ticket.0, letter.as_slice()).map_err(failed)?;
                    }
                    let mut settled = write.open_table(SETTLED).map_err(failed)?;
                    settled
                        .insert(ticket.0, status_bytes.as_slice())
                        .map_err(failed)?;
                    contract
                };
                write.commit().map_err(failed)?;
                Ok(Some(contract))
            })
        })
        .await
    }

    /// Settles writes that were moved to the PostgreSQL outbox, each
    /// `(local ticket, outbox ticket)`, in one durable commit: their status
    /// is then read there. Answers how many were still pending here.
    #[cfg(feature = "postgres")]
    pub(super) async fn moved(&self, moves: Vec<(Ticket, Ticket)>) -> Result<u64, StoreError> {
        let db = self.db.clone();
        let at_ms = super::now_ms();
        blocking(move || {
            db.run(|db| {
                let write = db.begin_write().map_err(failed)?;
                let mut pending = 0;
                {
                    let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                    let mut settled = write.open_table(SETTLED).map_err(failed)?;
                    for &(from, to) in &moves {
                        if entries.remove(from.0).map_err(failed)?.is_none() {
                            continue;
                        }
                        pending += 1;
                        let record = MovedTo {
                            moved_to: to.0,
                            at_ms,
                        };
                        let bytes = serde_json::to_vec(&record).map_err(record_error)?;
                        settled.insert(from.0, bytes.as_slice()).map_err(failed)?;
                    }
                }
                write.commit().map_err(failed)?;
                Ok(pending)
            })
        })
        .await
    }

    /// Makes every earlier commit durable: one empty durable commit.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || db.run(|db| db.begin_write().map_err(failed)?.commit().map_err(failed)))
            .await
    }

    pub(super) async fn status(&self, ticket: Ticket) -> Result<Option<Stored>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                if read
                    .open_table(ENTRIES)
                    .map_err(failed)?
                    .get(ticket.0)
                    .map_err(failed)?
                    .is_some()
                {
                    return Ok(Some(Stored::Status(TicketStatus::Pending)));
                }
                let settled = read.open_table(SETTLED).map_err(failed)?;
                match settled.get(ticket.0).map_err(failed)? {
                    Some(bytes) => match serde_json::from_slice::<MovedTo>(bytes.value()) {
                        Ok(moved) => Ok(Some(Stored::Moved(Ticket(moved.moved_to)))),
                        Err(_) => serde_json::from_slice(bytes.value())
                            .map(|status| Some(Stored::Status(status)))
                            .map_err(record_error),
                    },
                    None => Ok(None),
                }
            })
        })
        .await
    }

    pub(super) async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<(Ticket, DeadLetter)>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let table = read.open_table(DEAD).map_err(failed)?;
                let mut letters = Vec::new();
                for entry in table.iter().map_err(failed)?.take(limit) {
                    let (seq, bytes) = entry.map_err(failed)?;
                    let letter: DeadLetter =
                        serde_json::from_slice(bytes.value()).map_err(record_error)?;
                    letters.push((Ticket(seq.value()), letter));
                }
                Ok(letters)
            })
        })
        .await
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // The committer finishes the appends already queued, then ends.
        drop(self.appends.take());
        // Settles made without an fsync become durable now, so a clean
        // shutdown does not send them again.
        let _ = self.db.run(|db| {
            if let Ok(write) = db.begin_write() {
                let _ = write.commit();
            }
            Ok(())
        });
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
