//! Rate limits shared by a fleet through Redis, with replicas as runtimes
//! in one process (each its own replica, with its own lease): the lease
//! script's arithmetic against state set by hand in Redis (flushed,
//! garbled, a TAT stepped far into the future or the past, a pause), busy
//! replicas held to one limit with batched leases, and a killed Redis that
//! leaves each replica on its share until it answers again. Real Redis
//! (the server on 127.0.0.1:6379, or a private `redis-server` the fault
//! test kills), real time, each test under its own key prefix.
//! `tests/fleet_rate_processes.rs` runs the limit across OS processes
//! against a loopback vendor.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seawall::fleet::Redis;
use seawall::overrides::Overrides;
use seawall::rate::RateLimiter;
use seawall::{Event, Kind, Policy, RatePolicy, Resilient, Runtime, contract};
use support::VendorError;
use support::redis::{self, Private};

const SYNC: Duration = Duration::from_millis(20);
/// The limit below: one turn every 25 ms, four at once after a quiet
/// spell.
const INTERVAL: Duration = Duration::from_millis(25);
const BURST: usize = 4;

#[contract]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        rate(limit = "40/1s", burst = 4, name = "vendor")
    )]
    async fn get(&self) -> Result<(), VendorError>;
}

/// What reached the vendor: when, and from which replica.
type Log = Arc<Mutex<Vec<(Instant, usize)>>>;

struct Adapter {
    id: usize,
    log: Log,
}

impl Vendor for Adapter {
    async fn get(&self) -> Result<(), VendorError> {
        self.log.lock().unwrap().push((Instant::now(), self.id));
        Ok(())
    }
}

struct Replica {
    runtime: Runtime,
    vendor: Arc<Resilient<Adapter>>,
    /// Whether each `Event::Fleet` said Redis was available, in order.
    events: Arc<Mutex<Vec<bool>>>,
}

impl Replica {
    fn new(url: &str, prefix: &str, id: usize, log: &Log) -> Self {
        Self::leasing(url, prefix, id, log, 8)
    }

    /// A replica that leases at most `lease` turns per round trip.
    fn leasing(url: &str, prefix: &str, id: usize, log: &Log, lease: u32) -> Self {
        let redis = Redis::new(url)
            .expect("a Redis URL")
            .prefix(prefix)
            .sync_every(SYNC)
            .store_timeout(Duration::from_millis(50))
            .fleet_size(4)
            .rate_lease(lease);
        let runtime = Runtime::builder().redis(redis).in_memory();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        runtime.subscribe(move |event| {
            if let Event::Fleet(change) = event {
                seen.lock().unwrap().push(change.available);
            }
        });
        let vendor = Arc::new(Resilient::new(
            Adapter {
                id,
                log: log.clone(),
            },
            &runtime,
        ));
        // The wrapper builds its endpoints at its first call; the tests
        // that take turns directly register the same limiter now.
        let policy = RatePolicy::new(40, Duration::from_secs(1))
            .with_burst(4)
            .with_name("vendor");
        runtime
            .endpoint(
                "Vendor",
                "get",
                Policy::new(Kind::Read, Duration::from_secs(1)).with_rate(policy),
            )
            .expect("a valid policy");
        Self {
            runtime,
            vendor,
            events,
        }
    }

    fn limiter(&self) -> Arc<RateLimiter> {
        self.runtime.rate_limiter("vendor").expect("registered")
    }

    fn shared(&self) -> bool {
        self.limiter()
            .status()
            .fleet
            .expect("a fleet runtime's limiter reports the fleet")
            .shared
    }
}

/// A replica on the shared server, under `prefix`, that leases one turn
/// per round trip: the script's arithmetic, turn by turn.
fn replica(prefix: &str) -> Replica {
    Replica::leasing(redis::SHARED, prefix, 0, &Log::default(), 1)
}

/// Turns a limiter gives at once (without waiting), up to 20.
async fn at_once(limiter: &RateLimiter) -> usize {
    for taken in 0..20 {
        if limiter.acquire(Duration::ZERO).await.is_err() {
            return taken;
        }
    }
    20
}

/// The shared server's clock, in microseconds.
fn redis_now_us() -> u64 {
    let answer = redis::command(6379, "TIME").expect("TIME");
    let lines: Vec<&str> = answer.lines().collect();
    let (seconds, micros): (u64, u64) = (
        lines[2].parse().expect("seconds"),
        lines[4].parse().expect("microseconds"),
    );
    seconds * 1_000_000 + micros
}

fn state_key(prefix: &str) -> String {
    format!("{prefix}:{{rate:vendor}}:state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_grants_one_burst_then_spaces_turns_across_replicas() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-burst");
    let (a, b) = (replica(&prefix), replica(&prefix));
    assert_eq!(
        at_once(&a.limiter()).await,
        BURST,
        "one burst for the fleet"
    );
    // The other replica finds the fleet's burst spent: its next turn is
    // at most one interval away.
    let wait = b
        .limiter()
        .acquire(Duration::ZERO)
        .await
        .expect_err("the fleet's burst is spent");
    assert!(wait <= INTERVAL, "next turn {wait:?} away");
    b.limiter()
        .acquire(Duration::from_millis(200))
        .await
        .expect("a turn within 200 ms");
    let status = b.limiter().status();
    let fleet = status.fleet.expect("fleet");
    assert!(fleet.shared);
    assert_eq!(fleet.share, "10/1s");
    assert!(fleet.round_trips >= 1);
    assert_eq!(status.admitted, 1);
    assert_eq!(status.refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_a_new_rate_for_a_limiter_the_fleet_shares() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-reload");
    let a = replica(&prefix);
    a.vendor.get().await.expect("a turn");
    assert!(a.shared());
    let reload = |key: &str, value: &str| {
        let mut overrides = Overrides::new();
        overrides
            .set("shared.vendor", key, value)
            .expect("a valid override");
        a.runtime.reload_with(overrides)
    };
    let refused = reload("rate.limit", "80/1s").expect_err("the fleet agreed on 40/1s");
    assert!(
        refused.errors.iter().any(
            |e| e.message.contains("shared with the fleet") && e.message.contains("next start")
        ),
        "{refused}"
    );
    assert_eq!(a.limiter().policy().count(), 40, "the rate stays");
    assert_eq!(
        a.limiter().status().fleet.expect("fleet").share,
        "10/1s",
        "the share of four replicas stays"
    );
    // The rate it has is no change, and the refusal is not sticky.
    reload("rate.limit", "40/1s").expect("the same rate reloads");
    assert!(a.runtime.health().last_reload.expect("reloaded").applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_state_starts_afresh_with_one_burst_at_most() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-flushed");
    let a = replica(&prefix);
    assert_eq!(at_once(&a.limiter()).await, BURST);
    redis::command(6379, &format!("DEL {}", state_key(&prefix))).expect("DEL");
    assert_eq!(at_once(&replica(&prefix).limiter()).await, BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tat_stepped_far_ahead_is_set_back_and_one_far_behind_gives_one_burst() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-clock");
    let key = state_key(&prefix);
    // A day ahead: more than the fleet could have leased (a clock that
    // stepped back, a stray write). Not a day of refusals: a fresh start.
    let day_ahead = redis_now_us() + 86_400_000_000;
    redis::command(6379, &format!("HSET {key} tat {day_ahead}")).expect("HSET");
    assert_eq!(at_once(&replica(&prefix).limiter()).await, BURST);
    // Far behind (a clock that stepped forward): turns do not accumulate
    // beyond one burst.
    redis::command(6379, &format!("HSET {key} tat 1")).expect("HSET");
    assert_eq!(at_once(&replica(&prefix).limiter()).await, BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_state_is_dropped_or_read_as_fresh() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-garbled");
    let key = state_key(&prefix);
    // Not a hash at all.
    redis::command(6379, &format!("SET {key} garbage")).expect("SET");
    let a = replica(&prefix);
    assert_eq!(at_once(&a.limiter()).await, BURST);
    assert!(a.shared(), "a garbled key is not Redis being away");
    // Fields that do not parse as numbers.
    for tat in ["nan", "inf", "abc", "-5"] {
        redis::command(6379, &format!("DEL {key}")).expect("DEL");
        redis::command(6379, &format!("HSET {key} tat {tat} paused xyz")).expect("HSET");
        assert_eq!(
            at_once(&replica(&prefix).limiter()).await,
            BURST,
            "tat {tat}"
        );
    }
    // A pause beyond any Retry-After (a day and more) is garbage too.
    redis::command(6379, &format!("DEL {key}")).expect("DEL");
    redis::command(6379, &format!("HSET {key} paused 9000000000000000000")).expect("HSET");
    assert_eq!(at_once(&replica(&prefix).limiter()).await, BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_pause_reaches_every_replica_through_redis() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-pause");
    let key = state_key(&prefix);
    let a = replica(&prefix);
    assert_eq!(at_once(&a.limiter()).await, BURST);
    a.limiter().pause(Duration::from_millis(1500));
    // Written behind the call, on the fleet's thread.
    let mut written = false;
    for _ in 0..50 {
        if redis::command(6379, &format!("HEXISTS {key} paused")).expect("HEXISTS") == ":1" {
            written = true;
            break;
        }
        tokio::time::sleep(SYNC).await;
    }
    assert!(written, "the pause did not reach Redis");
    // A replica that never heard from the vendor waits it out too.
    let b = replica(&prefix);
    let wait = b
        .limiter()
        .acquire(Duration::ZERO)
        .await
        .expect_err("paused");
    assert!(
        wait > Duration::from_millis(1000) && wait <= Duration::from_millis(1500),
        "the pause has {wait:?} left"
    );
    assert!(
        b.limiter().status().paused_for_ms.is_some(),
        "its status does not say the fleet is paused"
    );
    assert!(
        a.limiter().acquire(Duration::ZERO).await.is_err(),
        "the replica that was told is paused"
    );
}

/// Calls the vendor until `until`; a refused call waits what it was told
/// (at most 50 ms) before the next. Answers the longest a call took.
async fn offer(vendor: Arc<Resilient<Adapter>>, until: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    while Instant::now() < until {
        let asked = Instant::now();
        match vendor.get().await {
            Ok(()) => {}
            Err(VendorError::Seawall(seawall::Error::RateLimited { retry_in, .. })) => {
                tokio::time::sleep(retry_in.min(Duration::from_millis(50))).await;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
        longest = longest.max(asked.elapsed());
    }
    longest
}

/// Offers load from `tasks` tasks on each replica for `run`.
async fn busy(replicas: &[Replica], tasks: usize, run: Duration) -> Duration {
    let until = Instant::now() + run;
    let mut handles = Vec::new();
    for replica in replicas {
        for _ in 0..tasks {
            handles.push(tokio::spawn(offer(replica.vendor.clone(), until)));
        }
    }
    let mut longest = Duration::ZERO;
    for handle in handles {
        longest = longest.max(handle.await.expect("no panic"));
    }
    longest
}

/// The most calls in any window of `window` (a window starting at each
/// call).
fn most_in_window(times: &[Instant], window: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut most = 0;
    let mut end = 0;
    for (start, at) in times.iter().enumerate() {
        while end < times.len() && times[end] < *at + window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_replicas_share_one_limit_and_lease_in_batches() {
    if redis::shared("fleet_rate").is_none() {
        return;
    }
    let prefix = redis::prefix("rate-busy");
    let log = Log::default();
    let replicas: Vec<Replica> = (0..3)
        .map(|id| Replica::new(redis::SHARED, &prefix, id, &log))
        .collect();
    let run = Duration::from_millis(2500);
    busy(&replicas, 4, run).await;
    let times: Vec<Instant> = log.lock().unwrap().iter().map(|(at, _)| *at).collect();
    let most = most_in_window(&times, Duration::from_secs(1));
    // 40 a second plus the burst, from three replicas offering more.
    let (admitted, leases) = replicas.iter().fold((0, 0), |(a, l), replica| {
        let status = replica.limiter().status();
        (a + status.admitted, l + status.fleet.expect("fleet").leases)
    });
    println!(
        "3 replicas x 4 callers, 40/1s burst 4, 2.5 s: {} calls, at most {most} in 1 s, \
         {leases} leases for {admitted} turns",
        times.len()
    );
    assert!(most <= 40 + BURST, "{most} calls in one second");
    // Goodput: the burst and 2.5 s at 40 a second is 104; the last turns
    // leased may fall after the end.
    assert!(times.len() >= 90, "only {} calls", times.len());
    assert!(
        leases < admitted,
        "a lease per turn: {leases} for {admitted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_leaves_each_replica_on_its_share_until_it_answers_again() {
    let Some(mut server) = Private::start("a_killed_redis_rate") else {
        return;
    };
    let prefix = redis::prefix("rate-killed");
    let log = Log::default();
    let replicas: Vec<Replica> = (0..4)
        .map(|id| Replica::new(&server.url(), &prefix, id, &log))
        .collect();
    busy(&replicas, 2, Duration::from_millis(800)).await;
    assert!(replicas.iter().all(Replica::shared));

    server.kill();
    let killed = Instant::now();
    let longest = busy(&replicas, 2, Duration::from_millis(2000)).await;
    for replica in &replicas {
        let fleet = replica.limiter().status().fleet.expect("fleet");
        assert!(!fleet.shared, "still on the fleet's limit");
        assert_eq!(fleet.share, "10/1s", "a quarter of 40/1s");
        assert_eq!(fleet.fallbacks, 1);
        assert_eq!(replica.events.lock().unwrap().first(), Some(&false));
        let health = replica.runtime.health().fleet.expect("fleet");
        assert!(!health.available);
        assert!(health.last_error.is_some());
    }
    // On the share: after the leases taken before the kill (up to a
    // second ahead), each replica calls at most 10 a second (one at a
    // time), and none stops.
    let log_now = log.lock().unwrap().clone();
    let (from, to) = (
        killed + Duration::from_millis(1100),
        killed + Duration::from_millis(2000),
    );
    let calls: Vec<usize> = (0..4)
        .map(|id| {
            log_now
                .iter()
                .filter(|(at, replica)| *replica == id && *at >= from && *at < to)
                .count()
        })
        .collect();
    println!(
        "Redis away: calls per replica in 0.9 s on its share {calls:?}, longest call {longest:?}"
    );
    for (id, calls) in calls.iter().enumerate() {
        assert!(*calls <= 10, "replica {id} made {calls} calls in 0.9 s");
        assert!(*calls >= 5, "replica {id} made only {calls} calls in 0.9 s");
    }
    // No call waited past its max_wait (1 s) by more than a store timeout
    // or so.
    assert!(
        longest < Duration::from_millis(1500),
        "a call took {longest:?}"
    );

    server.launch().expect("redis-server restarts");
    let rejoined = async {
        for _ in 0..250 {
            if replicas.iter().all(Replica::shared) {
                return true;
            }
            tokio::time::sleep(SYNC).await;
        }
        false
    };
    assert!(
        rejoined.await,
        "the limiters did not rejoin the fleet's limit"
    );
    for replica in &replicas {
        assert_eq!(*replica.events.lock().unwrap(), [false, true]);
    }
    let back = Instant::now();
    busy(&replicas, 2, Duration::from_millis(800)).await;
    let served = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= back)
        .count();
    assert!(served > 0, "no call after Redis came back");
}
