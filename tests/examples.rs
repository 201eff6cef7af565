//! The examples run as tests too: their scenarios must keep holding.

#[path = "../examples/payments.rs"]
#[allow(dead_code)]
mod payments;

#[tokio::test]
async fn the_payments_example_charges_exactly_once_despite_a_timed_out_attempt() {
    let outcome = payments::run().await.expect("the scenario runs");
    assert!(
        outcome.keys.len() >= 2,
        "the first attempt timed out and was retried"
    );
    assert!(
        outcome.keys.iter().all(|key| key == &outcome.keys[0]),
        "every attempt carried the same key: {:?}",
        outcome.keys
    );
    assert_eq!(outcome.charges.len(), 1, "the vendor charged once");
    assert_eq!(
        outcome.charge, outcome.charges[0],
        "and the caller got that charge"
    );
}
