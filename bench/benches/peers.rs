//! Each stage's success-path cost against its peers, in one criterion group
//! so that the figures come from one run (issue 20 item 8): seawall's rate
//! limiter and bulkhead, tower's `RateLimit` and `ConcurrencyLimit`,
//! tower-resilience's rate limiter and bulkhead, and the bare limiters
//! (seawall's GCRA against the `governor` crate's).
//!
//! `cargo bench -p seawall-bench --bench peers`. Before the timed cases, each
//! case's allocations per call are counted over a fixed loop and printed to
//! stderr. What each case does per call is in BENCHMARKS.md ("Against
//! peers").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use seawall::{Classify, ErrorClass, RatePolicy, Resilient, Runtime, contract};
use tower::{Layer, Service, ServiceExt};

/// Counts the allocations of the thread that asked for counting (the
/// bench's own thread: the runtime is a current-thread one). When not
/// counting, an allocation costs one thread-local load more than `System`.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to `System` unchanged; the counter only
// reads and writes thread-locals that need no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Calls counted for the allocations per call.
const COUNTED: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct VendorError(#[from] seawall::Error);

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        self.0.class()
    }
}

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "1s")]
    async fn timeout_only(&self, id: u64) -> Result<u64, VendorError>;

    // A rate far above the bench's calls: the limiter always has a turn.
    #[integration(read, timeout = "1s", rate(limit = "4000000000/1s", burst = 1000000))]
    async fn rated(&self, id: u64) -> Result<u64, VendorError>;

    // Places to spare: the bulkhead never makes a call wait.
    #[integration(read, timeout = "1s", bulkhead(max = 1000))]
    async fn bulkheaded(&self, id: u64) -> Result<u64, VendorError>;

    // Armed, never fired: the vendor answers on the first poll.
    #[integration(read, timeout = "1s", hedge(after = "100ms"))]
    async fn hedged(&self, id: u64) -> Result<u64, VendorError>;
}

struct Fast;

impl Vendor for Fast {
    async fn timeout_only(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn rated(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn bulkheaded(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn hedged(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
}

/// The tower peers' vendor: a `service_fn` that answers at once, as `Fast`.
fn vendor_fn()
-> tower::util::ServiceFn<impl FnMut(u64) -> std::future::Ready<Result<u64, Infallible>> + Clone> {
    tower::service_fn(|id: u64| std::future::ready(Ok(id + 1)))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let seawall = Runtime::in_memory();
    let vendor = Resilient::new(Fast, &seawall);
    // tower's `RateLimit` builds its sleep when it is built: in a runtime.
    let _entered = runtime.enter();

    // tower: the same rate and timeout as seawall's methods; a concurrency
    // limit never reached. Timeout outermost, as `ServiceBuilder::new()
    // .timeout(..).rate_limit(..)` builds it.
    let timeout = Duration::from_secs(1);
    let mut tower_fn = vendor_fn();
    let mut tower_timeout = tower::timeout::Timeout::new(vendor_fn(), timeout);
    let mut tower_rated = tower::timeout::Timeout::new(
        tower::limit::RateLimit::new(
            vendor_fn(),
            tower::limit::rate::Rate::new(4_000_000_000, Duration::from_secs(1)),
        ),
        timeout,
    );
    let mut tower_limited = tower::timeout::Timeout::new(
        tower::limit::ConcurrencyLimit::new(vendor_fn(), 1_000),
        timeout,
    );

    // tower-resilience: its rate limiter (default fixed window, rejection
    // mode) and bulkhead (waits for a place, no limit on the wait), neither
    // ever reached.
    let mut resilience_rated = tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(4_000_000_000)
        .refresh_period(Duration::from_secs(1))
        .build()
        .expect("a rate limiter")
        .layer(vendor_fn());
    let mut resilience_bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(1_000)
        .build()
        .expect("a bulkhead")
        .layer(vendor_fn());

    // The bare limiters, outside any call: the same quota (one call per
    // nanosecond, a burst of a million), never spent.
    let seawall_limiter = seawall::rate::RateLimiter::new(
        "bench",
        &RatePolicy::new(1_000_000_000, Duration::from_secs(1)).with_burst(1_000_000),
    );
    let governor_limiter = governor::RateLimiter::direct(
        governor::Quota::per_second(NonZeroU32::new(1_000_000_000).expect("not zero"))
            .allow_burst(NonZeroU32::new(1_000_000).expect("not zero")),
    );

    let mut group = c.benchmark_group("success path against peers");
    // `$body` is one call, evaluated inside the runtime (it may `.await`).
    // First its allocations per call over `COUNTED` calls (after a warm-up
    // that builds whatever is built once), then the timed case: `iterations`
    // calls made one after another on the runtime.
    macro_rules! case {
        ($name:expr, |$i:ident| $body:block) => {{
            let allocations = runtime.block_on(async {
                for $i in 0..100u64 {
                    black_box($body);
                }
                ALLOCATIONS.with(|n| n.set(0));
                COUNTING.with(|c| c.set(true));
                for $i in 0..COUNTED {
                    black_box($body);
                }
                COUNTING.with(|c| c.set(false));
                ALLOCATIONS.with(Cell::get)
            });
            eprintln!(
                "allocations per call: {:>5.2}  {}",
                allocations as f64 / COUNTED as f64,
                $name
            );
            group.bench_function($name, |b| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for $i in 0..iterations {
                            black_box($body);
                        }
                        start.elapsed()
                    })
                });
            });
        }};
    }

    case!("raw adapter call", |i| {
        Fast.timeout_only(black_box(i)).await.ok()
    });
    case!("seawall: timeout", |i| {
        vendor.timeout_only(black_box(i)).await.ok()
    });
    case!("seawall: timeout + rate limiter", |i| {
        vendor.rated(black_box(i)).await.ok()
    });
    case!("seawall: timeout + bulkhead", |i| {
        vendor.bulkheaded(black_box(i)).await.ok()
    });
    case!("seawall: timeout + hedge (armed, not fired)", |i| {
        vendor.hedged(black_box(i)).await.ok()
    });

    // tower as it is used: `ready().await`, then `call`, per call.
    case!("tower: service_fn alone", |i| {
        let ready = tower_fn.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });
    case!("tower: Timeout", |i| {
        let ready = tower_timeout.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });
    case!("tower: Timeout + RateLimit", |i| {
        let ready = tower_rated.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });
    case!("tower: Timeout + ConcurrencyLimit", |i| {
        let ready = tower_limited.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });
    case!("tower-resilience: rate limiter", |i| {
        let ready = resilience_rated.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });
    case!("tower-resilience: bulkhead", |i| {
        let ready = resilience_bulkhead.ready().await.expect("ready");
        ready.call(black_box(i)).await.ok()
    });

    case!("limiter alone: seawall RateLimiter::try_acquire", |_i| {
        black_box(&seawall_limiter).try_acquire().is_ok()
    });
    case!("limiter alone: governor RateLimiter::check", |_i| {
        black_box(&governor_limiter).check().is_ok()
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
