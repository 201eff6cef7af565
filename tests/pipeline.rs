//! The stages composed by the runtime (`DESIGN.md` §4), under the faults
//! their composition must survive: a panicking adapter passes every
//! fallback on its way out (a panic is not an outage to paper over), and a
//! keyed write cancelled mid-attempt in the boxed part of the pipeline lets
//! go of its key.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall::{Resilient, Runtime, contract};
use support::VendorError;

/// Counts the calls of `with(..)`'s function.
static FALLBACKS: AtomicU32 = AtomicU32::new(0);

fn answer_anyway(_id: &str, _error: VendorError) -> Result<String, VendorError> {
    FALLBACKS.fetch_add(1, Ordering::SeqCst);
    Ok("from the fallback".into())
}

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn cached(&self, id: &str) -> Result<String, VendorError>;

    #[integration(read, timeout = "1s", fallback = with(answer_anyway))]
    async fn answered(&self, id: &str) -> Result<String, VendorError>;

    #[integration(write, timeout = "30s", idempotent(key = [id], store))]
    async fn post(&self, id: &str) -> Result<u32, VendorError>;
}

/// Panics on every call after the first `good` ones; the write hangs on its
/// first call.
#[derive(Default)]
struct Adapter {
    calls: AtomicU32,
    good: u32,
}

impl Vendor for Adapter {
    async fn cached(&self, id: &str) -> Result<String, VendorError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.good {
            return Ok(format!("fresh {id}"));
        }
        panic!("adapter bug");
    }

    async fn answered(&self, _id: &str) -> Result<String, VendorError> {
        panic!("adapter bug");
    }

    async fn post(&self, _id: &str) -> Result<u32, VendorError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == 1 {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        Ok(call)
    }
}

fn vendor(good: u32) -> Arc<Resilient<Adapter>> {
    let adapter = Adapter {
        good,
        ..Adapter::default()
    };
    Arc::new(Resilient::new(adapter, &Runtime::in_memory()))
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_not_answered_from_the_cache_even_with_a_fresh_answer_there() {
    let vendor = vendor(1);
    assert_eq!(vendor.cached("a").await.unwrap(), "fresh a");
    let task = {
        let vendor = vendor.clone();
        tokio::spawn(async move { vendor.cached("a").await })
    };
    let outcome = task.await;
    let panic = outcome.expect_err("the panic reaches the caller, not the cached answer");
    assert!(panic.is_panic());
    let payload = panic.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"adapter bug"));
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_not_handed_to_the_custom_fallback() {
    let vendor = vendor(0);
    let before = FALLBACKS.load(Ordering::SeqCst);
    let task = {
        let vendor = vendor.clone();
        tokio::spawn(async move { vendor.answered("a").await })
    };
    assert!(
        task.await
            .expect_err("the panic reaches the caller")
            .is_panic()
    );
    assert_eq!(
        FALLBACKS.load(Ordering::SeqCst),
        before,
        "with(..) never ran"
    );
}

#[tokio::test(start_paused = true)]
async fn a_keyed_write_cancelled_mid_attempt_lets_go_of_its_key() {
    let vendor = vendor(0);
    // The first attempt hangs; the caller gives up on it (the future is
    // dropped inside the store's stage, in the boxed part of the pipeline).
    let cancelled = tokio::time::timeout(Duration::from_secs(1), vendor.post("k-1")).await;
    assert!(
        cancelled.is_err(),
        "the first call was cut short by the caller"
    );
    // The same write again: its key was released, so it runs (and is not
    // rejected, nor left waiting for a call that no longer exists).
    let again = tokio::time::timeout(Duration::from_secs(5), vendor.post("k-1"))
        .await
        .expect("the repeat does not wait for the cancelled call")
        .expect("the repeat is delivered");
    assert_eq!(again, 2, "the vendor was called a second time");
    // And a third is answered from the record, without calling the vendor.
    assert_eq!(vendor.post("k-1").await.unwrap(), 2);
}
