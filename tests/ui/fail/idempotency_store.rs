use seawall::contract;

#[contract]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(retention = "1h", concurrent = "reject"))]
    async fn without_store(&self, account: &str) -> Result<u64, seawall::Error>;
}

fn main() {}
