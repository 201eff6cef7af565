use seawall::contract;

#[derive(Debug)]
pub struct CrmError;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, CrmError>;
}

fn main() {}
