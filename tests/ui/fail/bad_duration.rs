use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "10 sex")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "0s")]
    async fn contacts(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
