//! The last-known-good cache shared by a fleet: answers written to Redis
//! behind the call, read when a replica's vendor fails and it has no answer
//! of its own.
//!
//! A success hands its serialized answer to a channel (never waiting: a full
//! channel drops the write, which costs a later miss, not latency); a task on
//! the fleet's thread gathers what arrives for a moment and writes it in one
//! pipeline, each key expiring after the method's `max_stale`. A value is
//! the time it was given (8 bytes, milliseconds since the epoch, little
//! endian) followed by the answer as JSON.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Fleet;
use crate::StoreError;

/// How many answers may wait for the writer before new ones are dropped.
const QUEUE: usize = 4096;
/// How long the writer gathers answers before writing them.
const GATHER: Duration = Duration::from_millis(50);
/// The most answers in one pipeline.
const BATCH: usize = 256;

struct Write {
    key: String,
    value: Vec<u8>,
    expires_ms: u64,
}

/// The fleet's cache, for every cached method of one runtime.
pub(crate) struct FleetCache {
    fleet: Arc<Fleet>,
    writes: mpsc::Sender<Write>,
}

impl FleetCache {
    pub(crate) fn new(fleet: &Arc<Fleet>) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        fleet.spawn(write_loop(Arc::downgrade(fleet), queue));
        Self {
            fleet: fleet.clone(),
            writes,
        }
    }

    fn key(&self, method: &str, key: u128) -> String {
        self.fleet.key("cache", method, &format!("{key:032x}"))
    }

    /// Hands an answer to the writer; never waits.
    pub(crate) fn put(
        &self,
        method: &Arc<str>,
        key: u128,
        stored_at_ms: u64,
        max_stale: Duration,
        answer: Vec<u8>,
    ) {
        let mut value = Vec::with_capacity(8 + answer.len());
        value.extend_from_slice(&stored_at_ms.to_le_bytes());
        value.extend_from_slice(&answer);
        let write = Write {
            key: self.key(method, key),
            value,
            expires_ms: u64::try_from(max_stale.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        };
        if self.writes.try_send(write).is_err() {
            tracing::debug!(target: "seawall::fleet", "the fleet's cache writer is behind; an answer is kept locally only");
        }
    }

    /// The answer the fleet keeps for `method` and `key`, with when it was
    /// given.
    ///
    /// # Errors
    ///
    /// [`StoreError::Redis`] when Redis does not answer in time;
    /// [`StoreError::Record`] for a value too short to hold its time.
    pub(crate) async fn get(
        &self,
        method: &Arc<str>,
        key: u128,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let key = self.key(method, key);
        let found: Option<Vec<u8>> = self
            .fleet
            .run(move |mut connection| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let Some(value) = found else {
            return Ok(None);
        };
        let Some((at, answer)) = value.split_first_chunk::<8>() else {
            return Err(StoreError::Record(
                "a cached answer in Redis is too short".into(),
            ));
        };
        Ok(Some((u64::from_le_bytes(*at), answer.to_vec())))
    }
}

async fn write_loop(fleet: Weak<Fleet>, mut queue: mpsc::Receiver<Write>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(write)) => batch.push(write),
                Ok(None) | Err(_) => break,
            }
        }
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        let written = fleet
            .run(move |mut connection| async move {
                let mut pipe = redis::pipe();
                for write in &batch {
                    pipe.cmd("SET")
                        .arg(&write.key)
                        .arg(&write.value)
                        .arg("PX")
                        .arg(write.expires_ms)
                        .ignore();
                }
                pipe.query_async::<()>(&mut connection).await
            })
            .await;
        if let Err(error) = written {
            tracing::debug!(target: "seawall::fleet", %error, "cached answers not shared with the fleet");
        }
    }
}
