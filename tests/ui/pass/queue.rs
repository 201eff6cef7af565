//! Queued writes: arguments by reference and by value, `&str` and slices,
//! a stored idempotent write, retries and a breaker, and reads beside them.

use seawall::{Delivery, Resilient, Runtime, contract};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub number: String,
    pub to: String,
}

#[contract(name = "telephony")]
pub trait Telephony {
    #[integration(write, timeout = "2s", retry(attempts = 3), breaker,
                  idempotent(key = [route.number]), fallback = queue)]
    async fn route(&self, route: &Route, reason: &str) -> Result<Delivery<String>, seawall::Error>;

    #[integration(write, timeout = "2s", idempotent(store), fallback = queue)]
    async fn hold(&self, number: String, tags: &[String]) -> Result<Delivery<u64>, seawall::Error>;

    #[integration(write, timeout = "2s", idempotent, fallback = queue)]
    async fn r#break<'a>(&self, number: &'a str, at: std::borrow::Cow<'a, str>) -> Result<Delivery<()>, seawall::Error>;

    #[integration(read, timeout = "2s")]
    async fn status(&self, number: &str) -> Result<String, seawall::Error>;
}

struct Fake;

impl Telephony for Fake {
    async fn route(&self, route: &Route, _reason: &str) -> Result<Delivery<String>, seawall::Error> {
        Ok(route.to.clone().into())
    }
    async fn hold(&self, _number: String, tags: &[String]) -> Result<Delivery<u64>, seawall::Error> {
        Ok(Delivery::Done(tags.len() as u64))
    }
    async fn r#break<'a>(&self, _number: &'a str, _at: std::borrow::Cow<'a, str>) -> Result<Delivery<()>, seawall::Error> {
        Ok(().into())
    }
    async fn status(&self, number: &str) -> Result<String, seawall::Error> {
        Ok(number.to_owned())
    }
}

fn main() {
    let runtime = Runtime::in_memory();
    let telephony = Resilient::new(Fake, &runtime);
    // The wrapper's futures are `Send`, so they can be spawned.
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let route = Route { number: "1".into(), to: "2".into() };
    spawnable(telephony.route(&route, "overflow"));
    spawnable(telephony.hold("1".into(), &[]));
    spawnable(telephony.r#break("1", "now".into()));
    spawnable(telephony.status("1"));
}
