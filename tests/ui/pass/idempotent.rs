//! `idempotent` in each form, with and without retries.

use seawall::contract;

#[derive(Clone, serde::Serialize)]
pub struct Invoice {
    pub number: u32,
    pub lines: Vec<(String, u64)>,
}

#[contract(name = "billing", idempotency_header = "X-Request-Id")]
pub trait Billing {
    #[integration(write, timeout = "10s", retry(attempts = 5), idempotent(key = [account, invoice.number]))]
    async fn create_invoice(&self, account: &str, invoice: &Invoice) -> Result<u32, seawall::Error>;

    #[integration(write, timeout = "10s", retry, idempotent)]
    async fn add_note(&self, account: String, note: String) -> Result<(), seawall::Error>;

    #[integration(write, timeout = "10s", idempotent(key = [invoice]))]
    async fn send(&self, invoice: Invoice) -> Result<(), seawall::Error>;
}

fn main() {}
