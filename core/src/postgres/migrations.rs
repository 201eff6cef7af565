//! The migrations seawall ships, embedded in the crate, and how they run:
//! sqlx's migrator, on a connection of their own, in seawall's schema.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::Connection;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgConnection;

use super::Postgres;
use crate::store::StoreError;

/// Every migration, by version: files are added, never edited (sqlx's
/// migrator refuses a migration whose text changed after it ran).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "idempotency",
        include_str!("../../migrations/0001_idempotency.sql"),
    ),
    (
        2,
        "outbox",
        include_str!("../../migrations/0002_outbox.sql"),
    ),
    (
        3,
        "outbox origin",
        include_str!("../../migrations/0003_outbox_origin.sql"),
    ),
];

/// The embedded migrations, as sqlx's migrator takes them.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Creates the schema if needed and runs the migrations it lacks, on a
/// connection of its own that is closed afterwards (so that an advisory
/// lock taken by the migrator never outlives a migration cut short).
pub(super) async fn run(config: &Postgres) -> Result<(), StoreError> {
    let mut connection = PgConnection::connect_with(&config.connect_options())
        .await
        .map_err(|e| config.error(&e))?;
    let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", config.schema))
        .execute(&mut connection)
        .await;
    match created {
        Ok(_) => {}
        // Two replicas creating it at once: one of them gets a unique
        // violation, and the schema is there.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(error) => return Err(config.error(&error)),
    }
    let migrator = Migrator::new(Embedded)
        .await
        .map_err(|e| StoreError::Postgres(format!("the embedded migrations: {e}")))?;
    // `run_direct` is `run` without its `Acquire` bound, whose higher-ranked
    // lifetime makes a spawned future fail to prove `Send` (sqlx names it
    // for that); the same code, on the connection itself.
    migrator
        .run_direct(&mut connection)
        .await
        .map_err(|e| StoreError::Postgres(format!("{}: migrating: {e}", config.address())))?;
    let _ = connection.close().await;
    Ok(())
}
