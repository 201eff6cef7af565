//! The embedded store attacked on disk: random bytes written into the
//! database file, one record's JSON edited, the file emptied, replaced by
//! another database's, its manifest deleted. Opening never panics, nothing
//! acknowledged is dropped without a word, and every refusal names the file
//! and what to do.

mod support;

use std::path::Path;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use seawall::wal::{Ticket, TicketStatus};
use seawall::{Delivery, Resilient, Runtime, StoreError, contract};
use support::VendorError;

#[contract(name = "notes")]
pub trait Notes {
    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn add(&self, account: &str, text: &str) -> Result<Delivery<()>, VendorError>;
}

/// A vendor that is down, or up and recording what it was sent.
#[derive(Clone, Default)]
struct Vendor {
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Notes for Vendor {
    async fn add(&self, account: &str, _text: &str) -> Result<Delivery<()>, VendorError> {
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(VendorError::status(503));
        }
        self.received.lock().unwrap().push(account.to_owned());
        Ok(Delivery::Done(()))
    }
}

fn account(n: u32) -> String {
    format!("acct-{n:05}")
}

/// Queues `count` notes into a fresh embedded runtime in `dir` while the
/// vendor is down; the runtime is closed on return.
async fn queue_notes(dir: &Path, count: u32) -> Vec<Ticket> {
    let runtime = Runtime::embedded(dir).unwrap();
    let notes = Resilient::new(Vendor::default(), &runtime);
    let mut tickets = Vec::new();
    for n in 0..count {
        let queued = notes.add(&account(n), "called back").await.unwrap();
        tickets.push(queued.ticket().expect("queued"));
    }
    tickets
}

fn database(dir: &Path) -> std::path::PathBuf {
    dir.join("seawall.redb")
}

#[tokio::test]
async fn an_emptied_store_is_refused_until_told_to_start_afresh() {
    let dir = tempfile::tempdir().unwrap();
    queue_notes(dir.path(), 5).await;
    std::fs::write(database(dir.path()), b"").unwrap();

    let error = Runtime::embedded(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Replaced { .. }), "{error:?}");
    assert!(
        message.contains("seawall.redb")
            && message.contains("holds no seawall database")
            && message.contains("accept_new_store"),
        "{message}"
    );
    // Refusing changed nothing: asked again, it refuses again.
    assert!(matches!(
        Runtime::embedded(dir.path()),
        Err(StoreError::Replaced { .. })
    ));

    let runtime = Runtime::builder()
        .accept_new_store()
        .embedded(dir.path())
        .unwrap();
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
    drop(runtime);
    // From then on the new database is the directory's.
    Runtime::embedded(dir.path()).expect("the accepted database");
}

#[tokio::test]
async fn another_services_database_copied_in_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    queue_notes(ours.path(), 2).await;
    queue_notes(theirs.path(), 3).await;
    std::fs::copy(database(theirs.path()), database(ours.path())).unwrap();

    let error = Runtime::embedded(ours.path()).unwrap_err();
    assert!(matches!(error, StoreError::Replaced { .. }), "{error:?}");
    assert!(
        error.to_string().contains("copied from elsewhere"),
        "{error}"
    );
}

#[tokio::test]
async fn a_deleted_manifest_is_written_again_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    queue_notes(dir.path(), 4).await;
    let manifest = dir.path().join("seawall.id");
    let before = std::fs::read_to_string(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();

    let runtime = Runtime::embedded(dir.path()).unwrap();
    assert_eq!(runtime.write_ahead_log().pending_count("notes"), 4);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), before);

    drop(runtime);
    std::fs::write(&manifest, "not json").unwrap();
    let error = Runtime::embedded(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("seawall.id: not a seawall manifest"),
        "{error}"
    );
}

#[tokio::test]
async fn a_record_edited_on_disk_is_quarantined_and_the_other_writes_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = queue_notes(dir.path(), 20).await;

    // Break the JSON of the eighth write: its first key loses its quote.
    let path = database(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let marker = account(7);
    let at = find(&bytes, marker.as_bytes()).expect("the record is on disk as written");
    let start = bytes[..at]
        .windows(2)
        .rposition(|pair| pair == b"{\"")
        .expect("the record's opening brace");
    bytes[start + 1] = b'X';
    std::fs::write(&path, &bytes).unwrap();

    let runtime = Runtime::embedded(dir.path()).expect("opens with the rest");
    let log = runtime.write_ahead_log();
    assert_eq!(log.pending_count("notes"), 19);
    assert_eq!(log.quarantined_count(), 1);
    assert_eq!(runtime.health().quarantined, 1);
    let set_aside = log.quarantined(10).await.unwrap();
    let [record] = &set_aside[..] else {
        panic!("one record set aside: {set_aside:?}");
    };
    assert_eq!(record.ticket, tickets[7]);
    assert!(
        record.reason.contains("table `wal`") && record.reason.contains(&tickets[7].to_string()),
        "{}",
        record.reason
    );
    assert!(
        find(&record.bytes, marker.as_bytes()).is_some(),
        "kept byte for byte"
    );

    // A second open finds the quarantine as it was, nothing set aside twice.
    drop(runtime);
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    assert_eq!(
        (log.pending_count("notes"), log.quarantined_count()),
        (19, 1)
    );

    // The other 19 are delivered, in order.
    let vendor = Vendor::default();
    vendor.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let notes = Resilient::new(vendor.clone(), &runtime);
    notes.resume_queued();
    for (n, ticket) in tickets.iter().enumerate().filter(|(n, _)| *n != 7) {
        let status = tokio::time::timeout(Duration::from_secs(10), log.settled(*ticket))
            .await
            .expect("delivered within 10 s")
            .unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "write {n}: {status:?}"
        );
    }
    let expected: Vec<String> = (0..20).filter(|n| *n != 7).map(account).collect();
    assert_eq!(*vendor.received.lock().unwrap(), expected);
}

#[tokio::test]
async fn random_damage_to_the_file_never_panics_the_opener() {
    let original = tempfile::tempdir().unwrap();
    queue_notes(original.path(), 20).await;
    let pristine = std::fs::read(database(original.path())).unwrap();
    let manifest = std::fs::read(original.path().join("seawall.id")).unwrap();
    let mut rng = SmallRng::seed_from_u64(15);
    let (mut opened, mut refused) = (0, 0);
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pristine.clone();
        let at = (bytes.len() / 12) * round + rng.random_range(0..bytes.len() / 12);
        let end = (at + 512).min(bytes.len());
        rng.fill(&mut bytes[at..end]);
        std::fs::write(database(dir.path()), &bytes).unwrap();
        std::fs::write(dir.path().join("seawall.id"), &manifest).unwrap();
        // The assertion is that this returns at all: a panic inside redb
        // would fail the test.
        match Runtime::embedded(dir.path()) {
            Ok(runtime) => {
                opened += 1;
                let log = runtime.write_ahead_log();
                assert!(log.pending_count("notes") + log.quarantined_count() <= 20);
            }
            Err(error) => {
                refused += 1;
                assert!(
                    error.to_string().contains("seawall.redb"),
                    "round {round}: the error names the file: {error}"
                );
            }
        }
    }
    eprintln!("random damage: {opened} opened, {refused} refused with an error naming the file");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn writes_of_a_contract_nothing_serves_become_dead_letters_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = queue_notes(dir.path(), 3).await;

    // Within the grace period (an hour by default) nothing happens.
    let runtime = Runtime::embedded(dir.path()).unwrap();
    assert_eq!(runtime.sweep().await.unwrap().orphaned_writes, 0);
    assert_eq!(runtime.write_ahead_log().pending_count("notes"), 3);
    drop(runtime);

    // A contract that is served keeps its writes queued (its vendor is
    // still down here), grace or not. (Another directory: this runtime's
    // drain may still be busy when the test ends.)
    let served = tempfile::tempdir().unwrap();
    queue_notes(served.path(), 3).await;
    let runtime = Runtime::builder()
        .orphan_grace(Duration::ZERO)
        .embedded(served.path())
        .unwrap();
    let notes = Resilient::new(Vendor::default(), &runtime);
    notes.resume_queued();
    assert_eq!(runtime.sweep().await.unwrap().orphaned_writes, 0);
    assert_eq!(runtime.write_ahead_log().dead_count("notes"), 0);

    // After the grace period, with no wrapper of `notes` (the deploy renamed
    // it), its writes are dead letters, named and reported, not a silent
    // stall.
    let runtime = Runtime::builder()
        .orphan_grace(Duration::ZERO)
        .embedded(dir.path())
        .unwrap();
    let reported = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reported.clone();
    runtime.subscribe(move |event| {
        if let seawall::Event::DeadLetter(letter) = event {
            seen.lock().unwrap().push(letter.ticket);
        }
    });
    let swept = runtime.sweep().await.unwrap();
    assert_eq!(swept.orphaned_writes, 3);
    let log = runtime.write_ahead_log();
    assert_eq!(log.pending_count("notes"), 0);
    assert_eq!(*reported.lock().unwrap(), tickets);
    let letters = log.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 3);
    assert!(
        letters[0]
            .1
            .error
            .contains("no wrapper of contract `notes`"),
        "{}",
        letters[0].1.error
    );
}
