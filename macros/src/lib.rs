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
/// Options: `name = "salesforce"` names the contract in breaker names,
/// errors and telemetry (default: the trait's name); `mock` also generates
/// `Mock<Trait>`, a test double that implements the trait over
/// `seawall::mock` (scripted answers, faults, recorded calls); it needs
/// seawall's `mock` feature (a default one), and without it is one error
/// saying so.
///
/// See the `seawall` crate's documentation for the policy keys.
#[proc_macro_attribute]
pub fn contract(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::contract(args.into(), item.into()).into()
}

/// The policy of one method of a `#[contract]` trait.
///
/// Read by `#[contract]`; on its own (outside a `#[contract]` trait) it is an
/// error, since there is nothing to make resilient.
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
/// `Classify` implementation decides (its class and its `retry_after`). On a
/// struct, the same attribute goes on the struct. A variant without one is a
/// compile error: every class is a decision.
#[proc_macro_derive(Classify, attributes(classify))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    expand::classify::derive(input.into()).into()
}
