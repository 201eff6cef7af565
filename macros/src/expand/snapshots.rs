//! Snapshots of what `#[contract]` generates for a few representative
//! contracts, pretty-printed with `prettyplease` and compared with `insta`
//! against the committed files in `snapshots/` beside this file.
//!
//! They pin the expansion itself, so a change to the generated code shows
//! up in review as a readable diff of the code a user's crate compiles
//! (behaviour is tested elsewhere: `tests/expansion.rs` and the UI suite).
//!
//! When the expansion changes on purpose, refresh them and review the diff
//! before committing:
//!
//! ```text
//! INSTA_UPDATE=always cargo test -p seawall-macros   # rewrite the .snap files
//! cargo insta review                                 # or accept one by one (cargo-insta)
//! ```
//!
//! Without either, a mismatch fails the test and leaves a `.snap.new` file
//! beside the old one (except under `CI`, where nothing is written).

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::parse_quote;

/// `#[contract(args)] item`, expanded and pretty-printed, after the input
/// as comment lines, so each snapshot shows what it expands.
fn expand(args: TokenStream, item: &syn::ItemTrait) -> String {
    let input = pretty(item.to_token_stream());
    let input = if args.is_empty() {
        format!("#[contract]\n{input}")
    } else {
        format!("#[contract({args})]\n{input}")
    };
    let tokens = super::contract(args, item.to_token_stream());
    let text = tokens.to_string();
    assert!(
        !text.contains("compile_error"),
        "the snapshot inputs are valid contracts: {text}"
    );
    let input: String = input.lines().map(|line| format!("// {line}\n")).collect();
    format!("{input}\n{}", pretty(tokens))
}

fn pretty(tokens: TokenStream) -> String {
    let text = tokens.to_string();
    let file: syn::File =
        syn::parse2(tokens).unwrap_or_else(|error| panic!("not a Rust file ({error}): {text}"));
    // The test double is wrapped in `mock_items! { .. }` (which needs the
    // `mock` feature); its items are shown pretty-printed after the rest.
    let (wrapped, items): (Vec<_>, Vec<_>) = file.items.into_iter().partition(|item| {
        matches!(item, syn::Item::Macro(m)
            if m.mac.path.segments.last().is_some_and(|s| s.ident == "items"))
    });
    let mut out = prettyplease::unparse(&syn::File { items, ..file });
    for item in wrapped {
        let syn::Item::Macro(m) = item else { continue };
        let inner: syn::File = syn::parse2(m.mac.tokens).expect("mock_items! holds items");
        out.push_str("::seawall::__private_v1::mock::items! {\n");
        out.push_str(&prettyplease::unparse(&inner));
        out.push_str("}\n");
    }
    out
}

macro_rules! assert_expansion {
    ($args:expr, $item:expr) => {{
        let expanded = expand($args, &$item);
        insta::with_settings!({ omit_expression => true }, {
            insta::assert_snapshot!(expanded);
        });
    }};
}

#[test]
fn read_with_cache_fallback() {
    let item: syn::ItemTrait = parse_quote! {
        pub trait Crm {
            /// Reads an account's name.
            #[integration(read, timeout = "1s", retry, breaker, fallback = cache(max_stale = "1h"))]
            async fn account(&self, id: &str) -> Result<Cached<String>, CrmError>;
        }
    };
    assert_expansion!(quote!(name = "crm"), item);
}

#[test]
fn keyed_write_with_idempotency_store() {
    let item: syn::ItemTrait = parse_quote! {
        pub trait Ledger {
            #[integration(
                write,
                timeout = "5s",
                retry,
                idempotent(key = [account, cents], store, retention = "1h")
            )]
            async fn post(&self, account: &str, cents: u64) -> Result<u64, LedgerError>;
        }
    };
    assert_expansion!(quote!(name = "ledger"), item);
}

#[test]
fn queued_write() {
    let item: syn::ItemTrait = parse_quote! {
        pub trait Telephony {
            #[integration(
                write,
                timeout = "2s",
                retry(attempts = 3),
                breaker,
                idempotent(key = [route.number]),
                redact = [reason],
                fallback = queue
            )]
            async fn route(&self, route: &Route, reason: &str)
                -> Result<Delivery<String>, TelephonyError>;
        }
    };
    assert_expansion!(quote!(name = "telephony"), item);
}

#[test]
fn generic_contract() {
    let item: syn::ItemTrait = parse_quote! {
        pub trait Store<T: Clone + Send + Sync + 'static> {
            #[integration(write, timeout = "1s")]
            async fn put(&self, key: String, value: T) -> Result<(), StoreError>;

            #[integration(read, timeout = "1s", retry)]
            async fn get<'a>(&self, key: &'a str) -> Result<Option<T>, StoreError>;
        }
    };
    assert_expansion!(quote!(), item);
}

#[test]
fn mock() {
    let item: syn::ItemTrait = parse_quote! {
        pub trait Crm {
            #[integration(read, timeout = "1s")]
            async fn account(&self, id: &str) -> Result<String, CrmError>;

            #[integration(write, timeout = "1s", idempotent)]
            async fn invoice(&self, id: &str, cents: u64) -> Result<u64, CrmError>;
        }
    };
    assert_expansion!(quote!(name = "crm", mock), item);
}
