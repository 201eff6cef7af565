use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", breaker(window = 10, min_calls = 11))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
