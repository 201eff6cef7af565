//! `#[derive(Classify)]`: each variant of an error enum (or the whole of an
//! error struct) states its class, or hands the question to the one value it
//! wraps.

use darling::util::Flag;
use darling::{FromDeriveInput, FromField, FromVariant, ast};
use proc_macro2::{Span, TokenStream};
use quote::quote;

#[derive(FromDeriveInput)]
#[darling(attributes(classify), supports(enum_any, struct_any))]
struct Input {
    ident: syn::Ident,
    generics: syn::Generics,
    data: ast::Data<Variant, Field>,
    #[darling(flatten)]
    class: ClassFlags,
}

#[derive(FromVariant)]
#[darling(attributes(classify))]
struct Variant {
    ident: syn::Ident,
    fields: ast::Fields<Field>,
    #[darling(flatten)]
    class: ClassFlags,
}

#[derive(FromField)]
struct Field {
    ident: Option<syn::Ident>,
    ty: syn::Type,
}

/// `retryable`, `vendor_fault`, `permanent`, `ignored` or `delegate`.
#[derive(Default, darling::FromMeta)]
struct ClassFlags {
    retryable: Flag,
    vendor_fault: Flag,
    permanent: Flag,
    ignored: Flag,
    delegate: Flag,
}

enum Class {
    Fixed(TokenStream),
    Delegate,
}

const HOW: &str = "with `#[classify(retryable)]`, `#[classify(vendor_fault)]`, \
    `#[classify(permanent)]`, `#[classify(ignored)]`, or `#[classify(delegate)]` for a variant \
    that wraps one classifiable value";

impl ClassFlags {
    fn class(&self, what: &str, span: Span) -> darling::Result<Class> {
        let flags = [
            (&self.retryable, quote!(Retryable)),
            (&self.vendor_fault, quote!(VendorFault)),
            (&self.permanent, quote!(Permanent)),
            (&self.ignored, quote!(Ignored)),
        ];
        let mut chosen: Vec<_> = flags
            .into_iter()
            .filter(|(flag, _)| flag.is_present())
            .map(|(flag, class)| (flag.span(), Class::Fixed(class)))
            .collect();
        if self.delegate.is_present() {
            chosen.push((self.delegate.span(), Class::Delegate));
        }
        match chosen.len() {
            0 => Err(
                darling::Error::custom(format!("say how {what} is classified, {HOW}"))
                    .with_span(&span),
            ),
            1 => Ok(chosen.remove(0).1),
            _ => Err(darling::Error::custom("choose one class").with_span(&chosen[1].0)),
        }
    }
}

/// The derive as a function of tokens.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let parsed = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(parsed) => parsed,
        Err(error) => return error.to_compile_error(),
    };
    match expand(&parsed) {
        Ok(tokens) => tokens,
        Err(errors) => errors.write_errors(),
    }
}

fn expand(parsed: &syn::DeriveInput) -> darling::Result<TokenStream> {
    let input = Input::from_derive_input(parsed)?;
    let mut errors = darling::Error::accumulator();
    let mut class_arms = Vec::new();
    let mut retry_after_arms = Vec::new();
    let mut error_type_arms = Vec::new();
    let mut delegated_types = Vec::new();
    match &input.data {
        ast::Data::Enum(variants) => {
            if input.class.any() {
                errors.push(
                    darling::Error::custom(
                        "on an enum, classify each variant rather than the whole enum",
                    )
                    .with_span(&input.ident),
                );
            }
            for variant in variants {
                let ident = &variant.ident;
                let what = format!("variant `{ident}`");
                let Some(class) = errors.handle(variant.class.class(&what, ident.span())) else {
                    continue;
                };
                let name = format!("{}::{ident}", input.ident);
                match class {
                    Class::Fixed(class) => {
                        class_arms.push(quote! {
                            Self::#ident { .. } => ::seawall::ErrorClass::#class
                        });
                        error_type_arms.push(quote! {
                            Self::#ident { .. } => ::core::option::Option::Some(#name)
                        });
                    }
                    Class::Delegate => {
                        let Some((pattern, ty)) =
                            errors.handle(single_field(&variant.fields, ident.span()))
                        else {
                            continue;
                        };
                        class_arms.push(quote! {
                            Self::#ident #pattern => ::seawall::Classify::class(__seawall_inner)
                        });
                        retry_after_arms.push(quote! {
                            Self::#ident #pattern => ::seawall::Classify::retry_after(__seawall_inner)
                        });
                        error_type_arms.push(quote! {
                            Self::#ident #pattern => ::seawall::Classify::error_type(__seawall_inner)
                                .or(::core::option::Option::Some(#name))
                        });
                        delegated_types.push(ty);
                    }
                }
            }
        }
        ast::Data::Struct(fields) => {
            let what = format!("`{}`", input.ident);
            let name = input.ident.to_string();
            if let Some(class) = errors.handle(input.class.class(&what, input.ident.span())) {
                match class {
                    Class::Fixed(class) => {
                        class_arms.push(quote!(_ => ::seawall::ErrorClass::#class));
                        error_type_arms.push(quote!(_ => ::core::option::Option::Some(#name)));
                    }
                    Class::Delegate => {
                        if let Some((pattern, ty)) =
                            errors.handle(single_field(fields, input.ident.span()))
                        {
                            class_arms.push(quote! {
                                Self #pattern => ::seawall::Classify::class(__seawall_inner)
                            });
                            retry_after_arms.push(quote! {
                                Self #pattern => ::seawall::Classify::retry_after(__seawall_inner)
                            });
                            error_type_arms.push(quote! {
                                Self #pattern => ::seawall::Classify::error_type(__seawall_inner)
                                    .or(::core::option::Option::Some(#name))
                            });
                            delegated_types.push(ty);
                        }
                    }
                }
            }
        }
    }
    errors.finish()?;

    let ident = &input.ident;
    let mut generics = input.generics.clone();
    {
        let where_clause = generics.make_where_clause();
        for ty in &delegated_types {
            where_clause
                .predicates
                .push(syn::parse_quote!(#ty: ::seawall::Classify));
        }
    }
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let retry_after = (!retry_after_arms.is_empty()).then(|| {
        quote! {
            fn retry_after(&self) -> ::core::option::Option<::core::time::Duration> {
                #[allow(unreachable_patterns)]
                match self {
                    #(#retry_after_arms,)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    });
    Ok(quote! {
        impl #impl_generics ::seawall::Classify for #ident #type_generics #where_clause {
            fn class(&self) -> ::seawall::ErrorClass {
                match self {
                    #(#class_arms,)*
                }
            }
            #retry_after
            fn error_type(&self) -> ::core::option::Option<&'static str> {
                match self {
                    #(#error_type_arms,)*
                }
            }
        }
    })
}

impl ClassFlags {
    fn any(&self) -> bool {
        [
            &self.retryable,
            &self.vendor_fault,
            &self.permanent,
            &self.ignored,
            &self.delegate,
        ]
        .iter()
        .any(|flag| flag.is_present())
    }
}

/// The pattern binding the one field of a delegating variant, and its type.
fn single_field(
    fields: &ast::Fields<Field>,
    span: Span,
) -> darling::Result<(TokenStream, syn::Type)> {
    let [field] = fields.fields.as_slice() else {
        return Err(darling::Error::custom(
            "`#[classify(delegate)]` needs exactly one field: the value whose class this is",
        )
        .with_span(&span));
    };
    let pattern = match &field.ident {
        Some(name) => quote!({ #name: __seawall_inner }),
        None => quote!((__seawall_inner)),
    };
    Ok((pattern, field.ty.clone()))
}
