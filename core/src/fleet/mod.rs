//! Fleet-wide state on Redis: what several replicas of a service share so
//! that they act as one client of a vendor.
//!
//! Chosen on the builder ([`RuntimeBuilder::redis`](crate::RuntimeBuilder::redis))
//! and used by every contract of that runtime:
//!
//! - **Breakers** (`fleet/breaker.rs`): each replica keeps its local breaker as the
//!   fast path (no round trip per call); a background task per breaker sends
//!   the local tally to Redis every [`sync_every`](Redis::sync_every) in one
//!   atomic script and takes on the fleet's state. The fleet opens on the
//!   fleet's counts, and grants `probes` half-open probes for the whole
//!   fleet.
//! - **Retry budgets** (`fleet/budget.rs`): the fleet's tokens live in Redis; each
//!   replica holds a share between syncs, so the fleet's retries are bounded
//!   by one budget instead of one per replica.
//! - **Rate limiters** (`fleet/rate.rs`): the fleet's limit lives in Redis;
//!   each replica leases a batch of turns in one atomic script and serves
//!   its calls from the lease locally, so the vendor sees at most
//!   `limit + burst` per period from the whole fleet. A vendor's
//!   `Retry-After` pauses every replica.
//! - **Cached answers** (`fleet/cache.rs`, with [`share_cache`](Redis::share_cache)):
//!   written behind the call, read only when the vendor fails and the
//!   replica has no answer of its own.
//! - **The idempotency store** (`fleet/idempotency.rs`): a keyed write with
//!   `idempotent(.., store)` claims its key in Redis (a lease, renewed while
//!   the call runs) and records its outcome there, so one replica calls the
//!   vendor per key and every other replica waits for its answer, replays
//!   it, or is refused, as the policy says. (A runtime that also has
//!   PostgreSQL (`RuntimeBuilder::postgres`) keeps it there instead:
//!   the durable home.)
//! - **When Redis is away** (unreachable, slow, restarted, emptied): every
//!   breaker runs on its local state, every rate limiter on this
//!   replica's share of its limit ([`fleet_size`](Redis::fleet_size)), a
//!   warning and an
//!   [`Event::Fleet`] say so,
//!   [`Health::fleet`](crate::telemetry::Health::fleet) shows it, and the
//!   state resynchronises at the first sync that succeeds. A keyed write
//!   with a store fails closed (`Error::Store`, the vendor not called): the
//!   fleet can no longer tell whether another replica runs it. With
//!   [`local_idempotency_when_away`](Redis::local_idempotency_when_away) it
//!   runs on the runtime's own store instead, once per key in this process
//!   only.
//!
//! Every command is bounded by [`store_timeout`](Redis::store_timeout); the
//! connection is a [`redis::aio::ConnectionManager`], which reconnects by
//! itself.

pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod cache;
pub(crate) mod idempotency;
pub(crate) mod rate;

use std::sync::atomic::{AtomicBool, Ordering::AcqRel, Ordering::Acquire};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::event::{Event, FleetChanged, Subscribers};
use crate::store::StoreError;

/// Where and how a runtime shares its state with the rest of its fleet.
///
/// ```
/// use std::time::Duration;
/// let redis = seawall_core::fleet::Redis::new("redis://127.0.0.1:6379/")?
///     .prefix("billing")
///     .sync_every(Duration::from_millis(250))
///     .claim_lease(Duration::from_secs(10));
/// # Ok::<(), seawall_core::StoreError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Redis {
    client: redis::Client,
    prefix: String,
    sync_every: Duration,
    store_timeout: Duration,
    share_cache: bool,
    claim_lease: Duration,
    local_idempotency_when_away: bool,
    fleet_size: u32,
    rate_lease: u32,
}

/// How often a shared breaker syncs with the fleet, unless set.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_millis(250);

/// How long one Redis command may take before it counts as failed, unless
/// set.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a claim on an idempotency key outlives the last renewal of the
/// replica that holds it, unless set.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(10);

/// The most turns a replica leases from a fleet's rate limit in one round
/// trip, unless set.
pub const DEFAULT_RATE_LEASE: u32 = 8;

impl Redis {
    /// A Redis server by URL (`redis://host:port/db`, `rediss://` for TLS
    /// when the `redis` crate's TLS feature is enabled).
    ///
    /// # Errors
    ///
    /// [`StoreError::Redis`] when the URL cannot be parsed. Nothing is
    /// connected yet: the runtime connects in the background, and runs on
    /// local state until it can.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Redis(format!("{url}: not a Redis URL: {e}")))?;
        Ok(Self {
            client,
            prefix: "seawall".to_owned(),
            sync_every: DEFAULT_SYNC_EVERY,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            share_cache: false,
            claim_lease: DEFAULT_CLAIM_LEASE,
            local_idempotency_when_away: false,
            fleet_size: 1,
            rate_lease: DEFAULT_RATE_LEASE,
        })
    }

    /// The prefix of every key this runtime writes (`seawall` by default).
    /// Replicas share state only when they use the same prefix: give each
    /// service (and each test) its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often each shared breaker exchanges its tally with the fleet:
    /// the longest a replica goes on calling after the fleet opened (250 ms
    /// by default). One round trip per breaker per interval, whatever the
    /// traffic. At least 10 ms.
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long one Redis command may take (200 ms by default). A command
    /// past it counts as Redis being away.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a replica's claim on an idempotency key lasts without
    /// renewal (10 s by default). While its call runs the replica renews the
    /// claim every third of the lease, and deletes it when the call ends;
    /// a replica that dies holding one leaves it for at most a lease, after
    /// which the next call of that key proceeds. Never less than three
    /// [store timeouts](Self::store_timeout), so that a renewal that takes
    /// its whole timeout still lands within the lease.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
    }

    /// While Redis is away, lets keyed writes with `idempotent(.., store)`
    /// run on the runtime's own store (memory or embedded), with a warning,
    /// instead of failing with `Error::Store`. A conscious trade: meanwhile
    /// a write runs once per key *in each replica*, and what it records
    /// there is not seen by the fleet.
    pub fn local_idempotency_when_away(mut self) -> Self {
        self.local_idempotency_when_away = true;
        self
    }

    /// How many replicas share the fleet's rate limits: while Redis is
    /// away each runs on `count / n` of every limit, with a burst of
    /// `burst / n` (at least 1). Once Redis has answered, the replicas it
    /// saw leasing recently count too, if they are more. 1 by default —
    /// set it to the number of replicas you run, or a replica cut off from
    /// Redis at start runs on the whole limit.
    pub fn fleet_size(mut self, replicas: u32) -> Self {
        self.fleet_size = replicas.max(1);
        self
    }

    /// The most turns a replica takes from a fleet's rate limit in one
    /// round trip (8 by default, at least 1). A replica asks for as many as
    /// it used of its last lease, twice over, up to this (and never fewer
    /// than the callers waiting): a busy replica pays one round trip per
    /// batch, a quiet one leases what it uses. The cost of a batch is
    /// goodput, not the limit: a replica that stops calling leaves at most
    /// a batch less one turn unused, and others wait that much longer.
    pub fn rate_lease(mut self, turns: u32) -> Self {
        self.rate_lease = turns.max(1);
        self
    }
}

impl Redis {
    /// Shares the last-known-good cache with the fleet: every success of a
    /// read with `fallback = cache(..)` is also written to Redis (behind
    /// the call, at most once a second per key, expiring after
    /// `max_stale`), and a replica that has no answer of its own in memory
    /// (or on disk) looks there when the vendor fails. So a replica started
    /// during an outage can answer stale. Off by default: answers then
    /// leave the process, to Redis.
    pub fn share_cache(mut self) -> Self {
        self.share_cache = true;
        self
    }

    pub(crate) fn shares_cache(&self) -> bool {
        self.share_cache
    }
}

/// The runtime's link to Redis: one connection manager, shared by every
/// sync task, and whether Redis answered last time.
///
/// Everything that touches Redis runs on the fleet's own thread (a
/// current-thread tokio runtime with I/O and time): sync tasks and every
/// command, whatever runtime the caller is on. So a caller's runtime needs
/// no I/O driver, wrappers may be built outside a runtime, and a caller on a
/// paused test clock does not see a store timeout fire before Redis could
/// answer.
pub(crate) struct Fleet {
    config: Redis,
    handle: tokio::runtime::Handle,
    /// Ends the fleet's thread when the fleet is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    connection: Arc<OnceCell<ConnectionManager>>,
    /// Whether the last command failed.
    away: AtomicBool,
    last_error: Mutex<Option<String>>,
    subscribers: Arc<Subscribers>,
    /// This replica's name in the fleet's tallies.
    pub(crate) replica: String,
}

fn error(client: &redis::Client, detail: &str) -> StoreError {
    StoreError::Redis(format!(
        "{:?}: {detail}",
        client.get_connection_info().addr()
    ))
}

impl Fleet {
    /// # Errors
    ///
    /// [`StoreError::Redis`] when the fleet's thread cannot be started.
    pub(crate) fn new(
        config: Redis,
        subscribers: Arc<Subscribers>,
        replica: String,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Redis(format!("the fleet's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("seawall-fleet".to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StoreError::Redis(format!("the fleet's thread: {e}")))?;
        Ok(Self {
            config,
            handle,
            _stop: stop,
            connection: Arc::new(OnceCell::new()),
            away: AtomicBool::new(false),
            last_error: Mutex::new(None),
            subscribers,
            replica,
        })
    }

    /// Runs `task` on the fleet's thread.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(task);
    }

    pub(crate) fn sync_every(&self) -> Duration {
        self.config.sync_every
    }

    /// The lease of an idempotency claim: as set, and at least three store
    /// timeouts.
    pub(crate) fn claim_lease(&self) -> Duration {
        self.config
            .claim_lease
            .max(self.config.store_timeout.saturating_mul(3))
    }

    /// How many replicas share a rate limit while Redis is away, at least.
    pub(crate) fn fleet_size(&self) -> u32 {
        self.config.fleet_size
    }

    /// The most turns leased in one round trip.
    pub(crate) fn rate_lease(&self) -> u32 {
        self.config.rate_lease
    }

    /// Whether keyed writes run on the local store while Redis is away.
    pub(crate) fn local_idempotency_when_away(&self) -> bool {
        self.config.local_idempotency_when_away
    }

    /// A key of this runtime's fleet. `{..}` holds the part that keeps one
    /// object's keys in one Redis Cluster slot.
    pub(crate) fn key(&self, kind: &str, name: &str, part: &str) -> String {
        format!("{}:{{{kind}:{name}}}:{part}", self.config.prefix)
    }

    fn error(&self, detail: &str) -> StoreError {
        error(&self.config.client, detail)
    }

    /// Runs one command (or script) against Redis on the fleet's thread,
    /// within the store timeout, and notes whether Redis answered.
    pub(crate) async fn run<T, F, Fut>(&self, command: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let timeout = self.config.store_timeout;
        let client = self.config.client.clone();
        let connection = self.connection.clone();
        let task = self.handle.spawn(async move {
            let answer = tokio::time::timeout(timeout, async {
                let connection = connection
                    .get_or_try_init(|| async {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(timeout))
                            .set_response_timeout(Some(timeout))
                            .set_number_of_retries(2)
                            .set_max_delay(Duration::from_millis(500));
                        ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map_err(|e| error(&client, &e.to_string()))
                    })
                    .await?
                    .clone();
                command(connection)
                    .await
                    .map_err(|e| error(&client, &e.to_string()))
            })
            .await;
            answer.unwrap_or_else(|_| Err(error(&client, &format!("no answer within {timeout:?}"))))
        });
        let answer = match task.await {
            Ok(answer) => answer,
            // The fleet's thread is gone (the runtime is being dropped).
            Err(join) => Err(self.error(&format!("the fleet's task ended: {join}"))),
        };
        match &answer {
            Ok(_) => self.back(),
            Err(error) => self.lost(error),
        }
        answer
    }

    fn lost(&self, error: &StoreError) {
        let detail = error.to_string();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
        if !self.away.swap(true, AcqRel) {
            if self.config.local_idempotency_when_away {
                tracing::warn!(
                    target: "seawall::fleet",
                    error = %detail,
                    "Redis is away: breakers and keyed writes with a store run on local state, and rate limiters on this replica's share, until it answers"
                );
            } else {
                tracing::warn!(
                    target: "seawall::fleet",
                    error = %detail,
                    "Redis is away: breakers run on local state, rate limiters on this replica's share, and keyed writes with a store are refused, until it answers"
                );
            }
            self.subscribers.emit(&Event::Fleet(FleetChanged {
                available: false,
                detail,
            }));
        }
    }

    fn back(&self) {
        if self.away.swap(false, AcqRel) {
            tracing::info!(target: "seawall::fleet", "Redis answers again: fleet state resumes");
            self.subscribers.emit(&Event::Fleet(FleetChanged {
                available: true,
                detail: "Redis answered".to_owned(),
            }));
        }
    }

    /// The fleet's health, for [`Health::fleet`](crate::telemetry::Health::fleet).
    pub(crate) fn health(&self) -> crate::telemetry::FleetHealth {
        crate::telemetry::FleetHealth {
            backend: "redis",
            available: !self.away.load(Acquire),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            replica: self.replica.clone(),
        }
    }
}
