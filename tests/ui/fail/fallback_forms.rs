use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", fallback = queue)]
    async fn update(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", fallback = cache)]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h", capacity = 0))]
    async fn contacts(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
