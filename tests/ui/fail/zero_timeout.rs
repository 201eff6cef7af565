use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "0ms")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
