//! Where each key of an attribute was written, so that a rule of the
//! policy can be reported at its key.
//!
//! The map is derived from the parsed arguments, not written key by key.
//! Each argument struct of `args.rs` is declared through [`keys!`], which
//! lists its fields once: it emits the struct unchanged (darling derives its
//! parser from it) and a [`KeySpans`] implementation that visits every field
//! under its key path, the keys it is nested in first (`retry` →
//! `retry.attempts`). A `SpannedValue` records its span at its path; a
//! nested argument struct visits its own fields under that path.
//! `seawall_policy::Field::path` names each policy key by the same path, so
//! [`Spans::of`] finds where a `Field` was written with no table between
//! the two. A key added to an argument struct is visited because it is a
//! field, and does not compile until its type says what it holds
//! (`KeySpans`); a `Field` whose path no argument produces fails this
//! crate's test that every field is found where it is written.

use std::collections::BTreeMap;

use darling::util::{Flag, Override, SpannedValue};
use proc_macro2::Span;
use seawall_policy::Field;

/// Where each key was written, by its path (`breaker.slow_rate`).
#[derive(Debug, Default)]
pub(crate) struct Spans(BTreeMap<String, Span>);

impl Spans {
    /// Every key written in `args`, the arguments of one attribute.
    pub(crate) fn of_args(args: &impl KeySpans) -> Self {
        let mut spans = Self::default();
        args.key_spans("", &mut spans);
        spans
    }

    fn note(&mut self, path: &str, span: Span) {
        self.0.insert(path.to_owned(), span);
    }

    /// The key's own tokens, else the key it is nested in, else `fallback`.
    pub(crate) fn of(&self, field: Field, fallback: Span) -> Span {
        let mut field = Some(field);
        while let Some(current) = field {
            if let Some(span) = self.0.get(&current.path()) {
                return *span;
            }
            field = current.parent();
        }
        fallback
    }

    /// Whether a key was found at `path`.
    #[cfg(test)]
    pub(crate) fn has(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }
}

/// A parsed value that may hold keys, or be a key's value.
pub(crate) trait KeySpans {
    /// Notes where this value, written at the key `path`, and every key
    /// inside it were written.
    fn key_spans(&self, path: &str, spans: &mut Spans);
}

/// The path of `key` inside the key at `path` (`""` at the top).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<T: KeySpans> KeySpans for SpannedValue<T> {
    fn key_spans(&self, path: &str, spans: &mut Spans) {
        spans.note(path, self.span());
        (**self).key_spans(path, spans);
    }
}

impl<T: KeySpans> KeySpans for Option<T> {
    fn key_spans(&self, path: &str, spans: &mut Spans) {
        if let Some(value) = self {
            value.key_spans(path, spans);
        }
    }
}

/// `retry` alone holds no key; `retry(..)` holds its own.
impl<T: KeySpans> KeySpans for Override<T> {
    fn key_spans(&self, path: &str, spans: &mut Spans) {
        if let Override::Explicit(value) = self {
            value.key_spans(path, spans);
        }
    }
}

impl KeySpans for Flag {
    fn key_spans(&self, path: &str, spans: &mut Spans) {
        if self.is_present() {
            spans.note(path, self.span());
        }
    }
}

/// Implements [`KeySpans`] for values that hold no key.
macro_rules! no_keys {
    ($($ty:ty),* $(,)?) => {
        $(
            impl $crate::spans::KeySpans for $ty {
                fn key_spans(&self, _: &str, _: &mut $crate::spans::Spans) {}
            }
        )*
    };
}

no_keys!(String, bool, u32, u64, f64);

/// Declares an argument struct, each field once: the struct as written
/// (its tokens untouched, so darling sees them as the user wrote them), and
/// its [`KeySpans`], which visits every field under the field's name.
macro_rules! keys {
    (
        $(#[$($attr:tt)*])*
        $vis:vis struct $name:ident { $($body:tt)* }
    ) => {
        $(#[$($attr)*])*
        $vis struct $name { $($body)* }

        $crate::spans::keys!(@visit $name { $($body)* });
    };
    (@visit $name:ident {
        $(
            $(#[$($field_attr:tt)*])*
            $field_vis:vis $field:ident : $ty:ty
        ),* $(,)?
    }) => {
        impl $crate::spans::KeySpans for $name {
            fn key_spans(&self, path: &str, spans: &mut $crate::spans::Spans) {
                $(
                    $crate::spans::KeySpans::key_spans(
                        &self.$field,
                        &$crate::spans::join(path, stringify!($field)),
                        spans,
                    );
                )*
            }
        }
    };
}

pub(crate) use {keys, no_keys};

#[cfg(test)]
mod tests {
    use darling::FromMeta;
    use darling::ast::NestedMeta;
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::*;
    use crate::args::{ContractArgs, IntegrationArgs};

    fn spans<T: FromMeta + KeySpans>(tokens: TokenStream) -> Spans {
        let list = NestedMeta::parse_meta_list(tokens).expect("a list of keys");
        Spans::of_args(&T::from_list(&list).expect("keys the attribute knows"))
    }

    #[test]
    fn every_field_is_found_where_it_is_written() {
        let method = spans::<IntegrationArgs>(quote!(
            write,
            timeout = "1s",
            deadline = "9s",
            retry(
                attempts = 2,
                base = "1ms",
                cap = "2ms",
                max_elapsed = "1s",
                on = ["retryable"]
            ),
            breaker(
                failure_rate = 0.5,
                window = 10,
                min_calls = 5,
                open_for = "1s",
                open_for_max = "2s",
                probes = 1,
                half_open_max = "1s",
                slow = "1s",
                slow_rate = 0.5,
                failure_classes = ["retryable"],
                name = "shared"
            ),
            idempotent(key = [id], store, retention = "1h"),
            fallback = cache(max_stale = "1h", capacity = 10),
            redact = [id],
            rate(limit = "1/s", burst = 1, max_wait = "1s", name = "quota"),
            bulkhead(adaptive, min = 1, max = 1, queue = 1, max_wait = "1s"),
            hedge(after = "p95", max = 1)
        ));
        // `fallback` takes one form per method: the queue's keys on another.
        let queued = spans::<IntegrationArgs>(quote!(
            write,
            timeout = "1s",
            fallback = queue(order_by = [id])
        ));
        let contract = spans::<ContractArgs>(quote!(
            retry_budget(ratio = 0.1, max = 10),
            idempotency_header = "X-Key"
        ));
        for field in Field::ALL {
            let spans: &[&Spans] = if field.is_contract_level() {
                &[&contract]
            } else {
                &[&method, &queued]
            };
            assert!(
                spans.iter().any(|spans| spans.has(&field.path())),
                "no key `{}` in the attribute's arguments: name the field's key by the \
                 argument struct's field",
                field.path()
            );
        }
    }

    #[test]
    fn only_the_keys_written_are_found() {
        let spans = spans::<IntegrationArgs>(quote!(read, timeout = "1s", breaker(probes = 0)));
        assert!(spans.has("breaker") && spans.has("breaker.probes"));
        assert!(!spans.has("breaker.slow_rate"));
        assert!(!spans.has("retry") && !spans.has("retry.attempts"));
    }
}
