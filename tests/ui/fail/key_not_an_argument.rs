use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", idempotent(key = [account_id]))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
