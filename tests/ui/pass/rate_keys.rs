use seawall::contract;

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s", rate(limit = "100/10s"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "5s",
                  rate(limit = "5/s", burst = 5, max_wait = "2s", name = "hubspot"))]
    async fn contact(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
