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
//! | connect error (refused, DNS, connect timeout) | `Retryable` | the request never reached the vendor |
//! | timeout (connect, read or total) | `Retryable` | another attempt may be answered in time |
//! | builder error (bad URL, bad header, bad scheme) | `Permanent` | the request is wrong; it will be wrong again |
//! | redirect error (too many redirects, a loop) | `Permanent` | the next attempt follows the same redirects |
//! | decode error (a body that is not what was expected) | `Permanent` | the same bytes will not decode next time |
//! | decode error while the body was still arriving (connection reset) | `Retryable` | a transport failure, not a bad body |
//! | other request or body errors (connection reset mid-request) | `Retryable` | a transport failure |
//! | anything else (a failed protocol upgrade) | `Permanent` | |
//!
//! # TLS, redirects, pools and proxies stay reqwest's
//!
//! seawall depends on reqwest **without any TLS feature**: which TLS stack
//! to use is the application's choice. Add reqwest with the TLS feature you
//! want to your own `Cargo.toml`, for example
//! `reqwest = { version = "0.13", features = ["rustls"] }` (or
//! `"native-tls"`); cargo builds one reqwest per build with the union of
//! every dependent's features, so this client gets TLS too. Without one,
//! reqwest's connector refuses `https://` URLs: the call fails with a
//! connect error (which classifies as retryable, so check your features
//! before suspecting the vendor).
//!
//! Redirects, TLS settings, connection pools, proxies and default headers
//! are reqwest's, set through [`ClientBuilder::configure`]; by default
//! reqwest follows up to 10 redirects.
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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::http::header::RETRY_AFTER;
use ::http::{HeaderMap, HeaderValue, Method, StatusCode};
use reqwest::{IntoUrl, RequestBuilder};

use crate::policy::MAX_DURATION;
use crate::{Classify, ErrorClass};

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
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct ClientBuilder {
    inner: reqwest::ClientBuilder,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    hooks: Vec<HeaderHook>,
    correlation_header: Option<http::HeaderName>,
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
        }
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
        Ok(Client {
            inner: inner.build()?,
            hooks: self.hooks.into(),
            correlation_header: self.correlation_header,
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
            .finish_non_exhaustive()
    }
}

/// A reqwest client with explicit timeouts and header hooks.
///
/// Cheap to clone: clones share the connection pool and the hooks. Requests
/// are plain `reqwest::RequestBuilder`s, sent as usual; check the answer
/// with [`check`].
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    hooks: Arc<[HeaderHook]>,
    correlation_header: Option<http::HeaderName>,
}

impl Client {
    /// Starts a builder. [`build`](ClientBuilder::build) requires a connect
    /// timeout, and a read or a total timeout.
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
    /// No header is ever logged: `Authorization`, cookies and API keys stay
    /// out of seawall's spans and events.
    ///
    /// A `url` that does not parse is reported by reqwest when the request
    /// is sent (a builder error, classified permanent).
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("http.request.method", method.as_str());
        }
        let builder = self.inner.request(method, url);
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
    /// no header hooks.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("inner", &self.inner)
            .field("header_hooks", &self.hooks.len())
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
}

/// Passes a successful response through; turns any other status into a
/// [`ResponseError`].
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
        span.record("http.response.status_code", status.as_u16());
        if let Some(host) = url.host_str() {
            span.record("server.address", host);
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
/// with a status classifies as the status.
impl Classify for reqwest::Error {
    fn class(&self) -> ErrorClass {
        if let Some(status) = self.status() {
            return status.class();
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
