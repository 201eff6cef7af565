//! The embedded database behind a handle that can reopen it.
//!
//! After an I/O error (a full disk, say) redb refuses every later write
//! ("Previous I/O error occurred. Please close and re-open the database"):
//! only a new `Database` on the same file works again. Every part of the
//! runtime that uses the file (the store, the write-ahead log, the cache,
//! the sweeper) therefore takes the database from a [`DbHandle`] for each
//! operation instead of keeping it. The first I/O error marks the handle
//! degraded: operations fail at once (an append answers `NotQueued`
//! without waiting on a disk that cannot take it) until a probe is due,
//! which closes the database, opens it again and lets the operation try.
//! Probes back off from 100 ms to 5 s, so a disk that stays full costs one
//! attempt per step, and the first write after space returns recovers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use redb::Database;

use super::StoreError;
use crate::event::{Event, StoreChanged, Subscribers};

/// The first wait before reopening a degraded database, doubling per
/// failed probe up to [`PROBE_CAP`].
const PROBE_BASE: Duration = Duration::from_millis(100);
const PROBE_CAP: Duration = Duration::from_secs(5);
/// How long a reopen waits for operations still holding the old database.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct DbHandle {
    path: PathBuf,
    slot: RwLock<Option<Arc<Database>>>,
    degraded: AtomicBool,
    state: Mutex<Degraded>,
    /// The runtime's subscribers, told when it degrades and recovers (held
    /// weakly: the runtime owns this handle).
    subscribers: OnceLock<Weak<Subscribers>>,
}

#[derive(Default)]
struct Degraded {
    /// The error that degraded it.
    cause: String,
    /// Failed probes since.
    probes: u32,
    next_probe: Option<Instant>,
}

impl DbHandle {
    pub(crate) fn new(path: &Path, db: Database) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            slot: RwLock::new(Some(Arc::new(db))),
            degraded: AtomicBool::new(false),
            state: Mutex::new(Degraded::default()),
            subscribers: OnceLock::new(),
        })
    }

    /// Reports degradation and recovery to `subscribers` from now on.
    pub(crate) fn report_to(&self, subscribers: &Arc<Subscribers>) {
        let _ = self.subscribers.set(Arc::downgrade(subscribers));
    }

    fn report(&self, degraded: bool, detail: String) {
        if let Some(subscribers) = self.subscribers.get().and_then(Weak::upgrade) {
            subscribers.emit(&Event::Store(StoreChanged {
                path: self.path.clone(),
                degraded,
                detail,
            }));
        }
    }

    /// Whether the last I/O error has not been recovered from yet.
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Runs one operation on the database. While degraded it fails at once,
    /// unless a probe is due: then the database is reopened first. An I/O
    /// error from the operation degrades the handle.
    pub(crate) fn run<T>(
        &self,
        operation: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.is_degraded() {
            self.probe()?;
        }
        let db = self
            .slot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| self.unavailable("it is being reopened"))?;
        let result = operation(&db);
        drop(db);
        if let Err(error) = &result
            && needs_reopen(error)
        {
            self.degrade(error);
        }
        result
    }

    fn unavailable(&self, why: &str) -> StoreError {
        StoreError::Embedded(format!(
            "{}: the store is unavailable ({why})",
            self.path.display()
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Degraded> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn degrade(&self, error: &StoreError) {
        let mut state = self.state();
        let first = !self.degraded.swap(true, Ordering::AcqRel);
        if first {
            state.cause = error.to_string();
            state.probes = 0;
            state.next_probe = Some(Instant::now() + PROBE_BASE);
            tracing::warn!(
                target: "seawall::store",
                path = %self.path.display(),
                %error,
                "the store failed to write; it is degraded (appends fail at once) until a reopen succeeds"
            );
        }
        drop(state);
        if first {
            self.report(true, error.to_string());
        }
    }

    /// Reopens the database if a probe is due; errs while it is not.
    fn probe(&self) -> Result<(), StoreError> {
        let mut state = self.state();
        if !self.is_degraded() {
            return Ok(());
        }
        let due = state.next_probe.is_none_or(|at| Instant::now() >= at);
        if !due {
            return Err(self.unavailable(&format!("degraded after: {}", state.cause)));
        }
        let reopened = self.reopen();
        match reopened {
            Ok(()) => {
                self.degraded.store(false, Ordering::Release);
                tracing::info!(
                    target: "seawall::store",
                    path = %self.path.display(),
                    probes = state.probes + 1,
                    "the store was reopened; writes are accepted again"
                );
                let probes = state.probes + 1;
                *state = Degraded::default();
                drop(state);
                self.report(false, format!("reopened after {probes} probe(s)"));
                Ok(())
            }
            Err(error) => {
                state.probes += 1;
                let wait = PROBE_BASE
                    .saturating_mul(1 << state.probes.min(6))
                    .min(PROBE_CAP);
                state.next_probe = Some(Instant::now() + wait);
                Err(self.unavailable(&format!("reopening failed: {error}")))
            }
        }
    }

    /// Closes the database (once the operations holding it are done) and
    /// opens it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self
            .slot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = slot.take() {
            let deadline = Instant::now() + DRAIN_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if Arc::strong_count(&old) > 1 {
                *slot = Some(old);
                return Err(StoreError::Embedded(
                    "operations still hold the old database".into(),
                ));
            }
            drop(old);
        }
        let db = Database::create(&self.path)
            .map_err(|error| StoreError::Embedded(format!("{}: {error}", self.path.display())))?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

/// Whether an error means the database must be reopened before it can
/// write again: redb's `StorageError::Io` ("I/O error: ..."), or its refusal
/// after one ("Previous I/O error occurred ..."). The store's errors reach
/// here as text (each module flattens redb's errors with the file or table
/// it was working on), so this reads redb's own wording.
fn needs_reopen(error: &StoreError) -> bool {
    matches!(error, StoreError::Embedded(message) if message.contains("I/O error"))
}
