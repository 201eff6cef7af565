//! Cached answers on disk, for an embedded runtime: a restarted process can
//! still serve the last good answers of a vendor that is down.
//!
//! Answers are written behind the call: a success hands its serialized
//! answer to a writer thread, which gathers what arrives within a short
//! window and commits it in one transaction (one fsync). Each method
//! persists a given answer at most once a second however often it is read.
//! Rows carry when the answer was given and when it expires (`max_stale`
//! later); expired rows are deleted when the store opens and then every so
//! often, so the file holds what could still be served, not every answer
//! ever given.

use std::sync::Arc;

use crate::store::handle::DbHandle;
use std::sync::mpsc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::StoreError;
use crate::wal::now_ms;

/// (method, argument hash) → stored_at_ms (8 bytes) ‖ expires_at_ms (8
/// bytes) ‖ the answer as JSON.
pub(crate) const ANSWERS: TableDefinition<'static, (&'static str, u128), &'static [u8]> =
    TableDefinition::new("cache");

/// How long the writer gathers answers before committing them.
const GATHER: Duration = Duration::from_millis(100);
/// How often expired rows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

struct Row {
    method: Arc<str>,
    key: u128,
    stored_at_ms: u64,
    expires_at_ms: u64,
    answer: Vec<u8>,
}

/// The cache table of one embedded runtime, and its writer.
pub(crate) struct DiskCache {
    db: Arc<DbHandle>,
    // Both `Some` until drop, which closes the channel and waits for the
    // writer, so the database file is free when the runtime is gone.
    rows: Option<mpsc::Sender<Row>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl DiskCache {
    pub(crate) fn open(db: Arc<DbHandle>) -> Result<Self, StoreError> {
        db.run(sweep)?;
        let (rows, queue) = mpsc::channel();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("seawall-cache".into())
            .spawn(move || write_loop(&writer_db, &queue))
            .map_err(failed)?;
        Ok(Self {
            db,
            rows: Some(rows),
            writer: Some(writer),
        })
    }

    /// Hands an answer to the writer; never waits for the disk.
    pub(crate) fn put(
        &self,
        method: &Arc<str>,
        key: u128,
        stored_at_ms: u64,
        max_stale: Duration,
        answer: Vec<u8>,
    ) {
        let max_stale = u64::try_from(max_stale.as_millis()).unwrap_or(u64::MAX);
        if let Some(rows) = &self.rows {
            let _ = rows.send(Row {
                method: method.clone(),
                key,
                stored_at_ms,
                expires_at_ms: stored_at_ms.saturating_add(max_stale),
                answer,
            });
        }
    }

    /// The answer kept for `method` and `key`, with when it was given, if
    /// it has not expired.
    pub(crate) async fn get(
        &self,
        method: &Arc<str>,
        key: u128,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let db = self.db.clone();
        let method = method.clone();
        let found = tokio::task::spawn_blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let table = match read.open_table(ANSWERS) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(error) => return Err(failed(error)),
                };
                let row = table.get((&*method, key)).map_err(failed)?;
                Ok(row.map(|row| row.value().to_vec()))
            })
        })
        .await
        .map_err(failed)??;
        let Some(row) = found else {
            return Ok(None);
        };
        let (stored_at_ms, expires_at_ms, answer) = decode(&row)?;
        if expires_at_ms < now_ms() {
            return Ok(None);
        }
        Ok(Some((stored_at_ms, answer.to_vec())))
    }
}

fn decode(row: &[u8]) -> Result<(u64, u64, &[u8]), StoreError> {
    let corrupt = || StoreError::Record("a cached answer's row is too short".into());
    let stored_at: [u8; 8] = row
        .get(..8)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    let expires_at: [u8; 8] = row
        .get(8..16)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    Ok((
        u64::from_le_bytes(stored_at),
        u64::from_le_bytes(expires_at),
        &row[16..],
    ))
}

impl Drop for DiskCache {
    fn drop(&mut self) {
        drop(self.rows.take());
        if let Some(writer) = self.writer.take() {
            // The writer commits what it has, then ends.
            let _ = writer.join();
        }
    }
}

/// Deletes the rows that have expired.
/// Deletes the answers past their `max_stale`, a bounded batch at a time.
fn sweep(db: &Database) -> Result<(), StoreError> {
    crate::store::sweep::sweep_answers(db, now_ms()).map(drop)
}

/// Whether a stored row is past its `max_stale` at `now_ms` (a row that
/// cannot be read is, too: it can never be served).
pub(crate) fn expired(row: &[u8], now_ms: u64) -> bool {
    decode(row).map_or(true, |(_, expires_at, _)| expires_at < now_ms)
}

fn write_loop(db: &DbHandle, queue: &mpsc::Receiver<Row>) {
    let mut last_sweep = std::time::Instant::now();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let until = std::time::Instant::now() + GATHER;
        let mut closed = false;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match queue.recv_timeout(left) {
                Ok(row) => batch.push(row),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if let Err(error) = db.run(|db| commit(db, &batch)) {
            tracing::warn!(
                target: "seawall::cache",
                %error,
                answers = batch.len(),
                "could not keep cached answers on disk; they stay in memory"
            );
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = std::time::Instant::now();
            if let Err(error) = db.run(sweep) {
                tracing::warn!(target: "seawall::cache", %error, "could not sweep expired answers");
            }
        }
        if closed {
            return;
        }
    }
}

fn commit(db: &Database, batch: &[Row]) -> Result<(), StoreError> {
    let write = db.begin_write().map_err(failed)?;
    {
        let mut table = write.open_table(ANSWERS).map_err(failed)?;
        let mut bytes = Vec::new();
        for row in batch {
            bytes.clear();
            bytes.extend_from_slice(&row.stored_at_ms.to_le_bytes());
            bytes.extend_from_slice(&row.expires_at_ms.to_le_bytes());
            bytes.extend_from_slice(&row.answer);
            table
                .insert((&*row.method, row.key), bytes.as_slice())
                .map_err(failed)?;
        }
    }
    write.commit().map_err(failed)
}
