//! From a checked contract to code. `contract` is the whole macro as a
//! function of `proc_macro2` tokens, so tests can call it directly.

pub(crate) mod classify;
pub(crate) mod mock;
mod outbox;
pub(crate) mod resilient;
#[cfg(test)]
mod snapshots;

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;

use crate::args::{ContractArgs, IntegrationArgs};
use crate::fallback;
use crate::validate::{self, ContractSettings, MethodPolicy};

/// The path generated code names the runtime's private items by (the
/// facade's `__private_v1` module). The one place it is written for the
/// policies, which `seawall-policy` emits under it.
pub(crate) fn private() -> TokenStream {
    quote::quote!(::seawall::__private_v1::policy)
}

/// A contract method that passed every check.
pub(crate) struct Method {
    pub(crate) sig: syn::Signature,
    pub(crate) attrs: Vec<syn::Attribute>,
    pub(crate) output: syn::Type,
    pub(crate) policy: MethodPolicy,
    /// `T` of `Result<Delivery<T>, E>`, for a write with `fallback = queue`.
    pub(crate) queued: Option<syn::Type>,
}

/// A trait that passed every check.
pub(crate) struct Contract {
    pub(crate) item: syn::ItemTrait,
    pub(crate) name: String,
    pub(crate) methods: Vec<Method>,
    /// `#[contract(mock)]`: generate a test double too.
    pub(crate) mock: bool,
}

/// `#[contract(args)] item`.
pub(crate) fn contract(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = match syn::parse2::<syn::ItemTrait>(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[contract]` goes on a trait that describes what your system needs from a \
                 vendor, such as `#[contract] pub trait Crm { .. }`",
            )
            .to_compile_error();
            return quote::quote! { #error #item };
        }
    };
    match check(args.clone(), &item) {
        Ok(contract) => {
            let mut tokens = resilient::expand(&contract);
            if contract.mock {
                // Through the facade, so that a build without its `mock`
                // feature reports that, once, instead of every missing path.
                let double = mock::expand(&contract);
                tokens.extend(quote::quote! {
                    ::seawall::__private_v1::mock::items! { #double }
                });
            }
            tokens
        }
        Err(errors) => fallback::contract(errors, item, fallback::asks_for_mock(args)),
    }
}

fn check(args: TokenStream, item: &syn::ItemTrait) -> darling::Result<Contract> {
    let mut errors = darling::Error::accumulator();
    let args = errors
        .handle(
            NestedMeta::parse_meta_list(args)
                .map_err(darling::Error::from)
                .and_then(|list| ContractArgs::from_list(&list)),
        )
        .unwrap_or_default();
    let name = match &args.name {
        Some(name) if name.trim().is_empty() => {
            errors.push(
                darling::Error::custom("a contract `name` must not be empty")
                    .with_span(&name.span()),
            );
            String::new()
        }
        Some(name) => (**name).clone(),
        None => item.ident.to_string(),
    };
    let settings = validate::contract(&name, &args, &mut errors);
    let mut methods = Vec::new();
    for trait_item in &item.items {
        match trait_item {
            syn::TraitItem::Fn(method) => {
                if let Some(method) = errors.handle(check_method(method, &settings)) {
                    methods.push(method);
                }
            }
            other => errors.push(
                darling::Error::custom(
                    "a `#[contract]` trait holds only `async fn` methods, each with its \
                     `#[integration(...)]` policy",
                )
                .with_span(other),
            ),
        }
    }
    if methods.iter().any(|method| method.queued.is_some()) && !item.generics.params.is_empty() {
        errors.push(
            darling::Error::custom(
                "a contract with queued writes (`fallback = queue`) cannot be generic: the \
                 write-ahead log keeps writes by contract name, and a drain after a restart \
                 must know the one adapter type to deliver them with",
            )
            .with_span(&item.generics),
        );
    }
    let mock = args.mock.is_present();
    if mock {
        mock::check(&methods, &mut errors);
    }
    errors.finish_with(Contract {
        item: item.clone(),
        name,
        methods,
        mock,
    })
}

fn check_method(method: &syn::TraitItemFn, settings: &ContractSettings) -> darling::Result<Method> {
    let mut errors = darling::Error::accumulator();
    let sig = &method.sig;

    let mut policies = method.attrs.iter().filter(|a| fallback::is_integration(a));
    let policy = match (policies.next(), policies.next()) {
        (None, _) => {
            errors.push(
                darling::Error::custom(format!(
                    "`{}` has no policy: every method of a `#[contract]` trait needs one, such as \
                     `#[integration(read, timeout = \"10s\")]`",
                    sig.ident
                ))
                .with_span(&sig.ident),
            );
            None
        }
        (Some(_), Some(second)) => {
            errors.push(
                darling::Error::custom(
                    "one `#[integration]` per method: merge the keys into a single attribute",
                )
                .with_span(second),
            );
            None
        }
        (Some(attr), None) => errors.handle(parse_policy(attr, sig, settings)),
    };

    let output = check_signature(method, &mut errors);

    let attrs = method
        .attrs
        .iter()
        .filter(|a| !fallback::is_integration(a))
        .cloned()
        .collect();
    let (policy, output) = match (policy, output) {
        (Some(policy), Some(output)) => (policy, output),
        _ => {
            errors.finish()?;
            return Err(darling::Error::custom("invalid contract method").with_span(&sig.ident));
        }
    };
    let queued = if policy.policy.queue_fallback() {
        check_queued(sig, &output, &mut errors)
    } else {
        None
    };
    errors.finish_with(Method {
        sig: sig.clone(),
        attrs,
        output,
        policy,
        queued,
    })
}

/// The rules of a contract method's signature (its policy aside), each one
/// broken an error at its tokens; the method's `Result<T, E>` when it
/// returns one.
fn check_signature(
    method: &syn::TraitItemFn,
    errors: &mut darling::error::Accumulator,
) -> Option<syn::Type> {
    let sig = &method.sig;
    if sig.asyncness.is_none() {
        errors.push(
            darling::Error::custom(
                "contract methods are `async fn`: every vendor call goes through timeouts and \
                 retries, which need a future",
            )
            .with_span(&sig.fn_token),
        );
    }
    match sig.receiver() {
        Some(receiver) if matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
        Some(receiver) => errors.push(
            darling::Error::custom(
                "contract methods take `&self`, so one adapter can serve concurrent calls",
            )
            .with_span(receiver),
        ),
        None => errors.push(
            darling::Error::custom("contract methods take `&self`: add it as the first parameter")
                .with_span(&sig.ident),
        ),
    }
    if let Some(body) = &method.default {
        errors.push(
            darling::Error::custom(
                "a contract method has no default body: the adapter implements it",
            )
            .with_span(body),
        );
    }
    for arg in &sig.inputs {
        if let syn::FnArg::Typed(typed) = arg
            && !matches!(&*typed.pat, syn::Pat::Ident(_) | syn::Pat::Wild(_))
        {
            errors.push(
                darling::Error::custom("name this argument with a plain identifier")
                    .with_span(&typed.pat),
            );
        }
    }
    match &sig.output {
        syn::ReturnType::Type(_, ty) if returns_result(ty) => Some((**ty).clone()),
        syn::ReturnType::Type(_, ty) => {
            errors.push(
                darling::Error::custom(
                    "contract methods return `Result<T, E>`, so seawall can hand back a \
                     timeout or an open breaker as an `E`",
                )
                .with_span(ty),
            );
            None
        }
        syn::ReturnType::Default => {
            errors.push(
                darling::Error::custom(
                    "contract methods return `Result<T, E>`: add a return type such as \
                     `-> Result<Account, CrmError>`",
                )
                .with_span(&sig.paren_token.span.close()),
            );
            None
        }
    }
}

/// The `Result<T, E>` of a method whose signature follows every rule, so
/// that the fallback declares it as a correct contract does (with a `Send`
/// future); `None` for one whose signature is itself a mistake.
pub(crate) fn well_formed(method: &syn::TraitItemFn) -> Option<syn::Type> {
    let mut errors = darling::Error::accumulator();
    let output = check_signature(method, &mut errors);
    errors.finish().ok().and(output)
}

/// A queued write is replayed from the log, maybe by another process: it
/// returns `Delivery<T>`, and its argument types are known and owned.
fn check_queued(
    sig: &syn::Signature,
    output: &syn::Type,
    errors: &mut darling::error::Accumulator,
) -> Option<syn::Type> {
    if let Some(param) = sig.generics.params.iter().find(|param| {
        matches!(
            param,
            syn::GenericParam::Type(_) | syn::GenericParam::Const(_)
        )
    }) {
        errors.push(
            darling::Error::custom(
                "a queued write cannot be generic: the drain reads its arguments back from the \
                 log and must know their types",
            )
            .with_span(param),
        );
    }
    for input in &sig.inputs {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        };
        if let syn::Type::Reference(reference) = &*typed.ty
            && reference.mutability.is_some()
        {
            errors.push(
                darling::Error::custom(
                    "a queued write cannot take `&mut`: when it is delivered later, nobody is \
                     there to see the change. Take the value by reference or by value",
                )
                .with_span(&typed.ty),
            );
        } else if resilient::mentions_impl_trait(&typed.ty) {
            errors.push(
                darling::Error::custom(
                    "a queued write cannot take `impl Trait`: the drain reads its arguments \
                     back from the log and must know their types",
                )
                .with_span(&typed.ty),
            );
        }
    }
    let answer = delivery_answer(output);
    if answer.is_none() {
        errors.push(
            darling::Error::custom(
                "a write with `fallback = queue` returns `Result<Delivery<T>, E>`: the caller \
                 learns whether it was delivered now or queued, such as \
                 `-> Result<Delivery<InvoiceId>, CrmError>`",
            )
            .with_span(output),
        );
    }
    answer
}

/// `T` of `Result<Delivery<T>, E>` (by any paths ending in those names).
fn delivery_answer(output: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Path(path) = output else {
        return None;
    };
    let syn::PathArguments::AngleBracketed(arguments) = &path.path.segments.last()?.arguments
    else {
        return None;
    };
    let Some(syn::GenericArgument::Type(syn::Type::Path(delivery))) = arguments.args.first() else {
        return None;
    };
    let segment = delivery.path.segments.last()?;
    if segment.ident != "Delivery" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    match arguments.args.first() {
        Some(syn::GenericArgument::Type(answer)) if arguments.args.len() == 1 => {
            Some(answer.clone())
        }
        _ => None,
    }
}

fn parse_policy(
    attr: &syn::Attribute,
    sig: &syn::Signature,
    settings: &ContractSettings,
) -> darling::Result<MethodPolicy> {
    let list = match &attr.meta {
        syn::Meta::Path(_) => Vec::new(),
        syn::Meta::List(list) => NestedMeta::parse_meta_list(list.tokens.clone())?,
        syn::Meta::NameValue(value) => {
            return Err(darling::Error::custom(
                "write the policy as a list: `#[integration(read, timeout = \"10s\")]`",
            )
            .with_span(value));
        }
    };
    let args = IntegrationArgs::from_list(&list)?;
    // Point at the attribute's name: a whole-attribute span would show only
    // its first token on stable compilers.
    let name = attr
        .path()
        .segments
        .last()
        .map_or_else(|| attr.span(), |segment| segment.ident.span());
    validate::integration(args, name, sig, settings)
}

/// The return type of a method that returns a `Result`.
pub(crate) fn result_type(sig: &syn::Signature) -> Option<&syn::Type> {
    match &sig.output {
        syn::ReturnType::Type(_, ty) if returns_result(ty) => Some(ty),
        _ => None,
    }
}

/// Whether a return type names `Result` (possibly through a path such as
/// `std::result::Result` or an alias called `Result`).
fn returns_result(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        syn::Type::Paren(inner) => returns_result(&inner.elem),
        syn::Type::Group(inner) => returns_result(&inner.elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use quote::{ToTokens, quote};

    use super::contract;

    fn crm(policy: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
        quote! {
            pub trait Crm {
                #[integration(#policy)]
                async fn account(&self, id: &str) -> Result<String, CrmError>;
            }
        }
    }

    fn compile_errors(tokens: &proc_macro2::TokenStream) -> usize {
        tokens.to_string().matches("compile_error").count()
    }

    #[test]
    fn the_same_input_expands_to_the_same_tokens() {
        let input = crm(quote!(
            read,
            timeout = "1s",
            retry,
            breaker(name = "shared")
        ));
        let first = contract(quote!(name = "crm"), input.clone()).to_string();
        let second = contract(quote!(name = "crm"), input).to_string();
        assert_eq!(first, second);
        assert_eq!(
            compile_errors(&contract(quote!(), crm(quote!(read, timeout = "1s")))),
            0
        );
    }

    #[test]
    fn one_mistake_is_one_error_and_the_trait_and_wrapper_are_still_emitted() {
        let out = contract(quote!(), crm(quote!(read, timout = "1s")));
        // The misspelt key; the missing timeout is not reported on top of it.
        assert_eq!(compile_errors(&out), 1, "{out}");
        let text = out.to_string();
        assert!(text.contains("pub trait Crm"), "{text}");
        // Declared as a correct contract declares it: its signature is right.
        assert!(
            text.contains("fn account (& self , id : & str) -> impl :: seawall :: __private_v1 :: rt :: Future"),
            "{text}"
        );
        assert!(
            !text.contains("integration"),
            "no #[integration] left to misfire: {text}"
        );
        // The wrapper still implements the method, so its call sites
        // type-check, but nothing is built on the bad policy.
        assert!(
            text.contains("for :: seawall :: Resilient < __SeawallInner >"),
            "{text}"
        );
        assert!(text.contains(":: core :: future :: pending ()"), "{text}");
        assert!(!text.contains("__private_v1 :: run"), "{text}");
    }

    #[test]
    fn a_broken_contract_still_declares_every_method_for_its_callers() {
        let out = contract(
            quote!(mock),
            quote! {
                pub trait Crm {
                    #[integration(read, timeout = "1s")]
                    async fn account(&self, id: &str) -> Result<String, CrmError>;

                    #[integration(read, timeout = "1s")]
                    fn region(&self, id: &str) -> Result<String, CrmError>;

                    #[integration(write, timeout = "1s", idempotent, fallback = queue)]
                    async fn send(&self, id: &str) -> Result<String, CrmError> {
                        Ok(id.to_owned())
                    }
                }
            },
        );
        // The default body and the queued write's answer.
        assert_eq!(compile_errors(&out), 3, "{out}");
        let file: syn::File = syn::parse2(out).expect("items");
        let mut trait_methods = Vec::new();
        let mut impl_methods = Vec::new();
        let mut mock = false;
        for item in &file.items {
            match item {
                syn::Item::Trait(item) => {
                    for item in &item.items {
                        if let syn::TraitItem::Fn(method) = item {
                            trait_methods.push(method.sig.to_token_stream().to_string());
                        }
                    }
                }
                syn::Item::Const(constant) => {
                    let syn::Expr::Block(block) = &*constant.expr else {
                        continue;
                    };
                    for stmt in &block.block.stmts {
                        if let syn::Stmt::Item(syn::Item::Impl(imp)) = stmt {
                            for item in &imp.items {
                                if let syn::ImplItem::Fn(method) = item {
                                    impl_methods.push(method.sig.ident.to_string());
                                }
                            }
                        }
                    }
                }
                syn::Item::Macro(mac) => mock |= mac.mac.tokens.to_string().contains("MockCrm"),
                _ => {}
            }
        }
        // The well-formed method as a correct contract declares it, the
        // others as written; `resume_queued` as for any queued write.
        assert!(
            trait_methods[0].starts_with("fn account") && trait_methods[0].contains("Send"),
            "{trait_methods:?}"
        );
        assert!(
            trait_methods[1].starts_with("fn region"),
            "{trait_methods:?}"
        );
        assert!(
            trait_methods[2].starts_with("async fn send"),
            "{trait_methods:?}"
        );
        assert!(
            trait_methods[3].starts_with("fn resume_queued"),
            "{trait_methods:?}"
        );
        assert_eq!(impl_methods, ["account", "region", "send"]);
        assert!(mock, "the double is generated too");
    }

    #[test]
    fn every_mistake_in_one_attribute_is_reported() {
        let out = contract(
            quote!(),
            crm(quote!(read, write, timeout = "0s", retry(attempts = 11))),
        );
        assert_eq!(compile_errors(&out), 3, "{out}");
    }

    #[test]
    fn a_policy_is_generated_with_every_value_explicit() {
        let out = contract(quote!(), crm(quote!(read, timeout = "1s", retry, breaker)))
            .to_string()
            .replace(' ', "");
        for expected in [
            "RetryPolicy::new(3u32)",
            ".with_base(::seawall::__private_v1::policy::Duration::from_nanos(100000000u64))",
            ".with_cap(::seawall::__private_v1::policy::Duration::from_nanos(5000000000u64))",
            ".with_failure_rate(0.5f64)",
            ".with_window(100u32)",
            ".with_min_calls(100u32)",
            ".with_consecutive_failures(10u32)",
            ".with_probes(1u32)",
        ] {
            assert!(out.contains(expected), "missing {expected} in {out}");
        }
    }
}
