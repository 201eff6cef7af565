//! `seawall key`: the idempotency key seawall sends for a keyed write, for
//! a support ticket with the vendor.

use clap::Args;
use seawall_core::idempotency::IdempotencyKey;

use crate::Failure;

/// What the key is derived from.
///
/// The key depends on which values the method's policy names, in which
/// order (`idempotent(key = [account, invoice.number])`), which only the
/// contract's code knows: give those values, by those names, in that order.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The contract's name (`#[contract(name = "..")]`).
    #[arg(long)]
    contract: String,
    /// The method's name, as declared in the trait.
    #[arg(long)]
    method: String,
    /// The key's values as a JSON object, in the policy's order, under the
    /// names it lists (dotted paths as written, e.g.
    /// '{"account": "acme", "invoice.number": 42}'); for a bare
    /// `idempotent`, every argument in declaration order. Each value as
    /// serde writes it to JSON (a float with its decimal point).
    #[arg(long = "args", value_name = "JSON")]
    parts: String,
    /// Print it as a header line, `NAME: key` (the contract's
    /// `idempotency_header`; `Idempotency-Key` by default).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "Idempotency-Key")]
    header: Option<String>,
}

pub(crate) fn run(args: &KeyArgs) -> Result<(), Failure> {
    let key = IdempotencyKey::from_json_parts(&args.contract, &args.method, &args.parts)
        .map_err(|error| Failure::new(error.to_string()))?;
    match &args.header {
        Some(name) => println!("{name}: {key}"),
        None => println!("{key}"),
    }
    Ok(())
}
