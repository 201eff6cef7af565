//! Every retry key and the contract's retry budget, in each form.

use seawall::contract;

#[contract(retry_budget(ratio = 0.2, max = 50, min_per_second = 5))]
pub trait Budgeted {
    #[integration(read, timeout = "1s",
                  retry(attempts = 4, base = "50ms", cap = "2s", jitter = "equal",
                        max_elapsed = "5s", on = ["retryable", "vendor_fault"]))]
    async fn get(&self) -> Result<(), seawall::Error>;
}

#[contract(retry_budget(off))]
pub trait Unbounded {
    #[integration(read, timeout = "1s", deadline = "3s", retry(attempts = 10, max_elapsed = "1s"))]
    async fn get(&self) -> Result<(), seawall::Error>;
}

fn main() {}
