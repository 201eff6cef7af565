//! The kept trait (with `Send` futures), the per-method endpoint table, and
//! `impl Trait for ::seawall::Resilient<I>`.

use proc_macro2::{Literal, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::parse_quote;
use syn::spanned::Spanned;

use super::{Contract, Method};
use seawall_policy::{ClassSet, ErrorClass, Jitter, Kind, OnDuplicate, Policy, Window};

use crate::validate::KeyValues;

pub(super) fn expand(contract: &Contract) -> TokenStream {
    let kept = kept_trait(contract);
    let table = endpoint_table(contract);
    let imp = resilient_impl(contract);
    quote! {
        #kept
        const _: () = {
            #table
            #imp
        };
    }
}

/// The user's trait, each `async fn` turned into a `fn` returning a `Send`
/// future. Adapters still implement it with `async fn`.
fn kept_trait(contract: &Contract) -> syn::ItemTrait {
    let mut item = contract.item.clone();
    item.items = contract
        .methods
        .iter()
        .map(|method| {
            let attrs = &method.attrs;
            let sig = future_sig(method, &method.sig);
            parse_quote! {
                #(#attrs)*
                #sig;
            }
        })
        .collect();
    item
}

fn future_sig(method: &Method, sig: &syn::Signature) -> syn::Signature {
    let output = &method.output;
    let mut sig = sig.clone();
    sig.asyncness = None;
    sig.output = parse_quote! {
        -> impl ::seawall::__private::Future<Output = #output> + ::seawall::__private::Send
    };
    sig
}

fn endpoint_table(contract: &Contract) -> TokenStream {
    let fields = contract.methods.iter().map(|m| &m.sig.ident);
    let builds = contract.methods.iter().map(|method| {
        let ident = &method.sig.ident;
        let name = &contract.name;
        let method_name = ident.to_string();
        let method_name = method_name.strip_prefix("r#").unwrap_or(&method_name);
        let policy = policy(&method.policy.policy);
        quote! {
            #ident: ::seawall::__private::endpoint(__seawall_runtime, #name, #method_name, #policy)
        }
    });
    quote! {
        struct __SeawallEndpoints {
            #( #fields: ::seawall::__private::Endpoint, )*
        }
        impl ::seawall::__private::ContractEndpoints for __SeawallEndpoints {
            fn build(__seawall_runtime: &::seawall::Runtime) -> Self {
                Self { #( #builds, )* }
            }
        }
    }
}

fn duration(duration: std::time::Duration) -> TokenStream {
    let nanos = Literal::u64_suffixed(duration.as_nanos() as u64);
    quote!(::seawall::__private::Duration::from_nanos(#nanos))
}

fn classes(set: ClassSet) -> TokenStream {
    let classes = set.iter().map(|class| match class {
        ErrorClass::Retryable => quote!(::seawall::__private::ErrorClass::Retryable),
        ErrorClass::VendorFault => quote!(::seawall::__private::ErrorClass::VendorFault),
        ErrorClass::Permanent => quote!(::seawall::__private::ErrorClass::Permanent),
        _ => quote!(::seawall::__private::ErrorClass::Ignored),
    });
    quote!(::seawall::__private::ClassSet::of([#(#classes),*]))
}

/// The checked policy as code: every value explicit, so the generated
/// policy never depends on a default that could drift.
fn policy(policy: &Policy) -> TokenStream {
    let kind = match policy.kind() {
        Kind::Write => quote!(::seawall::__private::Kind::Write),
        _ => quote!(::seawall::__private::Kind::Read),
    };
    let timeout = duration(policy.timeout());
    let mut tokens = quote!(::seawall::__private::Policy::new(#kind, #timeout));
    if let Some(deadline) = policy.deadline() {
        let deadline = duration(deadline);
        tokens.extend(quote!(.with_deadline(#deadline)));
    }
    let retry = policy.retry();
    if retry.attempts() > 1 {
        let attempts = Literal::u32_suffixed(retry.attempts());
        let base = duration(retry.base());
        let cap = duration(retry.cap());
        let jitter = match retry.jitter() {
            Jitter::Equal => quote!(Equal),
            Jitter::Decorrelated => quote!(Decorrelated),
            Jitter::None => quote!(None),
            _ => quote!(Full),
        };
        let on = classes(retry.retry_on());
        let max_elapsed = retry.max_elapsed().map(|max| {
            let max = duration(max);
            quote!(.with_max_elapsed(#max))
        });
        tokens.extend(quote! {
            .with_retry(::seawall::__private::RetryPolicy::new(#attempts)
                .with_base(#base)
                .with_cap(#cap)
                .with_jitter(::seawall::__private::Jitter::#jitter)
                .with_retry_on(#on)
                #max_elapsed)
        });
        tokens.extend(match policy.retry_budget() {
            Some(budget) => {
                let ratio = Literal::f64_suffixed(budget.ratio());
                let max = Literal::u32_suffixed(budget.max());
                let min_per_second = Literal::u32_suffixed(budget.min_per_second());
                quote! {
                    .with_retry_budget(::seawall::__private::BudgetPolicy::new()
                        .with_ratio(#ratio)
                        .with_max(#max)
                        .with_min_per_second(#min_per_second))
                }
            }
            None => quote!(.without_retry_budget()),
        });
    }
    if let Some(breaker) = policy.breaker() {
        let rate = Literal::f64_suffixed(breaker.failure_rate());
        let window = match breaker.window() {
            Window::Time(span) => {
                let span = duration(span);
                quote!(.with_time_window(#span))
            }
            Window::Calls(calls) => {
                let calls = Literal::u32_suffixed(calls);
                quote!(.with_window(#calls))
            }
        };
        let min_calls = Literal::u32_suffixed(breaker.min_calls());
        let open_for = duration(breaker.open_for());
        let open_for_max = breaker.open_for_max().map(|max| {
            let max = duration(max);
            quote!(.with_open_for_max(#max))
        });
        let probes = Literal::u32_suffixed(breaker.probes());
        let half_open_max = duration(breaker.half_open_max());
        let slow = breaker.slow().map(|slow| {
            let slow = duration(slow);
            quote!(.with_slow(#slow))
        });
        let slow_rate = Literal::f64_suffixed(breaker.slow_rate());
        let failure_classes = classes(breaker.failure_classes());
        let name = breaker.name().map(|name| quote!(.with_name(#name)));
        tokens.extend(quote! {
            .with_breaker(::seawall::__private::BreakerPolicy::new()
                .with_failure_rate(#rate)
                #window
                .with_min_calls(#min_calls)
                .with_open_for(#open_for)
                #open_for_max
                .with_probes(#probes)
                .with_half_open_max(#half_open_max)
                #slow
                .with_slow_rate(#slow_rate)
                .with_failure_classes(#failure_classes)
                #name)
        });
    }
    if policy.has_idempotency_key() {
        tokens.extend(quote!(.with_idempotency_key()));
        let header = policy.idempotency_header();
        if header != seawall_policy::DEFAULT_IDEMPOTENCY_HEADER {
            tokens.extend(quote!(.with_idempotency_header(#header)));
        }
    }
    if let Some(cache) = policy.cache_fallback() {
        let max_stale = duration(cache.max_stale());
        let capacity = Literal::u64_suffixed(cache.capacity());
        tokens.extend(quote! {
            .with_cache_fallback(::seawall::__private::CachePolicy::new(#max_stale)
                .with_capacity(#capacity))
        });
    }
    if let Some(store) = policy.idempotency_store() {
        let retention = duration(store.retention());
        let replay = store.replay_failures();
        let on_duplicate = match store.on_duplicate() {
            OnDuplicate::Reject => quote!(Reject),
            _ => quote!(Wait),
        };
        tokens.extend(quote! {
            .with_idempotency_store(::seawall::__private::StorePolicy::new()
                .with_retention(#retention)
                .with_replay_failures(#replay)
                .with_on_duplicate(::seawall::__private::OnDuplicate::#on_duplicate))
        });
    }
    tokens
}

fn resilient_impl(contract: &Contract) -> TokenStream {
    let item = &contract.item;
    let trait_ident = &item.ident;
    let unsafety = &item.unsafety;
    let (_, trait_args, _) = item.generics.split_for_impl();
    let mut generics = item.generics.clone();
    generics.params.push(parse_quote! {
        __SeawallInner: #trait_ident #trait_args + ::seawall::__private::Sync
    });
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let trait_path = quote!(<__SeawallInner as #trait_ident #trait_args>);
    let methods = contract
        .methods
        .iter()
        .map(|method| resilient_method(contract, method, &trait_path));
    quote! {
        #unsafety impl #impl_generics #trait_ident #trait_args for ::seawall::Resilient<__SeawallInner>
        #where_clause
        {
            #( #methods )*
        }
    }
}

fn resilient_method(contract: &Contract, method: &Method, trait_path: &TokenStream) -> TokenStream {
    let ident = &method.sig.ident;
    let retries = method.policy.policy.retry().attempts() > 1;
    let custom_fallback = method.policy.custom_fallback.as_ref();
    // With a custom fallback the arguments must outlive the pipeline (the
    // fallback receives them), so attempts borrow them and clone what they
    // take by value.
    let copies = retries || custom_fallback.is_some();
    let mut sig = method.sig.clone();
    let mut args = Vec::new();
    let mut names = Vec::new();
    let mut borrows = Vec::new();
    let mut impl_trait_arg = false;
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        };
        let name = match &*typed.pat {
            syn::Pat::Ident(pat) => pat.ident.clone(),
            _ => format_ident!("__seawall_arg{}", index),
        };
        *typed.pat = parse_quote!(#name);
        names.push(name.clone());
        impl_trait_arg |= mentions_impl_trait(&typed.ty);
        args.push(if copies && !is_shared_ref(&typed.ty) {
            if custom_fallback.is_some() {
                let borrowed = format_ident!("__seawall_borrowed_{}", index);
                borrows.push(quote!(let #borrowed = &#name;));
                quote_spanned! {typed.ty.span()=>
                    ::seawall::__private::RetryArg::for_attempt(#borrowed)
                }
            } else {
                quote_spanned! {typed.ty.span()=>
                    ::seawall::__private::RetryArg::for_attempt(&#name)
                }
            }
        } else {
            quote!(#name)
        });
    }
    let sig = future_sig(method, &sig);
    let type_args: Vec<_> = method
        .sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(ty) => Some(ty.ident.clone()),
            syn::GenericParam::Const(c) => Some(c.ident.clone()),
            _ => None,
        })
        .collect();
    let turbofish = (!type_args.is_empty() && !impl_trait_arg).then(|| quote!(::<#(#type_args),*>));
    // Spanned at the return type, so an error type that cannot carry
    // seawall's errors is reported there, not inside generated code.
    let output_span = method.output.span();
    let key = method
        .policy
        .key
        .as_ref()
        .map(|values| key(contract, method, values, &names));
    let call = match (copies, key.is_some()) {
        (true, false) => quote_spanned!(output_span=> call),
        (false, false) => quote_spanned!(output_span=> call_once),
        (true, true) => quote_spanned!(output_span=> call_keyed),
        (false, true) => quote_spanned!(output_span=> call_once_keyed),
    };
    let key_arg = key.as_ref().map(|_| quote!(__seawall_key,));
    let attempt = quote!(move || #trait_path::#ident #turbofish(__seawall_inner, #(#args),*));
    let stored = method.policy.policy.idempotency_store().is_some();
    let run = if stored {
        let fingerprint = fingerprint(method, &names);
        let stored_call = quote_spanned! {output_span=>
            __seawall_endpoint
                .stored(__seawall_key, &__seawall_fingerprint, move |__seawall_key| {
                    __seawall_endpoint.#call(__seawall_key, #attempt)
                })
                .await
        };
        quote! {
            #fingerprint
            #stored_call
        }
    } else {
        quote_spanned! {output_span=>
            __seawall_endpoint.#call(#key_arg #attempt).await
        }
    };
    let body = quote! {
        #key
        #run
    };
    let body = match method.policy.policy.cache_fallback() {
        None => body,
        Some(_) => {
            // The cache keeps one answer per set of arguments: hash them
            // (each checked for `Hash` where it was written) before the call.
            let parts = names.iter().map(|name| {
                quote_spanned! {name.span()=>
                    ::seawall::__private::cache_key_part(&mut __seawall_hasher, &#name);
                }
            });
            let cached = if returns_cached(&method.output) {
                quote_spanned!(output_span=> cached)
            } else {
                quote_spanned!(output_span=> cached_plain)
            };
            let serve = quote_spanned! {output_span=>
                __seawall_endpoint.#cached(__seawall_cache_key, async move { #body }).await
            };
            quote! {
                let mut __seawall_hasher = ::seawall::__private::KeyHasher::new();
                #(#parts)*
                let __seawall_cache_key = __seawall_hasher.finish();
                #serve
            }
        }
    };
    let body = match custom_fallback {
        None => body,
        Some(path) => {
            // Spanned at the path, so a function of the wrong shape is
            // reported there.
            let answer = quote_spanned! {path.span()=>
                #path(#(&#names,)* __seawall_error)
            };
            quote! {
                #(#borrows)*
                let __seawall_result = async { #body }.await;
                match __seawall_result {
                    ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                    ::core::result::Result::Err(__seawall_error) => #answer,
                }
            }
        }
    };
    quote! {
        #sig {
            let __seawall_endpoint =
                &::seawall::Resilient::__endpoints::<__SeawallEndpoints>(self).#ident;
            let __seawall_inner = ::seawall::Resilient::inner(self);
            async move { #body }
        }
    }
}

/// Whether `Result<T, E>`'s `T` is `Cached<..>` (by any path ending in it).
fn returns_cached(output: &syn::Type) -> bool {
    let syn::Type::Path(path) = output else {
        return false;
    };
    let Some(result) = path.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(arguments) = &result.arguments else {
        return false;
    };
    matches!(
        arguments.args.first(),
        Some(syn::GenericArgument::Type(syn::Type::Path(value)))
            if value.path.segments.last().is_some_and(|segment| segment.ident == "Cached")
    )
}

/// The fingerprint of a stored write's whole payload (every argument): the
/// same key with another fingerprint is a conflict.
fn fingerprint(method: &Method, names: &[syn::Ident]) -> TokenStream {
    let method_name = method.sig.ident.to_string();
    let parts = names.iter().map(|name| {
        let text = name.to_string();
        quote_spanned! {name.span()=>
            .part(#text, ::seawall::__private::key_part(&#name))
        }
    });
    quote! {
        let __seawall_fingerprint = match ::seawall::__private::IdempotencyKey::builder(
            "seawall-fingerprint",
            #method_name,
        )
            #(#parts)*
            .finish()
        {
            ::core::result::Result::Ok(fingerprint) => fingerprint.to_string(),
            ::core::result::Result::Err(error) => {
                return ::core::result::Result::Err(::core::convert::From::from(error));
            }
        };
    }
}

/// Derives the call's idempotency key once, before the first attempt.
fn key(
    contract: &Contract,
    method: &Method,
    values: &KeyValues,
    names: &[syn::Ident],
) -> TokenStream {
    let contract_name = &contract.name;
    let method_name = method.sig.ident.to_string();
    let method_name = method_name.strip_prefix("r#").unwrap_or(&method_name);
    let parts: Vec<TokenStream> = match values {
        KeyValues::AllArguments => names
            .iter()
            .map(|name| {
                let text = name.to_string();
                let text = text.strip_prefix("r#").unwrap_or(&text).to_owned();
                quote_spanned! {name.span()=>
                    .part(#text, ::seawall::__private::key_part(&#name))
                }
            })
            .collect(),
        KeyValues::Paths(paths) => paths
            .iter()
            .map(|path| {
                let text = &path.name;
                let expr = &path.expr;
                quote_spanned! {path.root.span()=>
                    .part(#text, ::seawall::__private::key_part(&#expr))
                }
            })
            .collect(),
    };
    quote! {
        let __seawall_key = match ::seawall::__private::IdempotencyKey::builder(#contract_name, #method_name)
            #(#parts)*
            .finish()
        {
            ::core::result::Result::Ok(key) => key,
            ::core::result::Result::Err(error) => {
                return ::core::result::Result::Err(::core::convert::From::from(error));
            }
        };
    }
}

/// `&T`: copied into every attempt as it is.
fn is_shared_ref(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(reference) => reference.mutability.is_none(),
        syn::Type::Paren(inner) => is_shared_ref(&inner.elem),
        syn::Type::Group(inner) => is_shared_ref(&inner.elem),
        _ => false,
    }
}

/// Whether a type is or contains `impl Trait` (which rules out a turbofish).
fn mentions_impl_trait(ty: &syn::Type) -> bool {
    fn any_impl(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => any_impl(group.stream()),
            _ => false,
        })
    }
    any_impl(quote!(#ty))
}
