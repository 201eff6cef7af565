//! The handles the runtime's `seawall_*` series are kept in.
//!
//! With the `metrics` feature they are the [`metrics`](https://docs.rs/metrics)
//! facade's own, so whichever recorder the application installs receives
//! them. Without it they are handles with the same methods that do nothing,
//! so the runtime records its series the same way and no series is emitted.

#[cfg(feature = "metrics")]
pub(crate) use ::metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

#[cfg(not(feature = "metrics"))]
pub(crate) use off::{Counter, Gauge, Histogram, counter, gauge, histogram};

#[cfg(not(feature = "metrics"))]
mod off {
    /// A counter nobody reads.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Counter;

    impl Counter {
        pub(crate) fn noop() -> Self {
            Self
        }

        pub(crate) fn increment(&self, _value: u64) {}
    }

    /// A gauge nobody reads.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Gauge;

    impl Gauge {
        pub(crate) fn set(&self, _value: f64) {}
    }

    /// A histogram nobody reads.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Histogram;

    impl Histogram {
        pub(crate) fn record(&self, _value: f64) {}
    }

    // The name and labels are still evaluated (once, when a handle is
    // registered), so a build without the feature reads the same code.
    macro_rules! counter {
        ($name:expr $(, $label:literal => $value:expr)* $(,)?) => {{
            let _ = ($name, $($value),*);
            $crate::telemetry::metrics::Counter
        }};
    }

    macro_rules! gauge {
        ($name:expr $(, $label:literal => $value:expr)* $(,)?) => {{
            let _ = ($name, $($value),*);
            $crate::telemetry::metrics::Gauge
        }};
    }

    macro_rules! histogram {
        ($name:expr $(, $label:literal => $value:expr)* $(,)?) => {{
            let _ = ($name, $($value),*);
            $crate::telemetry::metrics::Histogram
        }};
    }

    pub(crate) use {counter, gauge, histogram};
}
