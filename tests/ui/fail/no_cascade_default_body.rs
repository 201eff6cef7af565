use seawall::{Resilient, Runtime, contract};

// A method with a default body is one error: the trait keeps the method as
// written (the adapter below relies on its body), and the wrapper still
// implements every method, so these call sites type-check.
#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(write, timeout = "1s")]
    async fn rename(&self, id: &str, name: String) -> Result<(), seawall::Error> {
        let _ = (id, name);
        Ok(())
    }

    #[integration(read, timeout = "1s", retry)]
    async fn contacts(&self, id: &str) -> Result<Vec<String>, seawall::Error>;
}

struct Vendor;

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, seawall::Error> {
        Ok(id.to_owned())
    }

    async fn contacts(&self, _id: &str) -> Result<Vec<String>, seawall::Error> {
        Ok(Vec::new())
    }
}

async fn calls(crm: &Resilient<Vendor>) -> Result<usize, seawall::Error> {
    let name = crm.account("a-1").await?;
    crm.rename("a-1", name).await?;
    Ok(crm.contacts("a-1").await?.len())
}

fn main() {
    let runtime = Runtime::in_memory();
    let _ = calls(&Resilient::new(Vendor, &runtime));
}
