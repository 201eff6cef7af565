//! Readers and checks of a call's arguments: each trait's diagnostic puts a
//! missing bound on the user's tokens, with what it is needed for.

pub use crate::cache::KeyHasher;
pub use crate::idempotency::IdempotencyKey;

/// Clones an argument passed by value for each attempt of a call that
/// retries or has a fallback that needs the arguments after it (a custom
/// fallback receives them; a queued write keeps them).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is passed by value to a method that retries or has `fallback = with(..)` or `fallback = queue`, but it is not `Clone`",
    label = "each attempt needs its own copy of this argument",
    note = "take the argument by reference, implement `Clone` for it, or remove `retry` (or the fallback) from the policy"
)]
pub trait RetryArg: Sized {
    /// A copy for one attempt.
    fn for_attempt(&self) -> Self;
}

impl<T: Clone> RetryArg for T {
    fn for_attempt(&self) -> Self {
        self.clone()
    }
}

/// Requires a value named in an idempotency key to be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is part of an idempotency key, but it does not implement `serde::Serialize`",
    label = "named in `idempotent(key = [..])`",
    note = "derive `serde::Serialize` for it, or leave it out of the key"
)]
pub trait KeyPart: serde::Serialize {}

impl<T: serde::Serialize + ?Sized> KeyPart for T {}

/// Checks a key part's type where the user named it.
pub fn key_part<T: KeyPart + ?Sized>(value: &T) -> &T {
    value
}

/// Requires an argument of a cached read to be hashable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an argument of a read with `fallback = cache(..)`, but it is not `Hash`",
    label = "the cache keeps one answer per set of arguments",
    note = "derive or implement `Hash` for it"
)]
pub trait CacheKeyPart: std::hash::Hash {}

impl<T: std::hash::Hash + ?Sized> CacheKeyPart for T {}

/// Adds an argument to a cached read's key, checking its type where the
/// user wrote it.
pub fn cache_key_part<T: CacheKeyPart + ?Sized>(hasher: &mut KeyHasher, value: &T) {
    hasher.part(value);
}

/// Requires an argument of a queued write to be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an argument of a write with `fallback = queue`, but it does not implement `serde::Serialize`",
    label = "a queued write keeps its arguments in the write-ahead log",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait QueuedArg: serde::Serialize {}

impl<T: serde::Serialize + ?Sized> QueuedArg for T {}

/// Requires an argument of a queued write to be readable back from the log
/// (for an argument by reference, what it borrows: `String` for `&str`,
/// `Vec<T>` for `&[T]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an argument of a write with `fallback = queue`, but it does not implement `serde::Deserialize` (for any lifetime)",
    label = "the drain reads a queued write's arguments back from the write-ahead log",
    note = "derive `serde::Deserialize` for it; a queued argument owns its data (no borrowed fields)"
)]
pub trait ReplayArg: serde::de::DeserializeOwned {}

impl<T: serde::de::DeserializeOwned> ReplayArg for T {}

/// Requires the answer of a queued write to be serializable, so a delivered
/// write's answer can be kept with its ticket.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the answer of a write with `fallback = queue`, but it does not implement `serde::Serialize`",
    label = "a queued write's answer is kept with its ticket when the drain delivers it",
    note = "derive `serde::Serialize` for it"
)]
pub trait QueuedAnswer: serde::Serialize {}

impl<T: serde::Serialize + ?Sized> QueuedAnswer for T {}

/// Requires a value named in `fallback = queue(order_by = [..])` to be
/// serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` orders queued writes, but it does not implement `serde::Serialize`",
    label = "named in `fallback = queue(order_by = [..])`",
    note = "derive `serde::Serialize` for it, or order by another value"
)]
pub trait OrderPart: serde::Serialize {}

impl<T: serde::Serialize + ?Sized> OrderPart for T {}

/// An ordering value as JSON, its type checked where the user named it.
pub fn order_part<T: OrderPart + ?Sized>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|error| error.to_string())
}

/// A queued write's arguments, serialized into one object by name.
#[derive(Debug, Default)]
pub struct QueuedArguments {
    map: serde_json::Map<String, serde_json::Value>,
    redacted: Vec<String>,
    /// `order_by`'s values, as `name=json` each.
    order: Vec<String>,
    error: Option<String>,
}

/// A queued call's arguments, ready before the call: the object by name,
/// which of them `redact = [..]` names, and the write's ordering key.
/// (Boxed: a call's future keeps it until it knows whether the write is
/// queued.)
pub struct PreparedArguments(pub(crate) Box<(serde_json::Value, Vec<String>, Option<String>)>);

impl QueuedArguments {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an argument, checking its type where the user wrote it.
    #[must_use]
    pub fn arg<T: QueuedArg + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if self.error.is_none() {
            match crate::faithful::to_value(value) {
                Ok(value) => {
                    self.map.insert(name.to_owned(), value);
                }
                Err(error) => self.error = Some(format!("argument `{name}`: {error}")),
            }
        }
        self
    }

    /// Adds an argument that `redact = [..]` names: kept sealed at rest and
    /// out of every message.
    #[must_use]
    pub fn redacted_arg<T: QueuedArg + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.redacted.push(name.to_owned());
        self.arg(name, value)
    }

    /// Adds a value of the write's ordering key (`order_by = [..]`): writes
    /// with the same values are delivered in order, others in parallel.
    #[must_use]
    pub fn order_part(mut self, name: &str, json: Result<String, String>) -> Self {
        if self.error.is_none() {
            match json {
                Ok(json) => self.order.push(format!("{name}={json}")),
                Err(error) => self.error = Some(format!("ordering value `{name}`: {error}")),
            }
        }
        self
    }

    /// The arguments of a call of `contract.method`, serialized before the
    /// call so that one JSON cannot hold faithfully is refused before
    /// anything happens.
    ///
    /// # Errors
    ///
    /// [`Error::Unrepresentable`](crate::Error::Unrepresentable), naming the
    /// first argument that has no faithful JSON form.
    pub fn finish_for(
        self,
        contract: &str,
        method: &str,
    ) -> Result<PreparedArguments, crate::Error> {
        match self.error {
            Some(reason) => Err(crate::Error::Unrepresentable {
                contract: contract.into(),
                method: method.into(),
                reason: reason.into(),
            }),
            None => Ok(PreparedArguments(Box::new((
                serde_json::Value::Object(self.map),
                self.redacted,
                (!self.order.is_empty()).then(|| self.order.join("&")),
            )))),
        }
    }
}

/// An argument, for the `seawall::args` debug event: printed with `Debug`
/// when it has it (`(&&DebugArg(&value)).traced()` picks [`ViaDebug`]
/// then), as `<not Debug>` otherwise.
pub struct DebugArg<'a, T: ?Sized>(pub &'a T);

/// Prints an argument that is `Debug`.
pub trait ViaDebug<'a> {
    /// What is printed.
    type Shown: std::fmt::Debug;
    /// The argument.
    fn traced(&self) -> Self::Shown;
}

/// Prints an argument that is not `Debug`.
pub trait ViaOpaque {
    /// A placeholder.
    fn traced(&self) -> Opaque;
}

impl<'a, T: std::fmt::Debug + ?Sized> ViaDebug<'a> for &DebugArg<'a, T> {
    type Shown = &'a T;
    fn traced(&self) -> &'a T {
        self.0
    }
}

impl<T: ?Sized> ViaOpaque for DebugArg<'_, T> {
    fn traced(&self) -> Opaque {
        Opaque
    }
}

/// An argument that has no `Debug`.
pub struct Opaque;

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<not Debug>")
    }
}
