use seawall::contract;

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s", bulkhead(max = 20))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "5s", retry,
                  bulkhead(max = 20, queue = 50, max_wait = "1s"),
                  rate(limit = "100/10s", name = "crm"))]
    async fn contact(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(adaptive))]
    async fn company(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "5s",
                  bulkhead(adaptive, min = 2, max = 50, queue = 100, max_wait = "2s"))]
    async fn deal(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
