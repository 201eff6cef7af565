//! seawall makes calls to third-party APIs resilient by declaration.
//!
//! Write the contract your system needs from a vendor as a trait, give each
//! method its policy, and wrap any adapter that implements the trait in
//! [`Resilient`]: every call then runs through explicit timeouts, retries
//! with backoff and jitter, and a circuit breaker.
//!
//! ```
//! use seawall::{contract, Classify, ErrorClass, Resilient, Runtime};
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum CrmError {
//!     #[error("vendor answered {0}")]
//!     Status(http::StatusCode),
//!     #[error(transparent)]
//!     Seawall(#[from] seawall::Error),
//! }
//!
//! impl Classify for CrmError {
//!     fn class(&self) -> ErrorClass {
//!         match self {
//!             CrmError::Status(status) => status.class(),
//!             CrmError::Seawall(error) => error.class(),
//!         }
//!     }
//! }
//!
//! /// What our system needs from the CRM, not what the vendor's API looks like.
//! #[contract]
//! pub trait Crm {
//!     #[integration(read, timeout = "2s", retry(attempts = 3), breaker)]
//!     async fn account_name(&self, id: &str) -> Result<String, CrmError>;
//! }
//!
//! /// The adapter: the one place that knows the vendor's wire format.
//! struct FakeCrm;
//!
//! impl Crm for FakeCrm {
//!     async fn account_name(&self, id: &str) -> Result<String, CrmError> {
//!         Ok(format!("account {id}"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), CrmError> {
//! let runtime = Runtime::in_memory();
//! let crm = Resilient::new(FakeCrm, &runtime);
//! assert_eq!(crm.account_name("42").await?, "account 42");
//! # Ok(())
//! # }
//! ```
//!
//! The policy keys, their meaning and defaults are listed in the README and
//! on [`contract`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use seawall_core::*;
pub use seawall_macros::{Classify, contract, integration};

// The README's examples compile (and run, unless marked `no_run`) as doc tests.
// They need the default features, `postgres` and `overrides` (`--all-features`).
#[cfg(all(
    doctest,
    feature = "http",
    feature = "embedded",
    feature = "metrics",
    feature = "mock",
    feature = "sealing",
    feature = "redis",
    feature = "postgres",
    feature = "overrides",
    feature = "dashboard"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
