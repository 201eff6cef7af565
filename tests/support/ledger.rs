//! The keyed writes both shared-store suites run (`fleet_idempotency.rs` on
//! Redis, `postgres_idempotency.rs` on PostgreSQL): a ledger contract, the
//! one vendor every replica calls, and its adapter. Included by `#[path]`.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use seawall::contract;
use tokio::sync::{Notify, Semaphore};

use super::support::VendorError;

#[contract(name = "ledger")]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(key = [account], store, retention = "1h"))]
    async fn post(&self, account: &str, cents: u64) -> Result<u64, VendorError>;

    #[integration(
        write,
        timeout = "5s",
        idempotent(key = [account], store, concurrent = "reject")
    )]
    async fn post_once(&self, account: &str, cents: u64) -> Result<u64, VendorError>;

    #[integration(
        write,
        timeout = "1s",
        deadline = "1500ms",
        idempotent(key = [account], store)
    )]
    async fn post_soon(&self, account: &str, cents: u64) -> Result<u64, VendorError>;
}

/// The one vendor every replica calls: it counts the calls that reach it,
/// answers each with its own number (so a second call would answer
/// differently), and lets a test hold calls at its door.
pub struct Vendor {
    pub calls: AtomicU64,
    /// How long a call takes.
    pub work: Duration,
    /// A call takes a permit for its whole length: closed, calls wait.
    pub door: Semaphore,
    /// Told each time a call arrives.
    pub arrived: Notify,
}

impl Vendor {
    pub fn new(work: Duration) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicU64::new(0),
            work,
            door: Semaphore::new(Semaphore::MAX_PERMITS),
            arrived: Notify::new(),
        })
    }

    /// A vendor whose calls wait until [`open`](Self::open).
    pub fn closed() -> Arc<Self> {
        let vendor = Self::new(Duration::ZERO);
        vendor.door.forget_permits(Semaphore::MAX_PERMITS);
        vendor
    }

    pub fn open(&self) {
        self.door.add_permits(1_000);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits for the next call to arrive — bounded, so that a call that
    /// failed before reaching the vendor fails the test instead of hanging
    /// it.
    pub async fn arrival(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.arrived.notified())
            .await
            .expect("a call reached the vendor within 30 s (did it fail before?)");
    }

    pub async fn take(&self, cents: u64) -> Result<u64, VendorError> {
        let number = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.arrived.notify_one();
        let _permit = self.door.acquire().await.expect("never closed");
        tokio::time::sleep(self.work).await;
        Ok(cents * 1_000 + number)
    }
}

pub struct Adapter(pub Arc<Vendor>);

impl Ledger for Adapter {
    async fn post(&self, _account: &str, cents: u64) -> Result<u64, VendorError> {
        self.0.take(cents).await
    }
    async fn post_once(&self, _account: &str, cents: u64) -> Result<u64, VendorError> {
        self.0.take(cents).await
    }
    async fn post_soon(&self, _account: &str, cents: u64) -> Result<u64, VendorError> {
        self.0.take(cents).await
    }
}
