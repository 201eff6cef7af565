//! A full disk, for real: the runtime's directory on a small tmpfs, filled
//! until appends fail, then freed. Mounting needs root (CI and developer
//! machines run as root); elsewhere the test says it was skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use seawall::Runtime;
use seawall::wal::{QueuedWrite, TicketStatus};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this machine will not mount one (not root, no tmpfs).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?
            .success();
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn write(n: u64) -> QueuedWrite {
    QueuedWrite::new(
        "telephony",
        "route",
        format!("key-{n}"),
        serde_json::json!({ "number": n, "note": "x".repeat(2_000) }),
    )
}

/// Fills the disk with a file of `bytes`, to be deleted later.
fn filler(dir: &Path, bytes: usize) -> PathBuf {
    let path = dir.join("filler");
    std::fs::write(&path, vec![7u8; bytes]).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_fast_and_recovers_without_a_restart() {
    let Some(disk) = Tmpfs::mount("4m") else {
        eprintln!("skipped: this machine would not mount a tmpfs (the test needs root)");
        return;
    };
    let data = disk.path().join("data");
    let filler = filler(disk.path(), 1 << 20);
    let runtime = Runtime::embedded(&data).unwrap();
    let log = runtime.write_ahead_log();
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    runtime.subscribe(move |event| {
        if let seawall::Event::Store(change) = event {
            seen.lock().unwrap().push(change.degraded);
        }
    });

    // Queue until the disk is full (bounded: the disk holds far fewer).
    let mut acknowledged = Vec::new();
    let mut full = None;
    for n in 0..200_000 {
        match log.append(&write(n)).await {
            Ok(ticket) => acknowledged.push(ticket),
            Err(error) => {
                full = Some(error);
                break;
            }
        }
    }
    let full = full.expect("the tmpfs fills up");
    assert!(!acknowledged.is_empty());
    eprintln!("{} writes acknowledged, then: {full}", acknowledged.len());
    assert!(runtime.health().store_degraded, "health says so");
    let readiness = runtime.readiness();
    assert!(
        !readiness.ready,
        "a store that cannot write fails readiness"
    );
    assert!(
        readiness.blocking[0].contains("embedded store cannot write"),
        "{readiness:?}"
    );
    // While it is full, appends fail at once rather than each waiting on
    // a disk that cannot take them.
    let started = std::time::Instant::now();
    assert!(log.append(&write(1_000_000)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1));

    // Space comes back: within a few probes, without a restart, appends
    // are durable again.
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = None;
    for attempt in 0..100 {
        match log.append(&write(2_000_000 + attempt)).await {
            Ok(ticket) => {
                recovered = Some(ticket);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let recovered = recovered.expect("appends work again within 10 s of the space coming back");
    assert!(!runtime.health().store_degraded);
    assert!(runtime.readiness().ready, "ready again without a restart");
    assert_eq!(
        *changes.lock().unwrap(),
        [true, false],
        "subscribers were told it degraded, then recovered"
    );

    // Nothing acknowledged was lost, before or after.
    for ticket in acknowledged.iter().chain([&recovered]) {
        assert!(
            matches!(
                log.status(*ticket).await.unwrap(),
                Some(TicketStatus::Pending)
            ),
            "ticket {ticket}"
        );
    }
    drop(runtime);
    let runtime = Runtime::embedded(&data).unwrap();
    assert_eq!(
        runtime.write_ahead_log().pending_count("telephony"),
        acknowledged.len() as u64 + 1
    );
}

#[seawall::contract(name = "notes")]
pub trait Notes {
    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn add(&self, text: &str) -> Result<seawall::Delivery<()>, support::VendorError>;
}

mod support;

/// A vendor that is down until `up`, then counts the deliveries it takes.
#[derive(Clone, Default)]
struct Counting {
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    taken: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Notes for Counting {
    async fn add(&self, _text: &str) -> Result<seawall::Delivery<()>, support::VendorError> {
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(support::VendorError::status(503));
        }
        self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(seawall::Delivery::Done(()))
    }
}

/// Fills what is left of the disk (bounded by the tmpfs's size).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("rest");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_write_that_cannot_be_settled_is_resent_once_per_growing_backoff_step() {
    let Some(disk) = Tmpfs::mount("4m") else {
        eprintln!("skipped: this machine would not mount a tmpfs (the test needs root)");
        return;
    };
    let data = disk.path().join("data");
    let runtime = Runtime::embedded(&data).unwrap();
    let vendor = Counting::default();
    let notes = seawall::Resilient::new(vendor.clone(), &runtime);
    let ticket = notes
        .add("call back")
        .await
        .unwrap()
        .ticket()
        .expect("queued");
    // The disk fills up before the drain comes back (its first wait is 1 s),
    // then the vendor recovers: each delivery succeeds, each settle fails.
    let rest = fill(disk.path());
    vendor.up.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    let taken = vendor.taken.load(std::sync::atomic::Ordering::SeqCst);
    // Backoff 1 s, 2 s, 4 s: deliveries near 1, 2 and 4 s; a backoff that
    // restarted at 1 s before each settle would have sent it six times.
    assert!(
        (1..=3).contains(&taken),
        "{taken} deliveries in 6.5 s of settles failing"
    );
    // Space comes back: the next step delivers again (same key) and settles.
    std::fs::remove_file(rest).unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        runtime.write_ahead_log().settled(ticket),
    )
    .await
    .expect("settled once space is back")
    .unwrap();
    assert!(
        matches!(status, Some(TicketStatus::Delivered { .. })),
        "{status:?}"
    );
    eprintln!(
        "{} deliveries in all, {taken} while settles failed",
        vendor.taken.load(std::sync::atomic::Ordering::SeqCst)
    );
}
