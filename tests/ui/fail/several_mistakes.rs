use seawall::contract;

// Every mistake in one attribute is reported in the same build.
#[contract]
pub trait Crm {
    #[integration(read, write, timeout = "1s", retry(attempts = 0, base = "2s", cap = "1s"),
                  breaker(failure_rate = 1.5, window = 5, min_calls = 6, probes = 0))]
    async fn account(&self, id: &str) -> Result<String, seawall::Error>;
}

fn main() {}
