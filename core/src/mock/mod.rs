//! Test doubles: a contract's methods answered from a script, with faults.
//!
//! A contract is the seam to test at: mock the contract, not the HTTP
//! layer. `#[contract(mock)]` generates `Mock<Trait>` (`MockCrm` for
//! `trait Crm`), which implements the trait with one [`Method`] handle per
//! method; everything it does lives here, so the generated code is a struct
//! and a thin `impl`.
//!
//! Per method, a double
//!
//! - answers calls from a **script**, in order: [`returns`](Method::returns),
//!   [`fails_with`](Method::fails_with), [`fails_times`](Method::fails_times),
//!   [`returns_with`](Method::returns_with) (a closure of the arguments),
//!   each made slow by [`delays`](Method::delays);
//! - answers calls past the script with its **default**:
//!   [`otherwise`](Method::otherwise) (a closure of the arguments),
//!   [`otherwise_returns`](Method::otherwise_returns) or
//!   [`otherwise_fails`](Method::otherwise_fails); without one, an
//!   unscripted call panics with the method's name and its arguments;
//! - injects **faults** in front of that: a [`Faults`] profile with a seeded
//!   failure rate, added latency, and outages by call number or by time;
//! - **records** every call: its arguments (owned copies), when it arrived
//!   and its number ([`calls`](Method::calls), [`Recorded`]), with count
//!   assertions ([`assert_called`](Method::assert_called)).
//!
//! Delays and latency are `tokio::time` sleeps, so a test on tokio's paused
//! clock (`#[tokio::test(start_paused = true)]`) runs a 30-second outage in
//! milliseconds. A double is `Send + Sync + 'static` (when its argument,
//! answer and error types are `Send + Sync + 'static`, as a contract's
//! usually are) and its futures are `Send`, so it can stand in for an adapter
//! behind [`Resilient`](crate::Resilient), queued writes included. Clones
//! of a handle (and of a generated double) share their script and calls: keep
//! one to script and inspect while the wrapper owns the other.
//!
//! # Arguments as recorded
//!
//! A method's recorded arguments are `()` for no argument, the value itself
//! for one, and a tuple for several. Arguments by reference are recorded as
//! their owned form (`ToOwned`: `String` for `&str`, `Vec<T>` for `&[T]`, a
//! clone for `&T`); arguments by value are moved into the record (nothing is
//! cloned). What cannot be stored in a `'static` double — an argument whose
//! type uses a generic parameter of the method, is `impl Trait` or
//! `dyn Trait`, or borrows beyond its outer `&` (a lifetime or a reference
//! inside the type) — is recorded as an [`Opaque`]: its type's name, not its
//! value.
//!
//! # Example
//!
//! A handle used on its own (a generated double holds one per method):
//!
//! ```
//! use std::time::Duration;
//! use seawall_core::mock::Method;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let account: Method<String, u32, String> = Method::new("MockCrm::account");
//! account
//!     .returns(7)
//!     .fails_times(2, || "503".to_owned())
//!     .returns(8)
//!     .delays(Duration::from_secs(1));
//! account.otherwise(|id| Ok(id.len() as u32));
//!
//! assert_eq!(account.call("a-1".to_owned()).await, Ok(7));
//! assert_eq!(account.call("a-1".to_owned()).await, Err("503".to_owned()));
//! assert_eq!(account.call("a-1".to_owned()).await, Err("503".to_owned()));
//! let before = tokio::time::Instant::now();
//! assert_eq!(account.call("a-1".to_owned()).await, Ok(8));
//! assert_eq!(before.elapsed(), Duration::from_secs(1));
//! assert_eq!(account.call("four".to_owned()).await, Ok(4), "past the script: the default");
//!
//! account.assert_called(5);
//! assert_eq!(account.calls()[4].args(), "four");
//! # }
//! ```

mod faults;
#[doc(hidden)]
pub mod generated;
mod record;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

pub use faults::Faults;
pub use record::{Opaque, Recorded};

use faults::ActiveFaults;

/// A closure that answers one call from its arguments.
type AnswerOnce<A, T, E> = Box<dyn FnOnce(&A) -> Result<T, E> + Send>;

/// A closure that answers every call past the script.
type AnswerEach<A, T, E> = Box<dyn FnMut(&A) -> Result<T, E> + Send>;

/// One method of a test double: its script, its default, its faults and the
/// calls it received.
///
/// `A` is what a call's arguments are recorded as (see the
/// [module documentation](self)), `T` and `E` the method's
/// `Result<T, E>`. Scripting methods take `&self` and return it, so they
/// chain; clones share everything.
pub struct Method<A, T, E> {
    shared: Arc<Shared<A, T, E>>,
}

struct Shared<A, T, E> {
    name: String,
    show: fn(&A) -> String,
    state: Mutex<State<A, T, E>>,
    /// Apart from `state`, so the default runs without holding the script's
    /// lock (it may inspect the double).
    otherwise: Mutex<Option<AnswerEach<A, T, E>>>,
}

struct State<A, T, E> {
    script: VecDeque<Step<A, T, E>>,
    /// Which script steps the last scripting call added, for `delays`.
    last_group: Option<u64>,
    next_group: u64,
    calls: Vec<Recorded<A>>,
    faults: Option<ActiveFaults<E>>,
}

struct Step<A, T, E> {
    answer: Answer<A, T, E>,
    delay: Duration,
    group: u64,
}

enum Answer<A, T, E> {
    Now(Result<T, E>),
    With(AnswerOnce<A, T, E>),
    /// A delay scripted on its own: the default answers, later.
    Default,
}

impl<A, T, E> Method<A, T, E> {
    /// A handle with nothing scripted, named `name` in messages (generated
    /// doubles use `"MockCrm::account"`). An unscripted call's panic shows
    /// the arguments' type only; [`showing_arguments`](Self::showing_arguments)
    /// shows their values.
    pub fn new(name: impl Into<String>) -> Self {
        Self::showing_arguments(name, |_| {
            format!("arguments of type `{}`", std::any::type_name::<A>())
        })
    }

    /// A handle whose unscripted-call panic shows the arguments with `show`
    /// (generated doubles pass their `Debug` form when they have one).
    pub fn showing_arguments(name: impl Into<String>, show: fn(&A) -> String) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                show,
                state: Mutex::new(State {
                    script: VecDeque::new(),
                    last_group: None,
                    next_group: 0,
                    calls: Vec::new(),
                    faults: None,
                }),
                otherwise: Mutex::new(None),
            }),
        }
    }

    /// The method's name in messages.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    fn state(&self) -> MutexGuard<'_, State<A, T, E>> {
        self.shared.state()
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer<A, T, E>>) -> &Self {
        let mut state = self.state();
        let group = state.next_group;
        state.next_group += 1;
        state.last_group = Some(group);
        state.script.extend(answers.into_iter().map(|answer| Step {
            answer,
            delay: Duration::ZERO,
            group,
        }));
        self
    }

    /// The next call answers `Ok(value)`.
    ///
    /// For `Result<Cached<T>, E>` or `Result<Delivery<T>, E>`, pass
    /// `value.into()`, as an adapter would.
    pub fn returns(&self, value: T) -> &Self {
        self.script([Answer::Now(Ok(value))])
    }

    /// The next `times` calls answer `Ok(value)`, each with its own clone.
    pub fn returns_times(&self, times: usize, value: T) -> &Self
    where
        T: Clone,
    {
        self.script(std::iter::repeat_n(value, times).map(|value| Answer::Now(Ok(value))))
    }

    /// The next call is answered by `answer`, given the call's arguments (as
    /// recorded): `returns_with(|id| Ok(Account::new(id)))`. Its result is
    /// the method's, so it may fail too.
    pub fn returns_with(&self, answer: impl FnOnce(&A) -> Result<T, E> + Send + 'static) -> &Self {
        self.script([Answer::With(Box::new(answer))])
    }

    /// The next call fails with `error`.
    pub fn fails_with(&self, error: E) -> &Self {
        self.script([Answer::Now(Err(error))])
    }

    /// The next `times` calls fail, each with an error made by `error`
    /// (called `times` times, now): errors are rarely `Clone`, so this
    /// takes a closure, `fails_times(3, || CrmError::Unavailable)`. The call
    /// after them gets the next scripted answer, or the default.
    pub fn fails_times(&self, times: usize, mut error: impl FnMut() -> E) -> &Self {
        self.script((0..times).map(|_| Answer::Now(Err(error()))))
    }

    /// Makes the answers scripted by the previous call on this handle come
    /// `delay` late (a `tokio::time` sleep, so it runs on the paused
    /// clock): `returns(v).delays(d)` answers one call with `v` after `d`;
    /// `fails_times(3, ..).delays(d)` delays all three failures. With
    /// nothing scripted before it (or all of that already used), it scripts
    /// one call that waits `delay` and then gets the default answer.
    /// Delays add up.
    pub fn delays(&self, delay: Duration) -> &Self {
        let mut state = self.state();
        let group = state.last_group;
        let mut found = false;
        for step in &mut state.script {
            if Some(step.group) == group {
                step.delay = step.delay.saturating_add(delay);
                found = true;
            }
        }
        if !found {
            drop(state);
            self.script([Answer::Default]);
            let mut state = self.state();
            if let Some(step) = state.script.back_mut() {
                step.delay = delay;
            }
        }
        self
    }

    /// Answers every call past the script with `answer`, given the call's
    /// arguments (as recorded). Replaces an earlier default.
    pub fn otherwise(&self, answer: impl FnMut(&A) -> Result<T, E> + Send + 'static) -> &Self {
        *self.shared.otherwise() = Some(Box::new(answer));
        self
    }

    /// Answers every call past the script with a clone of `value`.
    pub fn otherwise_returns(&self, value: T) -> &Self
    where
        T: Clone + Send + 'static,
    {
        self.otherwise(move |_| Ok(value.clone()))
    }

    /// Fails every call past the script with an error made by `error`.
    pub fn otherwise_fails(&self, mut error: impl FnMut() -> E + Send + 'static) -> &Self {
        self.otherwise(move |_| Err(error()))
    }

    /// Injects `faults` in front of the script and the default, failing
    /// calls with errors made by `error`; replaces an earlier profile. A
    /// call failed by a fault does not use a scripted answer. The profile's
    /// outage by time and its call numbers count from now.
    pub fn faults(&self, faults: Faults, error: impl FnMut() -> E + Send + 'static) -> &Self {
        let mut state = self.state();
        let calls = state.calls.len();
        state.faults = Some(ActiveFaults::new(faults, Box::new(error), calls));
        self
    }

    /// Removes the fault profile: calls are answered by the script and the
    /// default alone.
    pub fn clear_faults(&self) -> &Self {
        self.state().faults = None;
        self
    }

    /// How many scripted answers are left.
    pub fn remaining(&self) -> usize {
        self.state().script.len()
    }

    /// The calls received so far, oldest first.
    pub fn calls(&self) -> Vec<Recorded<A>> {
        self.state().calls.clone()
    }

    /// The last call received.
    pub fn last_call(&self) -> Option<Recorded<A>> {
        self.state().calls.last().cloned()
    }

    /// How many calls were received.
    pub fn call_count(&self) -> usize {
        self.state().calls.len()
    }

    /// Asserts that exactly `times` calls were received.
    ///
    /// # Panics
    ///
    /// When another number was (it is an assertion), naming the method.
    #[track_caller]
    pub fn assert_called(&self, times: usize) {
        let count = self.call_count();
        assert!(
            count == times,
            "{} was called {count} time(s), expected {times}",
            self.shared.name
        );
    }

    /// Asserts that no call was received.
    ///
    /// # Panics
    ///
    /// When one was (it is an assertion), naming the method.
    #[track_caller]
    pub fn assert_not_called(&self) {
        self.assert_called(0);
    }
}

impl<A, T, E> Method<A, T, E>
where
    A: Send + Sync,
    T: Send,
    E: Send,
{
    /// Answers one call with these arguments: records it, then fails it by
    /// the fault profile, or answers with the next scripted answer, or the
    /// default, after the delays that apply. Generated doubles call this
    /// from their `impl Trait`; the work happens when the future is first
    /// polled, as in an `async fn`.
    ///
    /// # Panics
    ///
    /// When the call is neither failed by a fault, nor scripted, nor covered
    /// by a default: the message names the method and shows the arguments.
    pub fn call(&self, args: A) -> impl Future<Output = Result<T, E>> + Send + use<A, T, E> {
        let shared = Arc::clone(&self.shared);
        async move {
            let (args, number, delay, answer) = shared.plan(args);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match answer {
                Answer::Now(result) => result,
                Answer::With(answer) => answer(&args),
                Answer::Default => shared.answer_by_default(&args, number),
            }
        }
    }
}

impl<A, T, E> Shared<A, T, E> {
    fn state(&self) -> MutexGuard<'_, State<A, T, E>> {
        // A panic in a user's closure poisons nothing that matters here.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn otherwise(&self) -> MutexGuard<'_, Option<AnswerEach<A, T, E>>> {
        self.otherwise
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call and picks its answer and delay, under the lock; the
    /// answer itself is computed after it is released.
    fn plan(&self, args: A) -> (Arc<A>, usize, Duration, Answer<A, T, E>) {
        let args = Arc::new(args);
        let mut state = self.state();
        let number = state.calls.len() + 1;
        state
            .calls
            .push(Recorded::new(Arc::clone(&args), Instant::now(), number));
        let mut latency = Duration::ZERO;
        if let Some(faults) = &mut state.faults {
            let fault = faults.next(number);
            latency = fault.latency;
            if let Some(error) = fault.error {
                return (args, number, latency, Answer::Now(Err(error)));
            }
        }
        match state.script.pop_front() {
            Some(step) => (
                args,
                number,
                latency.saturating_add(step.delay),
                step.answer,
            ),
            None => (args, number, latency, Answer::Default),
        }
    }

    fn answer_by_default(&self, args: &A, number: usize) -> Result<T, E> {
        if let Some(answer) = self.otherwise().as_mut() {
            return answer(args);
        }
        // The one panic of a double, by design: a call the test did not
        // expect is a failed test, and this says which call it was.
        panic!(
            "{} was called (call {number}) with {}, but nothing was scripted for it: script its \
             answers (`.returns(..)`, `.fails_with(..)`, `.returns_with(..)`) or give it a \
             default (`.otherwise(..)`, `.otherwise_returns(..)`)",
            self.name,
            (self.show)(args)
        );
    }
}

/// Clones share the script, the default, the faults and the calls.
impl<A, T, E> Clone for Method<A, T, E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A, T, E> std::fmt::Debug for Method<A, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Method")
            .field("name", &self.shared.name)
            .field("calls", &state.calls.len())
            .field("remaining", &state.script.len())
            .field("faults", &state.faults.as_ref().map(ActiveFaults::profile))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method() -> Method<(String, u8), u32, String> {
        Method::showing_arguments("MockCrm::account", |args| format!("{args:?}"))
    }

    #[tokio::test]
    async fn a_script_is_answered_in_order_then_the_default() {
        let account = method();
        account
            .returns(1)
            .fails_with("no".into())
            .returns_times(2, 3)
            .returns_with(|(id, n)| Ok(id.len() as u32 + u32::from(*n)));
        account.otherwise_returns(9);
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(account.call(("abc".into(), 1)).await);
        }
        assert_eq!(
            answers,
            [Ok(1), Err("no".into()), Ok(3), Ok(3), Ok(4), Ok(9)]
        );
        assert_eq!(account.remaining(), 0);
    }

    #[tokio::test]
    async fn an_unscripted_call_panics_with_the_method_and_its_arguments() {
        let account = method();
        let task = tokio::spawn(account.call(("a-1".into(), 7)));
        let panic = task.await.unwrap_err().into_panic();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("MockCrm::account was called (call 1) with (\"a-1\", 7)"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delays_apply_to_the_answers_scripted_just_before() {
        let account = method();
        account
            .returns(1)
            .fails_times(2, || "503".into())
            .delays(Duration::from_millis(50))
            .returns(2);
        account.otherwise_returns(0);
        let mut took = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            account.call(("a".into(), 0)).await.ok();
            took.push(start.elapsed().as_millis());
        }
        assert_eq!(took, [0, 50, 50, 0]);
        // On a fresh handle: one slow call answered by the default.
        let slow = method();
        slow.delays(Duration::from_secs(2)).otherwise_returns(5);
        let start = Instant::now();
        assert_eq!(slow.call(("a".into(), 0)).await, Ok(5));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(slow.call(("a".into(), 0)).await, Ok(5));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn a_double_is_send_sync_and_static_and_its_futures_are_send() {
        fn shareable<X: Send + Sync + 'static>(_: &X) {}
        fn sendable<X: Send>(_: &X) {}
        let account = method();
        shareable(&account);
        sendable(&account.call(("a".into(), 1)));
    }
}
