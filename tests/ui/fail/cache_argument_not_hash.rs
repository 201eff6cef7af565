use seawall::contract;

pub struct Filter {
    pub score: f64,
}

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", fallback = cache(max_stale = "1h"))]
    async fn search(&self, filter: &Filter) -> Result<Vec<String>, seawall::Error>;
}

fn main() {}
