use seawall::contract;

fn unavailable(id: u64, error: seawall::Error) -> Result<String, seawall::Error> {
    let _ = (id, error);
    Ok(String::new())
}

#[contract]
pub trait Ehr {
    #[integration(read, timeout = "1s", fallback = with(unavailable))]
    async fn records(&self, patient: &str) -> Result<String, seawall::Error>;
}

fn main() {}
