//! 64 tasks on the multi-threaded runtime drive one breaker through repeated
//! open → half-open → closed cycles; on every cycle, no more than `probes`
//! calls are ever in flight while it is half-open.
//!
//! Real threads need the real clock: the breaker opens for 5 ms at a time,
//! every loop is bounded in count and time, and the test stops itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use seawall::breaker::Outcome;
use seawall::{Breaker, BreakerPolicy, BreakerState};
use tokio::time::Instant;

const TASKS: usize = 64;
const CYCLES: usize = 20;
const PROBES: u32 = 3;

async fn wait_for(breaker: &Breaker, state: BreakerState) {
    let start = Instant::now();
    while breaker.state() != state {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the breaker never reached {state}: it is {}",
            breaker.state()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_never_has_more_than_probes_in_flight() {
    let breaker = Arc::new(
        Breaker::new(
            "concurrent",
            BreakerPolicy::new()
                .with_window(10)
                .with_min_calls(5)
                .with_open_for(Duration::from_millis(5))
                .with_probes(PROBES),
        )
        .unwrap(),
    );
    let failing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU32::new(0));
    let most_in_flight = Arc::new(AtomicU32::new(0));
    let probes = Arc::new(AtomicUsize::new(0));

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (breaker, failing, stop) = (breaker.clone(), failing.clone(), stop.clone());
            let (in_flight, most, probes) =
                (in_flight.clone(), most_in_flight.clone(), probes.clone());
            tokio::spawn(async move {
                // Bounded: the driver stops the tasks, and this cap stops
                // them even if the driver fails.
                for _ in 0..5_000_000 {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let Ok(permit) = breaker.try_acquire() else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    if permit.is_probe() {
                        probes.fetch_add(1, SeqCst);
                        let now = in_flight.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        // Hold the probe across a yield so others try to
                        // get in while it is out.
                        tokio::task::yield_now().await;
                        in_flight.fetch_sub(1, SeqCst);
                    }
                    let outcome = if failing.load(SeqCst) {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    permit.record(outcome);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    for _ in 0..CYCLES {
        failing.store(true, SeqCst);
        wait_for(&breaker, BreakerState::Open).await;
        failing.store(false, SeqCst);
        wait_for(&breaker, BreakerState::Closed).await;
    }
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let most = most_in_flight.load(SeqCst);
    assert!(most <= PROBES, "{most} probes were in flight at once");
    assert!(
        probes.load(SeqCst) >= CYCLES,
        "every cycle closed through probes"
    );
}
