//! What a call falls back on when it fails, and what the fallbacks need of
//! its answer.
//!
//! A method declares at most one built-in fallback — `cache` for a read,
//! `queue` for a write — and may add `with(..)`, a function of its own that
//! gets the final error. The runtime runs them around the rest of the
//! pipeline: a failure the built-in fallback cannot cover reaches the
//! custom one.
//!
//! The fallbacks handle answers of several shapes (`Cached<T>`, a plain
//! `T` kept in a cache, `Delivery<T>`); [`Answer`] is how the runtime moves
//! between an answer and what a fallback keeps, chosen by the generated
//! code, which knows the method's return type.

use std::marker::PhantomData;

use crate::cache::{CacheValue, Cached, LastKnownGood};
use crate::queue::BoxFuture;
use crate::queue::Delivery;
use crate::wal::Ticket;

/// How the fallbacks see a method's answer `R`.
///
/// The bounds a fallback puts on the answer (a cached one must be
/// serializable, say) are checked where the generated code makes the shape
/// ([`cached`], ...), at the user's return type, and only there: the shape
/// carries what it needs as plain functions, so the pipeline asks nothing
/// more of `R` and a missing bound is reported once.
pub trait Answer<R> {
    /// What the cache keeps of an answer (`()` when it is never cached).
    type Kept;

    /// What the cache should keep of `answer`, and how, if anything.
    fn kept<'a>(&self, answer: &'a R) -> Option<(&'a Self::Kept, &CacheOps<Self::Kept>)>;

    /// How to read a stale value from the cache, if the answer can be one.
    fn stale_ops(&self) -> Option<&CacheOps<Self::Kept>>;

    /// The answer for a stale value served from the cache.
    fn stale(&self, value: Cached<Self::Kept>) -> Option<R>;

    /// The answer for a write queued under `ticket` (`None` when the
    /// method's answer cannot say so).
    fn queued(&self, ticket: Ticket) -> Option<R>;
}

/// How the cache keeps and reads back values of one type, made where the
/// type's bounds are known.
pub struct CacheOps<T> {
    pub(crate) store: fn(&LastKnownGood, u128, &T),
    pub(crate) serve: for<'a> fn(&'a LastKnownGood, u128) -> BoxFuture<'a, Option<Cached<T>>>,
}

impl<T: CacheValue> CacheOps<T> {
    fn new() -> Self {
        Self {
            store: |cache, key, value| cache.store(key, value),
            serve: |cache, key| Box::pin(cache.serve::<T>(key)),
        }
    }
}

impl<T> std::fmt::Debug for CacheOps<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheOps")
    }
}

/// An answer no built-in fallback handles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<R> Answer<R> for Plain {
    type Kept = ();

    fn kept<'a>(&self, _: &'a R) -> Option<(&'a (), &CacheOps<()>)> {
        None
    }

    fn stale_ops(&self) -> Option<&CacheOps<()>> {
        None
    }

    fn stale(&self, _: Cached<()>) -> Option<R> {
        None
    }

    fn queued(&self, _: Ticket) -> Option<R> {
        None
    }
}

/// A cached read's answer, `Cached<T>`: staleness is visible to the caller.
#[derive(Debug)]
pub struct CacheShape<T>(CacheOps<T>);

impl<T> Answer<Cached<T>> for CacheShape<T> {
    type Kept = T;

    fn kept<'a>(&self, answer: &'a Cached<T>) -> Option<(&'a T, &CacheOps<T>)> {
        Some((answer.value(), &self.0))
    }

    fn stale_ops(&self) -> Option<&CacheOps<T>> {
        Some(&self.0)
    }

    fn stale(&self, value: Cached<T>) -> Option<Cached<T>> {
        Some(value)
    }

    fn queued(&self, _: Ticket) -> Option<Cached<T>> {
        None
    }
}

/// A cached read that answers a plain `T`: staleness shows only in the
/// `seawall::cache` events.
#[derive(Debug)]
pub struct PlainCacheShape<T>(CacheOps<T>);

impl<T> Answer<T> for PlainCacheShape<T> {
    type Kept = T;

    fn kept<'a>(&self, answer: &'a T) -> Option<(&'a T, &CacheOps<T>)> {
        Some((answer, &self.0))
    }

    fn stale_ops(&self) -> Option<&CacheOps<T>> {
        Some(&self.0)
    }

    fn stale(&self, value: Cached<T>) -> Option<T> {
        Some(value.into_value())
    }

    fn queued(&self, _: Ticket) -> Option<T> {
        None
    }
}

/// A queued write's answer, `Delivery<T>`.
#[derive(Debug)]
pub struct QueueShape<T>(PhantomData<fn() -> T>);

impl<T> Answer<Delivery<T>> for QueueShape<T> {
    type Kept = ();

    fn kept<'a>(&self, _: &'a Delivery<T>) -> Option<(&'a (), &CacheOps<()>)> {
        None
    }

    fn stale_ops(&self) -> Option<&CacheOps<()>> {
        None
    }

    fn stale(&self, _: Cached<()>) -> Option<Delivery<T>> {
        None
    }

    fn queued(&self, ticket: Ticket) -> Option<Delivery<T>> {
        Some(Delivery::Queued(ticket))
    }
}

/// The answer shape of a read with `fallback = cache(..)` returning
/// `Cached<T>`; `T`'s bound is checked where the generated code calls it.
pub fn cached<T: CacheValue>() -> CacheShape<T> {
    CacheShape(CacheOps::new())
}

/// The answer shape of a read with `fallback = cache(..)` returning `T`.
pub fn cached_plain<T: CacheValue>() -> PlainCacheShape<T> {
    PlainCacheShape(CacheOps::new())
}

/// The answer shape of a write with `fallback = queue`.
pub fn queued<T>() -> QueueShape<T> {
    QueueShape(PhantomData)
}

/// The last fallback: what the method answers when the rest of the
/// pipeline, built-in fallback included, failed.
pub trait Fallback<T, E> {
    /// The answer for `error`.
    fn answer(self, error: E) -> Result<T, E>;

    /// Whether every error stands (no fallback at all).
    fn passes_through(&self) -> bool {
        false
    }
}

/// No `fallback = with(..)`: the error stands.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

impl<T, E> Fallback<T, E> for NoFallback {
    #[inline]
    fn answer(self, error: E) -> Result<T, E> {
        Err(error)
    }

    #[inline]
    fn passes_through(&self) -> bool {
        true
    }
}

/// `fallback = with(path)`: the function, given the arguments and the
/// error.
#[derive(Debug)]
pub struct With<F>(pub F);

impl<T, E, F: FnOnce(E) -> Result<T, E>> Fallback<T, E> for With<F> {
    fn answer(self, error: E) -> Result<T, E> {
        (self.0)(error)
    }
}
