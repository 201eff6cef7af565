//! Eight replicas of a service, one vendor outage: breakers shared through
//! Redis against breakers local to each replica.
//!
//! ```text
//! cargo run --example fleet                 # needs Redis on 127.0.0.1:6379
//! cargo run --example fleet -- redis://127.0.0.1:6380/
//! ```
//!
//! A fake vendor runs on `127.0.0.1` (an ephemeral port) and eight worker
//! processes (this program, started again in worker mode) call it every
//! 10 ms through a contract with a breaker (`consecutive_failures = 5`,
//! `open_for = "500ms"`). Three workers are idle when the outage begins and
//! resume while it lasts. The run goes through three phases (healthy 1 s,
//! outage 3 s, recovered 2 s), twice: once with every worker's breaker
//! shared through Redis (`RuntimeBuilder::redis`), once with local breakers.
//! For each phase it prints the requests the vendor received and how many
//! calls each worker failed fast; then how long the whole fleet took to fail
//! fast after the outage began. The program exits non-zero unless the
//! shared run sent the recovering vendor fewer probes than the local one.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use seawall::fleet::Redis;
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Classify, Resilient, Runtime, contract};

const WORKERS: usize = 8;
/// Idle while the outage begins; they resume 500 ms into it.
const QUIET: std::ops::Range<usize> = 5..8;
const PHASES: [(&str, Duration); 3] = [
    ("healthy", Duration::from_millis(1000)),
    ("outage", Duration::from_millis(3000)),
    ("recovered", Duration::from_millis(2000)),
];
/// The sync intervals of the shared runs.
const SYNC_EVERY: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];

/// What a vendor call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum VendorError {
    /// The vendor answered with an error status.
    #[error(transparent)]
    #[classify(delegate)]
    Vendor(#[from] ResponseError),
    /// No answer.
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call.
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// What every replica needs from the vendor.
#[contract(name = "vendor")]
pub trait Vendor {
    /// A quote.
    #[integration(
        read,
        timeout = "1s",
        breaker(consecutive_failures = 5, open_for = "500ms", half_open_max = "2s")
    )]
    async fn quote(&self) -> Result<String, VendorError>;
}

struct VendorHttp {
    http: Client,
    url: String,
}

impl Vendor for VendorHttp {
    async fn quote(&self) -> Result<String, VendorError> {
        let response = self.http.get(&self.url).send().await?.error_for_vendor()?;
        Ok(response.text().await?)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A worker: calls every 10 ms unless paused; counts per phase how many
/// calls succeeded, failed at the vendor, and failed fast; prints them when
/// told to stop, with when its breaker opened in the outage.
fn worker(url: String, redis: Option<String>, prefix: String, sync_every: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let mut builder = Runtime::builder();
        if let Some(redis) = redis {
            let redis = Redis::new(&redis)
                .expect("a Redis URL")
                .prefix(prefix)
                .sync_every(sync_every);
            builder = builder.redis(redis);
        }
        let seawall = builder.in_memory();
        // When this worker's breaker first opened in the outage (its own
        // run of failures, or the fleet's decision): 0 until then.
        let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let outage = Arc::new(AtomicBool::new(false));
        {
            let (opened, outage) = (opened.clone(), outage.clone());
            seawall.subscribe(move |event| {
                if let seawall::Event::Breaker(change) = event
                    && change.to == seawall::BreakerState::Open
                    && outage.load(Ordering::SeqCst)
                {
                    let _ =
                        opened.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
                }
            });
        }
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(1))
            .build()
            .expect("a client");
        let vendor = Resilient::new(VendorHttp { http, url }, &seawall);
        let phase = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (phase, paused, stop) = (phase.clone(), paused.clone(), stop.clone());
            let outage = outage.clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    match line.as_deref().unwrap_or("stop") {
                        "pause" => paused.store(true, Ordering::SeqCst),
                        "resume" => paused.store(false, Ordering::SeqCst),
                        "next" => {
                            phase.fetch_add(1, Ordering::SeqCst);
                        }
                        "down" => outage.store(true, Ordering::SeqCst),
                        _ => break,
                    }
                }
                stop.store(true, Ordering::SeqCst);
            });
        }
        println!("ready");
        let mut counts = [[0u64; 3]; PHASES.len()];
        while !stop.load(Ordering::SeqCst) {
            let now = phase.load(Ordering::SeqCst).min(PHASES.len() - 1);
            if !paused.load(Ordering::SeqCst) {
                let outcome = match vendor.quote().await {
                    Ok(_) => 0,
                    Err(VendorError::Seawall(seawall::Error::BreakerOpen { .. })) => 2,
                    Err(_) => 1,
                };
                counts[now][outcome] += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counts: Vec<String> = counts
            .iter()
            .map(|[ok, failed, fast]| format!("{ok},{failed},{fast}"))
            .collect();
        println!("{} {}", counts.join(" "), opened.load(Ordering::SeqCst));
    });
}

/// When each vendor request arrived (ms since the epoch).
type Log = Arc<Mutex<Vec<u64>>>;

#[derive(Default)]
struct FakeVendor {
    down: AtomicBool,
    requests: AtomicUsize,
}

async fn quote(State(vendor): State<Arc<FakeVendor>>) -> Result<&'static str, StatusCode> {
    vendor.requests.fetch_add(1, Ordering::SeqCst);
    if vendor.down.load(Ordering::SeqCst) {
        Err(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        Ok("42.00")
    }
}

/// What one run measured.
struct Run {
    /// Vendor requests per phase.
    requests: [usize; 3],
    /// Per worker: calls failed fast per phase.
    fail_fast: Vec<[u64; 3]>,
    /// Per worker: calls that reached the vendor and failed in the outage.
    spent: Vec<u64>,
    /// From the outage's start until every worker's breaker was open.
    time_to_open: Option<Duration>,
    /// Vendor requests during the outage once every breaker was open.
    probes: usize,
}

fn fleet_run(
    vendor: &Arc<FakeVendor>,
    url: &str,
    redis: Option<(&str, Duration)>,
    probe_log: &Log,
) -> Run {
    let prefix = format!("seawall-example:{:x}", now_ms());
    let mut children: Vec<(Child, ChildStdin)> = (0..WORKERS)
        .map(|_| {
            let mut command = Command::new(std::env::current_exe().expect("this program"));
            command
                .env("SEAWALL_FLEET_EXAMPLE_WORKER", url)
                .env("SEAWALL_FLEET_EXAMPLE_PREFIX", &prefix)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if let Some((redis, every)) = redis {
                command.env("SEAWALL_FLEET_EXAMPLE_REDIS", redis).env(
                    "SEAWALL_FLEET_EXAMPLE_SYNC_MS",
                    every.as_millis().to_string(),
                );
            }
            let mut child = command.spawn().expect("a worker");
            let stdin = child.stdin.take().expect("stdin");
            (child, stdin)
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|(child, _)| BufReader::new(child.stdout.take().expect("stdout")).lines())
        .collect();
    for output in &mut outputs {
        assert_eq!(output.next().and_then(Result::ok).as_deref(), Some("ready"));
    }
    let say = |children: &mut [(Child, ChildStdin)], line: &str| {
        for (_, stdin) in children {
            let _ = writeln!(stdin, "{line}");
        }
    };
    probe_log.lock().unwrap().clear();
    let mut requests = [0; 3];
    let mut down_at = 0;
    for (i, (name, length)) in PHASES.iter().enumerate() {
        if i > 0 {
            say(&mut children, "next");
        }
        let before = vendor.requests.load(Ordering::SeqCst);
        match *name {
            "outage" => {
                say(&mut children[QUIET], "pause");
                say(&mut children, "down");
                std::thread::sleep(Duration::from_millis(20));
                down_at = now_ms();
                vendor.down.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(500));
                say(&mut children[QUIET], "resume");
                std::thread::sleep(*length - Duration::from_millis(500));
            }
            _ => {
                vendor.down.store(false, Ordering::SeqCst);
                std::thread::sleep(*length);
            }
        }
        requests[i] = vendor.requests.load(Ordering::SeqCst) - before;
    }
    say(&mut children, "stop");
    let mut fail_fast = Vec::new();
    let mut spent = Vec::new();
    // When each worker's breaker opened in the outage (0: never).
    let mut first_refusals = Vec::new();
    for output in &mut outputs {
        let line = output.next().and_then(Result::ok).unwrap_or_default();
        let mut parts = line.split(' ');
        let mut per_phase = [0; 3];
        for (i, slot) in per_phase.iter_mut().enumerate() {
            let counts: Vec<u64> = parts
                .next()
                .unwrap_or("0,0,0")
                .split(',')
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            *slot = counts.get(2).copied().unwrap_or(0);
            if i == 1 {
                spent.push(counts.get(1).copied().unwrap_or(0));
            }
        }
        first_refusals.push(
            parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0),
        );
        fail_fast.push(per_phase);
    }
    for (mut child, _) in children {
        let _ = child.wait();
    }
    let everyone = (!first_refusals.contains(&0))
        .then(|| first_refusals.iter().copied().max().unwrap_or(down_at));
    let time_to_open = everyone.map(|at| Duration::from_millis(at.saturating_sub(down_at)));
    let outage_end = down_at + PHASES[1].1.as_millis() as u64;
    let probes = probe_log
        .lock()
        .unwrap()
        .iter()
        .filter(|at| **at >= everyone.unwrap_or(outage_end) && **at < outage_end)
        .count();
    probe_log.lock().unwrap().clear();
    Run {
        requests,
        fail_fast,
        spent,
        time_to_open,
        probes,
    }
}

async fn logged_quote(
    State((vendor, log)): State<(Arc<FakeVendor>, Log)>,
) -> Result<&'static str, StatusCode> {
    log.lock().unwrap().push(now_ms());
    quote(State(vendor)).await
}

fn print(name: &str, run: &Run) {
    println!("\n{name}");
    for (i, (phase, length)) in PHASES.iter().enumerate() {
        let fast: Vec<String> = run.fail_fast.iter().map(|w| w[i].to_string()).collect();
        println!(
            "  {phase:<9} ({:.1} s): vendor requests {:>4}   failed fast per worker [{}]",
            length.as_secs_f64(),
            run.requests[i],
            fast.join(", ")
        );
    }
    let spent: Vec<String> = run.spent.iter().map(u64::to_string).collect();
    println!(
        "  attempts each worker spent on the outage [{}]",
        spent.join(", ")
    );
    match run.time_to_open {
        Some(time) => println!(
            "  every breaker was open {} ms after the outage began; then the vendor saw {} requests until it recovered",
            time.as_millis(),
            run.probes
        ),
        None => println!("  not every breaker opened during the outage"),
    }
}

fn main() {
    if let Ok(url) = std::env::var("SEAWALL_FLEET_EXAMPLE_WORKER") {
        let redis = std::env::var("SEAWALL_FLEET_EXAMPLE_REDIS").ok();
        let prefix = std::env::var("SEAWALL_FLEET_EXAMPLE_PREFIX").unwrap_or_default();
        let sync_every = std::env::var("SEAWALL_FLEET_EXAMPLE_SYNC_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(seawall::fleet::DEFAULT_SYNC_EVERY, Duration::from_millis);
        worker(url, redis, prefix, sync_every);
        return;
    }
    let redis = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let vendor = Arc::new(FakeVendor::default());
    let log = Arc::new(Mutex::new(Vec::new()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let url = format!(
        "http://{}/quote",
        listener.local_addr().expect("an address")
    );
    let app = Router::new()
        .route("/quote", get(logged_quote))
        .with_state((vendor.clone(), log.clone()));
    runtime.spawn(async move { axum::serve(listener, app).await });

    println!(
        "{WORKERS} worker processes call a vendor on {url} every 10 ms; workers {}..{} are idle \
         for the first 500 ms of the outage. Breaker: consecutive_failures = 5, open_for = 500ms; \
         shared breakers sync through {redis}.",
        QUIET.start,
        QUIET.end - 1,
    );
    let started = Instant::now();
    let mut shared = Vec::new();
    for every in SYNC_EVERY {
        let run = fleet_run(&vendor, &url, Some((&redis, every)), &log);
        print(
            &format!(
                "Shared through Redis, synced every {} ms",
                every.as_millis()
            ),
            &run,
        );
        shared.push(run);
    }
    let local = fleet_run(&vendor, &url, None, &log);
    print("Local to each worker", &local);
    println!("\n({:.1} s in all)", started.elapsed().as_secs_f64());
    let shared = &shared[0];
    if shared.requests[1] >= local.requests[1] {
        eprintln!(
            "the shared breakers let {} requests through during the outage, the local ones {}",
            shared.requests[1], local.requests[1]
        );
        std::process::exit(1);
    }
}
