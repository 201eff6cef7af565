use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, write, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
