//! The attributes' grammar, parsed with darling: unknown keys are errors with
//! a "did you mean" suggestion, and a key given twice is an error. Each
//! argument struct is declared through `keys!`, which also records where
//! each of its keys was written (see `spans`).

use darling::FromMeta;
use darling::util::{Flag, Override, SpannedValue};
use syn::spanned::Spanned;

use crate::spans::{keys, no_keys};

keys! {
    /// `#[contract(...)]`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct ContractArgs {
        pub(crate) name: Option<SpannedValue<String>>,
        pub(crate) retry_budget: Option<SpannedValue<BudgetArgs>>,
        pub(crate) idempotency_header: Option<SpannedValue<String>>,
        /// `rate(..)`: one limiter for every method without a `rate` of
        /// its own, named after the contract unless named.
        pub(crate) rate: Option<SpannedValue<RateArgs>>,
        /// `mock`: also generate `Mock<Trait>`, a test double.
        #[darling(default)]
        pub(crate) mock: MockFlag,
    }
}

/// `mock`, a flag; given a value, it says so.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MockFlag(bool);

impl MockFlag {
    pub(crate) fn is_present(self) -> bool {
        self.0
    }
}

impl FromMeta for MockFlag {
    fn from_meta(item: &syn::Meta) -> darling::Result<Self> {
        match item {
            syn::Meta::Path(_) => Ok(Self(true)),
            other => Err(darling::Error::custom(
                "`mock` takes no value: write `#[contract(mock)]` to generate a test double \
                 (`Mock<Trait>`), or leave it out",
            )
            .with_span(other)),
        }
    }
}

keys! {
    /// `retry_budget(ratio = 0.1, max = 10, min_per_second = 10)` or
    /// `retry_budget(off)`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct BudgetArgs {
        pub(crate) off: darling::util::Flag,
        pub(crate) ratio: Option<SpannedValue<f64>>,
        pub(crate) max: Option<SpannedValue<u32>>,
        pub(crate) min_per_second: Option<u32>,
    }
}

keys! {
    /// `#[integration(...)]`.
    #[derive(Debug, FromMeta)]
    pub(crate) struct IntegrationArgs {
        pub(crate) read: Flag,
        pub(crate) write: Flag,
        pub(crate) timeout: Option<SpannedValue<DurationText>>,
        pub(crate) deadline: Option<SpannedValue<DurationText>>,
        pub(crate) retry: Option<SpannedValue<Override<RetryArgs>>>,
        pub(crate) breaker: Option<SpannedValue<Override<BreakerArgs>>>,
        pub(crate) idempotent: Option<SpannedValue<Override<IdempotentArgs>>>,
        pub(crate) fallback: Option<SpannedValue<FallbackArg>>,
        /// `redact = [token, card]`: arguments never recorded.
        pub(crate) redact: Option<SpannedValue<KeyPaths>>,
        /// `rate(limit = "100/10s", burst = 1, max_wait = "1s", name = "..")`.
        pub(crate) rate: Option<SpannedValue<RateArgs>>,
        /// `bulkhead(max = 20, queue = 50, max_wait = "1s")`.
        pub(crate) bulkhead: Option<SpannedValue<BulkheadArgs>>,
        /// `hedge(after = "150ms", max = 1)`.
        pub(crate) hedge: Option<SpannedValue<HedgeArgs>>,
    }
}

keys! {
    /// `hedge(after = "150ms" | "p95", max = 1)`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct HedgeArgs {
        pub(crate) after: Option<SpannedValue<String>>,
        pub(crate) max: Option<SpannedValue<u32>>,
    }
}

keys! {
    /// `bulkhead(max = 20, queue = 50, max_wait = "1s")`, or
    /// `bulkhead(adaptive, min = 2, max = 50, ..)`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct BulkheadArgs {
        pub(crate) adaptive: Flag,
        pub(crate) min: Option<SpannedValue<u32>>,
        pub(crate) max: Option<SpannedValue<u32>>,
        pub(crate) queue: Option<SpannedValue<u32>>,
        pub(crate) max_wait: Option<SpannedValue<DurationText>>,
    }
}

keys! {
    /// `rate(limit = "100/10s", burst = 1, max_wait = "1s", name = "..")`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct RateArgs {
        pub(crate) limit: Option<SpannedValue<String>>,
        pub(crate) burst: Option<SpannedValue<u32>>,
        pub(crate) max_wait: Option<SpannedValue<DurationText>>,
        pub(crate) name: Option<SpannedValue<String>>,
    }
}

/// `fallback = cache(max_stale = "1h", capacity = 10000)`,
/// `fallback = queue` or `fallback = with(path::to::function)`.
#[derive(Clone, Debug)]
pub(crate) enum FallbackArg {
    Cache(CacheArgs),
    Queue(QueueArgs),
    With(syn::Path),
}

keys! {
    /// `queue` or `queue(order_by = [account])`, parsed with the rest of
    /// `fallback`.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct QueueArgs {
        pub(crate) order_by: Option<SpannedValue<KeyPaths>>,
    }
}

keys! {
    /// `cache(max_stale = "1h", capacity = 10000)`, parsed with the rest of
    /// `fallback`.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct CacheArgs {
        pub(crate) max_stale: Option<SpannedValue<DurationText>>,
        pub(crate) capacity: Option<SpannedValue<u64>>,
    }
}

impl crate::spans::KeySpans for FallbackArg {
    fn key_spans(&self, path: &str, spans: &mut crate::spans::Spans) {
        match self {
            Self::Cache(cache) => cache.key_spans(path, spans),
            Self::Queue(queue) => queue.key_spans(path, spans),
            Self::With(_) => {}
        }
    }
}

impl FromMeta for FallbackArg {
    fn from_expr(expr: &syn::Expr) -> darling::Result<Self> {
        const FORMS: &str = "write `fallback = cache(max_stale = \"1h\")` for a read, \
                             `fallback = queue` for an idempotent write";
        let (name, args) = match expr {
            syn::Expr::Call(call) => match &*call.func {
                syn::Expr::Path(path) => (path.path.get_ident(), Some(&call.args)),
                _ => (None, None),
            },
            syn::Expr::Path(path) => (path.path.get_ident(), None),
            _ => (None, None),
        };
        let Some(name) = name else {
            return Err(
                darling::Error::custom(format!("unknown fallback: {FORMS}")).with_span(expr)
            );
        };
        if name == "with" {
            return match args.map(|args| args.iter().collect::<Vec<_>>()).as_deref() {
                Some([syn::Expr::Path(path)]) if path.qself.is_none() => Ok(Self::With(path.path.clone())),
                _ => Err(darling::Error::custom(
                    "`fallback = with(..)` takes the path of a function: `with(crate::ehr::unavailable)`",
                )
                .with_span(expr)),
            };
        }
        if name == "queue" {
            let mut queue = QueueArgs::default();
            let mut errors = darling::Error::accumulator();
            for arg in args.into_iter().flatten() {
                let order_by = match arg {
                    syn::Expr::Assign(assign) => match &*assign.left {
                        syn::Expr::Path(path) if path.path.is_ident("order_by") => Some(assign),
                        _ => None,
                    },
                    _ => None,
                };
                match order_by {
                    Some(assign) if !matches!(&*assign.right, syn::Expr::Array(_)) => errors.push(
                        darling::Error::custom(
                            "list the values to order by in brackets: `order_by = [account]`",
                        )
                        .with_span(&assign.right),
                    ),
                    Some(assign) if queue.order_by.is_none() => {
                        if let Some(paths) = errors.handle(KeyPaths::from_expr(&assign.right)) {
                            queue.order_by = Some(SpannedValue::new(paths, assign.left.span()));
                        }
                    }
                    Some(assign) => errors.push(
                        darling::Error::custom("`order_by` is given twice").with_span(&assign.left),
                    ),
                    None => errors.push(
                        darling::Error::custom(
                            "`fallback = queue` takes `order_by = [..]` only (the log is the \
                             runtime's): `queue(order_by = [account])` keeps order per account \
                             instead of per contract",
                        )
                        .with_span(arg),
                    ),
                }
            }
            return errors.finish_with(Self::Queue(queue));
        }
        if name != "cache" {
            return Err(darling::Error::custom(format!(
                "unknown fallback `{name}`: {FORMS}, or `fallback = with(path::to::function)`"
            ))
            .with_span(name));
        }
        let mut errors = darling::Error::accumulator();
        let mut wrong = false;
        let (mut max_stale, mut capacity) = (None, None);
        for arg in args.into_iter().flatten() {
            let syn::Expr::Assign(assign) = arg else {
                errors.push(
                    darling::Error::custom(format!("expected `key = value`: {FORMS}"))
                        .with_span(arg),
                );
                continue;
            };
            let key = match &*assign.left {
                syn::Expr::Path(path) => path.path.get_ident().map(ToString::to_string),
                _ => None,
            };
            let value = match &*assign.right {
                syn::Expr::Lit(syn::ExprLit { lit, .. }) => Some(lit),
                _ => None,
            };
            match (key.as_deref(), value) {
                (Some("max_stale"), Some(syn::Lit::Str(text))) => {
                    max_stale = Some(SpannedValue::new(text.value(), text.span()));
                }
                (Some("capacity"), Some(syn::Lit::Int(number))) => match number.base10_parse() {
                    Ok(entries) => capacity = Some(SpannedValue::new(entries, number.span())),
                    Err(error) => {
                        wrong = true;
                        errors.push(error.into());
                    }
                },
                (Some("max_stale" | "capacity"), _) => {
                    wrong = true;
                    errors.push(
                        darling::Error::custom(
                            "`max_stale` takes a duration such as \"1h\"; `capacity` a number of \
                             entries",
                        )
                        .with_span(&assign.right),
                    );
                }
                _ => {
                    wrong = true;
                    errors.push(
                        darling::Error::custom(
                            "a cache takes `max_stale = \"..\"` and, optionally, `capacity = ..`",
                        )
                        .with_span(&assign.left),
                    );
                }
            }
        }
        if max_stale.is_none() && !wrong {
            errors.push(
                darling::Error::custom(
                    "say how old an answer may be when it is served: `cache(max_stale = \"1h\")`",
                )
                .with_span(expr),
            );
        }
        errors.finish_with(Self::Cache(CacheArgs {
            max_stale,
            capacity,
        }))
    }
}

keys! {
    /// `idempotent` (every argument) or `idempotent(key = [id, invoice.number])`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct IdempotentArgs {
        pub(crate) key: Option<SpannedValue<KeyPaths>>,
        pub(crate) store: darling::util::Flag,
        pub(crate) retention: Option<SpannedValue<DurationText>>,
        pub(crate) replay_failures: Option<SpannedValue<bool>>,
        pub(crate) concurrent: Option<SpannedValue<ConcurrentArg>>,
    }
}

/// `concurrent = "wait" | "reject"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromMeta)]
#[darling(rename_all = "snake_case")]
pub(crate) enum ConcurrentArg {
    Wait,
    Reject,
}

/// `[id, invoice.number]`: arguments, or fields of arguments.
#[derive(Clone, Debug)]
pub(crate) struct KeyPaths(pub(crate) Vec<KeyPath>);

/// One value of a key: an argument (`id`) or a field path through one
/// (`invoice.number`), as written.
#[derive(Clone, Debug)]
pub(crate) struct KeyPath {
    /// The argument it starts from.
    pub(crate) root: syn::Ident,
    /// The expression as written, re-emitted so that a field that does not
    /// exist is reported by rustc at its own name.
    pub(crate) expr: syn::Expr,
    /// `invoice.number`: the name the value has in the key.
    pub(crate) name: String,
}

impl FromMeta for KeyPaths {
    fn from_expr(expr: &syn::Expr) -> darling::Result<Self> {
        let syn::Expr::Array(array) = expr else {
            return Err(darling::Error::custom(
                "list the key's values in brackets: `key = [account, invoice.number]`",
            )
            .with_span(expr));
        };
        let mut errors = darling::Error::accumulator();
        let mut paths = Vec::new();
        for element in &array.elems {
            match key_path(element) {
                Some((root, name)) => paths.push(KeyPath {
                    root,
                    expr: element.clone(),
                    name,
                }),
                None => errors.push(
                    darling::Error::custom(
                        "a key names an argument (`account`) or a field of one \
                         (`invoice.number`)",
                    )
                    .with_span(element),
                ),
            }
        }
        errors.finish_with(Self(paths))
    }
}

/// The root argument and dotted name of `a` or `a.b.c`.
fn key_path(expr: &syn::Expr) -> Option<(syn::Ident, String)> {
    match expr {
        syn::Expr::Path(path) if path.qself.is_none() => {
            let ident = path.path.get_ident()?;
            Some((ident.clone(), ident.to_string()))
        }
        syn::Expr::Field(field) => {
            let (root, base) = key_path(&field.base)?;
            let member = match &field.member {
                syn::Member::Named(ident) => ident.to_string(),
                syn::Member::Unnamed(index) => index.index.to_string(),
            };
            Some((root, format!("{base}.{member}")))
        }
        _ => None,
    }
}

keys! {
    /// `retry` or `retry(...)`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct RetryArgs {
        pub(crate) attempts: Option<SpannedValue<u32>>,
        pub(crate) base: Option<SpannedValue<DurationText>>,
        pub(crate) cap: Option<SpannedValue<DurationText>>,
        pub(crate) jitter: Option<JitterArg>,
        pub(crate) max_elapsed: Option<SpannedValue<DurationText>>,
        pub(crate) on: Option<SpannedValue<ClassList>>,
    }
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

keys! {
    /// `breaker` or `breaker(...)`.
    #[derive(Debug, Default, FromMeta)]
    pub(crate) struct BreakerArgs {
        pub(crate) failure_rate: Option<SpannedValue<f64>>,
        pub(crate) window: Option<SpannedValue<WindowArg>>,
        pub(crate) min_calls: Option<SpannedValue<u32>>,
        pub(crate) consecutive_failures: Option<SpannedValue<u32>>,
        pub(crate) open_for: Option<SpannedValue<DurationText>>,
        pub(crate) open_for_max: Option<SpannedValue<DurationText>>,
        pub(crate) probes: Option<SpannedValue<u32>>,
        pub(crate) half_open_max: Option<SpannedValue<DurationText>>,
        pub(crate) slow: Option<SpannedValue<DurationText>>,
        pub(crate) slow_rate: Option<SpannedValue<f64>>,
        pub(crate) failure_classes: Option<SpannedValue<ClassList>>,
        pub(crate) name: Option<SpannedValue<String>>,
    }
}

/// `window = 20` (the last 20 calls) or `window = "30s"` (the calls of the
/// last 30 seconds).
#[derive(Clone, Debug)]
pub(crate) enum WindowArg {
    Calls(u32),
    Time(DurationText),
}

impl FromMeta for WindowArg {
    fn from_value(value: &syn::Lit) -> darling::Result<Self> {
        match value {
            syn::Lit::Int(calls) => Ok(Self::Calls(calls.base10_parse()?)),
            syn::Lit::Str(duration) => Ok(Self::Time(duration.value())),
            _ => Err(darling::Error::custom(
                "a window is a number of calls (`window = 20`) or a duration (`window = \"30s\"`)",
            )),
        }
    }
}

/// `failure_classes = ["retryable", "vendor_fault"]`: names as written,
/// checked in `validate`.
#[derive(Clone, Debug)]
pub(crate) struct ClassList(pub(crate) Vec<SpannedValue<String>>);

impl FromMeta for ClassList {
    fn from_expr(expr: &syn::Expr) -> darling::Result<Self> {
        let syn::Expr::Array(array) = expr else {
            return Err(darling::Error::custom(
                "list the classes in brackets: `failure_classes = [\"retryable\", \"vendor_fault\"]`",
            )
            .with_span(expr));
        };
        let mut errors = darling::Error::accumulator();
        let mut names = Vec::new();
        for element in &array.elems {
            match element {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(name),
                    ..
                }) => {
                    names.push(SpannedValue::new(name.value(), name.span()));
                }
                syn::Expr::Path(syn::ExprPath { path, .. }) if path.get_ident().is_some() => {
                    names.extend(
                        path.get_ident()
                            .map(|ident| SpannedValue::new(ident.to_string(), ident.span())),
                    );
                }
                other => errors.push(
                    darling::Error::custom("expected a class name such as \"retryable\"")
                        .with_span(other),
                ),
            }
        }
        errors.finish_with(Self(names))
    }
}

/// A duration as written (`"250ms"`, `"10s"`, `"1m 30s"`); parsed and
/// checked in `validate`, so a bad duration is reported together with every
/// other mistake in the attribute.
pub(crate) type DurationText = String;

no_keys!(
    MockFlag,
    JitterArg,
    ConcurrentArg,
    KeyPaths,
    WindowArg,
    ClassList
);
