//! `fallback = with(path)`: a function of the arguments and the error
//! answers a call that failed; on tokio's paused clock, against the
//! generated double (`#[contract(mock)]`).

mod support;

use seawall::{Resilient, Runtime, contract};
use support::VendorError;

#[derive(Debug, PartialEq)]
pub enum Records {
    Found(String),
    Unavailable(String),
}

/// Answers every failure with a clear "unavailable", naming the patient.
fn unavailable(patient: &str, note: &String, error: VendorError) -> Result<Records, VendorError> {
    Ok(Records::Unavailable(format!("{patient} ({note}): {error}")))
}

/// Passes permanent errors on, answers the rest.
fn only_outages(patient: &str, error: VendorError) -> Result<Records, VendorError> {
    match error {
        VendorError::Status(status) if status.is_client_error() => Err(error),
        _ => Ok(Records::Unavailable(patient.to_owned())),
    }
}

#[contract(name = "ehr", mock)]
pub trait Ehr {
    #[integration(read, timeout = "1s", retry(attempts = 2, base = "10ms", cap = "10ms"),
                  fallback = with(unavailable))]
    async fn records(&self, patient: &str, note: String) -> Result<Records, VendorError>;

    #[integration(read, timeout = "1s", fallback = with(only_outages))]
    async fn summary(&self, patient: &str) -> Result<Records, VendorError>;
}

/// The generated double, and the wrapper around it.
fn ehr() -> (MockEhr, Resilient<MockEhr>) {
    let mock = MockEhr::new();
    let ehr = Resilient::new(mock.clone(), &Runtime::in_memory());
    (mock, ehr)
}

#[tokio::test(start_paused = true)]
async fn a_success_never_reaches_the_fallback() {
    let (mock, ehr) = ehr();
    mock.records()
        .returns_with(|(patient, note)| Ok(Records::Found(format!("{patient} ({note})"))));
    let records = ehr.records("p-1", "cardiology".into()).await.unwrap();
    assert_eq!(records, Records::Found("p-1 (cardiology)".into()));
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_answered_by_the_fallback_with_the_arguments_and_the_error() {
    let (mock, ehr) = ehr();
    mock.records().otherwise_fails(|| VendorError::status(503));
    let records = ehr.records("p-1", "cardiology".into()).await.unwrap();
    let Records::Unavailable(message) = records else {
        panic!("expected the fallback's answer, got {records:?}");
    };
    assert!(
        message.starts_with("p-1 (cardiology): gave up after 2 attempt(s)"),
        "{message}"
    );
    // The retries ran before the fallback, each with the arguments.
    mock.records().assert_called(2);
    assert_eq!(
        *mock.records().last_call().unwrap().args(),
        ("p-1".to_owned(), "cardiology".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn the_fallback_decides_which_errors_it_answers() {
    let (mock, ehr) = ehr();
    mock.summary()
        .fails_with(VendorError::status(503))
        .fails_with(VendorError::status(404));
    assert_eq!(
        ehr.summary("p-2").await.unwrap(),
        Records::Unavailable("p-2".into())
    );
    assert!(matches!(ehr.summary("p-2").await, Err(VendorError::Status(s)) if s.as_u16() == 404));
}
