//! What the behaviour tests share: a vendor error type that classifies by
//! HTTP status, as an adapter's would.

#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod redis;

use seawall::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("vendor answered {0}")]
    Status(http::StatusCode),
    #[error("vendor answered {0} and asked to retry after {1:?}")]
    Throttled(http::StatusCode, std::time::Duration),
    #[error(transparent)]
    Seawall(#[from] seawall::Error),
}

impl VendorError {
    pub fn status(code: u16) -> Self {
        Self::Status(http::StatusCode::from_u16(code).expect("a valid status code"))
    }

    pub fn seawall(&self) -> Option<&seawall::Error> {
        match self {
            VendorError::Seawall(error) => Some(error),
            _ => None,
        }
    }
}

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        match self {
            VendorError::Status(status) | VendorError::Throttled(status, _) => status.class(),
            VendorError::Seawall(error) => error.class(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            VendorError::Throttled(_, after) => Some(*after),
            VendorError::Seawall(error) => error.retry_after(),
            VendorError::Status(_) => None,
        }
    }
}

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What the scripted vendor does on one call.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Answers at once.
    Ok,
    /// Fails at once with this HTTP status.
    Fail(u16),
    /// Answers after this long (on tokio's clock).
    Slow(Duration),
    /// Fails at once with this status and a `Retry-After` of this long.
    Throttled(u16, Duration),
    /// Moves the clock on by this long without yielding to timers (as
    /// blocking work inside an adapter would), then fails with this status.
    Overrun(Duration, u16),
    /// Blocks the thread for this long on the real clock (a blocking client
    /// called inside an adapter), then answers.
    Block(Duration),
}

/// A vendor that follows a script, then repeats a default step; it records
/// when each call arrived.
pub struct Script {
    steps: Mutex<VecDeque<Step>>,
    otherwise: Step,
    calls: Mutex<Vec<Instant>>,
}

impl Script {
    pub fn new(steps: impl IntoIterator<Item = Step>, otherwise: Step) -> Self {
        Self {
            steps: Mutex::new(steps.into_iter().collect()),
            otherwise,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Always the same step.
    pub fn always(step: Step) -> Self {
        Self::new([], step)
    }

    /// Replaces the rest of the script.
    pub fn then(&self, steps: impl IntoIterator<Item = Step>) {
        *self.steps.lock().unwrap() = steps.into_iter().collect();
    }

    /// Plays the next step; answers with the call's number (from 1).
    pub async fn play(&self) -> Result<usize, VendorError> {
        let number = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len()
        };
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(self.otherwise);
        match step {
            Step::Ok => Ok(number),
            Step::Fail(code) => Err(VendorError::status(code)),
            Step::Throttled(code, after) => Err(VendorError::Throttled(
                http::StatusCode::from_u16(code).expect("a valid status code"),
                after,
            )),
            Step::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(number)
            }
            Step::Overrun(by, code) => {
                tokio::time::advance(by).await;
                Err(VendorError::status(code))
            }
            Step::Block(by) => {
                std::thread::sleep(by);
                Ok(number)
            }
        }
    }

    /// How many calls reached the vendor.
    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// When each call reached the vendor.
    pub fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

/// The `seawall::Error` inside a result, if that is what it failed with.
pub fn seawall_error<T: std::fmt::Debug>(result: &Result<T, VendorError>) -> &seawall::Error {
    match result {
        Err(VendorError::Seawall(error)) => error,
        other => panic!("expected a seawall error, got {other:?}"),
    }
}
