//! What to emit when the input is wrong: the errors, plus the user's code
//! as it was (less the `#[integration]` attributes seawall would have read),
//! so one mistake shows as one error rather than a cascade from missing items.

use proc_macro2::TokenStream;
use quote::quote;

/// The user's trait, unchanged but for its `#[integration]` attributes, after
/// the errors that explain why it was not expanded.
pub(crate) fn contract(errors: darling::Error, mut item: syn::ItemTrait) -> TokenStream {
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(method) = trait_item {
            method.attrs.retain(|attr| !is_integration(attr));
        }
    }
    let errors = errors.write_errors();
    quote! {
        #errors
        #item
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
