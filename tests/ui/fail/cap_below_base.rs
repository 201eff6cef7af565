use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(base = "2s", cap = "1s"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
