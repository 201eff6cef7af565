use seawall::{Delivery, contract};

/// Not `Serialize`: it cannot order queued writes.
#[derive(Clone, serde::Deserialize)]
pub struct Account(pub String);

#[derive(Clone, serde::Deserialize)]
pub struct Note {
    pub account: Account,
    pub text: String,
}

// The note itself is kept (as its text); its account is not.
impl serde::Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[contract]
pub trait Crm {
    #[integration(write, timeout = "1s", idempotent(key = [note.text]),
                  fallback = queue(order_by = [note.account]))]
    async fn add_note(&self, note: &Note) -> Result<Delivery<()>, seawall::Error>;
}

fn main() {}
