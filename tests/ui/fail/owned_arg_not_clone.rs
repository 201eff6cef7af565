use seawall::contract;

pub struct Query {
    pub text: String,
}

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(attempts = 3))]
    async fn search(&self, query: Query) -> Result<Vec<String>, seawall::Error>;
}

fn main() {}
