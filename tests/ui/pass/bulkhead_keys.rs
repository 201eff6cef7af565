use seawall::contract;

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s", bulkhead(max = 20))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "5s", retry,
                  bulkhead(max = 20, queue = 50, max_wait = "1s"),
                  rate(limit = "100/10s", name = "crm"))]
    async fn contact(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
