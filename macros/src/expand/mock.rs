//! `#[contract(mock)]`: `Mock<Trait>`, a test double with one
//! `seawall::mock::Method` handle per method, and `impl Trait` for it that
//! records each call's arguments and hands them to the handle. Everything a
//! double does lives in `seawall::mock`; this file only wires it up.

use proc_macro2::{TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse_quote;
use syn::spanned::Spanned;

use super::{Contract, Method, resilient};
use crate::fallback::Declared;

/// The rules only a mocked contract has: a double keeps its answers, so
/// they cannot borrow or depend on a method's generic parameters.
pub(super) fn check(methods: &[Method], errors: &mut darling::error::Accumulator) {
    for method in methods {
        let generics = method_generics(&method.sig);
        if !storable(&method.output, &generics) {
            errors.push(
                darling::Error::custom(
                    "`#[contract(mock)]` keeps each method's scripted answers, so a mocked \
                     method's `Result<T, E>` cannot borrow (a reference or a lifetime other \
                     than `'static`) or use a generic parameter of the method",
                )
                .with_span(&method.output),
            );
        }
    }
}

pub(super) fn expand(contract: &Contract) -> TokenStream {
    let members: Vec<Member> = contract
        .methods
        .iter()
        .map(|method| Member::Handled(handle(&method.sig, &method.output)))
        .collect();
    double(&contract.item, &members)
}

/// The double of a contract that did not pass its checks, so that tests
/// using it keep type-checking: a handle for each method that returns a
/// `Result` a double can keep, and the trait's methods, each calling its
/// handle as a correct contract's does when its signature is right, else
/// with the fallback's placeholder body.
pub(crate) fn fallback(item: &syn::ItemTrait, methods: &[Declared]) -> TokenStream {
    let members: Vec<Member> = methods
        .iter()
        .map(|method| {
            let sig = &method.item.sig;
            let handle = method
                .result()
                .filter(|output| storable(output, &method_generics(sig)))
                .map(|output| handle(sig, output));
            match handle {
                Some(handle) if method.output.is_some() => Member::Handled(handle),
                handle => Member::Placeholder(handle, method.placeholder()),
            }
        })
        .collect();
    double(item, &members)
}

/// A method of the double: its handle, and the trait's method calling it;
/// or (in a fallback) the trait's method with a placeholder body, and the
/// handle when the method has one.
enum Member {
    Handled(Handle),
    Placeholder(Option<Handle>, TokenStream),
}

fn double(item: &syn::ItemTrait, members: &[Member]) -> TokenStream {
    let vis = &item.vis;
    let trait_ident = &item.ident;
    let mock = format_ident!("Mock{}", trait_ident.unraw(), span = trait_ident.span());
    let mock_name = mock.to_string();
    let unsafety = &item.unsafety;
    let generics = &item.generics;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let methods: Vec<&Handle> = members
        .iter()
        .filter_map(|member| match member {
            Member::Handled(handle) | Member::Placeholder(Some(handle), _) => Some(handle),
            Member::Placeholder(None, _) => None,
        })
        .collect();
    let fields = methods.iter().map(|handle| {
        let ident = &handle.ident;
        let ty = &handle.ty;
        quote!(#ident: #ty)
    });
    let builds = methods.iter().map(|handle| {
        let ident = &handle.ident;
        let name = format!("{mock_name}::{}", ident.unraw());
        let args = &handle.args;
        quote! {
            #ident: ::seawall::mock::Method::showing_arguments(
                #name,
                |__seawall_args: &#args| {
                    #[allow(unused_imports)]
                    use ::seawall::__private_v1::mock::{MockShowAny as _, MockShowDebug as _};
                    (&::seawall::__private_v1::mock::MockShow(__seawall_args)).mock_show()
                },
            )
        }
    });
    let clones = methods.iter().map(|handle| {
        let ident = &handle.ident;
        quote!(#ident: ::core::clone::Clone::clone(&self.#ident))
    });
    let debug_fields = methods.iter().map(|handle| {
        let ident = &handle.ident;
        let name = ident.unraw().to_string();
        quote!(.field(#name, &self.#ident))
    });
    let accessors = methods.iter().map(|handle| {
        let ident = &handle.ident;
        let ty = &handle.ty;
        let doc = format!(
            " The handle on [`{trait_ident}::{}`]: script its answers and faults, set \
             expectations, read its calls.",
            ident.unraw()
        );
        quote! {
            #[doc = #doc]
            #[allow(clippy::type_complexity)]
            pub fn #ident(&self) -> &#ty {
                &self.#ident
            }
        }
    });
    let impls = members.iter().map(|member| match member {
        Member::Handled(handle) => {
            let sig = resilient::future_sig(&handle.output, &handle.sig);
            let ident = &handle.ident;
            let value = &handle.value;
            quote! {
                #sig {
                    ::seawall::mock::Method::call(&self.#ident, #value)
                }
            }
        }
        Member::Placeholder(_, method) => method.clone(),
    });

    // A generic contract's double is generic too; a marker keeps every
    // parameter used, whatever the methods record.
    let (marker_field, marker_value) = if generics.params.is_empty() {
        (None, None)
    } else {
        let lifetimes = generics.lifetimes().map(|param| &param.lifetime);
        let types = generics.type_params().map(|param| &param.ident);
        (
            Some(quote! {
                __seawall_marker: ::core::marker::PhantomData<fn() -> (#(&#lifetimes (),)* #(#types,)*)>,
            }),
            Some(quote!(__seawall_marker: ::core::marker::PhantomData,)),
        )
    };
    let doc = format!(
        " A test double for [`{trait_ident}`], generated by `#[contract(mock)]`: script each \
         method through its handle (`{}().returns(..)`), then use it where an adapter goes, \
         `Resilient` included. Clones share their scripts, expectations and calls; the last \
         one to go checks the expectations (`times`, `never`). See `seawall::mock`.",
        methods.first().map_or_else(
            || "method".to_owned(),
            |handle| format!("mock.{}", handle.ident.unraw())
        )
    );

    quote! {
        #[doc = #doc]
        #vis struct #mock #generics #where_clause {
            #( #fields, )*
            #marker_field
        }

        impl #impl_generics #mock #ty_generics #where_clause {
            /// A double with nothing scripted: an unscripted call panics,
            /// naming its method and showing its arguments.
            pub fn new() -> Self {
                Self {
                    #( #builds, )*
                    #marker_value
                }
            }

            #( #accessors )*
        }

        impl #impl_generics ::core::default::Default for #mock #ty_generics #where_clause {
            fn default() -> Self {
                Self::new()
            }
        }

        impl #impl_generics ::core::clone::Clone for #mock #ty_generics #where_clause {
            fn clone(&self) -> Self {
                Self {
                    #( #clones, )*
                    #marker_value
                }
            }
        }

        impl #impl_generics ::core::fmt::Debug for #mock #ty_generics #where_clause {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#mock_name)
                    #( #debug_fields )*
                    .finish()
            }
        }

        #unsafety impl #impl_generics #trait_ident #ty_generics for #mock #ty_generics #where_clause {
            #( #impls )*
        }
    }
}

/// One method's handle: its field, its type, and how a call records its
/// arguments.
struct Handle {
    ident: syn::Ident,
    /// `::seawall::mock::Method<Args, T, E>`.
    ty: TokenStream,
    /// What the arguments are recorded as: `()`, one type, or a tuple.
    args: TokenStream,
    /// The recorded arguments of a call, as an expression.
    value: TokenStream,
    /// The method's signature with every argument named plainly.
    sig: syn::Signature,
    /// Its `Result<T, E>`.
    output: syn::Type,
}

fn handle(sig: &syn::Signature, output: &syn::Type) -> Handle {
    let generics = method_generics(sig);
    let mut sig = sig.clone();
    let mut types = Vec::new();
    let mut values = Vec::new();
    for (index, input) in sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        };
        let name = match &*typed.pat {
            syn::Pat::Ident(pat) => pat.ident.clone(),
            _ => format_ident!("__seawall_arg{}", index),
        };
        // No `mut` or `ref`: the double only moves the argument.
        *typed.pat = parse_quote!(#name);
        let (ty, value) = recorded(&typed.ty, &name, &generics);
        types.push(ty);
        values.push(value);
    }
    let (args, value) = match (types.as_slice(), values.as_slice()) {
        ([], _) => (quote!(()), quote!(())),
        ([ty], [value]) => (ty.clone(), value.clone()),
        _ => (quote!((#(#types,)*)), quote!((#(#values,)*))),
    };
    let (ok, err) = result_types(output);
    Handle {
        ident: sig.ident.clone(),
        ty: quote!(::seawall::mock::Method<#args, #ok, #err>),
        args,
        value,
        sig,
        output: output.clone(),
    }
}

/// What an argument is recorded as, and the expression that records it.
fn recorded(
    ty: &syn::Type,
    name: &syn::Ident,
    generics: &[syn::Ident],
) -> (TokenStream, TokenStream) {
    match peel(ty) {
        syn::Type::Reference(reference) if storable(&reference.elem, generics) => {
            let elem = &reference.elem;
            // Spanned at the type, so one without an owned form is reported
            // there.
            let value = quote_spanned! {elem.span()=>
                <#elem as ::seawall::__private_v1::mock::MockRecord>::mock_record(&*#name)
            };
            (owned(elem), value)
        }
        _ if storable(ty, generics) => (quote!(#ty), quote!(#name)),
        _ => (
            quote!(::seawall::mock::Opaque),
            quote!(::seawall::mock::Opaque::of_val(&#name)),
        ),
    }
}

/// The owned form of `T` for an argument `&T`, written out so that the
/// double's documentation shows the type the user knows (`String` for
/// `&str`, `Vec<u32>` for `&[u32]`, `Invoice` for `&Invoice`). The few std
/// types whose owned form is another type (`Path`, `OsStr`, `CStr`) keep
/// the `ToOwned` projection, as does anything named like them: the macro
/// sees names, not types, and the projection is right for either.
fn owned(elem: &syn::Type) -> TokenStream {
    let projected = || {
        quote_spanned! {elem.span()=>
            <#elem as ::seawall::__private_v1::mock::MockRecord>::Owned
        }
    };
    match peel(elem) {
        syn::Type::Slice(slice) => {
            let item = &slice.elem;
            quote_spanned!(elem.span()=> ::seawall::__private_v1::rt::Vec<#item>)
        }
        syn::Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return projected();
            };
            let plain = last.arguments.is_none();
            if plain && last.ident == "str" {
                quote_spanned!(elem.span()=> ::seawall::__private_v1::rt::String)
            } else if plain
                && ["Path", "OsStr", "CStr"]
                    .iter()
                    .any(|name| last.ident == name)
            {
                projected()
            } else {
                quote!(#elem)
            }
        }
        // A type the macro cannot read as a sized one of its own.
        syn::Type::Path(_) | syn::Type::TraitObject(_) | syn::Type::Macro(_) => projected(),
        _ => quote!(#elem),
    }
}

fn peel(ty: &syn::Type) -> &syn::Type {
    match ty {
        syn::Type::Paren(inner) => peel(&inner.elem),
        syn::Type::Group(inner) => peel(&inner.elem),
        other => other,
    }
}

/// `T` and `E` of the method's `Result<T, E>`: as written when both are,
/// else through `MockOutput` (an alias such as `crate::Result<T>`).
fn result_types(output: &syn::Type) -> (TokenStream, TokenStream) {
    if let syn::Type::Path(path) = peel(output)
        && let Some(segment) = path.path.segments.last()
        && let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments
        && let [
            syn::GenericArgument::Type(ok),
            syn::GenericArgument::Type(err),
        ] = arguments.args.iter().collect::<Vec<_>>().as_slice()
    {
        return (quote!(#ok), quote!(#err));
    }
    (
        quote!(<#output as ::seawall::__private_v1::mock::MockOutput>::Ok),
        quote!(<#output as ::seawall::__private_v1::mock::MockOutput>::Err),
    )
}

/// The method's own type and const parameters.
fn method_generics(sig: &syn::Signature) -> Vec<syn::Ident> {
    sig.generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(ty) => Some(ty.ident.clone()),
            syn::GenericParam::Const(c) => Some(c.ident.clone()),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect()
}

/// Whether a value of this type can be kept in a `'static` double: it
/// borrows nothing (no reference, no lifetime but `'static`), and names no
/// generic parameter of the method, no `impl Trait`, `dyn Trait` or `Self`.
fn storable(ty: &syn::Type, generics: &[syn::Ident]) -> bool {
    fn is_static(tokens: &[TokenTree], at: usize) -> bool {
        matches!(tokens.get(at), Some(TokenTree::Punct(p)) if p.as_char() == '\'')
            && matches!(tokens.get(at + 1), Some(TokenTree::Ident(i)) if i == "static")
    }
    fn walk(tokens: TokenStream, generics: &[syn::Ident]) -> bool {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while let Some(token) = tokens.get(at) {
            match token {
                TokenTree::Group(group) if !walk(group.stream(), generics) => return false,
                // `&'static T` borrows nothing a double could outlive.
                TokenTree::Punct(punct) if punct.as_char() == '&' => {
                    if !is_static(&tokens, at + 1) {
                        return false;
                    }
                    at += 2;
                }
                TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                    if !is_static(&tokens, at) {
                        return false;
                    }
                    at += 1;
                }
                TokenTree::Ident(ident)
                    if ident == "impl"
                        || ident == "dyn"
                        || ident == "Self"
                        || generics.iter().any(|generic| generic == ident) =>
                {
                    return false;
                }
                _ => {}
            }
            at += 1;
        }
        true
    }
    walk(quote!(#ty), generics)
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::{owned, storable};

    #[test]
    fn what_a_double_can_keep() {
        let generics = [syn::Ident::new("Q", proc_macro2::Span::call_site())];
        let keeps = |ty: syn::Type| storable(&ty, &generics);
        assert!(keeps(syn::parse_quote!(String)));
        assert!(keeps(syn::parse_quote!(Vec<(u8, &'static str)>)));
        assert!(keeps(
            syn::parse_quote!(std::collections::HashMap<String, T>)
        ));
        assert!(!keeps(syn::parse_quote!(Q)));
        assert!(!keeps(syn::parse_quote!(Vec<Q>)));
        assert!(!keeps(syn::parse_quote!(Cow<'a, str>)));
        assert!(!keeps(syn::parse_quote!(Vec<&str>)));
        assert!(!keeps(syn::parse_quote!(impl AsRef<str>)));
        assert!(!keeps(syn::parse_quote!(Box<dyn Fn()>)));
    }

    #[test]
    fn the_owned_form_of_a_borrowed_argument_is_written_out_where_it_is_known() {
        let owned = |ty: syn::Type| owned(&ty).to_string().replace(' ', "");
        assert_eq!(
            owned(syn::parse_quote!(str)),
            "::seawall::__private_v1::rt::String"
        );
        assert_eq!(
            owned(syn::parse_quote!([Invoice])),
            "::seawall::__private_v1::rt::Vec<Invoice>"
        );
        assert_eq!(owned(syn::parse_quote!(Invoice)), "Invoice");
        assert_eq!(
            owned(syn::parse_quote!(crate::AccountId)),
            "crate::AccountId"
        );
        assert_eq!(owned(syn::parse_quote!((u8, String))), "(u8,String)");
        assert_eq!(owned(syn::parse_quote!([u8; 4])), "[u8;4]");
        // Named like a std type whose owned form is another type: the
        // projection, right for either.
        for ty in [
            syn::parse_quote!(Path),
            syn::parse_quote!(std::path::Path),
            syn::parse_quote!(OsStr),
            syn::parse_quote!(<Q as Deref>::Target),
        ] {
            let owned = owned(ty);
            assert!(owned.contains("MockRecord>::Owned"), "{owned}");
        }
    }

    #[test]
    fn only_a_contract_that_asks_gets_a_double() {
        let item = quote! {
            pub trait Crm {
                #[integration(read, timeout = "1s")]
                async fn account(&self, id: &str) -> Result<String, CrmError>;
            }
        };
        let plain = super::super::contract(quote!(), item.clone()).to_string();
        assert!(!plain.contains("MockCrm"), "{plain}");
        assert!(!plain.contains("mock"), "{plain}");
        let mocked = super::super::contract(quote!(mock), item).to_string();
        assert!(mocked.contains("pub struct MockCrm"), "{mocked}");
        assert_eq!(mocked.matches("compile_error").count(), 0, "{mocked}");
    }
}
