//! An embedded store directory, read and maintained without a runtime:
//! [`Store`].

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::{Entry, Listing, QueueSummary};
use crate::StoreError;
use crate::store::embedded::{FILE, IDENTITY, MANIFEST, parse_manifest};
use crate::wal::embedded::{DEAD, ENTRIES, META, MovedTo, QUARANTINE, QUARANTINE_WHY, SETTLED};
use crate::wal::{DeadLetter, Quarantined, QueuedWrite, Ticket};

/// An embedded store directory (`Runtime::embedded(dir)`'s), opened by an
/// operator's tool rather than a runtime.
///
/// A running service reads its queue through its runtime
/// ([`WriteAheadLog`](crate::wal::WriteAheadLog),
/// [`Runtime::retry_dead_letter`](crate::Runtime::retry_dead_letter)). An
/// operator with a shell on the machine, and the service stopped or
/// crashed, needs the same view of the directory it left: which writes
/// wait, for which contract and ordering key, how often they were tried,
/// which were refused for good; and to send a dead letter again or drop
/// it. `Store` is that view, on the store's file itself, without a
/// runtime: no drain, no sweeper, no background thread.
///
/// **Why it never races a service.** redb locks the database file for as
/// long as a process has it open: a writer (every runtime) exclusively,
/// read-only handles shared. [`Store::open_read_only`] takes the shared
/// lock and [`Store::open_for_maintenance`] the exclusive one, and neither
/// waits: while a service has the directory open, both fail at once with
/// [`StoreError::Locked`], naming the file, and change nothing. Conversely
/// a service that starts while a command holds the file fails to open it
/// with the same error (commands hold it for milliseconds). A read-only
/// open never writes: it does not set undecodable records aside (it lists
/// them, see [`Listing::unreadable`]), nor write the directory's manifest,
/// nor recover a file its process left uncleanly
/// ([`StoreError::Unrecovered`]; a maintenance open recovers it, as the
/// service would on start).
///
/// **What it checks.** As the runtime does: a damaged file is
/// [`StoreError::Damaged`] (never a panic, also when redb panics on it), a
/// file that is not the database the directory held (`seawall.id`) is
/// [`StoreError::Replaced`], an empty one is damaged.
///
/// ```no_run
/// use seawall_core::admin::Store;
///
/// # fn main() -> Result<(), seawall_core::StoreError> {
/// let store = Store::open_read_only("./seawall-data")?;
/// for queue in store.queues()? {
///     println!("{}: {} pending, {} dead", queue.contract, queue.pending, queue.dead_letters);
/// }
/// drop(store);
///
/// let store = Store::open_for_maintenance("./seawall-data")?;
/// for (ticket, _) in store.dead_letters(Some("crm"))?.items {
///     let queued = store.retry_dead_letter(ticket)?;
///     println!("{ticket} queued again as {queued:?}");
/// }
/// # Ok(()) }
/// ```
pub struct Store {
    db: Handle,
    path: PathBuf,
}

enum Handle {
    ReadOnly(ReadOnlyDatabase),
    Maintenance(Database),
}

impl Store {
    /// Opens the store in `dir` to read it, sharing redb's lock with other
    /// readers: nothing is written, not even to recover the file.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] while a service (or a maintenance command)
    /// has it open; [`StoreError::Unrecovered`] when the process that had
    /// it open last was killed and the file needs recovery;
    /// [`StoreError::Damaged`] for a damaged or empty file;
    /// [`StoreError::Replaced`] when it is not the database the directory
    /// held; [`StoreError::Embedded`] when there is no store in `dir`.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open(dir.as_ref(), false)
    }

    /// Opens the store in `dir` to change it (retry or purge dead letters),
    /// holding redb's lock exclusively; recovers a file its process left
    /// uncleanly, as a runtime opening it would.
    ///
    /// # Errors
    ///
    /// As [`open_read_only`](Self::open_read_only), but for
    /// [`StoreError::Unrecovered`].
    pub fn open_for_maintenance(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open(dir.as_ref(), true)
    }

    fn open(dir: &Path, maintenance: bool) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(StoreError::Damaged {
                    path: path.into_boxed_path(),
                    detail: "the file is empty: it holds no seawall store".into(),
                });
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Embedded(format!(
                    "{}: no seawall store here (no such file; `Runtime::embedded(dir)` creates it)",
                    path.display()
                )));
            }
            Err(error) => return Err(at(&path, error)),
        }
        let opened = guarded(&path, || {
            let db = if maintenance {
                Database::open(&path).map(Handle::Maintenance)
            } else {
                ReadOnlyDatabase::open(&path).map(Handle::ReadOnly)
            };
            db.map_err(|error| opening_failed(&path, error))
        })?;
        let store = Self { db: opened, path };
        store.check_identity(dir)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it was opened for maintenance (changes are allowed).
    pub fn is_maintenance(&self) -> bool {
        matches!(self.db, Handle::Maintenance(_))
    }

    /// Each contract with writes pending or dead letters, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be read.
    pub fn queues(&self) -> Result<Vec<QueueSummary>, StoreError> {
        let pending = self.pending(None)?;
        let dead = self.dead_letters(None)?;
        let mut summaries: BTreeMap<String, (QueueSummary, BTreeSet<String>)> = BTreeMap::new();
        for (_, write) in &pending.items {
            let (summary, lanes) = summary_of(&mut summaries, &write.contract);
            summary.pending += 1;
            lanes.insert(write.lane().to_owned());
            summary.oldest_enqueued_ms = Some(
                summary
                    .oldest_enqueued_ms
                    .map_or(write.enqueued_at_ms, |oldest| {
                        oldest.min(write.enqueued_at_ms)
                    }),
            );
        }
        for (_, letter) in &dead.items {
            summary_of(&mut summaries, &letter.write.contract)
                .0
                .dead_letters += 1;
        }
        Ok(summaries
            .into_values()
            .map(|(mut summary, lanes)| {
                summary.lanes = lanes.len() as u64;
                summary
            })
            .collect())
    }

    /// The pending writes, oldest first (the order each lane delivers
    /// them in), of one contract or of all.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be read.
    pub fn pending(&self, contract: Option<&str>) -> Result<Listing<QueuedWrite>, StoreError> {
        self.list(ENTRIES, "wal", contract, |write: &QueuedWrite| {
            write.contract.as_str()
        })
    }

    /// The dead letters, oldest first, of one contract or of all.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be read.
    pub fn dead_letters(&self, contract: Option<&str>) -> Result<Listing<DeadLetter>, StoreError> {
        self.list(DEAD, "wal_dead", contract, |letter: &DeadLetter| {
            letter.write.contract.as_str()
        })
    }

    /// The records the service set aside in the quarantine, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be read.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        self.read(|read| {
            let Some(records) = open(read, QUARANTINE)? else {
                return Ok(Vec::new());
            };
            let why = open(read, QUARANTINE_WHY)?;
            let mut found = Vec::new();
            for record in records.iter().map_err(failed)? {
                let (seq, bytes) = record.map_err(failed)?;
                let reason = match &why {
                    Some(why) => why
                        .get(seq.value())
                        .map_err(failed)?
                        .map(|r| r.value().to_owned())
                        .unwrap_or_default(),
                    None => String::new(),
                };
                found.push(Quarantined {
                    ticket: Ticket(seq.value()),
                    reason,
                    bytes: bytes.value().to_vec(),
                });
            }
            Ok(found)
        })
    }

    /// What the store holds under `ticket`: a pending write, a dead letter,
    /// a settled status, or nothing (`None`: never issued, or swept).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be read.
    pub fn entry(&self, ticket: Ticket) -> Result<Option<Entry>, StoreError> {
        let unreadable = |table: &str, bytes: &[u8], error: serde_json::Error| {
            Entry::Unreadable(Quarantined {
                ticket,
                reason: format!(
                    "table `{table}`, ticket #{}: the record could not be decoded: {error}",
                    ticket.0
                ),
                bytes: bytes.to_vec(),
            })
        };
        self.read(|read| {
            if let Some(bytes) = get(read, ENTRIES, ticket.0)? {
                return Ok(Some(match serde_json::from_slice(&bytes) {
                    Ok(write) => Entry::Pending(write),
                    Err(error) => unreadable("wal", &bytes, error),
                }));
            }
            if let Some(bytes) = get(read, DEAD, ticket.0)? {
                return Ok(Some(match serde_json::from_slice(&bytes) {
                    Ok(letter) => Entry::DeadLetter(letter),
                    Err(error) => unreadable("wal_dead", &bytes, error),
                }));
            }
            if let Some(bytes) = get(read, SETTLED, ticket.0)? {
                if let Ok(moved) = serde_json::from_slice::<MovedTo>(&bytes) {
                    return Ok(Some(Entry::Moved(Ticket(moved.moved_to))));
                }
                return Ok(Some(match serde_json::from_slice(&bytes) {
                    Ok(status) => Entry::Settled(status),
                    Err(error) => unreadable("wal_settled", &bytes, error),
                }));
            }
            if let Some(bytes) = get(read, QUARANTINE, ticket.0)? {
                let reason = open(read, QUARANTINE_WHY)?
                    .and_then(|why| {
                        why.get(ticket.0)
                            .ok()
                            .flatten()
                            .map(|r| r.value().to_owned())
                    })
                    .unwrap_or_default();
                return Ok(Some(Entry::Unreadable(Quarantined {
                    ticket,
                    reason,
                    bytes,
                })));
            }
            Ok(None)
        })
    }

    /// Queues a dead letter again, as
    /// [`Runtime::retry_dead_letter`](crate::Runtime::retry_dead_letter)
    /// does: at the back of its contract's queue (behind the writes of its
    /// lane), with its original idempotency key and arguments (still
    /// sealed) and a fresh attempt count, in one transaction that also
    /// forgets the dead letter. The service delivers it when it next runs
    /// a drain of the contract. Answers the new ticket, or `None` when
    /// `ticket` is not a dead letter.
    ///
    /// # Errors
    ///
    /// [`StoreError::Embedded`] on a read-only store, or when the file
    /// cannot be written; [`StoreError::Record`] for a dead letter that
    /// cannot be decoded.
    pub fn retry_dead_letter(&self, ticket: Ticket) -> Result<Option<Ticket>, StoreError> {
        self.write(|db| {
            let write = db.begin_write().map_err(failed)?;
            let queued = {
                let mut dead = write.open_table(DEAD).map_err(failed)?;
                let Some(bytes) = dead.remove(ticket.0).map_err(failed)? else {
                    return Ok(None);
                };
                let letter: DeadLetter = serde_json::from_slice(bytes.value())
                    .map_err(|e| StoreError::Record(format!("dead letter {ticket}: {e}")))?;
                drop(bytes);
                let mut queued_write = letter.write;
                queued_write.attempts = 0;
                let record = serde_json::to_vec(&queued_write)
                    .map_err(|e| StoreError::Record(e.to_string()))?;
                let mut meta = write.open_table(META).map_err(failed)?;
                let next = meta.get("next").map_err(failed)?.map_or(1, |v| v.value());
                let mut entries = write.open_table(ENTRIES).map_err(failed)?;
                entries.insert(next, record.as_slice()).map_err(failed)?;
                meta.insert("next", next + 1).map_err(failed)?;
                Ticket(next)
            };
            write.commit().map_err(failed)?;
            Ok(Some(queued))
        })
    }

    /// Drops the dead letter under `ticket` for good, write and all (its
    /// settled status stays until swept). Answers it, or `None` when there
    /// was none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Embedded`] on a read-only store, or when the file
    /// cannot be written.
    pub fn purge_dead_letter(&self, ticket: Ticket) -> Result<Option<DeadLetter>, StoreError> {
        self.write(|db| {
            let write = db.begin_write().map_err(failed)?;
            let removed = {
                let mut dead = write.open_table(DEAD).map_err(failed)?;
                let removed = dead.remove(ticket.0).map_err(failed)?;
                removed.map(|bytes| serde_json::from_slice::<DeadLetter>(bytes.value()))
            };
            write.commit().map_err(failed)?;
            match removed {
                None => Ok(None),
                Some(Ok(letter)) => Ok(Some(letter)),
                // Dropped as asked, though it could not be read.
                Some(Err(error)) => Err(StoreError::Record(format!(
                    "dead letter {ticket} was purged, but could not be decoded: {error}"
                ))),
            }
        })
    }

    /// Drops every dead letter of `contract` (of every contract with
    /// `None`) in one transaction; answers how many. Dead letters whose
    /// contract cannot be read are dropped only with `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Embedded`] on a read-only store, or when the file
    /// cannot be written.
    pub fn purge_dead_letters(&self, contract: Option<&str>) -> Result<u64, StoreError> {
        self.write(|db| {
            let write = db.begin_write().map_err(failed)?;
            let purged = {
                let mut dead = write.open_table(DEAD).map_err(failed)?;
                let mut doomed = Vec::new();
                for letter in dead.iter().map_err(failed)? {
                    let (seq, bytes) = letter.map_err(failed)?;
                    let matches = match contract {
                        None => true,
                        Some(contract) => serde_json::from_slice::<DeadLetter>(bytes.value())
                            .is_ok_and(|letter| letter.write.contract == contract),
                    };
                    if matches {
                        doomed.push(seq.value());
                    }
                }
                for seq in &doomed {
                    dead.remove(*seq).map_err(failed)?;
                }
                doomed.len() as u64
            };
            write.commit().map_err(failed)?;
            Ok(purged)
        })
    }

    /// Records of one table, decoded, filtered by contract.
    fn list<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<'static, u64, &'static [u8]>,
        name: &'static str,
        contract: Option<&str>,
        contract_of: impl Fn(&T) -> &str,
    ) -> Result<Listing<T>, StoreError> {
        self.read(|read| {
            let mut listing = Listing {
                items: Vec::new(),
                unreadable: Vec::new(),
            };
            let Some(table) = open(read, table)? else {
                return Ok(listing);
            };
            for record in table.iter().map_err(failed)? {
                let (seq, bytes) = record.map_err(failed)?;
                match serde_json::from_slice::<T>(bytes.value()) {
                    Ok(item) => {
                        if contract.is_none_or(|c| c == contract_of(&item)) {
                            listing.items.push((Ticket(seq.value()), item));
                        }
                    }
                    Err(error) => {
                        let named = contract_named(bytes.value());
                        if contract.is_none() || named.is_none() || named.as_deref() == contract {
                            listing.unreadable.push(Quarantined {
                                ticket: Ticket(seq.value()),
                                reason: format!(
                                    "table `{name}`, ticket #{}{}: the record could not be \
                                     decoded: {error}",
                                    seq.value(),
                                    named
                                        .map(|c| format!(", contract `{c}`"))
                                        .unwrap_or_default()
                                ),
                                bytes: bytes.value().to_vec(),
                            });
                        }
                    }
                }
            }
            Ok(listing)
        })
    }

    /// Runs a read transaction; a panic inside redb (a damaged file) is
    /// [`StoreError::Damaged`].
    fn read<T>(
        &self,
        work: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        guarded(&self.path, || {
            let read = match &self.db {
                Handle::ReadOnly(db) => db.begin_read(),
                Handle::Maintenance(db) => db.begin_read(),
            }
            .map_err(|error| at(&self.path, error))?;
            work(&read)
        })
    }

    /// Runs a change on a store opened for maintenance.
    fn write<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Handle::Maintenance(db) = &self.db else {
            return Err(StoreError::Embedded(format!(
                "{}: opened read-only; open it for maintenance to change it",
                self.path.display()
            )));
        };
        guarded(&self.path, || work(db))
    }

    /// Refuses a database that is not the one the directory's manifest
    /// names, as the runtime does (without writing either).
    fn check_identity(&self, dir: &Path) -> Result<(), StoreError> {
        let stored = self.read(|read| {
            let table = match read.open_table(IDENTITY) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(failed(error)),
            };
            Ok(table
                .get("database")
                .map_err(failed)?
                .map(|id| id.value().to_owned()))
        })?;
        let manifest_path = dir.join(MANIFEST);
        let expected = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => parse_manifest(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(at(&manifest_path, error)),
        };
        match (expected, stored) {
            (None, _) => Err(StoreError::Embedded(format!(
                "{}: not a seawall manifest (expected {{\"database\": \"<id>\"}})",
                manifest_path.display()
            ))),
            (Some(expected), Some(id)) if id == expected => Ok(()),
            (Some(expected), found) => Err(StoreError::Replaced {
                path: self.path.clone().into_boxed_path(),
                detail: match found {
                    None => format!(
                        "this directory held seawall database {expected}, but the file holds no \
                         seawall database now (emptied, or deleted and re-created?)"
                    ),
                    Some(id) => format!(
                        "this directory held seawall database {expected}, but the file is \
                         database {id} (copied from elsewhere?)"
                    ),
                },
            }),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("maintenance", &self.is_maintenance())
            .finish()
    }
}

fn opening_failed(path: &Path, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.into() },
        redb::DatabaseError::RepairAborted => StoreError::Unrecovered { path: path.into() },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
            StoreError::Damaged {
                path: path.into(),
                detail,
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(error))
            if error.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            StoreError::Damaged {
                path: path.into(),
                detail: format!("it is shorter than its header says ({error})"),
            }
        }
        error => at(path, error),
    }
}

/// Runs `work`, answering a panic inside redb as a damaged file: an answer
/// about the file, not a bug to crash on.
fn guarded<T>(path: &Path, work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        Err(StoreError::Damaged {
            path: path.into(),
            detail: format!(
                "reading it failed inside redb: {}",
                crate::unwind::message(&panic)
            ),
        })
    })
}

/// The summary of `contract` and its lanes, made on first use.
fn summary_of<'a>(
    summaries: &'a mut BTreeMap<String, (QueueSummary, BTreeSet<String>)>,
    contract: &str,
) -> &'a mut (QueueSummary, BTreeSet<String>) {
    summaries.entry(contract.to_owned()).or_insert_with(|| {
        let summary = QueueSummary {
            contract: contract.to_owned(),
            pending: 0,
            lanes: 0,
            dead_letters: 0,
            oldest_enqueued_ms: None,
        };
        (summary, BTreeSet::new())
    })
}

/// A table of the store, or `None` when the store never made it.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &ReadTransaction,
    table: TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match read.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(failed(error)),
    }
}

fn get(
    read: &ReadTransaction,
    table: TableDefinition<'static, u64, &'static [u8]>,
    ticket: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(table) = open(read, table)? else {
        return Ok(None);
    };
    Ok(table
        .get(ticket)
        .map_err(failed)?
        .map(|bytes| bytes.value().to_vec()))
}

/// The contract a damaged record names, if enough of it is still JSON.
fn contract_named(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let contract = value
        .get("contract")
        .or_else(|| value.get("write")?.get("contract"))?;
    contract.as_str().map(str::to_owned)
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

fn at(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(format!("{}: {error}", path.display()))
}
