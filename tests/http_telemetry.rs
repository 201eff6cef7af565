//! Correlation ids on the wire and secrets off the logs, against a real
//! HTTP server on loopback: `traceparent` on every attempt, the caller's id
//! or one per call, and no header, query string or argument value in any
//! span, event or health snapshot.

#![cfg(feature = "http")]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use http::{HeaderMap, StatusCode};
use seawall::http::{Client, ResponseError, check};
use seawall::telemetry::{CorrelationId, correlation_scope};
use seawall::{Resilient, Runtime, contract};

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

struct ApiHttp {
    client: Client,
    url: String,
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
struct Vendor {
    requests: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Vendor {
    async fn start(&self) -> String {
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

    fn header(&self, name: &str) -> Vec<String> {
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

fn client(hook: impl Fn(&mut HeaderMap) + Send + Sync + 'static) -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .correlation_header("X-Correlation-ID")
        .header_hook(hook)
        .build()
        .unwrap()
}

fn trace_id(traceparent: &str) -> String {
    CorrelationId::from_traceparent(traceparent)
        .unwrap_or_else(|| panic!("not a traceparent: {traceparent:?}"))
        .to_string()
}

#[tokio::test]
async fn every_attempt_carries_the_callers_correlation_id_as_traceparent() {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let api = Resilient::new(
        ApiHttp {
            client: client(|_| {}),
            url,
        },
        &Runtime::in_memory(),
    );
    // The id of the request being served, from its own traceparent.
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let id = CorrelationId::from_traceparent(incoming).unwrap();
    correlation_scope(id, api.fetch("t")).await.unwrap();

    let traceparents = vendor.header("traceparent");
    assert_eq!(traceparents.len(), 2, "a 503, then a retry");
    for traceparent in &traceparents {
        assert_eq!(trace_id(traceparent), "0af7651916cd43dd8448eb211c80319c");
    }
    assert_ne!(
        traceparents[0], traceparents[1],
        "each attempt is its own span"
    );
    assert_eq!(
        vendor.header("x-correlation-id"),
        ["0af7651916cd43dd8448eb211c80319c"; 2]
    );
}

#[tokio::test]
async fn a_call_outside_any_scope_has_one_id_of_its_own_for_all_its_attempts() {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let api = Resilient::new(
        ApiHttp {
            client: client(|_| {}),
            url,
        },
        &Runtime::in_memory(),
    );
    api.fetch("t").await.unwrap();
    api.fetch("t").await.unwrap();
    let ids: Vec<String> = vendor
        .header("traceparent")
        .iter()
        .map(|t| trace_id(t))
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[1], "one call, one id");
    assert_eq!(ids[2], ids[3], "one call, one id");
    assert_ne!(ids[0], ids[2], "two calls, two ids");
}

/// Everything `tracing` writes, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_spans_events_or_the_health_snapshot() {
    const SECRETS: [&str; 4] = [
        "Bearer-SECRET-AUTH",
        "session=SECRET-COOKIE",
        "SECRET-API-KEY",
        "SECRET-TOKEN-ARG",
    ];
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = Runtime::in_memory();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tokio.block_on(async {
            let vendor = Vendor::default();
            let url = vendor.start().await;
            let api = Resilient::new(
                ApiHttp {
                    client: client(|headers| {
                        headers.insert("authorization", "Bearer-SECRET-AUTH".parse().unwrap());
                        headers.insert("cookie", "session=SECRET-COOKIE".parse().unwrap());
                        headers.insert("x-api-key", "SECRET-API-KEY".parse().unwrap());
                    }),
                    url,
                },
                &runtime,
            );
            // The argument goes into the query string too.
            api.fetch("SECRET-TOKEN-ARG").await.unwrap();
            api.search(7, &Filter).await.unwrap();
            assert_eq!(vendor.header("x-api-key"), ["SECRET-API-KEY"; 2]);
        });
    });
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The call was traced: its span, both attempts and both responses.
    assert!(output.contains("seawall.call"), "{output}");
    assert!(output.contains("correlation_id="), "{output}");
    assert!(output.contains("http.response.status_code=503"), "{output}");
    assert!(output.contains("outcome=\"retryable\""), "{output}");
    // Arguments are a `debug` event: by `Debug`, unless redacted.
    assert!(output.contains("arg.token=\"<redacted>\""), "{output}");
    assert!(
        output.contains("arg.page=7 arg.filter=<not Debug>"),
        "{output}"
    );
    let health = serde_json::to_string(&runtime.health()).unwrap();
    for secret in SECRETS {
        assert!(!output.contains(secret), "{secret} in the logs:\n{output}");
        assert!(!health.contains(secret), "{secret} in the health snapshot");
    }
}
