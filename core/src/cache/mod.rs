//! The last-known-good cache: when a read cannot reach the vendor, answer
//! with its last good answer, and say how old it is.
//!
//! A CRM that is down for ten minutes need not take the pages that show an
//! account down with it, if an answer up to an hour old is good enough; the
//! policy says how old (`fallback = cache(max_stale = "1h")`). Every success
//! stores its answer under the call's arguments; when a call fails because
//! the vendor is unavailable (its final error is retryable or a vendor
//! fault: a timeout, an open breaker, exhausted retries or budget, a `503`,
//! a `500`), an answer no older than `max_stale` is returned instead,
//! marked stale. A permanent error (`404`, `422`) is the vendor's real
//! answer and is returned as it is.
//!
//! Methods that return `Result<Cached<T>, E>` see the age and staleness of
//! what they get; methods that return `Result<T, E>` get the value alone.
//!
//! Entries live in memory ([quick_cache](https://docs.rs/quick_cache),
//! bounded by `capacity`, evicting by its CLOCK-Pro policy), keyed by a
//! 128-bit hash of the arguments (two independent SipHash passes: a
//! collision between two different argument lists is about as likely as
//! 2⁻⁶⁴ per pair). With an in-memory runtime, storing a success costs one
//! clone of the answer and one map insert; nothing is serialized.
//!
//! With an embedded runtime (the `embedded` feature), answers are also kept
//! on disk, so a restarted process can serve them while the vendor is still
//! down: a success is serialized and handed to a writer thread (at most once
//! a second per key), which commits what it gathers every 100 ms; a miss in
//! memory on the failure path reads the disk. The argument hash is stable for one
//! build of your program; a new compiler or a changed `Hash` implementation
//! may change it, which costs misses, not wrong answers.

use std::any::Any;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::policy::CachePolicy;
use crate::wal::now_ms;

#[cfg(feature = "embedded")]
mod disk;
pub(crate) mod stage;

#[cfg(feature = "embedded")]
pub(crate) use disk::DiskCache;
#[cfg(feature = "embedded")]
pub(crate) use disk::{ANSWERS as ANSWERS_TABLE, expired};

/// Without the `embedded` feature there is no disk: a type without values,
/// so every `Option<Arc<DiskCache>>` is `None` and the in-memory cache works
/// as it does on an in-memory runtime.
#[cfg(not(feature = "embedded"))]
pub(crate) enum DiskCache {}

#[cfg(not(feature = "embedded"))]
impl DiskCache {
    pub(crate) fn put(&self, _: &Arc<str>, _: u128, _: u64, _: Duration, _: Vec<u8>) {
        match *self {}
    }

    pub(crate) async fn get(
        &self,
        _: &Arc<str>,
        _: u128,
    ) -> Result<Option<(u64, Vec<u8>)>, crate::StoreError> {
        match *self {}
    }
}

/// A read's answer, with how old it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached<T> {
    value: T,
    age: Duration,
    stale: bool,
}

impl<T> Cached<T> {
    /// An answer straight from the vendor: no age, not stale. Adapters
    /// return this (or `value.into()`).
    pub const fn fresh(value: T) -> Self {
        Self {
            value,
            age: Duration::ZERO,
            stale: false,
        }
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, owned.
    pub fn into_value(self) -> T {
        self.value
    }

    /// How long ago the vendor gave this answer (zero when fresh).
    pub fn age(&self) -> Duration {
        self.age
    }

    /// Whether this is a cached answer served because the vendor could not
    /// answer now.
    pub fn is_stale(&self) -> bool {
        self.stale
    }
}

impl<T> From<T> for Cached<T> {
    fn from(value: T) -> Self {
        Self::fresh(value)
    }
}

impl<T> Deref for Cached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// Hashes a cached read's arguments into its cache key.
#[doc(hidden)]
#[derive(Default)]
pub struct KeyHasher {
    first: DefaultHasher,
    second: DefaultHasher,
}

impl KeyHasher {
    /// A hasher for one call.
    pub fn new() -> Self {
        let mut second = DefaultHasher::new();
        // A different starting state makes the second pass independent.
        0x5ea_3a11_u64.hash(&mut second);
        Self {
            first: DefaultHasher::new(),
            second,
        }
    }

    /// Adds one argument.
    pub fn part<T: Hash + ?Sized>(&mut self, value: &T) {
        value.hash(&mut self.first);
        value.hash(&mut self.second);
    }

    /// The key.
    pub fn finish(&self) -> u128 {
        u128::from(self.first.finish()) << 64 | u128::from(self.second.finish())
    }
}

/// What a cached read's answer must be: cloned into the cache on every
/// success, and serialized so an embedded runtime can keep it across a
/// restart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the answer of a read with `fallback = cache(..)`, but it is not `Clone + Serialize + Deserialize + Send + Sync + 'static`",
    label = "the cache keeps a copy of each answer, on disk too with an embedded runtime",
    note = "derive `Clone`, `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait CacheValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> CacheValue for T {}

type Entry = Arc<dyn Any + Send + Sync>;

/// One answer in memory.
struct Stored<T> {
    /// When it was stored here (or loaded from disk).
    at: Instant,
    /// Its age when it was loaded from disk; zero for an answer stored here.
    offset: Duration,
    /// When it was last handed to the disk, with an embedded runtime.
    persisted: Option<Instant>,
    value: T,
}

/// How often one method hands the same key's answer to the disk at most.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Where a runtime keeps cached answers beyond memory: on disk (an embedded
/// runtime) and in Redis for the whole fleet (`Redis::share_cache`).
#[derive(Clone, Default)]
pub(crate) struct Beyond {
    pub(crate) disk: Option<Arc<DiskCache>>,
    #[cfg(feature = "redis")]
    pub(crate) fleet: Option<Arc<crate::fleet::cache::FleetCache>>,
}

impl Beyond {
    fn is_empty(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.fleet.is_some() {
            return false;
        }
        self.disk.is_none()
    }
}

/// One method's cache.
pub(crate) struct LastKnownGood {
    // quick_cache shards its map behind short locks (one shard per insert or
    // look-up); it is touched only by reads that have a cache policy.
    entries: quick_cache::sync::Cache<u128, Entry>,
    max_stale: Duration,
    /// The disk and the fleet's cache, when the runtime has them.
    beyond: Beyond,
    /// This method's name there (`contract.method`).
    method: Arc<str>,
}

impl LastKnownGood {
    pub(crate) fn new(policy: &CachePolicy, beyond: Beyond, method: Arc<str>) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(
                usize::try_from(policy.capacity()).unwrap_or(usize::MAX),
            ),
            max_stale: policy.max_stale(),
            beyond,
            method,
        }
    }

    /// Hands an answer to the disk and the fleet's cache; never waits.
    fn keep_beyond(&self, key: u128, bytes: Vec<u8>) {
        let at = now_ms();
        #[cfg(feature = "redis")]
        let bytes = match &self.beyond.fleet {
            Some(fleet) if self.beyond.disk.is_some() => {
                fleet.put(&self.method, key, at, self.max_stale, bytes.clone());
                bytes
            }
            Some(fleet) => {
                fleet.put(&self.method, key, at, self.max_stale, bytes);
                return;
            }
            None => bytes,
        };
        if let Some(disk) = &self.beyond.disk {
            disk.put(&self.method, key, at, self.max_stale, bytes);
        }
    }

    /// The answer kept beyond memory for `key`, with when it was given:
    /// from the disk first, then from the fleet's cache.
    async fn find_beyond(&self, key: u128) -> Option<(u64, Vec<u8>)> {
        if let Some(disk) = &self.beyond.disk {
            match disk.get(&self.method, key).await {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(target: "seawall::cache", %error, "could not read a cached answer from disk");
                }
            }
        }
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.beyond.fleet {
            match fleet.get(&self.method, key).await {
                Ok(found) => return found,
                Err(error) => {
                    tracing::warn!(target: "seawall::cache", %error, "could not read a cached answer from the fleet's cache");
                }
            }
        }
        None
    }

    pub(crate) fn store<T: CacheValue>(&self, key: u128, value: &T) {
        let now = Instant::now();
        let persisted = (!self.beyond.is_empty()).then(|| {
            let recent = self
                .entries
                .get(&key)
                .and_then(|entry| entry.downcast_ref::<Stored<T>>().and_then(|s| s.persisted))
                .filter(|at| now.saturating_duration_since(*at) < PERSIST_EVERY);
            match recent {
                Some(at) => at,
                None => {
                    match serde_json::to_vec(value) {
                        Ok(bytes) => self.keep_beyond(key, bytes),
                        Err(error) => tracing::debug!(
                            target: "seawall::cache",
                            %error,
                            "an answer with no serialized form is kept in memory only"
                        ),
                    }
                    now
                }
            }
        });
        let stored = Stored {
            at: now,
            offset: Duration::ZERO,
            persisted,
            value: value.clone(),
        };
        self.entries.insert(key, Arc::new(stored));
    }

    /// The answer stored under `key`, if it is no older than `max_stale`:
    /// from memory, or from disk with an embedded runtime (after a restart).
    pub(crate) async fn serve<T: CacheValue>(&self, key: u128) -> Option<Cached<T>> {
        if let Some(entry) = self.entries.get(&key)
            && let Some(stored) = entry.downcast_ref::<Stored<T>>()
        {
            let age = stored.at.elapsed() + stored.offset;
            return (age <= self.max_stale).then(|| Cached {
                value: stored.value.clone(),
                age,
                stale: true,
            });
        }
        let (stored_at_ms, bytes) = self.find_beyond(key).await?;
        let method = &self.method;
        let now = now_ms();
        if stored_at_ms > now {
            // Stamped later than now: the wall clock stepped back since it
            // was written (or another machine's ran ahead). Its age is
            // unknown, so it is not served as if it were fresh.
            tracing::warn!(
                target: "seawall::cache",
                method = %method,
                ahead_ms = stored_at_ms - now,
                "a kept cached answer is stamped in the future (the clock stepped back?); treated as expired"
            );
            return None;
        }
        let age = Duration::from_millis(now - stored_at_ms);
        if age > self.max_stale {
            return None;
        }
        let value: T = serde_json::from_slice(&bytes).ok()?;
        let stored = Stored {
            at: Instant::now(),
            offset: age,
            persisted: Some(Instant::now()),
            value: value.clone(),
        };
        self.entries.insert(key, Arc::new(stored));
        Some(Cached {
            value,
            age,
            stale: true,
        })
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use super::*;

    /// A cache over a fresh embedded database, with one row written as it
    /// would be `stored_at_ms`.
    fn disk_with_row(dir: &std::path::Path, stored_at_ms: u64) -> LastKnownGood {
        let path = dir.join("cache.redb");
        let db = crate::store::handle::DbHandle::new(&path, redb::Database::create(&path).unwrap());
        let method: Arc<str> = "crm.account".into();
        {
            let disk = DiskCache::open(db.clone()).unwrap();
            disk.put(
                &method,
                7,
                stored_at_ms,
                Duration::from_secs(3600),
                b"\"v\"".to_vec(),
            );
            // Dropping the cache waits for its writer: the row is on disk.
        }
        let disk = Arc::new(DiskCache::open(db).unwrap());
        let beyond = Beyond {
            disk: Some(disk),
            ..Beyond::default()
        };
        LastKnownGood::new(&CachePolicy::new(Duration::from_secs(3600)), beyond, method)
    }

    #[tokio::test]
    async fn a_row_from_the_future_is_never_served_as_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let day_ahead = now_ms() + 24 * 3600 * 1000;
        let cache = disk_with_row(dir.path(), day_ahead);
        assert!(cache.serve::<String>(7).await.is_none());
    }

    #[tokio::test]
    async fn a_row_from_the_past_is_served_with_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let minute_ago = now_ms() - 60_000;
        let cache = disk_with_row(dir.path(), minute_ago);
        let served = cache.serve::<String>(7).await.expect("within max_stale");
        assert_eq!(served.value(), "v");
        assert!(
            served.age() >= Duration::from_secs(60),
            "{:?}",
            served.age()
        );
        assert!(served.is_stale());
    }
}
