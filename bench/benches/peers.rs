//! seawall's success path against its peers, in one run of one command
//! (issue 20 item 8, issue 22 item 1): each stage and each whole stack of
//! seawall beside the same stage or stack in tower, tower-resilience,
//! failsafe, recloser, backon, governor and plain `tokio::time::timeout`.
//!
//! `cargo bench -p seawall-bench --bench peers`. Two criterion groups:
//!
//! - **"one task"**: calls made one after another by one task on a
//!   current-thread runtime, time per call (as `benches/call.rs`). Before
//!   the timed cases, each case's allocations per call are counted over a
//!   fixed loop and printed to stderr.
//! - **"64 tasks"**: the same calls made by 64 tasks on a multi-thread
//!   runtime of 2 workers, every task sharing one stack (its breaker, its
//!   limiter): CPU time per call, so contention shows as a higher figure
//!   instead of hiding behind the second core.
//!
//! Both groups time the process's CPU time, not wall time (nor wall time ×
//! workers, as `benches/breaker.rs` does): on a quiet host they are the
//! same, and on a loaded one the CPU time does not count the time other
//! processes take from the bench's threads, so the two groups stay
//! comparable (the bench's own thread only waits while the workers run).
//!
//! Every case calls the same adapter: `Fast::timeout_only`, an `async fn`
//! answering `Ok(id + 1)` (seawall's wrappers call `Fast`'s other methods,
//! whose bodies are the same). What each case does per call and how each
//! peer is configured is in BENCHMARKS.md ("Against peers", "Against peers:
//! the whole stack").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::FailurePolicy as _;
use failsafe::futures::CircuitBreaker as _;
use seawall::{Classify, ErrorClass, RatePolicy, Resilient, Runtime, contract};
use tower::{Layer, Service, ServiceExt};

/// Counts the allocations of the thread that asked for counting (the
/// bench's own thread: the "one task" runtime is a current-thread one).
/// When not counting, an allocation costs one thread-local load more than
/// `System`.
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
/// The "64 tasks" group: its runtime's workers and its tasks.
const WORKERS: usize = 2;
const TASKS: u64 = 64;
/// Every timeout, seawall's and the peers'.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Every retry's first delay (seawall's default `base`); never waited here.
const BACKOFF: Duration = Duration::from_millis(100);

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

    #[integration(read, timeout = "1s", breaker)]
    async fn with_breaker(&self, id: u64) -> Result<u64, VendorError>;

    // The full stack: three attempts, the default backoff (100 ms, full
    // jitter) and retry budget, the default breaker; no retry ever fires.
    #[integration(read, timeout = "1s", retry(attempts = 3), breaker)]
    async fn full(&self, id: u64) -> Result<u64, VendorError>;

    #[integration(read, timeout = "1s", retry(attempts = 3), breaker,
                  fallback = cache(max_stale = "1h"))]
    async fn cached(&self, id: u64) -> Result<u64, VendorError>;

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

/// The adapter every case calls, by a `'static` reference so that the
/// peers' services and futures can hold it.
static FAST: Fast = Fast;

impl Vendor for Fast {
    async fn timeout_only(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn with_breaker(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn full(&self, id: u64) -> Result<u64, VendorError> {
        Ok(id + 1)
    }
    async fn cached(&self, id: u64) -> Result<u64, VendorError> {
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

/// The tower peers' vendor: a `service_fn` over the same adapter. (A macro:
/// the adapter's future has no name a function could return.)
macro_rules! adapter_service {
    () => {
        tower::service_fn(|id: u64| FAST.timeout_only(id))
    };
}

/// tower's `Retry` takes a policy its user writes: this one, like seawall's
/// `retry(attempts = 3)`, allows three attempts 100 ms apart and never
/// retries an answer.
#[derive(Clone, Copy)]
struct Attempts(usize);

impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        if result.is_ok() || self.0 <= 1 {
            return None;
        }
        self.0 -= 1;
        Some(tokio::time::sleep(BACKOFF))
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

fn bench(c: &mut Criterion) {
    let one = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let many = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("a runtime");
    let seawall = Runtime::in_memory();
    let vendor = Resilient::new(Fast, &seawall);

    // Every case but tower's `RateLimit` (not `Clone`: tasks would share it
    // through a `Buffer`), in both groups: its name, what each task holds
    // (built once, inside the runtime that runs the case, then cloned for
    // each task of the "64 tasks" group), and one call.
    macro_rules! every_case {
        ($case:ident) => {
            $case!("raw adapter call", &FAST, |s, i| s
                .timeout_only(black_box(i))
                .await
                .ok());
            $case!("tokio::time::timeout", &FAST, |s, i| {
                tokio::time::timeout(TIMEOUT, s.timeout_only(black_box(i)))
                    .await
                    .ok()
            });

            $case!("seawall: timeout", vendor.clone(), |s, i| s
                .timeout_only(black_box(i))
                .await
                .ok());
            $case!("seawall: timeout + breaker", vendor.clone(), |s, i| s
                .with_breaker(black_box(i))
                .await
                .ok());
            $case!(
                "seawall: timeout + retry + breaker (the full stack)",
                vendor.clone(),
                |s, i| s.full(black_box(i)).await.ok()
            );
            // 1 000 distinct keys, so the cache holds what it stores.
            $case!(
                "seawall: timeout + retry + breaker + cache",
                vendor.clone(),
                |s, i| s.cached(black_box(i % 1_000)).await.ok()
            );
            $case!("seawall: timeout + rate limiter", vendor.clone(), |s, i| s
                .rated(black_box(i))
                .await
                .ok());
            $case!("seawall: timeout + bulkhead", vendor.clone(), |s, i| s
                .bulkheaded(black_box(i))
                .await
                .ok());
            $case!(
                "seawall: timeout + hedge (armed, not fired)",
                vendor.clone(),
                |s, i| s.hedged(black_box(i)).await.ok()
            );

            // tower as it is used: `ready().await`, then `call`, per call.
            $case!("tower: service_fn alone", adapter_service!(), |s, i| {
                let ready = s.ready().await.expect("ready");
                ready.call(black_box(i)).await.ok()
            });
            $case!(
                "tower: Timeout",
                tower::timeout::Timeout::new(adapter_service!(), TIMEOUT),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            // Retry outermost, a timeout per attempt, as seawall's stack.
            $case!(
                "tower: Retry + Timeout",
                tower::retry::Retry::new(
                    Attempts(3),
                    tower::timeout::Timeout::new(adapter_service!(), TIMEOUT)
                ),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            $case!(
                "tower: Timeout + ConcurrencyLimit",
                tower::timeout::Timeout::new(
                    tower::limit::ConcurrencyLimit::new(adapter_service!(), 1_000),
                    TIMEOUT
                ),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );

            $case!(
                "tower-resilience: time limiter",
                resilience_time_limiter().layer(adapter_service!()),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            $case!(
                "tower-resilience: circuit breaker",
                resilience_breaker().layer(adapter_service!()),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            // The same order as seawall's: retry, breaker, attempt timeout.
            $case!(
                "tower-resilience: retry + circuit breaker + time limiter",
                tower_resilience::retry::RetryLayer::<u64, u64, _>::builder()
                    .max_attempts(3)
                    .exponential_backoff(BACKOFF)
                    .build()
                    .layer(
                        resilience_breaker()
                            .layer(resilience_time_limiter().layer(adapter_service!()))
                    ),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            // Its rate limiter (default fixed window, rejection mode) and
            // bulkhead (waits for a place, no limit on the wait), neither
            // ever reached.
            $case!(
                "tower-resilience: rate limiter",
                tower_resilience::ratelimiter::RateLimiterLayer::builder()
                    .limit_for_period(4_000_000_000)
                    .refresh_period(Duration::from_secs(1))
                    .build()
                    .expect("a rate limiter")
                    .layer(adapter_service!()),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );
            $case!(
                "tower-resilience: bulkhead",
                tower_resilience::bulkhead::BulkheadLayer::builder()
                    .max_concurrent_calls(1_000)
                    .build()
                    .expect("a bulkhead")
                    .layer(adapter_service!()),
                |s, i| {
                    let ready = s.ready().await.expect("ready");
                    ready.call(black_box(i)).await.ok()
                }
            );

            $case!("failsafe: circuit breaker", failsafe_breaker(), |s, i| s
                .call(FAST.timeout_only(black_box(i)))
                .await
                .ok());
            $case!("recloser: circuit breaker", recloser_breaker(), |s, i| s
                .call(FAST.timeout_only(black_box(i)))
                .await
                .ok());
            $case!("backon: retry", backon_backoff(), |s, i| {
                (|| FAST.timeout_only(black_box(i))).retry(s).await.ok()
            });

            // The bare limiters, outside any call: the same quota (one call
            // per nanosecond, a burst of a million), never spent.
            $case!(
                "limiter alone: seawall RateLimiter::try_acquire",
                Arc::new(seawall::rate::RateLimiter::new(
                    "bench",
                    &RatePolicy::new(1_000_000_000, Duration::from_secs(1)).with_burst(1_000_000),
                )),
                |s, _i| s.try_acquire().is_ok()
            );
            $case!(
                "limiter alone: governor RateLimiter::check",
                Arc::new(governor::RateLimiter::direct(
                    governor::Quota::per_second(NonZeroU32::new(1_000_000_000).expect("not zero"))
                        .allow_burst(NonZeroU32::new(1_000_000).expect("not zero")),
                )),
                |s, _i| s.check().is_ok()
            );
        };
    }

    let mut group = c.benchmark_group("one task");
    // First the case's allocations per call over `COUNTED` calls (after a
    // warm-up that builds whatever is built once), then the timed case:
    // `iterations` calls made one after another on the runtime, the
    // process's CPU time per call.
    macro_rules! one_task {
        ($name:expr, $state:expr, |$s:ident, $i:ident| $body:expr) => {{
            #[allow(unused_mut)]
            let mut $s = {
                let _entered = one.enter();
                $state
            };
            let allocations = one.block_on(async {
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
                    one.block_on(async {
                        let start = cpu_time();
                        for $i in 0..iterations {
                            black_box($body);
                        }
                        cpu_time() - start
                    })
                });
            });
        }};
    }
    every_case!(one_task);
    // tower's `RateLimit` keeps its budget in the service value, so it is in
    // the one-task group only. It builds its sleep when it is built: in a
    // runtime. The same rate as seawall's method, timeout outermost, as
    // `ServiceBuilder::new().timeout(..).rate_limit(..)` builds it.
    one_task!(
        "tower: Timeout + RateLimit",
        tower::timeout::Timeout::new(
            tower::limit::RateLimit::new(
                adapter_service!(),
                tower::limit::rate::Rate::new(4_000_000_000, Duration::from_secs(1)),
            ),
            TIMEOUT,
        ),
        |s, i| {
            let ready = s.ready().await.expect("ready");
            ready.call(black_box(i)).await.ok()
        }
    );
    group.finish();

    let mut group = c.benchmark_group("64 tasks");
    // `TASKS` tasks, each making its share of `iterations` calls (rounded
    // up) on its clone of the case's state; the figure is the process's CPU
    // time per call (the bench's thread only waits meanwhile).
    macro_rules! many_tasks {
        ($name:expr, $state:expr, |$s:ident, $i:ident| $body:expr) => {{
            let state = {
                let _entered = many.enter();
                $state
            };
            group.bench_function($name, |b| {
                b.iter_custom(|iterations| {
                    let per_task = iterations.div_ceil(TASKS);
                    let start = cpu_time();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            #[allow(unused_mut)]
                            let mut $s = state.clone();
                            many.spawn(async move {
                                for $i in 0..per_task {
                                    black_box($body);
                                }
                            })
                        })
                        .collect();
                    many.block_on(async {
                        for task in tasks {
                            task.await.expect("a task");
                        }
                    });
                    let spent = cpu_time() - start;
                    let ran = (per_task * TASKS) as f64;
                    spent.mul_f64(iterations as f64 / ran)
                });
            });
        }};
    }
    every_case!(many_tasks);
    group.finish();
}

/// The CPU time this process has used, every thread's.
fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a pointer to a
    // live, writable one and reads nothing else.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "the process CPU clock is readable");
    Duration::new(
        u64::try_from(now.tv_sec).expect("not negative"),
        u32::try_from(now.tv_nsec).expect("under a second"),
    )
}

/// tower-resilience's time limiter: 1 s, the running call cancelled on a
/// timeout (its default), as seawall's attempt timeout.
fn resilience_time_limiter() -> tower_resilience::timelimiter::TimeLimiterLayer {
    tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .build()
}

/// tower-resilience's breaker with seawall's default rule: a count window
/// of 100 calls judged from 100, opening at a 50 % failure rate, for 30 s.
fn resilience_breaker() -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(100)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()
        .expect("a circuit breaker")
}

/// failsafe has no count window: the nearest rule to seawall's default is
/// a success rate of at least 50 % over 30 s judged from 100 calls, or 10
/// failures in a row (seawall's `consecutive_failures` default), open for
/// 30 s.
fn failsafe_breaker() -> failsafe::StateMachine<
    failsafe::failure_policy::OrElse<
        failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
        failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    >,
    (),
> {
    let open_for = failsafe::backoff::constant(Duration::from_secs(30));
    failsafe::Config::new()
        .failure_policy(
            failsafe::failure_policy::success_rate_over_time_window(
                0.5,
                100,
                Duration::from_secs(30),
                open_for.clone(),
            )
            .or_else(failsafe::failure_policy::consecutive_failures(10, open_for)),
        )
        .build()
}

/// recloser's breaker: its defaults are seawall's rule (a ring of 100
/// calls, 50 %, 30 s open).
fn recloser_breaker() -> recloser::AsyncRecloser {
    recloser::AsyncRecloser::from(
        recloser::Recloser::custom()
            .error_rate(0.5)
            .closed_len(100)
            .open_wait(Duration::from_secs(30))
            .build(),
    )
}

/// backon's exponential backoff as seawall's default: three attempts (two
/// retries), 100 ms doubling up to 5 s, jittered; tokio's sleep.
fn backon_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF)
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(2)
        .with_jitter()
}

criterion_group!(benches, bench);
criterion_main!(benches);
