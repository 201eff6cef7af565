//! Queued writes per second into the write-ahead log, with group commit.
//!
//! `cargo bench -p seawall-bench --bench wal`. Each append is durable when it returns; the
//! committer takes every append waiting and commits them with one fsync, so
//! throughput grows with the number of writers queueing at once. Prints a
//! table (figures in BENCHMARKS.md).

use std::time::Instant;

use seawall::Runtime;
use seawall::wal::QueuedWrite;

const APPENDS: u64 = 20_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!("| writers | appends | seconds | appends / s |");
    println!("|---|---|---|---|");
    for writers in [1u64, 16, 64, 256] {
        let appends = if writers == 1 { 2_000 } else { APPENDS };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let seconds = runtime.block_on(async {
            let seawall = Runtime::embedded(dir.path()).expect("the store opens");
            let start = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|writer| {
                    let seawall = seawall.clone();
                    tokio::spawn(async move {
                        let log = seawall.write_ahead_log();
                        for n in 0..appends / writers {
                            let write = QueuedWrite::new(
                                "telephony",
                                "route",
                                format!("key-{writer}-{n}"),
                                serde_json::json!({ "call": n, "to": "+15550100" }),
                            );
                            log.append(&write).await.expect("durable");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a writer");
            }
            start.elapsed().as_secs_f64()
        });
        println!(
            "| {writers} | {appends} | {seconds:.2} | {:.0} |",
            appends as f64 / seconds
        );
    }
}
