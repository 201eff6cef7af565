//! Eight OS processes share a breaker through Redis (the server on
//! 127.0.0.1:6379) in front of one loopback vendor that goes down and comes
//! back. From the vendor's own log:
//!
//! - once the fleet has opened, the vendor sees probes at least `open_for`
//!   apart (`probes = 1` for the whole fleet, not one per process);
//! - three processes that were idle when the outage began resume calling
//!   after the fleet opened: each is refused without spending the run of
//!   failures that would have opened it on its own;
//! - after the vendor recovers, every process calls it again.
//!
//! Then four processes of which one has a broken path (the vendor answers
//! it 503, and the rest 200): it opens for itself, the other three are
//! never refused. Then four processes on a private `redis-server` that is killed (SIGKILL)
//! and started again: calls go on, each process's health says Redis is away
//! and then back, and the fleet opens a paused process on the others'
//! outage once Redis is back.
//!
//! The processes are this test binary, started with `SEAWALL_FLEET_WORKER`
//! set; the parent drives them over stdin (`pause`, `resume`, `health`,
//! `state`, `stop`).
//! Without Redis on 127.0.0.1:6379 the test says it is skipped (unless
//! `SEAWALL_REQUIRE_REDIS` is set).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use seawall::fleet::Redis;
use seawall::{Resilient, Runtime, contract};
use support::VendorError;

const WORKERS: usize = 8;
/// Workers that are idle while the outage begins.
const QUIET: std::ops::Range<usize> = 5..8;
const SYNC: Duration = Duration::from_millis(50);
const OPEN_FOR: Duration = Duration::from_millis(500);
const RUN: u64 = 5;
const WORKER_VAR: &str = "SEAWALL_FLEET_WORKER";

#[contract]
pub trait Vendor {
    #[integration(
        read,
        timeout = "1s",
        breaker(
            name = "vendor",
            consecutive_failures = 5,
            open_for = "500ms",
            half_open_max = "2s"
        )
    )]
    async fn get(&self) -> Result<(), VendorError>;
}

struct Http {
    client: reqwest::Client,
    url: String,
    worker: String,
}

impl Vendor for Http {
    async fn get(&self) -> Result<(), VendorError> {
        let response = self
            .client
            .get(&self.url)
            .header("x-worker", &self.worker)
            .send()
            .await
            .map_err(|_| VendorError::status(502))?;
        match response.status().as_u16() {
            200 => Ok(()),
            code => Err(VendorError::status(code)),
        }
    }
}

/// A worker: calls every 10 ms unless paused, until told to stop; then
/// prints how many calls its breaker refused.
fn worker(id: &str, url: String, redis: String, prefix: String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let redis = Redis::new(&redis)
            .expect("a Redis URL")
            .prefix(prefix)
            .sync_every(SYNC);
        let seawall = Runtime::builder().redis(redis).in_memory();
        let vendor = Resilient::new(
            Http {
                client: reqwest::Client::new(),
                url,
                worker: id.to_owned(),
            },
            &seawall,
        );
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (paused, stop) = (paused.clone(), stop.clone());
            let seawall = seawall.clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    match line.as_deref() {
                        Ok("pause") => paused.store(true, Ordering::SeqCst),
                        Ok("resume") => paused.store(false, Ordering::SeqCst),
                        Ok("health") => {
                            let fleet = seawall.health().fleet.expect("a fleet runtime");
                            println!("health {}", fleet.available);
                        }
                        Ok("state") => {
                            let breaker = seawall.breaker("vendor").expect("registered");
                            println!("state {}", breaker.state());
                        }
                        _ => break,
                    }
                }
                stop.store(true, Ordering::SeqCst);
            });
        }
        println!("ready");
        let mut refused = 0u64;
        while !stop.load(Ordering::SeqCst) {
            if !paused.load(Ordering::SeqCst)
                && let Err(error) = vendor.get().await
                && matches!(error.seawall(), Some(seawall::Error::BreakerOpen { .. }))
            {
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("refused {refused}");
    });
}

/// The vendor: answers 200 or 503 and logs who called when.
#[derive(Clone)]
struct Vendor503 {
    down: Arc<AtomicBool>,
    /// A worker whose path is broken: it alone gets 503s (usize::MAX: none).
    broken: Arc<std::sync::atomic::AtomicUsize>,
    log: Arc<Mutex<Vec<(Duration, usize)>>>,
    start: Instant,
}

async fn serve(State(vendor): State<Vendor503>, headers: HeaderMap) -> StatusCode {
    let worker = headers
        .get("x-worker")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    vendor
        .log
        .lock()
        .unwrap()
        .push((vendor.start.elapsed(), worker));
    if vendor.down.load(Ordering::SeqCst) || vendor.broken.load(Ordering::SeqCst) == worker {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

struct Worker {
    child: Child,
    output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Worker {
    fn start(id: usize, url: &str, redis: &str, prefix: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(WORKER_VAR, id.to_string())
            .env("SEAWALL_FLEET_VENDOR", url)
            .env("SEAWALL_FLEET_REDIS", redis)
            .env("SEAWALL_FLEET_PREFIX", prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a worker process");
        let output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut worker = Self { child, output };
        assert_eq!(worker.line(), "ready");
        worker
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("the worker reads its stdin");
    }

    fn line(&mut self) -> String {
        self.output.next().expect("a line").expect("text")
    }

    /// Asks and returns the answer's value (`health` → `true`).
    fn ask(&mut self, question: &str) -> String {
        self.say(question);
        let line = self.line();
        line.strip_prefix(&format!("{question} "))
            .unwrap_or_else(|| panic!("{question}: {line}"))
            .to_owned()
    }

    /// Stops it and returns how many calls its breaker refused.
    fn stop(&mut self) -> u64 {
        self.say("stop");
        let line = self.line();
        line.strip_prefix("refused ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a summary: {line}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    if let Ok(id) = std::env::var(WORKER_VAR) {
        let url = std::env::var("SEAWALL_FLEET_VENDOR").expect("vendor URL");
        let redis = std::env::var("SEAWALL_FLEET_REDIS").expect("Redis URL");
        let prefix = std::env::var("SEAWALL_FLEET_PREFIX").expect("prefix");
        worker(&id, url, redis, prefix);
        return;
    }
    if support::redis::shared("fleet_processes").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let vendor = Vendor503 {
        down: Arc::new(AtomicBool::new(false)),
        broken: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
        log: Arc::default(),
        start: Instant::now(),
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let url = format!("http://{}/get", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/get", get(serve))
        .with_state(vendor.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    one_probe_per_open_period(&vendor, &url);
    vendor.log.lock().unwrap().clear();
    vendor.down.store(false, Ordering::SeqCst);
    one_broken_path_opens_only_itself(&vendor, &url);
    vendor.log.lock().unwrap().clear();
    redis_killed_and_restarted(&vendor, &url);
    println!("fleet_processes: ok");
}

/// Four workers; the vendor answers 503 to one of them only (its path is
/// broken) and is healthy for the rest: that one opens, the other three
/// never stop calling.
fn one_broken_path_opens_only_itself(vendor: &Vendor503, url: &str) {
    let prefix = support::redis::prefix("broken-path");
    let mut workers: Vec<Worker> = (0..4)
        .map(|id| Worker::start(id, url, support::redis::SHARED, &prefix))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    vendor.broken.store(0, Ordering::SeqCst);
    let broken_at = vendor.start.elapsed();
    // Two seconds: many syncs, and four open periods of the broken one.
    std::thread::sleep(Duration::from_millis(2000));
    let states: Vec<String> = workers.iter_mut().map(|w| w.ask("state")).collect();
    let refused: Vec<u64> = workers.iter_mut().map(Worker::stop).collect();
    vendor.broken.store(usize::MAX, Ordering::SeqCst);
    let log = vendor.log.lock().unwrap().clone();
    let calls = |id: usize| {
        log.iter()
            .filter(|(at, worker)| *worker == id && *at >= broken_at)
            .count()
    };
    println!(
        "broken path: states {states:?}, refused {refused:?}, vendor requests {:?}",
        (0..4).map(calls).collect::<Vec<_>>()
    );
    assert!(refused[0] > 0, "the broken worker never opened");
    assert_eq!(refused[1..], [0, 0, 0], "a healthy worker was refused");
    for (id, state) in states.iter().enumerate().skip(1) {
        assert_eq!(state, "closed");
        // About 200 calls each in 2 s at one per 10 ms.
        assert!(calls(id) > 100, "worker {id} called {} times", calls(id));
    }
    println!("one broken path opens only itself: ok");
}

/// Eight workers on the shared server through an outage.
fn one_probe_per_open_period(vendor: &Vendor503, url: &str) {
    let prefix = support::redis::prefix("processes");
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|id| Worker::start(id, url, support::redis::SHARED, &prefix))
        .collect();

    // Healthy: every worker calls, so every window holds successes.
    std::thread::sleep(Duration::from_millis(500));
    for worker in &mut workers[QUIET] {
        worker.say("pause");
    }
    std::thread::sleep(SYNC * 2);
    let down_at = vendor.start.elapsed();
    vendor.down.store(true, Ordering::SeqCst);
    // Five of eight see the outage: a majority of the fleet in a run of
    // failures opens it.
    std::thread::sleep(Duration::from_millis(400));
    let opened_by = vendor.start.elapsed();
    for worker in &mut workers[QUIET] {
        worker.say("resume");
    }
    std::thread::sleep(Duration::from_millis(2000));
    let up_at = vendor.start.elapsed();
    vendor.down.store(false, Ordering::SeqCst);
    std::thread::sleep(OPEN_FOR + Duration::from_millis(1500));
    let stopped_at = vendor.start.elapsed();
    let refused: Vec<u64> = workers.iter_mut().map(Worker::stop).collect();
    let log = vendor.log.lock().unwrap().clone();

    // Probes while the fleet is open: one per open period, fleet-wide.
    let probes: Vec<(Duration, usize)> = log
        .iter()
        .copied()
        .filter(|(at, _)| *at >= opened_by && *at < up_at)
        .collect();
    println!(
        "outage from {down_at:?}, fleet open by {opened_by:?}, vendor up at {up_at:?}: \
         {} probes {probes:?}; refused per worker {refused:?}",
        probes.len()
    );
    assert!(!probes.is_empty(), "no probe in 2 s of outage");
    for pair in probes.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= OPEN_FOR - 2 * SYNC,
            "two probes {:?} apart: {probes:?}",
            pair[1].0 - pair[0].0
        );
    }
    // The quiet workers were opened by the fleet, not by their own run.
    for id in QUIET {
        let own = log
            .iter()
            .filter(|(at, worker)| *worker == id && *at >= down_at && *at < up_at)
            .count() as u64;
        assert!(own < RUN, "worker {id} spent {own} attempts on the outage");
        assert!(refused[id] > 0, "worker {id} was never refused");
    }
    // Every worker calls the vendor again once it has recovered.
    for id in 0..WORKERS {
        assert!(
            log.iter()
                .any(|(at, worker)| *worker == id && *at + Duration::from_millis(300) >= stopped_at),
            "worker {id} did not call the recovered vendor in the last 300 ms"
        );
    }
    println!("one probe per open period: ok");
}

/// Four workers on a private Redis that is killed (SIGKILL) and started
/// again (empty, as after a restart without persistence): calls go on,
/// every worker's health says Redis is away and then back, and the fleet
/// decides as one again: it opens a worker that saw no failure.
fn redis_killed_and_restarted(vendor: &Vendor503, url: &str) {
    let Some(mut server) = support::redis::Private::start("redis_killed_and_restarted") else {
        return;
    };
    let prefix = support::redis::prefix("restart");
    let mut workers: Vec<Worker> = (0..4)
        .map(|id| Worker::start(id, url, &server.url(), &prefix))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for worker in &mut workers {
        assert_eq!(worker.ask("health"), "true");
    }
    server.kill();
    let killed_at = vendor.start.elapsed();
    std::thread::sleep(Duration::from_millis(600));
    for worker in &mut workers {
        assert_eq!(
            worker.ask("health"),
            "false",
            "health does not say Redis is away"
        );
    }
    let log = vendor.log.lock().unwrap().clone();
    for id in 0..4 {
        assert!(
            log.iter()
                .any(|(at, worker)| *worker == id && *at > killed_at + Duration::from_millis(300)),
            "worker {id} stopped calling while Redis was away"
        );
    }
    server.launch().expect("redis-server starts again");
    let deadline = Instant::now() + Duration::from_secs(10);
    for worker in &mut workers {
        while worker.ask("health") != "true" {
            assert!(
                Instant::now() < deadline,
                "health does not say Redis is back"
            );
            std::thread::sleep(SYNC);
        }
    }
    // Three workers see an outage; the fourth, paused, is opened by the
    // fleet.
    workers[3].say("pause");
    std::thread::sleep(SYNC * 2);
    vendor.down.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while workers[3].ask("state") != "open" {
        assert!(
            Instant::now() < deadline,
            "the fleet did not open the paused worker after the restart"
        );
        std::thread::sleep(SYNC);
    }
    for worker in &mut workers {
        worker.stop();
    }
    println!("Redis killed and restarted: ok");
}
