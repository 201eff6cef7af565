use seawall::contract;

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "2m",
                  breaker(window = "0s", open_for = "1m", open_for_max = "30s",
                          slow_rate = 0.9, failure_classes = ["retryable", "ignored", "fatal"]))]
    async fn account(&self) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "2m", breaker(window = 1.5))]
    async fn contacts(&self) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "1s", breaker(name = " "))]
    async fn deals(&self) -> Result<(), seawall::Error>;
}

fn main() {}
