use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    #[integration(read, timeout = "2s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
