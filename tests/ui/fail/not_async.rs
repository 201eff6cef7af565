use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
