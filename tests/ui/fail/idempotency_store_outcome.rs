use seawall::contract;

pub struct Receipt;

#[contract]
pub trait Ledger {
    #[integration(write, timeout = "5s", idempotent(store))]
    async fn post(&self, account: &str) -> Result<Receipt, seawall::Error>;
}

fn main() {}
