//! How fast the drain empties an embedded log after an outage, against a
//! vendor answering in 1 ms: the contract's one lane (strict order) against
//! ordering keys (`fallback = queue(order_by = [..])`, 100 accounts).
//!
//! `cargo bench -p seawall-bench --bench drain`. Prints a table (figures in
//! BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use seawall::{Classify, Delivery, ErrorClass, Resilient, Runtime, contract};

const WRITES: u64 = 2_000;
const ACCOUNTS: u64 = 100;
const LATENCY: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("the vendor is down")]
    Down,
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Down => ErrorClass::Retryable,
            Self::Seawall(error) => error.class(),
        }
    }
}

#[contract(name = "strict")]
pub trait Strict {
    #[integration(write, timeout = "5s", idempotent(key = [seq]), fallback = queue)]
    async fn note(&self, account: u64, seq: u64) -> Result<Delivery<u64>, VendorError>;
}

#[contract(name = "keyed")]
pub trait Keyed {
    #[integration(write, timeout = "5s", idempotent(key = [seq]),
                  fallback = queue(order_by = [account]))]
    async fn note(&self, account: u64, seq: u64) -> Result<Delivery<u64>, VendorError>;
}

#[derive(Clone, Default)]
struct Vendor {
    down: Arc<AtomicBool>,
    taken: Arc<AtomicU64>,
    /// When the first write was taken.
    first: Arc<std::sync::OnceLock<Instant>>,
}

impl Vendor {
    async fn take(&self, seq: u64) -> Result<Delivery<u64>, VendorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(VendorError::Down);
        }
        tokio::time::sleep(LATENCY).await;
        let _ = self.first.set(Instant::now());
        self.taken.fetch_add(1, Ordering::SeqCst);
        Ok(seq.into())
    }
}

impl Strict for Vendor {
    async fn note(&self, _account: u64, seq: u64) -> Result<Delivery<u64>, VendorError> {
        self.take(seq).await
    }
}

impl Keyed for Vendor {
    async fn note(&self, _account: u64, seq: u64) -> Result<Delivery<u64>, VendorError> {
        self.take(seq).await
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!("| drain | writes | seconds | writes / s |");
    println!("|---|---|---|---|");
    for keyed in [false, true] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let seconds = runtime.block_on(async {
            let seawall = Runtime::embedded(dir.path()).expect("the store opens");
            let vendor = Vendor::default();
            vendor.down.store(true, Ordering::SeqCst);
            let wrapper = Resilient::new(vendor.clone(), &seawall);
            for seq in 0..WRITES {
                let account = seq % ACCOUNTS;
                let answer = if keyed {
                    Keyed::note(&wrapper, account, seq).await
                } else {
                    Strict::note(&wrapper, account, seq).await
                };
                assert!(answer.expect("queued").is_queued());
            }
            // From the first write the vendor takes (the drain may be
            // waiting out a backoff when the vendor recovers) to the last.
            vendor.down.store(false, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(120);
            while vendor.taken.load(Ordering::SeqCst) < WRITES && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let first = *vendor.first.get().expect("a write was taken");
            first.elapsed().as_secs_f64()
        });
        let name = if keyed {
            "order_by, 100 accounts"
        } else {
            "per contract (one lane)"
        };
        println!(
            "| {name} | {WRITES} | {seconds:.2} | {:.0} |",
            WRITES as f64 / seconds
        );
    }
}
