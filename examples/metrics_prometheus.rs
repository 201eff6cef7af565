//! seawall's metrics, scraped by Prometheus: a `/metrics` route served from
//! a `metrics-exporter-prometheus` recorder, and what it shows after an
//! outage.
//!
//! ```text
//! cargo run --example metrics_prometheus
//! ```
//!
//! seawall records through the [`metrics`](https://docs.rs/metrics) facade,
//! so any recorder will do; this example installs the Prometheus one
//! (`PrometheusBuilder::install_recorder`, with buckets for the latency
//! histogram) and serves `PrometheusHandle::render()` from an axum route,
//! `GET /metrics`, on `127.0.0.1` (an ephemeral port).
//!
//! **Install the recorder before the first call.** Each endpoint (a contract
//! method) resolves its metric handles once, when a wrapper first calls a
//! method of its contract; with no recorder installed by then, its handles
//! are no-ops for good, and its counts only reach
//! [`Runtime::health`](seawall::Runtime::health).
//!
//! A fake product catalog runs on `127.0.0.1` too, and is called through a
//! contract with two methods: `price` (a read with retries and a breaker)
//! and `product` (a read answered from the last-known-good cache when the
//! catalog cannot answer). The catalog answers, then: 404 for a product it
//! does not know, 500, too slowly (past the 250 ms timeout), 503 (the
//! breaker opens and turns calls away), and at once again (the breaker's
//! probe closes it). The example then scrapes `/metrics` over HTTP and
//! prints its seawall lines:
//!
//! - `seawall_calls_total{contract,method,outcome}`: calls by how they
//!   ended for the caller, `ok`, `error`, `stale` (answered from the
//!   cache), `rejected` (turned away by the open breaker without calling
//!   the vendor), `cancelled`, `panicked` (and `queued`, `fallback` for
//!   methods with those fallbacks); each appears, at 0 until counted, except
//!   that a method gets only the series its policy can move (no `rejected`
//!   without a breaker, no `stale` without a cache);
//! - `seawall_attempts_total{contract,method,outcome}`: attempts by
//!   outcome, `success`, `retryable` (503), `vendor_fault` (500),
//!   `permanent` (404), `ignored`, `timeout`;
//! - `seawall_call_duration_seconds{contract,method}`: a histogram
//!   (`_bucket`, `_sum`, `_count`) of the attempts that reached the vendor;
//! - `seawall_cache_stale_total` and `seawall_cache_misses_total`: reads
//!   answered from the cache, and failed reads it had no answer for (only
//!   for `product`, the method with a cache);
//! - `seawall_retry_budget_exhausted_total` (only for `price`, which
//!   retries) and `seawall_error_rate_alerts_total`: at 0 here;
//! - `seawall_breaker_state{breaker}`: 0 closed, 1 half-open, 2 open, …,
//!   from the breaker's creation, set again on every transition.
//!
//! (`seawall_queue_depth{contract}` belongs to contracts with queued
//! writes; this one has none.)
//!
//! It exits non-zero unless the scrape counted what happened: each attempt
//! outcome as many times as the catalog answered that way (404s, 500s,
//! 503s, the slow answers cut off by the timeout, the 200s), each call
//! outcome as many times as the callers saw it (answers, errors, stale
//! answers, `BreakerOpen`), the stale answers and the miss as many as the
//! callers got, as many latency samples as attempts, the breaker
//! closed at the end, and every count equal to `runtime.health()`'s. Counts
//! are compared as the difference between a scrape before the traffic and
//! one after, so the check also holds in a process that ran it before. It
//! takes about a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use seawall::http::{Client, ResponseError, ResponseExt};
use seawall::{BreakerState, Cached, Classify, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A price, as the catalog sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Price {
    /// The product.
    pub sku: String,
    /// In cents.
    pub cents: u64,
}

/// A product page's data, as the catalog sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Product {
    /// The product.
    pub sku: String,
    /// Its name.
    pub name: String,
}

/// What a catalog call can fail with.
#[derive(Debug, thiserror::Error, Classify)]
pub enum CatalogError {
    /// The catalog answered with an error status.
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

/// What our shop needs from the catalog.
#[contract(name = "catalog")]
pub trait Catalog {
    /// A product's price, now.
    #[integration(
        read,
        timeout = "250ms",
        retry(attempts = 3, base = "10ms", cap = "20ms"),
        breaker(failure_rate = 0.5, window = 10, min_calls = 5, open_for = "300ms")
    )]
    async fn price(&self, sku: &str) -> Result<Price, CatalogError>;

    /// A product page; up to an hour old when the catalog is down.
    #[integration(read, timeout = "250ms", retry(attempts = 2, base = "10ms", cap = "20ms"),
                  fallback = cache(max_stale = "1h"))]
    async fn product(&self, sku: &str) -> Result<Cached<Product>, CatalogError>;
}

/// The contract's name, as it appears in the `contract` label.
const CONTRACT: &str = "catalog";
/// The breaker `#[contract(name = "catalog")]` builds for `price`.
const PRICE_BREAKER: &str = "catalog.price";
/// The policy's `breaker(open_for)`.
const OPEN_FOR: Duration = Duration::from_millis(300);
/// How long the catalog takes to answer when it is slow: past the 250 ms
/// timeout.
const SLOW_DELAY: Duration = Duration::from_millis(600);

/// The adapter.
pub struct CatalogHttp {
    http: Client,
    base_url: String,
}

impl Catalog for CatalogHttp {
    async fn price(&self, sku: &str) -> Result<Price, CatalogError> {
        let url = format!("{}/prices/{sku}", self.base_url);
        let response = self.http.get(url).send().await?.error_for_vendor()?;
        Ok(response.json().await?)
    }

    async fn product(&self, sku: &str) -> Result<Cached<Product>, CatalogError> {
        let url = format!("{}/products/{sku}", self.base_url);
        let response = self.http.get(url).send().await?.error_for_vendor()?;
        Ok(response.json::<Product>().await?.into())
    }
}

// ---------------------------------------------------------------------------
// The fake catalog
// ---------------------------------------------------------------------------

/// How the catalog answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// 200 at once, 404 for a product it does not know.
    Up,
    /// 500 Internal Server Error.
    Fault,
    /// 200 after [`SLOW_DELAY`].
    Slow,
    /// 503 Service Unavailable.
    Down,
}

/// A product the catalog does not know.
const UNKNOWN: &str = "sku-unknown";

/// The seawall outcome each way the catalog answers is counted under.
const ANSWERS: [(&str, &str); 5] = [
    ("ok", "success"),
    ("not_found", "permanent"),
    ("fault", "vendor_fault"),
    ("slow", "timeout"),
    ("unavailable", "retryable"),
];

#[derive(Default)]
struct FakeCatalog {
    mode: AtomicU8,
    /// Requests received, by method and how they were answered.
    answered: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl FakeCatalog {
    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Counts the request, and answers as the mode says: `Ok` when the
    /// handler may answer 200.
    async fn answer(&self, method: &'static str, sku: &str) -> Result<(), StatusCode> {
        let mode = match self.mode.load(Ordering::SeqCst) {
            m if m == Mode::Fault as u8 => Mode::Fault,
            m if m == Mode::Slow as u8 => Mode::Slow,
            m if m == Mode::Down as u8 => Mode::Down,
            _ => Mode::Up,
        };
        let (answer, result) = match mode {
            Mode::Up if sku == UNKNOWN => ("not_found", Err(StatusCode::NOT_FOUND)),
            Mode::Up => ("ok", Ok(())),
            Mode::Fault => ("fault", Err(StatusCode::INTERNAL_SERVER_ERROR)),
            Mode::Slow => ("slow", Ok(())),
            Mode::Down => ("unavailable", Err(StatusCode::SERVICE_UNAVAILABLE)),
        };
        // Counted on arrival: a slow answer is cut off by the caller's
        // timeout before it is sent.
        *self
            .answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((method, answer))
            .or_default() += 1;
        if mode == Mode::Slow {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        result
    }

    fn answered(&self, method: &str, answer: &str) -> u64 {
        self.answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((m, a), _)| *m == method && *a == answer)
            .map(|(_, n)| n)
            .sum()
    }
}

async fn price(
    State(catalog): State<Arc<FakeCatalog>>,
    Path(sku): Path<String>,
) -> Result<Json<Price>, StatusCode> {
    catalog.answer("price", &sku).await?;
    Ok(Json(Price {
        cents: 100 * sku.len() as u64,
        sku,
    }))
}

async fn product(
    State(catalog): State<Arc<FakeCatalog>>,
    Path(sku): Path<String>,
) -> Result<Json<Product>, StatusCode> {
    catalog.answer("product", &sku).await?;
    Ok(Json(Product {
        name: format!("Product {}", sku.trim_start_matches("sku-")),
        sku,
    }))
}

// ---------------------------------------------------------------------------
// The recorder and the /metrics route
// ---------------------------------------------------------------------------

/// The process's Prometheus recorder, installed on first use.
///
/// A process has one global recorder, installed once: a second `run()` in
/// the same process (as in a test binary) reuses it. Installing fails when
/// another recorder got there first.
fn recorder() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // A real histogram, not the default summary: buckets can be
                // summed across instances.
                .set_buckets_for_metric(
                    Matcher::Full("seawall_call_duration_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
                )
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|error| format!("cannot install the Prometheus recorder: {error}"))
        })
        .clone()
}

/// `GET /metrics`: the text exposition format.
async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed: enough of the text format for seawall's labels (no
/// commas or escaped quotes in their values).
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    async fn fetch(http: &reqwest::Client, url: &str) -> Result<Self, reqwest::Error> {
        let text = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let samples = text.lines().filter_map(parse_sample).collect();
        Ok(Self { text, samples })
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Whether a sample named `name` with `labels` is present.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
        })
    }

    /// seawall's lines for this example's contract and breaker, under
    /// their `# TYPE` lines, sorted (the exporter's order changes from
    /// scrape to scrape; a histogram's buckets keep theirs).
    fn seawall_lines(&self) -> Vec<String> {
        let ours = |line: &str| {
            line.starts_with("seawall_")
                && (line.contains(&format!("contract=\"{CONTRACT}\""))
                    || line.contains(&format!("breaker=\"{CONTRACT}.")))
        };
        let mut families: Vec<(&str, Vec<&str>)> = Vec::new();
        for line in self.text.lines() {
            if line.starts_with("# TYPE seawall_") {
                families.push((line, Vec::new()));
            } else if let Some((_, samples)) = families.last_mut().filter(|_| ours(line)) {
                samples.push(line);
            }
        }
        families.sort_by_key(|(kind, _)| *kind);
        let mut lines = Vec::new();
        for (kind, mut samples) in families {
            if samples.is_empty() {
                continue;
            }
            // Stable: a series' buckets stay in `le` order.
            samples.sort_by_key(|line| line.split(",le=").next().unwrap_or(line));
            lines.push(kind.to_owned());
            lines.extend(samples.into_iter().map(str::to_owned));
        }
        lines
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, labels.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect();
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

/// One count the scrape must show.
#[derive(Debug)]
pub struct Check {
    /// What is compared, e.g. `seawall_calls_total{method="price",outcome="timeout"}`.
    pub what: String,
    /// What the scrape counted during the run.
    pub counted: f64,
    /// What it must equal, each with where that number comes from.
    pub expected: Vec<(&'static str, f64)>,
}

impl Check {
    /// Whether the scrape agreed with every expectation.
    pub fn holds(&self) -> bool {
        self.expected.iter().all(|(_, n)| *n == self.counted)
    }
}

/// What the example found.
#[derive(Debug)]
pub struct Report {
    /// The URL the metrics were served on.
    pub url: String,
    /// The final scrape's seawall lines for the `catalog` contract.
    pub lines: Vec<String>,
    /// The comparisons, each with what was expected.
    pub checks: Vec<Check>,
    /// Everything else that did not hold (missing lines, a scenario that did
    /// not produce an outcome it promises).
    pub problems: Vec<String>,
    /// How long the scenario took.
    pub took: Duration,
}

impl Report {
    /// Every failed expectation, described.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = self.problems.clone();
        failures.extend(self.checks.iter().filter(|c| !c.holds()).map(|c| {
            let expected: Vec<String> = c
                .expected
                .iter()
                .map(|(source, n)| format!("{source}: {n}"))
                .collect();
            format!(
                "{}: the scrape counted {}; expected {}",
                c.what,
                c.counted,
                expected.join(", ")
            )
        }));
        failures
    }
}

/// What the callers saw.
#[derive(Default)]
struct Callers {
    /// `price` calls answered.
    prices: u64,
    /// `price` calls that got `BreakerOpen`.
    rejected: u64,
    /// `price` calls that got another error.
    failed_prices: u64,
    /// `product` calls answered by the catalog.
    products: u64,
    /// `product` calls answered from the cache.
    stale: u64,
    /// `product` calls that failed: no cached answer.
    failed_products: u64,
}

impl Callers {
    async fn price(&mut self, catalog: &Resilient<CatalogHttp>, sku: &str) {
        match catalog.price(sku).await {
            Ok(_) => self.prices += 1,
            Err(CatalogError::Seawall(seawall::Error::BreakerOpen { .. })) => self.rejected += 1,
            Err(_) => self.failed_prices += 1,
        }
    }

    async fn product(&mut self, catalog: &Resilient<CatalogHttp>, sku: &str) {
        match catalog.product(sku).await {
            Ok(product) if product.is_stale() => self.stale += 1,
            Ok(_) => self.products += 1,
            Err(_) => self.failed_products += 1,
        }
    }

    /// How many calls of `method` the callers saw end as `outcome`.
    fn saw(&self, method: &str, outcome: &str) -> u64 {
        match (method, outcome) {
            ("price", "ok") => self.prices,
            ("price", "error") => self.failed_prices,
            ("price", "rejected") => self.rejected,
            ("product", "ok") => self.products,
            ("product", "error") => self.failed_products,
            ("product", "stale") => self.stale,
            _ => 0,
        }
    }
}

/// Runs the scenario, scrapes `/metrics` before and after, and compares.
pub async fn run() -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    // Before the first call of any wrapper: handles are resolved then.
    let handle = recorder()?;
    let started = Instant::now();

    let metrics_app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(handle.clone());
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/metrics", metrics_listener.local_addr()?);
    let metrics_server =
        tokio::spawn(async move { axum::serve(metrics_listener, metrics_app).await });
    // `render` drains the histograms; a long-running service also runs the
    // upkeep between scrapes, so they do not grow unscraped.
    let upkeep = tokio::spawn({
        let handle = handle.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        }
    });

    let catalog = Arc::new(FakeCatalog::default());
    let vendor_app = Router::new()
        .route("/prices/{sku}", get(price))
        .route("/products/{sku}", get(product))
        .with_state(catalog.clone());
    let vendor_listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", vendor_listener.local_addr()?);
    let vendor_server = tokio::spawn(async move { axum::serve(vendor_listener, vendor_app).await });

    let scraper = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let before = Scrape::fetch(&scraper, &url).await?;

    let http = Client::builder()
        .configure(|builder| builder.no_proxy())
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build()?;
    let runtime = Runtime::in_memory();
    let client = Resilient::new(CatalogHttp { http, base_url }, &runtime);
    let mut callers = Callers::default();

    // Up: prices and product pages (which the cache remembers), and a
    // product the catalog does not know.
    catalog.set_mode(Mode::Up);
    for n in 1..=6 {
        callers.price(&client, &format!("sku-{n}")).await;
    }
    for n in 1..=3 {
        callers.product(&client, &format!("sku-{n}")).await;
    }
    callers.price(&client, UNKNOWN).await;
    // A vendor fault, not retried; then answers too slow for the timeout.
    catalog.set_mode(Mode::Fault);
    callers.price(&client, "sku-1").await;
    catalog.set_mode(Mode::Slow);
    callers.price(&client, "sku-2").await;
    // Down: product pages from the cache (one it never saw fails), prices
    // until the breaker opens and turns calls away.
    catalog.set_mode(Mode::Down);
    for n in 1..=3 {
        callers.product(&client, &format!("sku-{n}")).await;
    }
    callers.product(&client, "sku-9").await;
    for n in 1..=6 {
        callers.price(&client, &format!("sku-{n}")).await;
    }
    // Up again: after `open_for`, the breaker's probe closes it.
    catalog.set_mode(Mode::Up);
    tokio::time::sleep(OPEN_FOR + Duration::from_millis(50)).await;
    for n in 1..=4 {
        callers.price(&client, &format!("sku-{n}")).await;
    }

    let after = Scrape::fetch(&scraper, &url).await?;
    let health = runtime.health();
    let took = started.elapsed();
    vendor_server.abort();
    metrics_server.abort();
    upkeep.abort();

    let mut checks = Vec::new();
    let mut problems = Vec::new();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    for method in ["price", "product"] {
        let endpoint = health
            .endpoints
            .iter()
            .find(|e| e.contract == CONTRACT && e.method == method);
        let Some(endpoint) = endpoint else {
            problems.push(format!("runtime.health() has no `{CONTRACT}.{method}`"));
            continue;
        };
        let a = &endpoint.attempts;
        let in_health = [
            ("success", a.success),
            ("retryable", a.retryable),
            ("vendor_fault", a.vendor_fault),
            ("permanent", a.permanent),
            ("ignored", a.ignored),
            ("timeout", a.timeout),
        ];
        let mut reached = 0;
        for (outcome, in_health) in in_health {
            let labels = [
                ("contract", CONTRACT),
                ("method", method),
                ("outcome", outcome),
            ];
            if !after.has("seawall_attempts_total", &labels) {
                problems.push(format!(
                    "no seawall_attempts_total line for {method}, outcome {outcome}"
                ));
            }
            let answered = ANSWERS.iter().find(|(_, o)| *o == outcome);
            let seen = answered.map_or(0, |(answer, _)| catalog.answered(method, answer));
            reached += seen;
            checks.push(Check {
                what: format!(
                    "seawall_attempts_total{{method=\"{method}\",outcome=\"{outcome}\"}}"
                ),
                counted: delta("seawall_attempts_total", &labels),
                expected: vec![("catalog", seen as f64), ("health", in_health as f64)],
            });
        }
        let c = &endpoint.calls;
        let in_health = [
            ("ok", c.ok),
            ("error", c.error),
            ("stale", c.stale),
            ("rejected", c.rejected),
            ("cancelled", c.cancelled),
            ("panicked", c.panicked),
        ];
        for (outcome, in_health) in in_health {
            let labels = [
                ("contract", CONTRACT),
                ("method", method),
                ("outcome", outcome),
            ];
            // Only a method with a breaker can have calls turned away, and
            // only one with a cache can answer stale.
            let registered = match outcome {
                "rejected" => method == "price",
                "stale" => method == "product",
                _ => true,
            };
            if after.has("seawall_calls_total", &labels) != registered {
                problems.push(format!(
                    "seawall_calls_total for {method}, outcome {outcome}: expected {}",
                    if registered { "a line" } else { "no line" }
                ));
            }
            checks.push(Check {
                what: format!("seawall_calls_total{{method=\"{method}\",outcome=\"{outcome}\"}}"),
                counted: delta("seawall_calls_total", &labels),
                expected: vec![
                    ("callers", callers.saw(method, outcome) as f64),
                    ("health", in_health as f64),
                ],
            });
        }
        let labels = [("contract", CONTRACT), ("method", method)];
        checks.push(Check {
            what: format!("seawall_call_duration_seconds_count{{method=\"{method}\"}}"),
            counted: delta("seawall_call_duration_seconds_count", &labels),
            expected: vec![
                ("catalog", reached as f64),
                ("health", endpoint.latency.count as f64),
            ],
        });
        if method == "product" {
            checks.push(Check {
                what: "seawall_cache_stale_total{method=\"product\"}".into(),
                counted: delta("seawall_cache_stale_total", &labels),
                expected: vec![
                    ("callers", callers.stale as f64),
                    ("health", endpoint.stale_serves as f64),
                ],
            });
            checks.push(Check {
                what: "seawall_cache_misses_total{method=\"product\"}".into(),
                counted: delta("seawall_cache_misses_total", &labels),
                expected: vec![
                    ("callers", callers.failed_products as f64),
                    ("health", endpoint.cache_misses as f64),
                ],
            });
        }
    }
    let breaker = [("breaker", PRICE_BREAKER)];
    if after.has("seawall_breaker_state", &breaker) {
        checks.push(Check {
            what: format!("seawall_breaker_state{{breaker=\"{PRICE_BREAKER}\"}}"),
            counted: after.value("seawall_breaker_state", &breaker),
            expected: vec![("closed", 0.0)],
        });
    } else {
        problems.push(format!(
            "no seawall_breaker_state line for {PRICE_BREAKER}, which opened and closed"
        ));
    }
    for (name, kind) in [
        ("seawall_calls_total", "counter"),
        ("seawall_attempts_total", "counter"),
        ("seawall_call_duration_seconds", "histogram"),
    ] {
        if !after.text.contains(&format!("# TYPE {name} {kind}")) {
            problems.push(format!("{name} is not exposed as a {kind}"));
        }
    }
    // The scenario must produce every outcome it says it shows.
    for (series, method, outcome) in [
        ("seawall_attempts_total", "price", "success"),
        ("seawall_attempts_total", "price", "permanent"),
        ("seawall_attempts_total", "price", "vendor_fault"),
        ("seawall_attempts_total", "price", "timeout"),
        ("seawall_attempts_total", "price", "retryable"),
        ("seawall_attempts_total", "product", "retryable"),
        ("seawall_calls_total", "price", "ok"),
        ("seawall_calls_total", "price", "error"),
        ("seawall_calls_total", "price", "rejected"),
        ("seawall_calls_total", "product", "stale"),
    ] {
        let labels = [
            ("contract", CONTRACT),
            ("method", method),
            ("outcome", outcome),
        ];
        if delta(series, &labels) == 0.0 {
            problems.push(format!(
                "the scenario produced no `{outcome}` in {series} for {method}"
            ));
        }
    }
    if callers.stale == 0 || callers.failed_products != 1 {
        problems.push(format!(
            "expected stale product pages and one with no cached answer; got {} stale, {} failed",
            callers.stale, callers.failed_products
        ));
    }
    let breaker_now = runtime.breaker(PRICE_BREAKER).map(|b| b.state());
    if breaker_now != Some(BreakerState::Closed) {
        problems.push(format!(
            "the price breaker ended {breaker_now:?}; expected closed"
        ));
    }

    Ok(Report {
        url,
        lines: after.seawall_lines(),
        checks,
        problems,
        took,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let report = run().await?;
    println!("scraped {} (catalog contract only):", report.url);
    for line in &report.lines {
        println!("  {line}");
    }
    println!();
    println!("what the scrape counted during the run, against what happened:");
    for check in &report.checks {
        let expected: Vec<String> = check
            .expected
            .iter()
            .map(|(source, n)| format!("{source} {n}"))
            .collect();
        println!(
            "  {:<5} {:<61} {:>3}  ({})",
            if check.holds() { "ok" } else { "WRONG" },
            check.what,
            check.counted,
            expected.join(", ")
        );
    }
    let failures = report.failures();
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|f| format!("\n  - {f}")).collect();
        return Err(format!("the metrics did not show what happened:{}", list.concat()).into());
    }
    println!(
        "every count held ({} ms): the scrape showed each outcome, the latency histogram, the \
         cache and the breaker",
        report.took.as_millis()
    );
    Ok(())
}
