//! Durable shared state in PostgreSQL: what replicas of a service share
//! when it must outlive any one of them: the idempotency store and the
//! outbox of queued writes.
//!
//! Chosen on the builder ([`RuntimeBuilder::postgres`](crate::RuntimeBuilder::postgres)).
//! It holds **the outbox** (`wal/postgres.rs`, table `outbox`): writes
//! with `fallback = queue` are queued there instead of in the runtime's
//! local log, and every replica drains them, a lane at a time under a
//! lease in `outbox_lanes` (see [`crate::wal`]). And it holds **the
//! idempotency store** (`postgres/idempotency.rs`): a
//! keyed write with `idempotent(.., store)` claims its key in a row of the
//! `idempotency` table (a lease, renewed while the call runs) and records
//! its outcome there, so one replica calls the vendor per key and every
//! other replica waits for its answer, replays it, or is refused, as the
//! policy says: the same semantics as the Redis store of
//! [`crate::fleet`], in a database that keeps the records across restarts
//! of everything. With both Redis and PostgreSQL configured, breakers and
//! budgets are shared through Redis and the idempotency store lives in
//! PostgreSQL.
//!
//! **Why PostgreSQL beside Redis.** Redis keeps records in memory (a
//! restart without persistence forgets them); PostgreSQL is the database a
//! service usually has already, backed up and durable, and the place where
//! a transactional outbox has to live. Why [sqlx](https://docs.rs/sqlx):
//! an async driver with a connection pool and a migrator for versioned SQL
//! files, well kept and widely used; seawall uses neither its TLS nor its
//! macros (the migrations are embedded with `include_str!`).
//!
//! **The schema** is created by versioned migrations shipped with the crate
//! (`core/migrations/0001_idempotency.sql`, ...), in a schema of its own
//! (`seawall` unless [`schema`](Postgres::schema) says otherwise), run by
//! sqlx's migrator, which records them in that schema's `_sqlx_migrations`
//! table and holds an advisory lock while it runs, so replicas starting
//! together migrate once. The runtime runs them when it first connects,
//! unless [`migrate_on_start(false)`](Postgres::migrate_on_start); an
//! application that migrates in a deploy step calls
//! [`Postgres::migrate`] there instead.
//!
//! **When the database is away** (unreachable, slower than
//! [`store_timeout`](Postgres::store_timeout), restarted): a keyed write with
//! a store fails closed, `Error::Store(StoreError::Postgres(..))`, the
//! vendor not called, since no replica can tell whether another runs it;
//! with [`local_idempotency_when_away`](Postgres::local_idempotency_when_away)
//! it runs on the runtime's own store instead, once per key in this process
//! only. A warning, an [`Event::Postgres`] and
//! [`Health::postgres`](crate::telemetry::Health::postgres) say so, and the
//! first query that succeeds says it is back.
//!
//! Building a runtime never waits for the database: a thread of the
//! runtime's own (`seawall-postgres`, a current-thread tokio runtime with
//! I/O and time) connects and migrates in the background, retrying with a
//! growing pause, and runs every query, within the store timeout, whatever
//! tokio runtime the caller is on (also one with time only, or a paused
//! test clock).
//!
//! ```
//! use std::time::Duration;
//! let postgres = seawall_core::postgres::Postgres::new("postgres://seawall@127.0.0.1/billing")?
//!     .schema("billing_seawall")?
//!     .store_timeout(Duration::from_millis(500))
//!     .claim_lease(Duration::from_secs(10));
//! let runtime = seawall_core::Runtime::builder().postgres(postgres).in_memory();
//! # Ok::<(), seawall_core::StoreError>(())
//! ```

pub(crate) mod idempotency;
mod migrations;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::AcqRel, Ordering::Acquire};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::watch;

use crate::event::{Event, PostgresChanged, Subscribers};
use crate::store::StoreError;

/// Which PostgreSQL database a runtime keeps its shared state in, and how.
#[derive(Clone)]
pub struct Postgres {
    pub(crate) options: PgConnectOptions,
    pub(crate) schema: String,
    pub(crate) store_timeout: Duration,
    claim_lease: Duration,
    migrate_on_start: bool,
    local_idempotency_when_away: bool,
    max_connections: u32,
}

/// The schema seawall's tables live in, unless set.
pub const DEFAULT_SCHEMA: &str = "seawall";

/// How long one query may take before it counts as failed, unless set.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a claim on an idempotency key outlives the last renewal of the
/// replica that holds it, unless set.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(10);

/// How many connections a runtime opens at most, unless set.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

impl Postgres {
    /// A database by URL (`postgres://user:password@host:port/database`,
    /// with libpq's parameters, such as `?application_name=..`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the URL is not a `postgres://` (or
    /// `postgresql://`) URL or cannot be parsed. Nothing is
    /// connected yet: the runtime connects (and migrates) in the
    /// background.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Postgres(
                "not a PostgreSQL URL: it starts with neither postgres:// nor postgresql://"
                    .to_owned(),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Postgres(format!("not a PostgreSQL URL: {e}")))?;
        Ok(Self {
            options: options.application_name("seawall"),
            schema: DEFAULT_SCHEMA.to_owned(),
            store_timeout: DEFAULT_STORE_TIMEOUT,
            claim_lease: DEFAULT_CLAIM_LEASE,
            migrate_on_start: true,
            local_idempotency_when_away: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// The schema that holds seawall's tables (`seawall` by default),
    /// created by the migration if missing. Replicas share state only when
    /// they name the same database and schema: give each service (and each
    /// test) its own.
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] unless `name` is a plain lower-case SQL
    /// identifier: a letter or `_`, then letters, digits or `_`, at most 63
    /// bytes (it is written into SQL and `search_path` as it is).
    pub fn schema(mut self, name: &str) -> Result<Self, StoreError> {
        let plain = name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::Postgres(format!(
                "{name:?} is not a plain schema name ([a-z_][a-z0-9_]*, at most 63 bytes)"
            )));
        }
        self.schema = name.to_owned();
        Ok(self)
    }

    /// How long one query may take, a connection included (1 s by
    /// default). A query past it counts as the database being away.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a replica's claim on an idempotency key lasts without
    /// renewal (10 s by default). While its call runs the replica renews the
    /// claim every third of the lease, and deletes it when the call ends; a
    /// replica that dies holding one leaves it for at most a lease, after
    /// which the next call of that key proceeds. Never less than three
    /// [store timeouts](Self::store_timeout).
    ///
    /// It is also the lease on a lane of the outbox: a replica that dies
    /// while delivering queued writes holds their lane for at most this
    /// long before another replica takes it over.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
    }

    /// Whether the runtime runs the migrations when it first connects (yes
    /// by default). Say `false` when a deploy step runs
    /// [`migrate`](Self::migrate), or when the database user may not
    /// create tables; queries then fail with a hint until the schema is
    /// there.
    pub fn migrate_on_start(mut self, migrate: bool) -> Self {
        self.migrate_on_start = migrate;
        self
    }

    /// While the database is away, lets keyed writes with
    /// `idempotent(.., store)` run on the runtime's own store (memory or
    /// embedded), with a warning, instead of failing with `Error::Store`.
    /// A conscious trade: meanwhile a write runs once per key *in each
    /// replica*, and what it records there is not seen by the others.
    pub fn local_idempotency_when_away(mut self) -> Self {
        self.local_idempotency_when_away = true;
        self
    }

    /// How many connections the runtime's pool opens at most (8 by
    /// default, at least 1).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Creates the schema if needed and runs the migrations this version of
    /// seawall ships that the database has not run yet; a database that has
    /// them all is left as it is. For applications that migrate in a deploy
    /// step (with [`migrate_on_start(false)`](Self::migrate_on_start)).
    /// Runs on a thread of its own, so any tokio runtime (or none, through
    /// `block_on`) may await it; gives up after 30 s (waiting for another
    /// replica's migration included).
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the database cannot be reached (or the
    /// migration does not end within 30 s), the
    /// user may not create the schema or its tables, or the database holds
    /// migrations this version does not know (a newer seawall ran there) or
    /// whose text changed.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let config = self.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("seawall-postgres-migrate".to_owned())
            .spawn(move || {
                let migrated = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Postgres(format!("a runtime to migrate on: {e}")))
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            tokio::time::timeout(START_TIMEOUT, migrations::run(&config))
                                .await
                                .unwrap_or_else(|_| {
                                    Err(StoreError::Postgres(format!(
                                        "{}: the migration did not end within {START_TIMEOUT:?}",
                                        config.address()
                                    )))
                                })
                        })
                    });
                let _ = answer.send(migrated);
            })
            .map_err(|e| StoreError::Postgres(format!("a thread to migrate on: {e}")))?;
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Postgres(
                "the migration's thread ended without an answer".to_owned(),
            ))
        })
    }

    /// Where the database is, for messages (never the password).
    pub(crate) fn address(&self) -> String {
        format!(
            "postgres://{}:{}/{} (schema {})",
            self.options.get_host(),
            self.options.get_port(),
            self.options.get_database().unwrap_or_default(),
            self.schema
        )
    }

    /// The options every connection is opened with: seawall's schema first
    /// on the search path, so that the migrations and the queries name
    /// their tables without it.
    fn connect_options(&self) -> PgConnectOptions {
        self.options
            .clone()
            .options([("search_path", self.schema.as_str())])
    }

    pub(crate) fn error(&self, error: &sqlx::Error) -> StoreError {
        let hint = match error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                " (the schema is not migrated: run `Postgres::migrate`, or let the runtime \
                 migrate on start)"
            }
            _ => "",
        };
        StoreError::Postgres(format!("{}: {error}{hint}", self.address()))
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("address", &self.address())
            .field("store_timeout", &self.store_timeout)
            .field("claim_lease", &self.claim_lease)
            .field("migrate_on_start", &self.migrate_on_start)
            .field(
                "local_idempotency_when_away",
                &self.local_idempotency_when_away,
            )
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The longest one attempt to connect and migrate at start may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime's link to PostgreSQL: a pool (once the start-up task has
/// connected and migrated), whether the database answered last time, and
/// the thread every query runs on.
pub(crate) struct Database {
    config: Postgres,
    handle: tokio::runtime::Handle,
    /// Ends the thread when the link is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// `Some` once the schema is ready (migrated, or not to be migrated).
    pool: watch::Receiver<Option<PgPool>>,
    status: Arc<Status>,
    /// This replica's name in claim tokens.
    pub(crate) replica: String,
}

/// Whether the database answers, shared with the start-up task.
struct Status {
    away: AtomicBool,
    last_error: Mutex<Option<String>>,
    subscribers: Arc<Subscribers>,
    local_when_away: bool,
}

impl Database {
    /// Starts the thread and, on it, the start-up task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Postgres`] when the thread cannot be started.
    pub(crate) fn start(
        config: Postgres,
        subscribers: Arc<Subscribers>,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("the PostgreSQL runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("seawall-postgres".to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StoreError::Postgres(format!("the PostgreSQL thread: {e}")))?;
        let status = Arc::new(Status {
            away: AtomicBool::new(false),
            last_error: Mutex::new(None),
            subscribers,
            local_when_away: config.local_idempotency_when_away,
        });
        let (ready, pool) = watch::channel(None);
        handle.spawn(prepare(config.clone(), status.clone(), ready));
        Ok(Self {
            config,
            handle,
            _stop: stop,
            pool,
            status,
            replica: format!("{:016x}", rand::random::<u64>()),
        })
    }

    /// How long one query may take.
    pub(crate) fn store_timeout(&self) -> Duration {
        self.config.store_timeout
    }

    /// The schema seawall's tables are in.
    pub(crate) fn schema(&self) -> &str {
        &self.config.schema
    }

    /// The lease of an idempotency claim: as set, and at least three store
    /// timeouts.
    pub(crate) fn claim_lease(&self) -> Duration {
        self.config
            .claim_lease
            .max(self.config.store_timeout.saturating_mul(3))
    }

    /// Whether keyed writes run on the local store while the database is
    /// away.
    pub(crate) fn local_idempotency_when_away(&self) -> bool {
        self.config.local_idempotency_when_away
    }

    /// Runs `task` on the database's thread.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(task);
    }

    /// Runs `query` on the database's thread, within the store timeout
    /// (waiting for the start-up task included), and notes whether the
    /// database answered.
    pub(crate) async fn run<T, F, Fut>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        let timeout = self.config.store_timeout;
        let mut pool = self.pool.clone();
        let status = self.status.clone();
        let config = self.config.clone();
        let task = self.handle.spawn(async move {
            let answer = tokio::time::timeout(timeout, async {
                let pool = match pool.wait_for(Option::is_some).await {
                    Ok(pool) => pool.clone().expect("waited for it"),
                    Err(_) => {
                        return Err(StoreError::Postgres(format!(
                            "{}: the start-up task ended",
                            config.address()
                        )));
                    }
                };
                query(pool).await.map_err(|e| config.error(&e))
            })
            .await;
            answer.unwrap_or_else(|_| {
                let detail = if pool.borrow().is_none() {
                    let last = status.last_error();
                    format!(
                        "not connected within {timeout:?}{}",
                        last.map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    )
                } else {
                    format!("no answer within {timeout:?}")
                };
                Err(StoreError::Postgres(format!(
                    "{}: {detail}",
                    config.address()
                )))
            })
        });
        let answer = match task.await {
            Ok(answer) => answer,
            // The thread is gone (the runtime is being dropped).
            Err(join) => Err(StoreError::Postgres(format!(
                "{}: the query's task ended: {join}",
                self.config.address()
            ))),
        };
        match &answer {
            Ok(_) => self.status.back(),
            Err(error) => self.status.lost(error),
        }
        answer
    }

    /// Deletes the expired idempotency rows now; how many.
    pub(crate) async fn sweep(&self) -> Result<u64, StoreError> {
        self.run(|pool| async move { idempotency::sweep(&pool).await })
            .await
    }

    /// The database's health, for [`Health::postgres`](crate::telemetry::Health::postgres).
    pub(crate) fn health(&self) -> crate::telemetry::PostgresHealth {
        crate::telemetry::PostgresHealth {
            available: !self.status.away.load(Acquire),
            ready: self.pool.borrow().is_some(),
            last_error: self.status.last_error(),
            schema: self.config.schema.clone(),
        }
    }
}

impl Status {
    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lost(&self, error: &StoreError) {
        let detail = error.to_string();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
        if !self.away.swap(true, AcqRel) {
            if self.local_when_away {
                tracing::warn!(
                    target: "seawall::postgres",
                    error = %detail,
                    "PostgreSQL is away: keyed writes with a store run on local state until it answers"
                );
            } else {
                tracing::warn!(
                    target: "seawall::postgres",
                    error = %detail,
                    "PostgreSQL is away: keyed writes with a store are refused until it answers"
                );
            }
            self.subscribers.emit(&Event::Postgres(PostgresChanged {
                available: false,
                detail,
            }));
        }
    }

    fn back(&self) {
        if self.away.swap(false, AcqRel) {
            tracing::info!(target: "seawall::postgres", "PostgreSQL answers again");
            self.subscribers.emit(&Event::Postgres(PostgresChanged {
                available: true,
                detail: "PostgreSQL answered".to_owned(),
            }));
        }
    }
}

/// The start-up task: migrates (unless told not to), retrying with a
/// growing pause while the database cannot be reached, then hands the pool
/// to the queries.
async fn prepare(config: Postgres, status: Arc<Status>, ready: watch::Sender<Option<PgPool>>) {
    if config.migrate_on_start {
        let mut pause = Duration::from_millis(100);
        // Bounded by the thread's life: the runtime's drop ends it.
        loop {
            let migrated = tokio::time::timeout(START_TIMEOUT, migrations::run(&config))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Postgres(format!(
                        "{}: the migration did not end within {START_TIMEOUT:?}",
                        config.address()
                    )))
                });
            match migrated {
                Ok(()) => {
                    status.back();
                    break;
                }
                Err(error) => {
                    status.lost(&error);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.store_timeout)
        .connect_lazy_with(config.connect_options());
    ready.send_replace(Some(pool.clone()));
    // Records past their retention and claims long run out are deleted
    // now and then; a claim or a record past its time is never honoured
    // meanwhile (the next call of its key takes the row over).
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded by the thread's life: the runtime's drop ends it.
    loop {
        every.tick().await;
        if let Err(error) = idempotency::sweep(&pool).await {
            tracing::debug!(target: "seawall::postgres", %error, "the sweep of expired idempotency rows failed; the next one tries again");
        }
    }
}

/// How often the database's expired rows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
