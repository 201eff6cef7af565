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
        owner_only(dir, &path)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database, for the write-ahead log that shares its file.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db.clone()
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

/// Queued writes and recorded answers are the application's data: the
/// directory and the file are readable by their owner only.
#[cfg(unix)]
fn owner_only(dir: &Path, file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed(format!("{}: {e}", path.display())))
    };
    set(dir, 0o700)?;
    set(file, 0o600)
}

#[cfg(not(unix))]
fn owner_only(_: &Path, _: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Runs disk work on tokio's blocking pool, never on a runtime worker.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| failed(format!("the store's blocking task failed: {error}")))?
}
