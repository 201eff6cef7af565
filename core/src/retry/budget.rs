//! The retry budget: successes earn tokens and retries spend them, so the
//! load retries add to a struggling vendor is bounded per integration, not
//! per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use tokio::time::Instant;

use crate::PolicyError;
use crate::policy::BudgetPolicy;

/// Tokens are kept in thousandths, so a ratio of 0.001 still earns.
const MILLI: u64 = 1000;

/// A retry budget shared by every method of an integration.
///
/// Depositing is skipped while the budget is full, so a healthy integration's
/// successes only read it. Withdrawing is a compare-and-swap, on the retry
/// path only.
pub struct RetryBudget {
    name: Arc<str>,
    policy: BudgetPolicy,
    earn: u64,
    full: u64,
    balance: AtomicU64,
    /// The floor: (second since `base`) << 24 | retries taken in it.
    floor: AtomicU64,
    base: Instant,
}

impl RetryBudget {
    /// A full budget.
    ///
    /// # Errors
    ///
    /// The first rule of [`BudgetPolicy::check`] the policy breaks.
    pub fn new(name: impl Into<Arc<str>>, policy: BudgetPolicy) -> Result<Self, PolicyError> {
        let mut errors = Vec::new();
        policy.check(&mut errors);
        if let Some(error) = errors.into_iter().next() {
            return Err(error);
        }
        let full = u64::from(policy.max()) * MILLI;
        Ok(Self {
            name: name.into(),
            earn: ((policy.ratio() * MILLI as f64).round() as u64).max(1),
            full,
            balance: AtomicU64::new(full),
            floor: AtomicU64::new(0),
            policy,
            base: Instant::now(),
        })
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its policy.
    pub fn policy(&self) -> &BudgetPolicy {
        &self.policy
    }

    /// The tokens left.
    pub fn tokens(&self) -> f64 {
        self.balance.load(Relaxed) as f64 / MILLI as f64
    }

    /// The tokens held, in thousandths (for a fleet's sync).
    #[cfg(feature = "redis")]
    pub(crate) fn held(&self) -> u64 {
        self.balance.load(Acquire)
    }

    /// After a fleet's sync: `returned` thousandths (what [`held`](Self::held)
    /// read before the sync) went back to the fleet and `share` came from
    /// it. Withdrawals and deposits made meanwhile are kept.
    #[cfg(feature = "redis")]
    pub(crate) fn exchange(&self, returned: u64, share: u64) {
        let _ = self.balance.fetch_update(AcqRel, Acquire, |balance| {
            Some(
                balance
                    .saturating_sub(returned)
                    .saturating_add(share)
                    .min(self.full),
            )
        });
    }

    /// The budget's full balance, in thousandths.
    #[cfg(feature = "redis")]
    pub(crate) fn full(&self) -> u64 {
        self.full
    }

    /// A successful call earns its share of a token.
    pub fn deposit(&self) {
        if self.balance.load(Relaxed) < self.full {
            let before = self.balance.fetch_add(self.earn, Relaxed);
            if before + self.earn > self.full {
                self.balance.fetch_min(self.full, Relaxed);
            }
        }
    }

    /// Takes leave for one retry: a token, or else a place in this second's
    /// floor. `false` when both are gone.
    pub fn try_withdraw(&self) -> bool {
        let token = self
            .balance
            .fetch_update(AcqRel, Acquire, |b| b.checked_sub(MILLI));
        if token.is_ok() {
            return true;
        }
        let min = u64::from(self.policy.min_per_second());
        if min == 0 {
            return false;
        }
        let second = Instant::now()
            .saturating_duration_since(self.base)
            .as_secs();
        self.floor
            .fetch_update(AcqRel, Acquire, |word| {
                let (at, taken) = (word >> 24, word & 0xff_ffff);
                if at != second {
                    Some(second << 24 | 1)
                } else if taken < min {
                    Some(word + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("name", &self.name)
            .field("tokens", &self.tokens())
            .field("policy", &self.policy)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn successes_earn_retries_spend_and_the_floor_refills_each_second() {
        let budget = RetryBudget::new(
            "crm",
            BudgetPolicy::new()
                .with_ratio(0.5)
                .with_max(2)
                .with_min_per_second(1),
        )
        .unwrap();
        // Starts full: two tokens, then this second's floor of one.
        assert!(budget.try_withdraw() && budget.try_withdraw() && budget.try_withdraw());
        assert!(!budget.try_withdraw());
        // Two successes earn one token.
        budget.deposit();
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        // A new second brings the floor back.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        // Deposits stop at the maximum.
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.tokens(), 2.0);
    }
}
