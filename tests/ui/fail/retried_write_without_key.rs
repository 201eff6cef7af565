use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", retry(attempts = 3))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
