//! Operating seawall's queue from outside the service: what the `seawall`
//! command-line tool does with an embedded store directory or with the
//! PostgreSQL outbox.
//!
//! A running service reads its queue through its runtime
//! ([`WriteAheadLog`](crate::wal::WriteAheadLog),
//! [`Runtime::retry_dead_letter`](crate::Runtime::retry_dead_letter)). An
//! operator needs the same view without one: which writes wait, for which
//! contract and ordering key, how often they were tried, which were refused
//! for good; and to send a dead letter again or drop it. Two readers give
//! it, each on the queue's own storage, starting nothing (no drain, no
//! sweeper, no background thread), with the same answers ([`QueueSummary`],
//! [`Listing`], [`Entry`]):
//!
//! - `Store` (feature `embedded`): a directory of `Runtime::embedded(dir)`,
//!   with its service stopped: redb's file lock keeps the two apart.
//! - `PostgresOutbox` (feature `postgres`): the `outbox` table of the
//!   runtimes built with `.postgres(..)`, while they run: reads are
//!   read-only transactions, and a retry or a purge is one transaction on
//!   rows no drain touches.
//!
//! Each type's documentation says what it guarantees while a service runs.

#[cfg(feature = "embedded")]
mod embedded;
#[cfg(feature = "postgres")]
mod postgres;

#[cfg(feature = "embedded")]
pub use embedded::Store;
#[cfg(feature = "postgres")]
pub use postgres::PostgresOutbox;

use crate::wal::{DeadLetter, Quarantined, QueuedWrite, Ticket, TicketStatus};

/// One contract's writes in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSummary {
    /// The contract.
    pub contract: String,
    /// Writes waiting for delivery.
    pub pending: u64,
    /// Of those, how many distinct ordering keys (`order_by`) they wait in;
    /// the writes without one count as one lane.
    pub lanes: u64,
    /// Writes refused for good, kept as dead letters.
    pub dead_letters: u64,
    /// When the oldest pending write was queued, in milliseconds since the
    /// Unix epoch.
    pub oldest_enqueued_ms: Option<u64>,
}

/// Records read from one of the store's tables, oldest first, and the ones
/// among them that could not be decoded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Listing<T> {
    /// The records, each under its ticket.
    pub items: Vec<(Ticket, T)>,
    /// Records that could not be decoded (damaged on disk, or edited by
    /// hand): a read-only open lists them here instead of setting them
    /// aside; the service moves them to the quarantine when it next opens
    /// the store. Filtering by contract keeps those whose contract cannot be
    /// read.
    pub unreadable: Vec<Quarantined>,
}

/// What the store holds under one ticket.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// Waiting for delivery.
    Pending(QueuedWrite),
    /// Refused for good, kept with its write.
    DeadLetter(DeadLetter),
    /// Settled, its write no longer kept: delivered (with the vendor's
    /// answer) or dead (a dead letter since retried or purged). An
    /// embedded store keeps it for the runtime's `settled_retention`; the
    /// outbox keeps a delivered row (and its answer) until it is deleted
    /// by hand.
    Settled(TicketStatus),
    /// Moved to the PostgreSQL outbox, under that ticket there (a write
    /// queued while the database was away).
    Moved(Ticket),
    /// A record that could not be decoded, or one in the quarantine.
    Unreadable(Quarantined),
}
