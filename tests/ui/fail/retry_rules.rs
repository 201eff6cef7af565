use seawall::contract;

#[contract(retry_budget(off, ratio = 0.5))]
pub trait Vendor {
    #[integration(read, timeout = "1s", retry(on = ["ignored"], max_elapsed = "0s"))]
    async fn get(&self) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "1s", retry(on = []))]
    async fn list(&self) -> Result<(), seawall::Error>;
}

#[contract(retry_budget(ratio = 1.5))]
pub trait Other {
    #[integration(read, timeout = "1s")]
    async fn get(&self) -> Result<(), seawall::Error>;
}

fn main() {}
