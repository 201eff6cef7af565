//! The delay before each retry: exponential from `base` to `cap`, with
//! jitter so that clients that failed together do not retry together.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::{Jitter, RetryPolicy};

/// Computes the delay before each retry.
///
/// ```
/// use std::time::Duration;
/// use seawall_core::{Jitter, RetryPolicy, retry::Backoff};
///
/// let policy = RetryPolicy::new(5)
///     .with_base(Duration::from_millis(100))
///     .with_cap(Duration::from_millis(300))
///     .with_jitter(Jitter::None);
/// let backoff = Backoff::new(&policy);
/// let mut rng = rand::rng();
/// let delays: Vec<_> = (0..4).map(|n| backoff.delay(n, Duration::ZERO, &mut rng)).collect();
/// assert_eq!(delays, [100, 200, 300, 300].map(Duration::from_millis));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// The backoff of a retry policy.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            base: policy.base(),
            cap: policy.cap(),
            jitter: policy.jitter(),
        }
    }

    /// `min(cap, base × 2^retry)`: the delay before jitter of retry number
    /// `retry` (0 for the first retry).
    pub fn ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
        crate::policy::backoff_ceiling(base, cap, retry)
    }

    /// The delay before retry number `retry` (0 for the first retry).
    /// `previous` is the delay slept before the last retry (zero before the
    /// first); only [`Jitter::Decorrelated`] reads it.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, previous: Duration, rng: &mut R) -> Duration {
        let ceiling = Self::ceiling(self.base, self.cap, retry);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => random_between(rng, Duration::ZERO, ceiling),
            Jitter::Equal => {
                let half = ceiling / 2;
                half + random_between(rng, Duration::ZERO, ceiling - half)
            }
            Jitter::Decorrelated => {
                let previous = previous.max(self.base);
                let upper = previous.saturating_mul(3).min(self.cap).max(self.base);
                random_between(rng, self.base, upper).min(self.cap)
            }
            // `Jitter` may grow; until core knows a new kind, full jitter is
            // the safe spread.
            _ => random_between(rng, Duration::ZERO, ceiling),
        }
    }
}

fn random_between<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let (low, high) = (
        low.as_nanos() as u64,
        high.as_nanos().min(u64::MAX as u128) as u64,
    );
    Duration::from_nanos(rng.random_range(low..=high))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff::new(
            &RetryPolicy::new(10)
                .with_base(MS * 100)
                .with_cap(MS * 1000)
                .with_jitter(jitter),
        )
    }

    #[test]
    fn ceiling_doubles_then_caps_without_overflow() {
        let ceilings: Vec<_> = (0..6)
            .map(|n| Backoff::ceiling(MS * 100, MS * 1000, n))
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000].map(|ms| MS * ms));
        assert_eq!(Backoff::ceiling(MS, MS * 7, 200), MS * 7);
    }

    #[test]
    fn every_jitter_stays_within_its_bounds() {
        let mut rng = rand::rng();
        for retry in 0..8 {
            let ceiling = Backoff::ceiling(MS * 100, MS * 1000, retry);
            for _ in 0..200 {
                let full = backoff(Jitter::Full).delay(retry, Duration::ZERO, &mut rng);
                assert!(full <= ceiling);
                let equal = backoff(Jitter::Equal).delay(retry, Duration::ZERO, &mut rng);
                assert!(equal >= ceiling / 2 && equal <= ceiling, "{equal:?}");
                let previous = MS * 250;
                let decorrelated = backoff(Jitter::Decorrelated).delay(retry, previous, &mut rng);
                assert!(
                    decorrelated >= MS * 100 && decorrelated <= MS * 750,
                    "{decorrelated:?}"
                );
            }
        }
    }

    /// 10 000 seeded draws per jitter kind: all within the formula's bounds,
    /// and the mean within 2 % of the formula's (the standard error of such a
    /// mean is about 0.3 %).
    #[test]
    fn ten_thousand_seeded_draws_per_kind_match_their_formula() {
        use rand::SeedableRng;
        const DRAWS: u32 = 10_000;
        let ceiling = MS * 800; // retry 3: 100 ms × 2³
        let previous = MS * 200;
        let cases: [(Jitter, Duration, Duration, Duration); 4] = [
            (Jitter::Full, Duration::ZERO, ceiling, ceiling / 2),
            (Jitter::Equal, ceiling / 2, ceiling, ceiling * 3 / 4),
            // random(base, previous × 3) = random(100 ms, 600 ms)
            (Jitter::Decorrelated, MS * 100, MS * 600, MS * 350),
            (Jitter::None, ceiling, ceiling, ceiling),
        ];
        for (jitter, low, high, mean) in cases {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
            let backoff = backoff(jitter);
            let mut total = Duration::ZERO;
            for _ in 0..DRAWS {
                let delay = backoff.delay(3, previous, &mut rng);
                assert!(delay >= low && delay <= high, "{jitter:?}: {delay:?}");
                total += delay;
            }
            let measured = (total / DRAWS).as_secs_f64();
            let expected = mean.as_secs_f64();
            assert!(
                (measured - expected).abs() <= expected * 0.02,
                "{jitter:?}: mean {measured} s, expected {expected} s"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        use rand::SeedableRng;
        let draw = || {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
            (0..5)
                .map(|n| backoff(Jitter::Full).delay(n, Duration::ZERO, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn full_jitter_spreads_delays_out() {
        let mut rng = rand::rng();
        let delays: Vec<_> = (0..100)
            .map(|_| backoff(Jitter::Full).delay(3, Duration::ZERO, &mut rng))
            .collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(
            *max - *min > MS * 400,
            "100 draws from 0..=800ms spread only {min:?}..{max:?}"
        );
    }
}
