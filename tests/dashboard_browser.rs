//! The status page in a real browser: headless Chromium (Debian's
//! `chromium`), driven over the DevTools protocol, shows a breaker go from
//! closed to open and back during a scripted outage of a loopback vendor,
//! as its server-sent events arrive (the page is loaded once).
//!
//! Without Chromium the test says that it skipped, and passes; in CI
//! (`CI=true`) it fails instead. `SEAWALL_CHROMIUM` names another binary.
//! The screenshot taken during the outage is written to the target
//! directory, and to `docs/dashboard.png` with
//! `SEAWALL_UPDATE_SCREENSHOT=1` (the README shows it).

#![cfg(feature = "dashboard")]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use seawall::dashboard::Dashboard;
use seawall::{Delivery, Resilient, Runtime, contract};
use serde_json::{Value, json};
use support::VendorError;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[contract(name = "pricing")]
trait Pricing {
    #[integration(
        read,
        timeout = "1s",
        breaker(window = 10, min_calls = 4, open_for = "1s")
    )]
    async fn quote(&self, sku: &str) -> Result<String, VendorError>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn add_note(&self, sku: &str, note: &str) -> Result<Delivery<()>, VendorError>;
}

/// The adapter: plain HTTP to the loopback vendor.
struct Adapter {
    base: String,
    client: reqwest::Client,
}

impl Pricing for Adapter {
    async fn quote(&self, sku: &str) -> Result<String, VendorError> {
        let response = self
            .client
            .get(format!("{}/quote/{sku}", self.base))
            .send()
            .await
            .map_err(|_| VendorError::status(503))?;
        if !response.status().is_success() {
            return Err(VendorError::Status(response.status()));
        }
        Ok(response.text().await.unwrap_or_default())
    }

    async fn add_note(&self, sku: &str, note: &str) -> Result<Delivery<()>, VendorError> {
        let response = self
            .client
            .post(format!("{}/notes/{sku}", self.base))
            .body(note.to_owned())
            .send()
            .await
            .map_err(|_| VendorError::status(503))?;
        if !response.status().is_success() {
            return Err(VendorError::Status(response.status()));
        }
        Ok(Delivery::Done(()))
    }
}

/// A vendor on 127.0.0.1: 503 to everything while `down`, 422 to notes
/// that say "refuse".
async fn vendor(down: Arc<AtomicBool>) -> String {
    async fn quote(State(down): State<Arc<AtomicBool>>) -> (StatusCode, &'static str) {
        if down.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, "down")
        } else {
            (StatusCode::OK, "42")
        }
    }
    async fn note(State(down): State<Arc<AtomicBool>>, body: String) -> StatusCode {
        if down.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else if body.contains("refuse") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        }
    }
    let app = axum::Router::new()
        .route("/quote/{sku}", get(quote))
        .route("/notes/{sku}", post(note))
        .with_state(down);
    serve(app).await
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The Chromium binary, if there is one.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEAWALL_CHROMIUM") {
        return Some(path.into());
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// The Chromium binary; `None` (having said so) where there is none and
/// this is not CI, which fails instead.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let binary = chromium();
    if binary.is_none() {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("Chromium is missing (/usr/bin/chromium): CI installs Debian's `chromium`");
        }
        eprintln!(
            "SKIPPED {test}: no Chromium (install Debian's `chromium`, or set SEAWALL_CHROMIUM)"
        );
    }
    binary
}

/// A headless Chromium, killed when dropped.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Browser {
    /// Starts Chromium on `url`, with DevTools on a port it picks.
    async fn open(binary: &PathBuf, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1400,1350",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{} does not start: {error}", binary.display()));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().unwrap().parse::<u16>().unwrap();
                }
            }
            panic!("Chromium ended without opening DevTools");
        })
        .await
        .expect("Chromium opens DevTools within 60 s");
        // Keep reading its log, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// The DevTools connection of the page showing `url`.
    async fn page(&self, url: &str) -> Page {
        let list = format!("http://127.0.0.1:{}/json/list", self.port);
        for _ in 0..100 {
            let targets: Vec<Value> = reqwest::get(&list).await.unwrap().json().await.unwrap();
            if let Some(ws) = targets
                .iter()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                let (socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
                return Page { socket, id: 0 };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no page showing {url} in {list}");
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One page's DevTools connection: commands and their answers (events
/// are skipped).
struct Page {
    socket: Socket,
    id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        while let Some(message) = self.socket.next().await {
            let Message::Text(text) = message.unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
        panic!("DevTools closed during {method}");
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }

    /// The state the page shows for `breaker` (`null` before it shows the
    /// breaker).
    async fn breaker_state(&mut self, breaker: &str) -> Option<String> {
        let expression = format!(
            "(() => {{ const row = [...document.querySelectorAll('#breakers tr')]
                 .find((r) => r.dataset.breaker === {breaker:?});
               return row ? row.querySelector('.state').textContent : null; }})()"
        );
        self.eval(&expression).await.as_str().map(str::to_owned)
    }

    /// Polls the page until it shows `breaker` in `state`; every state seen
    /// on the way.
    async fn until_state(&mut self, breaker: &str, state: &str, seen: &mut Vec<String>) {
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(shown) = self.breaker_state(breaker).await {
                if seen.last() != Some(&shown) {
                    seen.push(shown.clone());
                }
                if shown == state {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {breaker} {state}; it showed {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_breaker_open_during_an_outage_and_close_after_it() {
    let Some(binary) =
        chromium_or_skip("the_page_shows_a_breaker_open_during_an_outage_and_close_after_it")
    else {
        return;
    };

    let down = Arc::new(AtomicBool::new(false));
    let vendor = vendor(down.clone()).await;
    let runtime = Runtime::in_memory();
    let pricing = Arc::new(Resilient::new(
        Adapter {
            base: vendor,
            client: reqwest::Client::new(),
        },
        &runtime,
    ));
    // Operators allowed (from this test only), so the page shows its buttons.
    let page = Dashboard::new(&runtime)
        .sample_every(Duration::from_millis(200))
        .authorize(|_| true)
        .router();
    let base = serve(axum::Router::new().nest("/seawall", page)).await;
    let url = format!("{base}/seawall");

    // A dead letter, for the page to list.
    down.store(true, Ordering::SeqCst);
    let note = pricing.add_note("sku-1", "please refuse").await.unwrap();
    down.store(false, Ordering::SeqCst);
    if let Delivery::Queued(ticket) = note {
        runtime.write_ahead_log().settled(ticket).await.unwrap();
    }
    // Traffic: a quote every 50 ms, whatever happens.
    let caller = pricing.clone();
    let traffic = tokio::spawn(async move {
        loop {
            let _ = caller.quote("sku-1").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let browser = Browser::open(&binary, &url).await;
    let mut page = browser.page(&url).await;
    let mut seen = Vec::new();
    page.until_state("pricing.quote", "closed", &mut seen).await;
    assert_eq!(
        page.eval("document.getElementById('live').textContent")
            .await,
        "live"
    );
    // Some healthy traffic on the chart before the outage (the screenshot).
    tokio::time::sleep(Duration::from_secs(3)).await;

    down.store(true, Ordering::SeqCst);
    page.until_state("pricing.quote", "open", &mut seen).await;
    // An open breaker is handled, not a reason to fail readiness.
    let ready = page
        .eval("document.getElementById('ready').textContent")
        .await;
    assert_eq!(ready, "ready");
    let degraded = page
        .eval("document.getElementById('degraded').textContent")
        .await;
    assert!(
        degraded
            .as_str()
            .is_some_and(|d| d.contains("pricing.quote")),
        "the open breaker is listed as degraded: {degraded}"
    );
    let failed = page
        .eval(
            "[...document.querySelectorAll('#endpoints tr')]
               .find((r) => r.dataset.endpoint === 'pricing.quote')
               .children[4].textContent",
        )
        .await;
    assert_ne!(failed, "0", "the failed calls of the last minute show");
    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("image data"))
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&target, &png).unwrap();
    if std::env::var_os("SEAWALL_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &png).unwrap();
    }

    down.store(false, Ordering::SeqCst);
    page.until_state("pricing.quote", "closed", &mut seen).await;
    traffic.abort();

    let open = seen.iter().position(|s| s == "open").unwrap();
    assert_eq!(seen.first().map(String::as_str), Some("closed"));
    assert_eq!(seen.last().map(String::as_str), Some("closed"));
    assert!(
        open > 0 && open < seen.len() - 1,
        "closed, open, closed: {seen:?}"
    );
    let loads = page
        .eval("performance.getEntriesByType('navigation').length")
        .await;
    assert_eq!(loads, 1, "one load: the states came by server-sent events");
    eprintln!("the page showed {}", seen.join(" -> "));
}

/// Waits until `check` holds, for up to 10 s.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_buttons_hold_and_reset_a_breaker_only_with_a_hook() {
    let Some(binary) =
        chromium_or_skip("the_pages_buttons_hold_and_reset_a_breaker_only_with_a_hook")
    else {
        return;
    };
    let vendor = vendor(Arc::new(AtomicBool::new(false))).await;
    let runtime = Runtime::in_memory();
    let pricing = Resilient::new(
        Adapter {
            base: vendor,
            client: reqwest::Client::new(),
        },
        &runtime,
    );
    pricing.quote("sku-1").await.unwrap();
    let breaker = runtime.breaker("pricing.quote").unwrap();
    let read_only = seawall::dashboard::router(&runtime);
    let operators = Dashboard::new(&runtime)
        .sample_every(Duration::from_millis(100))
        .authorize(|request| request.uri.path().starts_with("/actions/"))
        .router();
    let base = serve(
        axum::Router::new()
            .nest("/read-only", read_only)
            .nest("/operators", operators),
    )
    .await;

    // Read-only: the breaker shows, no button does.
    let url = format!("{base}/read-only");
    let browser = Browser::open(&binary, &url).await;
    let mut page = browser.page(&url).await;
    page.until_state("pricing.quote", "closed", &mut Vec::new())
        .await;
    assert_eq!(
        page.eval("document.querySelectorAll('button').length")
            .await,
        0
    );
    drop(page);
    drop(browser);

    // With the hook: Hold open, then Reset, pressed on the page.
    let url = format!("{base}/operators");
    let browser = Browser::open(&binary, &url).await;
    let mut page = browser.page(&url).await;
    page.until_state("pricing.quote", "closed", &mut Vec::new())
        .await;
    let press = |label: &str| {
        format!(
            "[...document.querySelectorAll('#breakers tr')]
               .find((r) => r.dataset.breaker === 'pricing.quote')
               .querySelectorAll('button')
               .forEach((b) => {{ if (b.textContent === {label:?}) b.click(); }})"
        )
    };
    page.eval("document.getElementById('hold-seconds').value = '120'")
        .await;
    page.eval(&press("Hold open")).await;
    until("the hold", async || {
        breaker.state() == seawall::BreakerState::Open
    })
    .await;
    let retry_in = breaker.retry_in().expect("held open");
    assert!(
        retry_in > Duration::from_secs(110),
        "held for the seconds typed: {retry_in:?}"
    );
    page.until_state("pricing.quote", "open", &mut Vec::new())
        .await;
    // The page says what the server answered (once its fetch resolves).
    until("the page's notice", async || {
        page.eval("document.getElementById('notice').textContent")
            .await
            == "hold pricing.quote: held open for 120 s"
    })
    .await;

    page.eval(&press("Reset")).await;
    until("the reset", async || {
        breaker.state() == seawall::BreakerState::Closed
    })
    .await;
    page.until_state("pricing.quote", "closed", &mut Vec::new())
        .await;
}
