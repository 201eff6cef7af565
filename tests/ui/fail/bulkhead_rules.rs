use seawall::contract;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", bulkhead(max = 0))]
    async fn no_place(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(max = 5, queue = 10, max_wait = "0s"))]
    async fn queue_without_wait(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", deadline = "2s", bulkhead(max = 5, queue = 10, max_wait = "2s"))]
    async fn waits_past_the_deadline(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(queue = 10))]
    async fn no_max(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(adaptive, min = 0))]
    async fn adaptive_floor_zero(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(adaptive, min = 60, max = 50))]
    async fn adaptive_floor_over_ceiling(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(adaptive, max = 0))]
    async fn adaptive_no_place(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(max = 20, min = 2))]
    async fn floor_on_a_fixed_bulkhead(&self) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", bulkhead(adaptiv))]
    async fn misspelt(&self) -> Result<String, seawall::Error>;
}

fn main() {}
