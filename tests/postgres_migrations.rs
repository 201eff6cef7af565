//! The PostgreSQL backend's schema: created by the versioned migrations
//! shipped with the crate, in a schema of the application's choosing; run
//! by the runtime on start, or by the application (`Postgres::migrate`),
//! and a no-op once run. The shared server on 127.0.0.1:5432, each test in
//! a schema of its own.

mod support;

use std::time::Duration;

use seawall::postgres::Postgres;
use seawall::{Error, Resilient, Runtime, StoreError, contract};
use sqlx::Row;
use support::postgres;
use support::{VendorError, seawall_error};

#[contract(name = "ledger")]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(key = [account], store))]
    async fn post(&self, account: &str, cents: u64) -> Result<u64, VendorError>;
}

struct Adapter;

impl Ledger for Adapter {
    async fn post(&self, _account: &str, cents: u64) -> Result<u64, VendorError> {
        Ok(cents)
    }
}

/// The migrations the schema has run: (version, success, installed_on as
/// text).
async fn applied(url: &str, schema: &str) -> Vec<(i64, bool, String)> {
    let pool = postgres::connect(url).await;
    let rows = sqlx::query(&format!(
        "SELECT version, success, installed_on::text AS at FROM {schema}._sqlx_migrations ORDER BY version"
    ))
    .fetch_all(&pool)
    .await
    .expect("the migrations table");
    pool.close().await;
    rows.iter()
        .map(|row| (row.get("version"), row.get("success"), row.get("at")))
        .collect()
}

async fn count(url: &str, schema: &str) -> i64 {
    let pool = postgres::connect(url).await;
    let count = sqlx::query(&format!("SELECT count(*) AS n FROM {schema}.idempotency"))
        .fetch_one(&pool)
        .await
        .expect("the idempotency table")
        .get("n");
    pool.close().await;
    count
}

#[tokio::test]
async fn a_fresh_schema_migrates_and_migrating_again_changes_nothing() {
    let Some(url) = postgres::shared("a_fresh_schema_migrates") else {
        return;
    };
    let schema = postgres::schema("migrate");
    let config = Postgres::new(url).unwrap().schema(&schema).unwrap();
    config.migrate().await.expect("the first migration");
    let first = applied(url, &schema).await;
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!((first[0].0, first[0].1), (1, true), "{first:?}");
    assert_eq!((first[1].0, first[1].1), (2, true), "{first:?}");
    assert_eq!((first[2].0, first[2].1), (3, true), "{first:?}");
    assert_eq!(count(url, &schema).await, 0);

    // A record, then the migration again: nothing is run, nothing lost.
    let runtime = Runtime::builder().postgres(config.clone()).in_memory();
    Resilient::new(Adapter, &runtime)
        .post("acct-1", 5)
        .await
        .expect("a keyed write");
    config.migrate().await.expect("the second migration");
    assert_eq!(
        applied(url, &schema).await,
        first,
        "the migration ran again"
    );
    assert_eq!(count(url, &schema).await, 1, "the record was lost");
    postgres::drop_schema(url, &schema).await;
}

#[tokio::test]
async fn without_migrate_on_start_an_unmigrated_schema_is_a_store_error_with_a_hint() {
    let Some(url) = postgres::shared("without_migrate_on_start") else {
        return;
    };
    let schema = postgres::schema("unmigrated");
    // The schema exists, its tables do not.
    let pool = postgres::connect(url).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let config = Postgres::new(url)
        .unwrap()
        .schema(&schema)
        .unwrap()
        .migrate_on_start(false);
    let runtime = Runtime::builder().postgres(config.clone()).in_memory();
    let ledger = Resilient::new(Adapter, &runtime);
    let result = ledger.post("acct-1", 5).await;
    match seawall_error(&result) {
        Error::Store(StoreError::Postgres(detail)) => {
            assert!(detail.contains("not migrated"), "{detail}");
        }
        other => panic!("not a PostgreSQL error: {other:?}"),
    }
    // The application migrates (a deploy step): the same runtime works.
    config.migrate().await.expect("the migration");
    assert_eq!(ledger.post("acct-1", 5).await.unwrap(), 5);
    assert_eq!(count(url, &schema).await, 1);
    postgres::drop_schema(url, &schema).await;
}

#[test]
fn a_keyed_write_runs_from_a_runtime_with_time_only() {
    let Some(url) = postgres::shared("a_keyed_write_runs_from_a_runtime_with_time_only") else {
        return;
    };
    let schema = postgres::schema("time_only");
    // No I/O driver: every query runs on the runtime's own thread.
    let time_only = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    time_only.block_on(async {
        let config = Postgres::new(url)
            .unwrap()
            .schema(&schema)
            .unwrap()
            .store_timeout(Duration::from_secs(2));
        config.migrate().await.expect("the migration");
        let runtime = Runtime::builder().postgres(config).in_memory();
        let ledger = Resilient::new(Adapter, &runtime);
        assert_eq!(ledger.post("acct-1", 5).await.unwrap(), 5);
        assert_eq!(ledger.post("acct-1", 5).await.unwrap(), 5);
    });
    let full = tokio::runtime::Runtime::new().unwrap();
    full.block_on(async {
        assert_eq!(count(url, &schema).await, 1);
        postgres::drop_schema(url, &schema).await;
    });
}

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused() {
    for name in [
        "",
        "Billing",
        "1st",
        "a-b",
        "x; DROP TABLE y",
        &"a".repeat(64),
    ] {
        let result = Postgres::new("postgres://127.0.0.1/test")
            .unwrap()
            .schema(name);
        assert!(
            matches!(result, Err(StoreError::Postgres(_))),
            "{name:?} was accepted"
        );
    }
    assert!(
        Postgres::new("postgres://127.0.0.1/test")
            .unwrap()
            .schema("billing_seawall_2")
            .is_ok()
    );
    assert!(matches!(
        Postgres::new("mysql://nope"),
        Err(StoreError::Postgres(_))
    ));
}
