use seawall::{Delivery, contract};

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", idempotent, fallback = queue(order_by = [acount]))]
    async fn add_note(&self, account: &str, text: &str) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue(order = [account]))]
    async fn close(&self, account: &str) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue(order_by = account))]
    async fn reopen(&self, account: &str) -> Result<Delivery<()>, seawall::Error>;
}

fn main() {}
