//! seawall's traces in OpenTelemetry: the setup to copy.
//!
//! ```text
//! cargo run --example opentelemetry
//! ```
//!
//! seawall reports through `tracing`; `tracing-opentelemetry` turns its
//! spans into OpenTelemetry spans. This example installs the SDK with the
//! stdout exporter (swap in `opentelemetry-otlp`'s exporter to send them to
//! a collector), calls a fake CRM on `127.0.0.1` that answers 503 once, then
//! prints what was exported:
//!
//! - `seawall.call` (kind internal): `contract`, `method`, `correlation_id`,
//!   and how the call ended: `seawall.outcome`, `seawall.attempts`, and on
//!   failure `error.type` with status error;
//! - one `seawall.attempt` (kind client) per request under it, named as
//!   OpenTelemetry's HTTP client conventions name them:
//!   `http.request.method`, `server.address`, `server.port`,
//!   `http.response.status_code`, `http.request.resend_count` from the
//!   second, `error.type` (`"503"`) and status error when it failed.
//!
//! A `fmt` layer beside it prints the same calls as log lines at INFO: the
//! failed attempt, and the "call ended" event of a call that did not answer
//! at its first attempt. The example exits non-zero unless the exporter
//! received one call span with two attempt spans under it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{Classify, Resilient, Runtime, contract};
use tracing_subscriber::layer::SubscriberExt;

/// What a CRM call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum CrmError {
    /// The CRM answered with an error status.
    #[error(transparent)]
    #[classify(delegate)]
    Vendor(#[from] ResponseError),
    /// The request did not get an answer.
    #[error(transparent)]
    #[classify(delegate)]
    Transport(#[from] reqwest::Error),
    /// seawall ended the call.
    #[error(transparent)]
    #[classify(delegate)]
    Seawall(#[from] seawall::Error),
}

/// What our system needs from the CRM.
#[contract(name = "crm")]
pub trait Crm {
    /// An account's name.
    #[integration(read, timeout = "2s", retry(attempts = 3, base = "20ms"))]
    async fn account_name(&self, id: &str) -> Result<String, CrmError>;
}

/// The adapter.
pub struct CrmHttp {
    http: Client,
    base_url: String,
}

impl Crm for CrmHttp {
    async fn account_name(&self, id: &str) -> Result<String, CrmError> {
        let url = format!("{}/accounts/{id}/name", self.base_url);
        let response = self.http.get(url).send().await?.error_for_vendor()?;
        Ok(response.text().await?)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The SDK: a tracer provider with an exporter. The stdout exporter
    // prints each span as it ends; the in-memory one lets this example
    // check what was exported.
    let exported = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .with_simple_exporter(exported.clone())
        .build();
    let tracer = provider.tracer("my-service");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(tracing_subscriber::fmt::layer().with_target(true))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber)?;

    // A fake CRM: 503 to the first request, then the name.
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/accounts/{id}/name",
        get(move || {
            let requests = requests.clone();
            async move {
                match requests.fetch_add(1, Ordering::SeqCst) {
                    0 => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                    _ => (StatusCode::OK, "Acme"),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let crm = Resilient::new(
        CrmHttp {
            http: Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(1))
                .build()?,
            base_url,
        },
        &Runtime::in_memory(),
    );
    let name = crm.account_name("42").await?;
    println!("account 42 is {name}");

    // The simple exporters export each span as it ends; a batch exporter
    // needs `force_flush` here. A service calls `provider.shutdown()` when
    // it stops.
    provider.force_flush()?;
    let spans = exported.get_finished_spans()?;
    let calls = spans.iter().filter(|s| s.name == "seawall.call").count();
    let attempts = spans.iter().filter(|s| s.name == "seawall.attempt").count();
    println!("exported {calls} call span(s) and {attempts} attempt span(s)");
    if (calls, attempts) != (1, 2) {
        return Err(format!(
            "expected 1 call span and 2 attempt spans, got {calls} and {attempts}"
        )
        .into());
    }
    provider.shutdown()?;
    Ok(())
}
