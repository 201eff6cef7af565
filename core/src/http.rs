//! HTTP for adapters: a [`reqwest`] client that cannot be built without
//! explicit timeouts, and the glue that turns a vendor's answer into
//! something the retry loop and the circuit breaker understand.
//!
//! # Why a client of its own
//!
//! "Never use default timeouts", says the rule this project started from: a
//! library's default is a decision nobody made, and reqwest's default is no
//! timeout at all. A vendor that accepts the connection and never answers
//! then holds the request, its pooled connection and its caller for as long
//! as the operating system lets it. A contract's per-attempt `timeout` bounds
//! every call made through [`Resilient`](crate::Resilient), but the client is
//! also used outside contracts, and a connect timeout tells what the
//! per-attempt timeout cannot: that the request never reached the vendor.
//! So [`ClientBuilder::build`] refuses a client without a connect timeout, or
//! without a read or a total timeout, and says which one is missing.
//!
//! # Reading the vendor's answer
//!
//! reqwest returns `Ok` for every status. [`check`] (or
//! [`ResponseExt::error_for_vendor`]) passes a success through and turns any
//! other status into a [`ResponseError`], which classifies by its status
//! (`503` retryable, `500` a vendor fault, `404` permanent: see
//! [`Classify`]) and carries the vendor's `Retry-After` for `429` and `503`
//! answers. The retry loop honours it: never another attempt sooner, and
//! when the vendor asks for longer than the policy's backoff `cap`, the call
//! ends at once with [`Error::RetryAfter`](crate::Error::RetryAfter).
//!
//! reqwest's own errors implement [`Classify`] too:
//!
//! | `reqwest::Error` | class | why |
//! |---|---|---|
//! | carries a status (`error_for_status`) | the status's class | as [`ResponseError`] |
//! | an `https://` URL in a build without TLS ([`TlsMissing`]) | `Permanent` | the next attempt has no TLS either |
//! | connect error (refused, DNS, connect timeout) | `Retryable` | the request never reached the vendor |
//! | timeout (connect, read or total) | `Retryable` | another attempt may be answered in time |
//! | builder error (bad URL, bad header, bad scheme) | `Permanent` | the request is wrong; it will be wrong again |
//! | redirect error (too many redirects, a loop) | `Permanent` | the next attempt follows the same redirects |
//! | decode error (a body that is not what was expected) | `Permanent` | the same bytes will not decode next time |
//! | decode error while the body was still arriving (connection reset) | `Retryable` | a transport failure, not a bad body |
//! | other request or body errors (connection reset mid-request) | `Retryable` | a transport failure |
//! | anything else (a failed protocol upgrade) | `Permanent` | |
//!
//! # TLS
//!
//! Every real vendor is `https://`, so the client has TLS out of the box:
//! the `http-rustls` feature, on by default, is reqwest's `rustls` (rustls
//! with the aws-lc-rs crypto provider, and the platform's trust roots
//! through rustls-platform-verifier). `http-native-tls` uses the platform's
//! TLS library instead (OpenSSL on Linux) through native-tls.
//!
//! `http` alone has no TLS. Such a client refuses a request to an
//! `https://` URL without sending anything: the `reqwest::Error` that
//! [`send`](reqwest::RequestBuilder::send) returns has a [`TlsMissing`] as
//! its source, which names the features to enable, and it classifies as
//! `Permanent`: not retried, and not a failure of the vendor's breaker.
//! seawall decides by its own features; a TLS feature the application turns
//! on for its own reqwest dependency is not seen, so choose TLS through
//! seawall's features. (Not caught: a redirect from `http://` to `https://`
//! in such a build, which reqwest reports as a connect error for the first
//! URL, retryable.)
//!
//! # Redirects, pools and proxies stay reqwest's
//!
//! Redirects, TLS settings (extra root certificates, client certificates),
//! connection pools, proxies and default headers are reqwest's, set through
//! [`ClientBuilder::configure`]; by default reqwest follows up to 10
//! redirects.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use seawall_core::http::{BuildError, Client};
//!
//! let client = Client::builder()
//!     .connect_timeout(Duration::from_secs(3))
//!     .read_timeout(Duration::from_secs(10))
//!     .configure(|b| b.user_agent("acme-billing/1.0").pool_max_idle_per_host(8))
//!     .header_hook(|headers| {
//!         headers.insert("x-client", http::HeaderValue::from_static("acme"));
//!     })
//!     .build()?;
//! let request = client.get("http://127.0.0.1:8080/accounts/42").build()?;
//! assert_eq!(request.headers()["x-client"], "acme");
//!
//! // A client without a read or total timeout is refused, and says why.
//! let error = Client::builder().connect_timeout(Duration::from_secs(3)).build().unwrap_err();
//! assert!(matches!(error, BuildError::MissingReadTimeout));
//! assert!(error.to_string().contains(".read_timeout(..) or .timeout(..)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An adapter sends with reqwest, then checks the answer:
//!
//! ```no_run
//! use seawall_core::http::{Client, ResponseError, check};
//!
//! #[derive(Debug, thiserror::Error)]
//! enum CrmError {
//!     #[error(transparent)]
//!     Http(#[from] ResponseError),
//!     #[error(transparent)]
//!     Transport(#[from] reqwest::Error),
//! }
//!
//! async fn account_name(client: &Client, id: &str) -> Result<String, CrmError> {
//!     let response = client.get(format!("http://crm.internal/accounts/{id}")).send().await?;
//!     Ok(check(response)?.text().await?)
//! }
//! ```

use std::fmt;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ::http::header::RETRY_AFTER;
use ::http::{HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::{IntoUrl, RequestBuilder, Url};

use crate::policy::MAX_DURATION;
use crate::{Classify, ErrorClass};

/// Whether this build of seawall has TLS: `http-rustls` or `http-native-tls`.
const TLS: bool = cfg!(any(feature = "http-rustls", feature = "http-native-tls"));

/// A client without TLS was asked for an `https://` URL; nothing was sent.
///
/// It reaches the caller as the source of the `reqwest::Error` that
/// [`send`](reqwest::RequestBuilder::send) returns (found by walking
/// [`source`](std::error::Error::source)), and that error classifies as
/// [`ErrorClass::Permanent`]: another attempt would have no TLS either, and
/// the vendor did nothing wrong, so its breaker does not count it.
///
/// It happens only in a build of seawall with the `http` feature and
/// neither `http-rustls` (a default) nor `http-native-tls`.
///
/// ```
/// use seawall_core::{Classify, ErrorClass, http::TlsMissing};
///
/// let refused = TlsMissing::default();
/// assert_eq!(refused.class(), ErrorClass::Permanent);
/// assert!(refused.to_string().contains("`http-rustls`"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error(
    "this build of seawall has no TLS, so the https:// request was not sent: enable seawall's \
     `http-rustls` feature (rustls, a default feature) or `http-native-tls` (the platform's TLS \
     library), e.g. `seawall = {{ version = \"0.1\", features = [\"http-rustls\"] }}`"
)]
#[non_exhaustive]
pub struct TlsMissing;

impl Classify for TlsMissing {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    fn error_type(&self) -> Option<&'static str> {
        Some("tls_missing")
    }
}

/// Whether a client with TLS or without it (`tls`) must refuse `url`:
/// only a client without TLS, and only for `https://`.
fn refuses(url: &Url, tls: bool) -> bool {
    !tls && url.scheme() == "https"
}

/// Whether `error` is, or was caused by, a [`TlsMissing`].
fn tls_missing(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(inner) = source {
        if inner.is::<TlsMissing>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// The connector of the client that a client without TLS hands its
/// `https://` requests to: it fails every connection with [`TlsMissing`]
/// before any DNS lookup or socket.
#[derive(Clone, Copy, Debug)]
struct RefuseTls;

impl<S> tower_layer::Layer<S> for RefuseTls {
    type Service = RefuseTlsService<S>;

    fn layer(&self, _inner: S) -> Self::Service {
        RefuseTlsService(PhantomData)
    }
}

/// [`RefuseTls`]'s service. It keeps the type of the connector it replaces
/// only to answer with the same connection type (which reqwest does not
/// name in public).
struct RefuseTlsService<S>(PhantomData<fn() -> S>);

impl<S> Clone for RefuseTlsService<S> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> tower_service::Service<R> for RefuseTlsService<S>
where
    S: tower_service::Service<R>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Ready<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: R) -> Self::Future {
        ready(Err(Box::new(TlsMissing)))
    }
}

/// A function that adds headers to every request a [`Client`] builds.
type HeaderHook = Arc<dyn Fn(&mut HeaderMap) + Send + Sync>;

/// One of the three timeouts a [`ClientBuilder`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutSetting {
    /// [`ClientBuilder::connect_timeout`].
    Connect,
    /// [`ClientBuilder::read_timeout`].
    Read,
    /// [`ClientBuilder::timeout`].
    Total,
}

impl TimeoutSetting {
    /// The builder method that sets it, as a reader would type it.
    pub const fn method(self) -> &'static str {
        match self {
            Self::Connect => ".connect_timeout(..)",
            Self::Read => ".read_timeout(..)",
            Self::Total => ".timeout(..)",
        }
    }
}

impl fmt::Display for TimeoutSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect timeout",
            Self::Read => "read timeout",
            Self::Total => "total timeout",
        })
    }
}

/// Why [`ClientBuilder::build`] refused to build a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No connect timeout was set.
    #[error(
        "no connect timeout: set one with .connect_timeout(..) — seawall never relies on a \
         library default (reqwest's is none: a vendor that never accepts the connection holds \
         the request until the operating system gives up)"
    )]
    MissingConnectTimeout,
    /// Neither a read timeout nor a total timeout was set.
    #[error(
        "no read or total timeout: set one with .read_timeout(..) or .timeout(..) — seawall never \
         relies on a library default (reqwest's is none: a vendor that accepts the connection and \
         never answers holds the request for ever)"
    )]
    MissingReadTimeout,
    /// A timeout of zero, which would fail every request at once.
    #[error("the {0} is zero: every request would fail at once; give {method} a positive duration", method = .0.method())]
    ZeroTimeout(TimeoutSetting),
    /// A timeout longer than [`MAX_DURATION`].
    #[error("the {0} is longer than seawall's limit of {MAX_DURATION:?}; shorten it with {method}", method = .0.method())]
    TimeoutTooLong(TimeoutSetting),
    /// reqwest could not build its client (for example a TLS backend that
    /// failed to load its roots).
    #[error("the HTTP client could not be built: {0}")]
    Reqwest(#[from] reqwest::Error),
}

/// Builds a [`Client`]; see [`Client::builder`].
///
/// Every setting reqwest offers is reachable through
/// [`configure`](Self::configure); the timeouts are set here, because
/// [`build`](Self::build) checks them.
///
/// TLS comes from seawall's features: `http-rustls` (a default) or
/// `http-native-tls`. Built with `http` alone, the client refuses
/// `https://` URLs with [`TlsMissing`], a permanent error that names those
/// features (see [`build`](Self::build)).
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct ClientBuilder {
    inner: reqwest::ClientBuilder,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    hooks: Vec<HeaderHook>,
    correlation_header: Option<http::HeaderName>,
    /// Whether the client has TLS: the build's, or `false` in seawall's
    /// own tests of a client without it.
    tls: bool,
}

impl ClientBuilder {
    fn new() -> Self {
        Self {
            inner: reqwest::Client::builder(),
            connect_timeout: None,
            read_timeout: None,
            timeout: None,
            hooks: Vec::new(),
            correlation_header: None,
            tls: TLS,
        }
    }

    /// A client that behaves as one of a build without TLS, whatever the
    /// features: for the tests of that behaviour.
    #[cfg(test)]
    fn without_tls(mut self) -> Self {
        self.tls = false;
        self
    }

    /// Also sends the call's correlation id (32 hex digits) in this header,
    /// such as `X-Correlation-ID`, for vendors that log their own rather
    /// than `traceparent` (which is always sent). A name that is not a
    /// valid header name is ignored.
    pub fn correlation_header(mut self, name: &str) -> Self {
        self.correlation_header = http::HeaderName::from_bytes(name.as_bytes()).ok();
        self
    }

    /// How long to wait for a connection to the vendor (TCP, and TLS when
    /// the build has it). Required.
    ///
    /// A few seconds suits most APIs: a vendor that cannot accept a
    /// connection in that time is down or unreachable, and the request
    /// never reached it, so another attempt is safe.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long to wait for each read from the connection, from the
    /// response's headers to each chunk of its body; the clock restarts
    /// after every successful read. This or [`timeout`](Self::timeout) is
    /// required.
    ///
    /// It catches a stalled connection without limiting how long a large
    /// body may take to arrive; a vendor trickling bytes keeps it from ever
    /// firing, which the contract's per-attempt `timeout` (or a total
    /// timeout here) bounds.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// The limit of a whole request, from connecting to the end of the
    /// response's body. This or [`read_timeout`](Self::read_timeout) is
    /// required.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets anything else reqwest offers: TLS, proxies, connection pools,
    /// redirects, default headers, a user agent.
    ///
    /// The closure runs at once on the underlying `reqwest::ClientBuilder`.
    /// The timeouts set on this builder are applied after every closure, so
    /// a closure cannot replace or remove them; timeouts a closure sets
    /// itself are not counted by [`build`](Self::build)'s checks.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let client = seawall_core::http::Client::builder()
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .timeout(Duration::from_secs(30))
    ///     .configure(|b| b.redirect(reqwest::redirect::Policy::none()))
    ///     .build()?;
    /// # Ok::<(), seawall_core::http::BuildError>(())
    /// ```
    pub fn configure(
        mut self,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Self {
        self.inner = configure(self.inner);
        self
    }

    /// Calls `hook` on the headers of every request the client builds, so
    /// a header can be derived from the context of the call: an
    /// `Idempotency-Key`, a `traceparent` read from a task-local.
    ///
    /// Hooks run in the order they were added, each on the same map, when
    /// the request builder is created ([`Client::get`],
    /// [`Client::request`], …), not when it is sent; a request built inside
    /// an adapter's method is built again for every attempt, so every
    /// attempt runs the hooks. The map starts empty; the caller can still
    /// change its headers on the returned builder. Keep hooks short: they
    /// run on the caller's task.
    pub fn header_hook(mut self, hook: impl Fn(&mut HeaderMap) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Builds the client.
    ///
    /// With the `http-rustls` feature (a default) or `http-native-tls`, the
    /// client speaks TLS to `https://` URLs. With `http` alone it has none,
    /// and refuses them: a request to an `https://` URL fails when sent,
    /// before anything leaves the process, with a `reqwest::Error` whose
    /// source is [`TlsMissing`] (naming the features to enable) and which
    /// classifies as [`ErrorClass::Permanent`], so it is neither retried nor
    /// counted by the breaker. See [TLS](self#tls).
    ///
    /// # Errors
    ///
    /// [`BuildError::MissingConnectTimeout`] without a connect timeout;
    /// [`BuildError::MissingReadTimeout`] without either a read or a total
    /// timeout; [`BuildError::ZeroTimeout`] or
    /// [`BuildError::TimeoutTooLong`] for a timeout of zero or longer than
    /// [`MAX_DURATION`]; [`BuildError::Reqwest`] when reqwest cannot build
    /// its client.
    pub fn build(self) -> Result<Client, BuildError> {
        let settings = [
            (TimeoutSetting::Connect, self.connect_timeout),
            (TimeoutSetting::Read, self.read_timeout),
            (TimeoutSetting::Total, self.timeout),
        ];
        for (setting, timeout) in settings {
            match timeout {
                Some(timeout) if timeout.is_zero() => {
                    return Err(BuildError::ZeroTimeout(setting));
                }
                Some(timeout) if timeout > MAX_DURATION => {
                    return Err(BuildError::TimeoutTooLong(setting));
                }
                _ => {}
            }
        }
        let Some(connect_timeout) = self.connect_timeout else {
            return Err(BuildError::MissingConnectTimeout);
        };
        if self.read_timeout.is_none() && self.timeout.is_none() {
            return Err(BuildError::MissingReadTimeout);
        }
        let mut inner = self.inner.connect_timeout(connect_timeout);
        if let Some(read_timeout) = self.read_timeout {
            inner = inner.read_timeout(read_timeout);
        }
        if let Some(timeout) = self.timeout {
            inner = inner.timeout(timeout);
        }
        // Without TLS, `https://` requests go to a client whose connector
        // refuses them with `TlsMissing`: reqwest's own refusal is a connect
        // error, which would be retried and counted by the breaker, and
        // would not say that TLS is what is missing.
        let refuse_https = if self.tls {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .connector_layer(RefuseTls)
                    .build()?,
            )
        };
        Ok(Client {
            inner: inner.build()?,
            hooks: self.hooks.into(),
            correlation_header: self.correlation_header,
            refuse_https,
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("timeout", &self.timeout)
            .field("header_hooks", &self.hooks.len())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A reqwest client with explicit timeouts and header hooks.
///
/// Cheap to clone: clones share the connection pool and the hooks. Requests
/// are plain `reqwest::RequestBuilder`s, sent as usual; check the answer
/// with [`check`]. In a build without TLS (`http` without `http-rustls` or
/// `http-native-tls`), requests to `https://` URLs fail with
/// [`TlsMissing`] (see [`ClientBuilder::build`]).
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    hooks: Arc<[HeaderHook]>,
    correlation_header: Option<http::HeaderName>,
    /// Without TLS: the client that `https://` requests are handed to,
    /// whose connector refuses them with [`TlsMissing`].
    refuse_https: Option<reqwest::Client>,
}

impl Client {
    /// Starts a builder. [`build`](ClientBuilder::build) requires a connect
    /// timeout, and a read or a total timeout. Without a TLS feature the
    /// client it builds refuses `https://` URLs ([`TlsMissing`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A request with `method` to `url`, with every header hook applied,
    /// the correlation id as a W3C `traceparent` (and in the
    /// [`correlation_header`](ClientBuilder::correlation_header), if set)
    /// inside a seawall call or [correlation
    /// scope](crate::telemetry::correlation_scope), and, inside an attempt of
    /// an `idempotent` call, the call's idempotency key in the contract's
    /// idempotency header (`Idempotency-Key` by default).
    ///
    /// Inside a seawall call, the request's method is recorded on the
    /// attempt's span (`http.request.method`). No header is ever logged:
    /// `Authorization`, cookies and API keys stay out of seawall's spans and
    /// events.
    ///
    /// A `url` that does not parse is reported by reqwest when the request
    /// is sent (a builder error, classified permanent), and so is an
    /// `https://` URL in a build without TLS ([`TlsMissing`], permanent).
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("http.request.method", method.as_str());
        }
        let mut builder = self.inner.request(method, url);
        if let Some(refuse_https) = &self.refuse_https {
            builder = refuse_https_with(builder, refuse_https);
        }
        let key = crate::idempotency::current_header();
        let correlation = crate::telemetry::current_correlation();
        if self.hooks.is_empty() && key.is_none() && correlation.is_none() {
            return builder;
        }
        let mut headers = HeaderMap::new();
        if let Some(id) = correlation {
            if let Ok(value) = http::HeaderValue::from_str(&id.traceparent()) {
                headers.insert(http::HeaderName::from_static("traceparent"), value);
            }
            if let Some(name) = &self.correlation_header
                && let Ok(value) = http::HeaderValue::from_str(&id.to_string())
            {
                headers.insert(name.clone(), value);
            }
        }
        if let Some((name, key)) = key
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(key.as_str()),
            )
        {
            headers.insert(name, value);
        }
        for hook in self.hooks.iter() {
            hook(&mut headers);
        }
        builder.headers(headers)
    }

    /// A `GET` request; see [`request`](Self::request).
    pub fn get<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request; see [`request`](Self::request).
    pub fn post<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request; see [`request`](Self::request).
    pub fn put<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request; see [`request`](Self::request).
    pub fn patch<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request; see [`request`](Self::request).
    pub fn delete<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request; see [`request`](Self::request).
    pub fn head<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// The underlying reqwest client. Requests built with it directly run
    /// no header hooks, and in a build without TLS an `https://` request
    /// built with it fails as reqwest says (a connect error, which
    /// [`Classify`] still classes permanent).
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }
}

/// Hands `builder`'s request to `refuse_https` when its URL is `https://`.
/// Only clients without TLS call it, so the copy it makes to read the URL
/// costs nothing in a build with TLS.
fn refuse_https_with(builder: RequestBuilder, refuse_https: &reqwest::Client) -> RequestBuilder {
    // A fresh builder has no body, so it clones unless its URL did not
    // parse; that one keeps its error, which reqwest reports when sent.
    let Some(Ok(request)) = builder.try_clone().map(RequestBuilder::build) else {
        return builder;
    };
    if refuses(request.url(), false) {
        // Said where the request is made too, for logs that print only the
        // top of an error chain (reqwest's "error sending request").
        tracing::warn!(
            target: "seawall::http",
            url = %redacted(request.url()),
            "{TlsMissing}"
        );
        RequestBuilder::from_parts(refuse_https.clone(), request)
    } else {
        builder
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("inner", &self.inner)
            .field("header_hooks", &self.hooks.len())
            .field("tls", &self.refuse_https.is_none())
            .finish()
    }
}

/// The vendor answered with a status that is not a success.
///
/// It classifies as its status does ([`Classify`] for
/// [`StatusCode`]) and hands the retry loop the vendor's `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use seawall_core::{Classify, ErrorClass, http::ResponseError};
///
/// let error = ResponseError::new(http::StatusCode::SERVICE_UNAVAILABLE)
///     .with_retry_after(Duration::from_secs(2));
/// assert_eq!(error.to_string(), "vendor answered 503 Service Unavailable (retry after 2s)");
/// assert_eq!(error.class(), ErrorClass::Retryable);
/// assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseError {
    /// The status the vendor answered with.
    pub status: StatusCode,
    /// The vendor's `Retry-After`, parsed (only ever read from `429` and
    /// `503` answers by [`check`]).
    pub retry_after: Option<Duration>,
    /// The URL that answered (after redirects), without its query string,
    /// fragment or credentials, which may hold secrets such as API keys.
    pub url: Option<String>,
}

impl ResponseError {
    /// An error for `status`, with no `Retry-After` and no URL.
    pub const fn new(status: StatusCode) -> Self {
        Self {
            status,
            retry_after: None,
            url: None,
        }
    }

    /// The vendor's `Retry-After`.
    pub const fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The URL that answered.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vendor answered {}", self.status)?;
        if let Some(retry_after) = self.retry_after {
            // Rounded up to the millisecond: `1.734s`, not `1.733871229s`.
            let millis = u64::try_from(retry_after.as_nanos().div_ceil(1_000_000));
            let rounded = Duration::from_millis(millis.unwrap_or(u64::MAX));
            write!(f, " (retry after {rounded:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResponseError {}

impl Classify for ResponseError {
    fn class(&self) -> ErrorClass {
        self.status.class()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The status code: `"503"`.
    fn error_type(&self) -> Option<&'static str> {
        self.status.error_type()
    }
}

/// Passes a successful response through; turns any other status into a
/// [`ResponseError`].
///
/// Inside a seawall call, it records the response on the attempt's span, as
/// OpenTelemetry's HTTP client conventions name it:
/// `http.response.status_code`, `server.address` and `server.port`.
///
/// `Retry-After` is read only from `429 Too Many Requests` and
/// `503 Service Unavailable` answers, the two statuses for which it asks the
/// client to wait (on a redirect it means something else, and other
/// statuses are not retried by default). A value that does not parse is
/// ignored (see [`parse_retry_after`]).
///
/// # Errors
///
/// A [`ResponseError`] for any status outside `200..=299`; the response and
/// its body are dropped.
pub fn check(response: reqwest::Response) -> Result<reqwest::Response, ResponseError> {
    let status = response.status();
    let url = response.url();
    tracing::info!(
        target: "seawall::http",
        outcome = if status.is_success() { "success" } else { "error" },
        "http.response.status_code" = status.as_u16(),
        "server.address" = url.host_str(),
        "server.port" = url.port_or_known_default(),
        "response"
    );
    let span = tracing::Span::current();
    if !span.is_disabled() {
        // Signed: OpenTelemetry's integers are (tracing-opentelemetry
        // exports an unsigned one as a string).
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if let Some(host) = url.host_str() {
            span.record("server.address", host);
        }
        if let Some(port) = url.port_or_known_default() {
            span.record("server.port", i64::from(port));
        }
    }
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| parse_retry_after(value, SystemTime::now())),
        _ => None,
    };
    Err(ResponseError {
        status,
        retry_after,
        url: Some(redacted(response.url())),
    })
}

/// The URL without what may hold secrets.
fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Both fail only for URLs that cannot hold credentials in the first place.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.into()
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::Response {}
}

/// [`check`] as a method of `reqwest::Response`.
///
/// ```no_run
/// use seawall_core::http::{Client, ResponseExt};
///
/// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
/// let body = client.get("http://crm.internal/health").send().await?.error_for_vendor()?.text().await?;
/// # Ok(()) }
/// ```
pub trait ResponseExt: sealed::Sealed + Sized {
    /// See [`check`].
    ///
    /// # Errors
    ///
    /// A [`ResponseError`] for any status outside `200..=299`.
    fn error_for_vendor(self) -> Result<Self, ResponseError>;
}

impl ResponseExt for reqwest::Response {
    fn error_for_vendor(self) -> Result<Self, ResponseError> {
        check(self)
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), as seen at `now`.
///
/// Surrounding whitespace is ignored. A date in the past means "now"
/// (`Duration::ZERO`). A wait longer than [`MAX_DURATION`] (about three
/// years) reads as `MAX_DURATION`, so any instant plus the result stays
/// representable. Anything else (a negative or fractional number, an empty
/// or non-ASCII value, a date in another format) is `None`: the vendor did
/// not say anything the client can act on.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use seawall_core::http::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_478); // 07:27:58
/// let at = |value| parse_retry_after(&HeaderValue::from_static(value), now);
/// assert_eq!(at("120"), Some(Duration::from_secs(120)));
/// assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::from_secs(2)));
/// assert_eq!(at("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
/// assert_eq!(at("soon"), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: a number too large for a u64 is still "a very long
        // wait", not "no answer".
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_DURATION));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_DURATION))
}

/// The table in the [module documentation](self): connect errors and
/// timeouts are retryable, and so are other transport failures; builder and
/// redirect errors, and bodies that do not decode, are permanent; an error
/// with a status classifies as the status; an `https://` request in a build
/// without TLS ([`TlsMissing`]) is permanent.
impl Classify for reqwest::Error {
    fn class(&self) -> ErrorClass {
        if let Some(status) = self.status() {
            return status.class();
        }
        // Before connect errors, which it also is: no attempt can succeed
        // without TLS. Seen either as seawall's refusal, or (a request built
        // with `Client::inner`) as reqwest's connect error for an `https://`
        // URL in a build without TLS. (A redirect from `http://` to
        // `https://` is not caught: reqwest's error carries the first URL.)
        if tls_missing(self)
            || (self.is_connect() && self.url().is_some_and(|url| refuses(url, TLS)))
        {
            return ErrorClass::Permanent;
        }
        // Checked before the kinds below: a timeout while reading a body
        // reaches the caller as a decode error.
        if self.is_timeout() || self.is_connect() {
            return ErrorClass::Retryable;
        }
        if self.is_builder() || self.is_redirect() {
            return ErrorClass::Permanent;
        }
        if self.is_decode() {
            return if body_failed(self) {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            };
        }
        if self.is_request() || self.is_body() {
            return ErrorClass::Retryable;
        }
        ErrorClass::Permanent
    }

    /// The status code if the error has one (`"503"`), else what failed:
    /// `"tls_missing"`, `"timeout"`, `"connect"`, `"builder"`,
    /// `"redirect"`, `"body"` (a body cut off, also while decoding),
    /// `"decode"`, `"request"`.
    fn error_type(&self) -> Option<&'static str> {
        if let Some(status) = self.status() {
            return status.error_type();
        }
        Some(
            if tls_missing(self)
                || (self.is_connect() && self.url().is_some_and(|url| refuses(url, TLS)))
            {
                "tls_missing"
            } else if self.is_timeout() {
                "timeout"
            } else if self.is_connect() {
                "connect"
            } else if self.is_builder() {
                "builder"
            } else if self.is_redirect() {
                "redirect"
            } else if self.is_decode() && !body_failed(self) {
                "decode"
            } else if self.is_body() || self.is_decode() {
                "body"
            } else {
                "request"
            },
        )
    }
}

/// Whether a decode error is really the body failing to arrive: reqwest
/// reports a connection cut while `bytes()`, `text()` or `json()` collect the
/// body as a decode error whose source is a body error.
fn body_failed(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|inner| inner.is_body() || inner.is_request())
        {
            return true;
        }
        source = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// 2015-10-21 07:28:00 GMT.
    fn at_0728() -> SystemTime {
        SystemTime::UNIX_EPOCH + SECOND * 1_445_412_480
    }

    fn parse(value: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(value).unwrap(), now)
    }

    #[test]
    fn retry_after_seconds() {
        let now = at_0728();
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(parse("1", now), Some(SECOND));
        assert_eq!(parse("120", now), Some(SECOND * 120));
        assert_eq!(parse("  7 ", now), Some(SECOND * 7));
        assert_eq!(parse("\t7", now), Some(SECOND * 7));
        assert_eq!(parse("007", now), Some(SECOND * 7));
    }

    #[test]
    fn retry_after_date_in_the_future() {
        let now = at_0728();
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(SECOND * 5)
        );
        // The two obsolete formats HTTP still accepts.
        assert_eq!(
            parse("Wednesday, 21-Oct-15 07:28:05 GMT", now),
            Some(SECOND * 5)
        );
        assert_eq!(parse("Wed Oct 21 07:28:05 2015", now), Some(SECOND * 5));
        // A clock between two seconds.
        let now = now + Duration::from_millis(250);
        assert_eq!(
            parse(" Wed, 21 Oct 2015 07:28:05 GMT ", now),
            Some(Duration::from_millis(4750))
        );
    }

    #[test]
    fn retry_after_date_in_the_past_or_now_is_zero() {
        let now = at_0728();
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_and_negatives_are_ignored() {
        let now = at_0728();
        for value in [
            "",
            "   ",
            "-1",
            "-0",
            "+5",
            "1.5",
            "1e3",
            "5 seconds",
            "soon",
            "0x10",
            "Wed, 21 Oct 2015 07:28:05",
            "2015-10-21T07:28:05Z",
            "Wed, 32 Oct 2015 07:28:05 GMT",
        ] {
            assert_eq!(parse(value, now), None, "{value:?}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(parse_retry_after(&opaque, now), None);
    }

    #[test]
    fn retry_after_huge_values_saturate_at_the_longest_duration() {
        let now = at_0728();
        assert_eq!(parse("18446744073709551615", now), Some(MAX_DURATION));
        assert_eq!(
            parse("99999999999999999999999999999999", now),
            Some(MAX_DURATION)
        );
        assert_eq!(
            parse("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_DURATION)
        );
        let just_under = MAX_DURATION.as_secs().to_string();
        assert_eq!(parse(&just_under, now), Some(MAX_DURATION));
    }

    #[test]
    fn response_errors_read_as_a_person_would_say_them() {
        let plain = ResponseError::new(StatusCode::NOT_FOUND);
        assert_eq!(plain.to_string(), "vendor answered 404 Not Found");
        assert_eq!(plain.class(), ErrorClass::Permanent);
        assert_eq!(Classify::retry_after(&plain), None);
        let throttled = ResponseError::new(StatusCode::TOO_MANY_REQUESTS)
            .with_retry_after(Duration::from_nanos(1_733_871_229));
        assert_eq!(
            throttled.to_string(),
            "vendor answered 429 Too Many Requests (retry after 1.734s)"
        );
        assert_eq!(throttled.class(), ErrorClass::Retryable);
        let broken = ResponseError::new(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(broken.class(), ErrorClass::VendorFault);
    }

    #[test]
    fn urls_lose_their_secrets() {
        let url =
            reqwest::Url::parse("http://user:pw@crm.example/a/b?api_key=s3cret#frag").unwrap();
        assert_eq!(redacted(&url), "http://crm.example/a/b");
    }

    #[test]
    fn the_builder_names_what_is_missing() {
        let err = Client::builder().build().unwrap_err();
        assert!(matches!(err, BuildError::MissingConnectTimeout), "{err}");
        let err = Client::builder()
            .connect_timeout(SECOND)
            .configure(|b| b.timeout(SECOND))
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::MissingReadTimeout), "{err}");
        let err = Client::builder()
            .connect_timeout(SECOND)
            .timeout(MAX_DURATION + SECOND)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::TimeoutTooLong(TimeoutSetting::Total)),
            "{err}"
        );
    }

    /// The whole chain of `error`'s messages, as a reporter prints it.
    fn chain(error: &(dyn std::error::Error + 'static)) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        text
    }

    /// A client with no TLS, in any build: the test hook, or the build's
    /// own client when it has no TLS feature.
    fn client_without_tls() -> Client {
        Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND)
            .without_tls()
            .build()
            .unwrap()
    }

    /// What a refused `https://` request must look like to its caller.
    fn assert_refused_for_tls(error: &reqwest::Error, url: &str) {
        assert_eq!(error.class(), ErrorClass::Permanent, "{error:?}");
        assert!(tls_missing(error), "{error:?}");
        let said = chain(error);
        assert!(said.contains(url), "{said}");
        assert!(said.contains("no TLS"), "{said}");
        assert!(said.contains("`http-rustls`"), "{said}");
        assert!(said.contains("`http-native-tls`"), "{said}");
    }

    #[test]
    fn only_a_client_without_tls_refuses_and_only_https() {
        let https = Url::parse("https://crm.example/a").unwrap();
        let http = Url::parse("http://crm.example/a").unwrap();
        assert!(refuses(&https, false));
        assert!(!refuses(&https, true));
        assert!(!refuses(&http, false));
        assert!(!refuses(&http, true));
        assert_eq!(
            TLS,
            cfg!(any(feature = "http-rustls", feature = "http-native-tls"))
        );
    }

    #[test]
    fn tls_missing_says_which_features_to_enable() {
        let said = TlsMissing.to_string();
        assert!(
            said.starts_with("this build of seawall has no TLS"),
            "{said}"
        );
        assert!(said.contains("`http-rustls`"), "{said}");
        assert!(said.contains("`http-native-tls`"), "{said}");
        assert!(said.contains(r#"features = ["http-rustls"]"#), "{said}");
        assert_eq!(TlsMissing.class(), ErrorClass::Permanent);
    }

    #[tokio::test]
    async fn a_client_without_tls_refuses_https_before_sending() {
        // Port 9 on loopback: nothing is sent anyway; the refusal comes
        // before any DNS lookup or socket.
        let url = "https://127.0.0.1:9/accounts/42";
        let error = client_without_tls().get(url).send().await.unwrap_err();
        assert_refused_for_tls(&error, url);
        // Every method, and a client with header hooks.
        let client = Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND)
            .header_hook(|headers| {
                headers.insert("x-test", HeaderValue::from_static("1"));
            })
            .without_tls()
            .build()
            .unwrap();
        let error = client.post(url).body("{}").send().await.unwrap_err();
        assert_refused_for_tls(&error, url);
    }

    #[tokio::test]
    async fn a_client_without_tls_refusing_https_is_not_retried_nor_a_breaker_failure() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::policy::{BreakerPolicy, Kind, Policy, RetryPolicy};

        #[derive(Debug, thiserror::Error)]
        enum VendorError {
            #[error(transparent)]
            Transport(#[from] reqwest::Error),
            #[error(transparent)]
            Seawall(#[from] crate::Error),
        }
        impl Classify for VendorError {
            fn class(&self) -> ErrorClass {
                match self {
                    Self::Transport(e) => e.class(),
                    Self::Seawall(e) => e.class(),
                }
            }
        }

        let runtime = crate::Runtime::in_memory();
        let policy = Policy::new(Kind::Read, SECOND * 5)
            .with_retry(RetryPolicy::new(3))
            .with_breaker(BreakerPolicy::new());
        let endpoint = runtime.endpoint("crm", "account", policy).unwrap();
        let client = client_without_tls();
        let attempts = AtomicUsize::new(0);
        let url = "https://127.0.0.1:9/accounts/42";
        let result = endpoint
            .call(|| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let request = client.get(url);
                async move { Ok::<_, VendorError>(request.send().await?.status()) }
            })
            .await;
        let Err(VendorError::Transport(error)) = &result else {
            panic!("expected the refusal itself, got {result:?}");
        };
        assert_refused_for_tls(error, url);
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "retried");
        let breaker = endpoint.breaker().expect("a breaker").metrics();
        assert_eq!(breaker.failures, 0, "{breaker:?}");
    }

    /// A vendor on 127.0.0.1 that answers one request with `answer` and
    /// hands back the head of the request it read.
    fn answer_once(
        answer: &'static str,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let vendor = std::thread::spawn(move || {
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
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        (address, vendor)
    }

    #[tokio::test]
    async fn a_client_without_tls_still_calls_http() {
        let (address, vendor) =
            answer_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        let client = Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND * 5)
            .header_hook(|headers| {
                headers.insert("x-test", HeaderValue::from_static("1"));
            })
            .without_tls()
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{address}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(check(response).unwrap().text().await.unwrap(), "ok");
        let head = vendor.join().unwrap();
        assert!(head.contains("x-test: 1"), "{head}");
    }

    /// The build's own client, without the test hook: `http` alone
    /// (`cargo test -p seawall-core --no-default-features --features http`).
    #[cfg(not(any(feature = "http-rustls", feature = "http-native-tls")))]
    #[tokio::test]
    async fn a_build_without_tls_refuses_https() {
        let client = Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND)
            .build()
            .unwrap();
        assert!(format!("{client:?}").contains("tls: false"), "{client:?}");
        let url = "https://127.0.0.1:9/accounts/42";
        let error = client.get(url).send().await.unwrap_err();
        assert_refused_for_tls(&error, url);
        // Built on the inner reqwest client, the request meets reqwest's
        // own refusal, a connect error: still permanent in such a build.
        let error = client.inner().get(url).send().await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        assert!(!tls_missing(&error), "{error:?}");
        assert_eq!(error.class(), ErrorClass::Permanent, "{error:?}");
    }

    /// The build's own client with a TLS feature does not refuse.
    #[cfg(any(feature = "http-rustls", feature = "http-native-tls"))]
    #[test]
    fn a_build_with_tls_does_not_refuse() {
        let client = Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND)
            .build()
            .unwrap();
        assert!(client.refuse_https.is_none());
        assert!(format!("{client:?}").contains("tls: true"), "{client:?}");
    }

    #[test]
    fn builder_errors_are_permanent() {
        let client = Client::builder()
            .connect_timeout(SECOND)
            .timeout(SECOND)
            .build()
            .unwrap();
        let error = client.get("not a url").build().unwrap_err();
        assert!(error.is_builder());
        assert_eq!(error.class(), ErrorClass::Permanent);
    }
}
