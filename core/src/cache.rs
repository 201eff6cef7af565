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
//! 128-bit hash of
//! the arguments (two independent SipHash passes: a collision between two
//! different argument lists is about as likely as 2⁻⁶⁴ per pair). Storing a
//! success costs one clone of the answer and one map insert; nothing is
//! serialized.

use std::any::Any;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::CachePolicy;

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

type Entry = Arc<dyn Any + Send + Sync>;

/// One method's cache.
pub(crate) struct LastKnownGood {
    // quick_cache shards its map behind short locks (one shard per insert or
    // look-up); it is touched only by reads that have a cache policy.
    entries: quick_cache::sync::Cache<u128, Entry>,
    max_stale: Duration,
}

impl LastKnownGood {
    pub(crate) fn new(policy: &CachePolicy) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(
                usize::try_from(policy.capacity()).unwrap_or(usize::MAX),
            ),
            max_stale: policy.max_stale(),
        }
    }

    pub(crate) fn store<T: Clone + Send + Sync + 'static>(&self, key: u128, value: &T) {
        self.entries
            .insert(key, Arc::new((Instant::now(), value.clone())));
    }

    /// The answer stored under `key`, if it is no older than `max_stale`.
    pub(crate) fn serve<T: Clone + Send + Sync + 'static>(&self, key: u128) -> Option<Cached<T>> {
        let entry = self.entries.get(&key)?;
        let (stored_at, value) = entry.downcast_ref::<(Instant, T)>()?;
        let age = stored_at.elapsed();
        (age <= self.max_stale).then(|| Cached {
            value: value.clone(),
            age,
            stale: true,
        })
    }
}
