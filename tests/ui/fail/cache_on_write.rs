use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn update(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
