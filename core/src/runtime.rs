//! The runtime: the state every wrapper of a process shares (breakers by
//! name, retry budgets, stores, the write-ahead log, counters), how it is
//! built (`Runtime::in_memory`, `Runtime::embedded`, `Runtime::builder`) and
//! how it resolves a method's policy into an [`Endpoint`](crate::Endpoint).

use std::collections::BTreeMap;
#[cfg(feature = "embedded")]
use std::sync::OnceLock;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::bulkhead::Bulkhead;
use crate::cache::DiskCache;
use crate::endpoint::Resolved;
use crate::event::Subscribers;
use crate::idempotency::IdempotencyStore;
#[cfg(feature = "embedded")]
use crate::queue::dead_letter_orphans;
use crate::queue::{ContractQueue, Drainer};
use crate::rate::{ContractPause, RateLimiter};
use crate::retry::{RetryBudget, RngSource};
use crate::seal::Sealing;
#[cfg(feature = "sealing")]
use crate::seal::SealingKey;
#[cfg(feature = "embedded")]
use crate::store::sweep::{Sweeper, rules as sweep_rules, sweep};
use crate::store::{Backend, StoreError, Swept};
use crate::telemetry::metrics;
use crate::telemetry::{
    ChangeDetector, EndpointStats, Health, QueueHealth, Series, breaker_state_code,
};
use crate::wal::Ticket;
use crate::wal::WriteAheadLog;
use crate::{Breaker, BreakerState, Endpoint, Event, Policy, PolicyError};

type Queues = Mutex<BTreeMap<Arc<str>, Arc<ContractQueue>>>;
type Stats = Mutex<BTreeMap<(Arc<str>, Arc<str>), Arc<EndpointStats>>>;

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

struct Shared {
    // Both taken only when an endpoint is built or a registry is listed,
    // never on a call.
    breakers: Mutex<BTreeMap<Arc<str>, Arc<Breaker>>>,
    budgets: Mutex<BTreeMap<Arc<str>, Arc<RetryBudget>>>,
    limiters: Mutex<BTreeMap<Arc<str>, Arc<RateLimiter>>>,
    pauses: Mutex<BTreeMap<Arc<str>, Arc<ContractPause>>>,
    bulkheads: Mutex<BTreeMap<Arc<str>, Arc<Bulkhead>>>,
    subscribers: Arc<Subscribers>,
    rng: Arc<RngSource>,
    idempotency: Arc<IdempotencyStore>,
    wal: Arc<WriteAheadLog>,
    queues: Arc<Queues>,
    disk_cache: Option<Arc<DiskCache>>,
    stats: Stats,
    detector: ChangeDetector,
    /// Policy values set by an operator, what they did, and every
    /// endpoint a reload retunes (`runtime/reload.rs`). Taken when an
    /// endpoint is built, by a reload and by health, never on a call.
    tuning: Mutex<Tuning>,
    /// The embedded database's retention, and its sweeper thread.
    #[cfg(feature = "embedded")]
    upkeep: OnceLock<Upkeep>,
    /// When it was built, for the orphans' grace period.
    #[cfg(feature = "embedded")]
    created: std::time::Instant,
    #[cfg(feature = "embedded")]
    orphan_grace: Duration,
    /// How redacted arguments of queued writes are kept at rest.
    sealing: Arc<Sealing>,
    /// The fleet this runtime shares breakers with, if any.
    #[cfg(feature = "redis")]
    fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Cached answers shared with the fleet (`Redis::share_cache`).
    #[cfg(feature = "redis")]
    fleet_cache: Option<Arc<crate::fleet::cache::FleetCache>>,
    /// The PostgreSQL database this runtime keeps shared state in, if any.
    #[cfg(feature = "postgres")]
    postgres: Option<Arc<crate::postgres::Database>>,
}

/// What keeps an embedded store from growing for ever (see
/// [`Runtime::sweep`]).
#[cfg(feature = "embedded")]
struct Upkeep {
    db: Arc<crate::store::handle::DbHandle>,
    retention: Duration,
    _sweeper: Sweeper,
}

impl Shared {
    fn new(
        rng: RngSource,
        backend: Backend,
        wal: WriteAheadLog,
        disk_cache: Option<DiskCache>,
        detector: ChangeDetector,
    ) -> Self {
        let subscribers = Arc::new(Subscribers::default());
        let queues = Arc::new(Queues::default());
        // A breaker that closes wakes every drain waiting out an outage.
        let weak: Weak<Queues> = Arc::downgrade(&queues);
        subscribers.add(Arc::new(move |event: &Event| {
            if let Event::Breaker(transition) = event
                && transition.to == BreakerState::Closed
                && let Some(queues) = weak.upgrade()
            {
                for queue in lock(&queues).values() {
                    queue.wake();
                }
            }
        }));
        // Breaker states as a gauge, for dashboards.
        subscribers.add(Arc::new(|event: &Event| {
            if let Event::Breaker(transition) = event {
                metrics::gauge!("seawall_breaker_state", "breaker" => transition.breaker.to_string())
                    .set(breaker_state_code(transition.to));
            }
        }));
        Self {
            breakers: Mutex::default(),
            budgets: Mutex::default(),
            limiters: Mutex::default(),
            pauses: Mutex::default(),
            bulkheads: Mutex::default(),
            subscribers,
            rng: Arc::new(rng),
            idempotency: Arc::new(IdempotencyStore::new(backend)),
            wal: Arc::new(wal),
            queues,
            disk_cache: disk_cache.map(Arc::new),
            stats: Stats::default(),
            detector,
            tuning: Mutex::default(),
            #[cfg(feature = "embedded")]
            upkeep: OnceLock::new(),
            #[cfg(feature = "embedded")]
            created: std::time::Instant::now(),
            #[cfg(feature = "embedded")]
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            sealing: Arc::default(),
            #[cfg(feature = "redis")]
            fleet: None,
            #[cfg(feature = "redis")]
            fleet_cache: None,
            #[cfg(feature = "postgres")]
            postgres: None,
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new(
            RngSource::default(),
            Backend::memory(),
            WriteAheadLog::memory(),
            None,
            ChangeDetector::new(),
        )
    }
}

/// Builds a [`Runtime`] with non-default settings.
#[derive(Debug, Default)]
pub struct RuntimeBuilder {
    seed: Option<u64>,
    detector: ChangeDetector,
    #[cfg(feature = "embedded")]
    accept_new_store: bool,
    #[cfg(feature = "embedded")]
    settled_retention: Option<Duration>,
    #[cfg(feature = "embedded")]
    orphan_grace: Option<Duration>,
    #[cfg(feature = "sealing")]
    sealing_key: Option<SealingKey>,
    #[cfg(feature = "sealing")]
    previous_sealing_keys: Vec<SealingKey>,
    plaintext_redacted: bool,
    #[cfg(feature = "redis")]
    redis: Option<crate::fleet::Redis>,
    #[cfg(feature = "postgres")]
    postgres: Option<crate::postgres::Postgres>,
    overrides: crate::overrides::Overrides,
}

/// How long settled entries of the write-ahead log are kept, unless the
/// builder says otherwise.
pub const DEFAULT_SETTLED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long after start an embedded runtime waits for a wrapper of every
/// contract with queued writes before dead-lettering the writes of those
/// nothing serves, unless the builder says otherwise.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// How often an embedded runtime sweeps what it no longer needs.
#[cfg(feature = "embedded")]
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl RuntimeBuilder {
    /// Draws every jitter from generators derived from `seed`, so a test's
    /// delays are the same on every run (given the same order of calls).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How each endpoint's error-rate change detector judges a change
    /// (window, baseline weight, warm-up, smallest rise, significance).
    pub fn change_detector(mut self, detector: ChangeDetector) -> Self {
        self.detector = detector;
        self
    }

    /// Lets [`embedded`](Self::embedded) start on a database file that is
    /// not the one its directory held before (emptied, re-created or copied
    /// from elsewhere), which it otherwise refuses with
    /// [`StoreError::Replaced`]: the writes queued in the old one are then
    /// given up, knowingly. Use it once, after deciding so.
    #[cfg(feature = "embedded")]
    pub fn accept_new_store(mut self) -> Self {
        self.accept_new_store = true;
        self
    }

    /// Seals the arguments that `redact = [..]` names in queued writes with
    /// this key (ChaCha20-Poly1305), so that they are never on disk in
    /// plaintext; they are opened only in memory, for delivery. Without a
    /// key, an embedded runtime refuses such writes before calling the
    /// vendor (see [`plaintext_redacted`](Self::plaintext_redacted)).
    #[cfg(feature = "sealing")]
    pub fn sealing_key(mut self, key: SealingKey) -> Self {
        self.sealing_key = Some(key);
        self
    }

    /// A key that sealed writes still queued: they are opened with it, new
    /// ones sealed with [`sealing_key`](Self::sealing_key). For rotation;
    /// may be given more than once.
    #[cfg(feature = "sealing")]
    pub fn previous_sealing_key(mut self, key: SealingKey) -> Self {
        self.previous_sealing_keys.push(key);
        self
    }

    /// Accepts redacted arguments of queued writes in plaintext on disk,
    /// when no sealing key is given. A conscious choice: without it, such a
    /// write is refused.
    pub fn plaintext_redacted(mut self) -> Self {
        self.plaintext_redacted = true;
        self
    }

    /// How long after start queued writes may wait for a wrapper of their
    /// contract (its first call, or `resume_queued()`) before the sweeper
    /// makes them dead letters: a deploy that renamed or removed a contract
    /// must not leave its writes queued for ever, unseen. 1 hour by default.
    #[cfg(feature = "embedded")]
    pub fn orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = Some(grace);
        self
    }

    /// How long an embedded runtime keeps the settled entries of its
    /// write-ahead log (a delivered write's answer, for
    /// [`WriteAheadLog::status`]) before its sweeper deletes them; 7 days by
    /// default. Dead letters and quarantined records are never swept.
    #[cfg(feature = "embedded")]
    pub fn settled_retention(mut self, retention: Duration) -> Self {
        self.settled_retention = Some(retention);
        self
    }

    /// Shares state with every replica that names the same Redis server and
    /// prefix: each circuit breaker's decisions are the fleet's, each rate
    /// limit is the fleet's (leased in batches), and keyed
    /// writes with `idempotent(.., store)` claim and record their keys in
    /// Redis, so they run once per key across the fleet (see
    /// [`fleet`](crate::fleet)). Applies to the runtime built next, in
    /// memory or embedded; nothing connects until the first breaker syncs
    /// or the first keyed write looks its key up. While Redis cannot be
    /// reached breakers run on local state, and keyed writes with a store
    /// fail with `Error::Store` unless
    /// [`local_idempotency_when_away`](crate::fleet::Redis::local_idempotency_when_away).
    ///
    /// Everything that talks to Redis runs on a thread of the runtime's own
    /// (named `seawall-fleet`), so it works from any tokio runtime, also one
    /// without an I/O driver.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: crate::fleet::Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Keeps the idempotency store of keyed writes with
    /// `idempotent(.., store)` in a PostgreSQL database: claims with a
    /// lease and records with their retention, shared by every replica that
    /// names the same database and schema, and kept across restarts (see
    /// [`postgres`](crate::postgres)). Applies to the runtime built next,
    /// in memory or embedded. Building it never waits for the database: a
    /// thread of the runtime's own (`seawall-postgres`) connects and runs
    /// the migrations (unless
    /// [`migrate_on_start(false)`](crate::postgres::Postgres::migrate_on_start))
    /// in the background, and runs every query, so any tokio runtime works.
    /// While the database cannot be reached keyed writes with a store fail
    /// with `Error::Store` unless
    /// [`local_idempotency_when_away`](crate::postgres::Postgres::local_idempotency_when_away).
    ///
    /// With [`redis`](Self::redis) too, breakers, budgets and the shared
    /// cache stay on Redis and the idempotency store is PostgreSQL's: the
    /// durable one.
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, postgres: crate::postgres::Postgres) -> Self {
        self.postgres = Some(postgres);
        self
    }

    /// Policy values an operator sets without a rebuild (a TOML file and
    /// `SEAWALL__…` variables: `Overrides::load`,
    /// feature `overrides`), applied to each method when its endpoint is
    /// resolved. A method whose overrides break a rule keeps its compiled
    /// policy; `health().overrides` says what applied and what did not.
    pub fn overrides(mut self, overrides: crate::overrides::Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// A runtime that keeps all its state in memory, queued writes
    /// included: for tests and demos (see [`Runtime::in_memory`]).
    pub fn in_memory(self) -> Runtime {
        self.with(Backend::memory(), WriteAheadLog::memory(), None)
    }

    /// A runtime that keeps its durable state (completed idempotent writes
    /// and the write-ahead log of queued writes) in a crash-safe database
    /// file, `seawall.redb`, in `dir`, created if needed (the directory and
    /// file readable by their owner only). A new runtime on the same
    /// directory finds it again, and drains the writes left queued.
    ///
    /// Beside the file, `seawall.id` names the database the directory
    /// holds: a file that was emptied, deleted or replaced is refused rather
    /// than silently started on (see [`accept_new_store`](Self::accept_new_store)).
    /// A record that cannot be decoded is set aside in the log's quarantine
    /// ([`WriteAheadLog::quarantined`]) and the rest opens as usual.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process has the database open
    /// (another runtime, or a `seawall` command);
    /// [`StoreError::Embedded`] when the directory or the database cannot
    /// be created or opened;
    /// [`StoreError::Damaged`] when the file is damaged beyond reading
    /// (opening it never panics); [`StoreError::Replaced`] when it is not
    /// the database the directory held. Each names the file and what to do.
    #[cfg(feature = "embedded")]
    pub fn embedded(self, dir: impl AsRef<std::path::Path>) -> Result<Runtime, StoreError> {
        let dir = dir.as_ref();
        let path = dir.join("seawall.redb");
        let accept_new = self.accept_new_store;
        // redb can panic on a damaged file; that is an answer about the
        // file, not a bug to crash on.
        let opened = std::panic::catch_unwind(|| {
            let backend = Backend::embedded(dir, accept_new)?;
            let (wal, disk_cache) = match backend.database() {
                Some(db) => (
                    WriteAheadLog::embedded(db.clone())?,
                    Some(DiskCache::open(db)?),
                ),
                None => (WriteAheadLog::memory(), None),
            };
            Ok::<_, StoreError>((backend, wal, disk_cache))
        });
        let (backend, wal, disk_cache) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(StoreError::Embedded(detail))) if !detail.contains(&*path.to_string_lossy()) => {
                return Err(StoreError::Embedded(format!(
                    "{}: {detail}",
                    path.display()
                )));
            }
            Ok(Err(error)) => return Err(error),
            Err(panic) => {
                return Err(StoreError::Damaged {
                    path: path.into_boxed_path(),
                    detail: format!(
                        "reading it failed inside redb: {}",
                        crate::unwind::message(&panic)
                    ),
                });
            }
        };
        let retention = self.settled_retention.unwrap_or(DEFAULT_SETTLED_RETENTION);
        let db = backend.database();
        let runtime = self.with(backend, wal, disk_cache);
        if let Some(db) = db {
            db.report_to(&runtime.shared.subscribers);
            let sweeper = Sweeper::start(
                db.clone(),
                SWEEP_EVERY,
                retention,
                orphan_check(&runtime.shared),
            )?;
            let _ = runtime.shared.upkeep.set(Upkeep {
                _sweeper: sweeper,
                db,
                retention,
            });
        }
        Ok(runtime)
    }

    fn with(self, backend: Backend, wal: WriteAheadLog, disk_cache: Option<DiskCache>) -> Runtime {
        let rng = match self.seed {
            Some(seed) => RngSource::seeded(seed),
            None => RngSource::default(),
        };
        let mut shared = Shared::new(rng, backend, wal, disk_cache, self.detector);
        shared.tuning = Mutex::new(Tuning::new(self.overrides));
        #[cfg(feature = "embedded")]
        {
            shared.orphan_grace = self.orphan_grace.unwrap_or(DEFAULT_ORPHAN_GRACE);
        }
        let sealing = Sealing::new(self.plaintext_redacted);
        #[cfg(feature = "sealing")]
        let sealing = sealing.with_keys(self.sealing_key, self.previous_sealing_keys);
        shared.sealing = Arc::new(sealing);
        // Before Redis: with both, PostgreSQL holds the idempotency store
        // (`share` keeps the first one it is given).
        #[cfg(feature = "postgres")]
        {
            let subscribers = shared.subscribers.clone();
            shared.postgres = self.postgres.and_then(|postgres| {
                match crate::postgres::Database::start(postgres, subscribers) {
                    Ok(db) => Some(Arc::new(db)),
                    Err(error) => {
                        tracing::error!(
                            target: "seawall::postgres",
                            %error,
                            "the PostgreSQL link could not start: keyed writes with a store run on the local store"
                        );
                        None
                    }
                }
            });
            if let Some(db) = &shared.postgres {
                shared
                    .idempotency
                    .share(crate::idempotency::shared::Shared::Postgres(db.clone()));
                // Queued writes go to the outbox, which every process that
                // names the database and schema drains.
                // The embedded log, if any, stays beside it for writes queued
                // while the database is away.
                let local = std::mem::replace(&mut shared.wal, Arc::new(WriteAheadLog::memory()));
                let local = Arc::try_unwrap(local).ok();
                shared.wal = Arc::new(WriteAheadLog::postgres(db.clone(), local));
            }
        }
        #[cfg(feature = "redis")]
        {
            let subscribers = shared.subscribers.clone();
            let share_cache = self
                .redis
                .as_ref()
                .is_some_and(|redis| redis.shares_cache());
            shared.fleet = self.redis.and_then(|redis| {
                let replica = format!("{:016x}", rand::random::<u64>());
                match crate::fleet::Fleet::new(redis, subscribers, replica) {
                    Ok(fleet) => Some(Arc::new(fleet)),
                    Err(error) => {
                        tracing::error!(
                            target: "seawall::fleet",
                            %error,
                            "the fleet could not start: this runtime's state stays local"
                        );
                        None
                    }
                }
            });
            shared.fleet_cache = shared
                .fleet
                .as_ref()
                .filter(|_| share_cache)
                .map(|fleet| Arc::new(crate::fleet::cache::FleetCache::new(fleet)));
            // Unless PostgreSQL holds it already (above).
            if let Some(fleet) = &shared.fleet {
                shared
                    .idempotency
                    .share(crate::idempotency::shared::Shared::Redis(fleet.clone()));
            }
        }
        Runtime {
            shared: Arc::new(shared),
        }
    }
}

impl Runtime {
    /// A runtime that keeps all its state in memory.
    ///
    /// Writes with `fallback = queue` are queued in memory too, and lost if
    /// the process ends before they are delivered: use it for tests and
    /// demos. [`WriteAheadLog::is_durable`] says so, and the first write
    /// queued logs a warning. Services use [`Runtime::embedded`].
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A runtime whose durable state lives in `dir` (see
    /// [`RuntimeBuilder::embedded`]).
    ///
    /// # Errors
    ///
    /// As [`RuntimeBuilder::embedded`].
    #[cfg(feature = "embedded")]
    pub fn embedded(dir: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Self::builder().embedded(dir)
    }

    /// Settings beyond the defaults, such as a seed for jitter.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Deletes what an embedded runtime no longer needs, now: settled
    /// entries of the write-ahead log older than the retention
    /// ([`RuntimeBuilder::settled_retention`]), idempotency records past
    /// their policy's retention, cached answers past `max_stale`; with
    /// `postgres`, the idempotency rows past
    /// their retention (or whose claim ran out a minute ago) there too. A
    /// sweeper thread does the same every hour; this is for operators and
    /// tests.
    /// Deletes in transactions of at most 1 000 rows, so queued writes never
    /// wait long behind it. A runtime in memory has nothing to sweep.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database cannot be read or written.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        #[cfg(not(feature = "embedded"))]
        let swept = Swept::default();
        #[cfg(feature = "embedded")]
        let swept = self.sweep_embedded().await?;
        #[cfg(feature = "postgres")]
        let swept = match &self.shared.postgres {
            Some(db) => Swept {
                idempotency_records: swept.idempotency_records + db.sweep().await?,
                ..swept
            },
            None => swept,
        };
        Ok(swept)
    }

    #[cfg(feature = "embedded")]
    async fn sweep_embedded(&self) -> Result<Swept, StoreError> {
        let Some(upkeep) = self.shared.upkeep.get() else {
            return Ok(Swept::default());
        };
        let (db, retention) = (upkeep.db.clone(), upkeep.retention);
        let mut swept =
            tokio::task::spawn_blocking(move || db.run(|db| sweep(db, &sweep_rules(retention))))
                .await
                .map_err(|error| StoreError::Embedded(format!("the sweep failed: {error}")))??;
        if self.shared.created.elapsed() >= self.shared.orphan_grace {
            let queues = &self.shared.queues;
            swept.orphaned_writes = dead_letter_orphans(
                &self.shared.wal,
                |contract| registered(queues, contract),
                &self.shared.subscribers,
            )
            .await?;
        }
        Ok(swept)
    }

    /// Queues a dead letter again, once its cause is fixed (the adapter
    /// that panicked on it, the key that could not open it, the vendor's
    /// reason to refuse it): it goes to the back of its contract's queue
    /// with its original idempotency key and arguments (still sealed) and a
    /// fresh attempt count, the drain delivers it, and the dead letter is
    /// forgotten. Answers the new ticket, or `None` when `ticket` is not a
    /// dead letter. (Queued first, forgotten second: a crash in between
    /// leaves both, never neither.)
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the log cannot be read or written.
    pub async fn retry_dead_letter(&self, ticket: Ticket) -> Result<Option<Ticket>, StoreError> {
        let wal = &self.shared.wal;
        let Some(letter) = wal.dead_letter(ticket).await? else {
            return Ok(None);
        };
        let mut write = letter.write;
        write.attempts = 0;
        let contract = write.contract.clone();
        let queued = self.queue(&contract).append(write, Duration::ZERO).await?;
        wal.remove_dead(ticket, &contract).await?;
        Ok(Some(queued))
    }

    /// The write-ahead log of queued writes: their status, dead letters,
    /// and a way to wait for a ticket to settle.
    pub fn write_ahead_log(&self) -> &WriteAheadLog {
        &self.shared.wal
    }

    /// Whether the service should take traffic, for a readiness probe: not
    /// while seawall's own state is unusable (the embedded store cannot
    /// write, the PostgreSQL database does not answer); never because a
    /// vendor's breaker is open. See [`Readiness`](crate::telemetry::Readiness).
    pub fn readiness(&self) -> crate::telemetry::Readiness {
        self.health().readiness()
    }

    /// Every endpoint's calls, latency, breaker and cache counts, and every
    /// contract queue's depth and dead letters, as they are now.
    /// Serializes to JSON (`serde_json::to_string(&runtime.health())`).
    pub fn health(&self) -> Health {
        let endpoints = lock(&self.shared.stats)
            .values()
            .map(|stats| stats.health())
            .collect();
        let wal = &self.shared.wal;
        let mut contracts: Vec<Arc<str>> = lock(&self.shared.queues).keys().cloned().collect();
        for contract in wal.contracts() {
            if !contracts.iter().any(|c| **c == *contract) {
                contracts.push(contract.into());
            }
        }
        contracts.sort();
        let queues = contracts
            .into_iter()
            .map(|contract| QueueHealth {
                pending: wal.pending_count(&contract),
                dead_letters: wal.dead_count(&contract),
                contract: contract.to_string(),
            })
            .collect();
        // One lock for both (a guard in the literal would live to its end).
        let (overrides, last_reload) = {
            let tuning = lock(&self.shared.tuning);
            (
                tuning.overridden.values().cloned().collect(),
                tuning.last_reload.clone(),
            )
        };
        Health {
            endpoints,
            queues,
            limiters: lock(&self.shared.limiters)
                .values()
                .map(|limiter| limiter.status())
                .collect(),
            bulkheads: lock(&self.shared.bulkheads)
                .values()
                .map(|bulkhead| bulkhead.status())
                .collect(),
            paused: lock(&self.shared.pauses)
                .values()
                .filter_map(|pause| pause.status())
                .collect(),
            quarantined: wal.quarantined_count(),
            overrides,
            last_reload,
            #[cfg(feature = "embedded")]
            store_degraded: self
                .shared
                .upkeep
                .get()
                .is_some_and(|upkeep| upkeep.db.is_degraded()),
            #[cfg(not(feature = "embedded"))]
            store_degraded: false,
            #[cfg(feature = "redis")]
            fleet: self.shared.fleet.as_ref().map(|fleet| fleet.health()),
            #[cfg(not(feature = "redis"))]
            fleet: None,
            #[cfg(feature = "postgres")]
            postgres: self.shared.postgres.as_ref().map(|db| db.health()),
            #[cfg(not(feature = "postgres"))]
            postgres: None,
        }
    }

    /// The queue of `contract`'s writes, created on first use.
    pub(crate) fn queue(&self, contract: &str) -> Arc<ContractQueue> {
        let mut queues = lock(&self.shared.queues);
        if let Some(queue) = queues.get(contract) {
            return queue.clone();
        }
        let name: Arc<str> = contract.into();
        let queue = Arc::new(ContractQueue::new(
            name.clone(),
            &self.shared.wal,
            self.shared.subscribers.clone(),
            self.shared.sealing.clone(),
        ));
        queues.insert(name, queue.clone());
        queue
    }

    /// Registers a wrapper that can deliver `contract`'s queued writes; a
    /// drain starts at once if some are waiting.
    pub(crate) fn register_drainer(&self, contract: &str, drainer: Arc<dyn Drainer>) {
        self.queue(contract).register(drainer);
    }

    /// The retry budget registered under `name` (a contract's name), if any.
    pub fn retry_budget(&self, name: &str) -> Option<Arc<RetryBudget>> {
        lock(&self.shared.budgets).get(name).cloned()
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

    /// The rate limiter registered under `name`, if any. Limiters are
    /// named `contract.method` unless their policy names them.
    pub fn rate_limiter(&self, name: &str) -> Option<Arc<RateLimiter>> {
        lock(&self.shared.limiters).get(name).cloned()
    }

    /// Every rate limiter built so far, sorted by name.
    pub fn rate_limiters(&self) -> Vec<Arc<RateLimiter>> {
        lock(&self.shared.limiters).values().cloned().collect()
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
    /// warning is logged). Endpoints of one contract that retry share the
    /// contract's retry budget, whose policy is the first one registered.
    ///
    /// # Errors
    ///
    /// The errors of [`Policy::validate`].
    pub fn endpoint(
        &self,
        contract: &str,
        method: &str,
        compiled: Policy,
    ) -> Result<Endpoint, PolicyError> {
        // Held while the endpoint is built, so that a reload sees it.
        let mut tuning = lock(&self.shared.tuning);
        let (policy, refused) = tuning.resolve(contract, method, &compiled);
        let built = self.build(contract, method, compiled, policy, &mut tuning);
        drop(tuning);
        // Hooks run without the lock: one may read health.
        if let Some(refused) = refused {
            self.shared
                .subscribers
                .emit(&Event::OverridesRefused(refused));
        }
        built
    }

    fn build(
        &self,
        contract: &str,
        method: &str,
        compiled: Policy,
        policy: Policy,
        tuning: &mut Tuning,
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
                        breaker.wake_when_due();
                        #[cfg(feature = "redis")]
                        if let Some(fleet) = &self.shared.fleet {
                            crate::fleet::breaker::share(fleet, &breaker);
                        }
                        // The gauge exists from the start, not from the
                        // first transition.
                        metrics::gauge!("seawall_breaker_state", "breaker" => name.to_string())
                            .set(breaker_state_code(breaker.state()));
                        registry.insert(name, breaker.clone());
                        breaker
                    }
                };
                Some(breaker)
            }
        };
        let limiter = policy.rate().map(|rate_policy| {
            let name: Arc<str> = match rate_policy.name() {
                Some(name) => name.into(),
                None => format!("{contract}.{method}").into(),
            };
            let mut limiters = lock(&self.shared.limiters);
            match limiters.get(&name) {
                Some(existing) => {
                    if existing.policy() != rate_policy {
                        tracing::warn!(
                            target: "seawall::rate",
                            limiter = %name,
                            "rate limiter `{name}` is shared by methods with different rates; \
                             the first one registered ({:?}) applies",
                            existing.policy()
                        );
                    }
                    existing.clone()
                }
                None => {
                    let limiter = Arc::new(RateLimiter::new(name.clone(), rate_policy));
                    #[cfg(feature = "redis")]
                    if let Some(fleet) = &self.shared.fleet {
                        crate::fleet::rate::share(fleet, &limiter);
                    }
                    limiters.insert(name, limiter.clone());
                    limiter
                }
            }
        });
        let pause = lock(&self.shared.pauses)
            .entry(contract.into())
            .or_insert_with(|| Arc::new(ContractPause::new(contract.into())))
            .clone();
        // One bulkhead per method, kept across wrappers (its places are the
        // method's, whoever calls it).
        let bulkhead = policy.bulkhead().map(|bulkhead_policy| {
            let name: Arc<str> = format!("{contract}.{method}").into();
            lock(&self.shared.bulkheads)
                .entry(name.clone())
                .or_insert_with(|| Arc::new(Bulkhead::new(name, bulkhead_policy)))
                .clone()
        });
        let policy_store = policy.idempotency_store().is_some();
        let queue = policy.queue_fallback().then(|| self.queue(contract));
        let budget = match policy.retry_budget() {
            Some(budget_policy) if policy.retry().attempts() > 1 => {
                let mut budgets = lock(&self.shared.budgets);
                let budget = match budgets.get(contract) {
                    Some(existing) => existing.clone(),
                    None => {
                        let budget = Arc::new(RetryBudget::new(contract, budget_policy.clone())?);
                        #[cfg(feature = "redis")]
                        if let Some(fleet) = &self.shared.fleet {
                            crate::fleet::budget::share(fleet, &budget);
                        }
                        budgets.insert(contract.into(), budget.clone());
                        budget
                    }
                };
                Some(budget)
            }
            _ => None,
        };
        let stats = {
            let mut stats = lock(&self.shared.stats);
            let key: (Arc<str>, Arc<str>) = (contract.into(), method.into());
            stats
                .entry(key.clone())
                .or_insert_with(|| {
                    let series = Series {
                        reject: breaker.is_some(),
                        cache: policy.cache_fallback().is_some(),
                        queue: policy.queue_fallback(),
                        retry: budget.is_some(),
                    };
                    Arc::new(EndpointStats::new(
                        key.0,
                        key.1,
                        series,
                        self.shared.detector.clone(),
                        breaker.clone(),
                        policy.hedge().map(|hedge| {
                            Arc::new(crate::hedge::Hedger::new(contract, method, hedge))
                        }),
                        self.shared.subscribers.clone(),
                    ))
                })
                .clone()
        };
        let endpoint_tuning = Arc::new(crate::endpoint::EndpointTuning::new(
            contract.into(),
            method.into(),
            compiled,
            policy,
        ));
        tuning.endpoints.push(Arc::downgrade(&endpoint_tuning));
        let state = Resolved {
            tuning: endpoint_tuning,
            stats,
            breaker,
            limiter,
            pause,
            bulkhead,
            budget,
            rng: self.shared.rng.clone(),
            store: policy_store.then(|| self.shared.idempotency.clone()),
            queue,
            cache_beyond: crate::cache::Beyond {
                disk: self.shared.disk_cache.clone(),
                #[cfg(feature = "redis")]
                fleet: self.shared.fleet_cache.clone(),
            },
        };
        Ok(Endpoint::new(contract.into(), method.into(), state))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Arc<Breaker>>> {
        lock(&self.shared.breakers)
    }
}

mod reload;
use reload::Tuning;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("breakers", &self.registry().len())
            .field("store", &self.shared.idempotency.backend_kind())
            .finish()
    }
}

/// Whether a wrapper ever offered to deliver `contract`'s writes.
#[cfg(feature = "embedded")]
fn registered(queues: &Queues, contract: &str) -> bool {
    lock(queues)
        .get(contract)
        .is_some_and(|queue| queue.has_drainers())
}

/// What the sweeper thread runs after each sweep: once the grace period
/// has passed, the writes of contracts nothing serves become dead letters.
/// It holds the log, the queues and the subscribers weakly (never the
/// runtime, whose drop joins the sweeper), and needs the tokio runtime the
/// runtime was built in to run the log's async operations on.
#[cfg(feature = "embedded")]
fn orphan_check(shared: &Arc<Shared>) -> Option<Box<dyn Fn() + Send>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let wal = Arc::downgrade(&shared.wal);
    let queues = Arc::downgrade(&shared.queues);
    let subscribers = Arc::downgrade(&shared.subscribers);
    let (created, grace) = (shared.created, shared.orphan_grace);
    Some(Box::new(move || {
        if created.elapsed() < grace {
            return;
        }
        let (Some(wal), Some(queues), Some(subscribers)) =
            (wal.upgrade(), queues.upgrade(), subscribers.upgrade())
        else {
            return;
        };
        let check =
            dead_letter_orphans(&wal, |contract| registered(&queues, contract), &subscribers);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.block_on(check)));
        if let Ok(Err(error)) = result {
            tracing::warn!(target: "seawall::queue", %error, "could not dead-letter the writes of contracts nothing serves");
        }
    }))
}
