//! What a whole resilient call costs over calling the adapter directly.
//!
//! `cargo bench -p seawall-bench --bench call`. Figures are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use seawall::{Classify, ErrorClass, Resilient, Runtime, contract};

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

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let seawall = Runtime::in_memory();
    let vendor = Resilient::new(Fast, &seawall);
    runtime.block_on(vendor.full(0)).expect("warm-up");
    // The same, on an embedded runtime: cached answers are also written to
    // disk behind the call.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Runtime::embedded(dir.path()).expect("the store opens");
    let on_disk = Resilient::new(Fast, &embedded);
    runtime.block_on(on_disk.cached(0)).expect("warm-up");

    // The full stack with its breaker shared by a fleet through Redis on
    // 127.0.0.1:6379, when it answers: the sync task runs beside the calls
    // (one round trip per 250 ms), the call path stays local.
    let fleet = redis_answers().then(|| {
        let redis = seawall::fleet::Redis::new("redis://127.0.0.1:6379/")
            .expect("a Redis URL")
            .prefix(format!("seawall-bench:{:x}", rand::random::<u64>()));
        let fleet = Runtime::builder().redis(redis).in_memory();
        let shared = Resilient::new(Fast, &fleet);
        runtime.block_on(async {
            shared.full(0).await.expect("warm-up");
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        });
        (fleet, shared)
    });

    let mut group = c.benchmark_group("one successful call");
    // Times `iterations` calls made one after another on the runtime.
    macro_rules! calls {
        ($name:expr, |$i:ident| $call:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for $i in 0..iterations {
                            black_box($call.await.ok());
                        }
                        start.elapsed()
                    })
                });
            });
        };
    }
    calls!("raw adapter call", |i| Fast.full(black_box(i)));
    calls!("resilient: timeout", |i| vendor.timeout_only(black_box(i)));
    calls!("resilient: timeout + rate limiter", |i| vendor
        .rated(black_box(i)));
    calls!("resilient: timeout + bulkhead", |i| vendor
        .bulkheaded(black_box(i)));
    calls!("resilient: timeout + hedge", |i| vendor
        .hedged(black_box(i)));
    calls!("resilient: timeout + breaker", |i| vendor
        .with_breaker(black_box(i)));
    calls!("resilient: timeout + retry + breaker", |i| vendor
        .full(black_box(i)));
    // 1 000 distinct keys, so the cache holds what it stores; on the
    // embedded runtime each is written to disk at most once a second.
    calls!("resilient: timeout + retry + breaker + cache", |i| vendor
        .cached(black_box(i % 1_000)));
    calls!(
        "resilient: timeout + retry + breaker + cache, embedded runtime",
        |i| on_disk.cached(black_box(i % 1_000))
    );
    if let Some((_, shared)) = &fleet {
        calls!(
            "resilient: timeout + retry + breaker, Redis-shared breaker",
            |i| shared.full(black_box(i))
        );
    } else {
        eprintln!("no Redis on 127.0.0.1:6379: the Redis-shared breaker is not measured");
    }
    // The full pipeline again, with a typical subscriber: `tracing`'s fmt
    // layer at INFO, writing every span and event (formatted) to a sink.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        calls!(
            "resilient: timeout + retry + breaker, INFO subscriber",
            |i| { vendor.full(black_box(i)) }
        );
    });
    group.finish();
}

fn redis_answers() -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect("127.0.0.1:6379") else {
        return false;
    };
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

criterion_group!(benches, bench);
criterion_main!(benches);
