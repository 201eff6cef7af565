//! The idempotency store in PostgreSQL: claims and records of keyed writes
//! (`idempotent(.., store)`) in the `idempotency` table, so that a write
//! runs once per key across every replica that names the database and
//! schema, and its record survives a restart of all of them.
//!
//! One row per key (see `core/migrations/0001_idempotency.sql`):
//!
//! - a **claim** while a replica calls the vendor: a random token, the
//!   payload's fingerprint and `lease_until`, which the holder pushes on
//!   every third of the [lease](super::Postgres::claim_lease) while the
//!   call runs, and a `DELETE .. WHERE claim_token = ours` when the call
//!   ends unrecorded, is cancelled or dropped;
//! - a **record** once it completed: the same JSON record the local store
//!   keeps, and `expires_at` (now + the policy's `retention`).
//!
//! Each step is one statement, atomic by itself: the claim is an
//! `INSERT .. ON CONFLICT (key) DO UPDATE .. WHERE` the row is a claim
//! whose lease ran out or a record past its retention, so of two replicas
//! one inserts or takes the row over and the other finds it taken (the
//! row lock of `ON CONFLICT` serialises them); the record replaces the
//! claim in one upsert. Time is the database's clock (`now()`), so
//! replicas' clocks do not matter.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::Database;
use crate::idempotency::shared::{Claim as SharedClaim, Seen};
use crate::store::StoreError;

/// Takes the key if it is free, or the row is a claim whose lease ran out,
/// or a record past its retention. Answers a row when the claim is ours.
const CLAIM: &str = "
INSERT INTO idempotency AS row (key, fingerprint, claim_token, lease_until)
VALUES ($1, $2, $3, now() + $4 * interval '1 second')
ON CONFLICT (key) DO UPDATE
SET fingerprint = excluded.fingerprint, claim_token = excluded.claim_token,
    lease_until = excluded.lease_until, record = NULL, expires_at = NULL
WHERE (row.record IS NULL AND row.lease_until <= now())
   OR (row.record IS NOT NULL AND row.expires_at <= now())
RETURNING 1";

/// What holds the key when it could not be claimed.
const LOOK: &str = "SELECT fingerprint, record FROM idempotency WHERE key = $1";

/// Writes the record in place of the claim (or of whatever is there: as in
/// Redis, the completed write's record wins).
const RECORD: &str = "
INSERT INTO idempotency (key, fingerprint, record, expires_at)
VALUES ($1, $2, $3, now() + $4 * interval '1 second')
ON CONFLICT (key) DO UPDATE
SET fingerprint = excluded.fingerprint, record = excluded.record,
    expires_at = excluded.expires_at, claim_token = NULL, lease_until = NULL";

/// Pushes the lease on, if the claim is still ours.
const RENEW: &str = "
UPDATE idempotency SET lease_until = now() + $3 * interval '1 second'
WHERE key = $1 AND claim_token = $2";

/// Deletes the claim, if it is still ours.
const RELEASE: &str = "DELETE FROM idempotency WHERE key = $1 AND claim_token = $2";

/// Deletes up to 1 000 expired rows (records past their retention, claims
/// whose lease ran out a minute ago or more).
const SWEEP: &str = "
DELETE FROM idempotency WHERE key IN (
    SELECT key FROM idempotency
    WHERE (record IS NOT NULL AND expires_at < now())
       OR (record IS NULL AND lease_until < now() - interval '1 minute')
    LIMIT 1000
)";

/// How many times one look tries when the row changes under it (claimed
/// by nobody, then gone before it could be read).
const TRIES: usize = 5;

/// One look at `key`: its record, or who holds its claim, or the claim
/// taken for this call (with its lease renewed from then on).
pub(crate) async fn begin(
    db: &Arc<Database>,
    key: &str,
    fingerprint: &str,
) -> Result<Seen, StoreError> {
    let token = format!("{}:{:016x}", db.replica, rand::random::<u64>());
    let lease = db.claim_lease();
    let (owned_key, owned_fingerprint, owned_token) =
        (key.to_owned(), fingerprint.to_owned(), token.clone());
    let found = db
        .run(move |pool| async move {
            // Bounded: a few tries, each two statements.
            for _ in 0..TRIES {
                let claimed = sqlx::query(CLAIM)
                    .bind(&owned_key)
                    .bind(&owned_fingerprint)
                    .bind(&owned_token)
                    .bind(lease.as_secs_f64())
                    .fetch_optional(&pool)
                    .await?;
                if claimed.is_some() {
                    return Ok(Found::Claimed);
                }
                let row = sqlx::query(LOOK)
                    .bind(&owned_key)
                    .fetch_optional(&pool)
                    .await?;
                if let Some(row) = row {
                    let fingerprint: String = row.try_get("fingerprint")?;
                    let record: Option<String> = row.try_get("record")?;
                    return Ok(match record {
                        Some(record) => Found::Recorded(record.into_bytes()),
                        None => Found::Held { fingerprint },
                    });
                }
                // Released between the two statements: try again.
            }
            Ok(Found::Changing)
        })
        .await?;
    Ok(match found {
        Found::Claimed => Seen::Claimed(SharedClaim::Postgres(Claim::hold(
            db.clone(),
            key.to_owned(),
            fingerprint.to_owned(),
            token,
            lease,
        ))),
        Found::Recorded(record) => Seen::Recorded(record),
        Found::Held { fingerprint } => Seen::Held { fingerprint },
        // Others claim and let go of it faster than we can look: as if
        // held, for this payload; the caller looks again shortly.
        Found::Changing => Seen::Held {
            fingerprint: fingerprint.to_owned(),
        },
    })
}

enum Found {
    Claimed,
    Recorded(Vec<u8>),
    Held { fingerprint: String },
    Changing,
}

/// A claim this call holds in the database: renewed while it lives,
/// deleted when it is recorded or dropped.
pub(crate) struct Claim {
    db: Arc<Database>,
    key: String,
    fingerprint: String,
    token: String,
    /// Dropped to stop the renewal.
    renewal: Option<tokio::sync::oneshot::Sender<()>>,
    /// Whether it may still be in the database (not replaced by the
    /// record).
    held: bool,
}

impl Claim {
    fn hold(
        db: Arc<Database>,
        key: String,
        fingerprint: String,
        token: String,
        lease: Duration,
    ) -> Self {
        // On the database's thread: it needs nothing of the caller's
        // runtime, and ends when `stop` is dropped (by the record, the
        // release or the claim's drop).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let renewal = renew(db.clone(), key.clone(), token.clone(), lease);
        db.spawn(async move {
            tokio::select! {
                () = renewal => {}
                _ = stopped => {}
            }
        });
        Self {
            db,
            key,
            fingerprint,
            token,
            renewal: Some(stop),
            held: true,
        }
    }

    /// Records the completed write (`record`, kept for `retention`) in
    /// place of the claim, in one statement: no replica can see the key
    /// neither claimed nor recorded.
    pub(crate) async fn record(
        &mut self,
        record: Vec<u8>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let record = String::from_utf8(record)
            .map_err(|e| StoreError::Record(format!("a record that is not UTF-8: {e}")))?;
        let (key, fingerprint) = (self.key.clone(), self.fingerprint.clone());
        self.db
            .run(move |pool| async move {
                sqlx::query(RECORD)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(record)
                    .bind(retention.as_secs_f64())
                    .execute(&pool)
                    .await
            })
            .await?;
        self.stop_renewing();
        self.held = false;
        Ok(())
    }

    /// Lets go of the claim now (a call that ended without a record), so
    /// that the next call of the key need not wait for its lease. If the
    /// database does not answer, the drop tries again in the background.
    pub(crate) async fn release(&mut self) {
        self.stop_renewing();
        if self.held && release(&self.db, &self.key, &self.token).await {
            self.held = false;
        }
    }

    fn stop_renewing(&mut self) {
        self.renewal = None;
    }
}

/// Deletes the claim on `key` if it still holds `token`; whether the
/// database answered.
async fn release(db: &Database, key: &str, token: &str) -> bool {
    let (key, token) = (key.to_owned(), token.to_owned());
    let released = db
        .run(move |pool| async move {
            sqlx::query(RELEASE)
                .bind(key)
                .bind(token)
                .execute(&pool)
                .await
        })
        .await;
    if let Err(error) = &released {
        tracing::debug!(
            target: "seawall::idempotency",
            %error,
            "could not release a claim; it expires with its lease"
        );
    }
    released.is_ok()
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop_renewing();
        if !self.held {
            return;
        }
        // Drop cannot wait for the database: the release runs on its
        // thread, whatever runtime (or none) the caller is on.
        let db = self.db.clone();
        let key = std::mem::take(&mut self.key);
        let token = std::mem::take(&mut self.token);
        self.db.spawn(async move {
            release(&db, &key, &token).await;
        });
    }
}

/// Pushes the lease on every third of it, until the claim is dropped
/// (which ends this task) or is found to be no longer ours.
async fn renew(db: Arc<Database>, key: String, token: String, lease: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (k, t) = (key.clone(), token.clone());
        let renewed = db
            .run(move |pool| async move {
                sqlx::query(RENEW)
                    .bind(k)
                    .bind(t)
                    .bind(lease.as_secs_f64())
                    .execute(&pool)
                    .await
                    .map(|done| done.rows_affected())
            })
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(
                    target: "seawall::idempotency",
                    %key,
                    "a claim ran out before it could be renewed: another replica may call the vendor with this key too"
                );
                return;
            }
            // The database is away (the runtime said so); try again at the
            // next tick, while the lease may still hold.
            Err(_) => {}
        }
    }
}

/// Deletes expired rows, 1 000 at a time; how many.
pub(crate) fn sweep(
    pool: &PgPool,
) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, sqlx::Error>> + Send + '_>> {
    Box::pin(sweep_here(pool))
}

async fn sweep_here(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut swept = 0;
    // Bounded: each turn deletes rows that expired before it started, or
    // ends.
    loop {
        let deleted = sqlx::query(SWEEP).execute(pool).await?.rows_affected();
        swept += deleted;
        if deleted < 1000 {
            return Ok(swept);
        }
    }
}
