//! A contract with every key of this release, used the way the README shows.

use seawall::{Resilient, Runtime, contract};

#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "10s", deadline = "1m",
                  retry(attempts = 3, base = "200ms", cap = "5s", jitter = "decorrelated"),
                  breaker(failure_rate = 0.5, window = 20, min_calls = 10, open_for = "30s",
                          probes = 2, name = "salesforce"))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(write, timeout = "30s")]
    async fn create_note(&self, id: &str, note: String) -> Result<u64, seawall::Error>;

    #[integration(read, timeout = "1s", retry, breaker)]
    async fn contacts(&self, id: &str, limit: usize) -> Result<Vec<String>, seawall::Error>;
}

struct Vendor;

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, seawall::Error> {
        Ok(id.to_owned())
    }

    async fn create_note(&self, _id: &str, note: String) -> Result<u64, seawall::Error> {
        Ok(note.len() as u64)
    }

    async fn contacts(&self, _id: &str, limit: usize) -> Result<Vec<String>, seawall::Error> {
        Ok(vec![String::new(); limit])
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let runtime = Runtime::in_memory();
    let crm = Resilient::new(Vendor, &runtime);
    assert_send(crm.account("a"));
    assert_send(crm.create_note("a", String::new()));
    assert_send(crm.contacts("a", 3));
}
