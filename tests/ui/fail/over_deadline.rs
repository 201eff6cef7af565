use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "2s", deadline = "5s",
                  retry(attempts = 3, base = "500ms", cap = "1s"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
