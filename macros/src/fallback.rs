//! What to emit when the input is wrong: the errors, and everything a
//! correct contract gives the code around it — the trait, `impl Trait for
//! seawall::Resilient<I>` with every method, the test double when one was
//! asked for — so that one mistake shows as one error. Call sites keep
//! type-checking (and an IDE keeps completing) instead of each reporting a
//! method that is not there.
//!
//! A method whose signature follows every rule is declared as a correct
//! contract declares it (a `fn` returning a `Send` future), whatever is
//! wrong with its policy; one whose signature is itself the mistake is kept
//! as written. The bodies generated here never run, since the crate does not
//! build: they only type-check against their signature.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse_quote;

use crate::expand::{mock, resilient, result_type, well_formed};

/// The errors that explain why the contract was not expanded, then the
/// trait and what stands in for its expansion.
pub(crate) fn contract(
    errors: darling::Error,
    mut item: syn::ItemTrait,
    mock: bool,
) -> TokenStream {
    let queues = item.items.iter().any(|trait_item| {
        matches!(trait_item, syn::TraitItem::Fn(method)
            if method.attrs.iter().any(asks_to_queue))
    });
    let mut methods = Vec::new();
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(method) = trait_item {
            method.attrs.retain(|attr| !is_integration(attr));
            let declared = Declared {
                output: well_formed(method),
                item: method.clone(),
            };
            *method = declared.declaration();
            methods.push(declared);
        }
    }
    // A contract with queued writes has `resume_queued` (unless the trait
    // declares one itself, which would then be declared twice).
    let declares_resume = item.items.iter().any(|trait_item| {
        matches!(trait_item, syn::TraitItem::Fn(method) if method.sig.ident == "resume_queued")
    });
    if queues && !declares_resume {
        item.items.push(resilient::resume_queued());
    }
    let resilient = resilient_impl(&item, &methods);
    let double = mock.then(|| {
        let double = mock::fallback(&item, &methods);
        quote!(::seawall::__private_v1::mock::items! { #double })
    });
    let errors = errors.write_errors();
    quote! {
        #errors
        #item
        const _: () = {
            #resilient
        };
        #double
    }
}

/// A method of a contract that did not pass its checks.
pub(crate) struct Declared {
    /// The method as written, less its `#[integration]`.
    pub(crate) item: syn::TraitItemFn,
    /// Its `Result<T, E>`, when its signature follows every rule.
    pub(crate) output: Option<syn::Type>,
}

impl Declared {
    /// The `Result<T, E>` it returns, whether or not the rest of its
    /// signature is right (what a test double's handle is made of).
    pub(crate) fn result(&self) -> Option<&syn::Type> {
        self.output.as_ref().or_else(|| result_type(&self.item.sig))
    }

    /// The method as the trait declares it: with a `Send` future when its
    /// signature is well formed, else as written (an argument pattern that
    /// a method without a body cannot have is made `_`, as rustc would say
    /// so again).
    fn declaration(&self) -> syn::TraitItemFn {
        let mut method = self.item.clone();
        if let Some(output) = &self.output {
            method.sig = resilient::future_sig(output, &method.sig);
        } else if method.default.is_none() {
            for input in &mut method.sig.inputs {
                if let syn::FnArg::Typed(typed) = input
                    && !matches!(&*typed.pat, syn::Pat::Ident(_) | syn::Pat::Wild(_))
                {
                    *typed.pat = parse_quote!(_);
                }
            }
        }
        method
    }

    /// The method in an impl of the trait: its declared signature with
    /// every argument `_`, and a body that type-checks against it (a future
    /// that never resolves; `unimplemented!()` where the signature is itself
    /// the mistake, which cannot run either since the crate does not build).
    pub(crate) fn placeholder(&self) -> TokenStream {
        let mut sig = self.declaration().sig;
        for input in &mut sig.inputs {
            if let syn::FnArg::Typed(typed) = input {
                *typed.pat = parse_quote!(_);
            }
        }
        let cfgs = self
            .item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"));
        let body = if self.output.is_some() || returns_impl_future(&sig) {
            quote!(::core::future::pending())
        } else {
            quote!(::core::unimplemented!())
        };
        quote! {
            #(#cfgs)*
            #sig {
                #body
            }
        }
    }
}

/// `impl Trait for ::seawall::Resilient<I>`, with the bounds of a correct
/// contract's, every method a placeholder and every associated item the
/// adapter's.
fn resilient_impl(item: &syn::ItemTrait, methods: &[Declared]) -> TokenStream {
    let trait_ident = &item.ident;
    let unsafety = &item.unsafety;
    let (_, trait_args, _) = item.generics.split_for_impl();
    let mut generics = item.generics.clone();
    generics.params.push(parse_quote! {
        __SeawallInner: #trait_ident #trait_args + ::seawall::__private_v1::rt::Sync
    });
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let inner = quote!(<__SeawallInner as #trait_ident #trait_args>);
    let methods = methods.iter().map(Declared::placeholder);
    let associated = item.items.iter().filter_map(|trait_item| match trait_item {
        syn::TraitItem::Type(ty) => {
            let ident = &ty.ident;
            let (params, args, where_clause) = ty.generics.split_for_impl();
            Some(quote! {
                type #ident #params = #inner::#ident #args #where_clause;
            })
        }
        syn::TraitItem::Const(constant) => {
            let ident = &constant.ident;
            let ty = &constant.ty;
            Some(quote!(const #ident: #ty = #inner::#ident;))
        }
        _ => None,
    });
    quote! {
        #unsafety impl #impl_generics #trait_ident #trait_args for ::seawall::Resilient<__SeawallInner>
        #where_clause
        {
            #( #associated )*
            #( #methods )*
        }
    }
}

/// Whether `#[contract(args)]` asks for a test double (read apart from the
/// other arguments, which may be what is wrong).
pub(crate) fn asks_for_mock(args: TokenStream) -> bool {
    darling::ast::NestedMeta::parse_meta_list(args).is_ok_and(|list| {
        list.iter().any(|meta| {
            matches!(meta, darling::ast::NestedMeta::Meta(syn::Meta::Path(path))
                if path.is_ident("mock"))
        })
    })
}

/// Whether an `#[integration(..)]` says `fallback = queue` (read from its
/// tokens, since the rest of it may be what is wrong).
fn asks_to_queue(attr: &syn::Attribute) -> bool {
    if !is_integration(attr) {
        return false;
    }
    let syn::Meta::List(list) = &attr.meta else {
        return false;
    };
    let tokens: Vec<_> = list.tokens.clone().into_iter().collect();
    tokens.windows(3).any(|window| {
        matches!(window, [
            proc_macro2::TokenTree::Ident(key),
            proc_macro2::TokenTree::Punct(eq),
            proc_macro2::TokenTree::Ident(value),
        ] if key == "fallback" && eq.as_char() == '=' && value == "queue")
    })
}

/// `-> impl ..Future..`, written by hand: `unimplemented!()` is no future.
fn returns_impl_future(sig: &syn::Signature) -> bool {
    match &sig.output {
        syn::ReturnType::Type(_, ty) => match &**ty {
            syn::Type::ImplTrait(bounds) => bounds.bounds.iter().any(|bound| {
                matches!(bound, syn::TypeParamBound::Trait(bound)
                    if bound.path.segments.last().is_some_and(|s| s.ident == "Future"))
            }),
            _ => false,
        },
        syn::ReturnType::Default => false,
    }
}

/// `#[integration]` used anywhere but on a method of a `#[contract]` trait.
pub(crate) fn integration_outside_contract(_args: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[integration(...)]` belongs on a method of a trait marked `#[contract]`: put \
         `#[contract]` on the trait, which reads each method's policy",
    )
    .to_compile_error();
    quote! {
        #error
        #item
    }
}

/// Whether `attr` is `#[integration(...)]` (by any path ending in it).
pub(crate) fn is_integration(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "integration")
}
