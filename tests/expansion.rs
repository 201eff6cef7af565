//! `#[contract]` expands into code that compiles and runs for the shapes of
//! method a contract has: references, owned values, generics, lifetimes,
//! several methods, generic traits, and futures that `tokio::spawn` accepts.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use seawall::{Resilient, Runtime, contract};
use support::VendorError;

#[derive(Clone, Debug, PartialEq)]
pub struct AccountId(pub String);

#[derive(Clone, Debug, PartialEq)]
pub struct Invoice {
    pub number: u32,
    pub cents: u64,
}

/// Several methods; arguments by reference and by value; a lifetime; a
/// generic argument; a retried and a single-attempt method.
#[contract(name = "crm")]
pub trait Crm {
    /// Reads an account's name.
    #[integration(
        read,
        timeout = "1s",
        retry(attempts = 3, base = "10ms", cap = "50ms"),
        breaker
    )]
    async fn account(&self, id: &AccountId) -> Result<String, VendorError>;

    #[integration(write, timeout = "2s")]
    async fn create_invoice(&self, id: &AccountId, invoice: Invoice) -> Result<u32, VendorError>;

    #[integration(read, timeout = "1s", retry(attempts = 2, base = "5ms", cap = "5ms"))]
    async fn search<'a, Q: AsRef<str> + Clone + Send + Sync>(
        &self,
        prefix: &'a str,
        query: Q,
        limit: usize,
    ) -> Result<Vec<String>, VendorError>;

    #[integration(read, timeout = "1s", deadline = "5s")]
    async fn ping(&self) -> std::result::Result<(), VendorError>;
}

#[derive(Default)]
struct FakeCrm {
    calls: AtomicU32,
    fail_first: AtomicU32,
}

impl Crm for FakeCrm {
    async fn account(&self, id: &AccountId) -> Result<String, VendorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(VendorError::status(503));
        }
        Ok(format!("name of {}", id.0))
    }

    async fn create_invoice(&self, id: &AccountId, invoice: Invoice) -> Result<u32, VendorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(id.0, "a-1");
        Ok(invoice.number)
    }

    // The explicit lifetime is what this test is about.
    #[allow(clippy::needless_lifetimes)]
    async fn search<'a, Q: AsRef<str> + Clone + Send + Sync>(
        &self,
        prefix: &'a str,
        query: Q,
        limit: usize,
    ) -> Result<Vec<String>, VendorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok((0..limit)
            .map(|i| format!("{prefix}{}{i}", query.as_ref()))
            .collect())
    }

    async fn ping(&self) -> Result<(), VendorError> {
        Ok(())
    }
}

/// A generic contract trait: the wrapper implements it for every `T`.
#[contract]
pub trait Store<T: Clone + Send + Sync + 'static> {
    #[integration(write, timeout = "1s")]
    async fn put(&self, key: String, value: T) -> Result<(), VendorError>;

    #[integration(read, timeout = "1s", retry)]
    async fn get(&self, key: &str) -> Result<Option<T>, VendorError>;
}

#[derive(Default)]
struct MemoryStore<T> {
    items: std::sync::Mutex<Vec<(String, T)>>,
}

impl<T: Clone + Send + Sync + 'static> Store<T> for MemoryStore<T> {
    async fn put(&self, key: String, value: T) -> Result<(), VendorError> {
        self.items.lock().unwrap().push((key, value));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<T>, VendorError> {
        let items = self.items.lock().unwrap();
        Ok(items.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }
}

#[tokio::test]
async fn every_method_shape_calls_through_to_the_adapter() {
    let runtime = Runtime::in_memory();
    let crm = Resilient::new(FakeCrm::default(), &runtime);
    let id = AccountId("a-1".into());

    assert_eq!(crm.account(&id).await.unwrap(), "name of a-1");
    let invoice = Invoice {
        number: 7,
        cents: 1200,
    };
    assert_eq!(crm.create_invoice(&id, invoice).await.unwrap(), 7);
    let prefix = String::from("p-");
    let hits = crm.search(&prefix, String::from("q"), 2).await.unwrap();
    assert_eq!(hits, ["p-q0", "p-q1"]);
    crm.ping().await.unwrap();
    assert_eq!(crm.inner().calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn owned_and_borrowed_arguments_survive_retries() {
    let runtime = Runtime::in_memory();
    let crm = Resilient::new(FakeCrm::default(), &runtime);
    crm.inner().fail_first.store(2, Ordering::SeqCst);
    let id = AccountId("a-2".into());
    assert_eq!(crm.account(&id).await.unwrap(), "name of a-2");
    assert_eq!(crm.inner().calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn generic_contracts_expand_for_every_type_parameter() {
    let runtime = Runtime::in_memory();
    let store = Resilient::new(MemoryStore::<u64>::default(), &runtime);
    store.put("a".into(), 5).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(5));
    assert_eq!(store.get("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_calls_can_be_spawned() {
    let runtime = Runtime::in_memory();
    let crm = Arc::new(Resilient::new(FakeCrm::default(), &runtime));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let crm = crm.clone();
            tokio::spawn(async move { crm.account(&AccountId(format!("s-{i}"))).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), format!("name of s-{i}"));
    }
}

#[tokio::test]
async fn policies_reach_the_runtime_with_their_declared_values() {
    let runtime = Runtime::in_memory();
    let crm = Resilient::new(FakeCrm::default(), &runtime);
    crm.account(&AccountId("x".into())).await.unwrap();
    // The breaker is named `contract.method`, with the contract's declared name.
    let breaker = runtime
        .breaker("crm.account")
        .expect("a breaker for crm.account");
    // A bare `breaker` gets the runtime's defaults, so the macro and the
    // runtime agree on them.
    assert_eq!(breaker.policy(), &seawall::BreakerPolicy::new());
    assert_eq!(runtime.breakers().len(), 1);
}

/// A user crate may have modules called `core` and `seawall` of its own: the
/// expansion names everything by absolute path.
mod hygiene {
    #[allow(dead_code)]
    mod core {}
    #[allow(dead_code)]
    mod seawall {}
    #[allow(dead_code)]
    mod std {}

    use super::support::VendorError;

    #[::seawall::contract]
    pub trait Shadowed {
        #[integration(read, timeout = "1s", retry)]
        async fn get(&self, key: String) -> Result<u8, VendorError>;
    }

    struct Fixed;

    impl Shadowed for Fixed {
        async fn get(&self, key: String) -> Result<u8, VendorError> {
            Ok(key.len() as u8)
        }
    }

    #[tokio::test]
    async fn expands_inside_a_crate_that_shadows_core_std_and_seawall() {
        let runtime = ::seawall::Runtime::in_memory();
        let wrapped = ::seawall::Resilient::new(Fixed, &runtime);
        assert_eq!(wrapped.get("abc".into()).await.unwrap(), 3);
    }
}
