//! Retention: what the embedded store no longer needs is deleted, a bounded
//! batch at a time.
//!
//! Settled entries of the write-ahead log (delivered writes' answers, kept
//! so that `status(ticket)` can say how a write ended), idempotency records
//! past their retention and cached answers past `max_stale` would otherwise
//! grow the file for ever. Each sweep scans in a read transaction (which
//! never blocks writers) and deletes in write transactions of at most
//! [`BATCH`] rows, re-checking each row inside the transaction, so the log's
//! commits wait for one small batch at most. Dead letters and the
//! quarantine are never swept: they wait for an operator.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

/// The most rows one delete transaction takes.
pub(crate) const BATCH: usize = 1_000;

pub(crate) use super::Swept;

/// How to tell an expired row, per table.
pub(crate) struct Rules {
    /// Settled entries settled before this (ms since the epoch) go.
    pub(crate) settled_before_ms: u64,
    /// Now, for the rows that carry their own expiry.
    pub(crate) now_ms: u64,
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

/// Deletes the rows of `table` whose value `expired` says so, in batches;
/// returns how many. `own` copies a key out of the read transaction;
/// `recheck` deletes one inside a write transaction if it is still expired.
fn sweep_table<K: redb::Key + 'static, O>(
    db: &Database,
    table: TableDefinition<'static, K, &'static [u8]>,
    own: impl Fn(K::SelfType<'_>) -> O,
    expired: impl Fn(&[u8]) -> bool,
    recheck: impl Fn(&mut redb::Table<'_, K, &'static [u8]>, &O) -> Result<bool, redb::StorageError>,
) -> Result<u64, StoreError> {
    // Find them without holding the write lock.
    let mut doomed = Vec::new();
    {
        let read = db.begin_read().map_err(failed)?;
        let rows = match read.open_table(table) {
            Ok(rows) => rows,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(error) => return Err(failed(error)),
        };
        for row in rows.iter().map_err(failed)? {
            let (key, value) = row.map_err(failed)?;
            if expired(value.value()) {
                doomed.push(own(key.value()));
            }
        }
    }
    let mut deleted = 0;
    for batch in doomed.chunks(BATCH) {
        let write = db.begin_write().map_err(failed)?;
        {
            let mut rows = write.open_table(table).map_err(failed)?;
            for key in batch {
                // Written again since the scan? Then it stays.
                if recheck(&mut rows, key).map_err(failed)? {
                    deleted += 1;
                }
            }
        }
        write.commit().map_err(failed)?;
    }
    Ok(deleted)
}

/// One sweep of every table the embedded runtime keeps.
pub(crate) fn sweep(db: &Database, rules: &Rules) -> Result<Swept, StoreError> {
    Ok(Swept {
        settled: sweep_settled(db, rules.settled_before_ms)?,
        idempotency_records: sweep_records(db, rules.now_ms)?,
        cached_answers: sweep_answers(db, rules.now_ms)?,
        orphaned_writes: 0,
    })
}

/// Settled entries of the write-ahead log settled before `before_ms`.
fn sweep_settled(db: &Database, before_ms: u64) -> Result<u64, StoreError> {
    let settled_expired =
        |bytes: &[u8]| crate::wal::settled_at_ms(bytes).is_some_and(|at| at < before_ms);
    sweep_table(
        db,
        crate::wal::SETTLED_TABLE,
        |seq: u64| seq,
        settled_expired,
        |rows, seq| {
            let still = rows.get(*seq)?.is_some_and(|v| settled_expired(v.value()));
            if still {
                rows.remove(*seq)?;
            }
            Ok(still)
        },
    )
}

/// Idempotency records past their retention.
fn sweep_records(db: &Database, now_ms: u64) -> Result<u64, StoreError> {
    let record_expired = |bytes: &[u8]| crate::idempotency::expired(bytes, now_ms);
    sweep_table(
        db,
        super::embedded::definition(super::Table::Idempotency),
        |key: &str| key.to_owned(),
        record_expired,
        |rows, key| {
            let still = rows
                .get(key.as_str())?
                .is_some_and(|v| record_expired(v.value()));
            if still {
                rows.remove(key.as_str())?;
            }
            Ok(still)
        },
    )
}

/// Cached answers past their `max_stale`.
pub(crate) fn sweep_answers(db: &Database, now_ms: u64) -> Result<u64, StoreError> {
    let answer_expired = |bytes: &[u8]| crate::cache::expired(bytes, now_ms);
    sweep_table(
        db,
        crate::cache::ANSWERS_TABLE,
        |(method, key): (&str, u128)| (method.to_owned(), key),
        answer_expired,
        |rows, (method, key)| {
            let still = rows
                .get((method.as_str(), *key))?
                .is_some_and(|v| answer_expired(v.value()));
            if still {
                rows.remove((method.as_str(), *key))?;
            }
            Ok(still)
        },
    )
}

/// A thread that sweeps every `every`, until dropped.
pub(crate) struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    /// `after` runs after each sweep (the orphans' check, which needs the
    /// runtime's log).
    pub(crate) fn start(
        db: Arc<super::handle::DbHandle>,
        every: Duration,
        retention: Duration,
        after: Option<Box<dyn Fn() + Send>>,
    ) -> Result<Self, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("seawall-sweep".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let rules = rules(retention);
                    match db.run(|db| sweep(db, &rules)) {
                        Ok(swept) => tracing::debug!(target: "seawall::store", ?swept, "swept"),
                        Err(error) => {
                            tracing::warn!(target: "seawall::store", %error, "could not sweep the store");
                        }
                    }
                    if let Some(after) = &after {
                        after();
                    }
                }
            })
            .map_err(failed)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The rules of a sweep made now, keeping settled entries for `retention`.
pub(crate) fn rules(retention: Duration) -> Rules {
    let now_ms = crate::wal::now_ms();
    let retention = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    Rules {
        settled_before_ms: now_ms.saturating_sub(retention),
        now_ms,
    }
}
