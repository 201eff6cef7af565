//! What a double remembers of each call.

use std::sync::Arc;

use tokio::time::Instant;

/// One call a double received: its arguments (owned copies, see the
/// [module documentation](super)), when it arrived (on tokio's clock) and
/// its number (the first call is 1).
pub struct Recorded<A> {
    args: Arc<A>,
    at: Instant,
    number: usize,
}

impl<A> Recorded<A> {
    pub(super) fn new(args: Arc<A>, at: Instant, number: usize) -> Self {
        Self { args, at, number }
    }

    /// The call's arguments: `()`, the one argument, or a tuple of them.
    pub fn args(&self) -> &A {
        &self.args
    }

    /// When the call arrived, on tokio's clock.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The call's number for its method, from 1.
    pub fn number(&self) -> usize {
        self.number
    }
}

/// Clones share the arguments (no `A: Clone` needed).
impl<A> Clone for Recorded<A> {
    fn clone(&self) -> Self {
        Self {
            args: Arc::clone(&self.args),
            at: self.at,
            number: self.number,
        }
    }
}

impl<A: std::fmt::Debug> std::fmt::Debug for Recorded<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("number", &self.number)
            .field("args", &self.args)
            .field("at", &self.at)
            .finish()
    }
}

/// An argument a double cannot keep: one whose type uses a generic
/// parameter of its method, is `impl Trait` or `dyn Trait`, or borrows
/// beyond its outer `&`. It is recorded by its type's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opaque {
    type_name: &'static str,
}

impl Opaque {
    /// The record of `value`: its type's name.
    pub fn of_val<V: ?Sized>(value: &V) -> Self {
        let _ = value;
        Self {
            type_name: std::any::type_name::<V>(),
        }
    }

    /// The name of the argument's type (`std::any::type_name`, so for
    /// messages and assertions, not for parsing).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opaque({})", self.type_name)
    }
}
