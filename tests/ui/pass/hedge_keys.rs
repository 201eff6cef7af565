use seawall::contract;

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s", hedge(after = "150ms"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", retry, breaker, hedge(after = "p95", max = 2),
                  bulkhead(max = 20), rate(limit = "100/10s"))]
    async fn contact(&self, id: &str) -> Result<String, seawall::Error>;

    // A write may hedge once it is idempotent: the vendor sees its key on
    // every request and acts once.
    #[integration(write, timeout = "1s", retry, idempotent(key = [id]), hedge(after = "p99"))]
    async fn update(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
