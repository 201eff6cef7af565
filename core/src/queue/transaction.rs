//! The transactional outbox: a write queued inside the application's own
//! database transaction, so that the application's row and the vendor write
//! commit or roll back together.
//!
//! `#[contract]` generates, for a contract with `fallback = queue` methods,
//! a trait `<Contract>Outbox` with one method per queued write, implemented
//! for [`Outbox`]. A call adds the write to the `outbox` table through the
//! application's connection (its transaction) and answers the write's
//! [`Ticket`]; nothing reaches the vendor until the transaction commits,
//! and then the drain of any runtime built with `RuntimeBuilder::postgres`
//! on that database and schema delivers it like any queued write, with its
//! idempotency key, in order with the other writes of its lane. A
//! transaction that rolls back leaves nothing behind.
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
//!     .bind(order.id).bind(order.total)
//!     .execute(&mut *tx).await?;
//! let ticket = billing.outbox(&mut *tx).create_invoice(&order.account, order.total).await?;
//! tx.commit().await?;
//! ```
//!
//! The connection must be to the database the runtime's outbox is in (the
//! insert names seawall's schema, so the connection's `search_path` does not
//! matter), and the runtime must have a PostgreSQL outbox; otherwise the
//! call fails with [`Error::Store`](crate::Error::Store) and the caller
//! decides whether to roll back.

use crate::__private_v1::args::PreparedArguments;
use crate::Error;
use crate::Resilient;
use crate::StoreError;
use crate::endpoint::Endpoint;
use crate::idempotency::IdempotencyKey;
use crate::queue::BoxFuture;
use crate::wal::{QueuedWrite, Ticket};

/// A wrapper's queued writes, added through a connection of the
/// application's (inside its transaction): see [`Resilient::outbox`] and the
/// module docs.
pub struct Outbox<'a, I, C: ?Sized> {
    wrapper: &'a Resilient<I>,
    connection: &'a mut C,
}

impl<I> Resilient<I> {
    /// Queues this wrapper's writes through `connection`, inside the
    /// transaction it is in: the write is delivered once the transaction
    /// commits, and not at all if it rolls back. `connection` is a
    /// `sqlx::PgConnection` (`&mut *tx` for a `sqlx::Transaction`), with the
    /// `postgres` feature; the methods are those of the trait
    /// `<Contract>Outbox` that `#[contract]` generates for a contract with
    /// `fallback = queue` writes. See the README's "Transactional outbox".
    pub fn outbox<'a, C: OutboxConnection + ?Sized>(
        &'a self,
        connection: &'a mut C,
    ) -> Outbox<'a, I, C> {
        Outbox {
            wrapper: self,
            connection,
        }
    }
}

impl<'a, I, C: ?Sized> Outbox<'a, I, C> {
    /// The wrapper whose writes are queued.
    #[doc(hidden)]
    pub fn __wrapper(&self) -> &'a Resilient<I> {
        self.wrapper
    }
}

impl<I, C: ?Sized> std::fmt::Debug for Outbox<'_, I, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A database connection a write can be queued on, inside the transaction
/// it is in: `sqlx::PgConnection` with the `postgres` feature.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection seawall can queue a write on",
    note = "queue a write inside a transaction with seawall's `postgres` feature and sqlx 0.8: \
            `wrapper.outbox(&mut *tx)` where `tx` is a `sqlx::Transaction<'_, sqlx::Postgres>`"
)]
pub trait OutboxConnection: Send + sealed::Sealed {
    /// Inserts `write` into `schema`'s outbox; its ticket.
    #[doc(hidden)]
    fn __insert<'c>(
        &'c mut self,
        schema: &'c str,
        write: &'c QueuedWrite,
    ) -> BoxFuture<'c, Result<Ticket, StoreError>>;
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::PgConnection {}

#[cfg(feature = "postgres")]
impl OutboxConnection for sqlx::PgConnection {
    fn __insert<'c>(
        &'c mut self,
        schema: &'c str,
        write: &'c QueuedWrite,
    ) -> BoxFuture<'c, Result<Ticket, StoreError>> {
        Box::pin(crate::wal::insert_on(self, schema, write))
    }
}

/// Adds a write of `endpoint` to the outbox through the connection `outbox`
/// holds; its ticket. Generated `<Contract>Outbox` methods call this.
///
/// # Errors
///
/// [`Error::Unrepresentable`] for redacted arguments without a sealing key;
/// [`Error::Store`] when the runtime has no PostgreSQL outbox or the insert
/// fails (the transaction is then aborted, as PostgreSQL does after any
/// failed statement).
#[doc(hidden)]
pub async fn enqueue<I, C: OutboxConnection + ?Sized>(
    outbox: &mut Outbox<'_, I, C>,
    endpoint: &Endpoint,
    key: IdempotencyKey,
    arguments: PreparedArguments,
) -> Result<Ticket, Error> {
    let Some(queue) = &endpoint.queue else {
        return Err(no_outbox(endpoint));
    };
    let write = crate::queue::stage::write(endpoint, &key, arguments);
    if let Some(reason) = queue.refusal(&write.redacted) {
        return Err(Error::Unrepresentable {
            contract: endpoint.contract.clone(),
            method: endpoint.method.clone(),
            reason: reason.into(),
        });
    }
    let Some(schema) = queue.outbox_schema() else {
        return Err(no_outbox(endpoint));
    };
    let write = queue.sealed(write).map_err(Error::Store)?;
    let ticket = outbox.connection.__insert(&schema, &write).await?;
    tracing::debug!(
        target: "seawall::queue",
        contract = %endpoint.contract,
        method = %endpoint.method,
        %ticket,
        "write added to the outbox in the caller's transaction"
    );
    Ok(ticket)
}

fn no_outbox(endpoint: &Endpoint) -> Error {
    Error::Store(StoreError::Postgres(format!(
        "{}.{} cannot be queued in a transaction: the runtime has no PostgreSQL outbox \
         (build it with `RuntimeBuilder::postgres`)",
        endpoint.contract, endpoint.method
    )))
}
