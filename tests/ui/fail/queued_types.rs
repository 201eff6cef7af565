use seawall::{Delivery, contract};

/// Not serializable at all.
pub struct Note;

/// Serializable, but it cannot be read back from the log.
#[derive(serde::Serialize)]
pub struct Draft {
    pub text: String,
}

/// An answer that cannot be kept with its ticket.
pub struct Receipt;

#[contract]
pub trait Notes {
    #[integration(write, timeout = "1s", idempotent(key = [id]), fallback = queue)]
    async fn add(&self, id: u32, note: &Note) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent(key = [id]), fallback = queue)]
    async fn save(&self, id: u32, draft: &Draft) -> Result<Delivery<()>, seawall::Error>;

    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
    async fn send(&self, id: u32) -> Result<Delivery<Receipt>, seawall::Error>;
}

fn main() {}
