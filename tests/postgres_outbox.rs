//! The outbox in PostgreSQL (`Runtime::builder().postgres(..)`): queued
//! writes live in the database, and every runtime that names its schema
//! drains them, a lane at a time under a lease, so that each write is
//! delivered once and in order per contract (or per ordering key) however
//! many drain.
//!
//! The shared server on 127.0.0.1:5432, each test in a schema of its own;
//! skipped (and says so) without it, unless `SEAWALL_REQUIRE_POSTGRES` is
//! set.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use seawall::postgres::Postgres;
use seawall::wal::{QueuedWrite, Ticket, TicketStatus};
use seawall::{Delivery, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::VendorError;
use support::postgres;

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

#[contract(name = "ledger")]
pub trait Ledger {
    #[integration(write, timeout = "30s", idempotent(key = [seq]), fallback = queue)]
    async fn post(&self, seq: u32) -> Result<Delivery<u32>, VendorError>;
}

/// What the vendor took: (runtime, contract, account, seq, when).
type Taken = Arc<Mutex<Vec<(&'static str, &'static str, String, u32, Instant)>>>;

#[derive(Clone)]
struct Vendor {
    runtime: &'static str,
    taken: Taken,
}

impl Crm for Vendor {
    async fn add_note(&self, note: &Note) -> Result<Delivery<u32>, VendorError> {
        if note.account == "a3" && note.seq == 13 {
            return Err(VendorError::status(422));
        }
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                self.runtime,
                "crm",
                note.account.clone(),
                note.seq,
                Instant::now(),
            ));
        Ok(note.seq.into())
    }
}

impl Ledger for Vendor {
    async fn post(&self, seq: u32) -> Result<Delivery<u32>, VendorError> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.runtime, "ledger", String::new(), seq, Instant::now()));
        Ok(seq.into())
    }
}

fn note(account: &str, seq: u32) -> QueuedWrite {
    let mut write = QueuedWrite::new(
        "crm",
        "add_note",
        format!("crm:{account}:{seq}"),
        json!({ "note": { "account": account, "seq": seq } }),
    );
    write.order_key = Some(format!("account={account:?}"));
    write
}

fn post(seq: u32) -> QueuedWrite {
    QueuedWrite::new(
        "ledger",
        "post",
        format!("ledger:{seq}"),
        json!({ "seq": seq }),
    )
}

fn config(url: &str, schema: &str) -> Postgres {
    Postgres::new(url)
        .unwrap()
        .schema(schema)
        .unwrap()
        .claim_lease(Duration::from_secs(3))
}

const ACCOUNTS: u32 = 10;
const NOTES_EACH: u32 = 20;
const POSTS: u32 = 100;

/// Two runtimes drain one outbox of 300 writes: each is delivered once,
/// in order per account and per contract, a refused one is a dead letter,
/// and statuses are read from either runtime. The ledger's lane is leased
/// by a process that died: nobody delivers it before its lease runs out,
/// then one of the two takes it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_drain_one_outbox_once_and_in_order() {
    let Some(url) = postgres::shared("two_runtimes_drain_one_outbox") else {
        return;
    };
    let schema = postgres::schema("outbox_two");
    let config = config(url, &schema);
    config.migrate().await.expect("the migration");
    let first = Runtime::builder().postgres(config.clone()).in_memory();
    let second = Runtime::builder().postgres(config.clone()).in_memory();
    assert!(first.write_ahead_log().is_shared() && first.write_ahead_log().is_durable());

    let mut tickets: HashMap<(String, u32), Ticket> = HashMap::new();
    for seq in 1..=NOTES_EACH {
        for account in 0..ACCOUNTS {
            let account = format!("a{account}");
            let ticket = first
                .write_ahead_log()
                .append(&note(&account, seq))
                .await
                .expect("an append");
            tickets.insert((account, seq), ticket);
        }
    }
    let mut posts = Vec::new();
    for seq in 1..=POSTS {
        posts.push(
            first
                .write_ahead_log()
                .append(&post(seq))
                .await
                .expect("an append"),
        );
    }
    assert_eq!(
        first.write_ahead_log().depth().await.unwrap(),
        u64::from(ACCOUNTS * NOTES_EACH + POSTS)
    );
    // The ledger's only lane, leased by a process that is gone.
    let pool = postgres::connect(url).await;
    sqlx::query(&format!(
        "INSERT INTO {schema}.outbox_lanes (contract, lane, owner, lease_until) \
         VALUES ('ledger', '', 'dead-process', now() + interval '2 seconds')"
    ))
    .execute(&pool)
    .await
    .expect("a lease of a dead process");
    let leased_at = Instant::now();

    let taken: Taken = Arc::default();
    let vendor = |runtime| Vendor {
        runtime,
        taken: taken.clone(),
    };
    // Each runtime offers to deliver both contracts.
    let wrappers = [
        Resilient::new(vendor("first"), &first),
        Resilient::new(vendor("second"), &second),
    ];
    for wrapper in &wrappers {
        Crm::resume_queued(wrapper);
        Ledger::resume_queued(wrapper);
    }

    let expected = (ACCOUNTS * NOTES_EACH - 1 + POSTS) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while taken.lock().unwrap().len() < expected
        || first.write_ahead_log().depth().await.unwrap() > 0
    {
        assert!(
            Instant::now() < deadline,
            "not drained within 60 s: {} of {expected} delivered",
            taken.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), expected, "a write was delivered twice");
    let mut seen = HashSet::new();
    for (_, contract, account, seq, _) in &taken {
        assert!(
            seen.insert((*contract, account.clone(), *seq)),
            "{contract} {account} {seq} delivered twice"
        );
    }
    for account in 0..ACCOUNTS {
        let account = format!("a{account}");
        let order: Vec<u32> = taken
            .iter()
            .filter(|(_, c, a, _, _)| *c == "crm" && *a == account)
            .map(|(_, _, _, seq, _)| *seq)
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "account {account} out of order");
    }
    let ledger: Vec<u32> = taken
        .iter()
        .filter(|(_, c, _, _, _)| *c == "ledger")
        .map(|(_, _, _, seq, _)| *seq)
        .collect();
    assert_eq!(
        ledger,
        (1..=POSTS).collect::<Vec<_>>(),
        "the ledger out of order"
    );
    let first_post = taken
        .iter()
        .filter(|(_, c, _, _, _)| *c == "ledger")
        .map(|(_, _, _, _, at)| *at)
        .min()
        .unwrap();
    assert!(
        first_post >= leased_at + Duration::from_millis(1_500),
        "the ledger was delivered while a dead process held its lease"
    );
    // (Which runtime delivers what depends on timing: with 11 lanes one
    // runtime may hold them all. tests/postgres_outbox_processes.rs, with
    // 109 lanes over three processes, checks that each takes part.)

    // Statuses, from either runtime; the refused note is a dead letter.
    let ticket = tickets[&("a1".to_owned(), 5)];
    for runtime in [&first, &second] {
        match runtime.write_ahead_log().status(ticket).await.unwrap() {
            Some(TicketStatus::Delivered { answer, .. }) => assert_eq!(answer, json!(5)),
            other => panic!("{other:?}"),
        }
    }
    let dead = tickets[&("a3".to_owned(), 13)];
    assert!(matches!(
        second.write_ahead_log().settled(dead).await.unwrap(),
        Some(TicketStatus::Dead { .. })
    ));
    let letters = second.write_ahead_log().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, dead);
    assert_eq!(letters[0].1.write.key, "crm:a3:13");
    assert_eq!(
        first
            .write_ahead_log()
            .status(Ticket(u64::MAX >> 2))
            .await
            .unwrap(),
        None
    );
    drop((wrappers, first, second));
    pool.close().await;
    postgres::drop_schema(url, &schema).await;
}

/// A CRM that is down.
struct Down;

impl Crm for Down {
    async fn add_note(&self, _note: &Note) -> Result<Delivery<u32>, VendorError> {
        Err(VendorError::status(503))
    }
}

/// With the database away (nothing listens on its port), a write the
/// vendor cannot take is not queued anywhere: the caller gets
/// `Error::NotQueued`, and the runtime's health says the database is away.
/// (Falling back to an embedded log is not built yet.)
#[tokio::test]
async fn with_the_database_away_a_write_is_not_queued() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Postgres::new(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap()
        .schema("seawall_away")
        .unwrap()
        .store_timeout(Duration::from_millis(300));
    let runtime = Runtime::builder().postgres(config).in_memory();
    let crm = Resilient::new(Down, &runtime);
    let error = crm
        .add_note(&Note {
            account: "a1".to_owned(),
            seq: 1,
        })
        .await
        .expect_err("nowhere to queue it");
    assert!(
        matches!(error.seawall(), Some(seawall::Error::NotQueued { .. })),
        "{error:?}"
    );
    let health = runtime.health().postgres.expect("a PostgreSQL runtime");
    assert!(!health.available, "{health:?}");
    assert!(runtime.write_ahead_log().depth().await.is_err());
}

/// With the database silent (its processes SIGSTOPped) the drain delivers
/// nothing and health and events say the database is away; once it answers
/// again, the drain resumes on its own and delivers every write, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_silent_the_drain_waits_and_resumes() {
    let Some(server) = postgres::Private::start("outbox_silent") else {
        return;
    };
    let config = Postgres::new(&server.url())
        .unwrap()
        .schema("seawall")
        .unwrap()
        .store_timeout(Duration::from_millis(300))
        .claim_lease(Duration::from_secs(1));
    config.migrate().await.expect("the migration");
    let runtime = Runtime::builder().postgres(config).in_memory();
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = events.clone();
        runtime.subscribe(move |event| {
            if let seawall::Event::Postgres(changed) = event {
                events.lock().unwrap().push(changed.available);
            }
        });
    }
    for seq in 1..=20 {
        runtime
            .write_ahead_log()
            .append(&note("a1", seq))
            .await
            .expect("an append");
    }
    server.pause();
    let taken: Taken = Arc::default();
    let wrapper = Resilient::new(
        Vendor {
            runtime: "only",
            taken: taken.clone(),
        },
        &runtime,
    );
    Crm::resume_queued(&wrapper);
    let deadline = Instant::now() + Duration::from_secs(20);
    while runtime.health().postgres.unwrap().available {
        assert!(Instant::now() < deadline, "the silence was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.lock().unwrap().is_empty(), "delivered while silent");
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while taken.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "the drain did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order: Vec<u32> = taken.lock().unwrap().iter().map(|t| t.3).collect();
    assert_eq!(order, (1..=20).collect::<Vec<_>>());
    assert!(runtime.health().postgres.unwrap().available);
    let events = events.lock().unwrap().clone();
    assert!(
        events.windows(2).any(|w| w == [false, true]),
        "events: {events:?}"
    );
    drop(wrapper);
}

/// With the database away, a runtime that also has an embedded store
/// queues the write there instead (its ticket says so, its status is read
/// as any other), and the drain delivers it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_a_write_falls_back_to_the_embedded_log() {
    let Some(mut server) = postgres::Private::start("outbox_fallback") else {
        return;
    };
    let config = Postgres::new(&server.url())
        .unwrap()
        .schema("seawall")
        .unwrap()
        .store_timeout(Duration::from_millis(300));
    config.migrate().await.expect("the migration");
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder()
        .postgres(config)
        .embedded(dir.path())
        .expect("an embedded store");
    let down = Resilient::new(Down, &runtime);
    let queued = down
        .add_note(&Note {
            account: "a1".to_owned(),
            seq: 1,
        })
        .await
        .expect("queued in the embedded log");
    let ticket = queued.ticket().expect("a ticket");
    assert_eq!(
        runtime.write_ahead_log().status(ticket).await.unwrap(),
        Some(TicketStatus::Pending)
    );
    assert!(!runtime.health().postgres.unwrap().available);
    drop(down);

    let taken: Taken = Arc::default();
    let crm = Resilient::new(
        Vendor {
            runtime: "only",
            taken: taken.clone(),
        },
        &runtime,
    );
    Crm::resume_queued(&crm);
    let settled = tokio::time::timeout(
        Duration::from_secs(30),
        runtime.write_ahead_log().settled(ticket),
    )
    .await
    .expect("delivered within 30 s")
    .unwrap();
    assert!(
        matches!(settled, Some(TicketStatus::Delivered { .. })),
        "{settled:?}"
    );
    assert_eq!(taken.lock().unwrap().len(), 1);
}

/// Writes queued in the embedded log while the database was away are moved
/// to the outbox when it returns, in order, each once: the node's disk can
/// then go, and another runtime delivers them; the first runtime's tickets
/// read the outbox's status, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_locally_move_to_the_outbox_when_the_database_returns() {
    let Some(mut server) = postgres::Private::start("writes_queued_locally_move") else {
        return;
    };
    let config = Postgres::new(&server.url())
        .unwrap()
        .schema("seawall")
        .unwrap()
        .store_timeout(Duration::from_millis(300))
        .claim_lease(Duration::from_secs(1));
    config.migrate().await.expect("the migration");
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let node = Runtime::builder()
        .postgres(config.clone())
        .embedded(dir.path())
        .expect("an embedded store");
    let down = Resilient::new(Down, &node);
    let mut tickets = Vec::new();
    for seq in 1..=5 {
        let queued = down
            .add_note(&Note {
                account: "a1".to_owned(),
                seq,
            })
            .await
            .expect("queued in the embedded log");
        tickets.push(queued.ticket().expect("a ticket"));
    }

    // The database returns: the writes move while the vendor is still down.
    server.launch().expect("the server again");
    let pool = postgres::connect(&server.url()).await;
    let moved = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE origin IS NOT NULL), count(*) FROM seawall.outbox",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while moved().await.0 < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "not moved within 30 s: {:?}",
            moved().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(moved().await, (5, 5), "each write moved once");
    let order: Vec<i32> = sqlx::query_scalar(
        "SELECT (arguments->'note'->>'seq')::int FROM seawall.outbox ORDER BY ticket",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(order, vec![1, 2, 3, 4, 5], "moved in the order queued");
    for ticket in &tickets {
        assert_eq!(
            node.write_ahead_log().status(*ticket).await.unwrap(),
            Some(TicketStatus::Pending),
            "{ticket} reads the outbox's status"
        );
    }

    // The node goes (its disk could go too: nothing waits there now).
    drop(down);
    drop(node);
    let kept = dir.path().to_owned();

    let taken: Taken = Arc::default();
    let other = Runtime::builder().postgres(config.clone()).in_memory();
    let crm = Resilient::new(
        Vendor {
            runtime: "other",
            taken: taken.clone(),
        },
        &other,
    );
    Crm::resume_queued(&crm);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while taken.lock().unwrap().len() < 5 || other.write_ahead_log().depth().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seqs: Vec<u32> = taken.lock().unwrap().iter().map(|t| t.3).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "delivered once each, in order");

    // The node's tickets, after a restart, read what happened in the outbox.
    let node = Runtime::builder()
        .postgres(config)
        .embedded(&kept)
        .expect("the embedded store again");
    for ticket in &tickets {
        let status = node.write_ahead_log().status(*ticket).await.unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "{ticket}: {status:?}"
        );
    }
    assert_eq!(node.write_ahead_log().depth().await.unwrap(), 0);
    pool.close().await;
}

/// A runtime that goes away hands its lanes over at once: its drain had
/// leased the lane of writes its vendor kept refusing (and would have held
/// it for the whole 60 s lease, waiting out the vendor); dropped, another
/// runtime delivers them long before the lease would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_goes_away_hands_its_lanes_over_at_once() {
    let Some(url) = postgres::shared("a_runtime_that_goes_away_hands_its_lanes_over") else {
        return;
    };
    let schema = postgres::schema("outbox_handover");
    let config = config(url, &schema).claim_lease(Duration::from_secs(60));
    config.migrate().await.expect("the migration");
    let leaving = Runtime::builder().postgres(config.clone()).in_memory();
    let down = Resilient::new(Down, &leaving);
    let mut tickets = Vec::new();
    for seq in 1..=3 {
        let queued = down
            .add_note(&Note {
                account: "a1".to_owned(),
                seq,
            })
            .await
            .expect("queued");
        tickets.push(queued.ticket().expect("a ticket"));
    }
    // Its drain takes the lane (and the vendor refuses).
    let pool = postgres::connect(url).await;
    let leased = || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{schema}\".outbox_lanes"))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while leased().await == 0 {
        assert!(Instant::now() < deadline, "the lane was never leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(down);
    drop(leaving);
    // The log goes with the last task that holds it (its drain may be
    // mid-read): a moment, not the 60 s lease.
    let deadline = Instant::now() + Duration::from_secs(5);
    while leased().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the lanes are still leased 5 s after the runtime went"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let taken: Taken = Arc::default();
    let staying = Runtime::builder().postgres(config).in_memory();
    let crm = Resilient::new(
        Vendor {
            runtime: "staying",
            taken: taken.clone(),
        },
        &staying,
    );
    Crm::resume_queued(&crm);
    for ticket in tickets {
        let settled = tokio::time::timeout(
            Duration::from_secs(20),
            staying.write_ahead_log().settled(ticket),
        )
        .await
        .expect("delivered well within the 60 s lease")
        .unwrap();
        assert!(
            matches!(settled, Some(TicketStatus::Delivered { .. })),
            "{settled:?}"
        );
    }
    let seqs: Vec<u32> = taken.lock().unwrap().iter().map(|t| t.3).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    pool.close().await;
    postgres::drop_schema(url, &schema).await;
}
