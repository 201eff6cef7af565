//! The PostgreSQL outbox, read and maintained without a runtime:
//! [`PostgresOutbox`].

use std::future::Future;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

use super::{Entry, Listing, QueueSummary};
use crate::StoreError;
use crate::postgres::Postgres;
use crate::wal::postgres::{COLUMNS, decode, id, ms};
use crate::wal::{DeadLetter, Quarantined, QueuedWrite, Ticket, TicketStatus};

/// The oldest schema version this reader knows: the outbox with its
/// `origin` column (`0003_outbox_origin.sql`).
const VERSION: i64 = 3;

/// The outbox of queued writes in PostgreSQL (the `outbox` table of the
/// runtimes built with `.postgres(..)`), opened by an operator's tool
/// rather than a runtime: one connection, no drain, no lease, no
/// migration.
///
/// **Why it is safe while services run.** Replicas touch only *pending*
/// rows (they lease a lane in `outbox_lanes`, then settle a write with an
/// `UPDATE .. WHERE status = 'pending'`); a dead letter is a row with
/// status `dead` that no drain reads or changes. So:
///
/// - every read runs in a `READ ONLY` transaction (one statement, one
///   snapshot): it changes nothing, takes no lease, and waits for no lock
///   a drain holds;
/// - [`retry_dead_letter`](Self::retry_dead_letter) is one statement that
///   deletes the dead row and inserts its write as a new pending row (a
///   new ticket, at the back of its lane, its idempotency key and
///   arguments unchanged, attempts back to 0): the drains see either the
///   dead letter or the pending write, never both, and two retries of one
///   letter (two operators, two commands) queue it once: the second
///   `DELETE` waits for the first's row lock, then finds no row;
/// - [`purge_dead_letter`](Self::purge_dead_letter) and
///   [`purge_dead_letters`](Self::purge_dead_letters) delete dead rows
///   only, in one statement each.
///
/// The counts ([`queues`](Self::queues)) are the table's, every replica's
/// writes included. Writes a replica queued in its own embedded log while
/// the database was away are not in the outbox until that replica moves
/// them there; `Store` reads them on its stopped store.
///
/// **It never creates anything.** Connecting checks that the schema holds
/// a migrated outbox and answers [`StoreError::Postgres`] with a message
/// that says so when it does not; it does not create the schema or run a
/// migration (runtimes and [`Postgres::migrate`] do). Only the URL, the
/// [schema](Postgres::schema) and the [store timeout](Postgres::store_timeout)
/// of the [`Postgres`] it is given count: connecting and each call are
/// bounded by the timeout, and messages name the database without its
/// password.
///
/// ```no_run
/// use std::time::Duration;
/// use seawall_core::admin::PostgresOutbox;
/// use seawall_core::postgres::Postgres;
///
/// # async fn operate() -> Result<(), seawall_core::StoreError> {
/// let config = Postgres::new("postgres://ops@db.internal/billing")?
///     .schema("billing_seawall")?
///     .store_timeout(Duration::from_secs(10));
/// let outbox = PostgresOutbox::connect(&config).await?;
/// for queue in outbox.queues().await? {
///     println!("{}: {} pending, {} dead", queue.contract, queue.pending, queue.dead_letters);
/// }
/// for (ticket, _) in outbox.dead_letters(Some("crm")).await?.items {
///     let queued = outbox.retry_dead_letter(ticket).await?;
///     println!("{ticket} queued again as {queued:?}");
/// }
/// # Ok(()) }
/// ```
pub struct PostgresOutbox {
    config: Postgres,
    /// `"schema".outbox`.
    table: String,
    /// One connection: the calls of one tool run one at a time.
    connection: Mutex<PgConnection>,
}

impl PostgresOutbox {
    /// Connects to `config`'s database and checks that its schema holds a
    /// migrated outbox, creating nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the database cannot be reached, does
    /// not answer within the store timeout or refuses the connection; when
    /// the schema does not exist, holds no outbox, or was migrated by a
    /// seawall older than this reader (each said in the message).
    pub async fn connect(config: &Postgres) -> Result<Self, StoreError> {
        let options = config.options.clone().application_name("seawall-admin");
        let timeout = config.store_timeout;
        let mut connection = tokio::time::timeout(timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Postgres(format!(
                    "{}: not connected within {timeout:?}",
                    config.address()
                ))
            })?
            .map_err(|error| config.error(&error))?;
        let schema = &config.schema;
        let version = tokio::time::timeout(timeout, migrated(&mut connection, schema))
            .await
            .map_err(|_| {
                StoreError::Postgres(format!(
                    "{}: no answer within {timeout:?}",
                    config.address()
                ))
            })?
            .map_err(|error| config.error(&error))?;
        let missing = match version {
            Schema::Missing => Some(format!(
                "there is no schema `{schema}` in this database, so no seawall outbox"
            )),
            Schema::NoOutbox => Some(format!(
                "schema `{schema}` holds no seawall outbox (no table `outbox`)"
            )),
            Schema::Version(found) if found < VERSION => Some(format!(
                "schema `{schema}`'s outbox is at migration {found}, older than this tool \
                 reads ({VERSION})"
            )),
            Schema::Version(_) => None,
        };
        if let Some(missing) = missing {
            return Err(StoreError::Postgres(format!(
                "{}: {missing}. Nothing was created: this reader never creates the schema or \
                 migrates it. A runtime built with `.postgres(..)` does when it first connects, \
                 as does `Postgres::migrate`; or name the schema the services use.",
                config.address()
            )));
        }
        Ok(Self {
            table: format!("\"{schema}\".outbox"),
            config: config.clone(),
            connection: Mutex::new(connection),
        })
    }

    /// Where the outbox is, for messages: the database's host, port, name
    /// and schema, never the password.
    pub fn address(&self) -> String {
        self.config.address()
    }

    /// Each contract with writes pending or dead letters, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the database does not answer within
    /// the store timeout or refuses the query.
    pub async fn queues(&self) -> Result<Vec<QueueSummary>, StoreError> {
        let sql = format!(
            "SELECT contract, \
                    count(*) FILTER (WHERE status = 'pending') AS pending, \
                    count(DISTINCT lane) FILTER (WHERE status = 'pending') AS lanes, \
                    count(*) FILTER (WHERE status = 'dead') AS dead, \
                    (extract(epoch FROM min(enqueued_at) FILTER (WHERE status = 'pending')) \
                     * 1000)::bigint AS oldest_ms \
             FROM {} WHERE status IN ('pending', 'dead') GROUP BY contract ORDER BY contract",
            self.table
        );
        let rows = self
            .read(move |connection| {
                Box::pin(async move { sqlx::query(&sql).fetch_all(connection).await })
            })
            .await?;
        rows.iter()
            .map(|row| {
                let count = |name: &str| {
                    row.try_get::<i64, _>(name)
                        .map(|n| u64::try_from(n).unwrap_or_default())
                };
                Ok(QueueSummary {
                    contract: row.try_get("contract")?,
                    pending: count("pending")?,
                    lanes: count("lanes")?,
                    dead_letters: count("dead")?,
                    oldest_enqueued_ms: row
                        .try_get::<Option<i64>, _>("oldest_ms")?
                        .map(|ms| u64::try_from(ms).unwrap_or_default()),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|error| self.config.error(&error))
    }

    /// The pending writes, oldest first (the order each lane delivers them
    /// in), of one contract or of all.
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues).
    pub async fn pending(
        &self,
        contract: Option<&str>,
    ) -> Result<Listing<QueuedWrite>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE status = 'pending' \
             AND ($1::text IS NULL OR contract = $1) ORDER BY ticket",
            self.table
        );
        let contract = contract.map(str::to_owned);
        let rows = self
            .read(move |connection| {
                Box::pin(
                    async move { sqlx::query(&sql).bind(contract).fetch_all(connection).await },
                )
            })
            .await?;
        Ok(listing(&rows, "outbox (pending)", |row| {
            decode(row).map(|(_, write)| write)
        }))
    }

    /// The dead letters, oldest first, of one contract or of all.
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues).
    pub async fn dead_letters(
        &self,
        contract: Option<&str>,
    ) -> Result<Listing<DeadLetter>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, {SETTLED} FROM {} WHERE status = 'dead' \
             AND ($1::text IS NULL OR contract = $1) ORDER BY ticket",
            self.table
        );
        let contract = contract.map(str::to_owned);
        let rows = self
            .read(move |connection| {
                Box::pin(
                    async move { sqlx::query(&sql).bind(contract).fetch_all(connection).await },
                )
            })
            .await?;
        Ok(listing(&rows, "outbox (dead)", dead_letter))
    }

    /// What the outbox holds under `ticket`: a pending write, a dead
    /// letter, a delivered write with its answer, or nothing (`None`: never
    /// issued, or a dead letter since retried or purged).
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues).
    pub async fn entry(&self, ticket: Ticket) -> Result<Option<Entry>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, {SETTLED}, status, answer::text AS answer FROM {} \
             WHERE ticket = $1",
            self.table
        );
        let row = self
            .read(move |connection| {
                Box::pin(async move {
                    sqlx::query(&sql)
                        .bind(id(ticket))
                        .fetch_optional(connection)
                        .await
                })
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let entry = (|| -> Result<Entry, sqlx::Error> {
            let status: String = row.try_get("status")?;
            Ok(match status.as_str() {
                "pending" => Entry::Pending(decode(&row)?.1),
                "dead" => Entry::DeadLetter(dead_letter(&row)?),
                _ => {
                    let answer: Option<String> = row.try_get("answer")?;
                    Entry::Settled(TicketStatus::Delivered {
                        answer: answer
                            .and_then(|a| serde_json::from_str(&a).ok())
                            .unwrap_or(serde_json::Value::Null),
                        at_ms: ms(&row)?,
                    })
                }
            })
        })();
        Ok(Some(entry.unwrap_or_else(|error| {
            Entry::Unreadable(unreadable(ticket, "outbox", &error))
        })))
    }

    /// Queues a dead letter again, as
    /// [`Runtime::retry_dead_letter`](crate::Runtime::retry_dead_letter)
    /// does: at the back of its lane, with its original idempotency key and
    /// arguments (still sealed) and a fresh attempt count, in one statement
    /// that also deletes the dead letter (see the [type](Self) for why
    /// this cannot race a drain or another retry). Any replica draining the
    /// contract delivers it at its next read of the outbox. Answers the new
    /// ticket, or `None` when `ticket` is not a dead letter (also when
    /// another retry or purge of it came first).
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues). When the database does not answer
    /// within the store timeout, whether the letter was queued again is
    /// unknown: [`entry`](Self::entry) says.
    pub async fn retry_dead_letter(&self, ticket: Ticket) -> Result<Option<Ticket>, StoreError> {
        const MOVED: &str = "contract, method, key, lane, order_key, arguments, redacted, \
                             enqueued_at, origin";
        let table = &self.table;
        let sql = format!(
            "WITH letter AS (DELETE FROM {table} WHERE ticket = $1 AND status = 'dead' \
                             RETURNING {MOVED}) \
             INSERT INTO {table} ({MOVED}) SELECT {MOVED} FROM letter RETURNING ticket"
        );
        let queued: Option<i64> = self
            .change(move |connection| {
                Box::pin(async move {
                    sqlx::query_scalar(&sql)
                        .bind(id(ticket))
                        .fetch_optional(connection)
                        .await
                })
            })
            .await?;
        Ok(queued.map(|t| Ticket(u64::try_from(t).unwrap_or_default())))
    }

    /// Drops the dead letter under `ticket` for good, write and all.
    /// Answers it, or `None` when there was none.
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues); [`StoreError::Record`] when the letter
    /// was dropped but could not be decoded.
    pub async fn purge_dead_letter(
        &self,
        ticket: Ticket,
    ) -> Result<Option<DeadLetter>, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE ticket = $1 AND status = 'dead' RETURNING {COLUMNS}, {SETTLED}",
            self.table
        );
        let row = self
            .change(move |connection| {
                Box::pin(async move {
                    sqlx::query(&sql)
                        .bind(id(ticket))
                        .fetch_optional(connection)
                        .await
                })
            })
            .await?;
        row.map(|row| dead_letter(&row))
            .transpose()
            .map_err(|error| {
                StoreError::Record(format!(
                    "dead letter {ticket} was purged, but could not be decoded: {error}"
                ))
            })
    }

    /// Drops every dead letter of `contract` (of every contract with
    /// `None`) in one statement; answers how many.
    ///
    /// # Errors
    ///
    /// As [`queues`](Self::queues).
    pub async fn purge_dead_letters(&self, contract: Option<&str>) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE status = 'dead' AND ($1::text IS NULL OR contract = $1)",
            self.table
        );
        let contract = contract.map(str::to_owned);
        let done = self
            .change(move |connection| {
                Box::pin(async move { sqlx::query(&sql).bind(contract).execute(connection).await })
            })
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs `query` in a read-only transaction, within the store timeout.
    async fn read<T>(
        &self,
        query: impl for<'c> FnOnce(&'c mut PgConnection) -> Query<'c, T>,
    ) -> Result<T, StoreError> {
        self.bounded(async {
            let mut connection = self.connection.lock().await;
            let mut read = connection.begin_with("BEGIN READ ONLY").await?;
            let answer = query(&mut read).await?;
            read.commit().await?;
            Ok(answer)
        })
        .await
    }

    /// Runs `query`, one statement (a transaction of its own), within the
    /// store timeout.
    async fn change<T>(
        &self,
        query: impl for<'c> FnOnce(&'c mut PgConnection) -> Query<'c, T>,
    ) -> Result<T, StoreError> {
        self.bounded(async {
            let mut connection = self.connection.lock().await;
            query(&mut connection).await
        })
        .await
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let timeout = self.config.store_timeout;
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| {
                StoreError::Postgres(format!(
                    "{}: no answer within {timeout:?}",
                    self.config.address()
                ))
            })?
            .map_err(|error| self.config.error(&error))
    }
}

impl std::fmt::Debug for PostgresOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOutbox")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// One statement's future, on a borrowed connection.
type Query<'c, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// A dead letter's columns beyond the write's: its error and when.
const SETTLED: &str = "error, (extract(epoch FROM settled_at) * 1000)::bigint AS settled_ms";

/// What the schema holds.
enum Schema {
    Missing,
    NoOutbox,
    /// The outbox, and the latest migration that ran (0 if unknown).
    Version(i64),
}

/// Whether `schema` exists and holds an outbox, and its migration; reads
/// only the catalog and `_sqlx_migrations`.
async fn migrated(connection: &mut PgConnection, schema: &str) -> Result<Schema, sqlx::Error> {
    let (exists, outbox, migrations): (bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
                to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL",
    )
    .bind(schema)
    .bind(format!("\"{schema}\".outbox"))
    .bind(format!("\"{schema}\"._sqlx_migrations"))
    .fetch_one(&mut *connection)
    .await?;
    if !exists {
        return Ok(Schema::Missing);
    }
    if !outbox {
        return Ok(Schema::NoOutbox);
    }
    if !migrations {
        return Ok(Schema::Version(0));
    }
    let version: i64 = sqlx::query_scalar(&format!(
        "SELECT coalesce(max(version), 0) FROM \"{schema}\"._sqlx_migrations WHERE success"
    ))
    .fetch_one(connection)
    .await?;
    Ok(Schema::Version(version))
}

/// A row read with [`COLUMNS`] and [`SETTLED`] as its dead letter.
fn dead_letter(row: &PgRow) -> Result<DeadLetter, sqlx::Error> {
    let (_, write) = decode(row)?;
    let error: Option<String> = row.try_get("error")?;
    Ok(DeadLetter {
        write,
        error: error.unwrap_or_default(),
        at_ms: ms(row)?,
    })
}

/// Rows decoded, those that cannot be set apart.
fn listing<T>(
    rows: &[PgRow],
    table: &str,
    decode: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
) -> Listing<T> {
    let mut listing = Listing {
        items: Vec::new(),
        unreadable: Vec::new(),
    };
    for row in rows {
        let ticket = Ticket(
            row.try_get::<i64, _>("ticket")
                .ok()
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or_default(),
        );
        match decode(row) {
            Ok(item) => listing.items.push((ticket, item)),
            Err(error) => listing.unreadable.push(unreadable(ticket, table, &error)),
        }
    }
    listing
}

fn unreadable(ticket: Ticket, table: &str, error: &sqlx::Error) -> Quarantined {
    Quarantined {
        ticket,
        reason: format!(
            "{table}, ticket #{}: the row could not be decoded: {error}",
            ticket.0
        ),
        bytes: Vec::new(),
    }
}
