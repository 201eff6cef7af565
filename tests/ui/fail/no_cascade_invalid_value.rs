use seawall::{Resilient, Runtime, contract};

// An invalid value on one method is one error: the trait and the wrapper's
// implementation of every method are still generated, so these call sites
// type-check.
#[contract(name = "crm")]
pub trait Crm {
    #[integration(read, timeout = "abc")]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(write, timeout = "1s")]
    async fn rename(&self, id: &str, name: String) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "1s", retry)]
    async fn contacts<'a>(&self, id: &'a str, limit: usize) -> Result<Vec<String>, seawall::Error>;
}

struct Vendor;

impl Crm for Vendor {
    async fn account(&self, id: &str) -> Result<String, seawall::Error> {
        Ok(id.to_owned())
    }

    async fn rename(&self, _id: &str, _name: String) -> Result<(), seawall::Error> {
        Ok(())
    }

    async fn contacts<'a>(&self, _id: &'a str, _limit: usize) -> Result<Vec<String>, seawall::Error> {
        Ok(Vec::new())
    }
}

async fn calls(crm: &Resilient<Vendor>) -> Result<usize, seawall::Error> {
    let name = crm.account("a-1").await?;
    crm.rename("a-1", name).await?;
    Ok(crm.contacts("a-1", 10).await?.len())
}

fn main() {
    let runtime = Runtime::in_memory();
    let crm = std::sync::Arc::new(Resilient::new(Vendor, &runtime));
    let _ = calls(&crm);
    // The wrapper's futures are still `Send`.
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    spawnable(async move { crm.account("a-2").await });
}
