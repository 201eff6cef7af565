//! A status page for operators (feature `dashboard`): an axum [`Router`] the
//! application mounts where it likes, serving what the runtime knows.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a self-contained HTML page (inline CSS and script, no external asset): every contract method with its calls, error rates, p50/p95/p99 and a chart of the last minutes; breakers with their rates and `retry_in`; queues, dead letters, quarantine, rate limiters, bulkheads; recent alerts. Updated live. |
//! | `GET /status.json` | the same data as JSON ([`Status`]) |
//! | `GET /health.json` | [`Runtime::health`] alone, as `seawall status URL` (the command-line tool) reads it |
//! | `GET /events` | server-sent events: one [`Status`] a sample (every second), the first with the whole history, the next ones with the newest sample only |
//! | `POST /actions/breakers/{name}/hold` | holds a breaker open for `{"seconds": n}` ([`Breaker::force_open_for`](crate::Breaker::force_open_for)) |
//! | `POST /actions/breakers/{name}/reset` | closes a breaker ([`Breaker::reset`](crate::Breaker::reset)) |
//! | `POST /actions/dead-letters/{ticket}/retry` | queues a dead letter again ([`Runtime::retry_dead_letter`]) |
//! | `POST /actions/dead-letters/{ticket}/purge` | forgets a dead letter for good |
//!
//! **Why a history of its own.** [`Runtime::health`] holds counts since the
//! runtime started; a page needs "now" and "the last minutes". The
//! dashboard samples the health once a second and keeps the differences for
//! ten minutes (a bounded ring, a few kilobytes per endpoint), so the chart
//! and the per-second rates cost the call path nothing.
//!
//! **Why actions are off by default.** Holding a breaker open stops a
//! vendor's traffic; purging a dead letter drops a write for good. Only the
//! application knows who may do that, so the action routes answer
//! `403 Forbidden` until it gives a hook ([`Dashboard::authorize`]) that
//! reads the request's head (a session cookie, a header set by an
//! authenticating proxy) and says yes or no; the page hides its buttons
//! meanwhile. Every action, refused or done, is logged on the
//! `seawall::dashboard` target. Actions take a JSON body
//! (`Content-Type: application/json`, which a cross-site form cannot send),
//! so a page elsewhere cannot make a logged-in browser press them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use seawall_core::{Runtime, dashboard::Dashboard};
//!
//! let runtime = Runtime::in_memory();
//! // Read-only: actions answer 403.
//! let status: axum::Router = seawall_core::dashboard::router(&runtime);
//! // With operator actions for requests an authenticating proxy let through.
//! let operators: axum::Router = Dashboard::new(&runtime)
//!     .authorize(|request| request.headers.contains_key("x-authenticated-operator"))
//!     .router();
//! let app: axum::Router = axum::Router::new()
//!     .nest("/seawall", operators)
//!     .nest("/status", status);
//! # let _ = app;
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::breaker::BreakerMetrics;
use crate::telemetry::{Health, Readiness};
use crate::wal::Ticket;
use crate::{Event, Runtime, StoreError};

/// The page, with its CSS and script inline.
const PAGE: &str = include_str!("page.html");

/// How many alerts the page keeps, newest first.
const ALERTS: usize = 100;

/// How many dead letters the page lists, oldest first.
const DEAD_LETTERS: usize = 50;

/// The longest hold an operator may ask for: a day.
const LONGEST_HOLD: Duration = Duration::from_secs(86_400);

/// The largest action body read.
const ACTION_BODY: usize = 4096;

type Authorize = dyn Fn(&Parts) -> bool + Send + Sync;

/// The status page of `runtime`, read-only: the action routes answer
/// `403 Forbidden` (see [`Dashboard::authorize`] to turn them on).
///
/// Sampling starts at once when called inside a tokio runtime, else with
/// the first request.
pub fn router(runtime: &Runtime) -> Router {
    Dashboard::new(runtime).router()
}

/// The status page's settings; [`router`](Self::router) builds it.
#[must_use = "a Dashboard does nothing until its router is mounted"]
pub struct Dashboard {
    runtime: Runtime,
    authorize: Option<Box<Authorize>>,
    sample_every: Duration,
    keep: Duration,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("actions", &self.authorize.is_some())
            .field("sample_every", &self.sample_every)
            .field("keep", &self.keep)
            .finish()
    }
}

impl Dashboard {
    /// The status page of `runtime`: sampled every second, ten minutes of
    /// history, no operator actions.
    pub fn new(runtime: &Runtime) -> Self {
        Self {
            runtime: runtime.clone(),
            authorize: None,
            sample_every: Duration::from_secs(1),
            keep: Duration::from_secs(600),
        }
    }

    /// Turns the operator actions on for the requests `hook` approves. It
    /// sees the request's head (method, URI with the action's path,
    /// headers, extensions such as an authenticated user an outer layer put
    /// there) and answers whether this request may act. Requests it refuses
    /// get `403 Forbidden`, logged with the action.
    pub fn authorize(mut self, hook: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Box::new(hook));
        self
    }

    /// How often the health is sampled for the chart and the live updates
    /// (one second unless set; at least 10 ms).
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(10));
        self
    }

    /// How much history the chart keeps (ten minutes unless set; at most
    /// 3 600 samples).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// The router: `/`, `/status.json`, `/events` and `/actions/...`. Mount
    /// it with `Router::nest` (or serve it alone). Cheap to clone; the
    /// sampling stops once every clone and every open event stream are
    /// dropped.
    pub fn router(self) -> Router {
        let samples = (self.keep.as_millis() / self.sample_every.as_millis().max(1)).clamp(1, 3600);
        let (updates, _) = tokio::sync::watch::channel(0u64);
        let inner = Arc::new(Inner {
            runtime: self.runtime,
            authorize: self.authorize,
            every: self.sample_every,
            capacity: samples as usize,
            history: Mutex::new(History::default()),
            alerts: Mutex::new(VecDeque::new()),
            updates,
            sampling: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        inner.runtime.subscribe(move |event| {
            if let Some(inner) = weak.upgrade()
                && let Some(alert) = Alert::of(event)
            {
                inner.alert(alert);
            }
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            inner.start_sampling();
        }
        Router::new()
            .route("/", get(page))
            .route("/status.json", get(status_json))
            .route("/health.json", get(health_json))
            .route("/events", get(events))
            .route("/actions/breakers/{name}/hold", post(hold_breaker))
            .route("/actions/breakers/{name}/reset", post(reset_breaker))
            .route(
                "/actions/dead-letters/{ticket}/retry",
                post(retry_dead_letter),
            )
            .route(
                "/actions/dead-letters/{ticket}/purge",
                post(purge_dead_letter),
            )
            .with_state(inner)
    }
}

struct Inner {
    runtime: Runtime,
    authorize: Option<Box<Authorize>>,
    every: Duration,
    capacity: usize,
    history: Mutex<History>,
    alerts: Mutex<VecDeque<Alert>>,
    /// The number of the newest sample: event streams wait for it to move.
    updates: tokio::sync::watch::Sender<u64>,
    sampling: AtomicBool,
}

/// Locks a dashboard's own state. Off the call path: only the sampler,
/// requests to the page and event hooks (state changes) take these locks,
/// each for a copy or a push.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn start_sampling(self: &Arc<Self>) {
        if self.sampling.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = self.every;
        tokio::spawn(sample(weak, every));
    }

    fn alert(&self, alert: Alert) {
        let mut alerts = lock(&self.alerts);
        alerts.push_front(alert);
        alerts.truncate(ALERTS);
    }

    /// Sends the event streams the status now (after an action), without a
    /// sample out of cadence: the history stays one sample per period.
    fn notify(&self) {
        self.updates.send_modify(|_| {});
    }

    fn sample(&self) {
        let health = self.runtime.health();
        let sample = lock(&self.history).record(&health, now_ms(), self.capacity);
        self.updates.send_replace(sample);
    }

    /// The status now: the whole history, or only the newest sample.
    async fn status(&self, whole_history: bool) -> Status {
        let health = self.runtime.health();
        let readiness = health.readiness();
        let breakers = self
            .runtime
            .breakers()
            .iter()
            .map(|breaker| BreakerStatus {
                retry_in_ms: breaker.retry_in().map(|d| d.as_millis() as u64),
                metrics: breaker.metrics(),
            })
            .collect();
        let wal = self.runtime.write_ahead_log();
        let dead_letters = match wal.dead_letters(DEAD_LETTERS).await {
            Ok(letters) => Ok(letters
                .into_iter()
                .map(|(ticket, letter)| DeadLetterStatus {
                    ticket: ticket.0,
                    contract: letter.write.contract,
                    method: letter.write.method,
                    error: letter.error,
                    at_ms: letter.at_ms,
                    enqueued_at_ms: letter.write.enqueued_at_ms,
                })
                .collect()),
            Err(error) => Err(error.to_string()),
        };
        let (dead_letters, dead_letters_error) = match dead_letters {
            Ok(letters) => (letters, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let history = {
            let history = lock(&self.history);
            let skip = if whole_history {
                0
            } else {
                history.samples.len().saturating_sub(1)
            };
            HistoryStatus {
                every_ms: self.every.as_millis() as u64,
                samples: history.samples.iter().skip(skip).cloned().collect(),
            }
        };
        Status {
            at_ms: now_ms(),
            actions: self.authorize.is_some(),
            readiness,
            health,
            breakers,
            dead_letters,
            dead_letters_error,
            history,
            alerts: lock(&self.alerts).iter().cloned().collect(),
        }
    }
}

async fn sample(weak: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.sample();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the page shows, as `/status.json` serves it and `/events` streams
/// it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether operator actions are on (an authorisation hook was given).
    pub actions: bool,
    /// [`Runtime::readiness`], as of now: whether seawall's own state is
    /// usable, and what is degraded but handled.
    pub readiness: Readiness,
    /// [`Runtime::health`], as of now.
    pub health: Health,
    /// Every breaker, with its window's rates.
    pub breakers: Vec<BreakerStatus>,
    /// The oldest dead letters (at most 50).
    pub dead_letters: Vec<DeadLetterStatus>,
    /// Why the dead letters could not be read, if they could not.
    pub dead_letters_error: Option<String>,
    /// Calls and failures per sample, per endpoint.
    pub history: HistoryStatus,
    /// Recent alerts, newest first (at most 100).
    pub alerts: Vec<Alert>,
}

/// A breaker's state and rates.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct BreakerStatus {
    /// Its name, state, counts and rates.
    #[serde(flatten)]
    pub metrics: BreakerMetrics,
    /// For an open breaker, how long until it lets a probe through, in
    /// milliseconds.
    pub retry_in_ms: Option<u64>,
}

/// A dead letter, without its arguments (they may be redacted or
/// sealed).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DeadLetterStatus {
    /// Its ticket, for the actions.
    pub ticket: u64,
    /// The contract.
    pub contract: String,
    /// The method.
    pub method: String,
    /// Why the vendor refused it.
    pub error: String,
    /// When it was refused, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
}

/// The samples kept for the chart.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HistoryStatus {
    /// The time between samples, in milliseconds.
    pub every_ms: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// What happened between one sample of the health and the one before.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// Its number, counting from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Each endpoint called since the runtime started.
    pub endpoints: Vec<Point>,
}

/// One endpoint's calls in one sample.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Point {
    /// `contract.method`.
    pub endpoint: String,
    /// Calls that ended.
    pub calls: u64,
    /// Calls that ended in an error for their caller (errors, rejections
    /// by an open breaker, panics).
    pub failed: u64,
    /// Attempts that reached the vendor.
    pub attempts: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
}

#[derive(Default)]
struct History {
    seq: u64,
    /// The totals at the last sample, by endpoint.
    last: Vec<(String, [u64; 4])>,
    samples: VecDeque<Sample>,
}

impl History {
    /// Records the difference since the last sample; its number.
    fn record(&mut self, health: &Health, at_ms: u64, capacity: usize) -> u64 {
        let mut endpoints = Vec::new();
        let mut last = Vec::with_capacity(health.endpoints.len());
        for endpoint in health.endpoints.iter().filter(|e| e.called) {
            let name = format!("{}.{}", endpoint.contract, endpoint.method);
            let attempts = &endpoint.attempts;
            let totals = [
                endpoint.calls.total,
                endpoint.calls.error + endpoint.calls.rejected + endpoint.calls.panicked,
                attempts.total,
                attempts.retryable + attempts.vendor_fault + attempts.permanent + attempts.timeout,
            ];
            let before = self
                .last
                .iter()
                .find(|(n, _)| *n == name)
                .map_or([0; 4], |(_, totals)| *totals);
            let delta = |i: usize| totals[i].saturating_sub(before[i]);
            endpoints.push(Point {
                endpoint: name.clone(),
                calls: delta(0),
                failed: delta(1),
                attempts: delta(2),
                failed_attempts: delta(3),
            });
            last.push((name, totals));
        }
        self.last = last;
        self.seq += 1;
        self.samples.push_back(Sample {
            seq: self.seq,
            at_ms,
            endpoints,
        });
        while self.samples.len() > capacity {
            self.samples.pop_front();
        }
        self.seq
    }
}

/// Something an operator should see: a breaker's transition, an error
/// rate's jump, a dead letter, a store, fleet or database changing, an
/// operator's action.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Alert {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `breaker`, `breaker_rate`, `error_rate`, `dead_letter`, `store`,
    /// `fleet`, `postgres` or `operator`.
    pub kind: &'static str,
    /// What it is about: a breaker, an endpoint, a contract.
    pub subject: String,
    /// What happened.
    pub message: String,
}

impl Alert {
    fn new(kind: &'static str, subject: impl Into<String>, message: String) -> Self {
        Self {
            at_ms: now_ms(),
            kind,
            subject: subject.into(),
            message,
        }
    }

    fn of(event: &Event) -> Option<Self> {
        Some(match event {
            Event::Breaker(t) => Alert::new(
                "breaker",
                &*t.breaker,
                match &t.opened_by {
                    Some(by) => format!(
                        "{} -> {}: {} of {} calls failed",
                        t.from, t.to, by.failures, by.calls
                    ),
                    None => format!("{} -> {}", t.from, t.to),
                },
            ),
            Event::BreakerRate(r) => Alert::new(
                "breaker_rate",
                &*r.breaker,
                format!(
                    "would have opened: {:.0} % failed, {:.0} % slow",
                    r.failure_rate * 100.0,
                    r.slow_rate * 100.0
                ),
            ),
            Event::ErrorRateChanged(c) => Alert::new(
                "error_rate",
                format!("{}.{}", c.contract, c.method),
                format!(
                    "error rate {:.1} % (baseline {:.1} %) over {} calls",
                    c.rate * 100.0,
                    c.baseline * 100.0,
                    c.calls
                ),
            ),
            Event::DeadLetter(d) => Alert::new(
                "dead_letter",
                format!("{}.{}", d.contract, d.method),
                format!("ticket {}: {}", d.ticket.0, d.error),
            ),
            Event::Store(s) => Alert::new(
                "store",
                s.path.display().to_string(),
                format!(
                    "{}: {}",
                    if s.degraded { "degraded" } else { "recovered" },
                    s.detail
                ),
            ),
            Event::Fleet(f) => Alert::new(
                "fleet",
                "redis",
                format!(
                    "{}: {}",
                    if f.available {
                        "available"
                    } else {
                        "unavailable"
                    },
                    f.detail
                ),
            ),
            Event::Postgres(p) => Alert::new(
                "postgres",
                "postgres",
                format!(
                    "{}: {}",
                    if p.available {
                        "available"
                    } else {
                        "unavailable"
                    },
                    p.detail
                ),
            ),
            Event::OverridesRefused(m) => Alert::new(
                "overrides",
                m.method.clone(),
                format!(
                    "{} override(s) refused, the compiled policy applies: {}",
                    m.errors.len(),
                    m.errors.first().map(|e| e.message.as_str()).unwrap_or("")
                ),
            ),
            Event::OverridesReloaded(r) if r.applied => Alert::new(
                "overrides",
                "reload",
                format!("reloaded; {} method(s) changed", r.changed.len()),
            ),
            Event::OverridesReloaded(r) => Alert::new(
                "overrides",
                "reload",
                format!(
                    "reload refused, nothing changed: {}",
                    r.errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            _ => return None,
        })
    }
}

async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    // Everything is inline: nothing else may load, and no one may frame it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn status_json(State(inner): State<Arc<Inner>>) -> Response {
    inner.start_sampling();
    let mut response = axum::Json(inner.status(true).await).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn health_json(State(inner): State<Arc<Inner>>) -> Response {
    let mut response = axum::Json(inner.runtime.health()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn events(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    inner.start_sampling();
    let updates = inner.updates.subscribe();
    let stream = futures_util::stream::unfold(
        (inner, updates, true),
        |(inner, mut updates, first)| async move {
            if !first {
                // The dashboard (its sender) is gone: end the stream.
                updates.changed().await.ok()?;
            }
            updates.mark_unchanged();
            let status = inner.status(first).await;
            let event = SseEvent::default()
                .event("status")
                .json_data(&status)
                .unwrap_or_else(|error| SseEvent::default().event("error").data(error.to_string()));
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (inner, updates, false),
            ))
        },
    );
    ([(header::CACHE_CONTROL, "no-store")], Sse::new(stream))
}

/// What an action answers.
#[derive(Serialize)]
struct Answer {
    ok: bool,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<u64>,
}

fn answer(status: StatusCode, message: String) -> Response {
    reply(status, message, None)
}

fn reply(status: StatusCode, message: String, ticket: Option<u64>) -> Response {
    let ok = status.is_success();
    (
        status,
        axum::Json(Answer {
            ok,
            message,
            ticket,
        }),
    )
        .into_response()
}

/// Why an action was not done: its status and message.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.0, self.1)
    }
}

/// An action's request, once allowed: its JSON body (an object), or the
/// answer that refuses it.
async fn allowed<T: for<'de> Deserialize<'de>>(
    inner: &Inner,
    action: &str,
    subject: &str,
    request: Request,
) -> Result<T, Refusal> {
    let (parts, body) = request.into_parts();
    let Some(authorize) = &inner.authorize else {
        tracing::warn!(target: "seawall::dashboard", action, subject, "refused: operator actions are off (no authorisation hook)");
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "operator actions are off: the application gave no authorisation hook".into(),
        ));
    };
    if !authorize(&parts) {
        tracing::warn!(target: "seawall::dashboard", action, subject, "refused by the authorisation hook");
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "refused by the authorisation hook".into(),
        ));
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions take a JSON body (Content-Type: application/json)".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, ACTION_BODY)
        .await
        .map_err(|error| Refusal(StatusCode::BAD_REQUEST, format!("the body: {error}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| Refusal(StatusCode::BAD_REQUEST, format!("the body: {error}")))
}

#[derive(Deserialize)]
struct Hold {
    seconds: u64,
}

#[derive(Deserialize)]
struct Empty {}

async fn hold_breaker(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let hold: Hold = match allowed(&inner, "hold", &name, request).await {
        Ok(hold) => hold,
        Err(refused) => return refused.into_response(),
    };
    let seconds = Duration::from_secs(hold.seconds);
    if seconds.is_zero() || seconds > LONGEST_HOLD {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("a hold lasts 1 to {} seconds", LONGEST_HOLD.as_secs()),
        );
    }
    let Some(breaker) = inner.runtime.breaker(&name) else {
        return answer(StatusCode::NOT_FOUND, format!("no breaker named {name:?}"));
    };
    breaker.force_open_for(seconds);
    tracing::info!(target: "seawall::dashboard", action = "hold", breaker = %name, seconds = hold.seconds, "an operator held a breaker open");
    let message = format!("held open for {} s", hold.seconds);
    inner.alert(Alert::new("operator", name, message.clone()));
    inner.notify();
    answer(StatusCode::OK, message)
}

async fn reset_breaker(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = allowed::<Empty>(&inner, "reset", &name, request).await {
        return refused.into_response();
    }
    let Some(breaker) = inner.runtime.breaker(&name) else {
        return answer(StatusCode::NOT_FOUND, format!("no breaker named {name:?}"));
    };
    breaker.reset();
    tracing::info!(target: "seawall::dashboard", action = "reset", breaker = %name, "an operator reset a breaker");
    let message = "reset: closed, with an empty window".to_string();
    inner.alert(Alert::new("operator", name, message.clone()));
    inner.notify();
    answer(StatusCode::OK, message)
}

fn ticket_of(ticket: &str) -> Result<Ticket, Refusal> {
    ticket.parse().map(Ticket).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("{ticket:?} is not a ticket"),
        )
    })
}

fn store_failed(action: &str, ticket: Ticket, error: &StoreError) -> Response {
    tracing::error!(target: "seawall::dashboard", action, ticket = ticket.0, %error, "an operator's action failed");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the write-ahead log: {error}"),
    )
}

async fn retry_dead_letter(
    State(inner): State<Arc<Inner>>,
    Path(ticket): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = allowed::<Empty>(&inner, "retry", &ticket, request).await {
        return refused.into_response();
    }
    let ticket = match ticket_of(&ticket) {
        Ok(ticket) => ticket,
        Err(refused) => return refused.into_response(),
    };
    match inner.runtime.retry_dead_letter(ticket).await {
        Ok(Some(queued)) => {
            tracing::info!(target: "seawall::dashboard", action = "retry", ticket = ticket.0, queued = queued.0, "an operator queued a dead letter again");
            let message = format!("queued again as ticket {}", queued.0);
            inner.alert(Alert::new(
                "operator",
                format!("ticket {}", ticket.0),
                message.clone(),
            ));
            inner.notify();
            reply(StatusCode::OK, message, Some(queued.0))
        }
        Ok(None) => answer(
            StatusCode::NOT_FOUND,
            format!("ticket {} is not a dead letter", ticket.0),
        ),
        Err(error) => store_failed("retry", ticket, &error),
    }
}

async fn purge_dead_letter(
    State(inner): State<Arc<Inner>>,
    Path(ticket): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = allowed::<Empty>(&inner, "purge", &ticket, request).await {
        return refused.into_response();
    }
    let ticket = match ticket_of(&ticket) {
        Ok(ticket) => ticket,
        Err(refused) => return refused.into_response(),
    };
    let wal = inner.runtime.write_ahead_log();
    let removed = match wal.dead_letter(ticket).await {
        Ok(Some(letter)) => wal.remove_dead(ticket, &letter.write.contract).await,
        Ok(None) => Ok(false),
        Err(error) => Err(error),
    };
    match removed {
        Ok(true) => {
            tracing::info!(target: "seawall::dashboard", action = "purge", ticket = ticket.0, "an operator purged a dead letter");
            let message = "purged: the write is forgotten".to_string();
            inner.alert(Alert::new(
                "operator",
                format!("ticket {}", ticket.0),
                message.clone(),
            ));
            inner.notify();
            answer(StatusCode::OK, message)
        }
        Ok(false) => answer(
            StatusCode::NOT_FOUND,
            format!("ticket {} is not a dead letter", ticket.0),
        ),
        Err(error) => store_failed("purge", ticket, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_differences_and_stays_bounded() {
        let runtime = Runtime::in_memory();
        let mut history = History::default();
        for at in 0..10 {
            history.record(&runtime.health(), at, 4);
        }
        assert_eq!(history.samples.len(), 4);
        assert_eq!(history.samples.front().map(|s| s.seq), Some(7));
        assert_eq!(history.samples.back().map(|s| s.seq), Some(10));
    }
}
