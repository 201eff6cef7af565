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
//! What it does not guarantee: the in-flight marker lives in this process
//! only, so two processes sharing a Redis or PostgreSQL store (a later
//! backend) or a crash between the vendor's answer and the record can still
//! let a write through twice; a vendor with native keys closes that gap too.

use std::collections::HashMap;
use std::sync::Mutex;
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
    Rejected,
}

/// The store of one runtime.
pub(crate) struct IdempotencyStore {
    backend: Backend,
    // Calls in flight in this process, by key: taken briefly by keyed writes
    // with a store only (never across an await), so waiters can find the
    // first call.
    in_flight: Mutex<HashMap<String, (String, watch::Receiver<()>)>>,
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
        }
    }

    pub(crate) fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    fn in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (String, watch::Receiver<()>)>> {
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

    pub(crate) async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        policy: &StorePolicy,
    ) -> Result<Begin<'_>, StoreError> {
        // Bounded: each turn either returns or waits for a call in flight to
        // end, and calls end within their own deadline.
        loop {
            if let Some(record) = self.completed(key, policy).await? {
                return Ok(if record.fingerprint == fingerprint {
                    Begin::Completed(record)
                } else {
                    Begin::Conflict
                });
            }
            enum Next<'a> {
                Wait(watch::Receiver<()>),
                Run(InFlight<'a>),
            }
            let next = {
                let mut in_flight = self.in_flight();
                match in_flight.get(key) {
                    Some((other, _)) if other != fingerprint => return Ok(Begin::Conflict),
                    Some(_) if policy.on_duplicate() == OnDuplicate::Reject => {
                        return Ok(Begin::Rejected);
                    }
                    Some((_, done)) => Next::Wait(done.clone()),
                    None => {
                        let (sender, receiver) = watch::channel(());
                        in_flight.insert(key.to_owned(), (fingerprint.to_owned(), receiver));
                        Next::Run(InFlight {
                            store: self,
                            key: key.to_owned(),
                            _done: sender,
                        })
                    }
                }
            };
            match next {
                Next::Run(guard) => {
                    // A call that completed between the look-up and the claim
                    // wrote its record before letting go: look once more.
                    if let Some(record) = self.completed(key, policy).await? {
                        drop(guard);
                        return Ok(if record.fingerprint == fingerprint {
                            Begin::Completed(record)
                        } else {
                            Begin::Conflict
                        });
                    }
                    return Ok(Begin::Started(guard));
                }
                // The first call's guard drops its sender when it ends.
                Next::Wait(mut done) => {
                    let _ = done.changed().await;
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
        let recorded_at = now_ms();
        let retention = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let record = Record {
            fingerprint: fingerprint.to_owned(),
            recorded_at,
            outcome,
            expires_at: Some(recorded_at.saturating_add(retention)),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Record(e.to_string()))?;
        self.backend.put(Table::Idempotency, key, bytes).await
    }
}

/// A call in flight: while it lives, duplicates wait; dropping it (after the
/// outcome is recorded, or when the call is abandoned or cancelled) lets
/// them look again.
pub(crate) struct InFlight<'a> {
    store: &'a IdempotencyStore,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.store.in_flight().remove(&self.key);
        // `_done` drops after this: every waiter wakes and looks again.
    }
}
