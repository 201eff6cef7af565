//! The hedging policy: when an attempt has not answered after a while, send
//! another in parallel and take the first answer.

use std::time::Duration;

use crate::{Field, PolicyError, check_duration};

/// The most hedges one attempt may send (besides itself).
///
/// Each hedge is one more request to a vendor that is already slow to
/// answer; past a few, hedging stops cutting the tail and starts adding to
/// the vendor's load.
pub const MAX_HEDGES: u32 = 3;

/// When a hedge goes: after a fixed wait, or after the method's own latency
/// percentile (as it was lately measured).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeAfter {
    /// `after = "150ms"`.
    Fixed(Duration),
    /// `after = "p95"`: the percentile, in (0, 100).
    Percentile(f64),
}

impl HedgeAfter {
    /// Parses `after` as `hedge(after = ..)` writes it: a duration in
    /// humantime's form (`"150ms"`) or a percentile of the method's latency
    /// (`"p95"`, `"p99.9"`).
    ///
    /// # Errors
    ///
    /// What is wrong with it, for a compile error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percentile) = text.strip_prefix('p') {
            return match percentile.parse::<f64>() {
                Ok(p) if p > 0.0 && p < 100.0 => Ok(Self::Percentile(p)),
                Ok(_) => Err(format!(
                    "the percentile `{text}` is outside (0, 100): hedge after, say, \"p95\""
                )),
                Err(_) => Err(format!(
                    "`{text}` is neither a duration (\"150ms\") nor a percentile (\"p95\")"
                )),
            };
        }
        humantime::parse_duration(text)
            .map(Self::Fixed)
            .map_err(|error| {
                format!(
                    "`{text}` is neither a duration (\"150ms\") nor a percentile (\"p95\"): {error}"
                )
            })
    }
}

/// `hedge(after = "150ms", max = 1)`: when an attempt has not answered
/// after `after`, send another in parallel (up to `max` more, one each
/// `after`); the first answer wins and the rest are cancelled.
///
/// Only on reads, or on writes marked `idempotent` (a hedged write reaches
/// the vendor twice). Hedges take the rate limiter's turn and the
/// bulkhead's place only when one is free at once, draw from the retry
/// budget, and never go while the breaker is not closed.
#[derive(Clone, Debug, PartialEq)]
pub struct HedgePolicy {
    pub(crate) after: HedgeAfter,
    pub(crate) max: u32,
}

impl HedgePolicy {
    /// One hedge (`max = 1`) after `after`.
    pub const fn new(after: HedgeAfter) -> Self {
        Self { after, max: 1 }
    }

    /// Up to `max` hedges per attempt, one each `after`.
    pub const fn with_max(mut self, max: u32) -> Self {
        self.max = max;
        self
    }

    /// See [`new`](Self::new).
    pub const fn after(&self) -> HedgeAfter {
        self.after
    }

    /// See [`with_max`](Self::with_max).
    pub const fn max(&self) -> u32 {
        self.max
    }

    /// Every rule this hedging policy breaks by itself (those against the
    /// rest of the method's policy are the method's).
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        match self.after {
            HedgeAfter::Fixed(after) if after.is_zero() => errors.push(PolicyError::HedgeAfterZero),
            HedgeAfter::Fixed(after) => check_duration(Field::HedgeAfter, after, errors),
            HedgeAfter::Percentile(p) => {
                if !(p > 0.0 && p < 100.0) {
                    errors.push(PolicyError::HedgePercentile(p));
                }
            }
        }
        if self.max == 0 || self.max > MAX_HEDGES {
            errors.push(PolicyError::HedgeMax(self.max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_is_a_duration_or_a_percentile() {
        assert_eq!(
            HedgeAfter::parse("150ms"),
            Ok(HedgeAfter::Fixed(Duration::from_millis(150)))
        );
        assert_eq!(HedgeAfter::parse("p95"), Ok(HedgeAfter::Percentile(95.0)));
        assert_eq!(HedgeAfter::parse("p99.9"), Ok(HedgeAfter::Percentile(99.9)));
        for bad in ["p100", "p0", "pNaN", "p-5", "soon", "", "p"] {
            assert!(HedgeAfter::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn no_hedge_or_too_many_or_no_wait_is_refused() {
        let mut errors = Vec::new();
        HedgePolicy::new(HedgeAfter::Fixed(Duration::ZERO))
            .with_max(0)
            .check(&mut errors);
        assert_eq!(
            errors,
            [PolicyError::HedgeAfterZero, PolicyError::HedgeMax(0)]
        );
        let mut errors = Vec::new();
        HedgePolicy::new(HedgeAfter::Percentile(f64::NAN))
            .with_max(MAX_HEDGES + 1)
            .check(&mut errors);
        assert_eq!(errors.len(), 2);
        let mut errors = Vec::new();
        HedgePolicy::new(HedgeAfter::Percentile(95.0))
            .with_max(MAX_HEDGES)
            .check(&mut errors);
        assert!(errors.is_empty());
    }
}
