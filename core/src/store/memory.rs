//! The in-memory idempotency store: the same semantics as the embedded one,
//! for `Runtime::in_memory` and tests.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Table;

/// State in the process's memory.
#[derive(Default)]
pub(crate) struct Memory {
    // Held only for a map operation; no await while held.
    tables: Mutex<HashMap<(Table, String), Vec<u8>>>,
}

impl Memory {
    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<(Table, String), Vec<u8>>> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, table: Table, key: &str) -> Option<Vec<u8>> {
        self.tables().get(&(table, key.to_owned())).cloned()
    }

    pub(crate) fn put(&self, table: Table, key: &str, value: Vec<u8>) {
        self.tables().insert((table, key.to_owned()), value);
    }
}
