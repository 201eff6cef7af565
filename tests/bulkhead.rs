//! `bulkhead(max = .., queue = .., max_wait = ..)`: at most `max` attempts
//! in flight to the vendor, `queue` more waiting in order, the rest refused
//! without calling the vendor; a place is given back however the attempt
//! ends (a panic too), and a cancelled waiter leaves the queue. On tokio's
//! paused clock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use seawall::{Resilient, Runtime, contract};
use support::VendorError;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A vendor that takes a second per request and records how many it had
/// in flight at most, and when each started.
#[derive(Clone, Default)]
struct Slow {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    started: Arc<std::sync::Mutex<Vec<Duration>>>,
    panic_next: Arc<std::sync::atomic::AtomicBool>,
    invoices: Arc<std::sync::Mutex<Vec<(u32, Duration)>>>,
}

impl Slow {
    async fn request(&self, origin: Instant) -> Result<u32, VendorError> {
        self.started.lock().unwrap().push(origin.elapsed());
        if self.panic_next.swap(false, SeqCst) {
            panic!("the adapter could not parse the answer");
        }
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(now as u32)
    }
}

#[contract(name = "erp")]
pub trait Erp {
    #[integration(read, timeout = "5s", bulkhead(max = 2, queue = 1, max_wait = "2s"))]
    async fn order(&self, origin: Instant) -> Result<u32, VendorError>;

    #[integration(read, timeout = "5s", bulkhead(max = 1, queue = 1, max_wait = "500ms"))]
    async fn stock(&self, origin: Instant) -> Result<u32, VendorError>;

    #[integration(
        read,
        timeout = "1s",
        deadline = "2500ms",
        retry(attempts = 2, base = "100ms", cap = "1s", jitter = "none"),
        bulkhead(max = 1, queue = 2, max_wait = "2s")
    )]
    async fn invoice(&self, origin: Instant, caller: u32) -> Result<u32, VendorError>;
}

impl Erp for Slow {
    async fn order(&self, origin: Instant) -> Result<u32, VendorError> {
        self.request(origin).await
    }

    async fn stock(&self, origin: Instant) -> Result<u32, VendorError> {
        self.request(origin).await
    }

    /// The first request fails after 900 ms (503); the others take ten
    /// seconds (and time out).
    async fn invoice(&self, origin: Instant, caller: u32) -> Result<u32, VendorError> {
        let first = {
            let mut invoices = self.invoices.lock().unwrap();
            invoices.push((caller, origin.elapsed()));
            invoices.len() == 1
        };
        if first {
            tokio::time::sleep(MS * 900).await;
            return Err(VendorError::status(503));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(caller)
    }
}

fn full(error: &VendorError) -> Option<bool> {
    match error.seawall() {
        Some(seawall::Error::BulkheadFull { waited, .. }) => Some(*waited),
        _ => None,
    }
}

fn erp() -> (Runtime, Slow, Arc<Resilient<Slow>>) {
    let runtime = Runtime::in_memory();
    let vendor = Slow::default();
    let erp = Arc::new(Resilient::new(vendor.clone(), &runtime));
    (runtime, vendor, erp)
}

#[tokio::test(start_paused = true)]
async fn at_most_max_in_flight_the_queue_waits_in_order_the_rest_are_refused_at_once() {
    let (runtime, vendor, erp) = erp();
    let origin = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let erp = erp.clone();
            tokio::spawn(async move { (erp.order(origin).await, origin.elapsed()) })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    // Two at once, the third once a place was free, the fourth refused at
    // once: the queue (1) was full.
    assert_eq!(vendor.most.load(SeqCst), 2);
    assert_eq!(
        *vendor.started.lock().unwrap(),
        [Duration::ZERO, Duration::ZERO, MS * 1000]
    );
    let refused: Vec<_> = answers.iter().filter(|(a, _)| a.is_err()).collect();
    let [(refused, at)] = &refused[..] else {
        panic!("one refused: {answers:?}");
    };
    assert_eq!(full(refused.as_ref().unwrap_err()), Some(false));
    assert_eq!(*at, Duration::ZERO, "refused at once");
    let status = runtime
        .health()
        .bulkheads
        .into_iter()
        .find(|b| b.name == "erp.order")
        .unwrap();
    assert_eq!(
        (
            status.in_flight,
            status.waiting,
            status.admitted,
            status.queued,
            status.refused
        ),
        (0, 0, 3, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_waits_past_max_wait_is_refused_without_calling_the_vendor() {
    let (_runtime, vendor, erp) = erp();
    let origin = Instant::now();
    let first = tokio::spawn({
        let erp = erp.clone();
        async move { erp.stock(origin).await }
    });
    tokio::task::yield_now().await;
    let refused = erp.stock(origin).await.unwrap_err();
    assert_eq!(full(&refused), Some(true), "{refused}");
    assert_eq!(origin.elapsed(), MS * 500, "after its wait");
    first.await.unwrap().unwrap();
    assert_eq!(vendor.started.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue() {
    let (_runtime, vendor, erp) = erp();
    let origin = Instant::now();
    let first = tokio::spawn({
        let erp = erp.clone();
        async move { erp.stock(origin).await }
    });
    tokio::task::yield_now().await;
    // Waits, then its caller gives up.
    assert!(
        tokio::time::timeout(MS * 100, erp.stock(origin))
            .await
            .is_err()
    );
    // The queue has room again: this one waits and gets the place... within
    // 500 ms it does not (the first holds it for 1 s), but it is queued,
    // not refused at once.
    let started = Instant::now();
    let refused = erp.stock(origin).await.unwrap_err();
    assert_eq!(full(&refused), Some(true), "it waited: {refused}");
    assert_eq!(started.elapsed(), MS * 500);
    first.await.unwrap().unwrap();
    assert_eq!(vendor.started.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_panics_gives_its_place_back() {
    let (runtime, vendor, erp) = erp();
    vendor.panic_next.store(true, SeqCst);
    let origin = Instant::now();
    let panicked = tokio::spawn({
        let erp = erp.clone();
        async move { erp.stock(origin).await }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    // The place is free: this call goes at once.
    assert_eq!(erp.stock(origin).await.unwrap(), 1);
    assert_eq!(vendor.started.lock().unwrap().len(), 2);
    let status = runtime
        .health()
        .bulkheads
        .into_iter()
        .find(|b| b.name == "erp.stock")
        .unwrap();
    assert_eq!(status.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_a_place_ends_at_the_deadline_when_it_is_nearer_than_max_wait() {
    let (_runtime, vendor, erp) = erp();
    let origin = Instant::now();
    // Two other callers, at 0.5 s and 0.95 s, wait for the place and hold it
    // in turn, from 0.9 s and from 1.9 s, for a second each (their timeout).
    let others: Vec<_> = [(1, MS * 500), (2, MS * 950)]
        .into_iter()
        .map(|(caller, at)| {
            let erp = erp.clone();
            tokio::spawn(async move {
                tokio::time::sleep(at).await;
                erp.invoice(origin, caller).await
            })
        })
        .collect();
    // This call's first attempt fails at 0.9 s; its retry (at 1 s) queues
    // behind the second caller: its wait ends at its deadline (2.5 s), not
    // after max_wait (3 s), and the retry never reaches the vendor.
    let refused = erp.invoice(origin, 0).await.unwrap_err();
    assert_eq!(full(&refused), Some(true), "{refused}");
    assert_eq!(origin.elapsed(), MS * 2500, "at its deadline");
    for other in others {
        let _ = other.await.unwrap();
    }
    let invoices = vendor.invoices.lock().unwrap().clone();
    assert_eq!(
        invoices[..3],
        [(0, Duration::ZERO), (1, MS * 900), (2, MS * 1900)]
    );
    assert_eq!(
        invoices.iter().filter(|(caller, _)| *caller == 0).count(),
        1
    );
}

#[cfg(feature = "metrics")]
#[test]
fn waits_rejections_and_the_limit_go_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tokio.block_on(async {
            let (_runtime, _vendor, erp) = erp();
            let origin = Instant::now();
            // Two in flight, one waits, one is refused.
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    let erp = erp.clone();
                    tokio::spawn(async move { erp.order(origin).await })
                })
                .collect();
            for call in calls {
                let _ = call.await.unwrap();
            }
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "bulkhead" && l.value() == "erp.order")
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        value("seawall_bulkhead_waits_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("seawall_bulkhead_rejections_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("seawall_bulkhead_limit"),
        Some(&DebugValue::Gauge(2.0.into()))
    );
}
