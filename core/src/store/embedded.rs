use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{StoreError, Table};

/// State in a redb database file, `seawall.redb` in the runtime's directory.
pub(crate) struct Embedded {
    db: Arc<Database>,
}

const FILE: &str = "seawall.redb";

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

impl Embedded {
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let db = Database::create(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        Ok(Self { db: Arc::new(db) })
    }

    pub(crate) async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        blocking(move || {
            let read = db.begin_read().map_err(failed)?;
            let table = match read.open_table(definition(table)) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(failed(error)),
            };
            let value = table.get(key.as_str()).map_err(failed)?;
            Ok(value.map(|guard| guard.value().to_vec()))
        })
        .await
    }

    /// Durable when it returns: redb commits with an fsync by default.
    pub(crate) async fn put(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        blocking(move || {
            let write = db.begin_write().map_err(failed)?;
            {
                let mut table = write.open_table(definition(table)).map_err(failed)?;
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(failed)?;
            }
            write.commit().map_err(failed)
        })
        .await
    }
}

/// Runs disk work on tokio's blocking pool, never on a runtime worker.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| failed(format!("the store's blocking task failed: {error}")))?
}
