//! `#[contract(mock)]` on every shape of method: arguments by reference and
//! by value, `&mut`, slices, a generic, `impl Trait`, lifetimes, no argument,
//! a `Result` alias, a generic contract; used the way the README shows.

use std::time::Duration;

use seawall::mock::{Faults, Matching, Method, Opaque, Recorded, Times};
use seawall::{Cached, Delivery, Resilient, Runtime, contract};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Invoice {
    pub number: u32,
}

mod crm {
    pub type Result<T> = std::result::Result<T, seawall::Error>;
}

fn down() -> seawall::Error {
    seawall::Error::Timeout { after: Duration::from_secs(1) }
}

#[contract(name = "crm", mock)]
pub trait Crm {
    #[integration(read, timeout = "1s", retry, breaker, fallback = cache(max_stale = "1h"))]
    async fn account(&self, id: &str) -> Result<Cached<String>, seawall::Error>;

    #[integration(write, timeout = "1s")]
    async fn invoice(&self, id: &str, invoice: Invoice, lines: &[u32]) -> Result<u64, seawall::Error>;

    #[integration(read, timeout = "1s")]
    async fn search<'a, 'b, Q: AsRef<str> + Send + Sync>(
        &self,
        prefix: &'a str,
        suffix: &'b String,
        query: Q,
        filter: impl Fn(&str) -> bool + Send + Sync,
    ) -> crm::Result<Vec<String>>;

    #[integration(read, timeout = "1s")]
    async fn borrowed(&self, words: Vec<&str>, _: u8, text: std::borrow::Cow<'_, str>) -> crm::Result<()>;

    #[integration(write, timeout = "1s")]
    async fn scratch(&self, buffer: &mut Vec<u8>) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "1s")]
    async fn ping(&self) -> Result<&'static str, seawall::Error>;

    #[integration(write, timeout = "1s", retry, idempotent(key = [invoice.number]), fallback = queue)]
    async fn send(&self, invoice: &Invoice) -> Result<Delivery<String>, seawall::Error>;

    #[integration(read, timeout = "1s")]
    async fn file(&self, path: &std::path::Path, name: &std::ffi::OsStr, route: &geo::Path) -> Result<u64, seawall::Error>;
}

/// A type of the user's own named like a std one.
mod geo {
    #[derive(Clone, Debug, PartialEq)]
    pub struct Path(pub Vec<(f64, f64)>);
}

/// A generic contract gets a generic double.
#[contract(mock)]
pub trait Store<T: Clone + Send + Sync + 'static> {
    #[integration(write, timeout = "1s")]
    async fn put(&self, key: String, value: T) -> Result<(), seawall::Error>;

    #[integration(read, timeout = "1s", retry)]
    async fn get(&self, key: &str) -> Result<Option<T>, seawall::Error>;
}

/// A crate with modules called `core` and `seawall` of its own.
mod hygiene {
    #[allow(dead_code)]
    mod core {}
    #[allow(dead_code)]
    mod seawall {}

    #[::seawall::contract(mock)]
    pub trait Shadowed {
        #[integration(read, timeout = "1s")]
        async fn get(&self, key: String) -> Result<u8, ::seawall::Error>;
    }

    pub fn double() -> MockShadowed {
        MockShadowed::new()
    }
}

fn shareable<T: Send + Sync + 'static>(_: &T) {}
fn sendable<T: Send>(_: T) {}

fn main() {
    let crm = MockCrm::new();
    shareable(&crm);

    // Handles: what each method records, and its answer and error types.
    let _: &Method<String, Cached<String>, seawall::Error> = crm.account();
    let _: &Method<(String, Invoice, Vec<u32>), u64, seawall::Error> = crm.invoice();
    let _: &Method<(String, String, Opaque, Opaque), Vec<String>, seawall::Error> = crm.search();
    let _: &Method<(Opaque, u8, Opaque), (), seawall::Error> = crm.borrowed();
    let _: &Method<Vec<u8>, (), seawall::Error> = crm.scratch();
    let _: &Method<(), &'static str, seawall::Error> = crm.ping();
    let _: &Method<Invoice, Delivery<String>, seawall::Error> = crm.send();
    let _: &Method<(std::path::PathBuf, std::ffi::OsString, geo::Path), u64, seawall::Error> = crm.file();

    // Scripts, defaults, faults, inspection.
    crm.account()
        .returns("Acme".to_owned().into())
        .fails_times(3, down)
        .delays(Duration::from_millis(50))
        .returns_with(|id| Ok(Cached::from(id.clone())));
    crm.account().otherwise_returns(Cached::from("default".to_owned()));
    crm.invoice()
        .returns_times(2, 7)
        .otherwise(|(id, invoice, lines)| Ok(id.len() as u64 + u64::from(invoice.number) + lines.len() as u64));
    crm.ping().faults(
        Faults::new()
            .failure_rate(0.5)
            .seed(1)
            .latency_between(Duration::from_millis(1), Duration::from_millis(9))
            .outage_calls(3..6)
            .outage_during(Duration::from_secs(10)..Duration::from_secs(20)),
        down,
    );
    crm.ping().clear_faults();
    crm.send().otherwise_returns(Delivery::Done("sent".into()));
    let calls: Vec<Recorded<(String, Invoice, Vec<u32>)>> = crm.invoice().calls();
    let _ = (calls, crm.invoice().last_call(), crm.invoice().call_count(), crm.invoice().remaining());
    crm.search().assert_not_called();

    // Matchers and expectations.
    let acme: Matching<(String, Invoice, Vec<u32>), u64, seawall::Error> =
        crm.invoice().with(|(id, invoice, lines)| id == "acme" && invoice.number > 0 && lines.is_empty());
    acme.returns(1).fails_with(down()).times(..=2); // a pass test runs: expectations that hold
    crm.invoice().with_args(("x".to_owned(), Invoice { number: 1 }, vec![])).never();
    crm.account().with_args("42").otherwise_returns("Acme".to_owned().into()).times(Times::from(0..));
    crm.ping().times(..).never();
    crm.ping().checkpoint();

    // The trait on the double, with borrowed, generic and `impl` arguments.
    let prefix = String::from("p");
    let suffix = String::from("s");
    sendable(Crm::search(&crm, &prefix, &suffix, "q", |_: &str| true));
    let mut buffer = Vec::new();
    sendable(Crm::scratch(&crm, &mut buffer));
    let words = vec!["a"];
    sendable(Crm::borrowed(&crm, words, 1, "t".into()));

    // Behind Resilient, queued writes included.
    let runtime = Runtime::in_memory();
    let wrapped = Resilient::new(crm.clone(), &runtime);
    sendable(wrapped.account("a"));
    sendable(wrapped.send(&Invoice { number: 1 }));

    let store = MockStore::<u64>::default();
    shareable(&store);
    store.get().otherwise_returns(Some(5));
    let _: &Method<(String, u64), (), seawall::Error> = store.put();
    let store = Resilient::new(store, &runtime);
    sendable(store.get("k"));
    let _ = format!("{:?}", hygiene::double());
}
