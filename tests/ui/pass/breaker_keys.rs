//! Every circuit-breaker key, in each of its forms.

use seawall::contract;

#[contract]
pub trait Vendor {
    #[integration(read, timeout = "2s",
                  breaker(failure_rate = 0.25, window = "30s", min_calls = 5,
                          open_for = "10s", open_for_max = "5m", probes = 3,
                          half_open_max = "30s", slow = "1s", slow_rate = 0.75,
                          failure_classes = ["retryable", "vendor_fault", "permanent"]))]
    async fn everything(&self) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "2s", breaker(window = 5, failure_classes = [retryable]))]
    async fn small(&self) -> Result<(), seawall::Error>;
}

fn main() {}
