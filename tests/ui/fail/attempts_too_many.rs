use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(attempts = 50))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
