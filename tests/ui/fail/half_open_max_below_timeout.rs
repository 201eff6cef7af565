use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "30s", breaker(half_open_max = "10s"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
