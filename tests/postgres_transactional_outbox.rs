//! The transactional outbox: `wrapper.outbox(&mut *tx).method(..)` adds a
//! queued write inside the application's own transaction, so that the
//! application's row and the vendor write commit or roll back together,
//! and the drain delivers a committed one like any queued write.
//!
//! The shared server on 127.0.0.1:5432, each test in a schema of its own;
//! skipped (and says so) without it, unless `SEAWALL_REQUIRE_POSTGRES` is
//! set.

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use seawall::postgres::Postgres;
use seawall::wal::TicketStatus;
use seawall::{Delivery, Error, Resilient, Runtime, contract};
use serde::{Deserialize, Serialize};
use support::VendorError;
use support::postgres;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub account: String,
    pub number: u32,
}

#[contract(name = "billing")]
pub trait Billing {
    #[integration(write, timeout = "10s", idempotent(key = [invoice.number]),
                  fallback = queue(order_by = [invoice.account]))]
    async fn create_invoice(
        &self,
        invoice: &Invoice,
        cents: u64,
    ) -> Result<Delivery<u32>, VendorError>;

    #[integration(write, timeout = "10s", idempotent(key = [invoice.number]), fallback = queue)]
    async fn discount(&self, invoice: &Invoice, rate: f64) -> Result<Delivery<u32>, VendorError>;

    #[integration(read, timeout = "1s")]
    async fn balance(&self, account: &str) -> Result<u64, VendorError>;
}

/// What the vendor took: (account, number, cents).
#[derive(Clone, Default)]
struct Vendor {
    taken: Arc<Mutex<Vec<(String, u32, u64)>>>,
}

impl Vendor {
    fn taken(&self) -> Vec<(String, u32, u64)> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Billing for Vendor {
    async fn create_invoice(
        &self,
        invoice: &Invoice,
        cents: u64,
    ) -> Result<Delivery<u32>, VendorError> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((invoice.account.clone(), invoice.number, cents));
        Ok(invoice.number.into())
    }

    async fn discount(&self, invoice: &Invoice, _rate: f64) -> Result<Delivery<u32>, VendorError> {
        Ok(invoice.number.into())
    }

    async fn balance(&self, _account: &str) -> Result<u64, VendorError> {
        Ok(0)
    }
}

fn invoice(account: &str, number: u32) -> Invoice {
    Invoice {
        account: account.to_owned(),
        number,
    }
}

/// A rolled-back transaction leaves neither the application's row nor the
/// write; a committed one leaves both, and the write is delivered once, in
/// order with the writes of its lane, and its ticket settles as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_commits_or_rolls_back_with_the_applications_row() {
    let Some(url) = postgres::shared("a_write_commits_or_rolls_back") else {
        return;
    };
    let schema = postgres::schema("outbox_tx");
    let config = Postgres::new(url).unwrap().schema(&schema).unwrap();
    config.migrate().await.expect("the migration");
    let app = postgres::connect(url).await;
    // The application's own table, beside seawall's in the test's schema.
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".orders (number integer PRIMARY KEY, account text NOT NULL)"
    ))
    .execute(&app)
    .await
    .expect("the application's table");

    let runtime = Runtime::builder().postgres(config).in_memory();
    let vendor = Vendor::default();
    let billing = Resilient::new(vendor.clone(), &runtime);

    let mut tickets = Vec::new();
    for number in 1..=6u32 {
        let mut tx = app.begin().await.expect("a transaction");
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".orders (number, account) VALUES ($1, 'acme')"
        ))
        .bind(number as i32)
        .execute(&mut *tx)
        .await
        .expect("the application's row");
        let ticket = billing
            .outbox(&mut *tx)
            .create_invoice(&invoice("acme", number), u64::from(number) * 100)
            .await
            .expect("queued in the transaction");
        // Nothing is visible outside the transaction before it commits.
        assert_eq!(
            runtime.write_ahead_log().status(ticket).await.unwrap(),
            None,
            "invoice {number} is visible before its transaction ends"
        );
        if number % 2 == 0 {
            tx.commit().await.expect("a commit");
        } else {
            tx.rollback().await.expect("a rollback");
        }
        tickets.push((number, ticket));
    }

    for (number, ticket) in &tickets {
        if number % 2 == 0 {
            let settled = tokio::time::timeout(
                Duration::from_secs(20),
                runtime.write_ahead_log().settled(*ticket),
            )
            .await
            .expect("delivered within 20 s")
            .unwrap();
            assert!(
                matches!(settled, Some(TicketStatus::Delivered { ref answer, .. }) if *answer == *number),
                "invoice {number}: {settled:?}"
            );
        } else {
            assert_eq!(
                runtime.write_ahead_log().status(*ticket).await.unwrap(),
                None,
                "invoice {number} was rolled back but is in the outbox"
            );
        }
    }
    // A further poll of the drain delivers nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<(String, u32, u64)> = [2u32, 4, 6]
        .iter()
        .map(|&n| ("acme".to_owned(), n, u64::from(n) * 100))
        .collect();
    assert_eq!(
        vendor.taken(),
        expected,
        "each committed invoice once, in order"
    );
    let rows: Vec<i32> = sqlx::query_scalar(&format!(
        "SELECT number FROM \"{schema}\".orders ORDER BY number"
    ))
    .fetch_all(&app)
    .await
    .unwrap();
    assert_eq!(rows, vec![2, 4, 6]);
    assert_eq!(runtime.write_ahead_log().depth().await.unwrap(), 0);

    drop((billing, runtime));
    app.close().await;
    postgres::drop_schema(url, &schema).await;
}

/// The transactional path refuses what the call path refuses, before the
/// insert: without a PostgreSQL outbox in the runtime it fails with a
/// store error that says how to get one, and the transaction is left
/// usable (nothing was sent to it).
#[tokio::test]
async fn without_a_postgres_outbox_the_write_is_refused_and_the_transaction_untouched() {
    let Some(url) = postgres::shared("without_a_postgres_outbox") else {
        return;
    };
    let app = postgres::connect(url).await;
    let runtime = Runtime::in_memory();
    let billing = Resilient::new(Vendor::default(), &runtime);
    let mut tx = app.begin().await.expect("a transaction");
    let refused = billing
        .outbox(&mut *tx)
        .create_invoice(&invoice("acme", 1), 100)
        .await
        .expect_err("no outbox to queue in");
    assert!(
        matches!(&refused, Error::Store(e) if e.to_string().contains("RuntimeBuilder::postgres")),
        "{refused}"
    );
    // The transaction still answers.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .expect("the transaction is usable");
    assert_eq!(one, 1);
    tx.rollback().await.unwrap();
}

/// An insert that fails (the schema was never migrated) is an error for
/// the caller, who rolls back: the write is not queued and no row of the
/// application's stays.
#[tokio::test]
async fn an_insert_that_fails_is_the_callers_error() {
    let Some(url) = postgres::shared("an_insert_that_fails") else {
        return;
    };
    let schema = postgres::schema("outbox_tx_unmigrated");
    let config = Postgres::new(url)
        .unwrap()
        .schema(&schema)
        .unwrap()
        .migrate_on_start(false);
    let app = postgres::connect(url).await;
    let runtime = Runtime::builder().postgres(config).in_memory();
    let billing = Resilient::new(Vendor::default(), &runtime);
    let mut tx = app.begin().await.expect("a transaction");
    let failed = billing
        .outbox(&mut *tx)
        .create_invoice(&invoice("acme", 1), 100)
        .await
        .expect_err("no outbox table");
    assert!(
        matches!(&failed, Error::Store(e) if e.to_string().contains("outbox")),
        "{failed}"
    );
    tx.rollback().await.unwrap();
    drop((billing, runtime));
    app.close().await;
    postgres::drop_schema(url, &schema).await;
}

/// A value JSON cannot hold (a NaN) is refused before anything is sent on
/// the application's connection, as a call refuses it: the transaction
/// stays usable and nothing is queued.
#[tokio::test]
async fn a_value_json_cannot_hold_is_refused_before_the_insert() {
    let Some(url) = postgres::shared("a_value_json_cannot_hold_is_refused") else {
        return;
    };
    let schema = postgres::schema("outbox_tx_nan");
    let config = Postgres::new(url).unwrap().schema(&schema).unwrap();
    config.migrate().await.expect("the migration");
    let app = postgres::connect(url).await;
    let runtime = Runtime::builder().postgres(config).in_memory();
    let billing = Resilient::new(Vendor::default(), &runtime);
    let mut tx = app.begin().await.expect("a transaction");
    let refused = billing
        .outbox(&mut *tx)
        .discount(&invoice("acme", 1), f64::NAN)
        .await
        .expect_err("a NaN cannot be queued");
    assert!(
        matches!(refused, Error::Unrepresentable { .. }),
        "{refused}"
    );
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .expect("the transaction is usable");
    assert_eq!(one, 1);
    tx.commit().await.unwrap();
    let queued: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".outbox"))
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    drop((billing, runtime));
    app.close().await;
    postgres::drop_schema(url, &schema).await;
}
