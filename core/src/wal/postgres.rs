//! The log in PostgreSQL: the outbox that several processes drain.
//!
//! Each write is a row of `outbox` (see `core/migrations/0002_outbox.sql`);
//! its ticket is the row's identity, so tickets are unique across every
//! process that names the database and schema. Appends are batched: a
//! committer task takes every append waiting at that moment and inserts
//! them in one statement, then answers each with its ticket.
//!
//! **Lanes and leases.** A process delivers a lane's writes (one lane per
//! ordering key, and one for a contract's writes without) only while it
//! holds the lane's row in `outbox_lanes`: the read that finds pending
//! lanes claims them in one `INSERT .. ON CONFLICT DO UPDATE .. WHERE` the
//! lease is its own or ran out, and each delivery first renews the lease
//! (and checks that the write is still pending). A process that dies keeps
//! its lanes for at most a lease; then the next read of another process
//! takes them over and sends the write it was delivering again, with its
//! idempotency key. Time is the database's clock.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use tokio::sync::{mpsc, oneshot};

use super::{DeadLetter, QueuedWrite, Ticket, TicketStatus};
use crate::StoreError;
use crate::postgres::Database;

/// The most appends one insert takes.
const BATCH: usize = 1024;

type Waiting = (QueuedWrite, oneshot::Sender<Result<Ticket, StoreError>>);

pub(super) struct Outbox {
    db: Arc<Database>,
    appends: mpsc::UnboundedSender<Waiting>,
}

/// A write's columns, as [`decode`] reads them (also `admin`'s reader).
pub(crate) const COLUMNS: &str = "ticket, contract, method, key, order_key, arguments::text AS arguments, \
    redacted, (extract(epoch FROM enqueued_at) * 1000)::bigint AS enqueued_ms, attempts";

const INSERT: &str = "
INSERT INTO outbox (contract, method, key, lane, order_key, arguments, redacted, enqueued_at)
SELECT c, m, k, coalesce(o, ''), o, a::jsonb, string_to_array(r, chr(31)), to_timestamp(e / 1000.0)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[])
     WITH ORDINALITY AS w(c, m, k, o, a, r, e, n)
ORDER BY n
RETURNING ticket";

/// Writes moved from a local log: as `INSERT`, with each one's origin
/// (`$8`), once.
const MOVE: &str = "
INSERT INTO outbox (contract, method, key, lane, order_key, arguments, redacted, enqueued_at, origin)
SELECT c, m, k, coalesce(o, ''), o, a::jsonb, string_to_array(r, chr(31)), to_timestamp(e / 1000.0), g
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[])
     WITH ORDINALITY AS w(c, m, k, o, a, r, e, g, n)
ORDER BY n
ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING";

/// Claims the lanes (up to `$3`) whose oldest pending write is oldest,
/// leaving out `$2`, for owner `$4`; answers the lanes claimed and the
/// contract's pending count (every process's), from one scan, and its
/// dead letters' count (every process's, and an operator's retries and
/// purges seen).
const CLAIM: &str = "
WITH pending AS (
    SELECT lane, min(ticket) AS first, count(*) AS n FROM outbox
    WHERE contract = $1 AND status = 'pending'
    GROUP BY lane
), chosen AS (
    -- Lanes another process holds are left out before the limit, so that
    -- a read claims as many free lanes as it has room for.
    SELECT p.lane FROM pending p
    LEFT JOIN outbox_lanes h ON h.contract = $1 AND h.lane = p.lane
    WHERE NOT (p.lane = ANY($2)) AND (h.lane IS NULL OR h.owner = $4 OR h.lease_until < now())
    ORDER BY p.first LIMIT $3
), claimed AS (
    INSERT INTO outbox_lanes AS l (contract, lane, owner, lease_until)
    SELECT $1, lane, $4, now() + $5 * interval '1 second' FROM chosen
    ON CONFLICT (contract, lane) DO UPDATE
    SET owner = excluded.owner, lease_until = excluded.lease_until
    WHERE l.owner = excluded.owner OR l.lease_until < now()
    RETURNING lane
)
SELECT array(SELECT lane FROM claimed) AS lanes,
       (SELECT coalesce(sum(n), 0) FROM pending)::bigint AS total,
       (SELECT count(*) FROM outbox WHERE contract = $1 AND status = 'dead')::bigint AS dead";

/// Renews the lease of the lane of ticket `$1` if `$2` holds it and the
/// write is still pending.
const HOLD: &str = "
UPDATE outbox_lanes l SET lease_until = now() + $3 * interval '1 second'
FROM outbox o
WHERE o.ticket = $1 AND o.status = 'pending' AND l.contract = o.contract
  AND l.lane = o.lane AND l.owner = $2 AND l.lease_until > now()
RETURNING 1";

/// A row read with [`COLUMNS`] as the write it holds.
pub(crate) fn decode(row: &PgRow) -> Result<(Ticket, QueuedWrite), sqlx::Error> {
    let ticket: i64 = row.try_get("ticket")?;
    let arguments: String = row.try_get("arguments")?;
    let arguments = serde_json::from_str(&arguments).map_err(|e| sqlx::Error::Decode(e.into()))?;
    let enqueued: i64 = row.try_get("enqueued_ms")?;
    let attempts: i32 = row.try_get("attempts")?;
    Ok((
        Ticket(u64::try_from(ticket).unwrap_or_default()),
        QueuedWrite {
            contract: row.try_get("contract")?,
            method: row.try_get("method")?,
            key: row.try_get("key")?,
            arguments,
            enqueued_at_ms: u64::try_from(enqueued).unwrap_or_default(),
            attempts: u32::try_from(attempts).unwrap_or_default(),
            redacted: row.try_get("redacted")?,
            order_key: row.try_get("order_key")?,
        },
    ))
}

pub(crate) fn id(ticket: Ticket) -> i64 {
    i64::try_from(ticket.0).unwrap_or(i64::MAX)
}

/// `settled_ms`, in milliseconds since the Unix epoch (0 if unset).
pub(crate) fn ms(row: &PgRow) -> Result<u64, sqlx::Error> {
    let at: Option<i64> = row.try_get("settled_ms")?;
    Ok(at.and_then(|at| u64::try_from(at).ok()).unwrap_or_default())
}

impl Outbox {
    pub(super) fn open(db: Arc<Database>) -> Self {
        let (appends, waiting) = mpsc::unbounded_channel();
        db.spawn(commit(db.clone(), waiting));
        Self { db, appends }
    }

    /// The schema the outbox is in.
    pub(super) fn schema(&self) -> &str {
        self.db.schema()
    }

    /// The lease of a lane: as long as an idempotency claim's.
    fn lease(&self) -> f64 {
        self.lease_duration().as_secs_f64()
    }

    pub(super) fn lease_duration(&self) -> std::time::Duration {
        self.db.claim_lease()
    }

    pub(super) async fn append(&self, write: QueuedWrite) -> Result<Ticket, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.appends
            .send((write, answer))
            .map_err(|_| StoreError::Postgres("the outbox is closed".to_owned()))?;
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Postgres(
                "the outbox's committer ended without an answer".to_owned(),
            ))
        })
    }

    /// Inserts writes moved from a runtime's local log (each with its
    /// local ticket), in order, each once by its origin; answers each
    /// local ticket with its outbox ticket (also for one a move cut short
    /// had inserted already).
    pub(super) async fn insert_moved(
        &self,
        writes: &[(Ticket, QueuedWrite)],
    ) -> Result<Vec<(Ticket, Ticket)>, StoreError> {
        let origins: Vec<String> = writes
            .iter()
            .map(|(ticket, write)| {
                format!(
                    "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
                    write.contract, write.method, write.key, write.enqueued_at_ms, ticket.0
                )
            })
            .collect();
        let locals: Vec<Ticket> = writes.iter().map(|(ticket, _)| *ticket).collect();
        let writes: Vec<QueuedWrite> = writes.iter().map(|(_, write)| write.clone()).collect();
        self.db
            .run(move |pool| async move {
                let mut tx = pool.begin().await?;
                let (columns, enqueued) = columns(&writes);
                let [contract, method, key, order_key, arguments, redacted] = columns;
                sqlx::query(MOVE)
                    .bind(contract)
                    .bind(method)
                    .bind(key)
                    .bind(order_key)
                    .bind(arguments)
                    .bind(redacted)
                    .bind(enqueued)
                    .bind(&origins)
                    .execute(&mut *tx)
                    .await?;
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT origin, ticket FROM outbox WHERE origin = ANY($1)")
                        .bind(&origins)
                        .fetch_all(&mut *tx)
                        .await?;
                tx.commit().await?;
                let tickets: std::collections::HashMap<String, i64> = rows.into_iter().collect();
                Ok(origins
                    .iter()
                    .zip(locals)
                    .filter_map(|(origin, local)| {
                        let ticket = u64::try_from(*tickets.get(origin)?).ok()?;
                        Some((local, Ticket(ticket)))
                    })
                    .collect())
            })
            .await
    }

    /// Claims up to `lanes` lanes of `contract` outside `skip` (at most
    /// `limit`) and reads up to `limit` pending writes of each, oldest
    /// first; also the contract's pending and dead counts (every
    /// process's).
    pub(super) async fn pending(
        &self,
        contract: &str,
        lanes: usize,
        limit: usize,
        skip: Arc<HashSet<String>>,
    ) -> Result<(Vec<(Ticket, QueuedWrite)>, u64, u64), StoreError> {
        let contract = contract.to_owned();
        let owner = self.db.replica.clone();
        let lease = self.lease();
        let claim = i64::try_from(lanes.min(limit)).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .run(move |pool| async move {
                let skip: Vec<String> = skip.iter().cloned().collect();
                let (lanes, pending, dead): (Vec<String>, i64, i64) = sqlx::query_as(CLAIM)
                    .bind(&contract)
                    .bind(&skip)
                    .bind(claim)
                    .bind(&owner)
                    .bind(lease)
                    .fetch_one(&pool)
                    .await?;
                let rows = if lanes.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM (SELECT *, row_number() OVER \
                         (PARTITION BY lane ORDER BY ticket) AS place FROM outbox \
                         WHERE contract = $1 AND status = 'pending' AND lane = ANY($2)) AS o \
                         WHERE place <= $3 ORDER BY ticket"
                    ))
                    .bind(&contract)
                    .bind(&lanes)
                    .bind(limit)
                    .fetch_all(&pool)
                    .await?
                };
                let writes = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
                let count = |n: i64| u64::try_from(n).unwrap_or_default();
                Ok((writes, count(pending), count(dead)))
            })
            .await
    }

    /// Whether this process may deliver `ticket` now: it holds its lane's
    /// lease (renewed by this call) and the write is still pending.
    pub(super) async fn hold(&self, ticket: Ticket) -> Result<bool, StoreError> {
        let owner = self.db.replica.clone();
        let lease = self.lease();
        self.db
            .run(move |pool| async move {
                let held = sqlx::query(HOLD)
                    .bind(id(ticket))
                    .bind(&owner)
                    .bind(lease)
                    .fetch_optional(&pool)
                    .await?;
                Ok(held.is_some())
            })
            .await
    }

    /// Lets go of a lane's lease, if this process holds it.
    pub(super) async fn release(&self, contract: &str, lane: &str) -> Result<(), StoreError> {
        let (contract, lane, owner) = (
            contract.to_owned(),
            lane.to_owned(),
            self.db.replica.clone(),
        );
        self.db
            .run(move |pool| async move {
                sqlx::query(
                    "DELETE FROM outbox_lanes WHERE contract = $1 AND lane = $2 AND owner = $3",
                )
                .bind(&contract)
                .bind(&lane)
                .bind(&owner)
                .execute(&pool)
                .await
                .map(drop)
            })
            .await
    }

    pub(super) async fn depth(&self) -> Result<u64, StoreError> {
        self.db
            .run(|pool| async move {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
                        .fetch_one(&pool)
                        .await?;
                Ok(u64::try_from(count).unwrap_or_default())
            })
            .await
    }

    pub(super) async fn record_attempt(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.db
            .run(move |pool| async move {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE ticket = $1 AND status = 'pending'",
                )
                .bind(id(ticket))
                .execute(&pool)
                .await
                .map(drop)
            })
            .await
    }

    /// Returns the settled write's contract, if it was pending (here: not
    /// settled by another process first).
    /// `durable`: the commit waits for the database's disk; without, it
    /// does not (`synchronous_commit = off` for that transaction alone): a
    /// crash of the database may then forget the settle, and the write is
    /// sent again with its key — what the embedded log's drain accepts
    /// between its flushes, for the same throughput.
    pub(super) async fn settle(
        &self,
        ticket: Ticket,
        status: TicketStatus,
        durable: bool,
    ) -> Result<Option<String>, StoreError> {
        let (state, answer, error, at_ms) = match status {
            TicketStatus::Pending => return Ok(None),
            TicketStatus::Delivered { answer, at_ms } => {
                ("delivered", Some(answer.to_string()), None, at_ms)
            }
            TicketStatus::Dead { error, at_ms } => ("dead", None, Some(error), at_ms),
        };
        self.db
            .run(move |pool| async move {
                sqlx::query_scalar(
                    "WITH commit AS (SELECT set_config('synchronous_commit', $6, true)) \
                     UPDATE outbox SET status = $2, answer = $3::jsonb, error = $4, \
                     settled_at = to_timestamp($5 / 1000.0) FROM commit \
                     WHERE ticket = $1 AND status = 'pending' RETURNING contract",
                )
                .bind(id(ticket))
                .bind(state)
                .bind(answer)
                .bind(error)
                .bind(at_ms as f64)
                .bind(if durable { "on" } else { "off" })
                .fetch_optional(&pool)
                .await
            })
            .await
    }

    pub(super) async fn status(&self, ticket: Ticket) -> Result<Option<TicketStatus>, StoreError> {
        self.db
            .run(move |pool| async move {
                let row = sqlx::query(
                    "SELECT status, answer::text AS answer, error, \
                     (extract(epoch FROM settled_at) * 1000)::bigint AS settled_ms \
                     FROM outbox WHERE ticket = $1",
                )
                .bind(id(ticket))
                .fetch_optional(&pool)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let status: String = row.try_get("status")?;
                Ok(Some(match status.as_str() {
                    "delivered" => {
                        let answer: Option<String> = row.try_get("answer")?;
                        TicketStatus::Delivered {
                            answer: answer
                                .and_then(|a| serde_json::from_str(&a).ok())
                                .unwrap_or(serde_json::Value::Null),
                            at_ms: ms(&row)?,
                        }
                    }
                    "dead" => TicketStatus::Dead {
                        error: row
                            .try_get::<Option<String>, _>("error")?
                            .unwrap_or_default(),
                        at_ms: ms(&row)?,
                    },
                    _ => TicketStatus::Pending,
                }))
            })
            .await
    }

    pub(super) async fn dead_letter(
        &self,
        ticket: Ticket,
    ) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self
            .dead(Some(ticket), 1)
            .await?
            .into_iter()
            .next()
            .map(|(_, letter)| letter))
    }

    pub(super) async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<(Ticket, DeadLetter)>, StoreError> {
        self.dead(None, limit).await
    }

    async fn dead(
        &self,
        ticket: Option<Ticket>,
        limit: usize,
    ) -> Result<Vec<(Ticket, DeadLetter)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .run(move |pool| async move {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS}, error, (extract(epoch FROM settled_at) * 1000)::bigint AS settled_ms \
                     FROM outbox WHERE status = 'dead' AND ($1::bigint IS NULL OR ticket = $1) \
                     ORDER BY ticket LIMIT $2"
                ))
                .bind(ticket.map(id))
                .bind(limit)
                .fetch_all(&pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let (ticket, write) = decode(row)?;
                        let error: Option<String> = row.try_get("error")?;
                        Ok((
                            ticket,
                            DeadLetter {
                                write,
                                error: error.unwrap_or_default(),
                                at_ms: ms(row)?,
                            },
                        ))
                    })
                    .collect()
            })
            .await
    }

    pub(super) async fn remove_dead(&self, ticket: Ticket) -> Result<bool, StoreError> {
        self.db
            .run(move |pool| async move {
                let done = sqlx::query("DELETE FROM outbox WHERE ticket = $1 AND status = 'dead'")
                    .bind(id(ticket))
                    .execute(&pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
            .await
    }
}

/// A runtime that goes away hands its lanes over at once, instead of
/// leaving them leased (a lane waiting out its vendor's outage, say) until
/// the lease runs out: its leases are deleted, waiting at most the store
/// timeout for the database (a runtime dropped while it is away leaves
/// them to run out).
impl Drop for Outbox {
    fn drop(&mut self) {
        let db = self.db.clone();
        let (done, finished) = std::sync::mpsc::channel();
        self.db.spawn(async move {
            let owner = db.replica.clone();
            let released = db
                .run(move |pool| async move {
                    sqlx::query("DELETE FROM outbox_lanes WHERE owner = $1")
                        .bind(&owner)
                        .execute(&pool)
                        .await
                        .map(drop)
                })
                .await;
            let _ = done.send(released);
        });
        // Bounded: on the database's own thread this waits out the timeout
        // and the lanes' leases run out as they would have.
        match finished.recv_timeout(self.db.store_timeout()) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(target: "seawall::queue", %error, "could not hand the outbox's lanes over; their leases run out");
            }
            Err(_) => {
                tracing::debug!(target: "seawall::queue", "no answer handing the outbox's lanes over; their leases run out");
            }
        }
    }
}

/// The committer: every append waiting at that moment, in one insert.
/// Bounded by the outbox's life: it ends when the sender is dropped.
async fn commit(db: Arc<Database>, mut waiting: mpsc::UnboundedReceiver<Waiting>) {
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        let writes: Vec<QueuedWrite> = batch.iter().map(|(write, _)| write.clone()).collect();
        let inserted = db.run(move |pool| insert(pool, writes)).await;
        match inserted {
            Ok(tickets) if tickets.len() == batch.len() => {
                for ((_, answer), ticket) in batch.drain(..).zip(tickets) {
                    let _ = answer.send(Ok(ticket));
                }
            }
            Ok(tickets) => {
                let error = format!(
                    "the outbox answered {} tickets for {} writes",
                    tickets.len(),
                    batch.len()
                );
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(Err(StoreError::Postgres(error.clone())));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(Err(StoreError::Postgres(error.clone())));
                }
            }
        }
    }
}

/// Inserts a batch in one statement; the tickets in the batch's order
/// (identities are drawn in the order the rows are inserted).
async fn insert(pool: PgPool, writes: Vec<QueuedWrite>) -> Result<Vec<Ticket>, sqlx::Error> {
    let (columns, enqueued) = columns(&writes);
    let [contract, method, key, order_key, arguments, redacted] = columns;
    let mut tickets: Vec<i64> = sqlx::query_scalar(INSERT)
        .bind(contract)
        .bind(method)
        .bind(key)
        .bind(order_key)
        .bind(arguments)
        .bind(redacted)
        .bind(enqueued)
        .fetch_all(&pool)
        .await?;
    tickets.sort_unstable();
    Ok(tickets
        .into_iter()
        .map(|t| Ticket(u64::try_from(t).unwrap_or_default()))
        .collect())
}

/// Inserts one write into `schema`'s outbox through the application's
/// connection (the transactional outbox): visible to the drains once the
/// connection's transaction commits. The schema is named, so the
/// connection's `search_path` does not matter.
pub(crate) async fn insert_on(
    connection: &mut PgConnection,
    schema: &str,
    write: &QueuedWrite,
) -> Result<Ticket, StoreError> {
    // `schema` was checked to be a plain name when the backend was built.
    let insert = format!(
        "INSERT INTO \"{schema}\".outbox \
         (contract, method, key, lane, order_key, arguments, redacted, enqueued_at) \
         VALUES ($1, $2, $3, coalesce($4, ''), $4, $5::text::jsonb, $6, to_timestamp($7 / 1000.0)) \
         RETURNING ticket"
    );
    let ticket: i64 = sqlx::query_scalar(&insert)
        .bind(&write.contract)
        .bind(&write.method)
        .bind(&write.key)
        .bind(&write.order_key)
        .bind(write.arguments.to_string())
        .bind(&write.redacted)
        .bind(write.enqueued_at_ms as f64)
        .fetch_one(connection)
        .await
        .map_err(|error| StoreError::Postgres(error.to_string()))?;
    Ok(Ticket(u64::try_from(ticket).unwrap_or_default()))
}

/// A batch as the inserts bind it: one array per text column (contract,
/// method, key, order key, arguments, redacted names), and the enqueue
/// times.
fn columns(writes: &[QueuedWrite]) -> ([Vec<Option<String>>; 6], Vec<f64>) {
    let mut columns: [Vec<Option<String>>; 6] = Default::default();
    let mut enqueued = Vec::with_capacity(writes.len());
    for write in writes {
        columns[0].push(Some(write.contract.clone()));
        columns[1].push(Some(write.method.clone()));
        columns[2].push(Some(write.key.clone()));
        columns[3].push(write.order_key.clone());
        columns[4].push(Some(write.arguments.to_string()));
        columns[5].push(Some(write.redacted.join("\u{1f}")));
        enqueued.push(write.enqueued_at_ms as f64);
    }
    (columns, enqueued)
}
