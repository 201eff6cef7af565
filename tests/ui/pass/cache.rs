//! `fallback = cache(..)` with and without `Cached` in the return type.

use seawall::{Cached, contract};

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry, breaker, fallback = cache(max_stale = "1h"))]
    async fn account(&self, id: &str) -> Result<Cached<String>, seawall::Error>;

    #[integration(read, timeout = "1s", fallback = cache(max_stale = "30m", capacity = 500))]
    async fn contacts(&self, id: String, page: u32) -> Result<Vec<String>, seawall::Error>;
}

fn main() {}
