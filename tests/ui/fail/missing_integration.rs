use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    async fn contacts(&self, id: &str) -> Result<Vec<String>, seawall::Error>;
}

fn main() {}
