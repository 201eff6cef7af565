use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::event::Subscribers;
use crate::{Breaker, Endpoint, Event, Policy, PolicyError};

/// The state every resilient call shares: circuit breakers (by name) and the
/// subscribers to the runtime's events.
///
/// Cheap to clone: clones share the same state. Build one per process (or
/// per test) and hand it to every [`Resilient`](crate::Resilient) wrapper.
///
/// ```
/// let runtime = seawall_core::Runtime::in_memory();
/// runtime.subscribe(|event| println!("{event:?}"));
/// assert!(runtime.breakers().is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Runtime {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    // Taken only when an endpoint is built or the registry is listed, never
    // on a call.
    breakers: Mutex<BTreeMap<Arc<str>, Arc<Breaker>>>,
    subscribers: Arc<Subscribers>,
}

impl Runtime {
    /// A runtime that keeps all its state in memory.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Calls `hook` on every [`Event`]: each breaker transition, for a start.
    /// Hooks run on the task that caused the event; keep them short.
    pub fn subscribe(&self, hook: impl Fn(&Event) + Send + Sync + 'static) {
        self.shared.subscribers.add(Arc::new(hook));
    }

    /// The breaker registered under `name`, if any. Breakers are named
    /// `contract.method` unless their policy names them.
    pub fn breaker(&self, name: &str) -> Option<Arc<Breaker>> {
        self.registry().get(name).cloned()
    }

    /// Every breaker built so far, sorted by name.
    pub fn breakers(&self) -> Vec<Arc<Breaker>> {
        self.registry().values().cloned().collect()
    }

    /// Builds the pipeline of one contract method.
    ///
    /// Endpoints whose breaker policies carry the same name share one
    /// breaker; otherwise each `contract.method` gets its own. A name
    /// registered first with another policy keeps its first policy (and a
    /// warning is logged).
    ///
    /// # Errors
    ///
    /// The errors of [`Policy::validate`].
    pub fn endpoint(
        &self,
        contract: &str,
        method: &str,
        policy: Policy,
    ) -> Result<Endpoint, PolicyError> {
        policy.validate()?;
        let breaker = match policy.breaker() {
            None => None,
            Some(breaker_policy) => {
                let name: Arc<str> = match breaker_policy.name() {
                    Some(name) => name.into(),
                    None => format!("{contract}.{method}").into(),
                };
                let mut registry = self.registry();
                let breaker = match registry.get(&name) {
                    Some(existing) => {
                        if existing.policy() != breaker_policy {
                            tracing::warn!(
                                target: "seawall::breaker",
                                breaker = %name,
                                "breaker already registered with another policy; keeping the first"
                            );
                        }
                        existing.clone()
                    }
                    None => {
                        let breaker = Arc::new(Breaker::with_subscribers(
                            name.clone(),
                            breaker_policy.clone(),
                            self.shared.subscribers.clone(),
                        )?);
                        registry.insert(name, breaker.clone());
                        breaker
                    }
                };
                Some(breaker)
            }
        };
        Ok(Endpoint::new(
            contract.into(),
            method.into(),
            policy,
            breaker,
        ))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Arc<Breaker>>> {
        self.shared
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("breakers", &self.registry().len())
            .finish()
    }
}
