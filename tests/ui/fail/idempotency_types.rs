use seawall::contract;

#[derive(serde::Serialize)]
pub struct Invoice {
    pub number: u32,
}

pub struct Unserializable;

#[contract]
pub trait Billing {
    #[integration(write, timeout = "1s", idempotent(key = [invoice.numbr]))]
    async fn misspelt_field(&self, invoice: &Invoice) -> Result<(), seawall::Error>;

    #[integration(write, timeout = "1s", idempotent(key = [token]))]
    async fn not_serializable(&self, token: &Unserializable) -> Result<(), seawall::Error>;
}

fn main() {}
