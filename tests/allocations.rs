//! The success path allocates nothing: admitting and recording a call in a
//! breaker, and a whole resilient call through the pipeline once the
//! wrapper's endpoints are built.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use seawall::breaker::Outcome;
use seawall::{Breaker, BreakerPolicy, Resilient, Runtime, contract};
use support::VendorError;

/// Counts the allocations of the thread that asked for counting.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_in(run: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    run();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    let boxed = allocations_in(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(boxed, 1);
}

#[test]
fn admitting_and_recording_a_success_allocates_nothing() {
    for policy in [
        BreakerPolicy::new(),
        BreakerPolicy::new().with_time_window(std::time::Duration::from_secs(30)),
        BreakerPolicy::new().with_slow(std::time::Duration::from_secs(1)),
    ] {
        let breaker = Breaker::new("alloc", policy.clone()).unwrap();
        let allocations = allocations_in(|| {
            for _ in 0..10_000 {
                breaker.try_acquire().unwrap().record(Outcome::Success);
            }
        });
        assert_eq!(allocations, 0, "{policy:?}");
    }
}

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "1s", retry(attempts = 3), breaker)]
    async fn get(&self, id: &str) -> Result<usize, VendorError>;

    // Every load stage armed: a rate limiter with turns to spare, a
    // bulkhead with places to spare, hedging after the p95 (recomputed
    // every 64 attempts, on the call's path).
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3),
        breaker,
        rate(limit = "1000000/1s", burst = 100000),
        bulkhead(max = 100),
        hedge(after = "p95")
    )]
    async fn loaded(&self, id: &str) -> Result<usize, VendorError>;
}

struct Fast;

impl Vendor for Fast {
    async fn get(&self, id: &str) -> Result<usize, VendorError> {
        Ok(id.len())
    }
    async fn loaded(&self, id: &str) -> Result<usize, VendorError> {
        Ok(id.len())
    }
}

#[test]
fn a_successful_call_through_a_limiter_a_bulkhead_and_hedging_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let seawall = Runtime::in_memory();
    let vendor = Resilient::new(Fast, &seawall);
    runtime.block_on(vendor.loaded("warm")).unwrap();
    let allocations = allocations_in(|| {
        runtime.block_on(async {
            for _ in 0..1_000 {
                vendor.loaded("id").await.unwrap();
            }
        });
    });
    assert_eq!(allocations, 0);
}

#[test]
fn a_successful_resilient_call_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let seawall = Runtime::in_memory();
    let vendor = Resilient::new(Fast, &seawall);
    // The first call builds the contract's endpoints (and the runtime warms
    // its timer); every call after that is the success path.
    runtime.block_on(vendor.get("warm")).unwrap();
    let allocations = allocations_in(|| {
        runtime.block_on(async {
            for _ in 0..1_000 {
                vendor.get("id").await.unwrap();
            }
        });
    });
    assert_eq!(allocations, 0);
}

/// The same call with its breaker shared by a fleet through Redis: the
/// sync runs beside the calls, and the call itself still allocates nothing.
#[cfg(feature = "redis")]
#[test]
fn a_successful_call_through_a_fleet_shared_breaker_allocates_nothing() {
    let Some(url) = support::redis::shared("a_successful_call_through_a_fleet_shared_breaker")
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = seawall::fleet::Redis::new(url)
        .unwrap()
        .prefix(support::redis::prefix("allocations"));
    let seawall = Runtime::builder().redis(redis).in_memory();
    let vendor = Resilient::new(Fast, &seawall);
    runtime.block_on(async {
        vendor.get("warm").await.unwrap();
        // Long enough for the first syncs: the breaker is linked and the
        // connection open.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    });
    let health = seawall.health().fleet.expect("a fleet runtime");
    assert!(
        health.available && health.last_error.is_none(),
        "{health:?}"
    );
    let allocations = allocations_in(|| {
        runtime.block_on(async {
            for _ in 0..1_000 {
                vendor.get("id").await.unwrap();
            }
        });
    });
    assert_eq!(allocations, 0);
}
