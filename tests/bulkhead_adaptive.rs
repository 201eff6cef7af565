//! `bulkhead(adaptive)` against fixed limits, on tokio's paused clock: a
//! simulated vendor that answers in 10 ms up to 10 requests in flight and
//! takes 2 ms longer for each one beyond (with a seeded ±20 % jitter), sent
//! 800 calls a second for 3 seconds, arriving at random (Poisson, seeded).
//! Its capacity peaks at 1 000 calls a second with 10 in flight; at 100 in
//! flight it serves 526 a second, each in 190 ms. The adaptive limit should
//! find the knee: more calls answered than fixed limits of 5 or 100, as
//! many as 20, and a lower p99 than each. This run (`cargo test
//! --all-features --test bulkhead_adaptive -- --nocapture` prints it):
//!
//! ```text
//! adaptive   2400 answered,   0 refused, p50  68ms, p99  110ms, limit 12 at the end
//! fixed 5    1914 answered, 486 refused, p50 767ms, p99 1.011s
//! fixed 20   2400 answered,   0 refused, p50 265ms, p99  575ms
//! fixed 100  2240 answered, 160 refused, p50 649ms, p99 1.219s (100 in flight)
//! ```
//!
//! The same comparison against a real HTTP vendor on loopback is
//! `examples/bulkhead_adaptive.rs`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use seawall::{Resilient, Runtime, contract};
use support::VendorError;
use tokio::time::Instant;

/// A vendor whose latency rises with the requests it has in flight.
#[derive(Clone)]
struct Congested {
    in_flight: Arc<AtomicU32>,
    most: Arc<AtomicU32>,
    seed: Arc<AtomicU64>,
}

impl Congested {
    fn new(seed: u64) -> Self {
        Self {
            in_flight: Arc::default(),
            most: Arc::default(),
            seed: Arc::new(AtomicU64::new(seed)),
        }
    }

    /// A seeded ±20 % (the same run each time).
    fn jitter(&self) -> f64 {
        let mut x = self.seed.load(SeqCst);
        let unit = uniform(&mut x);
        self.seed.store(x, SeqCst);
        0.8 + 0.4 * unit
    }

    async fn request(&self) -> Result<(), VendorError> {
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let base = 10.0 + 2.0 * f64::from(now.saturating_sub(10));
        tokio::time::sleep(Duration::from_secs_f64(base * self.jitter() / 1000.0)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(())
    }
}

/// xorshift64*: a number in [0, 1), one step of `state`.
fn uniform(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

#[contract(name = "vendor")]
pub trait Vendor {
    #[integration(
        read,
        timeout = "2s",
        bulkhead(adaptive, queue = 5000, max_wait = "1s")
    )]
    async fn adaptive(&self) -> Result<(), VendorError>;

    #[integration(read, timeout = "2s", bulkhead(max = 5, queue = 5000, max_wait = "1s"))]
    async fn fixed_5(&self) -> Result<(), VendorError>;

    #[integration(
        read,
        timeout = "2s",
        bulkhead(max = 20, queue = 5000, max_wait = "1s")
    )]
    async fn fixed_20(&self) -> Result<(), VendorError>;

    #[integration(
        read,
        timeout = "2s",
        bulkhead(max = 100, queue = 5000, max_wait = "1s")
    )]
    async fn fixed_100(&self) -> Result<(), VendorError>;
}

impl Vendor for Congested {
    async fn adaptive(&self) -> Result<(), VendorError> {
        self.request().await
    }
    async fn fixed_5(&self) -> Result<(), VendorError> {
        self.request().await
    }
    async fn fixed_20(&self) -> Result<(), VendorError> {
        self.request().await
    }
    async fn fixed_100(&self) -> Result<(), VendorError> {
        self.request().await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Adaptive,
    Fixed5,
    Fixed20,
    Fixed100,
}

/// What one run saw.
struct Run {
    answered: usize,
    refused: usize,
    p50: Duration,
    p99: Duration,
    most_in_flight: u32,
    limit: u32,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered, {} refused, p50 {:?}, p99 {:?}, at most {} in flight, limit {}",
            self.answered, self.refused, self.p50, self.p99, self.most_in_flight, self.limit
        )
    }
}

const RATE: u32 = 800;
const SECONDS: u32 = 3;

async fn run(limit: Limit) -> Run {
    let runtime = Runtime::in_memory();
    let vendor = Congested::new(0x5eed_b01c_4ead);
    let client = Arc::new(Resilient::new(vendor.clone(), &runtime));
    // Calls arrive at random (Poisson, seeded): bursts push in flight past
    // the knee now and then, as real traffic does.
    let start = Instant::now();
    let mut state = 0x0a11_ce5e_ed00_0001_u64;
    let mut at = Duration::ZERO;
    let arrivals: Vec<_> = (0..RATE * SECONDS)
        .map(|_| {
            at += Duration::from_secs_f64(-(1.0 - uniform(&mut state)).ln() / f64::from(RATE));
            at
        })
        .collect();
    let calls: Vec<_> = arrivals
        .into_iter()
        .map(|at| {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                let began = Instant::now();
                let answer = match limit {
                    Limit::Adaptive => client.adaptive().await,
                    Limit::Fixed5 => client.fixed_5().await,
                    Limit::Fixed20 => client.fixed_20().await,
                    Limit::Fixed100 => client.fixed_100().await,
                };
                (answer.is_ok(), began.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for call in calls {
        let (ok, took) = call.await.unwrap();
        if ok {
            latencies.push(took);
        } else {
            refused += 1;
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let name = match limit {
        Limit::Adaptive => "vendor.adaptive",
        Limit::Fixed5 => "vendor.fixed_5",
        Limit::Fixed20 => "vendor.fixed_20",
        Limit::Fixed100 => "vendor.fixed_100",
    };
    let status = runtime
        .health()
        .bulkheads
        .into_iter()
        .find(|bulkhead| bulkhead.name == name)
        .expect("the method's bulkhead");
    Run {
        answered: latencies.len(),
        refused,
        p50: at(0.5),
        p99: at(0.99),
        most_in_flight: vendor.most.load(SeqCst),
        limit: status.limit,
    }
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_finds_the_vendors_knee_answering_more_and_faster_than_fixed_limits() {
    let adaptive = run(Limit::Adaptive).await;
    let fixed_5 = run(Limit::Fixed5).await;
    let fixed_20 = run(Limit::Fixed20).await;
    let fixed_100 = run(Limit::Fixed100).await;
    let runs = format!(
        "adaptive {adaptive:?}\nfixed 5 {fixed_5:?}\nfixed 20 {fixed_20:?}\nfixed 100 {fixed_100:?}"
    );
    println!("{runs}");
    // The limit settles near the knee (10 in flight), not at its start
    // (20) nor its ceiling (100).
    assert!((8..=16).contains(&adaptive.limit), "{runs}");
    // It answers every call, as a fixed 20 does (5 is too few: calls wait
    // past max_wait; 100 too many: the vendor congests and calls wait past
    // it too)...
    assert_eq!(adaptive.answered, (RATE * SECONDS) as usize, "{runs}");
    assert!(adaptive.answered >= fixed_20.answered, "{runs}");
    assert!(adaptive.answered > fixed_5.answered, "{runs}");
    assert!(adaptive.answered > fixed_100.answered, "{runs}");
    // ...and faster than any of them.
    assert!(adaptive.p99 < fixed_5.p99, "{runs}");
    assert!(adaptive.p99 < fixed_20.p99, "{runs}");
    assert!(adaptive.p99 < fixed_100.p99, "{runs}");
}
