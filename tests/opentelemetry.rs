//! seawall's spans as the OpenTelemetry SDK exports them: through
//! `tracing-opentelemetry` into the SDK's in-memory exporter, checked
//! against the conventions for HTTP clients (a span of kind client per
//! request sent, `http.request.method`, `server.address`, `server.port`,
//! `http.response.status_code`, `http.request.resend_count`, `error.type`,
//! status error on a failed request) under a call span of kind internal
//! that says how the call ended. Against a real HTTP server on loopback.
//!
//! Its own test binary: the layer is on the global subscriber.

#![cfg(feature = "http")]

mod loopback_api;

use std::sync::OnceLock;

use loopback_api::{ApiError, Vendor, client};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use seawall::http::{Client, check};
use seawall::{Resilient, Runtime, contract};
use tracing_subscriber::layer::SubscriberExt;

#[contract(name = "otel")]
pub trait Otel {
    #[integration(
        read,
        timeout = "5s",
        retry(attempts = 3, base = "10ms", jitter = "none")
    )]
    async fn fetch(&self, id: u32) -> Result<String, ApiError>;

    #[integration(read, timeout = "5s")]
    async fn once(&self, id: u32) -> Result<String, ApiError>;
}

struct OtelHttp {
    client: Client,
    url: String,
}

impl Otel for OtelHttp {
    async fn fetch(&self, _id: u32) -> Result<String, ApiError> {
        let response = self.client.get(&self.url).send().await?;
        Ok(check(response)?.text().await?)
    }

    async fn once(&self, id: u32) -> Result<String, ApiError> {
        self.fetch(id).await
    }
}

/// The exporter on the global subscriber, installed once for the binary.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("seawall-tests");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        exporter
    })
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn string(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::I64(n)) => Some(*n),
        other => panic!("{key} is not an integer: {other:?} in {span:#?}"),
    }
}

/// Runs `call` against a loopback vendor (503 to every other request, the
/// first included), and returns the exported call span with its attempt
/// spans, and the vendor's port.
fn export<F, Fut>(method: &str, id: u32, call: F) -> (SpanData, Vec<SpanData>, u16)
where
    F: FnOnce(Resilient<OtelHttp>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let exporter = exporter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = runtime.block_on(async {
        let vendor = Vendor::default();
        let url = vendor.start().await;
        let port = url.parse::<reqwest::Url>().unwrap().port().unwrap();
        let otel = Resilient::new(
            OtelHttp {
                client: client(|_| {}),
                url,
            },
            &Runtime::in_memory(),
        );
        call(otel).await;
        port
    });
    let spans = exporter.get_finished_spans().expect("the exported spans");
    let is_call = |span: &SpanData| {
        span.name == "seawall.call"
            && string(span, "method").as_deref() == Some(method)
            && string(span, "correlation_id").is_some()
    };
    // Each test's call has a method of its own; the call's trace holds its
    // attempts.
    let calls: Vec<_> = spans.iter().filter(|s| is_call(s)).collect();
    let [call] = &calls[..] else {
        panic!("one call span of otel.{method} (id {id}): {calls:#?}");
    };
    let call = (*call).clone();
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "seawall.attempt" && s.parent_span_id == call.span_context.span_id())
        .cloned()
        .collect();
    attempts.sort_by_key(|s| int(s, "seawall.attempt"));
    (call, attempts, port)
}

#[test]
fn a_retried_call_exports_a_client_span_per_request_under_an_internal_call_span() {
    let (call, attempts, port) = export("fetch", 1, |otel| async move {
        // 503, then 200.
        assert_eq!(otel.fetch(1).await.unwrap(), "ok");
    });

    assert_eq!(call.span_kind, SpanKind::Internal);
    assert_eq!(string(&call, "contract").as_deref(), Some("otel"));
    assert_eq!(string(&call, "seawall.outcome").as_deref(), Some("ok"));
    assert_eq!(int(&call, "seawall.attempts"), Some(2));
    assert_eq!(call.status, Status::Unset, "the call answered");
    assert!(attribute(&call, "http.response.status_code").is_none());

    let [first, second] = &attempts[..] else {
        panic!("a client span per request: {attempts:#?}");
    };
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.span_kind, SpanKind::Client);
        assert_eq!(
            attempt.span_context.trace_id(),
            call.span_context.trace_id()
        );
        assert_eq!(int(attempt, "seawall.attempt"), Some(n as i64 + 1));
        assert_eq!(
            string(attempt, "http.request.method").as_deref(),
            Some("GET")
        );
        assert_eq!(
            string(attempt, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(int(attempt, "server.port"), Some(i64::from(port)));
        // Each attribute once: nothing recorded again on a later attempt.
        let mut keys: Vec<_> = attempt
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        let all = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), all, "an attribute twice: {attempt:#?}");
    }
    // The first request failed: its status code as `error.type`, status error.
    assert_eq!(int(first, "http.response.status_code"), Some(503));
    assert_eq!(string(first, "error.type").as_deref(), Some("503"));
    assert!(matches!(first.status, Status::Error { .. }), "{first:#?}");
    assert!(attribute(first, "http.request.resend_count").is_none());
    // The second, a resend, answered.
    assert_eq!(int(second, "http.response.status_code"), Some(200));
    assert_eq!(int(second, "http.request.resend_count"), Some(1));
    assert!(attribute(second, "error.type").is_none());
    assert_eq!(second.status, Status::Unset);
    assert!(first.end_time <= second.start_time, "one after the other");
}

#[test]
fn a_failed_call_exports_its_error_type_and_status_error() {
    let (call, attempts, _) = export("once", 2, |otel| async move {
        // The first request of this vendor: 503, and no retries.
        otel.once(2).await.unwrap_err();
    });

    assert_eq!(string(&call, "seawall.outcome").as_deref(), Some("error"));
    assert_eq!(int(&call, "seawall.attempts"), Some(1));
    assert_eq!(string(&call, "error.type").as_deref(), Some("503"));
    let Status::Error { description } = &call.status else {
        panic!("status error: {call:#?}");
    };
    assert_eq!(description, "vendor answered 503 Service Unavailable");
    let [attempt] = &attempts[..] else {
        panic!("{attempts:#?}");
    };
    assert_eq!(string(attempt, "error.type").as_deref(), Some("503"));
}
