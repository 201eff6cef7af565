use seawall::integration;

pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
