//! The status page (`seawall::dashboard`, feature `dashboard`) over a
//! simulated vendor that goes down and recovers.
//!
//! ```text
//! cargo run --example dashboard --features dashboard
//! ```
//!
//! Serves the page on `http://127.0.0.1:3000/seawall` (`SEAWALL_DASHBOARD_ADDR`
//! to change it) with operator actions on for requests from loopback, and
//! calls a vendor, in process, ten times a second: healthy for 20 s, then
//! failing for 20 s (its breaker opens, then probes until the vendor is
//! back), again and again, until Ctrl-C. A write with `fallback = queue`
//! that the vendor refuses for good leaves a dead letter to retry or purge
//! from the page.
//!
//! `-- --drill` runs one short outage instead (healthy 1 s, failing 2 s,
//! then healthy until the breaker has closed), reads the page's
//! `/status.json` over HTTP each 100 ms, and exits non-zero unless it saw
//! the breaker closed, then open, then closed again, and the dead letter
//! listed (CI runs it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use seawall::{Classify, Delivery, ErrorClass, Resilient, Runtime, contract, dashboard::Dashboard};

#[derive(Debug, thiserror::Error)]
enum VendorError {
    #[error("the vendor is down (503)")]
    Down,
    #[error("the vendor refused the note (422)")]
    Refused,
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        match self {
            VendorError::Down => ErrorClass::Retryable,
            VendorError::Refused => ErrorClass::Permanent,
            VendorError::Seawall(error) => error.class(),
        }
    }
}

#[contract(name = "pricing")]
trait Pricing {
    #[integration(
        read,
        timeout = "1s",
        breaker(window = 20, min_calls = 5, open_for = "1s")
    )]
    async fn quote(&self, sku: &str) -> Result<u32, VendorError>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn add_note(&self, sku: &str, note: &str) -> Result<Delivery<()>, VendorError>;
}

/// The simulated vendor: answers at once while up, 503 while down, and
/// refuses notes that say "refuse" for good.
struct Vendor {
    down: Arc<AtomicBool>,
}

impl Pricing for Vendor {
    async fn quote(&self, sku: &str) -> Result<u32, VendorError> {
        tokio::time::sleep(Duration::from_millis(5 + sku.len() as u64)).await;
        if self.down.load(Ordering::Relaxed) {
            return Err(VendorError::Down);
        }
        Ok(42)
    }

    async fn add_note(&self, _sku: &str, note: &str) -> Result<Delivery<()>, VendorError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(VendorError::Down);
        }
        if note.contains("refuse") {
            return Err(VendorError::Refused);
        }
        Ok(Delivery::Done(()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let drill = std::env::args().any(|arg| arg == "--drill");
    let runtime = Runtime::in_memory();
    let down = Arc::new(AtomicBool::new(false));
    let pricing = Arc::new(Resilient::new(Vendor { down: down.clone() }, &runtime));

    // Operator actions for requests from loopback only: an application
    // would check its own session or an authenticating proxy's header.
    let page = Dashboard::new(&runtime)
        .authorize(|request| {
            request
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .is_some_and(|info| info.0.ip().is_loopback())
        })
        .router();
    let app = axum::Router::new().nest("/seawall", page);
    let addr = if drill {
        "127.0.0.1:0".to_string()
    } else {
        std::env::var("SEAWALL_DASHBOARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into())
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let url = format!("http://{}/seawall", listener.local_addr()?);
    println!("the status page: {url}");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // A note the vendor refuses for good: a dead letter. (Queued first,
    // since the vendor is down for it; refused by the drain.)
    down.store(true, Ordering::Relaxed);
    let queued = pricing.add_note("sku-1", "please refuse this").await?;
    down.store(false, Ordering::Relaxed);
    if let Delivery::Queued(ticket) = queued {
        runtime.write_ahead_log().settled(ticket).await?;
    }

    // Calls, ten a second, for as long as it runs.
    let caller = pricing.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let _ = caller.quote("sku-1").await;
        }
    });

    if drill {
        return run_drill(&url, &runtime, &down).await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        down.store(true, Ordering::Relaxed);
        println!("the vendor is down");
        tokio::time::sleep(Duration::from_secs(20)).await;
        down.store(false, Ordering::Relaxed);
        println!("the vendor is back");
    }
}

/// One outage, watched through the page's JSON: closed, open, closed.
async fn run_drill(
    url: &str,
    runtime: &Runtime,
    down: &AtomicBool,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let state = || async {
        let status: serde_json::Value = client
            .get(format!("{url}/status.json"))
            .send()
            .await?
            .json()
            .await?;
        let state = status["breakers"]
            .as_array()
            .and_then(|breakers| breakers.iter().find(|b| b["name"] == "pricing.quote"))
            .and_then(|b| b["state"].as_str())
            .unwrap_or("none")
            .to_string();
        let dead_letters = status["dead_letters"].as_array().map_or(0, Vec::len);
        Ok::<_, reqwest::Error>((state, dead_letters))
    };
    let mut seen: Vec<String> = Vec::new();
    let mut dead_letters = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let elapsed = started.elapsed();
        down.store(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
            Ordering::Relaxed,
        );
        let (state, letters) = state().await?;
        dead_letters = dead_letters.max(letters);
        if seen.last() != Some(&state) {
            println!("{:>5} ms  pricing.quote: {state}", elapsed.as_millis());
            seen.push(state.clone());
        }
        if elapsed > Duration::from_secs(3) && seen.iter().any(|s| s == "open") && state == "closed"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = seen.iter().position(|s| s == "open");
    let closed_first = seen.first().is_some_and(|s| s == "closed");
    let closed_after = opened.is_some_and(|at| seen[at..].iter().any(|s| s == "closed"));
    println!("states seen: {}", seen.join(" -> "));
    println!("dead letters listed: {dead_letters}");
    let health = serde_json::to_string(&runtime.health())?;
    if !(closed_first && opened.is_some() && closed_after) || dead_letters != 1 {
        return Err(format!(
            "the drill expected closed, open, closed and one dead letter; health: {health}"
        )
        .into());
    }
    println!("ok: the page showed closed, open, closed and the dead letter");
    Ok(())
}
