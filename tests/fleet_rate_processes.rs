//! Four OS processes share one rate limit through Redis (the server on
//! 127.0.0.1:6379), `rate(limit = "100/10s", burst = 5)`, in front of a
//! loopback vendor that logs when each request arrives. Each process runs
//! three callers that offer far more than the quota for 22 s. From the
//! vendor's own log:
//!
//! - in any 10 s window it saw at most 100 + 5 requests (the limit and its
//!   burst, for the whole fleet, not per process), counted when the
//!   processes sent them (each request says when, on the machine's clock);
//!   counted when they arrived, one more is allowed for the delivery's
//!   jitter on a loaded machine (the README's margin);
//! - it saw close to the quota: the burst and 10 a second over the run,
//!   less what fell after the end (goodput);
//! - and the processes did not pay a round trip to Redis per call (leases
//!   in batches).
//!
//! Then four processes on a private `redis-server` that is killed
//! (SIGKILL) 2 s into a 7 s run: each falls back to its share (25/10s),
//! says so (the fleet's event, health, the limiter's status), and goes on
//! calling at that rate — no panic, no stall.
//!
//! The processes are this test binary, started with
//! `SEAWALL_FLEET_RATE_WORKER` set. Without Redis on 127.0.0.1:6379 the
//! test says it is skipped (unless `SEAWALL_REQUIRE_REDIS` is set).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use seawall::fleet::Redis;
use seawall::{Resilient, Runtime, contract};
use support::VendorError;

const WORKERS: usize = 4;
const CALLERS: usize = 3;
const LIMIT: usize = 100;
const BURST: usize = 5;
const PERIOD: Duration = Duration::from_secs(10);
const RUN: Duration = Duration::from_secs(22);
/// The run with Redis killed, and when it is killed.
const KILLED_RUN: Duration = Duration::from_secs(7);
const KILL_AT: Duration = Duration::from_secs(2);
const WORKER_VAR: &str = "SEAWALL_FLEET_RATE_WORKER";

#[contract]
pub trait Vendor {
    #[integration(
        read,
        timeout = "2s",
        rate(limit = "100/10s", burst = 5, max_wait = "1s", name = "vendor")
    )]
    async fn get(&self) -> Result<(), VendorError>;
}

struct Http {
    client: reqwest::Client,
    url: String,
    worker: String,
}

/// Now on the machine's clock, which every process shares.
fn wall() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
}

impl Vendor for Http {
    async fn get(&self) -> Result<(), VendorError> {
        let response = self
            .client
            .get(&self.url)
            .header("x-worker", &self.worker)
            .header("x-sent-at", wall().as_micros().to_string())
            .send()
            .await
            .map_err(|_| VendorError::status(502))?;
        match response.status().as_u16() {
            200 => Ok(()),
            code => Err(VendorError::status(code)),
        }
    }
}

/// A worker: `CALLERS` callers offer calls for `run` (a refused call waits
/// what it was told, at most 100 ms, before the next); then it prints its
/// limiter's counts, the `Event::Fleet` that said Redis was away, and
/// whether health says Redis is available.
fn worker(id: &str, url: String, redis: String, prefix: String, run: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let redis = Redis::new(&redis)
            .expect("a Redis URL")
            .prefix(prefix)
            .fleet_size(WORKERS as u32);
        let seawall = Runtime::builder().redis(redis).in_memory();
        let away = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = away.clone();
        seawall.subscribe(move |event| {
            if let seawall::Event::Fleet(change) = event
                && !change.available
            {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let vendor = Arc::new(Resilient::new(
            Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .expect("a client"),
                url,
                worker: id.to_owned(),
            },
            &seawall,
        ));
        let until = Instant::now() + run;
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let vendor = vendor.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        match vendor.get().await {
                            Ok(()) => {}
                            Err(VendorError::Seawall(seawall::Error::RateLimited {
                                retry_in,
                                ..
                            })) => {
                                tokio::time::sleep(retry_in.min(Duration::from_millis(100))).await;
                            }
                            Err(other) => panic!("unexpected: {other}"),
                        }
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("no caller panicked");
        }
        let status = seawall.rate_limiter("vendor").expect("registered").status();
        let fleet = status.fleet.expect("a fleet runtime's limiter");
        println!(
            "summary {} {} {} {} {} {} {} {} {}",
            status.admitted,
            status.refused,
            fleet.round_trips,
            fleet.leases,
            fleet.leased,
            fleet.fallbacks,
            u8::from(fleet.shared),
            away.load(std::sync::atomic::Ordering::SeqCst),
            u8::from(seawall.health().fleet.expect("a fleet runtime").available)
        );
    });
}

/// The vendor: answers 200 and logs when each request arrived.
#[derive(Clone)]
struct Loopback {
    /// When each request arrived, from which worker, and when it was sent
    /// (on the machine's clock).
    log: Arc<Mutex<Vec<(Instant, usize, Duration)>>>,
}

async fn serve(State(vendor): State<Loopback>, headers: HeaderMap) -> StatusCode {
    let worker = headers
        .get("x-worker")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let sent = headers
        .get("x-sent-at")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map_or_else(wall, Duration::from_micros);
    vendor
        .log
        .lock()
        .unwrap()
        .push((Instant::now(), worker, sent));
    StatusCode::OK
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker's counts: admitted, refused, round trips, leases, turns
/// leased, fallbacks, shared at the end, away events, Redis available at
/// the end.
fn summary(worker: &mut Worker) -> [u64; 9] {
    let stdout = worker.0.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("summary "))
        .expect("a summary from the worker");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("a count"))
        .collect();
    numbers.try_into().expect("nine counts")
}

/// The most requests in any window of `window` (one starting at each
/// request).
fn most_in_window<T>(times: &[T], window: Duration) -> usize
where
    T: Copy + Ord + std::ops::Add<Duration, Output = T>,
{
    let mut end = 0;
    let mut most = 0;
    for (start, at) in times.iter().enumerate() {
        while end < times.len() && times[end] < *at + window {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

fn main() {
    if let Ok(id) = std::env::var(WORKER_VAR) {
        let url = std::env::var("SEAWALL_FLEET_VENDOR").expect("vendor URL");
        let redis = std::env::var("SEAWALL_FLEET_REDIS").expect("Redis URL");
        let prefix = std::env::var("SEAWALL_FLEET_PREFIX").expect("prefix");
        let run = std::env::var("SEAWALL_FLEET_RUN_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(RUN, Duration::from_millis);
        worker(&id, url, redis, prefix, run);
        return;
    }
    let Some(redis) = support::redis::shared("fleet_rate_processes") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let vendor = Loopback {
        log: Arc::default(),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let url = format!("http://{}/get", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/get", get(serve))
        .with_state(vendor.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    the_vendor_sees_one_limit_for_the_fleet(&vendor, &url, redis);
    vendor.log.lock().unwrap().clear();
    a_killed_redis_leaves_each_process_on_its_share(&vendor, &url);
    println!("fleet_rate_processes: ok");
}

/// Starts the workers, each for `run`.
fn start(url: &str, redis: &str, prefix: &str, run: Duration) -> Vec<Worker> {
    (0..WORKERS)
        .map(|id| {
            Worker(
                Command::new(std::env::current_exe().expect("this binary"))
                    .env(WORKER_VAR, id.to_string())
                    .env("SEAWALL_FLEET_VENDOR", url)
                    .env("SEAWALL_FLEET_REDIS", redis)
                    .env("SEAWALL_FLEET_PREFIX", prefix)
                    .env("SEAWALL_FLEET_RUN_MS", run.as_millis().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("a worker process"),
            )
        })
        .collect()
}

/// Four processes offering far more than the quota for `RUN`.
fn the_vendor_sees_one_limit_for_the_fleet(vendor: &Loopback, url: &str, redis: &str) {
    let prefix = support::redis::prefix("rate-processes");
    let mut workers = start(url, redis, &prefix, RUN);
    // Each worker stops after RUN and prints its counts (reading waits
    // for it; a worker that hangs is killed when the test ends).
    let summaries: Vec<[u64; 9]> = workers.iter_mut().map(summary).collect();
    let log = vendor.log.lock().unwrap().clone();
    let mut times: Vec<Instant> = log.iter().map(|(at, _, _)| *at).collect();
    times.sort();
    let mut sent: Vec<Duration> = log.iter().map(|(_, _, sent)| *sent).collect();
    sent.sort();
    let per_worker: Vec<usize> = (0..WORKERS)
        .map(|id| log.iter().filter(|(_, worker, _)| *worker == id).count())
        .collect();
    let most = most_in_window(&sent, PERIOD);
    let most_arrived = most_in_window(&times, PERIOD);
    let span = times
        .last()
        .zip(times.first())
        .map_or(Duration::ZERO, |(last, first)| *last - *first);
    // The quota over the span the vendor saw calls in: the burst, then 10
    // a second.
    let quota = BURST as f64 + LIMIT as f64 * span.as_secs_f64() / PERIOD.as_secs_f64();
    println!(
        "{WORKERS} processes x {CALLERS} callers, rate 100/10s burst 5, {RUN:?}: the vendor saw \
         {} requests over {span:.1?} (quota {quota:.0}: goodput {:.1} %), at most {most} sent \
         in any 10 s ({most_arrived} arrived); per process {per_worker:?}; per process [admitted, refused, round trips, leases, \
         turns leased, fallbacks, shared, away events, health available] {summaries:?}",
        times.len(),
        100.0 * times.len() as f64 / quota
    );
    assert!(
        most <= LIMIT + BURST,
        "{most} requests sent in one 10 s window, over the limit and its burst"
    );
    assert!(
        most_arrived <= LIMIT + BURST + 1,
        "{most_arrived} requests arrived in one 10 s window"
    );
    assert!(
        times.len() as f64 >= 0.9 * quota,
        "goodput {} of a quota of {quota:.0}",
        times.len()
    );
    for (id, [admitted, _, _, leases, _, fallbacks, shared, ..]) in summaries.iter().enumerate() {
        assert!(*admitted > 0, "process {id} never had a turn");
        assert!(
            leases < admitted,
            "process {id}: {leases} leases for {admitted} turns"
        );
        assert_eq!(*fallbacks, 0, "process {id} fell back to its share");
        assert_eq!(*shared, 1, "process {id} ended on its share");
    }
    println!("one limit for the fleet: ok");
}

/// Four processes on a private Redis, killed (SIGKILL) `KILL_AT` into a
/// `KILLED_RUN` run.
fn a_killed_redis_leaves_each_process_on_its_share(vendor: &Loopback, url: &str) {
    let Some(mut server) = support::redis::Private::start("fleet_rate_processes (killed)") else {
        return;
    };
    let prefix = support::redis::prefix("rate-processes-killed");
    let started = wall();
    let mut workers = start(url, &server.url(), &prefix, KILLED_RUN);
    std::thread::sleep(KILL_AT);
    server.kill();
    let killed = wall();
    let summaries: Vec<[u64; 9]> = workers.iter_mut().map(summary).collect();
    let ended = wall();
    let log = vendor.log.lock().unwrap().clone();
    // On the share once the leases taken before the kill (at most a
    // second ahead, and a batch) have run out; counted when sent.
    let from = killed + Duration::from_millis(1500);
    let to = started + KILLED_RUN;
    let per_worker: Vec<usize> = (0..WORKERS)
        .map(|id| {
            log.iter()
                .filter(|(_, worker, sent)| *worker == id && *sent >= from && *sent < to)
                .count()
        })
        .collect();
    println!(
        "Redis killed {:?} into the run: per process in the {:.1?} on its share {per_worker:?}; \
         [admitted, refused, round trips, leases, turns leased, fallbacks, shared, away \
         events, health available] {summaries:?}; workers ended {:.1?} after the kill",
        killed - started,
        to - from,
        ended - killed
    );
    // 25/10s each, burst 1: at most one more than 2.5 a second.
    let share_most = (2.5 * (to - from).as_secs_f64()).floor() as usize + 1;
    for (id, calls) in per_worker.iter().enumerate() {
        assert!(
            *calls <= share_most,
            "process {id} made {calls} calls on its share (at most {share_most})"
        );
        assert!(
            *calls >= 2,
            "process {id} stalled: {calls} calls on its share"
        );
    }
    for (id, [.., fallbacks, shared, away, available]) in summaries.iter().enumerate() {
        assert_eq!(*fallbacks, 1, "process {id} did not fall back to its share");
        assert_eq!(
            *shared, 0,
            "process {id}'s limiter does not say it is on its share"
        );
        assert_eq!(*away, 1, "process {id} did not say Redis was away");
        assert_eq!(*available, 0, "process {id}'s health says Redis is there");
    }
    println!("a killed Redis leaves each process on its share: ok");
}
