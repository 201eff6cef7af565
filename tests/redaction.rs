//! Redacted arguments of queued writes at rest and in every message: sealed
//! on disk with the application's key, opened only for delivery, shown as
//! `<redacted>`, never quoted in a dead letter's reason; refused without a
//! key unless plaintext is accepted; opened after a key rotation.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::wal::TicketStatus;
use seawall::{Delivery, Resilient, Runtime, SealingKey};
use support::VendorError;

const CARD: &str = "4111222233334444";

mod v1 {
    use super::*;

    #[seawall::contract(name = "payments")]
    pub trait Payments {
        #[integration(write, timeout = "1s", idempotent(key = [order]), fallback = queue,
                      redact = [card])]
        async fn charge(&self, order: u32, card: &str) -> Result<Delivery<()>, VendorError>;
    }

    /// A processor that is down, or up and recording the cards it charged.
    #[derive(Clone, Default)]
    pub struct Processor {
        pub up: Arc<AtomicBool>,
        pub charged: Arc<Mutex<Vec<String>>>,
    }

    impl Payments for Processor {
        async fn charge(&self, _order: u32, card: &str) -> Result<Delivery<()>, VendorError> {
            if !self.up.load(Ordering::SeqCst) {
                return Err(VendorError::status(503));
            }
            self.charged.lock().unwrap().push(card.to_owned());
            Ok(Delivery::Done(()))
        }
    }
}

/// The same contract after a deploy changed the card's type.
mod v2 {
    use super::*;

    #[seawall::contract(name = "payments")]
    pub trait Payments {
        #[integration(write, timeout = "1s", idempotent(key = [order]), fallback = queue,
                      redact = [card])]
        async fn charge(&self, order: u32, card: u64) -> Result<Delivery<()>, VendorError>;
    }

    pub struct Processor;

    impl Payments for Processor {
        async fn charge(&self, _order: u32, _card: u64) -> Result<Delivery<()>, VendorError> {
            Ok(Delivery::Done(()))
        }
    }
}

use v1::Payments as _;
use v2::Payments as _;

/// The first queued charge's ticket.
async fn first_pending(runtime: &Runtime) -> seawall::wal::Ticket {
    let log = runtime.write_ahead_log();
    log.pending("payments", 1).await.unwrap()[0].0
}

/// Waits (10 s at most) for `ticket` to settle.
async fn settled(runtime: &Runtime, ticket: seawall::wal::Ticket) -> Option<TicketStatus> {
    let settled = runtime.write_ahead_log().settled(ticket);
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("settled within 10 s")
        .unwrap()
}

fn key(id: &str, byte: u8) -> SealingKey {
    SealingKey::new(id, [byte; 32])
}

fn file_holds(dir: &Path, text: &str) -> bool {
    let bytes = std::fs::read(dir.join("seawall.redb")).unwrap();
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

/// Queues one charge through a runtime built by `build` in `dir`, with the
/// processor down.
async fn queue_charge(runtime: &Runtime) -> seawall::wal::Ticket {
    let payments = Resilient::new(v1::Processor::default(), runtime);
    let queued = payments.charge(7, CARD).await.unwrap();
    queued.ticket().expect("queued")
}

#[tokio::test]
async fn a_redacted_argument_is_sealed_on_disk_and_opened_only_for_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let ticket = {
        let runtime = Runtime::builder()
            .sealing_key(key("2026-11", 1))
            .embedded(dir.path())
            .unwrap();
        let ticket = queue_charge(&runtime).await;
        let pending = runtime
            .write_ahead_log()
            .pending("payments", 10)
            .await
            .unwrap();
        let shown = format!("{:?}", pending[0].1);
        assert!(
            shown.contains("<redacted>") && !shown.contains(CARD),
            "{shown}"
        );
        ticket
    };
    assert!(
        !file_holds(dir.path(), CARD),
        "the card is not on disk in plaintext"
    );

    let runtime = Runtime::builder()
        .sealing_key(key("2026-11", 1))
        .embedded(dir.path())
        .unwrap();
    let processor = v1::Processor::default();
    processor.up.store(true, Ordering::SeqCst);
    let payments = Resilient::new(processor.clone(), &runtime);
    payments.resume_queued();
    let status = settled(&runtime, ticket).await;
    assert!(
        matches!(status, Some(TicketStatus::Delivered { .. })),
        "{status:?}"
    );
    assert_eq!(
        *processor.charged.lock().unwrap(),
        [CARD],
        "the vendor gets the card"
    );
}

#[tokio::test]
async fn without_a_key_a_durable_runtime_refuses_before_calling_the_vendor() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let processor = v1::Processor::default();
    processor.up.store(true, Ordering::SeqCst);
    let payments = Resilient::new(processor.clone(), &runtime);
    let error = payments.charge(7, CARD).await.unwrap_err();
    let Some(seawall::Error::Unrepresentable { reason, .. }) = error.seawall() else {
        panic!("{error:?}");
    };
    assert!(
        reason.contains("sealing_key") && reason.contains("plaintext_redacted"),
        "{reason}"
    );
    assert!(!error.to_string().contains(CARD));
    assert!(processor.charged.lock().unwrap().is_empty(), "not called");
    drop(payments);
    drop(runtime);

    // Accepting plaintext is a choice the application makes.
    let runtime = Runtime::builder()
        .plaintext_redacted()
        .embedded(dir.path())
        .unwrap();
    queue_charge(&runtime).await;
    drop(runtime);
    assert!(file_holds(dir.path(), CARD));

    // In memory nothing is at rest: no key needed.
    let runtime = Runtime::in_memory();
    queue_charge(&runtime).await;
}

#[tokio::test]
async fn a_rotated_key_opens_old_writes_and_a_missing_one_is_named_not_shown() {
    let rotated = tempfile::tempdir().unwrap();
    let lost = tempfile::tempdir().unwrap();
    for dir in [rotated.path(), lost.path()] {
        let runtime = Runtime::builder()
            .sealing_key(key("2026-10", 1))
            .embedded(dir)
            .unwrap();
        queue_charge(&runtime).await;
    }

    // New key, old one kept for what was queued with it: delivered.
    let runtime = Runtime::builder()
        .sealing_key(key("2026-11", 2))
        .previous_sealing_key(key("2026-10", 1))
        .embedded(rotated.path())
        .unwrap();
    let processor = v1::Processor::default();
    processor.up.store(true, Ordering::SeqCst);
    let payments = Resilient::new(processor.clone(), &runtime);
    let ticket = first_pending(&runtime).await;
    payments.resume_queued();
    let status = settled(&runtime, ticket).await;
    assert!(matches!(status, Some(TicketStatus::Delivered { .. })));
    assert_eq!(*processor.charged.lock().unwrap(), [CARD]);

    // The old key dropped too early: a dead letter that names the key, and
    // still keeps the card sealed.
    let runtime = Runtime::builder()
        .sealing_key(key("2026-11", 2))
        .embedded(lost.path())
        .unwrap();
    let payments = Resilient::new(v1::Processor::default(), &runtime);
    let ticket = first_pending(&runtime).await;
    payments.resume_queued();
    let log = runtime.write_ahead_log();
    let status = settled(&runtime, ticket).await;
    let Some(TicketStatus::Dead { error, .. }) = status else {
        panic!("{status:?}");
    };
    assert!(
        error.contains("key `2026-10`") && !error.contains(CARD),
        "{error}"
    );
    let letters = log.dead_letters(10).await.unwrap();
    assert!(!format!("{letters:?}").contains(CARD));
}

#[tokio::test]
async fn a_dead_letter_after_a_type_change_does_not_quote_the_redacted_value() {
    let dir = tempfile::tempdir().unwrap();
    {
        let runtime = Runtime::builder()
            .sealing_key(key("k", 1))
            .embedded(dir.path())
            .unwrap();
        queue_charge(&runtime).await;
    }
    let runtime = Runtime::builder()
        .sealing_key(key("k", 1))
        .embedded(dir.path())
        .unwrap();
    let payments = Resilient::new(v2::Processor, &runtime);
    let ticket = first_pending(&runtime).await;
    payments.resume_queued();
    let status = settled(&runtime, ticket).await;
    let Some(TicketStatus::Dead { error, .. }) = status else {
        panic!("{status:?}");
    };
    assert!(
        error.contains("`card` (redacted)") && !error.contains(CARD),
        "{error}"
    );
}
