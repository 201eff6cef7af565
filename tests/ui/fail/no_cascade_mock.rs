use seawall::{Resilient, Runtime, contract};

// Two mistakes, two errors. A mistake in a contract with a test double is
// one error: the double is still generated, with a handle for each method,
// so tests that script it and call through the wrapper around it
// type-check. And since they do, a mistake in such a test is reported in
// the same build (without the double, rustc said nothing about the code
// that uses it until the contract was fixed).
#[contract(name = "crm", mock)]
pub trait Crm {
    #[integration(read, timeout = "1s", retry(attemps = 3))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;

    #[integration(write, timeout = "1s")]
    async fn rename(&self, id: &str, name: String) -> Result<(), seawall::Error>;
}

async fn test() -> Result<(), seawall::Error> {
    let mock = MockCrm::new();
    mock.account().returns("Ada".to_owned());
    mock.rename().returns(());
    let runtime = Runtime::in_memory();
    let crm = Resilient::new(mock.clone(), &runtime);
    let name = crm.account("a-1").await?;
    crm.rename("a-1", name).await?;
    assert_eq!(mock.account().call_count(), 1);
    // The test's own mistake: `account` answers a `String`.
    mock.account().returns(42);
    Ok(())
}

fn main() {
    let _ = test();
}
