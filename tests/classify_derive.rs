//! `#[derive(Classify)]` on error enums and structs.

use std::time::Duration;

use seawall::{Classify, ErrorClass};

#[derive(Debug)]
struct Throttle(Duration);

impl Classify for Throttle {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.0)
    }
}

// The fields are there to show each variant shape; nothing reads them.
#[allow(dead_code)]
#[derive(Debug, Classify)]
enum CrmError {
    #[classify(retryable)]
    RateLimited,
    #[classify(vendor_fault)]
    Internal { code: u16 },
    #[classify(permanent)]
    NotFound(String),
    #[classify(ignored)]
    Cancelled,
    #[classify(delegate)]
    Status(http::StatusCode),
    #[classify(delegate)]
    Throttled { throttle: Throttle },
    #[classify(delegate)]
    Seawall(seawall::Error),
}

#[test]
fn each_variant_has_the_class_it_states() {
    assert_eq!(CrmError::RateLimited.class(), ErrorClass::Retryable);
    assert_eq!(
        CrmError::Internal { code: 7 }.class(),
        ErrorClass::VendorFault
    );
    assert_eq!(
        CrmError::NotFound("a".into()).class(),
        ErrorClass::Permanent
    );
    assert_eq!(CrmError::Cancelled.class(), ErrorClass::Ignored);
    assert_eq!(CrmError::RateLimited.retry_after(), None);
}

#[test]
fn delegating_variants_take_class_and_retry_after_from_what_they_wrap() {
    assert_eq!(
        CrmError::Status(http::StatusCode::BAD_GATEWAY).class(),
        ErrorClass::Retryable
    );
    assert_eq!(
        CrmError::Status(http::StatusCode::UNPROCESSABLE_ENTITY).class(),
        ErrorClass::Permanent
    );
    let throttled = CrmError::Throttled {
        throttle: Throttle(Duration::from_secs(9)),
    };
    assert_eq!(throttled.class(), ErrorClass::Retryable);
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(9)));
    let open = CrmError::Seawall(seawall::Error::BreakerOpen {
        breaker: "crm".into(),
        retry_in: Some(Duration::from_secs(4)),
    });
    assert_eq!(open.retry_after(), Some(Duration::from_secs(4)));
}

#[derive(Debug, Classify)]
#[classify(permanent)]
struct Rejected {
    #[allow(dead_code)]
    reason: String,
}

#[derive(Debug, Classify)]
#[classify(delegate)]
struct Wrapped<E>(E);

#[test]
fn structs_state_their_class_or_delegate_it_even_when_generic() {
    assert_eq!(
        Rejected {
            reason: "no".into()
        }
        .class(),
        ErrorClass::Permanent
    );
    let wrapped = Wrapped(Throttle(Duration::from_millis(250)));
    assert_eq!(wrapped.class(), ErrorClass::Retryable);
    assert_eq!(wrapped.retry_after(), Some(Duration::from_millis(250)));
}

#[test]
fn the_error_type_is_the_variant_or_what_a_delegating_variant_wraps_says() {
    assert_eq!(
        CrmError::RateLimited.error_type(),
        Some("CrmError::RateLimited")
    );
    assert_eq!(
        CrmError::Internal { code: 7 }.error_type(),
        Some("CrmError::Internal")
    );
    // A status says its code; seawall's errors their name.
    assert_eq!(
        CrmError::Status(http::StatusCode::BAD_GATEWAY).error_type(),
        Some("502")
    );
    let timeout = seawall::Error::Timeout {
        after: Duration::from_secs(1),
    };
    assert_eq!(CrmError::Seawall(timeout).error_type(), Some("timeout"));
    // What the wrapped value does not name, the variant does.
    let throttled = CrmError::Throttled {
        throttle: Throttle(Duration::ZERO),
    };
    assert_eq!(throttled.error_type(), Some("CrmError::Throttled"));
    assert_eq!(
        Rejected {
            reason: "no".into()
        }
        .error_type(),
        Some("Rejected")
    );
    assert_eq!(
        Wrapped(http::StatusCode::NOT_FOUND).error_type(),
        Some("404")
    );
    assert_eq!(
        Wrapped(Throttle(Duration::ZERO)).error_type(),
        Some("Wrapped")
    );
}
