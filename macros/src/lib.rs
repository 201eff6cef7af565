//! The attributes of [seawall](https://docs.rs/seawall): `#[contract]` on a
//! trait that describes what a system needs from a vendor, and
//! `#[integration(...)]` on each of its methods with that call's policy.
//!
//! Users name these through the `seawall` crate (`seawall::contract`,
//! `seawall::integration`); the expansion reaches the runtime only through
//! `::seawall::…` paths. This crate holds no runtime logic: it parses the
//! attributes, checks every rule it can at compile time, and generates code.

#![forbid(unsafe_code)]

// First: `args` declares its structs through the macros in here.
mod spans;

mod args;
mod expand;
mod fallback;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait into a seawall contract.
///
/// Every method needs an `#[integration(...)]` policy. The trait is kept
/// (its methods return `Send` futures, so calls can be spawned) and
/// `seawall::Resilient<I>` implements it for every adapter `I` that does,
/// running each call through the method's policy.
///
/// # Keys, and their defaults
///
/// - `name = "crm"`: the contract's name in breaker and budget names,
///   errors, telemetry and the write-ahead log. Default: the trait's name.
/// - `retry_budget(ratio = 0.1, max = 10, min_per_second = 10)`: one budget
///   for the retries of all the contract's methods (a success earns `ratio`
///   of a token up to `max`; a retry spends one; `min_per_second` retries
///   are always allowed). Default: exactly those values, on for every
///   contract with a retrying method; `retry_budget(off)` removes it.
/// - `idempotency_header = "X-Request-Id"`: the header `seawall::http`
///   sends the idempotency key in. Default: `"Idempotency-Key"`.
/// - `rate(limit = "100/10s", ..)`: one rate limiter for every method
///   without a `rate` of its own, named after the contract unless `name`
///   says otherwise; the keys of a method's `rate`. Default: none.
/// - `mock`: also generate `Mock<Trait>`, a test double over
///   `seawall::mock` (scripted answers, faults, recorded calls); needs
///   seawall's `mock` feature, and without it is one error saying so.
///   Default: no double.
///
/// Beside a contract with `fallback = queue` writes it also generates
/// `<Trait>Outbox`, the same writes queued inside the application's own
/// database transaction (`wrapper.outbox(&mut *tx)`, feature `postgres`).
#[proc_macro_attribute]
pub fn contract(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::contract(args.into(), item.into()).into()
}

/// The policy of one method of a `#[contract]` trait.
///
/// Read by `#[contract]`; on its own (outside a `#[contract]` trait) it is an
/// error, since there is nothing to make resilient.
///
/// # Keys, and their defaults
///
/// Durations are strings: `"250ms"`, `"10s"`, `"1m 30s"`.
///
/// - `read` or `write`: exactly one. Required.
/// - `timeout = "10s"`: the limit of each attempt. Required (no default).
/// - `deadline = "1m"`: the limit of the whole call, every attempt and
///   backoff included; at least the policy's worst case. Default: none.
/// - `retry`: retry what is worth retrying. Default: one attempt. Its keys:
///   `attempts = 3` (1 to 10; default 3), `base = "100ms"` (default),
///   `cap = "5s"` (default), `jitter = "full"` (or `"equal"`,
///   `"decorrelated"`, `"none"`; default `"full"`), `max_elapsed = "10s"`
///   (default none), `on = ["retryable"]` (default; add `"vendor_fault"`,
///   `"permanent"`).
/// - `idempotent` or `idempotent(key = [account, invoice.number])`: an
///   idempotency key from every argument, or from the named arguments and
///   fields; required on a `write` that retries. Default: none.
///   `idempotent(.., store)` records completed writes and replays them:
///   `retention = "24h"` (default), `replay_failures = true` (default),
///   `concurrent = "wait"` (default; or `"reject"`).
/// - `breaker`: a circuit breaker. Default: none. Its keys, with their
///   defaults: `failure_rate = 0.5`, `window = 100` (attempts; or a
///   duration such as `"30s"`), `min_calls = 100` (or the window's size if
///   smaller), `consecutive_failures = 10` (`0`: off), `open_for = "30s"`,
///   `open_for_max` (not set: a fixed `open_for`), `probes = 1`,
///   `half_open_max = "1m"`, `slow` (not set), `slow_rate = 0.5` (needs
///   `slow`), `failure_classes = ["retryable", "vendor_fault"]`,
///   `name = "contract.method"` (one breaker per method; a shared name
///   shares it).
/// - `fallback = cache(max_stale = "1h")` (a read; `capacity = 10000`
///   entries by default), `fallback = queue` or
///   `fallback = queue(order_by = [account])` (an `idempotent` write
///   returning `Result<Delivery<T>, E>`), or
///   `fallback = with(path::to::function)`. Default: none.
/// - `redact = [token, card]`: arguments never recorded, and sealed at rest
///   in a queued write. Default: none.
/// - `rate(limit = "100/10s")`: at most this many calls (attempts) per
///   period reach the vendor; callers wait their turn, first come first
///   served. Default: none (or the contract's `rate`). Its keys, with their
///   defaults: `burst = 1`, `max_wait = "1s"` (shorter than any
///   `deadline`), `name = "contract.method"` (a shared name shares it).
/// - `bulkhead(max = 20)`: at most this many attempts in flight to the
///   vendor. Default: none. Its keys, with their defaults: `queue = 0`
///   (callers that may wait for a place), `max_wait = "1s"`.
///   `bulkhead(adaptive)`: a limit that follows the vendor's latency
///   (TCP Vegas' queue estimate), between `min = 1` and `max = 100`, from
///   20; `queue` and `max_wait` as above.
/// - `hedge(after = "150ms")` (or `after = "p95"`, the method's own recent
///   latency percentile): when an attempt has not answered after `after`,
///   another goes in parallel and the first answer wins. Reads, and writes
///   marked `idempotent`, only. Default: none. Its key, with its default:
///   `max = 1` (hedges per attempt, at most 3).
///
/// The README's "Policy keys" section gives the reason for each default.
#[proc_macro_attribute]
pub fn integration(args: TokenStream, item: TokenStream) -> TokenStream {
    fallback::integration_outside_contract(args.into(), item.into()).into()
}

/// Implements `seawall::Classify` for an error type.
///
/// On an enum, each variant says how it is classified:
/// `#[classify(retryable)]`, `#[classify(vendor_fault)]`,
/// `#[classify(permanent)]`, `#[classify(ignored)]`, or
/// `#[classify(delegate)]` for a variant that wraps one value whose own
/// `Classify` implementation decides (its class, its `retry_after` and its
/// `error_type`). On a struct, the same attribute goes on the struct. A
/// variant without one is a compile error: every class is a decision.
///
/// The `error_type` telemetry reports is `"Type::Variant"` for a variant
/// with a fixed class (`"Type"` for a struct), and what the wrapped value
/// says for a delegating one (`"503"` for a status, `"timeout"` for
/// seawall's timeout), else `"Type::Variant"`.
#[proc_macro_derive(Classify, attributes(classify))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    expand::classify::derive(input.into()).into()
}
