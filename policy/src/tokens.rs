//! A checked policy as the Rust code that builds it (feature `tokens`).
//!
//! `#[integration(..)]` checks a [`Policy`] at compile time and hands the
//! runtime the same policy as code. That code is written here, beside the
//! types, rather than in the macro: every policy type is taken apart field
//! by field and every enum matched without a wildcard, which only the
//! defining crate can do with `#[non_exhaustive]` enums. A new key or a new
//! variant therefore does not compile until it is emitted.
//!
//! Every value is written out, defaults included, so the generated policy
//! never depends on a default that could drift between the macro and the
//! runtime.

use std::time::Duration;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, CachePolicy, ClassSet, DEFAULT_IDEMPOTENCY_HEADER,
    ErrorClass, HedgeAfter, HedgePolicy, Jitter, Kind, OnDuplicate, Policy, RatePolicy, Redact,
    RetryPolicy, StorePolicy, Window,
};

impl Policy {
    /// The expression that builds this policy, naming the policy types
    /// through `root` (such as `::seawall::__private_v1::policy`, which must hold
    /// `Policy`, `Kind`, `Duration`, `RetryPolicy`, `Jitter`, `ClassSet`,
    /// `ErrorClass`, `BudgetPolicy`, `BreakerPolicy`, `CachePolicy`,
    /// `StorePolicy`, `OnDuplicate`, `RatePolicy`, `BulkheadPolicy`, `HedgePolicy`
    /// and `HedgeAfter`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use quote::quote;
    /// use seawall_policy::{Kind, Policy};
    ///
    /// let policy = Policy::new(Kind::Read, Duration::from_secs(1));
    /// let code = policy.to_tokens(&quote!(::seawall::__private_v1)).to_string();
    /// assert!(code.starts_with(":: seawall :: __private_v1 :: Policy :: new"), "{code}");
    /// ```
    pub fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            kind,
            timeout,
            deadline,
            retry,
            breaker,
            budget,
            idempotency_header,
            store,
            idempotent,
            cache,
            queue,
            redact,
            rate,
            bulkhead,
            hedge,
        } = self;
        let kind = match kind {
            Kind::Read => quote!(Read),
            Kind::Write => quote!(Write),
        };
        let timeout = duration(*timeout, root);
        let mut tokens = quote!(#root::Policy::new(#root::Kind::#kind, #timeout));
        if let Some(deadline) = deadline {
            let deadline = duration(*deadline, root);
            tokens.extend(quote!(.with_deadline(#deadline)));
        }
        // One attempt needs neither a retry policy nor a budget.
        if retry.attempts > 1 {
            let retry = retry.to_tokens(root);
            tokens.extend(quote!(.with_retry(#retry)));
            tokens.extend(match budget {
                Some(budget) => {
                    let budget = budget.to_tokens(root);
                    quote!(.with_retry_budget(#budget))
                }
                None => quote!(.without_retry_budget()),
            });
        }
        if let Some(breaker) = breaker {
            let breaker = breaker.to_tokens(root);
            tokens.extend(quote!(.with_breaker(#breaker)));
        }
        if *idempotent {
            tokens.extend(quote!(.with_idempotency_key()));
            // The header matters only to a keyed call.
            if idempotency_header != DEFAULT_IDEMPOTENCY_HEADER {
                let header = &**idempotency_header;
                tokens.extend(quote!(.with_idempotency_header(#header)));
            }
        }
        if let Some(cache) = cache {
            let cache = cache.to_tokens(root);
            tokens.extend(quote!(.with_cache_fallback(#cache)));
        }
        if *queue {
            tokens.extend(quote!(.with_queue_fallback()));
        }
        if let Some(store) = store {
            let store = store.to_tokens(root);
            tokens.extend(quote!(.with_idempotency_store(#store)));
        }
        let Redact { names } = redact;
        if !names.is_empty() {
            tokens.extend(quote!(.with_redact([#(#names),*])));
        }
        if let Some(rate) = rate {
            let rate = rate.to_tokens(root);
            tokens.extend(quote!(.with_rate(#rate)));
        }
        if let Some(bulkhead) = bulkhead {
            let BulkheadPolicy {
                max,
                queue,
                max_wait,
                adaptive,
                min,
            } = bulkhead;
            let max = Literal::u32_suffixed(*max);
            let queue = Literal::u32_suffixed(*queue);
            let max_wait = duration(*max_wait, root);
            let mut policy = if *adaptive {
                quote!(#root::BulkheadPolicy::adaptive().with_max(#max))
            } else {
                quote!(#root::BulkheadPolicy::new(#max))
            };
            if let Some(min) = min {
                let min = Literal::u32_suffixed(*min);
                policy.extend(quote!(.with_min(#min)));
            }
            tokens.extend(quote! {
                .with_bulkhead(
                    #policy
                        .with_queue(#queue)
                        .with_max_wait(#max_wait)
                )
            });
        }
        if let Some(HedgePolicy { after, max }) = hedge {
            let after = match after {
                HedgeAfter::Fixed(after) => {
                    let after = duration(*after, root);
                    quote!(#root::HedgeAfter::Fixed(#after))
                }
                HedgeAfter::Percentile(p) => {
                    let p = Literal::f64_suffixed(*p);
                    quote!(#root::HedgeAfter::Percentile(#p))
                }
            };
            let max = Literal::u32_suffixed(*max);
            tokens.extend(quote! {
                .with_hedge(#root::HedgePolicy::new(#after).with_max(#max))
            });
        }
        tokens
    }
}

impl RatePolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            count,
            period,
            burst,
            max_wait,
            name,
        } = self;
        let count = Literal::u32_suffixed(*count);
        let period = duration(*period, root);
        let burst = Literal::u32_suffixed(*burst);
        let max_wait = duration(*max_wait, root);
        let name = name.as_deref().map(|name| quote!(.with_name(#name)));
        quote! {
            #root::RatePolicy::new(#count, #period)
                .with_burst(#burst)
                .with_max_wait(#max_wait)
                #name
        }
    }
}

impl RetryPolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            attempts,
            base,
            cap,
            jitter,
            max_elapsed,
            on,
        } = self;
        let attempts = Literal::u32_suffixed(*attempts);
        let base = duration(*base, root);
        let cap = duration(*cap, root);
        let jitter = match jitter {
            Jitter::Full => quote!(Full),
            Jitter::Equal => quote!(Equal),
            Jitter::Decorrelated => quote!(Decorrelated),
            Jitter::None => quote!(None),
        };
        let on = classes(*on, root);
        let max_elapsed = max_elapsed.map(|max| {
            let max = duration(max, root);
            quote!(.with_max_elapsed(#max))
        });
        quote! {
            #root::RetryPolicy::new(#attempts)
                .with_base(#base)
                .with_cap(#cap)
                .with_jitter(#root::Jitter::#jitter)
                .with_retry_on(#on)
                #max_elapsed
        }
    }
}

impl BudgetPolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            ratio,
            max,
            min_per_second,
        } = self;
        let ratio = Literal::f64_suffixed(*ratio);
        let max = Literal::u32_suffixed(*max);
        let min_per_second = Literal::u32_suffixed(*min_per_second);
        quote! {
            #root::BudgetPolicy::new()
                .with_ratio(#ratio)
                .with_max(#max)
                .with_min_per_second(#min_per_second)
        }
    }
}

impl BreakerPolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            failure_rate,
            window,
            // Both written as the value they stand for when unset.
            min_calls: _,
            consecutive_failures,
            open_for,
            open_for_max,
            probes,
            half_open_max,
            slow,
            slow_rate: _,
            failure_classes,
            name,
        } = self;
        let failure_rate = Literal::f64_suffixed(*failure_rate);
        let window = match window {
            Window::Calls(calls) => {
                let calls = Literal::u32_suffixed(*calls);
                quote!(.with_window(#calls))
            }
            Window::Time(span) => {
                let span = duration(*span, root);
                quote!(.with_time_window(#span))
            }
        };
        let min_calls = Literal::u32_suffixed(self.min_calls());
        // `0` turns the run rule off.
        let consecutive = Literal::u32_suffixed(consecutive_failures.unwrap_or(0));
        let open_for = duration(*open_for, root);
        let open_for_max = open_for_max.map(|max| {
            let max = duration(max, root);
            quote!(.with_open_for_max(#max))
        });
        let probes = Literal::u32_suffixed(*probes);
        let half_open_max = duration(*half_open_max, root);
        // A slow-call rate means something only with a threshold (a rule
        // of the policy), so it is written with it.
        let slow = slow.map(|slow| {
            let slow = duration(slow, root);
            let rate = Literal::f64_suffixed(self.slow_rate());
            quote!(.with_slow(#slow).with_slow_rate(#rate))
        });
        let failure_classes = classes(*failure_classes, root);
        let name = name.as_deref().map(|name| quote!(.with_name(#name)));
        quote! {
            #root::BreakerPolicy::new()
                .with_failure_rate(#failure_rate)
                #window
                .with_min_calls(#min_calls)
                .with_consecutive_failures(#consecutive)
                .with_open_for(#open_for)
                #open_for_max
                .with_probes(#probes)
                .with_half_open_max(#half_open_max)
                #slow
                .with_failure_classes(#failure_classes)
                #name
        }
    }
}

impl CachePolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            max_stale,
            capacity,
        } = self;
        let max_stale = duration(*max_stale, root);
        let capacity = Literal::u64_suffixed(*capacity);
        quote!(#root::CachePolicy::new(#max_stale).with_capacity(#capacity))
    }
}

impl StorePolicy {
    fn to_tokens(&self, root: &TokenStream) -> TokenStream {
        let Self {
            retention,
            replay_failures,
            on_duplicate,
        } = self;
        let retention = duration(*retention, root);
        let on_duplicate = match on_duplicate {
            OnDuplicate::Wait => quote!(Wait),
            OnDuplicate::Reject => quote!(Reject),
        };
        quote! {
            #root::StorePolicy::new()
                .with_retention(#retention)
                .with_replay_failures(#replay_failures)
                .with_on_duplicate(#root::OnDuplicate::#on_duplicate)
        }
    }
}

/// `Duration::from_nanos(..)`: exact, and in range for every duration a
/// valid policy holds (at most `MAX_DURATION`).
fn duration(duration: Duration, root: &TokenStream) -> TokenStream {
    let nanos = Literal::u64_suffixed(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    quote!(#root::Duration::from_nanos(#nanos))
}

fn classes(set: ClassSet, root: &TokenStream) -> TokenStream {
    let classes = set.iter().map(|class| match class {
        ErrorClass::Retryable => quote!(#root::ErrorClass::Retryable),
        ErrorClass::VendorFault => quote!(#root::ErrorClass::VendorFault),
        ErrorClass::Permanent => quote!(#root::ErrorClass::Permanent),
        ErrorClass::Ignored => quote!(#root::ErrorClass::Ignored),
    });
    quote!(#root::ClassSet::of([#(#classes),*]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn code(policy: &Policy) -> String {
        policy
            .to_tokens(&quote!(::root))
            .to_string()
            .replace(' ', "")
    }

    fn assert_emits(code: &str, expected: &[&str]) {
        for expected in expected {
            assert!(code.contains(expected), "missing {expected} in {code}");
        }
    }

    /// A policy with every key set to a value other than its default.
    fn every_key() -> Policy {
        Policy::new(Kind::Write, MS * 1500)
            .with_deadline(Duration::from_secs(60))
            .with_retry(
                RetryPolicy::new(4)
                    .with_base(MS * 20)
                    .with_cap(MS * 400)
                    .with_jitter(Jitter::Decorrelated)
                    .with_max_elapsed(Duration::from_secs(9))
                    .with_retry_on(ClassSet::of([
                        ErrorClass::Retryable,
                        ErrorClass::VendorFault,
                        ErrorClass::Permanent,
                    ])),
            )
            .with_retry_budget(
                BudgetPolicy::new()
                    .with_ratio(0.25)
                    .with_max(7)
                    .with_min_per_second(3),
            )
            .with_breaker(
                BreakerPolicy::new()
                    .with_failure_rate(0.75)
                    .with_time_window(Duration::from_secs(45))
                    .with_min_calls(12)
                    .with_consecutive_failures(0)
                    .with_open_for(Duration::from_secs(8))
                    .with_open_for_max(Duration::from_secs(80))
                    .with_probes(3)
                    .with_half_open_max(Duration::from_secs(11))
                    .with_slow(MS * 900)
                    .with_slow_rate(0.6)
                    .with_failure_classes(ClassSet::of([ErrorClass::Retryable]))
                    .with_name("shared"),
            )
            .with_idempotency_key()
            .with_idempotency_header("X-Request-Id")
            .with_idempotency_store(
                StorePolicy::new()
                    .with_retention(Duration::from_secs(3600))
                    .with_replay_failures(false)
                    .with_on_duplicate(OnDuplicate::Reject),
            )
            .with_queue_fallback()
            .with_redact(["card", "cvc"])
    }

    #[test]
    fn a_policy_with_every_key_set_emits_each_value() {
        let policy = every_key();
        assert_eq!(policy.validate(), Ok(()));
        assert_emits(
            &code(&policy),
            &[
                "::root::Policy::new(::root::Kind::Write,::root::Duration::from_nanos(1500000000u64))",
                ".with_deadline(::root::Duration::from_nanos(60000000000u64))",
                ".with_retry(::root::RetryPolicy::new(4u32)",
                ".with_base(::root::Duration::from_nanos(20000000u64))",
                ".with_cap(::root::Duration::from_nanos(400000000u64))",
                ".with_jitter(::root::Jitter::Decorrelated)",
                ".with_retry_on(::root::ClassSet::of([::root::ErrorClass::Retryable,\
                 ::root::ErrorClass::VendorFault,::root::ErrorClass::Permanent]))",
                ".with_max_elapsed(::root::Duration::from_nanos(9000000000u64))",
                ".with_retry_budget(::root::BudgetPolicy::new().with_ratio(0.25f64)\
                 .with_max(7u32).with_min_per_second(3u32))",
                ".with_failure_rate(0.75f64)",
                ".with_time_window(::root::Duration::from_nanos(45000000000u64))",
                ".with_min_calls(12u32)",
                ".with_consecutive_failures(0u32)",
                ".with_open_for(::root::Duration::from_nanos(8000000000u64))",
                ".with_open_for_max(::root::Duration::from_nanos(80000000000u64))",
                ".with_probes(3u32)",
                ".with_half_open_max(::root::Duration::from_nanos(11000000000u64))",
                ".with_slow(::root::Duration::from_nanos(900000000u64)).with_slow_rate(0.6f64)",
                ".with_failure_classes(::root::ClassSet::of([::root::ErrorClass::Retryable]))",
                ".with_name(\"shared\")",
                ".with_idempotency_key().with_idempotency_header(\"X-Request-Id\")",
                ".with_idempotency_store(::root::StorePolicy::new()\
                 .with_retention(::root::Duration::from_nanos(3600000000000u64))\
                 .with_replay_failures(false).with_on_duplicate(::root::OnDuplicate::Reject))",
                ".with_queue_fallback()",
                ".with_redact([\"card\",\"cvc\"])",
            ],
        );
    }

    #[test]
    fn defaults_are_written_out() {
        let policy = Policy::new(Kind::Read, MS * 100)
            .with_retry(RetryPolicy::new(3))
            .with_breaker(BreakerPolicy::new())
            .with_cache_fallback(CachePolicy::new(Duration::from_secs(60)));
        assert_emits(
            &code(&policy),
            &[
                "::root::Kind::Read",
                ".with_jitter(::root::Jitter::Full)",
                ".with_retry_on(::root::ClassSet::of([::root::ErrorClass::Retryable]))",
                ".with_retry_budget(::root::BudgetPolicy::new().with_ratio(0.1f64)",
                ".with_window(100u32)",
                ".with_min_calls(100u32)",
                ".with_consecutive_failures(10u32)",
                ".with_probes(1u32)",
                ".with_failure_classes(::root::ClassSet::of([::root::ErrorClass::Retryable,\
                 ::root::ErrorClass::VendorFault]))",
                ".with_cache_fallback(::root::CachePolicy::new(\
                 ::root::Duration::from_nanos(60000000000u64)).with_capacity(10000u64))",
            ],
        );
    }

    #[test]
    fn what_does_not_apply_is_left_out() {
        let single = Policy::new(Kind::Read, MS)
            .without_retry_budget()
            .with_idempotency_header("X-Unused");
        assert_eq!(
            code(&single),
            "::root::Policy::new(::root::Kind::Read,::root::Duration::from_nanos(1000000u64))"
        );
        let keyed = Policy::new(Kind::Write, MS)
            .with_retry(RetryPolicy::new(2))
            .without_retry_budget()
            .with_idempotency_key()
            .with_breaker(BreakerPolicy::new());
        let keyed = code(&keyed);
        assert_emits(
            &keyed,
            &[".without_retry_budget()", ".with_idempotency_key()"],
        );
        for absent in [
            "with_idempotency_header",
            "with_slow",
            "with_redact",
            "with_name",
        ] {
            assert!(!keyed.contains(absent), "{absent} in {keyed}");
        }
    }

    #[test]
    fn the_root_is_the_callers() {
        let code = Policy::new(Kind::Read, MS)
            .to_tokens(&quote!(::seawall::__private_v1))
            .to_string();
        assert!(!code.contains("root"), "{code}");
        assert!(
            code.starts_with(":: seawall :: __private_v1 :: Policy :: new (:: seawall :: __private_v1 :: Kind :: Read"),
            "{code}"
        );
    }
}
