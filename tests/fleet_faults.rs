//! A fleet whose Redis goes away: killed (SIGKILL), paused (`CLIENT PAUSE`),
//! emptied (`FLUSHALL`) and restarted. Each test runs its own `redis-server`
//! on a free port, so nothing else is disturbed. Calls must keep working
//! on local state, health and an event must say that Redis is away, and the
//! fleet must act as one again once Redis answers.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::fleet::Redis;
use seawall::{BreakerState, Event, Resilient, Runtime, contract};
use support::VendorError;
use support::redis::{self, Private};

const SYNC: Duration = Duration::from_millis(20);

#[contract]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        breaker(name = "vendor", consecutive_failures = 5, open_for = "10s")
    )]
    async fn get(&self, id: u32) -> Result<u32, VendorError>;
}

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
    /// Whether each `Event::Fleet` said Redis was available, in order.
    events: Arc<Mutex<Vec<bool>>>,
}

impl Replica {
    fn new(url: &str, prefix: &str) -> Self {
        let redis = Redis::new(url)
            .expect("a Redis URL")
            .prefix(prefix)
            .sync_every(SYNC)
            .store_timeout(Duration::from_millis(50));
        let runtime = Runtime::builder().redis(redis).in_memory();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        runtime.subscribe(move |event| {
            if let Event::Fleet(change) = event {
                seen.lock().unwrap().push(change.available);
            }
        });
        let path = Arc::new(Path::default());
        let vendor = Resilient::new(Adapter(path.clone()), &runtime);
        Self {
            runtime,
            vendor,
            path,
            events,
        }
    }

    fn available(&self) -> bool {
        self.runtime
            .health()
            .fleet
            .expect("a fleet runtime reports its fleet")
            .available
    }

    fn state(&self) -> BreakerState {
        self.runtime.breaker("vendor").expect("registered").state()
    }
}

async fn within(intervals: u32, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..intervals {
        if done() {
            return true;
        }
        tokio::time::sleep(SYNC).await;
    }
    done()
}

/// Opens the fleet: three of four replicas fail until they refuse.
async fn outage(replicas: &[Replica]) {
    for replica in &replicas[..3] {
        replica.path.down.store(true, Ordering::SeqCst);
        for id in 0..20 {
            let _ = replica.vendor.get(id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_leaves_every_replica_on_local_state_and_a_restart_rejoins_them() {
    let Some(mut server) = Private::start("a_killed_redis") else {
        return;
    };
    let prefix = redis::prefix("killed");
    let replicas: Vec<Replica> = (0..4)
        .map(|_| Replica::new(&server.url(), &prefix))
        .collect();
    for replica in &replicas {
        replica.vendor.get(1).await.expect("up");
    }
    assert!(within(20, || replicas.iter().all(Replica::available)).await);

    server.kill();
    // Calls go on, on the local breaker; health and an event say so.
    for replica in &replicas {
        for id in 0..5 {
            assert_eq!(replica.vendor.get(id).await.expect("still served"), id);
        }
    }
    assert!(
        within(50, || replicas.iter().all(|r| !r.available())).await,
        "health does not say Redis is away"
    );
    for replica in &replicas {
        assert_eq!(replica.events.lock().unwrap().first(), Some(&false));
        let health = replica.runtime.health().fleet.expect("fleet");
        assert!(health.last_error.is_some());
    }
    // A replica whose vendor fails still opens on its own.
    replicas[3].path.down.store(true, Ordering::SeqCst);
    for id in 0..10 {
        let _ = replicas[3].vendor.get(id).await;
    }
    assert_eq!(replicas[3].state(), BreakerState::Open);
    assert_eq!(replicas[3].path.calls.load(Ordering::SeqCst), 6 + 5);
    replicas[3].runtime.breaker("vendor").unwrap().reset();
    replicas[3].path.down.store(false, Ordering::SeqCst);

    // Redis comes back (empty, as after a restart): every replica says so,
    // and the fleet decides as one again.
    server.launch().expect("redis-server restarts");
    assert!(
        within(100, || replicas.iter().all(Replica::available)).await,
        "health does not say Redis is back"
    );
    for replica in &replicas {
        assert_eq!(*replica.events.lock().unwrap(), [false, true]);
    }
    outage(&replicas).await;
    assert!(
        within(50, || replicas[3].state() == BreakerState::Open).await,
        "after Redis came back, the fleet did not open the replica that saw no failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_away_for_as_long_as_it_is_paused() {
    let Some(server) = Private::start("a_paused_redis") else {
        return;
    };
    let prefix = redis::prefix("paused");
    let replica = Replica::new(&server.url(), &prefix);
    replica.vendor.get(1).await.expect("up");
    assert!(within(20, || replica.available()).await);
    // Every command waits for the pause to end: past the store timeout,
    // Redis counts as away, and calls do not wait for it.
    assert_eq!(
        redis::command(server.port, "CLIENT PAUSE 1500 ALL").expect("paused"),
        "+OK"
    );
    assert!(
        within(50, || !replica.available()).await,
        "a paused Redis reads as available"
    );
    for id in 0..10 {
        replica
            .vendor
            .get(id)
            .await
            .expect("served while Redis is paused");
    }
    assert!(
        within(150, || replica.available()).await,
        "Redis did not read as available after the pause"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_starts_the_fleet_again_without_an_outage() {
    let Some(server) = Private::start("an_emptied_redis") else {
        return;
    };
    let prefix = redis::prefix("flushed");
    let replicas: Vec<Replica> = (0..4)
        .map(|_| Replica::new(&server.url(), &prefix))
        .collect();
    for replica in &replicas {
        replica.vendor.get(1).await.expect("up");
    }
    outage(&replicas).await;
    assert!(within(50, || replicas[3].state() == BreakerState::Open).await);
    // FLUSHALL drops the fleet's open state. Replicas keep what they hold
    // as local state (a fresh "closed" is not a recovery), report it, and
    // the fleet opens again on their reports.
    assert_eq!(
        redis::command(server.port, "FLUSHALL").expect("flushed"),
        "+OK"
    );
    let state = format!("{prefix}:{{breaker:vendor}}:state");
    let kind = || redis::command(server.port, &format!("HGET {state} kind")).expect("HGET");
    let reopened = async {
        for _ in 0..50 {
            if kind() == "$1\n1" {
                return true;
            }
            tokio::time::sleep(SYNC).await;
        }
        false
    };
    assert!(
        reopened.await,
        "the fleet did not open again: kind {:?}",
        kind()
    );
    assert!(replicas.iter().all(Replica::available));
    for replica in &replicas {
        assert_eq!(replica.state(), BreakerState::Open);
    }
}
