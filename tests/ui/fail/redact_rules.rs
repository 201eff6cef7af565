use seawall::contract;

#[contract]
pub trait Payments {
    #[integration(write, timeout = "1s", redact = [card_numbr])]
    async fn charge(&self, card_number: &str, cents: u64) -> Result<(), seawall::Error>;

    #[integration(write, timeout = "1s", redact = [card.number])]
    async fn save(&self, card: &str) -> Result<(), seawall::Error>;

    // Reported together with the policy's other mistakes.
    #[integration(write, timeout = "0s", redact = [tokn])]
    async fn pay(&self, token: &str) -> Result<(), seawall::Error>;
}

fn main() {}
