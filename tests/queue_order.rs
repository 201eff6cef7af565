//! `fallback = queue(order_by = [..])`: queued writes keep their order per
//! ordering key instead of per contract, so a key whose vendor account is
//! still failing, or slow, never holds back the others. On tokio's paused
//! clock, with the in-memory log.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::wal::TicketStatus;
use seawall::{Delivery, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use support::VendorError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub account: String,
    pub seq: u32,
}

#[contract(name = "crm")]
pub trait Crm {
    #[integration(write, timeout = "30s", idempotent(key = [note.account, note.seq]),
                  fallback = queue(order_by = [note.account]))]
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError>;
}

/// A CRM whose accounts fail (503) while listed in `down`, and answer
/// after `slow` for the accounts listed there.
#[derive(Clone, Default)]
struct Vendor {
    down: Arc<Mutex<Vec<String>>>,
    slow: Arc<Mutex<HashMap<String, Duration>>>,
    /// Notes taken, in the order the vendor took them: (account, seq).
    taken: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Vendor {
    fn set_down(&self, accounts: &[&str]) {
        *self.down.lock().unwrap() = accounts.iter().map(|a| (*a).to_owned()).collect();
    }

    fn taken_for(&self, account: &str) -> Vec<u32> {
        self.taken
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == account)
            .map(|(_, seq)| *seq)
            .collect()
    }
}

impl Crm for Vendor {
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError> {
        let slow = self.slow.lock().unwrap().get(&note.account).copied();
        if let Some(slow) = slow {
            tokio::time::sleep(slow).await;
        }
        if self.down.lock().unwrap().contains(&note.account) {
            return Err(VendorError::status(503));
        }
        self.taken
            .lock()
            .unwrap()
            .push((note.account.clone(), note.seq));
        Ok(note.seq.into())
    }
}

fn note(account: &str, seq: u32) -> Note {
    Note {
        account: account.to_owned(),
        seq,
    }
}

/// Queues notes 1..=n for each account, interleaved, while every account
/// is down.
async fn queue_notes(
    crm: &Resilient<Vendor>,
    vendor: &Vendor,
    accounts: &[&str],
    n: u32,
) -> Vec<seawall::wal::Ticket> {
    vendor.set_down(accounts);
    let mut tickets = Vec::new();
    for seq in 1..=n {
        for account in accounts {
            let answer = Crm::add_note(crm, &note(account, seq))
                .await
                .expect("queued");
            tickets.push(answer.ticket().expect("queued while down"));
        }
    }
    tickets
}

#[tokio::test(start_paused = true)]
async fn a_failing_account_holds_back_only_its_own_notes() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let crm = Resilient::new(vendor.clone(), &runtime);
    queue_notes(&crm, &vendor, &["acme", "globex", "initech"], 5).await;
    // Every account recovers but acme.
    vendor.set_down(&["acme"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(vendor.taken_for("globex"), [1, 2, 3, 4, 5]);
    assert_eq!(vendor.taken_for("initech"), [1, 2, 3, 4, 5]);
    assert_eq!(vendor.taken_for("acme"), Vec::<u32>::new());
    // A new note for globex goes straight to the vendor: nothing of its
    // key is queued ahead of it, though acme's are.
    let answer = Crm::add_note(&crm, &note("globex", 6)).await.unwrap();
    assert_eq!(answer, Delivery::Done(6));
    // A new note for acme queues behind acme's.
    vendor.set_down(&[]);
    let answer = Crm::add_note(&crm, &note("acme", 6)).await.unwrap();
    assert!(answer.is_queued(), "{answer:?}");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(vendor.taken_for("acme"), [1, 2, 3, 4, 5, 6]);
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_account_does_not_hold_back_the_others_and_order_is_kept_per_account() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let crm = Resilient::new(vendor.clone(), &runtime);
    let tickets = queue_notes(&crm, &vendor, &["acme", "globex"], 4).await;
    vendor
        .slow
        .lock()
        .unwrap()
        .insert("acme".into(), Duration::from_secs(10));
    vendor.set_down(&[]);
    // The drain's first round starts a second after the outage's writes
    // (its first backoff); globex's four notes are taken at once, while
    // acme's first note takes 10 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(vendor.taken_for("globex"), [1, 2, 3, 4]);
    assert!(vendor.taken_for("acme").is_empty());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(vendor.taken_for("acme"), [1, 2, 3, 4]);
    for ticket in tickets {
        assert!(matches!(
            runtime.write_ahead_log().status(ticket).await.unwrap(),
            Some(TicketStatus::Delivered { .. })
        ));
    }
}

#[contract(name = "plain")]
pub trait Plain {
    #[integration(write, timeout = "30s", idempotent(key = [note.account, note.seq]),
                  fallback = queue)]
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError>;
}

impl Plain for Vendor {
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError> {
        Crm::add_note(self, note).await
    }
}

/// Without `order_by` the contract keeps one order: a failing account
/// holds back every note queued after its own.
#[tokio::test(start_paused = true)]
async fn without_order_by_one_failing_account_holds_back_the_contract() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let plain = Resilient::new(vendor.clone(), &runtime);
    vendor.set_down(&["acme", "globex"]);
    for seq in 1..=3 {
        for account in ["acme", "globex"] {
            let answer = Plain::add_note(&plain, &note(account, seq)).await.unwrap();
            assert!(answer.is_queued());
        }
    }
    vendor.set_down(&["acme"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(vendor.taken_for("globex").is_empty());
}

/// The ordering key is kept in the durable log: after a restart, the
/// writes left queued drain per account again, and a failing account
/// still holds back only its own.
#[cfg(feature = "embedded")]
#[tokio::test]
async fn ordering_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor::default();
    {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        let crm = Resilient::new(vendor.clone(), &runtime);
        queue_notes(&crm, &vendor, &["acme", "globex"], 3).await;
        let pending = runtime.write_ahead_log().pending("crm", 10).await.unwrap();
        assert_eq!(pending.len(), 6);
        assert_eq!(
            pending[0].1.order_key.as_deref(),
            Some("note.account=\"acme\"")
        );
    }
    vendor.set_down(&["acme"]);
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let crm = Resilient::new(vendor.clone(), &runtime);
    Crm::resume_queued(&crm);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while vendor.taken_for("globex").len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "globex was not delivered within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(vendor.taken_for("globex"), [1, 2, 3]);
    assert!(vendor.taken_for("acme").is_empty());
    assert_eq!(runtime.write_ahead_log().pending_count("crm"), 3);
}

/// A key whose writes take 20 s each never holds back writes of other
/// keys, also those queued while its lane is busy.
#[tokio::test(start_paused = true)]
async fn writes_of_other_keys_queued_while_a_slow_key_drains_go_first() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let crm = Resilient::new(vendor.clone(), &runtime);
    queue_notes(&crm, &vendor, &["acme"], 3).await;
    vendor
        .slow
        .lock()
        .unwrap()
        .insert("acme".into(), Duration::from_secs(20));
    vendor.set_down(&[]);
    // acme's lane starts its first 20-second write.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // globex fails once, so its note is queued while acme's lane is busy.
    vendor.set_down(&["globex"]);
    let answer = Crm::add_note(&crm, &note("globex", 1)).await.unwrap();
    assert!(answer.is_queued(), "{answer:?}");
    vendor.set_down(&[]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(vendor.taken_for("globex"), [1], "globex waited for acme");
    assert!(
        vendor.taken_for("acme").is_empty(),
        "acme's first write is still running"
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(vendor.taken_for("acme"), [1, 2, 3]);
}

#[contract(name = "tagged")]
pub trait Tagged {
    #[integration(write, timeout = "30s", idempotent(key = [id]),
                  fallback = queue(order_by = [tags]))]
    async fn tag(
        &self,
        id: u32,
        tags: &std::collections::BTreeMap<(u8, u8), String>,
    ) -> Result<Delivery<u32>, VendorError>;
}

impl Tagged for Vendor {
    async fn tag(
        &self,
        id: u32,
        _tags: &std::collections::BTreeMap<(u8, u8), String>,
    ) -> Result<Delivery<u32>, VendorError> {
        self.taken.lock().unwrap().push(("tagged".into(), id));
        Ok(id.into())
    }
}

/// An ordering value JSON cannot hold (a map keyed by tuples) fails the
/// call at once, naming it, before the vendor is called or anything queued.
#[tokio::test(start_paused = true)]
async fn an_ordering_value_json_cannot_hold_is_refused_before_the_call() {
    let runtime = Runtime::in_memory();
    let vendor = Vendor::default();
    let tagged = Resilient::new(vendor.clone(), &runtime);
    let tags = std::collections::BTreeMap::from([((1, 2), "vip".to_owned())]);
    let error = tagged.tag(1, &tags).await.expect_err("refused");
    assert!(
        matches!(
            error.seawall(),
            Some(seawall::Error::Unrepresentable { .. })
        ),
        "{error}"
    );
    assert!(
        vendor.taken.lock().unwrap().is_empty(),
        "the vendor was called"
    );
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);
}
