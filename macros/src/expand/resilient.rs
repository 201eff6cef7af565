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

pub(super) fn future_sig(method: &Method, sig: &syn::Signature) -> syn::Signature {
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
        let consecutive = Literal::u32_suffixed(breaker.consecutive_failures().unwrap_or(0));
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
                .with_consecutive_failures(#consecutive)
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
    if policy.queue_fallback() {
        tokens.extend(quote!(.with_queue_fallback()));
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

fn queues(contract: &Contract) -> bool {
    contract
        .methods
        .iter()
        .any(|method| method.queued.is_some())
}

/// How a method body reaches its endpoint table. A contract with queued
/// writes also offers the wrapper to deliver them, when the table is built.
fn endpoints(contract: &Contract, this: &TokenStream) -> TokenStream {
    if queues(contract) {
        let name = &contract.name;
        quote! {
            ::seawall::Resilient::__endpoints_draining::<__SeawallEndpoints>(
                #this,
                #name,
                __seawall_dispatch::<__SeawallInner>,
            )
        }
    } else {
        quote!(::seawall::Resilient::__endpoints::<__SeawallEndpoints>(#this))
    }
}

fn resilient_impl(contract: &Contract) -> TokenStream {
    let item = &contract.item;
    let trait_ident = &item.ident;
    let unsafety = &item.unsafety;
    let (_, trait_args, _) = item.generics.split_for_impl();
    let mut generics = item.generics.clone();
    // A drain delivers queued writes from a task of its own, through the
    // wrapper: the adapter must be shareable and own its data.
    let bounds = if queues(contract) {
        quote!(::seawall::__private::Send + ::seawall::__private::Sync + 'static)
    } else {
        quote!(::seawall::__private::Sync)
    };
    generics.params.push(parse_quote! {
        __SeawallInner: #trait_ident #trait_args + #bounds
    });
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let trait_path = quote!(<__SeawallInner as #trait_ident #trait_args>);
    let methods = contract
        .methods
        .iter()
        .map(|method| resilient_method(contract, method, &trait_path));
    let dispatch = queues(contract).then(|| dispatch(contract, &trait_path, &bounds));
    quote! {
        #unsafety impl #impl_generics #trait_ident #trait_args for ::seawall::Resilient<__SeawallInner>
        #where_clause
        {
            #( #methods )*
        }
        #dispatch
    }
}

/// A method's arguments as the pipeline takes them.
struct Arguments {
    /// Each argument's name (`__seawall_argN` for `_`).
    names: Vec<syn::Ident>,
    /// Each argument's type.
    types: Vec<syn::Type>,
    /// What each attempt passes the adapter.
    passed: Vec<TokenStream>,
    /// `let __seawall_borrowed_N = &name;` for arguments by value that must
    /// outlive the pipeline.
    borrows: Vec<TokenStream>,
    impl_trait: bool,
}

/// Whether the arguments outlive the pipeline: a custom fallback receives
/// them, a queued write keeps them.
fn keeps_arguments(method: &Method) -> bool {
    method.policy.custom_fallback.is_some() || method.queued.is_some()
}

/// Whether each attempt needs its own copy of the arguments by value.
fn copies(method: &Method) -> bool {
    method.policy.policy.retry().attempts() > 1 || keeps_arguments(method)
}

fn arguments(method: &Method, sig: &mut syn::Signature) -> Arguments {
    let copies = copies(method);
    let keeps = keeps_arguments(method);
    let mut arguments = Arguments {
        names: Vec::new(),
        types: Vec::new(),
        passed: Vec::new(),
        borrows: Vec::new(),
        impl_trait: false,
    };
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        };
        let name = match &*typed.pat {
            syn::Pat::Ident(pat) => pat.ident.clone(),
            _ => format_ident!("__seawall_arg{}", index),
        };
        *typed.pat = parse_quote!(#name);
        arguments.impl_trait |= mentions_impl_trait(&typed.ty);
        arguments
            .passed
            .push(if copies && !is_shared_ref(&typed.ty) {
                if keeps {
                    let borrowed = format_ident!("__seawall_borrowed_{}", index);
                    arguments.borrows.push(quote!(let #borrowed = &#name;));
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
        arguments.names.push(name);
        arguments.types.push((*typed.ty).clone());
    }
    arguments
}

/// The pipeline of one call, given `__seawall_endpoint`, `__seawall_inner`,
/// the arguments by name and `__seawall_key` (for a keyed write): an
/// expression of the method's `Result`.
fn pipeline(method: &Method, arguments: &Arguments, trait_path: &TokenStream) -> TokenStream {
    let ident = &method.sig.ident;
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
    let turbofish =
        (!type_args.is_empty() && !arguments.impl_trait).then(|| quote!(::<#(#type_args),*>));
    // Spanned at the return type, so an error type that cannot carry
    // seawall's errors is reported there, not inside generated code.
    let output_span = method.output.span();
    let keyed = method.policy.key.is_some();
    let call = match (copies(method), keyed) {
        (true, false) => quote_spanned!(output_span=> call),
        (false, false) => quote_spanned!(output_span=> call_once),
        (true, true) => quote_spanned!(output_span=> call_keyed),
        (false, true) => quote_spanned!(output_span=> call_once_keyed),
    };
    let key_arg = keyed.then(|| quote!(__seawall_key,));
    let passed = &arguments.passed;
    let attempt = quote!(move || #trait_path::#ident #turbofish(__seawall_inner, #(#passed),*));
    if method.policy.policy.idempotency_store().is_some() {
        let fingerprint = fingerprint(method, &arguments.names);
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
    }
}

fn resilient_method(contract: &Contract, method: &Method, trait_path: &TokenStream) -> TokenStream {
    let ident = &method.sig.ident;
    let mut sig = method.sig.clone();
    let arguments = arguments(method, &mut sig);
    let names = &arguments.names;
    let borrows = &arguments.borrows;
    let sig = future_sig(method, &sig);
    let output_span = method.output.span();
    let key = method
        .policy
        .key
        .as_ref()
        .map(|values| key(contract, method, values, names));
    let run = pipeline(method, &arguments, trait_path);
    let body = match &method.queued {
        Some(_) => {
            let parts = names.iter().zip(&arguments.types).map(|(name, ty)| {
                let text = name.to_string();
                let text = text.strip_prefix("r#").unwrap_or(&text).to_owned();
                let value = if is_shared_ref(ty) {
                    quote!(#name)
                } else {
                    quote!(&#name)
                };
                quote_spanned! {ty.span()=> .arg(#text, #value) }
            });
            let queued = quote_spanned! {output_span=>
                __seawall_endpoint
                    .queued(
                        ::core::clone::Clone::clone(&__seawall_key),
                        async { #run },
                        __seawall_arguments,
                    )
                    .await
            };
            quote! {
                #(#borrows)*
                #key
                let __seawall_arguments = || {
                    ::seawall::__private::QueuedArguments::new()
                        #(#parts)*
                        .finish()
                };
                #queued
            }
        }
        None => quote! {
            #key
            #run
        },
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
    let body = match &method.policy.custom_fallback {
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
    let endpoints = endpoints(contract, &quote!(self));
    let arguments_event = arguments_event(contract, method, names);
    quote! {
        #sig {
            let __seawall_endpoint = &#endpoints.#ident;
            let __seawall_inner = ::seawall::Resilient::inner(self);
            async move {
                #arguments_event
                #body
            }
        }
    }
}

/// A `debug` event (target `seawall::args`) with each argument's `Debug`
/// (`<not Debug>` when it has none), `<redacted>` for those named in
/// `redact = [..]`. Built only when something records it.
fn arguments_event(contract: &Contract, method: &Method, names: &[syn::Ident]) -> TokenStream {
    let contract_name = &contract.name;
    let method_name = method.sig.ident.to_string();
    let method_name = method_name
        .strip_prefix("r#")
        .unwrap_or(&method_name)
        .to_owned();
    let fields = names.iter().map(|name| {
        let text = name.to_string();
        let field = format!("arg.{}", text.strip_prefix("r#").unwrap_or(&text));
        if method.policy.redact.iter().any(|redacted| redacted == name) {
            quote!(#field = "<redacted>")
        } else {
            quote! {
                #field = ?{
                    #[allow(unused_imports)]
                    use ::seawall::__private::{ViaDebug as _, ViaOpaque as _};
                    (&&::seawall::__private::DebugArg(&#name)).traced()
                }
            }
        }
    });
    quote! {
        ::seawall::__private::tracing::debug!(
            target: "seawall::args",
            contract = #contract_name,
            method = #method_name,
            #(#fields,)*
            "arguments"
        );
    }
}

/// The generated replay machinery: re-issues one stored write of the
/// contract through the wrapper, matching its method name and reading its
/// arguments back, with its original idempotency key.
fn dispatch(contract: &Contract, trait_path: &TokenStream, bounds: &TokenStream) -> TokenStream {
    let trait_ident = &contract.item.ident;
    let endpoints = endpoints(contract, &quote!(__seawall_this));
    let arms = contract
        .methods
        .iter()
        .filter(|method| method.queued.is_some())
        .map(|method| {
            let ident = &method.sig.ident;
            let method_name = ident.to_string();
            let method_name = method_name
                .strip_prefix("r#")
                .unwrap_or(&method_name)
                .to_owned();
            let mut sig = method.sig.clone();
            let arguments = arguments(method, &mut sig);
            let reads = arguments
                .names
                .iter()
                .zip(&arguments.types)
                .enumerate()
                .map(|(index, (name, ty))| {
                    let text = name.to_string();
                    let text = text.strip_prefix("r#").unwrap_or(&text).to_owned();
                    let owned = format_ident!("__seawall_owned_{}", index);
                    // What is kept in the log: the value itself, or for an
                    // argument by reference what it borrows from.
                    let stored = match ty {
                        syn::Type::Reference(reference) => match &*reference.elem {
                            syn::Type::Path(path)
                                if path.qself.is_none() && path.path.is_ident("str") =>
                            {
                                quote!(::std::string::String)
                            }
                            syn::Type::Slice(slice) => {
                                let item = static_lifetimes(&slice.elem);
                                quote!(::std::vec::Vec<#item>)
                            }
                            referent => {
                                let referent = static_lifetimes(referent);
                                quote!(#referent)
                            }
                        },
                        _ => {
                            let ty = static_lifetimes(ty);
                            quote!(#ty)
                        }
                    };
                    let local = if is_shared_ref(ty) {
                        quote!(let #name = &#owned;)
                    } else {
                        quote!(let #name = #owned;)
                    };
                    // Spanned at the type, so one that cannot be read back
                    // is reported there.
                    let take = quote_spanned! {ty.span()=>
                        __seawall_args.take::<#stored>(#text)
                    };
                    quote! {
                        let #owned = match #take {
                            ::core::result::Result::Ok(value) => value,
                            ::core::result::Result::Err(undecodable) => return undecodable,
                        };
                        #local
                    }
                });
            let borrows = &arguments.borrows;
            let run = pipeline(method, &arguments, trait_path);
            // Spanned at the answer type, so one that cannot be kept with
            // its ticket is reported there.
            let replayed = match &method.queued {
                Some(answer) => quote_spanned! {answer.span()=>
                    ::seawall::__private::replayed(__seawall_endpoint, __seawall_result)
                },
                None => quote!(::seawall::__private::replayed(
                    __seawall_endpoint,
                    __seawall_result
                )),
            };
            quote! {
                #method_name => {
                    let __seawall_endpoint = &#endpoints.#ident;
                    #(#reads)*
                    #(#borrows)*
                    let __seawall_key =
                        ::seawall::__private::IdempotencyKey::from_stored(&__seawall_write.key);
                    let __seawall_result = async { #run }.await;
                    #replayed
                }
            }
        });
    quote! {
        fn __seawall_dispatch<'__seawall, __SeawallInner>(
            __seawall_this: &'__seawall ::seawall::Resilient<__SeawallInner>,
            __seawall_write: &'__seawall ::seawall::__private::QueuedWrite,
        ) -> ::seawall::__private::BoxFuture<'__seawall, ::seawall::__private::Replayed>
        where
            __SeawallInner: #trait_ident + #bounds,
        {
            ::std::boxed::Box::pin(async move {
                let __seawall_inner = ::seawall::Resilient::inner(__seawall_this);
                let mut __seawall_args = match ::seawall::__private::Arguments::of(__seawall_write) {
                    ::core::result::Result::Ok(arguments) => arguments,
                    ::core::result::Result::Err(undecodable) => return undecodable,
                };
                match __seawall_write.method.as_str() {
                    #( #arms )*
                    _ => ::seawall::__private::unknown_method(__seawall_write),
                }
            })
        }
    }
}

/// The type with every lifetime made `'static`, to name what is read back
/// from the log (which owns its data).
fn static_lifetimes(ty: &syn::Type) -> syn::Type {
    fn rewrite(tokens: TokenStream) -> TokenStream {
        let mut out = Vec::new();
        let mut after_quote = false;
        for token in tokens {
            let token = match token {
                TokenTree::Group(group) => {
                    let mut rewritten =
                        proc_macro2::Group::new(group.delimiter(), rewrite(group.stream()));
                    rewritten.set_span(group.span());
                    TokenTree::Group(rewritten)
                }
                TokenTree::Ident(ident) if after_quote => {
                    TokenTree::Ident(proc_macro2::Ident::new("static", ident.span()))
                }
                other => other,
            };
            after_quote = matches!(&token, TokenTree::Punct(p) if p.as_char() == '\'');
            out.push(token);
        }
        out.into_iter().collect()
    }
    syn::parse2(rewrite(quote!(#ty))).unwrap_or_else(|_| ty.clone())
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
pub(super) fn mentions_impl_trait(ty: &syn::Type) -> bool {
    fn any_impl(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => any_impl(group.stream()),
            _ => false,
        })
    }
    any_impl(quote!(#ty))
}
