use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Option<String>;
}

fn main() {}
