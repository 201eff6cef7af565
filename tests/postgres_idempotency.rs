//! The idempotency store in PostgreSQL, with replicas as runtimes in one
//! process (each with its own in-process map of calls in flight) calling
//! one vendor: a keyed write reaches the vendor once across them, a
//! completed one is replayed by any, another payload is a conflict, a
//! duplicate in flight elsewhere waits or is rejected, a claim whose holder
//! vanished expires, and with the database away a keyed write fails closed
//! (or, if told to, runs on the local store). The real server on
//! 127.0.0.1:5432 (a private one where it is stopped), real time, each test
//! in a schema of its own. `tests/idempotency_processes.rs` runs
//! replicas as OS processes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::idempotency::IdempotencyKey;
use seawall::postgres::Postgres;
use seawall::{Error, Event, Resilient, Runtime, StoreError};
use sqlx::Row;
use support::postgres;
use support::seawall_error;

#[path = "support/ledger.rs"]
mod ledger;

use ledger::{Adapter, Ledger, Vendor};

fn replica(postgres: Postgres, vendor: &Arc<Vendor>) -> Arc<Resilient<Adapter>> {
    let runtime = Runtime::builder().postgres(postgres).in_memory();
    Arc::new(Resilient::new(Adapter(vendor.clone()), &runtime))
}

fn config(url: &str, schema: &str) -> Postgres {
    Postgres::new(url)
        .expect("a PostgreSQL URL")
        .schema(schema)
        .expect("a schema name")
}

/// `size` replicas sharing one schema, each its own runtime.
fn replicas(
    url: &str,
    schema: &str,
    vendor: &Arc<Vendor>,
    size: usize,
) -> Vec<Arc<Resilient<Adapter>>> {
    (0..size)
        .map(|_| replica(config(url, schema), vendor))
        .collect()
}

/// The key of a row of the store, as seawall names it.
fn store_key(method: &str, account: &str) -> String {
    IdempotencyKey::builder("ledger", method)
        .part("account", account)
        .finish()
        .expect("a key")
        .to_string()
}

/// The fingerprint seawall takes of a call's whole payload.
fn fingerprint(method: &str, account: &str, cents: u64) -> String {
    IdempotencyKey::builder("seawall-fingerprint", method)
        .part("account", account)
        .part("cents", &cents)
        .finish()
        .expect("a fingerprint")
        .to_string()
}

/// The schema's tables exist once a runtime has migrated it: the first
/// call waits for that, within its store timeout; tests that write rows by
/// hand first make a call of another key.
async fn warm(replica: &Resilient<Adapter>) {
    replica.post("warm-up", 1).await.expect("the warm-up call");
}

/// Whether the row of `key` is a claim, a record, or absent.
async fn row(url: &str, schema: &str, key: &str) -> Option<(bool, bool)> {
    let pool = postgres::connect(url).await;
    let row = sqlx::query(&format!(
        "SELECT claim_token IS NOT NULL AS claim, record IS NOT NULL AS record FROM {schema}.idempotency WHERE key = $1"
    ))
    .bind(key)
    .fetch_optional(&pool)
    .await
    .expect("the row");
    pool.close().await;
    row.map(|row| (row.get("claim"), row.get("record")))
}

/// Runs statements of a test's own.
async fn execute(url: &str, sql: &str) {
    let pool = postgres::connect(url).await;
    sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_duplicates_over_four_runtimes_reach_the_vendor_once() {
    let Some(url) = postgres::shared("a_hundred_duplicates_over_four_runtimes") else {
        return;
    };
    let schema = postgres::schema("duplicates");
    let vendor = Vendor::new(Duration::from_millis(200));
    let replicas = replicas(url, &schema, &vendor, 4);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let replica = replicas[i % 4].clone();
            tokio::spawn(async move { replica.post("acct-1", 7).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("no panic").expect("an answer"));
    }
    assert_eq!(vendor.calls(), 1, "the vendor was called more than once");
    assert!(
        answers.iter().all(|answer| *answer == 7_001),
        "not every call got the one answer: {answers:?}"
    );
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_completed_on_one_runtime_is_replayed_by_another_from_the_database() {
    let Some(url) = postgres::shared("a_write_completed_on_one_runtime") else {
        return;
    };
    let schema = postgres::schema("replay");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = replicas(url, &schema, &vendor, 2);
    assert_eq!(replicas[0].post("acct-1", 5).await.unwrap(), 5_001);
    // The other runtime never saw the call: its answer comes from the
    // database.
    assert_eq!(replicas[1].post("acct-1", 5).await.unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    // A runtime built after it all replays it too (the record is durable).
    let later = replica(config(url, &schema), &vendor);
    assert_eq!(later.post("acct-1", 5).await.unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    // The row is a record kept for the policy's retention (1 h), and no
    // longer a claim.
    let pool = postgres::connect(url).await;
    let row = sqlx::query(&format!(
        "SELECT claim_token IS NULL AS released, \
         extract(epoch FROM expires_at - now())::float8 AS left_s \
         FROM {schema}.idempotency WHERE key = $1"
    ))
    .bind(store_key("post", "acct-1"))
    .fetch_one(&pool)
    .await
    .expect("the record's row");
    let released: bool = row.get("released");
    let left: f64 = row.get("left_s");
    assert!(released, "the claim outlived its call");
    assert!(
        left > 3_000.0 && left <= 3_600.0,
        "the record expires in {left} s"
    );
    pool.close().await;
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_payload_on_another_runtime_is_a_conflict() {
    let Some(url) = postgres::shared("the_same_key_with_another_payload") else {
        return;
    };
    let schema = postgres::schema("conflict");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas_done = replicas(url, &schema, &vendor, 2);
    replicas_done[0].post("acct-1", 5).await.unwrap();
    let result = replicas_done[1].post("acct-1", 6).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyConflict { .. }),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 1);

    // In flight on one runtime, another amount on the other: a conflict at
    // once, without waiting for the first call.
    let vendor = Vendor::closed();
    let replicas = replicas(url, &schema, &vendor, 2);
    let first = {
        let replica = replicas[0].clone();
        tokio::spawn(async move { replica.post("acct-2", 5).await })
    };
    vendor.arrival().await;
    let result = replicas[1].post("acct-2", 6).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyConflict { .. }),
        "{result:?}"
    );
    vendor.open();
    assert_eq!(first.await.unwrap().unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_on_another_runtime_is_rejected_when_the_policy_says_so() {
    let Some(url) = postgres::shared("a_duplicate_in_flight_on_another_runtime") else {
        return;
    };
    let schema = postgres::schema("reject");
    let vendor = Vendor::closed();
    let replicas = replicas(url, &schema, &vendor, 2);
    let first = {
        let replica = replicas[0].clone();
        tokio::spawn(async move { replica.post_once("acct-1", 5).await })
    };
    vendor.arrival().await;
    let second = replicas[1].post_once("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&second), Error::IdempotencyInFlight { .. }),
        "{second:?}"
    );
    vendor.open();
    assert_eq!(first.await.unwrap().unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    // Once recorded, a repeat is a replay, not a rejection.
    assert_eq!(replicas[1].post_once("acct-1", 5).await.unwrap(), 5_001);
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_holder_vanished_expires_and_the_next_call_proceeds() {
    let Some(url) = postgres::shared("a_claim_whose_holder_vanished") else {
        return;
    };
    let schema = postgres::schema("vanished");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = replicas(url, &schema, &vendor, 1);
    warm(&replicas[0]).await;
    // A replica claimed the key and died: nothing renews the claim, which
    // lives out its (short) lease.
    execute(
        url,
        &format!(
            "INSERT INTO {schema}.idempotency (key, fingerprint, claim_token, lease_until) \
             VALUES ('{}', '{}', 'ghost:1', now() + interval '1 second')",
            store_key("post", "acct-1"),
            fingerprint("post", "acct-1", 5)
        ),
    )
    .await;
    // The call waits for the claim to expire, then runs: when it returns,
    // the ghost's claim is gone and the call's record is there.
    assert_eq!(replicas[0].post("acct-1", 5).await.unwrap(), 5_002);
    assert_eq!(vendor.calls(), 2);
    assert_eq!(
        row(url, &schema, &store_key("post", "acct-1")).await,
        Some((false, true)),
        "not a record in place of the ghost's claim"
    );
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_another_runtime_ends_at_the_deadline() {
    let Some(url) = postgres::shared("a_wait_for_another_runtime_ends_at_the_deadline") else {
        return;
    };
    let schema = postgres::schema("deadline");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = replicas(url, &schema, &vendor, 1);
    warm(&replicas[0]).await;
    // Another replica holds the claim (for a minute): a call whose deadline
    // comes first gives up without calling the vendor.
    execute(
        url,
        &format!(
            "INSERT INTO {schema}.idempotency (key, fingerprint, claim_token, lease_until) \
             VALUES ('{}', '{}', 'elsewhere:1', now() + interval '1 minute')",
            store_key("post_soon", "acct-1"),
            fingerprint("post_soon", "acct-1", 5)
        ),
    )
    .await;
    let result = replicas[0].post_soon("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyInFlight { .. }),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 1, "only the warm-up reached the vendor");
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_lets_go_of_its_claim_at_once() {
    let Some(url) = postgres::shared("a_cancelled_call_lets_go_of_its_claim") else {
        return;
    };
    let schema = postgres::schema("cancelled");
    let vendor = Vendor::closed();
    let replicas = replicas(url, &schema, &vendor, 2);
    let first = {
        let replica = replicas[0].clone();
        tokio::spawn(async move { replica.post_soon("acct-1", 5).await })
    };
    vendor.arrival().await;
    let key = store_key("post_soon", "acct-1");
    assert_eq!(
        row(url, &schema, &key).await,
        Some((true, false)),
        "the call in flight holds no claim in the database"
    );
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    vendor.open();
    // The claim's lease is 10 s; the deadline 1.5 s: only a released claim
    // lets this call through.
    assert_eq!(replicas[1].post_soon("acct-1", 5).await.unwrap(), 5_002);
    assert_eq!(vendor.calls(), 2);
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_longer_than_the_lease_keeps_its_claim_by_renewing_it() {
    let Some(url) = postgres::shared("a_call_longer_than_the_lease") else {
        return;
    };
    let schema = postgres::schema("renewal");
    let lease = Duration::from_millis(600);
    let vendor = Vendor::closed();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let postgres = config(url, &schema)
                .store_timeout(Duration::from_millis(200))
                .claim_lease(lease);
            replica(postgres, &vendor)
        })
        .collect();
    let first = {
        let replica = replicas[0].clone();
        tokio::spawn(async move { replica.post_once("acct-1", 5).await })
    };
    vendor.arrival().await;
    // Three leases later the call still runs, and still holds its key.
    tokio::time::sleep(lease * 3).await;
    let second = replicas[1].post_once("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&second), Error::IdempotencyInFlight { .. }),
        "{second:?}"
    );
    vendor.open();
    assert_eq!(first.await.unwrap().unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_read_is_a_store_error_not_a_vendor_call() {
    let Some(url) = postgres::shared("a_record_that_cannot_be_read") else {
        return;
    };
    let schema = postgres::schema("damaged");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = replicas(url, &schema, &vendor, 1);
    warm(&replicas[0]).await;
    execute(
        url,
        &format!(
            "INSERT INTO {schema}.idempotency (key, fingerprint, record, expires_at) \
             VALUES ('{}', 'x', 'not a record', now() + interval '1 hour')",
            store_key("post", "acct-1")
        ),
    )
    .await;
    let result = replicas[0].post("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&result), Error::Store(StoreError::Record(_))),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 1, "only the warm-up reached the vendor");
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_a_keyed_write_fails_closed_and_health_says_so() {
    let Some(mut server) = postgres::Private::start("with_the_database_away") else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let postgres = config(&server.url(), "seawall").store_timeout(Duration::from_millis(300));
    let runtime = Runtime::builder().postgres(postgres).in_memory();
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = events.clone();
        runtime.subscribe(move |event| {
            if let Event::Postgres(changed) = event {
                events.lock().unwrap().push(changed.available);
            }
        });
    }
    let replica = Resilient::new(Adapter(vendor.clone()), &runtime);
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_001);
    let health = runtime.health().postgres.expect("the database's health");
    assert!(health.available && health.ready, "{health:?}");
    server.stop();
    for account in ["acct-1", "acct-2"] {
        let result = replica.post(account, 5).await;
        assert!(
            matches!(
                seawall_error(&result),
                Error::Store(StoreError::Postgres(_))
            ),
            "{result:?}"
        );
    }
    assert_eq!(
        vendor.calls(),
        1,
        "the vendor was called while the database was away"
    );
    let health = runtime.health().postgres.expect("the database's health");
    assert!(!health.available, "{health:?}");
    assert!(health.last_error.is_some(), "{health:?}");
    assert_eq!(*events.lock().unwrap(), [false]);
    // Back: the record made before is still there, and the next call of
    // a new key runs.
    server.launch().expect("the server starts again");
    // Bounded: the pool reconnects within a few store timeouts.
    let mut replayed = None;
    for _ in 0..50 {
        match replica.post("acct-1", 5).await {
            Ok(answer) => {
                replayed = Some(answer);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        replayed,
        Some(5_001),
        "the record did not survive the restart"
    );
    assert_eq!(vendor.calls(), 1);
    assert!(runtime.health().postgres.unwrap().available);
    assert_eq!(*events.lock().unwrap(), [false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_a_keyed_write_can_run_on_the_local_store_if_told_to() {
    let Some(mut server) = postgres::Private::start("with_the_database_away_the_local_store")
    else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let postgres = config(&server.url(), "seawall")
        .store_timeout(Duration::from_millis(300))
        .local_idempotency_when_away();
    let replica = replica(postgres, &vendor);
    // While the database answers, records are kept there.
    assert_eq!(replica.post("acct-0", 5).await.unwrap(), 5_001);
    assert_eq!(
        row(&server.url(), "seawall", &store_key("post", "acct-0")).await,
        Some((false, true))
    );
    server.stop();
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_002);
    // Recorded in the local store: this runtime replays it.
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_002);
    assert_eq!(vendor.calls(), 2);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_postgres_the_idempotency_store_is_postgres() {
    let Some(url) = postgres::shared("with_redis_and_postgres") else {
        return;
    };
    let Some(redis_url) = support::redis::shared("with_redis_and_postgres") else {
        return;
    };
    let schema = postgres::schema("both");
    let vendor = Vendor::new(Duration::ZERO);
    let redis = seawall::fleet::Redis::new(redis_url)
        .unwrap()
        .prefix(support::redis::prefix("both"));
    let runtime = Runtime::builder()
        .redis(redis)
        .postgres(config(url, &schema))
        .in_memory();
    let replica = Resilient::new(Adapter(vendor.clone()), &runtime);
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_001);
    assert_eq!(
        row(url, &schema, &store_key("post", "acct-1")).await,
        Some((false, true)),
        "the record is not in PostgreSQL"
    );
    assert!(format!("{runtime:?}").contains("postgres"), "{runtime:?}");
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answered_fails_closed_and_building_did_not_wait_for_it() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let vendor = Vendor::new(Duration::ZERO);
    let postgres = Postgres::new(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap()
        .store_timeout(Duration::from_millis(200));
    let runtime = Runtime::builder().postgres(postgres).in_memory();
    let replica = Resilient::new(Adapter(vendor.clone()), &runtime);
    let result = replica.post("acct-1", 5).await;
    match seawall_error(&result) {
        Error::Store(StoreError::Postgres(detail)) => {
            assert!(detail.contains("not connected"), "{detail}");
        }
        other => panic!("not a PostgreSQL error: {other:?}"),
    }
    assert_eq!(vendor.calls(), 0);
    let health = runtime.health().postgres.expect("the database's health");
    assert!(!health.available && !health.ready, "{health:?}");
    // The runtime's own state is unusable: the replica is not ready.
    let readiness = runtime.readiness();
    assert!(!readiness.ready, "{readiness:?}");
    assert!(
        readiness.blocking[0].contains("PostgreSQL"),
        "{readiness:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_deletes_rows_past_their_time_and_keeps_the_rest() {
    let Some(url) = postgres::shared("a_sweep_deletes_rows_past_their_time") else {
        return;
    };
    let schema = postgres::schema("sweep");
    let vendor = Vendor::new(Duration::ZERO);
    let runtime = Runtime::builder()
        .postgres(config(url, &schema))
        .in_memory();
    let replica = Resilient::new(Adapter(vendor.clone()), &runtime);
    // A live record (1 h), then rows past their time: a record whose
    // retention ended, a claim whose lease ran out two minutes ago, and a
    // claim that ran out just now (kept: its holder may be renewing late).
    assert_eq!(replica.post("live", 5).await.unwrap(), 5_001);
    execute(
        url,
        &format!(
            "INSERT INTO {schema}.idempotency (key, fingerprint, record, expires_at) \
             VALUES ('old-record', 'x', '{{}}', now() - interval '1 second'); \
             INSERT INTO {schema}.idempotency (key, fingerprint, claim_token, lease_until) \
             VALUES ('old-claim', 'x', 'ghost:1', now() - interval '2 minutes'), \
                    ('fresh-claim', 'x', 'ghost:2', now() - interval '1 second')"
        ),
    )
    .await;
    let swept = runtime.sweep().await.expect("a sweep");
    assert_eq!(swept.idempotency_records, 2, "{swept:?}");
    let pool = postgres::connect(url).await;
    let mut keys: Vec<String> =
        sqlx::query_scalar(&format!("SELECT key FROM {schema}.idempotency"))
            .fetch_all(&pool)
            .await
            .unwrap();
    keys.sort();
    pool.close().await;
    assert_eq!(keys, [store_key("post", "live"), "fresh-claim".to_owned()]);
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_silent_duplicates_in_one_runtime_fail_with_the_first_not_one_by_one() {
    let Some(mut server) = postgres::Private::start("with_the_database_silent") else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let postgres = config(&server.url(), "seawall").store_timeout(Duration::from_millis(200));
    let replica = replica(postgres, &vendor);
    assert_eq!(replica.post_soon("acct-0", 5).await.unwrap(), 5_001);
    // The server takes every query and answers none: each look runs out
    // its store timeout (200 ms). 25 duplicates in one runtime share the
    // first one's failure; one by one they would take 5 s, past their
    // deadline (1.5 s), and end as `IdempotencyInFlight` instead.
    server.pause();
    let calls: Vec<_> = (0..25)
        .map(|_| {
            let replica = replica.clone();
            tokio::spawn(async move { replica.post_soon("acct-1", 5).await })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("no panic"));
    }
    server.resume();
    for result in &results {
        assert!(
            matches!(seawall_error(result), Error::Store(StoreError::Postgres(_))),
            "{result:?}"
        );
    }
    assert_eq!(
        vendor.calls(),
        1,
        "the vendor was called while the database was silent"
    );
    server.stop();
}
