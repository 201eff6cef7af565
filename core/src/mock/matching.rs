//! `with(..)`: answers, defaults and expectations for some calls only.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::expect::{Matcher, Times};
use super::{Answer, Method};

/// The calls of a method whose arguments a matcher accepts, from
/// [`Method::with`] or [`Method::with_args`]: what is scripted or expected
/// here applies to them alone.
///
/// Its methods are the handle's, restricted:
///
/// - a **scripted** answer ([`returns`](Self::returns),
///   [`fails_with`](Self::fails_with), ...) answers one matching call. A
///   call takes the first answer in the script, in the order scripted, that
///   applies to it: one scripted on the handle applies to any call, one
///   scripted here to matching calls, and calls for other arguments pass
///   it by;
/// - a **default** ([`otherwise`](Self::otherwise), ...) answers matching
///   calls past the script, before the handle's own default; the first set
///   that matches answers;
/// - an **expectation** ([`times`](Self::times), [`never`](Self::never))
///   counts matching calls, and is checked like the handle's.
///
/// ```
/// # use seawall_core as seawall;
/// use seawall::mock::Method;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let account: Method<String, &'static str, String> = Method::new("MockCrm::account");
/// account.with(|id| id == "42").returns("Acme").times(1);
/// account.with_args("7").otherwise_returns("Initech");
/// account.with(|id| id.starts_with("x-")).never();
/// account.otherwise_returns("someone");
///
/// assert_eq!(account.call("7".into()).await, Ok("Initech"));
/// assert_eq!(account.call("42".into()).await, Ok("Acme"));
/// assert_eq!(account.call("9".into()).await, Ok("someone"));
/// assert_eq!(account.call("7".into()).await, Ok("Initech"), "a default answers every time");
/// // Account 42 was asked for once, as expected, and no `x-` account.
/// account.checkpoint();
/// # }
/// ```
pub struct Matching<A, T, E> {
    method: Method<A, T, E>,
    matcher: Arc<Matcher<A>>,
}

impl<A, T, E> Matching<A, T, E> {
    pub(super) fn new(method: Method<A, T, E>, matcher: Arc<Matcher<A>>) -> Self {
        Self { method, matcher }
    }

    /// The handle these calls belong to.
    pub fn method(&self) -> &Method<A, T, E> {
        &self.method
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer<A, T, E>>) -> &Self {
        self.method.script(Some(&self.matcher), answers);
        self
    }

    /// The next matching call answers `Ok(value)`.
    pub fn returns(&self, value: T) -> &Self {
        self.script([Answer::Now(Ok(value))])
    }

    /// The next `times` matching calls answer `Ok(value)`, each with its
    /// own clone.
    pub fn returns_times(&self, times: usize, value: T) -> &Self
    where
        T: Clone,
    {
        self.script(std::iter::repeat_n(value, times).map(|value| Answer::Now(Ok(value))))
    }

    /// The next matching call is answered by `answer`, given its arguments.
    pub fn returns_with(&self, answer: impl FnOnce(&A) -> Result<T, E> + Send + 'static) -> &Self {
        self.script([Answer::With(Box::new(answer))])
    }

    /// The next matching call fails with `error`.
    pub fn fails_with(&self, error: E) -> &Self {
        self.script([Answer::Now(Err(error))])
    }

    /// The next `times` matching calls fail, each with an error made by
    /// `error` (called `times` times, now).
    pub fn fails_times(&self, times: usize, mut error: impl FnMut() -> E) -> &Self {
        self.script((0..times).map(|_| Answer::Now(Err(error()))))
    }

    /// Makes the answers scripted by the previous call on this handle come
    /// `delay` late, as [`Method::delays`]; with nothing scripted before
    /// it, scripts one matching call that waits `delay` and then gets the
    /// default answer.
    pub fn delays(&self, delay: Duration) -> &Self {
        self.method.delay_last(Some(&self.matcher), delay);
        self
    }

    /// Answers every matching call past the script with `answer`, given the
    /// call's arguments. Replaces an earlier default set through this
    /// `Matching`; defaults set through other ones stay, and the first set
    /// that matches a call answers it.
    pub fn otherwise(&self, answer: impl FnMut(&A) -> Result<T, E> + Send + 'static) -> &Self {
        let mut defaults = self.method.shared.otherwise();
        let answer = Box::new(answer);
        match defaults
            .matched
            .iter_mut()
            .find(|(matcher, _)| Arc::ptr_eq(matcher, &self.matcher))
        {
            Some((_, earlier)) => *earlier = answer,
            None => defaults.matched.push((Arc::clone(&self.matcher), answer)),
        }
        drop(defaults);
        self
    }

    /// Answers every matching call past the script with a clone of `value`.
    pub fn otherwise_returns(&self, value: T) -> &Self
    where
        T: Clone + Send + 'static,
    {
        self.otherwise(move |_| Ok(value.clone()))
    }

    /// Fails every matching call past the script with an error made by
    /// `error`.
    pub fn otherwise_fails(&self, mut error: impl FnMut() -> E + Send + 'static) -> &Self {
        self.otherwise(move |_| Err(error()))
    }

    /// Expects `times` matching calls from now on, as [`Method::times`]:
    /// one beyond the most panics at once; too few make the double panic
    /// when its last clone is dropped, or at [`Method::checkpoint`].
    #[track_caller]
    pub fn times(&self, times: impl Into<Times>) -> &Self {
        self.method
            .add_expectation(Some(&self.matcher), times.into(), Location::caller());
        self
    }

    /// Expects no matching call from now on: one panics at once, naming
    /// the method and showing its arguments.
    #[track_caller]
    pub fn never(&self) -> &Self {
        self.method
            .add_expectation(Some(&self.matcher), Times::NEVER, Location::caller());
        self
    }
}

impl<A, T, E> std::fmt::Debug for Matching<A, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matching")
            .field("method", &self.method.name())
            .field("arguments", &self.matcher.described())
            .finish()
    }
}
