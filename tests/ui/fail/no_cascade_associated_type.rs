use seawall::{Resilient, Runtime, contract};

// An item that is not a method is one error: the wrapper takes the
// adapter's, and implements every method, so these call sites type-check.
#[contract(name = "crm")]
pub trait Crm<T: Send + Sync + 'static> {
    type Account: Clone;

    #[integration(read, timeout = "1s")]
    async fn account(&self, id: &str) -> Result<T, seawall::Error>;

    #[integration(read, timeout = "1s", retry)]
    async fn contacts(&self, id: &str) -> Result<Vec<T>, seawall::Error>;
}

struct Vendor;

impl Crm<String> for Vendor {
    type Account = String;

    async fn account(&self, id: &str) -> Result<String, seawall::Error> {
        Ok(id.to_owned())
    }

    async fn contacts(&self, _id: &str) -> Result<Vec<String>, seawall::Error> {
        Ok(Vec::new())
    }
}

async fn calls(crm: &Resilient<Vendor>) -> Result<usize, seawall::Error> {
    let name: <Resilient<Vendor> as Crm<String>>::Account = crm.account("a-1").await?;
    Ok(crm.contacts(&name).await?.len())
}

fn main() {
    let runtime = Runtime::in_memory();
    let _ = calls(&Resilient::new(Vendor, &runtime));
}
