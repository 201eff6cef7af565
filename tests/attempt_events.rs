//! What a subscriber sees of a call: the logical call's span, one event per
//! attempt under it with the OpenTelemetry names, and the fallback's event
//! (a stale answer, a queued write) naming the same correlation id, against
//! a real HTTP server on loopback.
//!
//! Its own test binary: the spans and events are collected by a layer on
//! the global subscriber, which a thread-local default would not see from
//! every callsite.

#![cfg(feature = "http")]

mod loopback_api;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use loopback_api::{ApiError, Vendor, client};
use seawall::http::{Client, check};
use seawall::telemetry::{CorrelationId, correlation_scope};
use seawall::{Cached, Delivery, Resilient, Runtime, contract};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[contract(name = "events")]
pub trait Events {
    #[integration(
        read,
        timeout = "5s",
        retry(attempts = 3, base = "10ms", jitter = "none"),
        breaker
    )]
    async fn fetch(&self) -> Result<String, ApiError>;

    #[integration(read, timeout = "5s", fallback = cache(max_stale = "1h"))]
    async fn profile(&self, id: u32) -> Result<Cached<String>, ApiError>;

    #[integration(write, timeout = "5s", idempotent, fallback = queue)]
    async fn note(&self, text: &str) -> Result<Delivery<()>, ApiError>;

    #[integration(read, timeout = "5s", retry(attempts = 3, base = "10ms"), breaker)]
    async fn parse(&self) -> Result<u32, ApiError>;
}

struct EventsHttp {
    client: Client,
    url: String,
}

impl EventsHttp {
    async fn get(&self) -> Result<String, ApiError> {
        let response = self.client.get(&self.url).send().await?;
        Ok(check(response)?.text().await?)
    }
}

impl Events for EventsHttp {
    async fn fetch(&self) -> Result<String, ApiError> {
        self.get().await
    }

    async fn profile(&self, _id: u32) -> Result<Cached<String>, ApiError> {
        self.get().await.map(Cached::fresh)
    }

    async fn note(&self, _text: &str) -> Result<Delivery<()>, ApiError> {
        self.get().await.map(|_| Delivery::Done(()))
    }

    /// An adapter whose parsing panics on the vendor's answer.
    async fn parse(&self) -> Result<u32, ApiError> {
        let body = self.get().await?;
        Ok(body.parse().expect("a number from the vendor"))
    }
}

/// A span or an event as the subscriber saw it.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: String,
    target: String,
    fields: BTreeMap<String, String>,
    /// For an event, the index of the span it happened in.
    parent: Option<usize>,
    /// For an event, the name and correlation id of that span.
    in_span: Option<(String, String)>,
}

#[derive(Default)]
struct Log {
    spans: Vec<Seen>,
    events: Vec<Seen>,
    /// Span ids are reused once a span closes: the latest span of each id.
    by_id: BTreeMap<u64, usize>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Log>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collector {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut seen = Seen {
            name: attributes.metadata().name().to_owned(),
            target: attributes.metadata().target().to_owned(),
            ..Seen::default()
        };
        attributes.record(&mut Fields(&mut seen.fields));
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.spans.push(seen);
        let index = log.spans.len() - 1;
        log.by_id.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&index) = log.by_id.get(&id.into_u64()) {
            values.record(&mut Fields(&mut log.spans[index].fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, context: Context<'_, S>) {
        let mut seen = Seen {
            name: event.metadata().name().to_owned(),
            target: event.metadata().target().to_owned(),
            ..Seen::default()
        };
        event.record(&mut Fields(&mut seen.fields));
        let parent = context.event_span(event).map(|span| span.id().into_u64());
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.parent = parent.and_then(|id| log.by_id.get(&id).copied());
        log.events.push(seen);
    }
}

/// The collector on the global subscriber, installed once for the binary.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = Collector::default();
        let subscriber = tracing_subscriber::registry().with(collector.clone());
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        collector
    })
}

/// The spans of `events.<method>` calls, and the events (other than
/// `seawall::http` responses) of `events.<method>`, in order.
fn seen(method: &str) -> (Vec<Seen>, Vec<Seen>) {
    let log = collector().0.lock().unwrap_or_else(PoisonError::into_inner);
    let mine = |seen: &Seen| {
        seen.fields.get("contract").map(String::as_str) == Some("events")
            && seen.fields.get("method").map(String::as_str) == Some(method)
    };
    let spans = log.spans.iter().filter(|s| mine(s)).cloned().collect();
    let events = log
        .events
        .iter()
        .filter(|e| mine(e))
        .map(|e| {
            let mut e = e.clone();
            e.in_span = e.parent.map(|i| {
                let span = &log.spans[i];
                let id = span.fields.get("correlation_id").cloned();
                (span.name.clone(), id.unwrap_or_default())
            });
            e
        })
        .collect();
    (spans, events)
}

/// The events of `target` with this `outcome`.
fn outcomes<'a>(events: &'a [Seen], target: &str, outcome: &str) -> Vec<&'a Seen> {
    events
        .iter()
        .filter(|e| {
            e.target == target && e.fields.get("outcome").map(String::as_str) == Some(outcome)
        })
        .collect()
}

fn correlation_of(span: &Seen) -> &str {
    span.fields
        .get("correlation_id")
        .map(String::as_str)
        .expect("the call's span records its correlation id")
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn events(runtime: &Runtime) -> (Resilient<EventsHttp>, Vendor) {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let events = Resilient::new(
        EventsHttp {
            client: client(|_| {}),
            url,
        },
        runtime,
    );
    (events, vendor)
}

#[test]
fn each_attempt_is_an_event_in_the_calls_span_with_the_opentelemetry_names() {
    collector();
    let caller = CorrelationId::generate();
    let runtime = Runtime::in_memory();
    let body = tokio().block_on(async {
        let (events, _vendor) = events(&runtime).await;
        // The vendor answers 503, then 200.
        correlation_scope(caller, events.fetch()).await.unwrap()
    });
    assert_eq!(body, "ok");

    let (spans, events) = seen("fetch");
    let [call] = &spans[..] else {
        panic!("one span for the logical call: {spans:#?}");
    };
    assert_eq!(call.name, "seawall.call");
    assert_eq!(correlation_of(call), caller.to_string());
    assert_eq!(call.fields["otel.kind"], "client");
    assert_eq!(call.fields["http.request.method"], "GET");
    assert_eq!(call.fields["server.address"], "127.0.0.1");
    assert_eq!(call.fields["http.response.status_code"], "200");

    let attempts: Vec<_> = events
        .iter()
        .filter(|e| e.target == "seawall::attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{events:#?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(
            attempt.in_span,
            Some(("seawall.call".to_owned(), caller.to_string())),
            "{attempt:#?}"
        );
        assert_eq!(attempt.fields["attempt"], (n + 1).to_string());
        assert_eq!(attempt.fields["breaker"], "closed");
        let ms: f64 = attempt.fields["duration_ms"].parse().unwrap();
        assert!(ms > 0.0, "{attempt:#?}");
    }
    assert_eq!(attempts[0].fields["outcome"], "retryable");
    assert_eq!(attempts[0].fields["error.type"], "retryable");
    assert_eq!(attempts[1].fields["outcome"], "success");
    assert!(!attempts[1].fields.contains_key("error.type"));
}

#[test]
fn a_stale_answer_names_the_correlation_id_of_the_call_it_stands_in_for() {
    collector();
    let runtime = Runtime::in_memory();
    tokio().block_on(async {
        let (events, _vendor) = events(&runtime).await;
        // 503 with nothing cached, then 200 (stored), then 503: stale.
        events.profile(1).await.unwrap_err();
        assert!(!events.profile(1).await.unwrap().is_stale());
        assert!(events.profile(1).await.unwrap().is_stale());
    });

    let (spans, events) = seen("profile");
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let stale = outcomes(&events, "seawall::cache", "stale");
    let [stale] = &stale[..] else {
        panic!("one stale answer: {events:#?}");
    };
    // Each call had an id of its own (no caller scope); the stale answer
    // names the third call's.
    let third = correlation_of(&spans[2]);
    assert_eq!(stale.fields["correlation_id"], third);
    assert_ne!(correlation_of(&spans[1]), third);
    let last_attempt = events
        .iter()
        .rfind(|e| e.target == "seawall::attempt")
        .unwrap();
    assert_eq!(
        last_attempt.in_span,
        Some(("seawall.call".to_owned(), third.to_owned()))
    );
}

#[test]
fn a_queued_write_names_the_callers_correlation_id_and_one_queued_behind_it_its_own() {
    collector();
    let caller = CorrelationId::generate();
    let runtime = Runtime::in_memory();
    tokio().block_on(async {
        let (events, vendor) = events(&runtime).await;
        // 503: the write is queued.
        let first = correlation_scope(caller, events.note("first"))
            .await
            .unwrap();
        assert!(matches!(first, Delivery::Queued(_)), "{first:?}");
        // Queued behind it, without a call to the vendor.
        let second = events.note("second").await.unwrap();
        assert!(matches!(second, Delivery::Queued(_)), "{second:?}");
        assert_eq!(vendor.header("x-correlation-id").len(), 1);
    });

    let (spans, events) = seen("note");
    let [call] = &spans[..] else {
        panic!("one call made: {spans:#?}");
    };
    assert_eq!(correlation_of(call), caller.to_string());
    let queued = outcomes(&events, "seawall::queue", "queued");
    let [first, second] = &queued[..] else {
        panic!("two writes queued: {events:#?}");
    };
    assert_eq!(first.fields["correlation_id"], caller.to_string());
    let own = &second.fields["correlation_id"];
    assert_ne!(*own, caller.to_string());
    assert!(
        own.len() == 32 && own.bytes().all(|b| b.is_ascii_hexdigit()),
        "{own}"
    );
}

#[test]
fn a_panicking_adapter_is_one_vendor_fault_attempt_and_the_panic_goes_on() {
    collector();
    let runtime = Runtime::in_memory();
    let panicked = tokio().block_on(async {
        let (events, _vendor) = events(&runtime).await;
        let events = std::sync::Arc::new(events);
        // The vendor answers 503 (retried), then "ok", which the adapter
        // cannot parse.
        let task = tokio::spawn({
            let events = events.clone();
            async move { events.parse().await }
        });
        task.await.expect_err("the adapter panicked")
    });
    assert!(panicked.is_panic());

    let (_, events) = seen("parse");
    let attempts: Vec<_> = events
        .iter()
        .filter(|e| e.target == "seawall::attempt")
        .collect();
    let [first, second] = &attempts[..] else {
        panic!("two attempts, the panic not retried: {events:#?}");
    };
    assert_eq!(first.fields["outcome"], "retryable");
    assert_eq!(second.fields["outcome"], "vendor_fault");
    assert_eq!(second.fields["error.type"], "vendor_fault");
    let breaker = runtime.breaker("events.parse").unwrap().metrics();
    assert_eq!((breaker.calls, breaker.failures), (2, 2));
}
