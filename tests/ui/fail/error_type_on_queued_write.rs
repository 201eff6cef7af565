use seawall::{Classify, Delivery, Resilient, Runtime, contract};

/// `Classify` and `std::error::Error`, but no `From<seawall::Error>`: one
/// error at the return type, although a keyed, queued write hands seawall's
/// errors back in several places (its key, its arguments, its replay).
#[derive(Debug, thiserror::Error, Classify)]
#[error("the ledger refused")]
#[classify(permanent)]
pub struct LedgerError;

#[contract]
pub trait Ledger {
    #[integration(write, timeout = "1s", retry, idempotent(key = [account], store),
                  fallback = queue)]
    async fn post(&self, account: &str, cents: u64) -> Result<Delivery<u64>, LedgerError>;

    #[integration(read, timeout = "1s")]
    async fn balance(&self, account: &str) -> Result<u64, seawall::Error>;
}

struct Vendor;

impl Ledger for Vendor {
    async fn post(&self, _account: &str, cents: u64) -> Result<Delivery<u64>, LedgerError> {
        Ok(Delivery::Done(cents))
    }

    async fn balance(&self, _account: &str) -> Result<u64, seawall::Error> {
        Ok(0)
    }
}

async fn calls(ledger: &Resilient<Vendor>) -> Option<u64> {
    ledger.post("a-1", 100).await.ok()?;
    ledger.balance("a-1").await.ok()
}

fn main() {
    let runtime = Runtime::in_memory();
    let _ = calls(&Resilient::new(Vendor, &runtime));
}
