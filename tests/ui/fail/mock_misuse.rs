use seawall::contract;

#[contract(mock = 3)]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

#[contract(mock)]
pub trait Borrowing {
    #[integration(read, timeout = "1s")]
    async fn first<'a>(&self, words: &'a [String]) -> Result<&'a str, seawall::Error>;

    #[integration(read, timeout = "1s")]
    async fn parse<T: std::str::FromStr>(&self, text: &str) -> Result<T, seawall::Error>;
}

#[contract(mock)]
pub trait Unrecordable {
    #[integration(read, timeout = "1s")]
    async fn lookup(&self, key: &Key) -> Result<String, seawall::Error>;
}

pub struct Key;

fn main() {}
