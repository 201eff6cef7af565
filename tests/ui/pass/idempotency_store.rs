//! `idempotent(.., store)` with each of its options.

use seawall::contract;

#[contract]
pub trait Ledger {
    #[integration(write, timeout = "5s", retry, idempotent(store))]
    async fn post(&self, account: String, cents: u64) -> Result<u64, seawall::Error>;

    #[integration(write, timeout = "5s",
                  idempotent(key = [account], store, retention = "1h", replay_failures = false,
                             concurrent = "reject"))]
    async fn post_once(&self, account: &str) -> Result<Vec<String>, seawall::Error>;
}

fn main() {
    let _ = seawall::Runtime::embedded(std::env::temp_dir().join("seawall-ui-pass"));
}
