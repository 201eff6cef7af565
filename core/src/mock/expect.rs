//! Expectations: how many calls a method (or the calls a matcher accepts)
//! should receive, counted as they arrive and checked when asked, or when
//! the double's last clone is dropped.

use std::fmt;
use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};
use std::panic::Location;
use std::sync::Arc;

/// How many calls an expectation wants, for
/// [`Method::times`](super::Method::times) and
/// [`Matching::times`](super::Matching::times): a number or a range of
/// them.
///
/// ```
/// # use seawall_core as seawall;
/// use seawall::mock::Times;
///
/// assert_eq!(Times::from(2).to_string(), "exactly 2 calls");
/// assert_eq!(Times::from(1..=3).to_string(), "between 1 and 3 calls");
/// assert_eq!(Times::from(1..).to_string(), "at least 1 call");
/// assert_eq!(Times::from(..3).to_string(), "at most 2 calls");
/// assert_eq!(Times::from(0).to_string(), "no call");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Times {
    min: usize,
    /// Inclusive; `None` for no upper bound.
    max: Option<usize>,
}

impl Times {
    /// No call at all: [`never`](super::Method::never).
    pub const NEVER: Self = Self {
        min: 0,
        max: Some(0),
    };

    /// The fewest calls that meet it.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The most calls that meet it, if there is a most.
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    /// Whether `count` calls meet it.
    pub fn contains(&self, count: usize) -> bool {
        count >= self.min && self.max.is_none_or(|max| count <= max)
    }

    /// Whether `count` calls are more than it allows (so that no later call
    /// can meet it).
    pub(super) fn exceeded_by(&self, count: usize) -> bool {
        self.max.is_some_and(|max| count > max)
    }

    /// An empty range (`3..3`, `4..=2`) wants no call.
    fn between(min: usize, max: Option<usize>) -> Self {
        match max {
            Some(max) if max < min => Self::NEVER,
            max => Self { min, max },
        }
    }
}

fn calls(n: usize) -> String {
    if n == 1 {
        "1 call".to_owned()
    } else {
        format!("{n} calls")
    }
}

impl fmt::Display for Times {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (0, Some(0)) => f.write_str("no call"),
            (min, Some(max)) if min == max => write!(f, "exactly {}", calls(min)),
            (0, None) => f.write_str("any number of calls"),
            (min, None) => write!(f, "at least {}", calls(min)),
            (0, Some(max)) => write!(f, "at most {}", calls(max)),
            (min, Some(max)) => write!(f, "between {min} and {max} calls"),
        }
    }
}

impl From<usize> for Times {
    fn from(times: usize) -> Self {
        Self::between(times, Some(times))
    }
}

impl From<Range<usize>> for Times {
    fn from(range: Range<usize>) -> Self {
        match range.end.checked_sub(1) {
            Some(max) => Self::between(range.start, Some(max)),
            None => Self::NEVER,
        }
    }
}

impl From<RangeInclusive<usize>> for Times {
    fn from(range: RangeInclusive<usize>) -> Self {
        Self::between(*range.start(), Some(*range.end()))
    }
}

impl From<RangeFrom<usize>> for Times {
    fn from(range: RangeFrom<usize>) -> Self {
        Self::between(range.start, None)
    }
}

impl From<RangeTo<usize>> for Times {
    fn from(range: RangeTo<usize>) -> Self {
        Self::from(0..range.end)
    }
}

impl From<RangeToInclusive<usize>> for Times {
    fn from(range: RangeToInclusive<usize>) -> Self {
        Self::between(0, Some(range.end))
    }
}

impl From<RangeFull> for Times {
    fn from(_: RangeFull) -> Self {
        Self::between(0, None)
    }
}

/// Which calls a `with(..)` accepts, and how messages describe them.
pub(super) struct Matcher<A> {
    accepts: Box<dyn Fn(&A) -> bool + Send + Sync>,
    /// "equal to \"42\"", or where the closure was written.
    described: String,
}

impl<A> Matcher<A> {
    pub(super) fn new(
        accepts: Box<dyn Fn(&A) -> bool + Send + Sync>,
        described: String,
    ) -> Arc<Self> {
        Arc::new(Self { accepts, described })
    }

    pub(super) fn accepts(&self, args: &A) -> bool {
        (self.accepts)(args)
    }

    pub(super) fn described(&self) -> &str {
        &self.described
    }
}

/// Whether a call with `args` falls under `matcher` (no matcher: every
/// call does).
pub(super) fn applies<A>(matcher: Option<&Arc<Matcher<A>>>, args: &A) -> bool {
    matcher.is_none_or(|matcher| matcher.accepts(args))
}

/// One `times(..)` or `never()`: the calls it counts and how many so far.
pub(super) struct Expectation<A> {
    matcher: Option<Arc<Matcher<A>>>,
    times: Times,
    /// Matching calls since it was set.
    count: usize,
    /// Calls of the method, matching or not, since it was set.
    all: usize,
    set_at: &'static Location<'static>,
}

impl<A> Expectation<A> {
    pub(super) fn new(
        matcher: Option<Arc<Matcher<A>>>,
        times: Times,
        set_at: &'static Location<'static>,
    ) -> Self {
        Self {
            matcher,
            times,
            count: 0,
            all: 0,
            set_at,
        }
    }

    /// Counts one call; says why it must fail if it is one too many.
    pub(super) fn count(&mut self, args: &A) -> Option<String> {
        self.all += 1;
        if !applies(self.matcher.as_ref(), args) {
            return None;
        }
        self.count += 1;
        if !self.times.exceeded_by(self.count) {
            return None;
        }
        Some(format!(
            "it expected {}, and this is the {} (expectation set at {})",
            self.describe(),
            ordinal(self.count),
            self.set_at
        ))
    }

    /// What is wrong with it now, if anything: too few calls, or too many
    /// (reported at the call already, but that panic may have been caught).
    pub(super) fn unmet(&self) -> Option<String> {
        if self.times.contains(self.count) {
            return None;
        }
        let got = match (&self.matcher, self.count) {
            (None, count) => format!("got {}", calls(count)),
            (Some(_), count) => format!(
                "got {} ({} in all since it was set)",
                calls_matching(count),
                calls(self.all)
            ),
        };
        Some(format!(
            "expected {}, {got} (expectation set at {})",
            self.describe(),
            self.set_at
        ))
    }

    fn describe(&self) -> String {
        match &self.matcher {
            None => self.times.to_string(),
            Some(matcher) => format!("{} with arguments {}", self.times, matcher.described()),
        }
    }
}

fn calls_matching(n: usize) -> String {
    if n == 1 {
        "1 matching call".to_owned()
    } else {
        format!("{n} matching calls")
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The report of every unmet expectation of a method, if there is one.
pub(super) fn report<A>(name: &str, when: &str, expectations: &[Expectation<A>]) -> Option<String> {
    let unmet: Vec<String> = expectations.iter().filter_map(Expectation::unmet).collect();
    if unmet.is_empty() {
        return None;
    }
    let mut message = format!(
        "{name}: {} not met {when}:",
        if unmet.len() == 1 {
            "an expectation was"
        } else {
            "expectations were"
        }
    );
    for line in unmet {
        message.push_str("\n  - ");
        message.push_str(&line);
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_numbers_and_ranges() {
        assert_eq!(Times::from(3), Times::from(3..=3));
        assert_eq!(Times::from(3..3), Times::NEVER);
        assert_eq!(Times::from(0..0), Times::NEVER);
        assert_eq!(Times::from(..0), Times::NEVER);
        assert_eq!(Times::from(2..5).max(), Some(4));
        assert!(Times::from(..).contains(0) && Times::from(..).contains(usize::MAX));
        assert!(!Times::from(2..).contains(1) && Times::from(2..).contains(9));
        assert!(Times::from(2).exceeded_by(3) && !Times::from(2..).exceeded_by(3));
        assert_eq!(Times::from(..=1).to_string(), "at most 1 call");
        assert_eq!(Times::from(..).to_string(), "any number of calls");
        assert_eq!(Times::from(1).to_string(), "exactly 1 call");
    }

    #[test]
    fn ordinals() {
        let said: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            said,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn an_expectation_counts_the_calls_its_matcher_accepts() {
        let even = Matcher::new(Box::new(|n: &u32| n.is_multiple_of(2)), "even".to_owned());
        let mut expectation = Expectation::new(Some(even), Times::from(2), Location::caller());
        for n in [1, 2, 3] {
            assert_eq!(expectation.count(&n), None);
        }
        let unmet = expectation.unmet().expect("one of two");
        assert!(
            unmet.starts_with(
                "expected exactly 2 calls with arguments even, got 1 matching call (3 calls in \
                 all since it was set)"
            ),
            "{unmet}"
        );
        assert_eq!(expectation.count(&4), None);
        assert_eq!(expectation.unmet(), None);
        let over = expectation.count(&6).expect("one too many");
        assert!(
            over.starts_with(
                "it expected exactly 2 calls with arguments even, and this is the 3rd"
            ),
            "{over}"
        );
        assert!(expectation.count(&8).is_some(), "and the next");
        let unmet = expectation.unmet().expect("one too many, then two");
        assert!(
            unmet.starts_with("expected exactly 2 calls with arguments even, got 4 matching calls"),
            "{unmet}"
        );
    }
}
