//! Retention: an embedded runtime deletes what it no longer needs, and its
//! file stops growing. Settled log entries past the retention, idempotency
//! records past theirs and cached answers past `max_stale` are swept; dead
//! letters stay until an operator deals with them.
//!
//! Retention is wall-clock time (the stamps outlive the process), so the
//! tests use retentions of milliseconds and let that much real time pass.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use seawall::wal::{QueuedWrite, TicketStatus};
use seawall::{Cached, Resilient, Runtime, contract};
use support::VendorError;

const MS: Duration = Duration::from_millis(1);

/// Lets `by` of wall-clock time pass, so that stamps made before are older.
async fn age(by: Duration) {
    tokio::time::sleep(by).await;
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Writes per round: 500, or `SEAWALL_RETENTION_ROUND` (BENCHMARKS.md
/// measures 20 000 with a release build).
fn round_size() -> u32 {
    std::env::var("SEAWALL_RETENTION_ROUND")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}

#[tokio::test]
async fn settled_entries_are_swept_round_after_round_and_the_file_stops_growing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder()
        .settled_retention(MS)
        .embedded(dir.path())
        .unwrap();
    let log = runtime.write_ahead_log();
    let file = dir.path().join("seawall.redb");
    let mut sizes = Vec::new();
    let mut refused = Vec::new();
    let per_round = round_size();
    for round in 0..5u32 {
        for n in 0..per_round {
            let write = QueuedWrite::new(
                "telephony",
                "route",
                format!("key-{round}-{n}"),
                serde_json::json!({ "number": n, "to": "agent" }),
            );
            let ticket = log.append(&write).await.unwrap();
            let status = if n == 0 {
                refused.push(ticket);
                TicketStatus::Dead {
                    error: "422".into(),
                    at_ms: now_ms(),
                }
            } else {
                TicketStatus::Delivered {
                    answer: serde_json::json!("routed"),
                    at_ms: now_ms(),
                }
            };
            log.settle(ticket, status).await.unwrap();
        }
        age(MS * 5).await;
        let swept = runtime.sweep().await.unwrap();
        assert_eq!(
            swept.settled,
            u64::from(per_round),
            "round {round}: every settled entry"
        );
        sizes.push(std::fs::metadata(&file).unwrap().len());
    }
    eprintln!("{per_round} writes a round; file size after each round's sweep: {sizes:?}");
    // The dead letters stay, every round's.
    let letters = log.dead_letters(10).await.unwrap();
    assert_eq!(letters.iter().map(|(t, _)| *t).collect::<Vec<_>>(), refused);
    // After the first round the file reuses what the sweep freed.
    let settled_size = sizes[1];
    for (round, size) in sizes.iter().enumerate().skip(2) {
        assert!(
            (*size as f64) <= settled_size as f64 * 1.1,
            "round {round}: {size} bytes against {settled_size} after round 1 ({sizes:?})"
        );
    }
}

#[tokio::test]
async fn recent_entries_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    let write = QueuedWrite::new("telephony", "route", "key", serde_json::json!({}));
    let ticket = log.append(&write).await.unwrap();
    let delivered = TicketStatus::Delivered {
        answer: serde_json::json!(1),
        at_ms: now_ms(),
    };
    log.settle(ticket, delivered).await.unwrap();
    let swept = runtime.sweep().await.unwrap();
    assert_eq!(swept.settled, 0, "within the default 7 days");
    assert!(matches!(
        log.status(ticket).await.unwrap(),
        Some(TicketStatus::Delivered { .. })
    ));
    // In memory there is nothing to sweep.
    assert_eq!(
        Runtime::in_memory().sweep().await.unwrap(),
        seawall::Swept::default()
    );
}

#[contract(name = "billing")]
pub trait Billing {
    // Long enough for ten embedded writes and the repeat even while the
    // round test beside it keeps the disk busy (20 ms was not).
    #[integration(write, timeout = "1s", idempotent(store, retention = "500ms"))]
    async fn charge(&self, invoice: u32) -> Result<u32, VendorError>;

    // Long enough to outlive the reopen below even on a loaded machine (the
    // cache sweeps what has expired when it opens, before `sweep()` could
    // count it; 20 ms was not), short enough to pass within `age`.
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "400ms"))]
    async fn balance(&self, account: u32) -> Result<Cached<u32>, VendorError>;
}

#[derive(Default)]
struct Vendor {
    calls: Mutex<u32>,
}

impl Billing for Vendor {
    async fn charge(&self, invoice: u32) -> Result<u32, VendorError> {
        *self.calls.lock().unwrap() += 1;
        Ok(invoice)
    }

    async fn balance(&self, account: u32) -> Result<Cached<u32>, VendorError> {
        Ok(Cached::fresh(account))
    }
}

#[tokio::test]
async fn idempotency_records_and_cached_answers_past_their_retention_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let billing = Resilient::new(Vendor::default(), &runtime);
    for invoice in 0..10 {
        billing.charge(invoice).await.unwrap();
    }
    // Within the retention, a repeat replays.
    billing.charge(3).await.unwrap();
    assert_eq!(*billing.inner().calls.lock().unwrap(), 10);
    billing.balance(1).await.unwrap();
    drop(billing);
    drop(runtime);
    // The cached answer reached the disk (the runtime waited for its
    // writer when it closed); open again and let both retentions pass.
    let runtime = Runtime::embedded(dir.path()).unwrap();
    age(MS * 520).await;
    let swept = runtime.sweep().await.unwrap();
    assert_eq!(swept.idempotency_records, 10);
    assert_eq!(swept.cached_answers, 1);
    assert_eq!(runtime.sweep().await.unwrap(), seawall::Swept::default());
}
