//! Where the runtime keeps state that must outlive a call: one seam, one file
//! per home. Today it holds the idempotency store's completed operations;
//! the write-ahead log will live here too.
//!
//! - [`memory`]: a map in the process, gone when it ends. For tests and for
//!   services that can afford to forget.
//! - `embedded` (the `embedded` feature): a [redb](https://docs.rs/redb)
//!   database file on this machine: ACID, crash-safe, survives restarts. Its
//!   writes are durable when they return, and run on tokio's blocking pool.

#[cfg(feature = "embedded")]
pub(crate) mod embedded;
#[cfg(feature = "embedded")]
pub(crate) mod group;
#[cfg(feature = "embedded")]
pub(crate) mod handle;
pub(crate) mod memory;
#[cfg(feature = "embedded")]
pub(crate) mod sweep;

#[cfg(feature = "embedded")]
use std::path::Path;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The embedded database could not be opened, read or written.
    #[error("embedded store: {0}")]
    Embedded(String),
    /// The fleet's Redis server could not be reached, did not answer within
    /// the store timeout, or refused a command.
    #[error("redis: {0}")]
    Redis(String),
    /// The PostgreSQL database could not be reached, did not answer within
    /// the store timeout, or refused a query (or the migration).
    #[error("postgres: {0}")]
    Postgres(String),
    /// A record could not be encoded or decoded.
    #[error("a stored record could not be decoded: {0}")]
    Record(String),
    /// The database file is damaged: reading it failed in a way no retry
    /// will mend.
    #[error(
        "{}: the database is damaged ({detail}); restore it from a backup, or move it aside to \
         start with an empty one (the writes queued in it are then lost)",
        path.display()
    )]
    Damaged {
        /// The database file. (Boxed, as in `Replaced`, to keep
        /// `seawall::Error`, which every call's future carries, at 56 bytes.)
        path: Box<std::path::Path>,
        /// What went wrong reading it.
        detail: String,
    },
    /// Another process has the database file open: the running service,
    /// or another `seawall` command. redb locks the file for as long as a
    /// process has it open (one writer, or any number of read-only
    /// handles), so nothing else can change it under the owner; this is
    /// the answer to asking while it is held, never a wait.
    #[error(
        "{}: the store is in use by another process (it holds redb's lock on the file: a running \
         service, or another `seawall` command); act through that process, or stop it first",
        path.display()
    )]
    Locked {
        /// The database file.
        path: Box<std::path::Path>,
    },
    /// The database file was left open by a process that was killed (or
    /// crashed) and must be recovered before it can be read; a read-only
    /// open (`admin::Store::open_read_only`) writes nothing, so it cannot.
    /// Opening it for maintenance, or starting the service on it, recovers
    /// it (nothing acknowledged is lost).
    #[error(
        "{}: the store was not closed cleanly (its process was killed?) and needs recovery, which \
         a read-only open does not do; open it for maintenance or start the service on it, and \
         either recovers it",
        path.display()
    )]
    Unrecovered {
        /// The database file.
        path: Box<std::path::Path>,
    },
    /// The database file is not the one this directory held: it was emptied,
    /// deleted or replaced by another. Starting on it would silently forget
    /// the writes queued in the one before.
    #[error(
        "{}: {detail}; restore the file that was there, or start with this one knowingly \
         (`RuntimeBuilder::accept_new_store()`)",
        path.display()
    )]
    Replaced {
        /// The database file.
        path: Box<std::path::Path>,
        /// What was expected, and what was found.
        detail: String,
    },
}

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// Settled entries of the write-ahead log past the retention.
    pub settled: u64,
    /// Idempotency records past their retention.
    pub idempotency_records: u64,
    /// Cached answers past `max_stale`.
    pub cached_answers: u64,
    /// Queued writes of contracts no wrapper served within the grace period
    /// ([`RuntimeBuilder::orphan_grace`](crate::RuntimeBuilder::orphan_grace)),
    /// made dead letters.
    pub orphaned_writes: u64,
}

/// The backend of a runtime: a key → bytes map per table.
pub(crate) enum Backend {
    Memory(memory::Memory),
    #[cfg(feature = "embedded")]
    Embedded(embedded::Embedded),
}

impl Backend {
    pub(crate) fn memory() -> Self {
        Self::Memory(memory::Memory::default())
    }

    #[cfg(feature = "embedded")]
    pub(crate) fn embedded(dir: &Path, accept_new: bool) -> Result<Self, StoreError> {
        embedded::Embedded::open(dir, accept_new).map(Self::Embedded)
    }

    pub(crate) async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(memory.get(table, key)),
            #[cfg(feature = "embedded")]
            Self::Embedded(embedded) => embedded.get(table, key).await,
        }
    }

    pub(crate) async fn put(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                memory.put(table, key, value);
                Ok(())
            }
            #[cfg(feature = "embedded")]
            Self::Embedded(embedded) => embedded.put(table, key, value).await,
        }
    }

    /// The embedded database, if this backend has one.
    #[cfg(feature = "embedded")]
    pub(crate) fn database(&self) -> Option<std::sync::Arc<handle::DbHandle>> {
        match self {
            Self::Memory(_) => None,
            Self::Embedded(embedded) => Some(embedded.database()),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "embedded")]
            Self::Embedded(_) => "embedded",
        }
    }
}

/// The tables a backend holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    /// Completed idempotent operations, by key.
    Idempotency,
}

impl Table {
    #[cfg(feature = "embedded")]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Idempotency => "idempotency",
        }
    }
}
