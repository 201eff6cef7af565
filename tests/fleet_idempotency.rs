//! The idempotency store shared by a fleet through Redis, with replicas as
//! runtimes in one process (each its own replica, with its own in-process
//! map of calls in flight) calling one vendor: a keyed write reaches the
//! vendor once across the fleet, a completed one is replayed by any
//! replica, another payload is a conflict, a duplicate in flight elsewhere
//! waits or is rejected, a claim whose holder vanished expires, and a fleet
//! whose Redis is away fails closed (or, if told to, runs on the local
//! store). The real server on 127.0.0.1:6379 (a private one where it is
//! killed), real time, each test under its own key prefix.
//! `tests/idempotency_processes.rs` runs replicas as OS processes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use seawall::fleet::Redis;
use seawall::idempotency::IdempotencyKey;
use seawall::{Error, Resilient, Runtime, StoreError};
use support::redis;
use support::seawall_error;

#[path = "support/ledger.rs"]
mod ledger;

use ledger::{Adapter, Ledger, Vendor};

fn replica(redis: Redis, vendor: &Arc<Vendor>) -> Arc<Resilient<Adapter>> {
    let runtime = Runtime::builder().redis(redis).in_memory();
    Arc::new(Resilient::new(Adapter(vendor.clone()), &runtime))
}

/// `size` replicas of one fleet (the same prefix), each its own runtime.
fn fleet(
    url: &str,
    prefix: &str,
    vendor: &Arc<Vendor>,
    size: usize,
) -> Vec<Arc<Resilient<Adapter>>> {
    (0..size)
        .map(|_| {
            let redis = Redis::new(url).expect("a Redis URL").prefix(prefix);
            replica(redis, vendor)
        })
        .collect()
}

/// A key of the fleet's store, as seawall names it: `part` is `claim` or
/// `record`.
fn store_key(prefix: &str, method: &str, account: &str, part: &str) -> String {
    let key = IdempotencyKey::builder("ledger", method)
        .part("account", account)
        .finish()
        .expect("a key");
    format!("{prefix}:{{idem:{key}}}:{part}")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_duplicates_over_four_replicas_reach_the_vendor_once() {
    let Some(url) = redis::shared("a_hundred_duplicates_over_four_replicas") else {
        return;
    };
    let prefix = redis::prefix("duplicates");
    let vendor = Vendor::new(Duration::from_millis(200));
    let replicas = fleet(url, &prefix, &vendor, 4);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_completed_on_one_replica_is_replayed_by_another_from_redis() {
    let Some(url) = redis::shared("a_write_completed_on_one_replica") else {
        return;
    };
    let prefix = redis::prefix("replay");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = fleet(url, &prefix, &vendor, 2);
    assert_eq!(replicas[0].post("acct-1", 5).await.unwrap(), 5_001);
    // The other replica never saw the call: its answer comes from Redis.
    assert_eq!(replicas[1].post("acct-1", 5).await.unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    // The record is kept for the policy's retention (1 h), and the claim
    // is gone.
    let pttl = redis::command(
        6379,
        &format!("PTTL {}", store_key(&prefix, "post", "acct-1", "record")),
    )
    .expect("Redis answers");
    let pttl: i64 = pttl.trim_start_matches(':').parse().expect("a TTL");
    assert!(
        pttl > 0 && pttl <= 3_600_000,
        "the record's TTL is {pttl} ms"
    );
    let claim = redis::command(
        6379,
        &format!("EXISTS {}", store_key(&prefix, "post", "acct-1", "claim")),
    )
    .expect("Redis answers");
    assert_eq!(claim, ":0", "the claim outlived its call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_payload_on_another_replica_is_a_conflict() {
    let Some(url) = redis::shared("the_same_key_with_another_payload") else {
        return;
    };
    let prefix = redis::prefix("conflict");
    // Recorded on one replica, repeated with another amount on the other.
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = fleet(url, &prefix, &vendor, 2);
    replicas[0].post("acct-1", 5).await.unwrap();
    let result = replicas[1].post("acct-1", 6).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyConflict { .. }),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 1);

    // In flight on one replica, another amount on the other: a conflict at
    // once, without waiting for the first call.
    let vendor = Vendor::closed();
    let replicas = fleet(url, &prefix, &vendor, 2);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_on_another_replica_is_rejected_when_the_policy_says_so() {
    let Some(url) = redis::shared("a_duplicate_in_flight_on_another_replica") else {
        return;
    };
    let prefix = redis::prefix("reject");
    let vendor = Vendor::closed();
    let replicas = fleet(url, &prefix, &vendor, 2);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_holder_vanished_expires_and_the_next_call_proceeds() {
    let Some(url) = redis::shared("a_claim_whose_holder_vanished") else {
        return;
    };
    let prefix = redis::prefix("vanished");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = fleet(url, &prefix, &vendor, 1);
    // A replica claimed the key and died: nothing renews the claim, which
    // lives out its (short) lease.
    let claim = store_key(&prefix, "post", "acct-1", "claim");
    let held = format!("ghost:1 {}", fingerprint("post", "acct-1", 5));
    let set = redis::command(6379, &format!("SET {claim} \"{held}\" PX 1000")).unwrap();
    assert_eq!(set, "+OK");
    // The call waits for the claim to expire, then runs: when it returns,
    // the ghost's claim is gone and the call's record is there.
    assert_eq!(replicas[0].post("acct-1", 5).await.unwrap(), 5_001);
    assert_eq!(vendor.calls(), 1);
    let exists = |part: &str| {
        redis::command(
            6379,
            &format!("EXISTS {}", store_key(&prefix, "post", "acct-1", part)),
        )
        .expect("Redis answers")
    };
    assert_eq!(exists("claim"), ":0", "the call ran while the claim lived");
    assert_eq!(exists("record"), ":1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_another_replica_ends_at_the_deadline() {
    let Some(url) = redis::shared("a_wait_for_another_replica_ends_at_the_deadline") else {
        return;
    };
    let prefix = redis::prefix("deadline");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = fleet(url, &prefix, &vendor, 1);
    // Another replica holds the claim (for a minute): a call whose deadline
    // comes first gives up without calling the vendor.
    let claim = store_key(&prefix, "post_soon", "acct-1", "claim");
    let held = format!("elsewhere:1 {}", fingerprint("post_soon", "acct-1", 5));
    let set = redis::command(6379, &format!("SET {claim} \"{held}\" PX 60000")).unwrap();
    assert_eq!(set, "+OK");
    let result = replicas[0].post_soon("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&result), Error::IdempotencyInFlight { .. }),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 0);
    let _ = redis::command(6379, &format!("DEL {claim}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_lets_go_of_its_claim_at_once() {
    let Some(url) = redis::shared("a_cancelled_call_lets_go_of_its_claim") else {
        return;
    };
    let prefix = redis::prefix("cancelled");
    let vendor = Vendor::closed();
    let replicas = fleet(url, &prefix, &vendor, 2);
    let first = {
        let replica = replicas[0].clone();
        tokio::spawn(async move { replica.post_soon("acct-1", 5).await })
    };
    vendor.arrival().await;
    let claim = store_key(&prefix, "post_soon", "acct-1", "claim");
    assert_eq!(
        redis::command(6379, &format!("EXISTS {claim}")).unwrap(),
        ":1",
        "the call in flight holds no claim in Redis"
    );
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    vendor.open();
    // The claim's lease is 10 s; the deadline 1.5 s: only a released claim
    // lets this call through.
    assert_eq!(replicas[1].post_soon("acct-1", 5).await.unwrap(), 5_002);
    assert_eq!(vendor.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_a_keyed_write_fails_closed_without_calling_the_vendor() {
    let Some(mut server) = redis::Private::start("with_redis_away_a_keyed_write_fails_closed")
    else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let redis = Redis::new(&server.url())
        .unwrap()
        .prefix(redis::prefix("away"))
        .store_timeout(Duration::from_millis(100));
    let replica = replica(redis, &vendor);
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_001);
    server.kill();
    for account in ["acct-1", "acct-2"] {
        let result = replica.post(account, 5).await;
        assert!(
            matches!(seawall_error(&result), Error::Store(StoreError::Redis(_))),
            "{result:?}"
        );
    }
    assert_eq!(
        vendor.calls(),
        1,
        "the vendor was called while Redis was away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_a_keyed_write_can_run_on_the_local_store_if_told_to() {
    let Some(mut server) = redis::Private::start("with_redis_away_the_local_store") else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let prefix = redis::prefix("away-local");
    let redis = Redis::new(&server.url())
        .unwrap()
        .prefix(&prefix)
        .store_timeout(Duration::from_millis(100))
        .local_idempotency_when_away();
    let replica = replica(redis, &vendor);
    // While Redis answers, records are kept there.
    assert_eq!(replica.post("acct-0", 5).await.unwrap(), 5_001);
    let record = store_key(&prefix, "post", "acct-0", "record");
    assert_eq!(
        redis::command(server.port, &format!("EXISTS {record}")).unwrap(),
        ":1"
    );
    server.kill();
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_002);
    // Recorded in the local store: this replica replays it.
    assert_eq!(replica.post("acct-1", 5).await.unwrap(), 5_002);
    assert_eq!(vendor.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_longer_than_the_lease_keeps_its_claim_by_renewing_it() {
    let Some(url) = redis::shared("a_call_longer_than_the_lease") else {
        return;
    };
    let prefix = redis::prefix("renewal");
    let lease = Duration::from_millis(300);
    let vendor = Vendor::closed();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let redis = Redis::new(url)
                .unwrap()
                .prefix(&prefix)
                .store_timeout(Duration::from_millis(100))
                .claim_lease(lease);
            replica(redis, &vendor)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_redis_that_cannot_be_read_is_a_store_error_not_a_vendor_call() {
    let Some(url) = redis::shared("a_record_in_redis_that_cannot_be_read") else {
        return;
    };
    let prefix = redis::prefix("damaged");
    let vendor = Vendor::new(Duration::ZERO);
    let replicas = fleet(url, &prefix, &vendor, 1);
    let record = store_key(&prefix, "post", "acct-1", "record");
    let set = redis::command(6379, &format!("SET {record} \"not a record\" PX 60000")).unwrap();
    assert_eq!(set, "+OK");
    let result = replicas[0].post("acct-1", 5).await;
    assert!(
        matches!(seawall_error(&result), Error::Store(StoreError::Record(_))),
        "{result:?}"
    );
    // The same for a claim that is not `<token> <fingerprint>`.
    let claim = store_key(&prefix, "post", "acct-2", "claim");
    let set = redis::command(6379, &format!("SET {claim} garbage PX 60000")).unwrap();
    assert_eq!(set, "+OK");
    let result = replicas[0].post("acct-2", 5).await;
    assert!(
        matches!(seawall_error(&result), Error::Store(StoreError::Record(_))),
        "{result:?}"
    );
    assert_eq!(vendor.calls(), 0);
    let _ = redis::command(6379, &format!("DEL {record} {claim}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_silent_duplicates_in_one_replica_fail_with_the_first_not_one_by_one() {
    let Some(server) = redis::Private::start("with_redis_silent_duplicates") else {
        return;
    };
    let vendor = Vendor::new(Duration::ZERO);
    let redis = Redis::new(&server.url())
        .unwrap()
        .prefix(redis::prefix("silent"))
        .store_timeout(Duration::from_millis(200));
    let replica = replica(redis, &vendor);
    assert_eq!(replica.post_soon("acct-0", 5).await.unwrap(), 5_001);
    // Redis takes every command and answers none: each look runs out its
    // store timeout (200 ms). 25 duplicates in one replica share the first
    // one's failure; one by one they would take 5 s, past their deadline
    // (1.5 s), and end as `IdempotencyInFlight` instead.
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
            matches!(seawall_error(result), Error::Store(StoreError::Redis(_))),
            "{result:?}"
        );
    }
    assert_eq!(
        vendor.calls(),
        1,
        "the vendor was called while Redis was silent"
    );
}
