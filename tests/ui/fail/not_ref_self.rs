use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(self, id: String) -> Result<String, seawall::Error>;
}

fn main() {}
