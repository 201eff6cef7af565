//! `bulkhead(adaptive)` against fixed limits of 5, 20 and 100, on a real
//! HTTP vendor on loopback whose latency rises with its load.
//!
//! ```text
//! cargo run --release --example bulkhead_adaptive
//! ```
//!
//! The vendor (axum on `127.0.0.1`) answers in 10 ms while it has at most 10
//! requests in flight, and 2 ms later for each one beyond: its capacity
//! peaks at 1 000 requests a second with 10 in flight, and with 100 in
//! flight it serves 526 a second, each in 190 ms. Calls arrive at random
//! (Poisson, seeded) at 800 a second for 3 seconds, through one method per
//! bulkhead (each with `queue = 5000, max_wait = "1s"`, `timeout = "2s"`),
//! one configuration after the other. For each the example prints the
//! calls answered and refused, the answers a second, the p50 and p99 of the
//! answered calls (waits for a place included), the most requests the
//! vendor had in flight and the bulkhead's limit at the end. Bounded: 2 400
//! calls per configuration, each over within 3 s (its wait and timeout).
//! The same comparison on tokio's paused clock, asserted, is
//! `tests/bulkhead_adaptive.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use seawall::{Classify, Resilient, Runtime, contract};
use tokio::time::Instant;

/// What a vendor call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum VendorError {
    /// The request did not get an answer.
    #[error(transparent)]
    #[classify(retryable)]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call (a full bulkhead, for one).
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// The vendor's API, once per bulkhead compared.
#[contract(name = "vendor")]
pub trait Vendor {
    /// A limit that follows the vendor's latency.
    #[integration(
        read,
        timeout = "2s",
        bulkhead(adaptive, queue = 5000, max_wait = "1s")
    )]
    async fn adaptive(&self) -> Result<(), VendorError>;

    /// At most 5 in flight.
    #[integration(read, timeout = "2s", bulkhead(max = 5, queue = 5000, max_wait = "1s"))]
    async fn fixed_5(&self) -> Result<(), VendorError>;

    /// At most 20 in flight.
    #[integration(
        read,
        timeout = "2s",
        bulkhead(max = 20, queue = 5000, max_wait = "1s")
    )]
    async fn fixed_20(&self) -> Result<(), VendorError>;

    /// At most 100 in flight.
    #[integration(
        read,
        timeout = "2s",
        bulkhead(max = 100, queue = 5000, max_wait = "1s")
    )]
    async fn fixed_100(&self) -> Result<(), VendorError>;
}

/// The adapter.
pub struct VendorHttp {
    http: reqwest::Client,
    url: String,
}

impl VendorHttp {
    async fn get(&self) -> Result<(), VendorError> {
        self.http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        Ok(())
    }
}

impl Vendor for VendorHttp {
    async fn adaptive(&self) -> Result<(), VendorError> {
        self.get().await
    }
    async fn fixed_5(&self) -> Result<(), VendorError> {
        self.get().await
    }
    async fn fixed_20(&self) -> Result<(), VendorError> {
        self.get().await
    }
    async fn fixed_100(&self) -> Result<(), VendorError> {
        self.get().await
    }
}

/// The vendor's load: requests in flight now, and the most seen.
#[derive(Default)]
struct Load {
    in_flight: AtomicU32,
    most: AtomicU32,
}

/// 10 ms, and 2 ms more for each request in flight beyond 10.
async fn congested(State(load): State<Arc<Load>>) -> &'static str {
    let now = load.in_flight.fetch_add(1, SeqCst) + 1;
    load.most.fetch_max(now, SeqCst);
    let took = Duration::from_millis(10 + 2 * u64::from(now.saturating_sub(10)));
    tokio::time::sleep(took).await;
    load.in_flight.fetch_sub(1, SeqCst);
    "ok"
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

const RATE: u32 = 800;
const SECONDS: u32 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{:<10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>12} {:>6}",
        "bulkhead", "answered", "refused", "answers/s", "p50", "p99", "most at vendor", "limit"
    );
    for name in ["adaptive", "fixed_5", "fixed_20", "fixed_100"] {
        let load = Arc::new(Load::default());
        let app = Router::new()
            .route("/", get(congested))
            .with_state(load.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let runtime = Runtime::in_memory();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(200)
            .build()?;
        let client = Arc::new(Resilient::new(VendorHttp { http, url }, &runtime));

        let mut state = 0x0a11_ce5e_ed00_0001_u64;
        let mut at = Duration::ZERO;
        let start = Instant::now();
        let calls: Vec<_> = (0..RATE * SECONDS)
            .map(|_| {
                at += Duration::from_secs_f64(-(1.0 - uniform(&mut state)).ln() / f64::from(RATE));
                let client = client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(start + at).await;
                    let began = Instant::now();
                    let answer = match name {
                        "adaptive" => client.adaptive().await,
                        "fixed_5" => client.fixed_5().await,
                        "fixed_20" => client.fixed_20().await,
                        _ => client.fixed_100().await,
                    };
                    (answer.is_ok(), began.elapsed())
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut refused = 0;
        for call in calls {
            match call.await {
                Ok((true, took)) => latencies.push(took),
                _ => refused += 1,
            }
        }
        let elapsed = start.elapsed();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        let limit = runtime
            .health()
            .bulkheads
            .into_iter()
            .find(|bulkhead| bulkhead.name == format!("vendor.{name}"))
            .map_or(0, |bulkhead| bulkhead.limit);
        println!(
            "{:<10} {:>8} {:>8} {:>10.0} {:>9.1?} {:>9.1?} {:>12} {:>6}",
            name,
            latencies.len(),
            refused,
            latencies.len() as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            load.most.load(SeqCst),
            limit
        );
        server.abort();
    }
    Ok(())
}
