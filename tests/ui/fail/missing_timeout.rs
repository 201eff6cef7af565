use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, retry(attempts = 3))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
