//! Test doubles: a contract's methods answered from a script, with faults
//! and expectations.
//!
//! A contract is the seam to test at: mock the contract, not the HTTP
//! layer. `#[contract(mock)]` generates `Mock<Trait>` (`MockCrm` for
//! `trait Crm`), which implements the trait with one [`Method`] handle per
//! method; everything it does lives here, so the generated code is a struct
//! and a thin `impl`. The repository's `examples/mock_service.rs` tests an
//! application's own service with one, behind `Resilient`.
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
//! - **matches arguments**: [`with`](Method::with) (a predicate) or
//!   [`with_args`](Method::with_args) (equality) gives a [`Matching`], on
//!   which answers, defaults and expectations apply to the calls it accepts
//!   alone;
//! - checks **expectations**: [`times`](Method::times) and
//!   [`never`](Method::never), on the handle or a [`Matching`]. A call past
//!   an expectation's most panics at once; too few calls fail the test when
//!   the double's last clone is dropped, or at
//!   [`checkpoint`](Method::checkpoint);
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
//! # Reproducible runs
//!
//! Two generators decide what a test sees, and each has its own seed:
//!
//! - the double's: a [`Faults`] profile's failure rate and random latency
//!   draw from [`Faults::seed`] (0 unless set);
//! - the runtime's: retry backoff jitter draws from
//!   [`RuntimeBuilder::seed`](crate::RuntimeBuilder::seed)
//!   (`Runtime::builder().seed(42).in_memory()`); without it, from the
//!   thread's random generator, so the time between retries, and so what
//!   an outage by time and the breaker see at each attempt, differs from
//!   run to run.
//!
//! Seed both, on tokio's paused clock, and the same test makes the same
//! calls at the same instants on every run.
//!
//! # Expectations
//!
//! `times(n)` (or a range, [`Times`]) and `never()` count the calls
//! received from the moment they are set, faulted calls and each attempt of
//! a retried call included. A call beyond what one allows panics at once
//! with the method, the arguments and the expectation (as mockall does),
//! so the stack points at the offending call; behind `Resilient` the panic
//! comes out of the call. Every expectation is checked again when the last
//! clone of the handle is dropped — a test's own clone, or the one a
//! `Resilient` holds, whichever goes last — which panics with each one not
//! met: what it expected, how many calls it counted, where it was set. Too
//! few calls are found there; too many are reported again, in case the
//! call's panic was caught (the drain of queued writes turns a delivery's
//! panic into a dead letter; a spawned task's panic is only a `JoinError`).
//! If the thread is already panicking (a failed assertion, or the call's
//! own panic unwinding), the check is skipped: a second panic would abort
//! the test binary and hide the first message.
//! [`checkpoint`](Method::checkpoint) checks them earlier and forgets
//! them. A clone that outlives the test (moved into a task that is never
//! awaited) is checked when it goes, wherever that is.
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
//! value. Matchers see the arguments as recorded.
//!
//! # Example
//!
//! A handle used on its own (a generated double holds one per method):
//!
//! ```
//! # use seawall_core as seawall;
//! use std::time::Duration;
//! use seawall::mock::Method;
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
//! account.with(|id| id == "b-2").returns(42);
//! account.times(6);
//!
//! assert_eq!(account.call("a-1".to_owned()).await, Ok(7));
//! assert_eq!(account.call("a-1".to_owned()).await, Err("503".to_owned()));
//! assert_eq!(account.call("b-2".to_owned()).await, Err("503".to_owned()), "in script order");
//! let before = tokio::time::Instant::now();
//! assert_eq!(account.call("a-1".to_owned()).await, Ok(8));
//! assert_eq!(before.elapsed(), Duration::from_secs(1));
//! assert_eq!(account.call("four".to_owned()).await, Ok(4), "not b-2: the default");
//! assert_eq!(account.call("b-2".to_owned()).await, Ok(42), "b-2's own answer");
//!
//! account.assert_called(6);
//! assert_eq!(account.calls()[4].args(), "four");
//! # }
//! // Dropped here: six calls, as `times(6)` expected.
//! ```

mod expect;
mod faults;
#[doc(hidden)]
pub mod generated;
mod matching;
mod record;

use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

pub use expect::Times;
pub use faults::Faults;
pub use matching::Matching;
pub use record::{Opaque, Recorded};

use expect::{Expectation, Matcher, applies};
use faults::ActiveFaults;

/// A closure that answers one call from its arguments.
type AnswerOnce<A, T, E> = Box<dyn FnOnce(&A) -> Result<T, E> + Send>;

/// A closure that answers every call past the script.
type AnswerEach<A, T, E> = Box<dyn FnMut(&A) -> Result<T, E> + Send>;

/// A default for the calls a matcher accepts.
type MatchedDefault<A, T, E> = (Arc<Matcher<A>>, AnswerEach<A, T, E>);

/// One method of a test double: its script, its default, its faults, its
/// expectations and the calls it received.
///
/// `A` is what a call's arguments are recorded as (see the
/// [module documentation](self)), `T` and `E` the method's
/// `Result<T, E>`. Scripting methods take `&self` and return it, so they
/// chain; clones share everything. When the last clone is dropped, the
/// expectations set with [`times`](Self::times) and [`never`](Self::never)
/// are checked.
pub struct Method<A, T, E> {
    shared: Arc<Shared<A, T, E>>,
}

struct Shared<A, T, E> {
    name: String,
    show: fn(&A) -> String,
    state: Mutex<State<A, T, E>>,
    /// Apart from `state`, so the defaults run without holding the script's
    /// lock (they may inspect the double).
    otherwise: Mutex<Defaults<A, T, E>>,
}

struct State<A, T, E> {
    script: VecDeque<Step<A, T, E>>,
    /// Which script steps the last scripting call added, for `delays`.
    last_group: Option<u64>,
    next_group: u64,
    calls: Vec<Recorded<A>>,
    faults: Option<ActiveFaults<E>>,
    expectations: Vec<Expectation<A>>,
}

struct Step<A, T, E> {
    answer: Answer<A, T, E>,
    delay: Duration,
    group: u64,
    /// `with(..)`: the calls it may answer (none: any call).
    matcher: Option<Arc<Matcher<A>>>,
}

enum Answer<A, T, E> {
    Now(Result<T, E>),
    With(AnswerOnce<A, T, E>),
    /// A delay scripted on its own: the default answers, later.
    Default,
}

/// The answers for calls past the script.
struct Defaults<A, T, E> {
    /// `with(..).otherwise(..)`, in the order set: the first whose matcher
    /// accepts the call answers it.
    matched: Vec<MatchedDefault<A, T, E>>,
    /// `otherwise(..)`: any other call.
    any: Option<AnswerEach<A, T, E>>,
}

/// What a call does, decided under the lock.
struct Planned<A, T, E> {
    args: Arc<A>,
    number: usize,
    delay: Duration,
    answer: Answer<A, T, E>,
    /// Scripted answers left that the call's arguments did not match.
    unmatched: usize,
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

    /// A handle whose panics show a call's arguments with `show`
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
                    expectations: Vec::new(),
                }),
                otherwise: Mutex::new(Defaults {
                    matched: Vec::new(),
                    any: None,
                }),
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

    fn script(
        &self,
        matcher: Option<&Arc<Matcher<A>>>,
        answers: impl IntoIterator<Item = Answer<A, T, E>>,
    ) -> &Self {
        let mut state = self.state();
        let group = state.next_group;
        state.next_group += 1;
        state.last_group = Some(group);
        state.script.extend(answers.into_iter().map(|answer| Step {
            answer,
            delay: Duration::ZERO,
            group,
            matcher: matcher.cloned(),
        }));
        self
    }

    /// The next call answers `Ok(value)`.
    ///
    /// For `Result<Cached<T>, E>` or `Result<Delivery<T>, E>`, pass
    /// `value.into()`, as an adapter would.
    pub fn returns(&self, value: T) -> &Self {
        self.script(None, [Answer::Now(Ok(value))])
    }

    /// The next `times` calls answer `Ok(value)`, each with its own clone.
    pub fn returns_times(&self, times: usize, value: T) -> &Self
    where
        T: Clone,
    {
        self.script(
            None,
            std::iter::repeat_n(value, times).map(|value| Answer::Now(Ok(value))),
        )
    }

    /// The next call is answered by `answer`, given the call's arguments (as
    /// recorded): `returns_with(|id| Ok(Account::new(id)))`. Its result is
    /// the method's, so it may fail too.
    pub fn returns_with(&self, answer: impl FnOnce(&A) -> Result<T, E> + Send + 'static) -> &Self {
        self.script(None, [Answer::With(Box::new(answer))])
    }

    /// The next call fails with `error`.
    pub fn fails_with(&self, error: E) -> &Self {
        self.script(None, [Answer::Now(Err(error))])
    }

    /// The next `times` calls fail, each with an error made by `error`
    /// (called `times` times, now): errors are rarely `Clone`, so this
    /// takes a closure, `fails_times(3, || CrmError::Unavailable)`. The call
    /// after them gets the next scripted answer, or the default.
    pub fn fails_times(&self, times: usize, mut error: impl FnMut() -> E) -> &Self {
        self.script(None, (0..times).map(|_| Answer::Now(Err(error()))))
    }

    /// Makes the answers scripted by the previous call on this handle come
    /// `delay` late (a `tokio::time` sleep, so it runs on the paused
    /// clock): `returns(v).delays(d)` answers one call with `v` after `d`;
    /// `fails_times(3, ..).delays(d)` delays all three failures. With
    /// nothing scripted before it (or all of that already used), it scripts
    /// one call that waits `delay` and then gets the default answer.
    /// Delays add up.
    pub fn delays(&self, delay: Duration) -> &Self {
        self.delay_last(None, delay)
    }

    fn delay_last(&self, matcher: Option<&Arc<Matcher<A>>>, delay: Duration) -> &Self {
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
            self.script(matcher, [Answer::Default]);
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
        self.shared.otherwise().any = Some(Box::new(answer));
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

    /// The calls whose arguments (as recorded) `accepts`: script answers,
    /// defaults and expectations for them alone, through the returned
    /// [`Matching`]. `with(|id| id == "42").returns(v)` answers the next
    /// call for account 42 with `v`, whatever calls for other accounts come
    /// first.
    ///
    /// Messages name the matcher by where this was called;
    /// [`with_args`](Self::with_args) shows the arguments instead. A
    /// matcher runs under the handle's lock, on every call while it is in
    /// use: it must not call this handle.
    #[track_caller]
    pub fn with(&self, accepts: impl Fn(&A) -> bool + Send + Sync + 'static) -> Matching<A, T, E> {
        let described = format!("accepted by the `with(..)` at {}", Location::caller());
        Matching::new(self.clone(), Matcher::new(Box::new(accepts), described))
    }

    /// The calls whose arguments (as recorded) equal `args`: `()`, the one
    /// argument, or a tuple, compared with `==`, so a `String` argument can
    /// be given as `"42"`. As [`with`](Self::with), with the arguments shown
    /// in messages.
    pub fn with_args<V>(&self, args: V) -> Matching<A, T, E>
    where
        A: PartialEq<V>,
        V: std::fmt::Debug + Send + Sync + 'static,
    {
        let described = format!("equal to {args:?}");
        Matching::new(
            self.clone(),
            Matcher::new(Box::new(move |recorded: &A| *recorded == args), described),
        )
    }

    /// Expects `times` calls from now on (a number, or a range such as
    /// `1..=3` or `2..`; see [`Times`]), faulted ones included: a call the
    /// runtime retries counts once per attempt. A call beyond the most it
    /// allows panics at once, naming the method and the expectation; too
    /// few calls make the double panic when its last clone is dropped (or
    /// at [`checkpoint`](Self::checkpoint)), unless the thread is panicking
    /// already.
    #[track_caller]
    pub fn times(&self, times: impl Into<Times>) -> &Self {
        self.add_expectation(None, times.into(), Location::caller())
    }

    /// Expects no call from now on: a call panics at once, naming the
    /// method and showing its arguments. Same as `times(0)`.
    #[track_caller]
    pub fn never(&self) -> &Self {
        self.add_expectation(None, Times::NEVER, Location::caller())
    }

    fn add_expectation(
        &self,
        matcher: Option<&Arc<Matcher<A>>>,
        times: Times,
        set_at: &'static Location<'static>,
    ) -> &Self {
        self.state()
            .expectations
            .push(Expectation::new(matcher.cloned(), times, set_at));
        self
    }

    /// Checks the expectations set so far, then forgets them (scripts,
    /// defaults and recorded calls stay): a test checks one phase before
    /// setting expectations for the next. The double's last clone checks
    /// what is set after this.
    ///
    /// # Panics
    ///
    /// When an expectation is not met, naming the method and, for each
    /// unmet expectation, what it expected, how many calls it counted and
    /// where it was set.
    #[track_caller]
    pub fn checkpoint(&self) {
        let expectations = std::mem::take(&mut self.state().expectations);
        let when = format!("at the checkpoint at {}", Location::caller());
        if let Some(report) = expect::report(&self.shared.name, &when, &expectations) {
            panic!("{report}");
        }
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
    /// Answers one call with these arguments: records it and counts it
    /// against the expectations, then fails it by the fault profile, or
    /// answers with the first scripted answer whose matcher (if any)
    /// accepts it, or the default, after the delays that apply. Generated
    /// doubles call this from their `impl Trait`; the work happens when the
    /// future is first polled, as in an `async fn`.
    ///
    /// # Panics
    ///
    /// When the call is one more than an expectation allows (`never()`,
    /// `times(n)`), or is neither failed by a fault, nor scripted, nor
    /// covered by a default: the message names the method and shows the
    /// arguments.
    pub fn call(&self, args: A) -> impl Future<Output = Result<T, E>> + Send + use<A, T, E> {
        let shared = Arc::clone(&self.shared);
        async move {
            let planned = shared.plan(args);
            if !planned.delay.is_zero() {
                tokio::time::sleep(planned.delay).await;
            }
            match planned.answer {
                Answer::Now(result) => result,
                Answer::With(answer) => answer(&planned.args),
                Answer::Default => {
                    shared.answer_by_default(&planned.args, planned.number, planned.unmatched)
                }
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

    fn otherwise(&self) -> MutexGuard<'_, Defaults<A, T, E>> {
        self.otherwise
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call, counts it and picks its answer and delay, under the
    /// lock; the answer itself is computed after it is released.
    fn plan(&self, args: A) -> Planned<A, T, E> {
        let args = Arc::new(args);
        let mut state = self.state();
        let number = state.calls.len() + 1;
        state
            .calls
            .push(Recorded::new(Arc::clone(&args), Instant::now(), number));
        let mut excess = None;
        for expectation in &mut state.expectations {
            if let Some(why) = expectation.count(&args) {
                excess.get_or_insert(why);
            }
        }
        if let Some(why) = excess {
            drop(state);
            // An expectation's limit, passed: fail the test at the call that
            // passed it, as mockall does.
            panic!(
                "{} was called (call {number}) with {}, but {why}",
                self.name,
                (self.show)(&args)
            );
        }
        let mut latency = Duration::ZERO;
        if let Some(faults) = &mut state.faults {
            let fault = faults.next(number);
            latency = fault.latency;
            if let Some(error) = fault.error {
                return Planned {
                    args,
                    number,
                    delay: latency,
                    answer: Answer::Now(Err(error)),
                    unmatched: 0,
                };
            }
        }
        let scripted = state
            .script
            .iter()
            .position(|step| applies(step.matcher.as_ref(), &args))
            .and_then(|at| state.script.remove(at));
        match scripted {
            Some(step) => Planned {
                args,
                number,
                delay: latency.saturating_add(step.delay),
                answer: step.answer,
                unmatched: 0,
            },
            None => Planned {
                unmatched: state.script.len(),
                args,
                number,
                delay: latency,
                answer: Answer::Default,
            },
        }
    }

    fn answer_by_default(&self, args: &A, number: usize, unmatched: usize) -> Result<T, E> {
        {
            let mut defaults = self.otherwise();
            let defaults = &mut *defaults;
            if let Some((_, answer)) = defaults
                .matched
                .iter_mut()
                .find(|(matcher, _)| matcher.accepts(args))
            {
                return answer(args);
            }
            if let Some(answer) = defaults.any.as_mut() {
                return answer(args);
            }
        }
        let left = match unmatched {
            0 => String::new(),
            1 => " (1 scripted answer is left, for other arguments)".to_owned(),
            n => format!(" ({n} scripted answers are left, for other arguments)"),
        };
        // A call the test did not expect is a failed test, and this says
        // which call it was.
        panic!(
            "{} was called (call {number}) with {}, but nothing was scripted for it{left}: script \
             its answers (`.returns(..)`, `.fails_with(..)`, `.returns_with(..)`, or the same \
             after `.with(..)`) or give it a default (`.otherwise(..)`, `.otherwise_returns(..)`)",
            self.name,
            (self.show)(args)
        );
    }
}

/// The last clone checks the expectations, unless the thread is panicking
/// already (a second panic would abort the process and lose the first
/// one's message).
impl<A, T, E> Drop for Shared<A, T, E> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let when = "when the double was dropped (its last clone)";
        if let Some(report) = expect::report(&self.name, when, &state.expectations) {
            panic!("{report}");
        }
    }
}

/// Clones share the script, the defaults, the faults, the expectations and
/// the calls.
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
            .field("expectations", &state.expectations.len())
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

    #[tokio::test]
    async fn a_call_takes_the_first_scripted_answer_that_applies_to_it() {
        let account = method();
        account.with(|(id, _)| id == "b").returns(2);
        account.returns(1);
        account.with_args(("a".to_owned(), 0)).returns(3);
        account.otherwise_returns(9);
        let mut answers = Vec::new();
        for id in ["a", "a", "b", "a", "b"] {
            answers.push(account.call((id.into(), 0)).await.unwrap());
        }
        // `a` passes the answer for `b` by; the unrestricted one goes to the
        // first call; `b` finds its own after.
        assert_eq!(answers, [1, 3, 2, 9, 9]);
    }

    #[tokio::test]
    async fn a_matching_default_answers_before_the_handles_and_replaces_its_own() {
        let account = method();
        let vip = account.with(|(_, tier)| *tier > 5);
        vip.otherwise_returns(1);
        vip.otherwise_returns(2);
        account.with(|(_, tier)| *tier > 0).otherwise_returns(3);
        account.otherwise_returns(4);
        let mut answers = Vec::new();
        for tier in [9, 3, 0] {
            answers.push(account.call(("a".into(), tier)).await.unwrap());
        }
        assert_eq!(answers, [2, 3, 4]);
    }

    #[tokio::test]
    async fn a_call_no_answer_applies_to_panics_saying_what_is_left() {
        let account = method();
        account.with_args(("b".to_owned(), 1)).returns(2).returns(3);
        let task = tokio::spawn(account.call(("a".into(), 1)));
        let panic = task.await.unwrap_err().into_panic();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with(
                "MockCrm::account was called (call 1) with (\"a\", 1), but nothing was scripted \
                 for it (2 scripted answers are left, for other arguments)"
            ),
            "{message}"
        );
        assert_eq!(account.remaining(), 2);
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
