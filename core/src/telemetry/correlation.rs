//! Correlation ids: what ties a vendor call to the request that caused it.
//!
//! A correlation id is a W3C trace id (128 bits, 32 lowercase hex digits).
//! The caller sets one for a piece of work with [`scope`] — typically from
//! the incoming request's `traceparent` header
//! ([`CorrelationId::from_traceparent`]) — and every seawall call made
//! inside it carries it: in its `tracing` span (`correlation_id`) and, with
//! `seawall::http`, in the `traceparent` header of every request. A call
//! made outside any scope gets an id of its own, generated when something
//! first asks for it (so a call nobody traces pays nothing for it).

use std::cell::Cell;
use std::future::Future;

use rand::RngExt;

/// A W3C trace id used as a correlation id. Never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(u128);

impl CorrelationId {
    /// A fresh random id.
    pub fn generate() -> Self {
        loop {
            let id: u128 = rand::rng().random();
            if id != 0 {
                return Self(id);
            }
        }
    }

    /// The trace id of a W3C `traceparent` header value
    /// (`00-<trace id>-<parent id>-<flags>`); `None` when it is not one.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let hex = |s: &str, len| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version ff is forbidden; version 00 has exactly four fields.
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(parent, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if parent.bytes().all(|b| b == b'0') {
            return None;
        }
        Self::from_u128(u128::from_str_radix(trace, 16).ok()?)
    }

    /// The id with this value; `None` for zero (which W3C forbids).
    pub fn from_u128(id: u128) -> Option<Self> {
        (id != 0).then_some(Self(id))
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// A `traceparent` header value for one outbound request with this
    /// trace id and a fresh random parent (span) id, sampled.
    pub fn traceparent(self) -> String {
        let span: u64 = loop {
            let span: u64 = rand::rng().random();
            if span != 0 {
                break span;
            }
        };
        format!("00-{:032x}-{span:016x}-01", self.0)
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

std::thread_local! {
    /// The correlation scope of the future being polled on this thread:
    /// `None` outside any; `Some(0)` in a call's own scope whose id is not
    /// generated yet. Set around each poll of a scoped future (as tokio's
    /// task-locals are), so it follows the task, not the thread.
    static CURRENT: Cell<Option<u128>> = const { Cell::new(None) };
}

/// Restores the enclosing scope when a poll ends, even by panic.
struct Restore<'a>(&'a Cell<Option<u128>>, Option<u128>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Polls `poll` with `scope` as the current scope; returns what it gave and
/// the scope's id after it (generated during the poll, perhaps). One
/// thread-local lookup.
pub(crate) fn polled_in<T>(scope: u128, poll: impl FnOnce() -> T) -> (T, u128) {
    CURRENT.with(|current| {
        let restore = Restore(current, current.replace(Some(scope)));
        let answer = poll();
        let after = current.get().unwrap_or(0);
        drop(restore);
        (answer, after)
    })
}

pin_project_lite::pin_project! {
    /// A future in a correlation scope (see [`scope`]).
    pub struct Scoped<F> {
        #[pin]
        future: F,
        id: u128,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let (answer, _) = polled_in(*this.id, || this.future.poll(cx));
        answer
    }
}

/// Runs `future` with `id` as the correlation id of every seawall call made
/// in it (on its task).
pub fn scope<F: Future>(id: CorrelationId, future: F) -> Scoped<F> {
    Scoped { future, id: id.0 }
}

/// The correlation id of the current scope or call, generated on first
/// use for a call made outside any scope; `None` outside seawall calls and
/// scopes.
pub fn current() -> Option<CorrelationId> {
    CURRENT.with(|current| match current.get()? {
        0 => {
            let id = CorrelationId::generate();
            current.set(Some(id.0));
            Some(id)
        }
        id => Some(CorrelationId(id)),
    })
}

/// The correlation id of a logical call starting now: the enclosing
/// scope's (made now if it is a call's lazy one), or one of its own — made
/// now if `now`, else left 0, to be made when first asked for.
pub(crate) fn for_call(now: bool) -> u128 {
    if CURRENT.with(|current| current.get().is_some()) || now {
        current().unwrap_or_else(CorrelationId::generate).0
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_bad_ones_give_none() {
        let id = CorrelationId::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(CorrelationId::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_traceparent_round_trips_its_trace_id() {
        let id = CorrelationId::generate();
        let header = id.traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(CorrelationId::from_traceparent(&header), Some(id));
    }

    #[tokio::test]
    async fn a_scope_is_current_only_while_its_future_is_polled() {
        assert_eq!(current(), None);
        let set = CorrelationId::generate();
        scope(set, async move { assert_eq!(current(), Some(set)) }).await;
        assert_eq!(current(), None);
        let (first, after) = polled_in(0, || current().unwrap());
        assert_eq!(
            first.as_u128(),
            after,
            "a lazy id, once made, is handed back"
        );
        assert_eq!(current(), None);
    }
}
