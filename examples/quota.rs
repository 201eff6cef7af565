//! A vendor's quota, kept: `rate(..)` against a loopback vendor that
//! enforces one with 429 and `Retry-After`.
//!
//! ```text
//! cargo run --example quota
//! ```
//!
//! A fake vendor on `127.0.0.1` takes at most 20 requests in any second and
//! answers the rest `429 Too Many Requests` with `Retry-After: 1`. Ten
//! callers offer 40 calls a second for 3 seconds, twice: through a method
//! with `rate(limit = "18/1s", max_wait = "500ms")` — a tenth under the
//! quota: requests leave evenly spaced but reach the vendor with the
//! network's and the scheduler's jitter, and at exactly the quota two of
//! them now and then land in the same second — and through one
//! without a limiter (seawall then pauses the contract on the first 429's
//! `Retry-After`). The example prints, for each, the vendor's requests, its
//! 429s and the calls answered, and exits non-zero unless the limiter kept
//! the 429s under 1 % of the vendor's requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Classify, Resilient, Runtime, contract};

/// What a vendor call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum VendorError {
    /// The vendor answered with an error status (its `Retry-After` kept).
    #[error(transparent)]
    #[classify(delegate)]
    Vendor(#[from] ResponseError),
    /// The request did not get an answer.
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call (a refused turn, for one).
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// The vendor's API, as our service uses it.
#[contract(name = "vendor")]
pub trait Vendor {
    /// Kept under the quota by a limiter of our own.
    #[integration(read, timeout = "2s", rate(limit = "18/1s", max_wait = "500ms"))]
    async fn limited(&self) -> Result<String, VendorError>;
}

/// The same API without a limiter.
#[contract(name = "unlimited")]
pub trait Unlimited {
    /// Only the vendor's 429s (and the pause they cause) hold it back.
    #[integration(read, timeout = "2s")]
    async fn unlimited(&self) -> Result<String, VendorError>;
}

/// The adapter.
pub struct VendorHttp {
    http: Client,
    url: String,
}

impl VendorHttp {
    async fn get(&self) -> Result<String, VendorError> {
        let response = self.http.get(&self.url).send().await?.error_for_vendor()?;
        Ok(response.text().await?)
    }
}

impl Vendor for VendorHttp {
    async fn limited(&self) -> Result<String, VendorError> {
        self.get().await
    }
}

impl Unlimited for VendorHttp {
    async fn unlimited(&self) -> Result<String, VendorError> {
        self.get().await
    }
}

/// The fake vendor: 20 requests in any second (a sliding log), 429 with
/// `Retry-After: 1` past that.
#[derive(Clone, Default)]
struct Quota {
    taken: Arc<Mutex<VecDeque<Instant>>>,
    counts: Arc<Mutex<(u64, u64)>>,
}

async fn answer(State(quota): State<Quota>) -> Response {
    let now = Instant::now();
    let mut taken = quota.taken.lock().unwrap_or_else(|e| e.into_inner());
    while taken
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        taken.pop_front();
    }
    let mut counts = quota.counts.lock().unwrap_or_else(|e| e.into_inner());
    if taken.len() < 20 {
        taken.push_back(now);
        counts.0 += 1;
        "ok".into_response()
    } else {
        counts.1 += 1;
        let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// Ten callers, 40 calls a second together, for 3 seconds; the calls
/// answered.
async fn offer<F, Fut>(call: F) -> u64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let answered = Arc::new(Mutex::new(0u64));
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut callers = Vec::new();
    for caller in 0..10u64 {
        let (call, answered) = (call.clone(), answered.clone());
        callers.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + Duration::from_millis(caller * 25);
            let mut calls = Vec::new();
            while next < end {
                tokio::time::sleep_until(next).await;
                let (call, answered) = (call.clone(), answered.clone());
                calls.push(tokio::spawn(async move {
                    if call().await {
                        *answered.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                }));
                next += Duration::from_millis(250);
            }
            for call in calls {
                let _ = call.await;
            }
        }));
    }
    for caller in callers {
        let _ = caller.await;
    }
    *answered.lock().unwrap_or_else(|e| e.into_inner())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut shares = Vec::new();
    for limited in [true, false] {
        let quota = Quota::default();
        let app = Router::new()
            .route("/data", get(answer))
            .with_state(quota.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/data", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let adapter = VendorHttp {
            http: Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(1))
                .build()?,
            url,
        };
        let runtime = Runtime::in_memory();
        let wrapper = Arc::new(Resilient::new(adapter, &runtime));
        let answered = if limited {
            offer(move || {
                let wrapper = wrapper.clone();
                async move { wrapper.limited().await.is_ok() }
            })
            .await
        } else {
            offer(move || {
                let wrapper = wrapper.clone();
                async move { wrapper.unlimited().await.is_ok() }
            })
            .await
        };
        server.abort();
        let (accepted, throttled) = *quota.counts.lock().unwrap_or_else(|e| e.into_inner());
        let share = throttled as f64 / (accepted + throttled).max(1) as f64;
        println!(
            "{:>18}: {:>3} vendor requests, {:>3} answered 429 ({:>5.1} %), {:>3} calls answered",
            if limited {
                "rate(\"18/1s\")"
            } else {
                "no limiter"
            },
            accepted + throttled,
            throttled,
            share * 100.0,
            answered
        );
        shares.push(share);
    }
    if shares[0] > 0.01 {
        return Err(format!(
            "the limiter let {:.1} % of requests be refused with 429",
            shares[0] * 100.0
        )
        .into());
    }
    Ok(())
}
