use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", rate(limit = "100 per 10s"))]
    async fn unparsed(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", rate(limit = "0/10s"))]
    async fn no_calls(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", rate(limit = "100/0s"))]
    async fn no_period(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", rate(limit = "100/10s", burst = 0))]
    async fn no_burst(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "3s", rate(limit = "100/10s", max_wait = "3s"))]
    async fn waits_past_the_deadline(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", rate(burst = 5))]
    async fn no_limit(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", rate(limit = "100/10s", name = ""))]
    async fn empty_name(&self) -> Result<String, seawall::Error>;
}

fn main() {}
