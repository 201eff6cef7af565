use seawall::{Delivery, contract};

#[contract]
pub trait Store<Item: serde::Serialize> {
    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn put(&self, key: &str) -> Result<Delivery<()>, seawall::Error>;
}

fn main() {}
