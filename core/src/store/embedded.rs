//! The embedded (redb) idempotency store: claims and recorded outcomes on
//! disk, written through the group commit.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::group::GroupCommit;
use super::handle::DbHandle;
use super::{StoreError, Table};

/// State in a redb database file, `seawall.redb` in the runtime's directory.
pub(crate) struct Embedded {
    db: Arc<DbHandle>,
    /// Puts, committed together: one fsync per batch.
    puts: GroupCommit<(Table, String, Vec<u8>), ()>,
}

/// The most puts one commit takes at once.
const BATCH: usize = 4096;

pub(crate) const FILE: &str = "seawall.redb";

pub(crate) fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

/// The database's identity, written into it once.
pub(crate) const IDENTITY: TableDefinition<'static, &'static str, &'static str> =
    TableDefinition::new("seawall_identity");

/// Beside the database: which database this directory holds, so that an
/// emptied or replaced file is noticed.
pub(crate) const MANIFEST: &str = "seawall.id";

impl Embedded {
    /// Opens (or creates) the database in `dir` and checks it is the one
    /// the directory held before, unless `accept_new`.
    pub(crate) fn open(dir: &Path, accept_new: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let db = Database::create(&path).map_err(|error| match error {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                StoreError::Damaged {
                    path: path.clone().into_boxed_path(),
                    detail,
                }
            }
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.clone().into_boxed_path(),
            },
            error => failed(format!("{}: {error}", path.display())),
        })?;
        owner_only(dir, &path)?;
        check_identity(&db, dir, &path, accept_new)?;
        let db = DbHandle::new(&path, db);
        let puts = GroupCommit::spawn(
            "seawall-store",
            db.clone(),
            BATCH,
            |write, puts: &[(Table, String, Vec<u8>)]| {
                for (table, key, value) in puts {
                    let mut table = write.open_table(definition(*table)).map_err(failed)?;
                    table
                        .insert(key.as_str(), value.as_slice())
                        .map_err(failed)?;
                }
                Ok(vec![(); puts.len()])
            },
        )?;
        Ok(Self { db, puts })
    }

    /// The database, for the write-ahead log that shares its file.
    pub(crate) fn database(&self) -> Arc<DbHandle> {
        self.db.clone()
    }

    pub(crate) async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        blocking(move || {
            db.run(|db| {
                let read = db.begin_read().map_err(failed)?;
                let table = match read.open_table(definition(table)) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(error) => return Err(failed(error)),
                };
                let value = table.get(key.as_str()).map_err(failed)?;
                Ok(value.map(|guard| guard.value().to_vec()))
            })
        })
        .await
    }

    /// Durable when it returns: the put is committed (with an fsync) in a
    /// batch with every other put waiting at the time.
    pub(crate) async fn put(
        &self,
        table: Table,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.puts.submit((table, key.to_owned(), value)).await
    }
}

/// Compares the database's identity with the directory's manifest:
/// refuses a database that is not the one the manifest names (emptied,
/// deleted and re-created, or copied from elsewhere); writes the identity
/// and the manifest for a new database (or one from before identities).
fn check_identity(
    db: &Database,
    dir: &Path,
    path: &Path,
    accept_new: bool,
) -> Result<(), StoreError> {
    let at = |error: &dyn std::fmt::Display| failed(format!("{}: {error}", path.display()));
    let stored = {
        let read = db.begin_read().map_err(|e| at(&e))?;
        match read.open_table(IDENTITY) {
            Ok(table) => table
                .get("database")
                .map_err(|e| at(&e))?
                .map(|id| id.value().to_owned()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(at(&error)),
        }
    };
    let manifest_path = dir.join(MANIFEST);
    let manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => Some(parse_manifest(&text).ok_or_else(|| {
            failed(format!(
                "{}: not a seawall manifest (expected {{\"database\": \"<id>\"}}); restore it, or \
                 delete it to adopt the database file as it is",
                manifest_path.display()
            ))
        })?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(failed(format!("{}: {error}", manifest_path.display()))),
    };
    let id = match (stored, manifest) {
        (Some(id), Some(expected)) if id == expected => return Ok(()),
        (Some(id), None) => id,
        (None, None) => write_identity(db, path)?,
        (found, Some(expected)) => {
            let detail = match &found {
                None => format!(
                    "this directory held seawall database {expected}, but the file holds no \
                     seawall database now (emptied, or deleted and re-created?)"
                ),
                Some(id) => format!(
                    "this directory held seawall database {expected}, but the file is database \
                     {id} (copied from elsewhere?)"
                ),
            };
            if !accept_new {
                return Err(StoreError::Replaced {
                    path: path.into(),
                    detail,
                });
            }
            tracing::warn!(
                target: "seawall::store",
                path = %path.display(),
                %detail,
                "starting on another database, as the runtime was told to"
            );
            match found {
                Some(id) => id,
                None => write_identity(db, path)?,
            }
        }
    };
    write_manifest(&manifest_path, &id)
}

pub(crate) fn parse_manifest(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("database")?.as_str()?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// Gives the database an identity of its own.
fn write_identity(db: &Database, path: &Path) -> Result<String, StoreError> {
    let at = |error: &dyn std::fmt::Display| failed(format!("{}: {error}", path.display()));
    let id = format!("{:032x}", rand::random::<u128>());
    let write = db.begin_write().map_err(|e| at(&e))?;
    {
        let mut table = write.open_table(IDENTITY).map_err(|e| at(&e))?;
        table.insert("database", id.as_str()).map_err(|e| at(&e))?;
    }
    write.commit().map_err(|e| at(&e))?;
    Ok(id)
}

/// Writes the manifest through a temporary file and a rename, so that a
/// crash leaves the old manifest or the new one, never half of one.
fn write_manifest(manifest: &Path, id: &str) -> Result<(), StoreError> {
    let at = |error: std::io::Error| failed(format!("{}: {error}", manifest.display()));
    let temporary = manifest.with_extension("id.tmp");
    let text = serde_json::json!({ "database": id }).to_string();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary).map_err(at)?;
        file.write_all(text.as_bytes()).map_err(at)?;
        file.sync_all().map_err(at)?;
    }
    std::fs::rename(&temporary, manifest).map_err(at)?;
    if let Some(dir) = manifest.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
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
