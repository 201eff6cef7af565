use seawall::{Resilient, Runtime, contract};

// A method that is not `async` is one error: the trait keeps it as written
// (so the adapter below still implements it) and the wrapper still
// implements every method, so these call sites type-check.
#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s")]
    fn region(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(read, timeout = "1s", retry)]
    async fn contacts(&self, id: &str) -> Result<Vec<String>, seawall::Error>;
}

struct Vendor;

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, seawall::Error> {
        Ok(id.to_owned())
    }

    fn region(&self, _id: &str) -> Result<String, seawall::Error> {
        Ok("eu".to_owned())
    }

    async fn contacts(&self, _id: &str) -> Result<Vec<String>, seawall::Error> {
        Ok(Vec::new())
    }
}

async fn calls(crm: &Resilient<Vendor>) -> Result<usize, seawall::Error> {
    let name = crm.account("a-1").await?;
    let region = crm.region(&name)?;
    Ok(crm.contacts(&region).await?.len())
}

fn main() {
    let runtime = Runtime::in_memory();
    let _ = calls(&Resilient::new(Vendor, &runtime));
}
