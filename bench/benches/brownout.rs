//! A brownout: a vendor that fails 30 % of its requests with `503`, and 32
//! callers retrying against it, with and without a retry budget.
//!
//! `cargo bench -p seawall-bench --bench brownout`. Figures and their explanation are in
//! BENCHMARKS.md.
//!
//! The vendor is an axum server on `127.0.0.1` (a port the OS picks; nothing
//! leaves the machine) that counts its requests and decides which ones fail
//! with a seeded generator. Each configuration gets a fresh vendor and a
//! fresh seawall runtime, then [`CALLERS`] tasks each make
//! [`CALLS_PER_CALLER`] logical calls through one [`seawall::Endpoint`]
//! (three attempts, 5 ms base, 50 ms cap). The table shows how many requests
//! the vendor received per call the application offered: the load retries
//! add to a vendor that is already struggling.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::http::{Client, ResponseError, check};
use seawall::{Endpoint, Jitter, Kind, Policy, RetryPolicy, Runtime};

/// Concurrent callers.
const CALLERS: usize = 32;
/// Logical calls each caller makes, one after another.
const CALLS_PER_CALLER: usize = 100;
/// Calls per caller when run as a test (`cargo test --benches`) rather than
/// by `cargo bench`: a smoke run that checks the bench still works.
const SMOKE_CALLS_PER_CALLER: usize = 3;
/// The share of requests the vendor fails with `503`.
const FAILURE_RATE: f64 = 0.3;
/// The vendor's seed; each configuration meets the same sequence of failures
/// (in the order requests arrive).
const VENDOR_SEED: u64 = 30;

// ---------------------------------------------------------------------------
// The vendor
// ---------------------------------------------------------------------------

struct Vendor {
    requests: AtomicU64,
    rng: Mutex<SmallRng>,
}

async fn answer(State(vendor): State<Arc<Vendor>>) -> StatusCode {
    vendor.requests.fetch_add(1, Ordering::Relaxed);
    let fail = vendor
        .rng
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .random_bool(FAILURE_RATE);
    if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn start_vendor() -> std::io::Result<(String, Arc<Vendor>)> {
    let vendor = Arc::new(Vendor {
        requests: AtomicU64::new(0),
        rng: Mutex::new(SmallRng::seed_from_u64(VENDOR_SEED)),
    });
    let app = Router::new().fallback(answer).with_state(vendor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{address}/items"), vendor))
}

// ---------------------------------------------------------------------------
// The adapter's error type
// ---------------------------------------------------------------------------

#[derive(Debug, thiserror::Error, seawall::Classify)]
enum VendorError {
    #[error(transparent)]
    #[classify(delegate)]
    Http(#[from] ResponseError),
    #[error("transport error: {0}")]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

// ---------------------------------------------------------------------------
// One configuration
// ---------------------------------------------------------------------------

struct Row {
    name: String,
    offered: u64,
    requests: u64,
    successes: u64,
    budget_refusals: u64,
    wall: Duration,
}

#[derive(Default)]
struct Tally {
    successes: u64,
    budget_refusals: u64,
}

async fn run(
    name: String,
    jitter: Jitter,
    budget: bool,
    calls_per_caller: usize,
) -> Result<Row, Box<dyn std::error::Error>> {
    let (url, vendor) = start_vendor().await?;
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .configure(|b| b.pool_max_idle_per_host(CALLERS))
        .build()?;
    let runtime = Runtime::builder().seed(7).in_memory();
    let mut policy = Policy::new(Kind::Read, Duration::from_secs(2)).with_retry(
        RetryPolicy::new(3)
            .with_base(Duration::from_millis(5))
            .with_cap(Duration::from_millis(50))
            .with_jitter(jitter),
    );
    if !budget {
        policy = policy.without_retry_budget();
    }
    let endpoint: Arc<Endpoint> = Arc::new(runtime.endpoint("vendor", "get", policy)?);

    let start = Instant::now();
    let mut callers = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let endpoint = endpoint.clone();
        let client = client.clone();
        let url = url.clone();
        callers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..calls_per_caller {
                let result = endpoint
                    .call(|| async {
                        check(client.get(&url).send().await?)?;
                        Ok::<_, VendorError>(())
                    })
                    .await;
                match result {
                    Ok(()) => tally.successes += 1,
                    Err(VendorError::Seawall(seawall::Error::RetryBudgetExhausted { .. })) => {
                        tally.budget_refusals += 1;
                    }
                    Err(_) => {}
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for caller in callers {
        let tally = caller.await?;
        total.successes += tally.successes;
        total.budget_refusals += tally.budget_refusals;
    }
    let wall = start.elapsed();
    Ok(Row {
        name,
        offered: (CALLERS * calls_per_caller) as u64,
        requests: vendor.requests.load(Ordering::Relaxed),
        successes: total.successes,
        budget_refusals: total.budget_refusals,
        wall,
    })
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let calls_per_caller = if measuring {
        CALLS_PER_CALLER
    } else {
        SMOKE_CALLS_PER_CALLER
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("no tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let configurations = [
        ("full", Jitter::Full),
        ("decorrelated", Jitter::Decorrelated),
        ("no", Jitter::None),
    ]
    .into_iter()
    .flat_map(|(jitter_name, jitter)| {
        [false, true].map(|budget| {
            let name = format!(
                "{jitter_name} jitter, {}",
                if budget { "budget" } else { "no budget" }
            );
            (name, jitter, budget)
        })
    });

    println!(
        "brownout: {CALLERS} callers × {calls_per_caller} calls, vendor fails {:.0} % with 503, \
         3 attempts (base 5 ms, cap 50 ms)\n",
        FAILURE_RATE * 100.0
    );
    println!(
        "| configuration | offered calls | vendor requests | requests / call | successes | refused by budget | wall time |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut ok = true;
    for (name, jitter, budget) in configurations {
        match runtime.block_on(run(name.clone(), jitter, budget, calls_per_caller)) {
            Ok(row) => {
                let per_call = row.requests as f64 / row.offered as f64;
                println!(
                    "| {} | {} | {} | {:.3} | {} ({:.1} %) | {} | {:.2} s |",
                    row.name,
                    row.offered,
                    row.requests,
                    per_call,
                    row.successes,
                    100.0 * row.successes as f64 / row.offered as f64,
                    row.budget_refusals,
                    row.wall.as_secs_f64(),
                );
                if measuring && budget && per_call > 1.1 {
                    eprintln!("  {name}: {per_call:.3} requests per call is over the 1.1 target");
                    ok = false;
                }
            }
            Err(error) => {
                eprintln!("{name}: {error}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
