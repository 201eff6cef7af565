use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(on = ["transient"]))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
