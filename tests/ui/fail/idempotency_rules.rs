use seawall::contract;

#[derive(serde::Serialize)]
pub struct Invoice {
    pub number: u32,
}

pub struct Unserializable;

#[contract(idempotency_header = "Idempotency Key")]
pub trait Billing {
    #[integration(write, timeout = "1s", retry(attempts = 3))]
    async fn retried_without_key(&self, id: &str) -> Result<(), seawall::Error>;

    #[integration(write, timeout = "1s", retry(attempts = 3), idempotent(key = [acount, invoice.number]))]
    async fn misspelt_argument(&self, account: &str, invoice: &Invoice) -> Result<(), seawall::Error>;

    #[integration(write, timeout = "1s", idempotent(key = []))]
    async fn empty_key(&self, account: &str) -> Result<(), seawall::Error>;
}

fn main() {}
