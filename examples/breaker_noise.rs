//! How often a circuit breaker opens on a vendor that mostly works, and how
//! fast it opens on one that does not: the figures behind the breaker's
//! defaults (BENCHMARKS.md, "Breaker: noise and outages").
//!
//! ```sh
//! cargo run --release --example breaker_noise        # 5 seeds
//! cargo run --release --example breaker_noise -- 50  # 50 seeds
//! ```
//!
//! Every call goes through a real [`seawall::Endpoint`] with the README's
//! policy (1 s timeout, `retry(attempts = 3, base = "100ms", cap = "1s")`,
//! and a breaker), on tokio's paused clock: calls are 100 ms apart, the
//! vendor answers at once and fails each attempt with `503` at a seeded
//! random rate. Three breaker rules are compared:
//!
//! - **old**: the defaults before, a window of 20 attempts judged from 10;
//! - **r4j**: Resilience4j's defaults, a window of 100 judged from 100;
//! - **new**: today's defaults, r4j's window plus a run of 10 consecutive
//!   failed attempts.
//!
//! Noise: 10 000 calls at 10, 20, 30 and 40 % failed attempts; the table
//! gives breaker opens per 10 000 calls (mean over the seeds, and the range).
//! Outage: after 200 healthy calls (the window full of successes) the vendor
//! starts failing 60, 80 or 100 % of attempts; the table gives the vendor
//! attempts made until the breaker opened (mean and worst over the seeds).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::{BreakerPolicy, BreakerState, Endpoint, Event, Kind, Policy, RetryPolicy, Runtime};

/// Seeds per figure, unless the first argument says otherwise.
const SEEDS: u64 = 5;
const CALLS: u32 = 10_000;
const HEALTHY_CALLS: u32 = 200;
const GAP: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error("503")]
    Unavailable,
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl seawall::Classify for SimError {
    fn class(&self) -> seawall::ErrorClass {
        match self {
            SimError::Unavailable => seawall::ErrorClass::Retryable,
            SimError::Seawall(error) => error.class(),
        }
    }
}

/// A vendor that fails each attempt with probability `rate`.
struct Vendor {
    rate: Mutex<f64>,
    rng: Mutex<SmallRng>,
    attempts: AtomicU64,
}

impl Vendor {
    fn attempt(&self) -> Result<(), SimError> {
        self.attempts.fetch_add(1, Relaxed);
        let rate = *self.rate.lock().unwrap();
        if self.rng.lock().unwrap().random_bool(rate) {
            Err(SimError::Unavailable)
        } else {
            Ok(())
        }
    }
}

/// One simulated service: its runtime, the endpoint and the vendor, and the
/// vendor attempt count at each breaker opening.
struct Sim {
    _runtime: Runtime,
    endpoint: Endpoint,
    vendor: Arc<Vendor>,
    opened_at: Arc<Mutex<Vec<u64>>>,
}

impl Sim {
    fn new(breaker: BreakerPolicy, rate: f64, seed: u64) -> Self {
        let runtime = Runtime::builder().seed(seed).in_memory();
        let vendor = Arc::new(Vendor {
            rate: Mutex::new(rate),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            attempts: AtomicU64::new(0),
        });
        let opened_at = Arc::new(Mutex::new(Vec::new()));
        let (seen, counted) = (opened_at.clone(), vendor.clone());
        runtime.subscribe(move |event| {
            if let Event::Breaker(transition) = event
                && transition.to == BreakerState::Open
            {
                seen.lock().unwrap().push(counted.attempts.load(Relaxed));
            }
        });
        let policy = Policy::new(Kind::Read, Duration::from_secs(1))
            .with_retry(
                RetryPolicy::new(3)
                    .with_base(Duration::from_millis(100))
                    .with_cap(Duration::from_secs(1)),
            )
            .with_breaker(breaker);
        let endpoint = runtime
            .endpoint("sim", "read", policy)
            .expect("a valid policy");
        Self {
            _runtime: runtime,
            endpoint,
            vendor,
            opened_at,
        }
    }

    /// `calls` calls, one every 100 ms (or as soon as the previous one
    /// ended, if its retries took longer); stops early once `until_open`
    /// and the breaker has opened.
    async fn offer(&self, calls: u32, until_open: bool) {
        let start = tokio::time::Instant::now();
        for call in 0..calls {
            tokio::time::sleep_until(start + GAP * call).await;
            let vendor = &self.vendor;
            let _ = self.endpoint.call(|| async { vendor.attempt() }).await;
            if until_open && !self.opened_at.lock().unwrap().is_empty() {
                return;
            }
        }
    }
}

fn rules() -> [(&'static str, BreakerPolicy); 3] {
    [
        (
            "old (window 20, min 10)",
            BreakerPolicy::new()
                .with_window(20)
                .with_min_calls(10)
                .with_consecutive_failures(0),
        ),
        (
            "r4j (window 100, min 100)",
            BreakerPolicy::new()
                .with_window(100)
                .with_min_calls(100)
                .with_consecutive_failures(0),
        ),
        (
            "new (window 100, min 100, 10 in a row)",
            BreakerPolicy::new(),
        ),
    ]
}

async fn opens_per_10k(breaker: &BreakerPolicy, rate: f64, seeds: u64) -> Vec<f64> {
    let mut figures = Vec::new();
    for seed in 1..=seeds {
        let sim = Sim::new(breaker.clone(), rate, seed);
        sim.offer(CALLS, false).await;
        let opens = sim.opened_at.lock().unwrap().len();
        figures.push(opens as f64 * 10_000.0 / f64::from(CALLS));
    }
    figures
}

async fn attempts_to_open(breaker: &BreakerPolicy, rate: f64, seeds: u64) -> Vec<Option<u64>> {
    let mut figures = Vec::new();
    for seed in 1..=seeds {
        let sim = Sim::new(breaker.clone(), 0.0, seed);
        sim.offer(HEALTHY_CALLS, false).await;
        let healthy = sim.vendor.attempts.load(Relaxed);
        *sim.vendor.rate.lock().unwrap() = rate;
        sim.offer(1_000, true).await;
        let opened = sim.opened_at.lock().unwrap().first().copied();
        figures.push(opened.map(|at| at - healthy));
    }
    figures
}

fn summary(figures: &[f64]) -> String {
    let mean = figures.iter().sum::<f64>() / figures.len() as f64;
    let min = figures.iter().copied().fold(f64::INFINITY, f64::min);
    let max = figures.iter().copied().fold(0.0, f64::max);
    format!("{mean:.1} ({min:.0}–{max:.0})")
}

fn summary_attempts(figures: &[Option<u64>]) -> String {
    if figures.iter().any(Option::is_none) {
        return "not within 1000 calls".into();
    }
    let figures: Vec<u64> = figures.iter().flatten().copied().collect();
    let mean = figures.iter().sum::<u64>() as f64 / figures.len() as f64;
    let max = figures.iter().max().copied().unwrap_or(0);
    format!("{mean:.1} (worst {max})")
}

fn main() {
    let seeds = match std::env::args().nth(1) {
        None => SEEDS,
        Some(arg) => match arg.parse::<u64>() {
            Ok(seeds) if seeds > 0 => seeds,
            _ => {
                eprintln!("usage: breaker_noise [SEEDS], SEEDS a whole number from 1");
                std::process::exit(2);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("Opens per 10 000 calls (mean over {seeds} seeds, range), by failed share of attempts");
        println!();
        println!("| rule | 10 % | 20 % | 30 % | 40 % |");
        println!("|---|---|---|---|---|");
        for (name, breaker) in rules() {
            let mut row = format!("| {name} |");
            for rate in [0.1, 0.2, 0.3, 0.4] {
                row += &format!(" {} |", summary(&opens_per_10k(&breaker, rate, seeds).await));
            }
            println!("{row}");
        }
        println!();
        println!("Vendor attempts until the breaker opens, after a healthy period (mean, worst of {seeds} seeds)");
        println!();
        println!("| rule | 60 % | 80 % | 100 % |");
        println!("|---|---|---|---|");
        for (name, breaker) in rules() {
            let mut row = format!("| {name} |");
            for rate in [0.6, 0.8, 1.0] {
                row += &format!(" {} |", summary_attempts(&attempts_to_open(&breaker, rate, seeds).await));
            }
            println!("{row}");
        }
    });
}
