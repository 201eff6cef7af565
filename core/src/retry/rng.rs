//! Where a call's jitter comes from: the thread's generator, or a seeded one
//! per call so tests draw the same delays on every run without a shared lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Where jitter comes from: the thread's generator, or (for deterministic
/// tests) a seed. A seeded source hands each logical call its own generator,
/// derived from the seed and the call's order, so no lock is shared between
/// calls.
#[derive(Debug, Default)]
pub(crate) struct RngSource {
    seed: Option<u64>,
    calls: AtomicU64,
}

impl RngSource {
    pub(crate) fn seeded(seed: u64) -> Self {
        Self {
            seed: Some(seed),
            calls: AtomicU64::new(0),
        }
    }

    /// A generator for one logical call's retries.
    pub(crate) fn for_call(&self) -> SmallRng {
        match self.seed {
            Some(seed) => {
                let call = self.calls.fetch_add(1, Relaxed);
                SmallRng::seed_from_u64(seed ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            }
            None => SmallRng::from_rng(&mut rand::rng()),
        }
    }
}
