//! Breakers shared by a fleet through Redis, with replicas as runtimes in
//! one process (each its own replica in the fleet, with its own local
//! breaker): the fleet opens on the fleet's counts, a replica with a broken
//! path opens only itself, half-open lets `probes` probes through for the
//! whole fleet, and the fleet closes everywhere on recovery. The real
//! server on 127.0.0.1:6379, real time (Redis's clock decides), each test
//! under its own key prefix. `tests/fleet_processes.rs` runs the same
//! against separate OS processes, and `tests/fleet_faults.rs` takes the
//! server away.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use seawall::fleet::Redis;
use seawall::{BreakerState, Resilient, Runtime, contract};
use support::VendorError;
use support::redis;

const SYNC: Duration = Duration::from_millis(20);
const OPEN_FOR: Duration = Duration::from_millis(400);

#[contract]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        breaker(
            name = "vendor",
            consecutive_failures = 5,
            open_for = "400ms",
            half_open_max = "2s"
        )
    )]
    async fn get(&self, id: u32) -> Result<u32, VendorError>;
}

/// One replica's path to the vendor: up or down, and what reached it.
#[derive(Default)]
struct Path {
    down: AtomicBool,
    calls: AtomicU32,
}

struct Adapter(Arc<Path>);

impl Vendor for Adapter {
    async fn get(&self, id: u32) -> Result<u32, VendorError> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        if self.0.down.load(Ordering::SeqCst) {
            Err(VendorError::status(503))
        } else {
            Ok(id)
        }
    }
}

struct Replica {
    runtime: Runtime,
    vendor: Resilient<Adapter>,
    path: Arc<Path>,
}

impl Replica {
    fn new(url: &str, prefix: &str) -> Self {
        let redis = Redis::new(url)
            .expect("a Redis URL")
            .prefix(prefix)
            .sync_every(SYNC);
        let runtime = Runtime::builder().redis(redis).in_memory();
        let path = Arc::new(Path::default());
        let vendor = Resilient::new(Adapter(path.clone()), &runtime);
        Self {
            runtime,
            vendor,
            path,
        }
    }

    fn state(&self) -> BreakerState {
        self.runtime.breaker("vendor").expect("registered").state()
    }

    fn calls(&self) -> u32 {
        self.path.calls.load(Ordering::SeqCst)
    }

    /// Calls until the local breaker refuses (at most `limit` calls).
    async fn call_until_refused(&self, limit: u32) {
        for id in 0..limit {
            if let Err(error) = self.vendor.get(id).await
                && matches!(error.seawall(), Some(seawall::Error::BreakerOpen { .. }))
            {
                return;
            }
        }
    }
}

fn fleet(url: &str, test: &str, size: usize) -> Vec<Replica> {
    let prefix = redis::prefix(test);
    (0..size).map(|_| Replica::new(url, &prefix)).collect()
}

/// Waits (a bounded number of sync intervals) until `done` holds.
async fn within(intervals: u32, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..intervals {
        if done() {
            return true;
        }
        tokio::time::sleep(SYNC).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_opens_every_replica_once_most_of_it_sees_the_outage() {
    let Some(url) = redis::shared("the_fleet_opens_every_replica") else {
        return;
    };
    let replicas = fleet(url, "opens", 4);
    // Every replica has called successfully: each has a window the fleet
    // counts.
    for replica in &replicas {
        for id in 0..3 {
            replica.vendor.get(id).await.expect("the vendor is up");
        }
    }
    tokio::time::sleep(SYNC * 4).await;
    // Three of four see the outage and open on their own run of failures.
    for replica in &replicas[..3] {
        replica.path.down.store(true, Ordering::SeqCst);
        replica.call_until_refused(50).await;
        assert_eq!(replica.state(), BreakerState::Open);
    }
    // The fourth has not failed once; the fleet opens it within a few
    // syncs, and it then refuses without calling the vendor.
    let quiet = &replicas[3];
    let before = quiet.calls();
    assert!(
        within(10, || quiet.state() == BreakerState::Open).await,
        "the fleet did not open the replica that saw no failure: {:?}",
        quiet.state()
    );
    let error = quiet.vendor.get(99).await.expect_err("refused");
    assert!(
        matches!(error.seawall(), Some(seawall::Error::BreakerOpen { .. })),
        "{error}"
    );
    assert_eq!(quiet.calls(), before, "a refused call reached the vendor");
    // An operator's reset on one replica holds until the fleet's next
    // decision: the syncs in between do not open it again.
    quiet.runtime.breaker("vendor").unwrap().reset();
    tokio::time::sleep(SYNC * 5).await;
    assert_eq!(quiet.state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_broken_path_opens_only_itself() {
    let Some(url) = redis::shared("a_replica_with_a_broken_path") else {
        return;
    };
    let replicas = fleet(url, "broken-path", 4);
    replicas[0].path.down.store(true, Ordering::SeqCst);
    // Forty rounds over at least 20 syncs: every replica calls each round.
    let mut refused = [0u32; 4];
    for round in 0..40 {
        for (i, replica) in replicas.iter().enumerate() {
            if let Err(error) = replica.vendor.get(round).await
                && matches!(error.seawall(), Some(seawall::Error::BreakerOpen { .. }))
            {
                refused[i] += 1;
            }
        }
        tokio::time::sleep(SYNC / 2).await;
    }
    assert!(refused[0] > 0, "the broken replica never opened");
    assert_eq!(
        refused[1..],
        [0, 0, 0],
        "a healthy replica was refused because one replica's path is broken"
    );
    for replica in &replicas[1..] {
        assert_eq!(replica.state(), BreakerState::Closed);
        assert_eq!(replica.calls(), 40);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_one_probe_through_for_the_whole_fleet_then_everyone_closes() {
    let Some(url) = redis::shared("half_open_lets_one_probe") else {
        return;
    };
    let replicas = Arc::new(fleet(url, "probes", 4));
    for replica in replicas.iter() {
        replica.path.down.store(true, Ordering::SeqCst);
        replica.call_until_refused(50).await;
    }
    assert!(
        within(10, || replicas
            .iter()
            .all(|r| r.state() == BreakerState::Open))
        .await,
        "not every replica is open"
    );
    // Every replica keeps calling for three open periods; the vendor is
    // still down. Record when each call reached the vendor.
    let reached = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = std::time::Instant::now();
    let counted: Vec<u32> = replicas.iter().map(Replica::calls).collect();
    let mut tasks = Vec::new();
    for i in 0..replicas.len() {
        let replicas = replicas.clone();
        let reached = reached.clone();
        tasks.push(tokio::spawn(async move {
            let replica = &replicas[i];
            while start.elapsed() < OPEN_FOR * 3 {
                let before = replica.calls();
                let _ = replica.vendor.get(1).await;
                if replica.calls() > before {
                    reached.lock().unwrap().push(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("no panic");
    }
    let mut reached = reached.lock().unwrap().clone();
    reached.sort();
    let probes: u32 = replicas
        .iter()
        .zip(&counted)
        .map(|(replica, before)| replica.calls() - before)
        .sum();
    assert_eq!(probes as usize, reached.len());
    assert!(!reached.is_empty(), "no probe in three open periods");
    // One probe per open period for the whole fleet: each failed probe
    // re-opens it for `open_for`, so probes are at least that far apart
    // (less a little for Redis's millisecond clock and the sync interval).
    for pair in reached.windows(2) {
        assert!(
            pair[1] - pair[0] >= OPEN_FOR - SYNC,
            "two probes {:?} apart in one open period: {reached:?}",
            pair[1] - pair[0]
        );
    }
    assert!(
        reached.len() <= 3,
        "{} probes in three open periods",
        reached.len()
    );
    // The vendor recovers: the next probe closes the fleet, and every
    // replica closes with it.
    for replica in replicas.iter() {
        replica.path.down.store(false, Ordering::SeqCst);
    }
    let closed = async {
        for _ in 0..200 {
            for replica in replicas.iter() {
                let _ = replica.vendor.get(2).await;
            }
            if replicas.iter().all(|r| r.state() == BreakerState::Closed) {
                return true;
            }
            tokio::time::sleep(SYNC).await;
        }
        false
    };
    assert!(
        closed.await,
        "the fleet did not close after the vendor recovered"
    );
    for replica in replicas.iter() {
        replica.vendor.get(3).await.expect("closed again");
    }
}

/// Redis is spoken to from the fleet's own thread: replicas whose tokio
/// runtime has no I/O driver (time only) share their breaker all the same.
#[test]
fn replicas_on_a_runtime_without_io_share_their_breaker() {
    let Some(url) = redis::shared("replicas_on_a_runtime_without_io") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let replicas = fleet(url, "no-io", 3);
        for replica in &replicas {
            replica.vendor.get(0).await.expect("up");
        }
        tokio::time::sleep(SYNC * 4).await;
        for replica in &replicas[..2] {
            replica.path.down.store(true, Ordering::SeqCst);
            replica.call_until_refused(50).await;
        }
        assert!(
            within(20, || replicas[2].state() == BreakerState::Open).await,
            "the fleet did not open the third replica"
        );
    });
}

#[contract(
    name = "retrying",
    retry_budget(ratio = 0.1, max = 8, min_per_second = 0)
)]
pub trait Retrying {
    #[integration(read, timeout = "1s", retry(attempts = 3, base = "1ms", cap = "1ms"))]
    async fn fetch(&self, id: u32) -> Result<u32, VendorError>;
}

impl Retrying for Adapter {
    async fn fetch(&self, id: u32) -> Result<u32, VendorError> {
        Vendor::get(self, id).await
    }
}

/// One budget for the fleet: four replicas whose vendor fails every
/// request retry at most `max` times between them, not `max` each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_is_the_fleets_not_each_replicas() {
    let Some(url) = redis::shared("the_retry_budget_is_the_fleets") else {
        return;
    };
    let prefix = redis::prefix("budget");
    let path = Arc::new(Path::default());
    let replicas: Vec<(Runtime, Resilient<Adapter>)> = (0..4)
        .map(|_| {
            let redis = Redis::new(url).unwrap().prefix(&prefix).sync_every(SYNC);
            let runtime = Runtime::builder().redis(redis).in_memory();
            let vendor = Resilient::new(Adapter(path.clone()), &runtime);
            (runtime, vendor)
        })
        .collect();
    // Each replica builds its budget on its first call, then takes its
    // share of the fleet's tokens at its syncs.
    for (_, vendor) in &replicas {
        vendor.fetch(0).await.expect("up");
    }
    tokio::time::sleep(SYNC * 10).await;
    path.down.store(true, Ordering::SeqCst);
    let before = path.calls.load(Ordering::SeqCst);
    let mut exhausted = 0;
    for round in 0..10 {
        for (_, vendor) in &replicas {
            let error = vendor.fetch(round).await.expect_err("down");
            if matches!(
                error.seawall(),
                Some(seawall::Error::RetryBudgetExhausted { .. })
            ) {
                exhausted += 1;
            }
        }
        tokio::time::sleep(SYNC).await;
    }
    let retries = path.calls.load(Ordering::SeqCst) - before - 40;
    assert!(retries > 0, "no retry at all");
    assert!(
        retries <= 8,
        "{retries} retries from a fleet budget of 8 (local budgets would allow 32)"
    );
    assert!(
        exhausted >= 30,
        "only {exhausted} calls were stopped by the budget"
    );
}

#[contract(name = "catalog")]
pub trait Catalog {
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn item(&self, id: u32) -> Result<seawall::Cached<String>, VendorError>;
}

impl Catalog for Adapter {
    async fn item(&self, id: u32) -> Result<seawall::Cached<String>, VendorError> {
        Vendor::get(self, id)
            .await
            .map(|id| seawall::Cached::fresh(format!("item {id}")))
    }
}

/// With `share_cache`, a replica started during an outage answers stale
/// from what another replica was answered before it; without it, it has
/// nothing to serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_answers_stale_from_the_fleets_cache_during_an_outage() {
    let Some(url) = redis::shared("a_new_replica_answers_stale") else {
        return;
    };
    let prefix = redis::prefix("cache");
    let catalog = |share: bool| {
        let mut redis = Redis::new(url).unwrap().prefix(&prefix);
        if share {
            redis = redis.share_cache();
        }
        let path = Arc::new(Path::default());
        let runtime = Runtime::builder().redis(redis).in_memory();
        (Resilient::new(Adapter(path.clone()), &runtime), path)
    };
    let (first, _) = catalog(true);
    let fresh = first.item(7).await.expect("up");
    assert!(!fresh.is_stale());
    // Written behind the call: give the writer its gathering window.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (newcomer, path) = catalog(true);
    path.down.store(true, Ordering::SeqCst);
    let stale = newcomer
        .item(7)
        .await
        .expect("answered from the fleet's cache");
    assert!(stale.is_stale());
    assert_eq!(stale.value(), "item 7");
    assert_eq!(
        path.calls.load(Ordering::SeqCst),
        1,
        "the vendor was called once"
    );
    // Another key was never answered: the outage shows.
    assert!(newcomer.item(8).await.is_err());

    let (alone, path) = catalog(false);
    path.down.store(true, Ordering::SeqCst);
    assert!(
        alone.item(7).await.is_err(),
        "a replica without share_cache served stale"
    );
}
