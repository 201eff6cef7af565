//! A contract over `seawall::http` and a loopback vendor, shared by the
//! tests of what goes on the wire and what goes in the logs.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use http::{HeaderMap, StatusCode};
use seawall::contract;
use seawall::http::{Client, ResponseError, check};
use seawall::telemetry::CorrelationId;

#[derive(Debug, thiserror::Error, seawall::Classify)]
pub enum ApiError {
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

#[contract(name = "api")]
pub trait Api {
    #[integration(read, timeout = "5s", retry(attempts = 3, base = "10ms", jitter = "none"),
                  redact = [token])]
    async fn fetch(&self, token: &str) -> Result<String, ApiError>;

    #[integration(read, timeout = "5s")]
    async fn search(&self, page: u32, filter: &Filter) -> Result<String, ApiError>;
}

/// A filter with no `Debug`.
pub struct Filter;

pub struct ApiHttp {
    pub client: Client,
    pub url: String,
}

impl Api for ApiHttp {
    async fn fetch(&self, token: &str) -> Result<String, ApiError> {
        let response = self
            .client
            .get(format!("{}?api_key={token}", self.url))
            .send()
            .await?;
        Ok(check(response)?.text().await?)
    }

    async fn search(&self, _page: u32, _filter: &Filter) -> Result<String, ApiError> {
        Ok(String::new())
    }
}

/// A vendor that answers 503 to every other request (first, third, …)
/// and records the headers of each.
#[derive(Clone, Default)]
pub struct Vendor {
    requests: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Vendor {
    pub async fn start(&self) -> String {
        async fn answer(
            State(vendor): State<Vendor>,
            headers: HeaderMap,
        ) -> (StatusCode, &'static str) {
            vendor
                .headers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(headers);
            if vendor.requests.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                (StatusCode::SERVICE_UNAVAILABLE, "busy")
            } else {
                (StatusCode::OK, "ok")
            }
        }
        let app = Router::new()
            .route("/data", axum::routing::get(answer))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/data")
    }

    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|h| {
                h.get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }
}

pub fn client(hook: impl Fn(&mut HeaderMap) + Send + Sync + 'static) -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .correlation_header("X-Correlation-ID")
        .header_hook(hook)
        .build()
        .unwrap()
}

pub fn trace_id(traceparent: &str) -> String {
    CorrelationId::from_traceparent(traceparent)
        .unwrap_or_else(|| panic!("not a traceparent: {traceparent:?}"))
        .to_string()
}
