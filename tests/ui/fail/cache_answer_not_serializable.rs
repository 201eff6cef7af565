use seawall::{Cached, contract};

/// An answer that can be cloned but not kept on disk.
#[derive(Clone)]
pub struct Account {
    pub name: String,
}

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn account(&self, id: &str) -> Result<Cached<Account>, seawall::Error>;
}

fn main() {}
