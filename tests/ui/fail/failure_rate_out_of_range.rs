use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", breaker(failure_rate = 0.0))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
