//! The retry budget's policy: ratio, ceiling and floor.

use crate::{Field, MAX_BUDGET_TOKENS, PolicyError, check_rate};

/// How many retries an integration may add on top of its calls.
///
/// Successes earn `ratio` of a token each, up to `max` tokens; each retry
/// spends one. When the tokens are gone, up to `min_per_second` retries a
/// second are still allowed, so a client with little traffic can always
/// retry a transient error. Under a brownout the extra load a client adds is
/// therefore about `ratio` of its successful calls, whatever `attempts` says.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetPolicy {
    pub(crate) ratio: f64,
    pub(crate) max: u32,
    pub(crate) min_per_second: u32,
}

impl BudgetPolicy {
    /// `ratio` 0.1 (one retry per ten successes), `max` 10 tokens (the burst
    /// an outage can draw at once), `min_per_second` 10.
    pub const fn new() -> Self {
        Self {
            ratio: 0.1,
            max: 10,
            min_per_second: 10,
        }
    }

    /// The share of a token each success earns, in `(0, 1]`.
    pub const fn with_ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// The most tokens the budget holds (and starts with).
    pub const fn with_max(mut self, tokens: u32) -> Self {
        self.max = tokens;
        self
    }

    /// Retries allowed each second even with no tokens left.
    pub const fn with_min_per_second(mut self, retries: u32) -> Self {
        self.min_per_second = retries;
        self
    }

    /// See [`with_ratio`](Self::with_ratio).
    pub const fn ratio(&self) -> f64 {
        self.ratio
    }

    /// See [`with_max`](Self::with_max).
    pub const fn max(&self) -> u32 {
        self.max
    }

    /// See [`with_min_per_second`](Self::with_min_per_second).
    pub const fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// Every rule this budget breaks.
    pub fn check(&self, errors: &mut Vec<PolicyError>) {
        check_rate(Field::BudgetRatio, self.ratio, errors);
        if self.max > MAX_BUDGET_TOKENS {
            errors.push(PolicyError::BudgetMax(self.max));
        }
    }
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        Self::new()
    }
}
