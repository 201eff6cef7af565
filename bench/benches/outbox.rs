//! The PostgreSQL outbox's throughput: 64 callers queueing writes at once
//! (the vendor down, so every call queues), then three runtimes draining
//! them against a vendor answering in 1 ms, with ordering keys (100
//! accounts) and without (one lane per contract).
//!
//! `cargo bench -p seawall-bench --features postgres --bench outbox`, with
//! PostgreSQL on 127.0.0.1:5432 (`SEAWALL_BENCH_POSTGRES` to name another
//! URL); each run in a schema of its own, dropped afterwards. Prints a
//! table (figures in BENCHMARKS.md).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use seawall::postgres::Postgres;
use seawall::{Classify, Delivery, ErrorClass, Resilient, Runtime, contract};

const CALLERS: u64 = 64;
const EACH: u64 = 160;
const WRITES: u64 = CALLERS * EACH;
const ACCOUNTS: u64 = 100;
const DRAINERS: usize = 3;
const LATENCY: Duration = Duration::from_millis(1);
const DEADLINE: Duration = Duration::from_secs(300);

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

#[contract(name = "keyed")]
pub trait Keyed {
    #[integration(write, timeout = "5s", idempotent(key = [seq]),
                  fallback = queue(order_by = [account]))]
    async fn note(&self, account: u64, seq: u64) -> Result<Delivery<u64>, VendorError>;
}

#[contract(name = "strict")]
pub trait Strict {
    #[integration(write, timeout = "5s", idempotent(key = [seq]), fallback = queue)]
    async fn note(&self, account: u64, seq: u64) -> Result<Delivery<u64>, VendorError>;
}

#[derive(Clone, Default)]
struct Vendor {
    down: Arc<AtomicBool>,
    /// Each key taken, once.
    taken: Arc<Mutex<HashSet<u64>>>,
}

impl Vendor {
    async fn take(&self, seq: u64) -> Result<Delivery<u64>, VendorError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(VendorError::Down);
        }
        tokio::time::sleep(LATENCY).await;
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq);
        Ok(seq.into())
    }

    fn taken(&self) -> u64 {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }
}

impl Keyed for Vendor {
    async fn note(&self, _account: u64, seq: u64) -> Result<Delivery<u64>, VendorError> {
        self.take(seq).await
    }
}

impl Strict for Vendor {
    async fn note(&self, _account: u64, seq: u64) -> Result<Delivery<u64>, VendorError> {
        self.take(seq).await
    }
}

/// Queues `WRITES` writes from `CALLERS` tasks through a wrapper whose
/// vendor is down; the seconds it took.
async fn enqueue(config: &Postgres, keyed: bool) -> f64 {
    let seawall = Runtime::builder().postgres(config.clone()).in_memory();
    let vendor = Vendor::default();
    vendor.down.store(true, Ordering::SeqCst);
    let wrapper = Resilient::new(vendor, &seawall);
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let wrapper = wrapper.clone();
        callers.spawn(async move {
            for n in 0..EACH {
                let seq = caller * EACH + n;
                let account = seq % ACCOUNTS;
                let answer = if keyed {
                    Keyed::note(&wrapper, account, seq).await
                } else {
                    Strict::note(&wrapper, account, seq).await
                };
                assert!(answer.expect("queued").is_queued());
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a caller");
    }
    started.elapsed().as_secs_f64()
}

/// Drains what is queued with `DRAINERS` runtimes against a vendor
/// answering in 1 ms; the seconds until every write was taken.
async fn drain(config: &Postgres, keyed: bool) -> f64 {
    let vendor = Vendor::default();
    let started = Instant::now();
    let mut drainers = Vec::new();
    for _ in 0..DRAINERS {
        let seawall = Runtime::builder().postgres(config.clone()).in_memory();
        let wrapper = Resilient::new(vendor.clone(), &seawall);
        if keyed {
            Keyed::resume_queued(&wrapper);
        } else {
            Strict::resume_queued(&wrapper);
        }
        drainers.push((seawall, wrapper));
    }
    let deadline = Instant::now() + DEADLINE;
    while vendor.taken() < WRITES {
        assert!(
            Instant::now() < deadline,
            "{} of {WRITES} taken",
            vendor.taken()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported.
    let url = std::env::var("SEAWALL_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "| outbox | writes | enqueue s | enqueued / s ({CALLERS} callers) | drain s | drained / s ({DRAINERS} runtimes, vendor 1 ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for keyed in [true, false] {
        let schema = format!("bench_outbox_{}_{}", std::process::id(), u8::from(keyed));
        let config = Postgres::new(&url)
            .expect("a URL")
            .schema(&schema)
            .expect("a schema");
        let (enqueued, drained) = runtime.block_on(async {
            if let Err(error) = config.migrate().await {
                eprintln!(
                    "no PostgreSQL at {url} ({error}): start one, or set SEAWALL_BENCH_POSTGRES"
                );
                std::process::exit(1);
            }
            let enqueued = enqueue(&config, keyed).await;
            let drained = drain(&config, keyed).await;
            (enqueued, drained)
        });
        let name = if keyed {
            "order_by, 100 accounts"
        } else {
            "per contract (one lane)"
        };
        println!(
            "| {name} | {WRITES} | {enqueued:.2} | {:.0} | {drained:.2} | {:.0} |",
            WRITES as f64 / enqueued,
            WRITES as f64 / drained
        );
        runtime.block_on(async {
            use std::process::Command;
            let _ = Command::new("psql")
                .args([
                    url.as_str(),
                    "-qc",
                    &format!("DROP SCHEMA {schema} CASCADE"),
                ])
                .status();
        });
    }
}
