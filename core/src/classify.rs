//! Error classification: which failures are worth another attempt, and which
//! ones say the vendor is unhealthy.
//!
//! Retrying a `400 Bad Request` wastes time and can get an API key throttled;
//! not retrying a `503` gives up on a vendor that would have answered a second
//! later. The decision belongs to the error, so it is a trait the adapter's
//! error type implements, usually by delegating to the HTTP status it saw.

use http::StatusCode;

pub use seawall_policy::ErrorClass;

/// Classifies an error for the retry loop and the circuit breaker.
///
/// Every contract method's error type implements it. Most adapters keep the
/// HTTP status they saw and delegate to the implementation for
/// [`http::StatusCode`]:
///
/// ```
/// use seawall_core::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum CrmError {
///     Status(http::StatusCode),
///     Decode(String),
///     Seawall(seawall_core::Error),
/// }
///
/// impl Classify for CrmError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             CrmError::Status(status) => status.class(),
///             CrmError::Decode(_) => ErrorClass::Permanent,
///             CrmError::Seawall(e) => e.class(),
///         }
///     }
/// }
///
/// assert!(CrmError::Status(http::StatusCode::SERVICE_UNAVAILABLE).class().is_retryable());
/// assert!(!CrmError::Decode("bad json".into()).class().is_retryable());
/// ```
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// How long the vendor asked to wait before another attempt (its
    /// `Retry-After`), if it said. The retry loop never retries sooner; when
    /// the wait is longer than the policy allows (past the backoff `cap`, the
    /// deadline or `max_elapsed`), the call ends at once with
    /// [`Error::RetryAfter`](crate::Error::RetryAfter).
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }

    /// A short name for this kind of error, with few distinct values, for
    /// telemetry: OpenTelemetry's `error.type` on the attempt's span and the
    /// call's end. An HTTP status as its code (`"503"`), one of seawall's
    /// errors as a snake-case name (`"timeout"`, `"breaker_open"`), a
    /// `#[derive(Classify)]` enum as `Type::Variant` (or what its delegating
    /// variant wraps says). `None` (the default) reports the error type's
    /// name.
    fn error_type(&self) -> Option<&'static str> {
        None
    }
}

/// The three digits of every status code from 100 to 999, for
/// [`status_str`].
static STATUS_DIGITS: [[u8; 3]; 900] = {
    let mut digits = [[0; 3]; 900];
    let mut i = 0;
    while i < 900 {
        let code = i + 100;
        digits[i] = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        i += 1;
    }
    digits
};

/// A status code as a `'static` string of its three digits (`"503"`).
pub(crate) fn status_str(status: StatusCode) -> &'static str {
    let digits = &STATUS_DIGITS[usize::from(status.as_u16()).saturating_sub(100)];
    std::str::from_utf8(digits).unwrap_or("status")
}

/// `408`, `429`, `502`, `503` and `504` are retryable; any other `5xx` is a
/// vendor fault; everything else (`400`, `401`, `403`, `404`, `409`, `422`,
/// and any status that is not an error) is permanent.
impl Classify for StatusCode {
    fn class(&self) -> ErrorClass {
        match self.as_u16() {
            408 | 429 | 502 | 503 | 504 => ErrorClass::Retryable,
            500..=599 => ErrorClass::VendorFault,
            _ => ErrorClass::Permanent,
        }
    }

    /// The code: `"503"`.
    fn error_type(&self) -> Option<&'static str> {
        Some(status_str(*self))
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        (**self).retry_after()
    }

    fn error_type(&self) -> Option<&'static str> {
        (**self).error_type()
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        (**self).retry_after()
    }

    fn error_type(&self) -> Option<&'static str> {
        (**self).error_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_follow_the_documented_table() {
        for code in [408, 429, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status.class(), ErrorClass::Retryable, "{code}");
        }
        for code in [500, 501, 505, 599] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status.class(), ErrorClass::VendorFault, "{code}");
        }
        for code in [200, 301, 400, 401, 403, 404, 409, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status.class(), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn a_status_names_its_error_type_by_its_code() {
        for code in [100, 200, 404, 503, 599, 999] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status.error_type(), Some(code.to_string().as_str()));
        }
    }
}
