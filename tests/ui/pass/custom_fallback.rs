//! `fallback = with(..)` with arguments by reference and by value.

use seawall::contract;

mod answers {
    pub fn unavailable(
        patient: &str,
        page: &u32,
        error: seawall::Error,
    ) -> Result<Vec<String>, seawall::Error> {
        let _ = error;
        Ok(vec![format!("records of {patient} (page {page}) are temporarily unavailable")])
    }
}

#[contract]
pub trait Ehr {
    #[integration(read, timeout = "1s", retry, fallback = with(answers::unavailable))]
    async fn records(&self, patient: &str, page: u32) -> Result<Vec<String>, seawall::Error>;
}

fn main() {}
