//! The attributes' grammar, parsed with darling: unknown keys are errors with
//! a "did you mean" suggestion, and a key given twice is an error.

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
    pub(crate) timeout: Option<SpannedValue<DurationText>>,
    pub(crate) deadline: Option<SpannedValue<DurationText>>,
    pub(crate) retry: Option<SpannedValue<Override<RetryArgs>>>,
    pub(crate) breaker: Option<SpannedValue<Override<BreakerArgs>>>,
}

/// `retry` or `retry(...)`.
#[derive(Debug, Default, FromMeta)]
pub(crate) struct RetryArgs {
    pub(crate) attempts: Option<SpannedValue<u32>>,
    pub(crate) base: Option<SpannedValue<DurationText>>,
    pub(crate) cap: Option<SpannedValue<DurationText>>,
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
    pub(crate) open_for: Option<SpannedValue<DurationText>>,
    pub(crate) probes: Option<SpannedValue<u32>>,
    pub(crate) name: Option<SpannedValue<String>>,
}

/// A duration as written (`"250ms"`, `"10s"`, `"1m 30s"`); parsed and
/// checked in `validate`, so a bad duration is reported together with every
/// other mistake in the attribute.
pub(crate) type DurationText = String;
