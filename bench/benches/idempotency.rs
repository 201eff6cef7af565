//! Recorded writes per second into the idempotency store, with group commit.
//!
//! `cargo bench -p seawall-bench --bench idempotency`. Each call of a write
//! with `idempotent(store)` checks the store for its key, calls the adapter
//! (here one that answers at once) and records the answer, durable when the
//! call returns. Records waiting at the same time share one commit and one
//! fsync, so throughput grows with the number of writers. Prints a table
//! (figures in BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use seawall::{Resilient, Runtime, contract};

const CALLS: u64 = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl seawall::Classify for LedgerError {
    fn class(&self) -> seawall::ErrorClass {
        match self {
            LedgerError::Seawall(error) => error.class(),
        }
    }
}

#[contract(name = "ledger")]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(store))]
    async fn post(&self, writer: u64, entry: u64) -> Result<u64, LedgerError>;
}

#[derive(Default)]
struct Fast {
    calls: AtomicU64,
}

impl Ledger for Fast {
    async fn post(&self, _writer: u64, entry: u64) -> Result<u64, LedgerError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // Under `cargo test --benches` only a smoke run.
    let smoke = std::env::args().all(|arg| arg != "--bench");
    println!("| writers | recorded writes | seconds | recorded writes / s |");
    println!("|---|---|---|---|");
    for writers in [1u64, 16, 64, 256] {
        let calls = match (smoke, writers) {
            (true, _) => writers * 2,
            (false, 1) => 2_000,
            (false, _) => CALLS,
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (seconds, vendor_calls, replayed) = runtime.block_on(async {
            let seawall = Runtime::embedded(dir.path()).expect("the store opens");
            let ledger = Arc::new(Resilient::new(Fast::default(), &seawall));
            let start = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|writer| {
                    let ledger = ledger.clone();
                    tokio::spawn(async move {
                        for entry in 0..calls / writers {
                            ledger.post(writer, entry).await.expect("recorded");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a writer");
            }
            let seconds = start.elapsed().as_secs_f64();
            // Every write was recorded: repeating one replays it.
            let before = ledger.inner().calls.load(Ordering::Relaxed);
            let replayed = ledger.post(0, 0).await.expect("replayed") == 0
                && ledger.inner().calls.load(Ordering::Relaxed) == before;
            (seconds, before, replayed)
        });
        assert_eq!(
            vendor_calls,
            calls - calls % writers,
            "one vendor call per write"
        );
        assert!(
            replayed,
            "a recorded write replays without calling the vendor"
        );
        println!(
            "| {writers} | {vendor_calls} | {seconds:.2} | {:.0} |",
            vendor_calls as f64 / seconds
        );
    }
}
