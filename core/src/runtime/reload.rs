//! Overrides at run time: what they did to each method, and a reload that
//! applies new ones to every endpoint built so far, all or nothing.
//!
//! A reload computes every method's new effective policy from its compiled
//! one first, with the same rules as at start. Any error, and nothing
//! changes. Otherwise each endpoint gets a new version of its policy
//! (calls already running keep the one they read), and each breaker, rate
//! limiter, bulkhead and hedger takes its new policy in place, keeping its
//! state: a breaker open stays open, a limiter's turns stay taken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use super::{Runtime, lock};
use crate::endpoint::EndpointTuning;
use crate::overrides::{MethodOverrides, OverrideError, Overrides, ReloadRefused, ReloadStatus};
use crate::{Event, Policy};

/// Operators' overrides, what they did, and every endpoint a reload
/// retunes.
#[derive(Default)]
pub(super) struct Tuning {
    pub(super) overrides: Overrides,
    /// What the overrides do to each method they touch.
    pub(super) overridden: BTreeMap<String, MethodOverrides>,
    /// Every endpoint built, in the order they were built.
    pub(super) endpoints: Vec<Weak<EndpointTuning>>,
    pub(super) last_reload: Option<ReloadStatus>,
}

impl Tuning {
    pub(super) fn new(overrides: Overrides) -> Self {
        Self {
            overrides,
            ..Self::default()
        }
    }

    /// `compiled` with the overrides for `contract.method`, or `compiled`
    /// itself when they break a rule (each error logged, and returned for
    /// the caller to announce once it let go of the lock).
    pub(super) fn resolve(
        &mut self,
        contract: &str,
        method: &str,
        compiled: &Policy,
    ) -> (Policy, Option<MethodOverrides>) {
        if self.overrides.is_empty() {
            return (compiled.clone(), None);
        }
        let target = format!("{contract}.{method}");
        match self.overrides.apply(contract, method, compiled) {
            Ok((effective, applied)) if applied.is_empty() => (effective, None),
            Ok((effective, applied)) => {
                for value in &applied {
                    tracing::info!(
                        target: "seawall::overrides",
                        method = %target,
                        key = %value.key,
                        value = %value.value,
                        source = %value.source,
                        "policy value overridden"
                    );
                }
                self.overridden
                    .insert(target.clone(), MethodOverrides::applied(&target, applied));
                (effective, None)
            }
            Err(errors) => {
                for error in &errors {
                    tracing::error!(
                        target: "seawall::overrides",
                        method = %target,
                        "override refused, the compiled policy applies: {}",
                        error.message
                    );
                }
                let refused = MethodOverrides::refused(&target, errors);
                self.overridden.insert(target, refused.clone());
                (compiled.clone(), Some(refused))
            }
        }
    }
}

/// One endpoint's policy after the reload.
struct Planned {
    endpoint: Arc<EndpointTuning>,
    policy: Policy,
}

impl Runtime {
    /// Reads the overrides' sources again (the file and the `SEAWALL__…`
    /// variables `Overrides::load` read, then what
    /// [`Overrides::set`] added) and applies them to every method, as
    /// [`reload_with`](Self::reload_with) does.
    ///
    /// # Errors
    ///
    /// [`ReloadRefused`] with every error: then nothing changed.
    pub fn reload(&self) -> Result<ReloadStatus, ReloadRefused> {
        let fresh = lock(&self.shared.tuning).overrides.reread();
        match fresh {
            Ok(overrides) => self.reload_with(overrides),
            Err(errors) => Err(self.refuse(errors)),
        }
    }

    /// Applies `overrides` in place of the current ones, to every method
    /// resolved so far and to those resolved later. All or nothing: every
    /// method's new policy is computed and checked by the compiler's rules
    /// first, and one error anywhere changes nothing.
    ///
    /// What changes, changes for calls that start from now; a call under
    /// way keeps the policy it started with. Breakers, rate limiters,
    /// bulkheads and hedging take their new values in place and keep
    /// their state (an open breaker stays open until its current period
    /// ends; a new `open_for` applies to the next opening). A breaker or
    /// limiter shared by several methods takes the policy of the first
    /// method that was resolved, as at start.
    ///
    /// Reported either way: logged on `seawall::overrides`, sent as
    /// [`Event::OverridesReloaded`], and kept as
    /// [`Health::last_reload`](crate::telemetry::Health::last_reload)
    /// (a refused one also in [`Readiness::degraded`](crate::telemetry::Readiness::degraded)).
    ///
    /// # Errors
    ///
    /// [`ReloadRefused`] with every error: then nothing changed. Besides
    /// the errors an override can have at start, a reload refuses what
    /// only a restart can apply: a rate limiter shared with the fleet
    /// (every replica must agree on its rate) and `hedge.after` set to a
    /// percentile the method does not measure.
    pub fn reload_with(&self, overrides: Overrides) -> Result<ReloadStatus, ReloadRefused> {
        let mut tuning = lock(&self.shared.tuning);
        tuning
            .endpoints
            .retain(|endpoint| endpoint.strong_count() > 0);
        let live: Vec<Arc<EndpointTuning>> =
            tuning.endpoints.iter().filter_map(Weak::upgrade).collect();
        let mut errors: Vec<OverrideError> = Vec::new();
        let mut overridden = BTreeMap::new();
        let mut planned = Vec::with_capacity(live.len());
        for endpoint in live {
            let target = format!("{}.{}", endpoint.contract, endpoint.method);
            match overrides.apply(&endpoint.contract, &endpoint.method, &endpoint.compiled) {
                Ok((policy, applied)) => {
                    errors.extend(self.only_at_start(&target, &endpoint, &policy));
                    if !applied.is_empty() {
                        overridden
                            .insert(target.clone(), MethodOverrides::applied(&target, applied));
                    }
                    planned.push(Planned { endpoint, policy });
                }
                Err(refused) => errors.extend(refused),
            }
        }
        // Several wrappers of one method give the same errors once.
        let mut seen = BTreeSet::new();
        errors.retain(|error| seen.insert((error.target.clone(), error.message.clone())));
        if !errors.is_empty() {
            drop(tuning);
            return Err(self.refuse(errors));
        }
        let changed = self.retune(&planned);
        tuning.overrides = overrides;
        tuning.overridden = overridden;
        let status = ReloadStatus::new(changed, Vec::new());
        tuning.last_reload = Some(status.clone());
        drop(tuning);
        tracing::info!(
            target: "seawall::overrides",
            changed = ?status.changed,
            "overrides reloaded"
        );
        self.shared
            .subscribers
            .emit(&Event::OverridesReloaded(status.clone()));
        Ok(status)
    }

    /// Logs and announces a refused reload.
    fn refuse(&self, errors: Vec<OverrideError>) -> ReloadRefused {
        for error in &errors {
            tracing::error!(
                target: "seawall::overrides",
                "reload refused, nothing changed: {error}"
            );
        }
        let status = ReloadStatus::new(Vec::new(), errors.clone());
        lock(&self.shared.tuning).last_reload = Some(status.clone());
        self.shared
            .subscribers
            .emit(&Event::OverridesReloaded(status));
        ReloadRefused { errors }
    }

    /// What of `policy` only a restart could apply to `endpoint`'s method.
    fn only_at_start(
        &self,
        target: &str,
        endpoint: &EndpointTuning,
        policy: &Policy,
    ) -> Vec<OverrideError> {
        let mut errors = Vec::new();
        let error = |message: String| OverrideError {
            target: target.to_owned(),
            message,
        };
        if let Some(rate) = policy.rate()
            && let Some(limiter) = self.rate_limiter(&self.shared_name(rate.name(), endpoint))
            && limiter.is_fleet_shared()
            && limiter.policy() != rate
        {
            errors.push(error(format!(
                "rate limiter `{}` is shared with the fleet: its rate changes at the next start \
                 of every replica, which must agree on it",
                limiter.name()
            )));
        }
        if let Some(hedge) = policy.hedge()
            && let Some(hedger) = self.hedger(&endpoint.contract, &endpoint.method)
            && let Some(message) = hedger.cannot_retune(hedge)
        {
            errors.push(error(message));
        }
        errors
    }

    /// A breaker's or limiter's registered name: its own, or the method's.
    fn shared_name(&self, name: Option<&str>, endpoint: &EndpointTuning) -> String {
        match name {
            Some(name) => name.to_owned(),
            None => format!("{}.{}", endpoint.contract, endpoint.method),
        }
    }

    fn hedger(&self, contract: &str, method: &str) -> Option<Arc<crate::hedge::Hedger>> {
        lock(&self.shared.stats)
            .iter()
            .find(|((c, m), _)| **c == *contract && **m == *method)
            .and_then(|(_, stats)| stats.hedger().cloned())
    }

    /// Applies the planned policies; the methods whose policy changed.
    fn retune(&self, planned: &[Planned]) -> Vec<String> {
        let mut changed = BTreeSet::new();
        // Shared parts take the policy of the first method (in the order
        // they were resolved) that uses them.
        let mut breakers_done = BTreeSet::new();
        let mut limiters_done = BTreeSet::new();
        let mut bulkheads_done = BTreeSet::new();
        let mut hedgers_done = BTreeSet::new();
        for Planned { endpoint, policy } in planned {
            let target = format!("{}.{}", endpoint.contract, endpoint.method);
            if endpoint.get().policy != *policy {
                endpoint.set(policy.clone());
                changed.insert(target.clone());
            }
            if let Some(wanted) = policy.breaker() {
                let name = self.shared_name(wanted.name(), endpoint);
                if breakers_done.insert(name.clone())
                    && let Some(breaker) = self.breaker(&name)
                    && breaker.policy() != wanted
                {
                    breaker.retune(wanted.clone());
                    changed.insert(target.clone());
                }
            }
            if let Some(wanted) = policy.rate() {
                let name = self.shared_name(wanted.name(), endpoint);
                if limiters_done.insert(name.clone())
                    && let Some(limiter) = self.rate_limiter(&name)
                    && limiter.policy() != wanted
                {
                    limiter.retune(wanted);
                    changed.insert(target.clone());
                }
            }
            if let Some(wanted) = policy.bulkhead()
                && bulkheads_done.insert(target.clone())
                && let Some(bulkhead) = lock(&self.shared.bulkheads).get(target.as_str()).cloned()
                && bulkhead.policy() != wanted
            {
                bulkhead.retune(wanted);
                changed.insert(target.clone());
            }
            if let Some(wanted) = policy.hedge()
                && hedgers_done.insert(target.clone())
                && let Some(hedger) = self.hedger(&endpoint.contract, &endpoint.method)
                && hedger.policy() != wanted
            {
                hedger.retune(wanted);
                changed.insert(target.clone());
            }
        }
        changed.into_iter().collect()
    }

    /// Reloads the overrides whenever the file [`Overrides::load`] read
    /// changes, checking every `every` (a poll, which also sees a file
    /// replaced through a symlink, as Kubernetes updates a mounted
    /// ConfigMap). The task ends when the runtime is dropped or the
    /// handle aborted.
    ///
    /// A reload that is refused is reported once per change of the file,
    /// not once per poll. A file caught half-written is refused, then
    /// applied at the next poll. The variables are read again on each
    /// reload but are not watched: a process's environment does not
    /// change from outside.
    ///
    /// # Errors
    ///
    /// When there is no tokio runtime to run the task on, or the
    /// overrides were not loaded from a file.
    #[cfg(feature = "overrides")]
    pub fn watch_overrides(
        &self,
        every: std::time::Duration,
    ) -> Result<tokio::task::JoinHandle<()>, OverrideError> {
        let error = |message: &str| OverrideError {
            target: "overrides".to_owned(),
            message: message.to_owned(),
        };
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| error("watching the overrides' file needs a tokio runtime"))?;
        let (path, read) = {
            let tuning = lock(&self.shared.tuning);
            let (path, read) = tuning.overrides.file().ok_or_else(|| {
                error("the overrides were not loaded from a file (`Overrides::load`)")
            })?;
            (path.to_path_buf(), read.map(<[u8]>::to_vec))
        };
        let every = every.max(std::time::Duration::from_millis(10));
        let runtime = Arc::downgrade(&self.shared);
        Ok(handle.spawn(async move {
            let mut last = read;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if runtime.strong_count() == 0 {
                    return;
                }
                let file = path.clone();
                let now = tokio::task::spawn_blocking(move || std::fs::read(file).ok())
                    .await
                    .ok()
                    .flatten();
                if now == last {
                    continue;
                }
                let Some(shared) = runtime.upgrade() else {
                    return;
                };
                last = now;
                // Reported by `reload` itself, either way.
                let _ = Runtime { shared }.reload();
            }
        }))
    }
}
