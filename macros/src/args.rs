//! The attributes' grammar, parsed with darling: unknown keys are errors with
//! a "did you mean" suggestion, and a key given twice is an error.

use std::time::Duration;

use darling::FromMeta;
use darling::util::{Flag, Override, SpannedValue};

/// `#[contract(...)]`.
#[derive(Debug, Default, FromMeta)]
pub(crate) struct ContractArgs {
    pub(crate) name: Option<SpannedValue<String>>,
}

/// `#[integration(...)]`.
#[derive(Debug, FromMeta)]
pub(crate) struct IntegrationArgs {
    pub(crate) read: Flag,
    pub(crate) write: Flag,
    pub(crate) timeout: Option<SpannedValue<DurationLit>>,
    pub(crate) deadline: Option<SpannedValue<DurationLit>>,
    pub(crate) retry: Option<SpannedValue<Override<RetryArgs>>>,
    pub(crate) breaker: Option<SpannedValue<Override<BreakerArgs>>>,
}

/// `retry` or `retry(...)`.
#[derive(Debug, Default, FromMeta)]
pub(crate) struct RetryArgs {
    pub(crate) attempts: Option<SpannedValue<u32>>,
    pub(crate) base: Option<SpannedValue<DurationLit>>,
    pub(crate) cap: Option<SpannedValue<DurationLit>>,
    pub(crate) jitter: Option<JitterArg>,
}

/// `jitter = "full" | "equal" | "decorrelated" | "none"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromMeta)]
#[darling(rename_all = "snake_case")]
pub(crate) enum JitterArg {
    Full,
    Equal,
    Decorrelated,
    None,
}

/// `breaker` or `breaker(...)`.
#[derive(Debug, Default, FromMeta)]
pub(crate) struct BreakerArgs {
    pub(crate) failure_rate: Option<SpannedValue<f64>>,
    pub(crate) window: Option<SpannedValue<u32>>,
    pub(crate) min_calls: Option<SpannedValue<u32>>,
    pub(crate) open_for: Option<SpannedValue<DurationLit>>,
    pub(crate) probes: Option<SpannedValue<u32>>,
    pub(crate) name: Option<SpannedValue<String>>,
}

/// The longest duration a policy may hold; the same figure as the runtime's
/// `seawall::policy::MAX_DURATION`.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// A positive duration written as a string: `"250ms"`, `"10s"`, `"1m 30s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationLit(pub(crate) Duration);

impl FromMeta for DurationLit {
    fn from_string(value: &str) -> darling::Result<Self> {
        const FORMS: &str =
            "write a number and a unit, such as \"250ms\", \"10s\", \"1m 30s\" or \"2h\"";
        let duration = humantime::parse_duration(value).map_err(|error| {
            darling::Error::custom(format!("invalid duration \"{value}\" ({error}): {FORMS}"))
        })?;
        if duration.is_zero() {
            return Err(darling::Error::custom(format!(
                "a duration of zero would fail every call: {FORMS}"
            )));
        }
        if duration > MAX_DURATION {
            return Err(darling::Error::custom(format!(
                "\"{value}\" is longer than seawall's limit of {} seconds",
                MAX_DURATION.as_secs()
            )));
        }
        Ok(Self(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_humantime_forms_and_refuse_zero() {
        assert_eq!(
            DurationLit::from_string("1m 30s").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(
            DurationLit::from_string("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        let zero = DurationLit::from_string("0s").unwrap_err().to_string();
        assert!(zero.contains("zero"), "{zero}");
        let bad = DurationLit::from_string("ten seconds")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("\"10s\""), "{bad}");
    }
}
