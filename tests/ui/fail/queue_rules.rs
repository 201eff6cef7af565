use seawall::{Delivery, contract};

#[contract]
pub trait Billing {
    #[integration(read, timeout = "1s", fallback = queue)]
    async fn balance(&self, account: &str) -> Result<Delivery<u64>, seawall::Error>;

    #[integration(write, timeout = "1s", fallback = queue)]
    async fn charge(&self, account: &str, cents: u64) -> Result<Delivery<u64>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn refund(&self, account: &str, cents: u64) -> Result<u64, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn annotate<T: serde::Serialize + Send + Sync>(&self, note: &T) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn close(&self, account: &mut String) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn tag(&self, tags: impl IntoIterator<Item = String> + Send) -> Result<Delivery<()>, seawall::Error>;
}

fn main() {}
