//! The rate limiter's policy: how many calls a vendor takes per period, how
//! many at once, and how long a caller waits for its turn.

use std::borrow::Cow;
use std::time::Duration;

use crate::{Field, MAX_DURATION, PolicyError, check_duration};

/// How long a caller waits for its turn by default.
pub const DEFAULT_RATE_MAX_WAIT: Duration = Duration::from_secs(1);

/// `rate(limit = "100/10s", burst = 1, max_wait = "1s", name = "..")`: at
/// most `count` calls per `period` reach the vendor, spaced evenly, with up
/// to `burst` at once after a quiet spell.
///
/// A generic cell rate algorithm: each call is due one `period / count`
/// after the one before, and may go up to `burst - 1` such intervals early.
/// In any window of one `period` the vendor sees at most
/// `count + burst - 1` calls, so the default `burst = 1` never exceeds a
/// vendor's quota of `count` per `period`, however its window is aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatePolicy {
    pub(crate) count: u32,
    pub(crate) period: Duration,
    pub(crate) burst: u32,
    pub(crate) max_wait: Duration,
    pub(crate) name: Option<Cow<'static, str>>,
}

impl RatePolicy {
    /// At most `count` calls per `period`, one at a time (`burst = 1`), a
    /// caller waiting up to [`DEFAULT_RATE_MAX_WAIT`] for its turn.
    pub const fn new(count: u32, period: Duration) -> Self {
        Self {
            count,
            period,
            burst: 1,
            max_wait: DEFAULT_RATE_MAX_WAIT,
            name: None,
        }
    }

    /// Lets up to `burst` calls go at once after a quiet spell (the vendor
    /// then sees up to `count + burst - 1` in one period).
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// How long a caller waits for its turn before it is refused with
    /// `Error::RateLimited` (never past the call's deadline).
    pub const fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Shares one limiter among every method, of any contract, with this
    /// name (a vendor's quota is per account, not per endpoint).
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// See [`new`](Self::new).
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// See [`new`](Self::new).
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// See [`with_burst`](Self::with_burst).
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// See [`with_max_wait`](Self::with_max_wait).
    pub const fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// See [`with_name`](Self::with_name).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The spacing of calls: `period / count` (at least a nanosecond).
    pub const fn interval(&self) -> Duration {
        if self.count == 0 {
            return self.period;
        }
        let nanos = self.period.as_nanos() / self.count as u128;
        if nanos == 0 {
            Duration::from_nanos(1)
        } else if nanos > u64::MAX as u128 {
            Duration::from_nanos(u64::MAX)
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }

    /// Every rule this rate policy breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        if self.count == 0 {
            errors.push(PolicyError::RateCount);
        }
        if self.period.is_zero() {
            errors.push(PolicyError::RatePeriod);
        } else {
            check_duration(Field::RateLimit, self.period, errors);
        }
        if self.burst == 0 {
            errors.push(PolicyError::RateBurst);
        }
        if self.max_wait > MAX_DURATION {
            errors.push(PolicyError::TooLong(Field::RateMaxWait, self.max_wait));
        }
        if self.name.as_deref().is_some_and(str::is_empty) {
            errors.push(PolicyError::EmptyRateName);
        }
    }
}

/// Parses a limit as `rate(limit = ..)` writes it: a count, `/`, and a
/// period in humantime's form (`"100/10s"`, `"5/1m"`), or a unit alone for
/// one of it (`"5/s"`, `"1000/h"`).
///
/// # Errors
///
/// What is wrong with it, as a sentence.
pub fn parse_limit(text: &str) -> Result<(u32, Duration), String> {
    const FORM: &str = "write a count and a period, such as \"100/10s\", \"5/s\" or \"1000/1h\"";
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!("no `/` in \"{text}\": {FORM}"));
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("\"{}\" is not a count of calls: {FORM}", count.trim()))?;
    let period = period.trim();
    let starts_with_digit = period.starts_with(|c: char| c.is_ascii_digit());
    let period = if starts_with_digit {
        humantime::parse_duration(period)
    } else {
        humantime::parse_duration(&format!("1{period}"))
    }
    .map_err(|error| format!("the period \"{period}\" does not parse ({error}): {FORM}"))?;
    Ok((count, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_a_count_per_period() {
        assert_eq!(parse_limit("100/10s"), Ok((100, Duration::from_secs(10))));
        assert_eq!(parse_limit("5/s"), Ok((5, Duration::from_secs(1))));
        assert_eq!(
            parse_limit(" 1000 / 1h "),
            Ok((1000, Duration::from_secs(3600)))
        );
        assert_eq!(parse_limit("2/500ms"), Ok((2, Duration::from_millis(500))));
        for wrong in ["100", "ten/s", "100/", "100/10 parsecs", "-1/s"] {
            assert!(parse_limit(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn calls_are_spaced_a_period_over_the_count() {
        let rate = RatePolicy::new(100, Duration::from_secs(10));
        assert_eq!(rate.interval(), Duration::from_millis(100));
        assert_eq!(rate.burst(), 1);
        assert_eq!(rate.max_wait(), DEFAULT_RATE_MAX_WAIT);
    }

    #[test]
    fn a_zero_count_period_or_burst_and_an_empty_name_are_refused() {
        let mut errors = Vec::new();
        RatePolicy::new(0, Duration::ZERO)
            .with_burst(0)
            .with_name("")
            .check(&mut errors);
        assert_eq!(
            errors,
            [
                PolicyError::RateCount,
                PolicyError::RatePeriod,
                PolicyError::RateBurst,
                PolicyError::EmptyRateName,
            ]
        );
    }
}
