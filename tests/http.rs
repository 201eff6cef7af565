//! `seawall::http` against a real HTTP server on loopback: the builder's
//! timeout rules, `Retry-After` honoured end to end through a contract,
//! statuses that are never retried, header hooks, how reqwest's own errors
//! classify, and HTTPS to a vendor with a certificate made at test time.
//!
//! These tests run on the real clock (reqwest does real I/O); the waits they
//! measure are the vendor's `Retry-After`, one or two seconds.

#![cfg(feature = "http")]

mod loopback_api;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use loopback_api::ApiError;
use seawall::http::{BuildError, Client, ResponseExt, TimeoutSetting, check};
use seawall::{Classify, Error, ErrorClass, Resilient, Runtime, contract};

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// The contract, its error type and the adapter
// ---------------------------------------------------------------------------

#[contract(name = "api")]
pub trait Api {
    #[integration(
        read,
        timeout = "5s",
        retry(attempts = 3, base = "10ms", cap = "5s", jitter = "none")
    )]
    async fn fetch(&self, path: &str) -> Result<String, ApiError>;
}

struct ApiHttp {
    client: Client,
    base_url: String,
}

impl Api for ApiHttp {
    async fn fetch(&self, path: &str) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base_url);
        let response = self.client.get(url).send().await?;
        Ok(check(response)?.text().await?)
    }
}

fn client() -> Client {
    Client::builder()
        .connect_timeout(SECOND)
        .read_timeout(SECOND * 5)
        .build()
        .expect("a client with both timeouts")
}

fn api(vendor: &FakeVendor, client: Client, runtime: &Runtime) -> Resilient<ApiHttp> {
    let adapter = ApiHttp {
        client,
        base_url: vendor.base_url.clone(),
    };
    Resilient::new(adapter, runtime)
}

// ---------------------------------------------------------------------------
// The fake vendor: a real axum server on 127.0.0.1
// ---------------------------------------------------------------------------

type Reply = dyn Fn(usize) -> Response + Send + Sync;

/// One request, as the vendor saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    x_test: Option<HeaderValue>,
}

struct Shared {
    seen: Mutex<Vec<Seen>>,
    reply: Box<Reply>,
}

struct FakeVendor {
    base_url: String,
    shared: Arc<Shared>,
}

impl FakeVendor {
    /// Starts a vendor that answers request number `n` (from 0) with
    /// `reply(n)`, on any path.
    async fn start(reply: impl Fn(usize) -> Response + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        Self::serve(listener, format!("http://{address}"), reply)
    }

    /// The same vendor over HTTPS, with a self-signed certificate for
    /// `127.0.0.1` made now; the caller trusts the returned certificate.
    #[cfg(any(feature = "http-rustls", feature = "http-native-tls"))]
    async fn start_https(
        reply: impl Fn(usize) -> Response + Send + Sync + 'static,
    ) -> (Self, reqwest::Certificate) {
        let (listener, certificate) = https::TlsListener::bind().await;
        let address = axum::serve::Listener::local_addr(&listener).expect("its address");
        let vendor = Self::serve(listener, format!("https://{address}"), reply);
        (vendor, certificate)
    }

    fn serve<L>(
        listener: L,
        base_url: String,
        reply: impl Fn(usize) -> Response + Send + Sync + 'static,
    ) -> Self
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            reply: Box::new(reply),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, shared }
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The time between the first two requests, at the vendor.
    fn first_gap(&self) -> Duration {
        let seen = self.seen();
        assert!(seen.len() >= 2, "only {} request(s)", seen.len());
        seen[1].at - seen[0].at
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let n = {
        let mut seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.push(Seen {
            at: Instant::now(),
            x_test: headers.get("x-test").cloned(),
        });
        seen.len() - 1
    };
    (shared.reply)(n)
}

fn ok() -> Response {
    "ok".into_response()
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code)
        .expect("a valid status")
        .into_response()
}

fn status_retry_after(code: u16, retry_after: &str) -> Response {
    let mut response = status(code);
    response.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from_str(retry_after).expect("a valid header value"),
    );
    response
}

/// A port nothing listens on: bound, read, released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address").port()
}

// ---------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------

#[test]
fn the_builder_refuses_a_client_without_a_connect_timeout() {
    let error = Client::builder().build().unwrap_err();
    assert!(
        matches!(error, BuildError::MissingConnectTimeout),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("no connect timeout"), "{message}");
    assert!(message.contains(".connect_timeout(..)"), "{message}");
    assert!(message.contains("library default"), "{message}");

    // A read and a total timeout do not make up for it.
    let error = Client::builder()
        .read_timeout(SECOND)
        .timeout(SECOND)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, BuildError::MissingConnectTimeout),
        "{error}"
    );
}

#[test]
fn the_builder_refuses_a_client_without_a_read_or_total_timeout() {
    let error = Client::builder()
        .connect_timeout(SECOND)
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::MissingReadTimeout), "{error}");
    let message = error.to_string();
    assert!(message.contains("no read or total timeout"), "{message}");
    assert!(
        message.contains(".read_timeout(..) or .timeout(..)"),
        "{message}"
    );

    // A timeout set through `configure` is reqwest's, not a declared one.
    let error = Client::builder()
        .connect_timeout(SECOND)
        .configure(|b| b.read_timeout(SECOND))
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::MissingReadTimeout), "{error}");
}

#[test]
fn the_builder_refuses_zero_timeouts() {
    let cases = [
        (
            Client::builder()
                .connect_timeout(Duration::ZERO)
                .read_timeout(SECOND),
            TimeoutSetting::Connect,
            "connect timeout is zero",
            ".connect_timeout(..)",
        ),
        (
            Client::builder()
                .connect_timeout(SECOND)
                .read_timeout(Duration::ZERO),
            TimeoutSetting::Read,
            "read timeout is zero",
            ".read_timeout(..)",
        ),
        (
            Client::builder()
                .connect_timeout(SECOND)
                .read_timeout(SECOND)
                .timeout(Duration::ZERO),
            TimeoutSetting::Total,
            "total timeout is zero",
            ".timeout(..)",
        ),
    ];
    for (builder, setting, says, method) in cases {
        let error = builder.build().unwrap_err();
        assert!(
            matches!(error, BuildError::ZeroTimeout(s) if s == setting),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains(says), "{message}");
        assert!(message.contains(method), "{message}");
    }
}

#[test]
fn the_builder_accepts_connect_with_read_or_total() {
    Client::builder()
        .connect_timeout(SECOND)
        .read_timeout(SECOND * 10)
        .build()
        .expect("connect + read");
    Client::builder()
        .connect_timeout(SECOND)
        .timeout(SECOND * 30)
        .build()
        .expect("connect + total");
    Client::builder()
        .connect_timeout(SECOND)
        .read_timeout(SECOND * 10)
        .timeout(SECOND * 30)
        .build()
        .expect("all three");
}

#[tokio::test]
async fn configure_cannot_loosen_the_declared_timeouts() {
    let vendor = FakeVendor::start(|_| ok()).await;
    // A vendor that accepts the request and never answers in time.
    let slow = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await });

    let client = Client::builder()
        .connect_timeout(SECOND)
        .timeout(Duration::from_millis(200))
        .configure(|b| b.timeout(Duration::from_secs(3600)))
        .build()
        .unwrap();
    // The client works ...
    let answer = client.get(&vendor.base_url).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "ok");
    // ... and gives up after its declared 200 ms, not the closure's hour.
    let start = Instant::now();
    let error = client
        .get(format!("http://{address}/"))
        .send()
        .await
        .unwrap_err();
    assert!(start.elapsed() < SECOND * 5, "{:?}", start.elapsed());
    assert!(error.is_timeout(), "{error}");
    assert_eq!(error.class(), ErrorClass::Retryable);
}

// ---------------------------------------------------------------------------
// Retry-After, through a contract
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_503_with_retry_after_is_retried_no_sooner_than_asked() {
    let vendor = FakeVendor::start(|n| match n {
        0 => status_retry_after(503, "1"),
        _ => ok(),
    })
    .await;
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client(), &runtime);

    assert_eq!(api.fetch("/accounts/42").await.unwrap(), "ok");
    assert_eq!(vendor.seen().len(), 2);
    let gap = vendor.first_gap();
    // The policy's own backoff would have been 10 ms.
    assert!(gap >= SECOND, "the retry came {gap:?} after the 503");
}

#[tokio::test]
async fn a_429_with_an_http_date_is_retried_no_sooner_than_the_date() {
    let vendor = FakeVendor::start(|n| match n {
        // The date is formatted to the whole second, so the wait it asks
        // for, seen from the moment of this answer, is between 1 and 2 s.
        0 => status_retry_after(
            429,
            &httpdate::fmt_http_date(SystemTime::now() + SECOND * 2),
        ),
        _ => ok(),
    })
    .await;
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client(), &runtime);

    assert_eq!(api.fetch("/accounts/42").await.unwrap(), "ok");
    assert_eq!(vendor.seen().len(), 2);
    let gap = vendor.first_gap();
    assert!(gap >= SECOND, "the retry came {gap:?} after the 429");
}

#[tokio::test]
async fn a_retry_after_past_the_backoff_cap_ends_the_call_at_once() {
    let vendor = FakeVendor::start(|_| status_retry_after(503, "120")).await;
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client(), &runtime);

    let start = Instant::now();
    let result = api.fetch("/accounts/42").await;
    let elapsed = start.elapsed();
    let Err(ApiError::Seawall(Error::RetryAfter {
        retry_after,
        attempts,
        last,
    })) = &result
    else {
        panic!("expected Error::RetryAfter, got {result:?}");
    };
    assert_eq!(*retry_after, SECOND * 120);
    assert_eq!(*attempts, 1);
    let last = last
        .downcast_ref::<ApiError>()
        .expect("the adapter's error");
    assert!(
        matches!(last, ApiError::Http(e) if e.status == StatusCode::SERVICE_UNAVAILABLE),
        "{last:?}"
    );
    assert!(elapsed < SECOND, "took {elapsed:?}");
    assert_eq!(vendor.seen().len(), 1);
    // The caller learns when the vendor takes calls again.
    assert_eq!(
        result.unwrap_err().retry_after(),
        Some(SECOND * 120),
        "Classify::retry_after of the caller's error"
    );
}

#[tokio::test]
async fn retry_after_is_read_only_from_429_and_503() {
    // A 502 is retryable, but its Retry-After is not the vendor asking to
    // wait: the policy's 10 ms backoff applies.
    let vendor = FakeVendor::start(|n| match n {
        0 => status_retry_after(502, "120"),
        _ => ok(),
    })
    .await;
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client(), &runtime);

    assert_eq!(api.fetch("/").await.unwrap(), "ok");
    assert_eq!(vendor.seen().len(), 2);
    assert!(vendor.first_gap() < SECOND, "{:?}", vendor.first_gap());
}

// ---------------------------------------------------------------------------
// Statuses that are never retried
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_400_or_a_401_is_never_retried() {
    for code in [400, 401] {
        let vendor = FakeVendor::start(move |_| status(code)).await;
        let runtime = Runtime::in_memory();
        let api = api(&vendor, client(), &runtime);

        let result = api.fetch("/accounts/42?api_key=s3cret").await;
        let Err(ApiError::Http(error)) = &result else {
            panic!("{code}: expected the vendor's answer, got {result:?}");
        };
        assert_eq!(error.status.as_u16(), code);
        assert_eq!(error.retry_after, None);
        assert_eq!(error.class(), ErrorClass::Permanent);
        // The URL is kept without its query string, which may hold secrets.
        let url = error.url.as_deref().expect("the URL that answered");
        assert_eq!(url, format!("{}/accounts/42", vendor.base_url));
        assert_eq!(vendor.seen().len(), 1, "{code} must not be retried");
    }
}

// ---------------------------------------------------------------------------
// Header hooks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn header_hooks_run_on_every_request() {
    let vendor = FakeVendor::start(|n| match n {
        0 | 1 => status(503),
        _ => ok(),
    })
    .await;
    let hooks_run = Arc::new(AtomicUsize::new(0));
    let counter = hooks_run.clone();
    let client = Client::builder()
        .connect_timeout(SECOND)
        .read_timeout(SECOND * 5)
        .header_hook(|headers| {
            headers.insert("x-test", HeaderValue::from_static("1"));
        })
        .header_hook(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client.clone(), &runtime);

    assert_eq!(api.fetch("/").await.unwrap(), "ok");
    // And on a request made outside the contract, through a clone.
    let direct = client.post(&vendor.base_url).send().await.unwrap();
    assert!(direct.error_for_vendor().is_ok());

    let seen = vendor.seen();
    assert_eq!(seen.len(), 4);
    for (n, request) in seen.iter().enumerate() {
        assert_eq!(
            request.x_test.as_ref().map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "request {n}"
        );
    }
    assert_eq!(hooks_run.load(Ordering::Relaxed), 4);
}

// ---------------------------------------------------------------------------
// How reqwest's errors classify
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let error = client().get(&url).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Retryable);

    // Through a contract: retried until the attempts run out.
    let runtime = Runtime::in_memory();
    let api = Resilient::new(
        ApiHttp {
            client: client(),
            base_url: url,
        },
        &runtime,
    );
    let result = api.fetch("accounts/42").await;
    let Err(ApiError::Seawall(Error::RetriesExhausted {
        attempts, class, ..
    })) = &result
    else {
        panic!("expected exhausted retries, got {result:?}");
    };
    assert_eq!((*attempts, *class), (3, ErrorClass::Retryable));
}

#[tokio::test]
async fn a_body_cut_off_is_retryable_and_a_body_that_does_not_decode_is_permanent() {
    // A vendor that promises 100 bytes, sends 5 and hangs up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let cutter = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let mut read = 0;
        // Read the request head (bounded: one small GET).
        while read < request.len() && !request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut request[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
            .unwrap();
    });
    let response = client()
        .get(format!("http://{address}/"))
        .send()
        .await
        .unwrap();
    let error = response.text().await.unwrap_err();
    cutter.join().unwrap();
    assert!(error.is_decode(), "reqwest reports it as {error:?}");
    assert_eq!(error.class(), ErrorClass::Retryable, "{error:?}");

    // A complete body that is not what the adapter expects.
    let vendor = FakeVendor::start(|_| "not json".into_response()).await;
    let response = client().get(&vendor.base_url).send().await.unwrap();
    let error = response.json::<Vec<u32>>().await.unwrap_err();
    assert!(error.is_decode(), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent, "{error:?}");

    // A JSON answer that decodes, for contrast.
    let vendor = FakeVendor::start(|_| Json(vec![1, 2, 3]).into_response()).await;
    let response = client().get(&vendor.base_url).send().await.unwrap();
    assert_eq!(response.json::<Vec<u32>>().await.unwrap(), [1, 2, 3]);
}

#[tokio::test]
async fn an_error_for_status_classifies_as_its_status() {
    let vendor = FakeVendor::start(|n| match n {
        0 => status(503),
        1 => status(500),
        _ => status(404),
    })
    .await;
    let client = client();
    let mut classes = Vec::new();
    for _ in 0..3 {
        let response = client.get(&vendor.base_url).send().await.unwrap();
        let error = response.error_for_status().unwrap_err();
        classes.push(error.class());
    }
    assert_eq!(
        classes,
        [
            ErrorClass::Retryable,
            ErrorClass::VendorFault,
            ErrorClass::Permanent
        ]
    );
}

// ---------------------------------------------------------------------------
// HTTPS: a loopback vendor with a certificate made at test time
// ---------------------------------------------------------------------------

/// A TLS listener for axum: rustls over a loopback TCP listener, with a
/// self-signed certificate for `127.0.0.1` generated by rcgen.
#[cfg(any(feature = "http-rustls", feature = "http-native-tls"))]
mod https {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::server::TlsStream;

    pub struct TlsListener {
        tcp: TcpListener,
        acceptor: TlsAcceptor,
    }

    impl TlsListener {
        /// Binds 127.0.0.1 and makes the certificate, which it returns for
        /// the client to trust.
        pub async fn bind() -> (Self, reqwest::Certificate) {
            let made = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned()])
                .expect("a self-signed certificate");
            let certificate = made.cert.der().clone();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
            let config =
                ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("rustls's default versions")
                    .with_no_client_auth()
                    .with_single_cert(vec![certificate.clone()], key)
                    .expect("the certificate and its key");
            let tcp = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let trusted = reqwest::Certificate::from_der(&certificate).expect("a DER certificate");
            let acceptor = TlsAcceptor::from(Arc::new(config));
            (Self { tcp, acceptor }, trusted)
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            // A connection whose handshake fails (a client that does not
            // trust the certificate) is dropped; the next one is served.
            loop {
                let Ok((tcp, address)) = self.tcp.accept().await else {
                    continue;
                };
                if let Ok(tls) = self.acceptor.accept(tcp).await {
                    return (tls, address);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }
}

/// A contract call to an `https://` vendor succeeds, with the client
/// trusting the vendor's certificate through reqwest's
/// `add_root_certificate`, on the TLS backend `backend` picks.
#[cfg(any(feature = "http-rustls", feature = "http-native-tls"))]
async fn a_contract_calls_an_https_vendor(
    backend: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) {
    let (vendor, certificate) = FakeVendor::start_https(|n| match n {
        0 => status(503),
        _ => ok(),
    })
    .await;
    assert!(vendor.base_url.starts_with("https://127.0.0.1:"));
    let client = Client::builder()
        .connect_timeout(SECOND * 5)
        .read_timeout(SECOND * 5)
        .configure(|b| backend(b).add_root_certificate(certificate))
        .build()
        .expect("a client with TLS");
    let runtime = Runtime::in_memory();
    let api = api(&vendor, client.clone(), &runtime);

    // Retried once over TLS (the 503), then answered.
    assert_eq!(api.fetch("/accounts/42").await.unwrap(), "ok");
    assert_eq!(vendor.seen().len(), 2);
    // And outside the contract, on the same client.
    let response = client.get(&vendor.base_url).send().await.unwrap();
    assert_eq!(response.url().scheme(), "https");
    assert_eq!(
        response.error_for_vendor().unwrap().text().await.unwrap(),
        "ok"
    );
    assert_eq!(vendor.seen().len(), 3);
}

#[cfg(feature = "http-rustls")]
#[tokio::test]
async fn https_through_a_contract_with_rustls() {
    a_contract_calls_an_https_vendor(reqwest::ClientBuilder::tls_backend_rustls).await;
}

#[cfg(feature = "http-native-tls")]
#[tokio::test]
async fn https_through_a_contract_with_native_tls() {
    a_contract_calls_an_https_vendor(reqwest::ClientBuilder::tls_backend_native).await;
}
