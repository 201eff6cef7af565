use seawall::{Resilient, Runtime, contract};

/// Neither `From<seawall::Error>`, nor `Classify`, nor `std::error::Error`:
/// one error, at the return type, listing all three.
#[derive(Debug)]
pub struct CrmError;

#[contract]
pub trait Crm {
    #[integration(read, timeout = "1s", retry, breaker)]
    async fn account(&self, id: &str) -> Result<String, CrmError>;

    #[integration(read, timeout = "1s")]
    async fn contacts(&self, id: &str) -> Result<Vec<String>, seawall::Error>;

    #[integration(write, timeout = "1s")]
    async fn rename(&self, id: &str, name: String) -> Result<(), seawall::Error>;
}

struct Vendor;

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, CrmError> {
        Ok(id.to_owned())
    }

    async fn contacts(&self, _id: &str) -> Result<Vec<String>, seawall::Error> {
        Ok(Vec::new())
    }

    async fn rename(&self, _id: &str, _name: String) -> Result<(), seawall::Error> {
        Ok(())
    }
}

async fn calls(crm: &Resilient<Vendor>) -> Option<usize> {
    let name = crm.account("a-1").await.ok()?;
    crm.rename("a-1", name).await.ok()?;
    Some(crm.contacts("a-1").await.ok()?.len())
}

fn main() {
    let runtime = Runtime::in_memory();
    let _ = calls(&Resilient::new(Vendor, &runtime));
}
