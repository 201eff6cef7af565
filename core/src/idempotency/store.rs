//! The idempotency store: for vendors that do not understand idempotency
//! keys, seawall remembers completed writes itself.
//!
//! A write with `idempotent(.., store)` first looks its key up:
//!
//! - **completed** (within `retention`): the recorded outcome is returned and
//!   the vendor is not called: the value, or for a recorded failure an
//!   [`Error::Replayed`](crate::Error::Replayed) with its class and message;
//! - **in flight** in this process: the call waits for the first one and then
//!   returns its outcome (or, with `concurrent = "reject"`, fails at once
//!   with [`Error::IdempotencyInFlight`](crate::Error::IdempotencyInFlight));
//!   either way the vendor is called once;
//! - **the same key with another payload** (the fingerprint of every
//!   argument differs): [`Error::IdempotencyConflict`](crate::Error::IdempotencyConflict),
//!   as the IETF Idempotency-Key draft answers with 422;
//! - **unknown**: the call runs, and its outcome is recorded if it completed:
//!   a success always; a permanent failure (the vendor answered "no") unless
//!   `replay_failures = false`; never a retryable failure, a vendor fault, a
//!   timeout or a rejection, which a later call should try again.
//!
//! Where the claim lives decides how far "once" reaches:
//!
//! - **without a fleet**, a call in flight is marked in this process only,
//!   and records are kept in the runtime's backend (memory or embedded);
//! - **with a fleet** ([`RuntimeBuilder::redis`](crate::RuntimeBuilder::redis)),
//!   the first call of a key in this process claims it in Redis, with a
//!   lease, and records the outcome there (see [`crate::fleet`]'s
//!   idempotency module): a duplicate on another replica waits for the
//!   record (polling, within the call's deadline) or is rejected. Duplicates
//!   within this process still wait on the first call here, so only one of
//!   them talks to Redis. When Redis is away the call fails closed with
//!   [`Error::Store`](crate::Error::Store), unless the fleet was told to fall
//!   back on the local store;
//! - **with PostgreSQL** ([`RuntimeBuilder::postgres`](crate::RuntimeBuilder::postgres)),
//!   the same, with the claim and the record in a row of the database (see
//!   [`crate::postgres`]'s idempotency module), where records outlive every
//!   replica. With both Redis and PostgreSQL, PostgreSQL holds the store.
//!
//! The shared homes sit behind one seam (`shared.rs`: a look that answers
//! the record, the claim's holder or the claim taken; a claim that renews,
//! records and releases), so the logic below is written once.
//!
//! What it does not guarantee: a crash between the vendor's answer and the
//! record leaves no record, so a repeat calls the vendor again; so does,
//! with a fleet, a replica that cannot renew its claim for a whole lease.
//! A vendor with native keys closes those gaps too.

use std::collections::HashMap;
use std::sync::Mutex;
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::policy::{OnDuplicate, StorePolicy};
use crate::store::{Backend, StoreError, Table};

/// A completed operation, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) fingerprint: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) recorded_at: u64,
    pub(crate) outcome: RecordedOutcome,
    /// When the sweeper may delete it (ms since the epoch): recorded at plus
    /// the policy's retention. Absent in records written before retention
    /// was stored, which are kept for [`UNKNOWN_RETENTION_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
}

impl Record {
    /// The record of an outcome completed now, kept for `retention`.
    fn new(fingerprint: &str, outcome: RecordedOutcome, retention: std::time::Duration) -> Self {
        let recorded_at = now_ms();
        let retention = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        Self {
            fingerprint: fingerprint.to_owned(),
            recorded_at,
            outcome,
            expires_at: Some(recorded_at.saturating_add(retention)),
        }
    }
}

/// How long a record that does not say when it expires is kept: longer than
/// any retention a policy would set for a replay.
#[cfg(feature = "embedded")]
const UNKNOWN_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Whether the stored record `bytes` is past its retention at `now_ms` (one
/// that cannot be read never replays, so it is). For the sweeper.
#[cfg(feature = "embedded")]
pub(crate) fn expired(bytes: &[u8], now_ms: u64) -> bool {
    match serde_json::from_slice::<Record>(bytes) {
        Ok(record) => {
            let expires_at = record
                .expires_at
                .unwrap_or_else(|| record.recorded_at.saturating_add(UNKNOWN_RETENTION_MS));
            expires_at < now_ms
        }
        Err(_) => true,
    }
}

/// What a completed operation answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RecordedOutcome {
    Value(serde_json::Value),
    Failure { class: String, message: String },
}

pub(crate) enum Begin<'a> {
    /// Run the call; the guard records or releases it.
    Started(InFlight<'a>),
    Completed(Record),
    Conflict,
    /// In flight elsewhere, and the policy rejects duplicates (or, with a
    /// fleet, the call's deadline passed while waiting for it).
    Rejected,
}

impl Begin<'_> {
    /// A completed write's record, for a call with `fingerprint`.
    fn judged(record: Record, fingerprint: &str) -> Self {
        if record.fingerprint == fingerprint {
            Begin::Completed(record)
        } else {
            Begin::Conflict
        }
    }
}

/// How long a duplicate waits between two looks at a claim another replica
/// holds.
#[cfg(any(feature = "redis", feature = "postgres"))]
const POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// The first call of a key in this process: its payload's fingerprint, and
/// where it publishes what the fleet answered for the duplicates waiting
/// here (the sender's drop wakes them too).
type Waiting = (String, watch::Receiver<Option<Published>>);

/// What the first call of a key in this process found in the fleet's
/// store, for the duplicates waiting on it.
#[derive(Clone, Debug)]
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres")),
    expect(dead_code, reason = "only a shared store publishes")
)]
enum Published {
    /// The key's record.
    Record(Record),
    /// The store failed (Redis away, or a record that cannot be read):
    /// the duplicates fail alike rather than each wait for Redis in turn.
    Failed(FailedStore),
}

/// A store error, as the duplicates of a call repeat it.
#[derive(Clone, Debug)]
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres")),
    expect(dead_code, reason = "only a shared store publishes")
)]
enum FailedStore {
    Redis(String),
    Postgres(String),
    Record(String),
}

impl FailedStore {
    #[cfg(any(feature = "redis", feature = "postgres"))]
    fn of(error: &StoreError) -> Self {
        match error {
            StoreError::Record(detail) => Self::Record(detail.clone()),
            StoreError::Redis(detail) => Self::Redis(detail.clone()),
            StoreError::Postgres(detail) => Self::Postgres(detail.clone()),
            other => Self::Redis(other.to_string()),
        }
    }
}

impl From<FailedStore> for StoreError {
    fn from(failed: FailedStore) -> Self {
        match failed {
            FailedStore::Redis(detail) => StoreError::Redis(detail),
            FailedStore::Postgres(detail) => StoreError::Postgres(detail),
            FailedStore::Record(detail) => StoreError::Record(detail),
        }
    }
}

/// The store of one runtime.
pub(crate) struct IdempotencyStore {
    backend: Backend,
    // Calls in flight in this process, by key: taken briefly by keyed writes
    // with a store only (never across an await), so waiters can find the
    // first call.
    in_flight: Mutex<HashMap<String, Waiting>>,
    /// Where claims and records are shared (Redis or PostgreSQL), if
    /// anywhere (set once, when the runtime is built).
    #[cfg(any(feature = "redis", feature = "postgres"))]
    shared: OnceLock<crate::idempotency::shared::Shared>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl IdempotencyStore {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            in_flight: Mutex::new(HashMap::new()),
            #[cfg(any(feature = "redis", feature = "postgres"))]
            shared: OnceLock::new(),
        }
    }

    /// Keeps claims and records in `shared` (Redis or PostgreSQL) from now
    /// on.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(crate) fn share(&self, shared: crate::idempotency::shared::Shared) {
        let _ = self.shared.set(shared);
    }

    pub(crate) fn backend_kind(&self) -> &'static str {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(shared) = self.shared.get() {
            return shared.kind();
        }
        self.backend.kind()
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn completed(
        &self,
        key: &str,
        policy: &StorePolicy,
    ) -> Result<Option<Record>, StoreError> {
        let Some(bytes) = self.backend.get(Table::Idempotency, key).await? else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Record(e.to_string()))?;
        let age = now_ms().saturating_sub(record.recorded_at);
        let retention = u64::try_from(policy.retention().as_millis()).unwrap_or(u64::MAX);
        Ok((age < retention).then_some(record))
    }

    /// Looks `key` up and claims it for a call with `fingerprint`; with a
    /// fleet, a wait for another replica's call ends at `until` (the call's
    /// deadline).
    pub(crate) async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
        until: Option<tokio::time::Instant>,
    ) -> Result<Begin<'_>, StoreError> {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(shared) = self.shared.get() {
            return self
                .begin_in_fleet(shared, key, fingerprint, policy, until)
                .await;
        }
        let _ = until;
        self.begin_here(key, fingerprint, policy).await
    }

    /// Claims `key` in this process's map: the call to run, or the first
    /// call's receiver to wait on.
    fn claim_here(
        &self,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
    ) -> Result<InFlight<'_>, Next> {
        let mut in_flight = self.in_flight();
        match in_flight.get(key) {
            Some((other, _)) if other != fingerprint => Err(Next::Answer(Answer::Conflict)),
            Some(_) if policy.on_duplicate() == OnDuplicate::Reject => {
                Err(Next::Answer(Answer::Rejected))
            }
            Some((_, done)) => Err(Next::Wait(done.clone())),
            None => {
                let (sender, receiver) = watch::channel(None);
                in_flight.insert(key.to_owned(), (fingerprint.to_owned(), receiver));
                Ok(InFlight {
                    store: self,
                    key: key.to_owned(),
                    #[cfg(any(feature = "redis", feature = "postgres"))]
                    claim: None,
                    done: sender,
                })
            }
        }
    }

    /// Without a fleet: the backend's record, or this process's claim.
    async fn begin_here(
        &self,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
    ) -> Result<Begin<'_>, StoreError> {
        // Bounded: each turn either returns or waits for a call in flight to
        // end, and calls end within their own deadline.
        loop {
            if let Some(record) = self.completed(key, policy).await? {
                return Ok(Begin::judged(record, fingerprint));
            }
            match self.claim_here(key, fingerprint, policy) {
                Ok(guard) => {
                    // A call that completed between the look-up and the claim
                    // wrote its record before letting go: look once more.
                    if let Some(record) = self.completed(key, policy).await? {
                        drop(guard);
                        return Ok(Begin::judged(record, fingerprint));
                    }
                    return Ok(Begin::Started(guard));
                }
                Err(Next::Answer(answer)) => return Ok(answer.into()),
                // The first call's guard drops its sender when it ends.
                Err(Next::Wait(mut done)) => {
                    let _ = done.changed().await;
                }
            }
        }
    }

    /// With a shared store: the first call of `key` in this process looks
    /// it up there (and claims it); duplicates here wait for that call.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    async fn begin_in_fleet(
        &self,
        shared: &crate::idempotency::shared::Shared,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
        until: Option<tokio::time::Instant>,
    ) -> Result<Begin<'_>, StoreError> {
        // Bounded: each turn returns, or waits for this process's first
        // call of the key, which ends within its own deadline (or at
        // `until`).
        let guard = loop {
            match self.claim_here(key, fingerprint, policy) {
                Ok(guard) => break guard,
                Err(Next::Answer(answer)) => return Ok(answer.into()),
                Err(Next::Wait(mut done)) => {
                    let ended = match until {
                        Some(until) => tokio::time::timeout_at(until, done.changed()).await.is_ok(),
                        None => {
                            let _ = done.changed().await;
                            true
                        }
                    };
                    if !ended {
                        return Ok(Begin::Rejected);
                    }
                    // The first call found or made the record (or found
                    // the store failing): its answer, without another look
                    // at Redis.
                    let published = done.borrow().clone();
                    match published {
                        Some(Published::Record(record)) => {
                            return Ok(Begin::judged(record, fingerprint));
                        }
                        Some(Published::Failed(failed)) => return Err(failed.into()),
                        None => {}
                    }
                }
            }
        };
        self.begin_with_fleet(shared, guard, key, fingerprint, policy, until)
            .await
    }

    /// This process's first call of `key` in the fleet: the record, a
    /// conflict, a wait for (or rejection of) another replica's call, or
    /// the claim.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    async fn begin_with_fleet<'a>(
        &'a self,
        shared: &crate::idempotency::shared::Shared,
        mut guard: InFlight<'a>,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
        until: Option<tokio::time::Instant>,
    ) -> Result<Begin<'a>, StoreError> {
        use crate::idempotency::shared::Seen;
        // Bounded: another replica holds the claim only while its call runs
        // (renewing it) or for one lease after it died, and the wait ends at
        // `until` in any case.
        loop {
            let seen = match shared.begin(key, fingerprint).await {
                Ok(seen) => seen,
                Err(error) if shared.local_when_away() => {
                    tracing::warn!(
                        target: "seawall::idempotency",
                        %key,
                        %error,
                        "{} is away: this keyed write runs on the local store (once per key in this replica only)",
                        shared.name()
                    );
                    if let Some(record) = self.completed(key, policy).await? {
                        return Ok(Begin::judged(record, fingerprint));
                    }
                    return Ok(Begin::Started(guard));
                }
                Err(error) => {
                    guard.publish(Published::Failed(FailedStore::of(&error)));
                    return Err(error);
                }
            };
            match seen {
                Seen::Recorded(bytes) => {
                    let record: Record = match serde_json::from_slice(&bytes) {
                        Ok(record) => record,
                        Err(error) => {
                            let error = StoreError::Record(error.to_string());
                            guard.publish(Published::Failed(FailedStore::of(&error)));
                            return Err(error);
                        }
                    };
                    guard.publish(Published::Record(record.clone()));
                    return Ok(Begin::judged(record, fingerprint));
                }
                Seen::Held { fingerprint: other } if other != fingerprint => {
                    return Ok(Begin::Conflict);
                }
                Seen::Held { .. } if policy.on_duplicate() == OnDuplicate::Reject => {
                    return Ok(Begin::Rejected);
                }
                Seen::Held { .. } => {
                    let now = tokio::time::Instant::now();
                    let pause = match until {
                        Some(until) if until <= now => return Ok(Begin::Rejected),
                        Some(until) => POLL.min(until - now),
                        None => POLL,
                    };
                    tokio::time::sleep(pause).await;
                }
                Seen::Claimed(claim) => {
                    guard.claim = Some(claim);
                    return Ok(Begin::Started(guard));
                }
            }
        }
    }

    pub(crate) async fn record(
        &self,
        key: &str,
        fingerprint: &str,
        outcome: RecordedOutcome,
        retention: std::time::Duration,
    ) -> Result<(), StoreError> {
        let record = Record::new(fingerprint, outcome, retention);
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Record(e.to_string()))?;
        self.backend.put(Table::Idempotency, key, bytes).await
    }
}

/// What a duplicate in this process does next.
enum Next {
    Answer(Answer),
    Wait(watch::Receiver<Option<Published>>),
}

/// An answer found without running the call nor reading a record.
enum Answer {
    Conflict,
    Rejected,
}

impl From<Answer> for Begin<'_> {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Conflict => Begin::Conflict,
            Answer::Rejected => Begin::Rejected,
        }
    }
}

/// A call in flight: while it lives, duplicates wait; dropping it (after the
/// outcome is recorded, or when the call is abandoned or cancelled) lets
/// them look again. With a fleet it holds the key's claim in Redis too,
/// released when it drops.
pub(crate) struct InFlight<'a> {
    store: &'a IdempotencyStore,
    key: String,
    #[cfg(any(feature = "redis", feature = "postgres"))]
    claim: Option<crate::idempotency::shared::Claim>,
    // Dropped after the claim (fields drop in order), so that the waiters
    // it wakes find the claim already let go of, where they can.
    #[cfg_attr(
        not(any(feature = "redis", feature = "postgres")),
        expect(dead_code, reason = "its drop wakes the waiters")
    )]
    done: watch::Sender<Option<Published>>,
}

impl InFlight<'_> {
    /// Records the call's outcome where its claim is: in Redis, also
    /// letting go of the claim, or in the runtime's backend.
    pub(crate) async fn record(
        &mut self,
        fingerprint: &str,
        outcome: RecordedOutcome,
        retention: std::time::Duration,
    ) -> Result<(), StoreError> {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        if let Some(claim) = &mut self.claim {
            let record = Record::new(fingerprint, outcome, retention);
            let bytes =
                serde_json::to_vec(&record).map_err(|e| StoreError::Record(e.to_string()))?;
            claim.record(bytes, retention).await?;
            self.publish(Published::Record(record));
            return Ok(());
        }
        self.store
            .record(&self.key, fingerprint, outcome, retention)
            .await
    }

    /// Ends the call: with a fleet, lets go of a claim that no record
    /// released (waiting for Redis, so that a duplicate here finds the key
    /// free); then wakes the duplicates.
    pub(crate) async fn finish(self) {
        #[cfg(any(feature = "redis", feature = "postgres"))]
        {
            let mut this = self;
            if let Some(claim) = &mut this.claim {
                claim.release().await;
            }
        }
    }

    /// Hands what the fleet answered to the duplicates waiting in this
    /// process.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    fn publish(&self, published: Published) {
        self.done.send_replace(Some(published));
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.store.in_flight().remove(&self.key);
        // The claim and then `done` drop after this: the claim is released
        // (if still held) and every waiter wakes and looks again.
    }
}
