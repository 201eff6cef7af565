//! Error classes (how a failure is treated) and sets of them.

/// What a failed attempt means for the retry loop and the circuit breaker.
///
/// | class | retried (by default) | counts against the breaker (by default) |
/// |---|---|---|
/// | [`Retryable`](Self::Retryable) | yes | yes |
/// | [`VendorFault`](Self::VendorFault) | no | yes |
/// | [`Permanent`](Self::Permanent) | no | no (recorded as a completed call) |
/// | [`Ignored`](Self::Ignored) | no | no (not recorded at all) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A transient failure that another attempt may fix: `408`, `429`, `502`,
    /// `503`, `504`, a timeout, a refused connection.
    Retryable,
    /// The vendor failed in a way another attempt will not fix (`500`,
    /// `501`, `505`): the caller gets the error at once, and the breaker
    /// counts it, because the vendor is what is broken.
    VendorFault,
    /// The request itself was wrong (`400`, `401`, `403`, `404`, `409`,
    /// `422`): the vendor is healthy, so the breaker records a completed
    /// call, and retrying would only repeat the mistake.
    Permanent,
    /// Neither success nor failure (for example a cancelled request): not
    /// retried, and the breaker frees the call's permit without recording it.
    Ignored,
}

impl ErrorClass {
    /// Every class, in order.
    pub const ALL: [Self; 4] = [
        Self::Retryable,
        Self::VendorFault,
        Self::Permanent,
        Self::Ignored,
    ];

    /// Whether the retry loop makes another attempt after this error, by
    /// default (a policy's `retry(on = [..])` may say otherwise).
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable)
    }

    /// Whether the circuit breaker counts this error as a failure, by
    /// default (a policy's `failure_classes` may say otherwise).
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Retryable | Self::VendorFault)
    }

    /// A short lowercase name, as policies and metrics labels write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::VendorFault => "vendor_fault",
            Self::Permanent => "permanent",
            Self::Ignored => "ignored",
        }
    }

    /// The class named by [`as_str`](Self::as_str), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.as_str() == name)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of error classes: which ones a retry loop retries, or which ones a
/// breaker counts as failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassSet(u8);

impl ClassSet {
    /// Retryable errors only: what a retry loop retries by default.
    pub const RETRYABLE: Self = Self(Self::bit(ErrorClass::Retryable));

    /// Retryable errors and vendor faults: what a breaker counts as failures
    /// by default. A `503`, a `500`, a timeout or a refused connection says
    /// the vendor is unhealthy; a `404` or a `422` says the request was wrong
    /// and the vendor healthy.
    pub const FAILURES: Self =
        Self(Self::bit(ErrorClass::Retryable) | Self::bit(ErrorClass::VendorFault));

    const fn bit(class: ErrorClass) -> u8 {
        match class {
            ErrorClass::Retryable => 1,
            ErrorClass::VendorFault => 2,
            ErrorClass::Permanent => 4,
            ErrorClass::Ignored => 8,
        }
    }

    /// Exactly these classes.
    pub fn of(classes: impl IntoIterator<Item = ErrorClass>) -> Self {
        Self(
            classes
                .into_iter()
                .fold(0, |bits, class| bits | Self::bit(class)),
        )
    }

    /// Whether `class` is in the set.
    pub const fn contains(self, class: ErrorClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, in [`ErrorClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ErrorClass> {
        ErrorClass::ALL
            .into_iter()
            .filter(move |class| self.contains(*class))
    }
}
