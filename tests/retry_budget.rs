//! The retry budget bounds the extra load retries add under a brownout, on
//! tokio's paused clock.

mod support;

use std::time::Duration;

use seawall::{Error, Resilient, Runtime, contract};
use support::{Script, Step, VendorError, seawall_error};
use tokio::time::Instant;

#[contract(name = "budgeted")]
pub trait Budgeted {
    #[integration(read, timeout = "1s", retry(attempts = 3, base = "1ms", cap = "1ms"))]
    async fn get(&self) -> Result<usize, VendorError>;
}

#[contract(name = "unbounded", retry_budget(off))]
pub trait Unbounded {
    #[integration(read, timeout = "1s", retry(attempts = 3, base = "1ms", cap = "1ms"))]
    async fn get(&self) -> Result<usize, VendorError>;
}

impl Budgeted for Script {
    async fn get(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

impl Unbounded for Script {
    async fn get(&self) -> Result<usize, VendorError> {
        self.play().await
    }
}

const CALLS: usize = 1_000;

/// Every vendor request fails with a 503 half the time (a fixed xorshift
/// sequence, so both runs see the same brownout).
fn brownout() -> Script {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let steps = (0..CALLS * 3).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(2) {
            Step::Fail(503)
        } else {
            Step::Ok
        }
    });
    Script::new(steps.collect::<Vec<_>>(), Step::Ok)
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_retries_under_a_fifty_percent_failure_load() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(brownout(), &runtime);
    let start = Instant::now();
    let (mut successes, mut spent) = (0usize, 0usize);
    for _ in 0..CALLS {
        match Budgeted::get(&vendor).await {
            Ok(_) => successes += 1,
            Err(VendorError::Seawall(Error::RetryBudgetExhausted { budget, .. })) => {
                assert_eq!(&*budget, "budgeted", "the error names the budget");
                spent += 1;
            }
            Err(_) => {}
        }
    }
    let retries = vendor.inner().calls() - CALLS;
    let seconds = start.elapsed().as_secs() as usize + 1;
    // At most the 10 starting tokens, a tenth of a token per success, and
    // the floor of 10 retries in each second the run touched.
    let bound = 10 + successes / 10 + 10 * seconds;
    assert!(
        retries <= bound,
        "{retries} retries, over the budget's {bound}"
    );
    assert!(spent > 0, "the budget ran out at some point");
    let per_call = vendor.inner().calls() as f64 / CALLS as f64;
    assert!(per_call <= 1.1, "{per_call:.3} vendor requests per call");
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_the_same_brownout_draws_far_more_retries() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(brownout(), &runtime);
    for _ in 0..CALLS {
        let _ = Unbounded::get(&vendor).await;
    }
    // 1 + 0.5 + 0.25 requests per call on average.
    let per_call = vendor.inner().calls() as f64 / CALLS as f64;
    assert!(per_call > 1.6, "{per_call:.3} vendor requests per call");
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_the_methods_of_a_contract_and_listed_on_the_runtime() {
    let runtime = Runtime::in_memory();
    let vendor = Resilient::new(Script::always(Step::Fail(503)), &runtime);
    let result = Budgeted::get(&vendor).await;
    assert!(matches!(
        seawall_error(&result),
        Error::RetriesExhausted { attempts: 3, .. }
    ));
    let budget = runtime
        .retry_budget("budgeted")
        .expect("registered under the contract's name");
    assert_eq!(budget.tokens(), 8.0, "two retries spent two of ten tokens");
    tokio::time::advance(Duration::from_secs(1)).await;
}
