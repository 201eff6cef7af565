use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", hedge(after = "100ms"))]
    async fn hedged_write(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "1s"))]
    async fn after_the_timeout(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "100ms", max = 0))]
    async fn no_hedge(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "100ms", max = 4))]
    async fn too_many(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "p100"))]
    async fn percentile_out_of_range(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "soon"))]
    async fn after_does_not_parse(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(max = 1))]
    async fn no_after(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", hedge(after = "0s"))]
    async fn after_zero(&self) -> Result<String, seawall::Error>;
}

fn main() {}
