//! The breaker's hot path: admit a call and record its success.
//!
//! `cargo bench -p seawall-bench --bench breaker`. Figures and how to read them are in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use seawall::breaker::Outcome;
use seawall::{Breaker, BreakerPolicy};

const WORKERS: usize = 2;
const TASKS: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .build()
        .expect("a runtime")
}

fn hot_path(breaker: &Breaker, iterations: u64) {
    for _ in 0..iterations {
        black_box(breaker)
            .try_acquire()
            .expect("closed")
            .record(black_box(Outcome::Success));
    }
}

fn breaker(policy: BreakerPolicy) -> Arc<Breaker> {
    Arc::new(Breaker::new("bench", policy).expect("a valid policy"))
}

fn bench(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("breaker acquire+record success");
    for (name, policy, metrics_only) in [
        ("count window", BreakerPolicy::new(), false),
        (
            "time window",
            BreakerPolicy::new().with_time_window(Duration::from_secs(30)),
            false,
        ),
        // Run with `Breaker::metrics_only()`: every call passes, the
        // window still counts.
        ("count window, metrics-only", BreakerPolicy::new(), true),
    ] {
        let breaker = |policy| {
            let breaker = breaker(policy);
            if metrics_only {
                breaker.metrics_only();
            }
            breaker
        };
        // One task on the multi-threaded runtime: time per call.
        let one = breaker(policy.clone());
        group.bench_function(format!("{name}, 1 task"), |b| {
            b.iter_custom(|iterations| {
                let breaker = one.clone();
                runtime.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        hot_path(&breaker, iterations);
                        start.elapsed()
                    })
                    .await
                    .expect("the task")
                })
            });
        });
        // 64 tasks on two worker threads, all on one breaker: CPU time per
        // call (wall time × workers ÷ calls), so contention shows as a
        // higher figure rather than hiding behind the second core.
        let shared = breaker(policy);
        group.bench_function(format!("{name}, 64 tasks"), |b| {
            b.iter_custom(|iterations| {
                let per_task = iterations.div_ceil(TASKS);
                let breaker = shared.clone();
                let wall = runtime.block_on(async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let breaker = breaker.clone();
                            tokio::spawn(async move { hot_path(&breaker, per_task) })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("a task");
                    }
                    start.elapsed()
                });
                let ran = (per_task * TASKS) as f64;
                wall.mul_f64(WORKERS as f64 * iterations as f64 / ran)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
