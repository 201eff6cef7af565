//! What a subscriber sees of a call: the logical call's span, one span per
//! attempt under it with OpenTelemetry's HTTP client names (each field
//! recorded once), one event per attempt, the event that ends every call
//! with its outcome, and the fallback's event (a stale answer, a queued
//! write) naming the same correlation id, against a real HTTP server on
//! loopback.
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

    #[integration(read, timeout = "5s", fallback = cache(max_stale = "1h"))]
    async fn card(&self, id: u32) -> Result<Cached<String>, ApiError>;

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

    async fn card(&self, _id: u32) -> Result<Cached<String>, ApiError> {
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
    level: String,
    fields: BTreeMap<String, String>,
    /// How many times each field was given a value (a span's fields can be
    /// recorded after it starts).
    recorded: BTreeMap<String, usize>,
    /// The index of the span it happened in (an event) or under (a span).
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

struct Fields<'a>(&'a mut Seen);

impl Fields<'_> {
    fn set(&mut self, field: &Field, value: String) {
        self.0.fields.insert(field.name().to_owned(), value);
        *self.0.recorded.entry(field.name().to_owned()).or_default() += 1;
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collector {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut seen = Seen {
            name: attributes.metadata().name().to_owned(),
            target: attributes.metadata().target().to_owned(),
            level: attributes.metadata().level().to_string(),
            ..Seen::default()
        };
        attributes.record(&mut Fields(&mut seen));
        let parent = context
            .span_scope(id)
            .and_then(|mut scope| scope.nth(1))
            .map(|span| span.id().into_u64());
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.parent = parent.and_then(|id| log.by_id.get(&id).copied());
        log.spans.push(seen);
        let index = log.spans.len() - 1;
        log.by_id.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&index) = log.by_id.get(&id.into_u64()) {
            values.record(&mut Fields(&mut log.spans[index]));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, context: Context<'_, S>) {
        let mut seen = Seen {
            name: event.metadata().name().to_owned(),
            target: event.metadata().target().to_owned(),
            level: event.metadata().level().to_string(),
            ..Seen::default()
        };
        event.record(&mut Fields(&mut seen));
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

/// What a subscriber saw of the calls of `events.<method>`: their spans,
/// the spans of their attempts, and their events (other than `seawall::http`
/// responses), in order.
struct Saw {
    calls: Vec<Seen>,
    attempts: Vec<Seen>,
    events: Vec<Seen>,
}

impl Saw {
    /// The attempt spans under the call span `call` (an index in `calls`).
    fn attempts_of(&self, call: &Seen) -> Vec<&Seen> {
        self.attempts
            .iter()
            .filter(|a| a.in_span.as_ref().map(|(_, id)| id) == call.fields.get("correlation_id"))
            .collect()
    }

    /// The `seawall::call` events that ended the calls, in order.
    fn ends(&self) -> Vec<&Seen> {
        self.events
            .iter()
            .filter(|e| e.target == "seawall::call")
            .collect()
    }
}

fn seen(method: &str) -> Saw {
    let log = collector().0.lock().unwrap_or_else(PoisonError::into_inner);
    let mine = |seen: &Seen| {
        seen.fields.get("contract").map(String::as_str) == Some("events")
            && seen.fields.get("method").map(String::as_str) == Some(method)
    };
    let in_span = |seen: &Seen| {
        let mut seen = seen.clone();
        seen.in_span = seen.parent.map(|i| {
            let span = &log.spans[i];
            let id = span.fields.get("correlation_id").cloned();
            (span.name.clone(), id.unwrap_or_default())
        });
        seen
    };
    let calls: Vec<Seen> = log.spans.iter().filter(|s| mine(s)).cloned().collect();
    let attempts = log
        .spans
        .iter()
        .filter(|s| s.name == "seawall.attempt" && s.parent.is_some_and(|p| mine(&log.spans[p])))
        .map(in_span)
        .collect();
    let events = log.events.iter().filter(|e| mine(e)).map(in_span).collect();
    Saw {
        calls,
        attempts,
        events,
    }
}

/// Every field of every span was given a value once.
fn recorded_once(spans: &[&Seen]) {
    for span in spans {
        for (field, times) in &span.recorded {
            assert_eq!(*times, 1, "{field} recorded {times} times on {span:#?}");
        }
    }
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
    events_at(runtime).await.0
}

/// As [`events`], and the vendor's port.
async fn events_at(runtime: &Runtime) -> ((Resilient<EventsHttp>, Vendor), u16) {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let port = url.parse::<reqwest::Url>().unwrap().port().unwrap();
    let events = Resilient::new(
        EventsHttp {
            client: client(|_| {}),
            url,
        },
        runtime,
    );
    ((events, vendor), port)
}

#[test]
fn each_attempt_is_a_span_under_the_calls_span_with_the_opentelemetry_names() {
    collector();
    let caller = CorrelationId::generate();
    let runtime = Runtime::in_memory();
    let (body, port) = tokio().block_on(async {
        let ((events, _vendor), port) = events_at(&runtime).await;
        // The vendor answers 503, then 200.
        let body = correlation_scope(caller, events.fetch()).await.unwrap();
        (body, port)
    });
    assert_eq!(body, "ok");

    let saw = seen("fetch");
    let [call] = &saw.calls[..] else {
        panic!("one span for the logical call: {:#?}", saw.calls);
    };
    assert_eq!(call.name, "seawall.call");
    assert_eq!(correlation_of(call), caller.to_string());
    assert_eq!(call.fields["otel.kind"], "internal");
    assert_eq!(call.fields["seawall.outcome"], "ok");
    assert_eq!(call.fields["seawall.attempts"], "2");
    assert!(!call.fields.contains_key("http.response.status_code"));
    assert!(!call.fields.contains_key("otel.status_code"), "it answered");

    let attempts = saw.attempts_of(call);
    let [first, second] = &attempts[..] else {
        panic!("a span per attempt under the call's: {:#?}", saw.attempts);
    };
    recorded_once(&[call, first, second]);
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.fields["otel.kind"], "client");
        assert_eq!(attempt.fields["seawall.attempt"], (n + 1).to_string());
        assert_eq!(attempt.fields["http.request.method"], "GET");
        assert_eq!(attempt.fields["server.address"], "127.0.0.1");
        assert_eq!(attempt.fields["server.port"], port.to_string());
    }
    assert!(!first.fields.contains_key("http.request.resend_count"));
    assert_eq!(second.fields["http.request.resend_count"], "1");
    assert_eq!(first.fields["http.response.status_code"], "503");
    assert_eq!(first.fields["error.type"], "503");
    assert_eq!(first.fields["otel.status_code"], "error");
    assert_eq!(second.fields["http.response.status_code"], "200");
    assert!(!second.fields.contains_key("error.type"));
    assert!(!second.fields.contains_key("otel.status_code"));

    let attempt_events: Vec<_> = saw
        .events
        .iter()
        .filter(|e| e.target == "seawall::attempt")
        .collect();
    let [failed, answered] = &attempt_events[..] else {
        panic!("an event per attempt: {:#?}", saw.events);
    };
    assert_eq!(
        failed.in_span,
        Some(("seawall.attempt".to_owned(), String::new())),
        "each attempt's event is in its own span"
    );
    assert_eq!(failed.level, "INFO");
    assert_eq!(failed.fields["outcome"], "retryable");
    assert_eq!(failed.fields["error.type"], "503");
    assert_eq!(failed.fields["breaker"], "closed");
    assert_eq!(answered.level, "DEBUG");
    assert_eq!(answered.fields["outcome"], "success");
    for event in [failed, answered] {
        let ms: f64 = event.fields["duration_ms"].parse().unwrap();
        assert!(ms > 0.0, "{event:#?}");
    }

    let [end] = &saw.ends()[..] else {
        panic!("one event ends the call: {:#?}", saw.events);
    };
    assert_eq!(
        end.in_span,
        Some(("seawall.call".to_owned(), caller.to_string()))
    );
    assert_eq!(end.fields["message"], "call ended");
    assert_eq!(end.fields["outcome"], "ok");
    assert_eq!(end.fields["attempts"], "2");
    assert_eq!(end.level, "INFO", "answered, but not at the first attempt");
    assert!(!end.fields.contains_key("error"));
    let ms: f64 = end.fields["duration_ms"].parse().unwrap();
    assert!(ms > 0.0, "{end:#?}");
}

#[test]
fn every_call_ends_with_one_event_saying_how_at_debug_only_when_it_answered_at_once() {
    collector();
    let runtime = Runtime::in_memory();
    tokio().block_on(async {
        let (events, _vendor) = events(&runtime).await;
        // 503 with nothing cached, then 200, then 503: stale.
        events.card(7).await.unwrap_err();
        assert!(!events.card(7).await.unwrap().is_stale());
        assert!(events.card(7).await.unwrap().is_stale());
    });

    let saw = seen("card");
    let ends = saw.ends();
    let [failed, answered, stale] = &ends[..] else {
        panic!("one end per call: {:#?}", saw.events);
    };
    assert_eq!(failed.level, "INFO");
    assert_eq!(failed.fields["outcome"], "error");
    assert_eq!(failed.fields["attempts"], "1");
    assert_eq!(failed.fields["error.type"], "503");
    assert_eq!(
        failed.fields["error"],
        "vendor answered 503 Service Unavailable"
    );
    assert_eq!(answered.level, "DEBUG");
    assert_eq!(answered.fields["outcome"], "ok");
    assert_eq!(stale.level, "INFO");
    assert_eq!(stale.fields["outcome"], "stale");
    assert!(
        !stale.fields.contains_key("error"),
        "the caller got an answer"
    );

    let [failed, answered, stale] = &saw.calls[..] else {
        panic!("{:#?}", saw.calls);
    };
    recorded_once(&[failed, answered, stale]);
    assert_eq!(failed.fields["seawall.outcome"], "error");
    assert_eq!(failed.fields["error.type"], "503");
    assert_eq!(failed.fields["otel.status_code"], "error");
    assert_eq!(answered.fields["seawall.outcome"], "ok");
    assert_eq!(stale.fields["seawall.outcome"], "stale");
    assert!(!stale.fields.contains_key("otel.status_code"));
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

    let saw = seen("profile");
    let spans = &saw.calls;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let stale = outcomes(&saw.events, "seawall::cache", "stale");
    let [stale] = &stale[..] else {
        panic!("one stale answer: {:#?}", saw.events);
    };
    // Each call had an id of its own (no caller scope); the stale answer
    // names the third call's.
    let third = correlation_of(&spans[2]);
    assert_eq!(stale.fields["correlation_id"], third);
    assert_ne!(correlation_of(&spans[1]), third);
    assert_eq!(saw.attempts_of(&spans[2]).len(), 1);
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

    let saw = seen("note");
    let [call, behind] = &saw.calls[..] else {
        panic!("a span for each call: {:#?}", saw.calls);
    };
    assert_eq!(correlation_of(call), caller.to_string());
    assert_eq!(saw.attempts_of(call).len(), 1);
    assert_eq!(
        saw.attempts_of(behind).len(),
        0,
        "queued behind, it made no attempt"
    );
    assert_eq!(behind.fields["seawall.outcome"], "queued");
    assert_eq!(behind.fields["seawall.attempts"], "0");
    let ends = saw.ends();
    let [first_end, behind_end] = &ends[..] else {
        panic!("one end per call: {:#?}", saw.events);
    };
    assert_eq!(first_end.fields["outcome"], "queued");
    assert_eq!(first_end.fields["attempts"], "1");
    assert_eq!(behind_end.fields["outcome"], "queued");
    assert_eq!(behind_end.fields["attempts"], "0");
    let queued = outcomes(&saw.events, "seawall::queue", "queued");
    let [first, second] = &queued[..] else {
        panic!("two writes queued: {:#?}", saw.events);
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

    let saw = seen("parse");
    let attempts: Vec<_> = saw
        .events
        .iter()
        .filter(|e| e.target == "seawall::attempt")
        .collect();
    let [first, second] = &attempts[..] else {
        panic!("two attempts, the panic not retried: {:#?}", saw.events);
    };
    assert_eq!(first.fields["outcome"], "retryable");
    assert_eq!(first.fields["error.type"], "503");
    assert_eq!(second.fields["outcome"], "vendor_fault");
    assert_eq!(second.fields["error.type"], "panic");
    let [end] = &saw.ends()[..] else {
        panic!("one end: {:#?}", saw.events);
    };
    assert_eq!(end.fields["outcome"], "panicked");
    assert_eq!(end.fields["attempts"], "2");
    assert_eq!(saw.calls[0].fields["otel.status_code"], "error");
    let breaker = runtime.breaker("events.parse").unwrap().metrics();
    assert_eq!((breaker.calls, breaker.failures), (2, 2));
}
