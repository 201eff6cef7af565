use seawall::contract;

#[contract]
pub trait Crm {
    type Account;

    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
