use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", idempotent, fallback = retry_later)]
    async fn update(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue(max = 10))]
    async fn create(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", fallback = cache)]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h", capacity = 0))]
    async fn contacts(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
