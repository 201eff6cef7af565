//! A rate limiter shared by a fleet: the fleet's GCRA lives in Redis, and
//! each replica serves its calls from a *lease* of cells it took from it.
//!
//! **Redis** keeps, per limiter, the fleet's theoretical arrival time (TAT,
//! in microseconds of Redis's clock) and until when a vendor's
//! `Retry-After` pauses it (`{prefix}:{rate:<name>}:state`, a hash `tat`,
//! `paused`), when each replica last leased (`…:replicas`) and which were
//! refused lately (`…:refused`). One script, one round trip, leases a
//! batch: cell `j` of it conforms at `start + j·T − τ` (`start` = the
//! fleet's TAT, or now if it is behind; after a pause, its end). The
//! script grants the batch if its first cell conforms within the caller's
//! `max_wait` (else nothing, and how far the next cell is), and moves the
//! fleet's TAT past it: every cell is granted once, in the order replicas
//! ask. When other replicas were refused within the last two `max_wait`s
//! the batch is split with them (`batch / (others + 1)`, at least one), so
//! a replica holding batches does not keep the fleet's next cells to
//! itself.
//!
//! **A replica** maps the lease onto its own clock (`start − now` from
//! when the answer arrives; a lease that continues the replica's last one
//! extends it as it stands) and serves calls from it as the local limiter
//! does — one atomic word, a compare-and-swap per call, waiters reserving
//! the next cell — with one more bound: a call's cell must end within the
//! lease. A call that finds the lease spent takes the next one (one caller
//! asks; the others wait for its answer); one the last answer already
//! shows to be too far is refused without asking. Cells whose time passed
//! unused are gone (the GCRA's `max(TAT, now)`, with half an interval of
//! slack), so a lease never accumulates. The batch a replica asks for
//! adapts: it doubles, up to [`rate_lease`](super::Redis::rate_lease),
//! while leases are used up, halves when cells went unused, and is never
//! smaller than the callers waiting for it: a busy replica pays one round
//! trip per batch, a quiet one leases what it uses.
//!
//! **Precision.** Cells are charged to the fleet when they are leased, and
//! each is used within its own interval (up to τ early, as GCRA allows, or
//! half an interval late): in any window of one period the vendor sees at
//! most `count + burst` calls from the whole fleet, as from one local
//! limiter, give or take the skew of the replicas' clocks when each lease
//! arrives (a Redis round trip: with it under half an interval, nothing).
//! Batching costs goodput, never the limit: a replica that stops calling
//! leaves at most its batch less one cell unused, and others' calls wait
//! at most that many intervals longer.
//!
//! **Retry-After.** A pause is written to Redis at once (the fleet's TAT
//! moves past it), so every lease taken afterwards starts after it; a
//! replica that holds a lease learns it when that lease is spent (at most
//! its batch of cells meanwhile).
//!
//! **Redis away** (unreachable, slower than `store_timeout`, its answer
//! not what the script returns): the replica runs on its *share* of the
//! limit — `count / n` per period with a burst of `burst / n` (at least 1),
//! `n` the larger of [`fleet_size`](super::Redis::fleet_size) and the
//! replicas Redis saw leasing recently — with a warning, the fleet's event
//! and health. A probe every `sync_every` (one round trip, no cell) brings
//! it back to the fleet's limit once Redis answers. A state Redis lost
//! (flushed, restarted) or that does not parse (a key of another type, a
//! field that is not a number) starts afresh, one burst at most; a TAT
//! further ahead than the fleet could have set it (a clock stepped back) is
//! set back to now, and a pause longer than a day is dropped.

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::Fleet;
use crate::rate::{Admission, FleetLimit, RateLimiter, RateStatus, Reserved};

/// What both scripts start with: Redis's clock in microseconds, a number
/// that parses (not NaN, not infinite) or nothing, and a key of the wrong
/// type deleted (state that does not parse starts afresh).
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function num(v)
  local x = tonumber(v)
  if not x or x ~= x or x == math.huge or x == -math.huge then return nil end
  return x
end
local function clean(key)
  local found = redis.call('TYPE', key)
  if type(found) == 'table' then found = found.ok end
  if found ~= 'hash' and found ~= 'none' then redis.call('DEL', key) end
end
local MAX_PAUSE = 86400000000
-- Written as integers: Lua's own conversion keeps 14 digits, and these
-- have 16.
local function int(x) return string.format('%.0f', x) end
local function state(interval, tolerance, horizon)
  clean(KEYS[1])
  local s = redis.call('HMGET', KEYS[1], 'tat', 'paused')
  local paused = num(s[2]) or 0
  if paused > now + MAX_PAUSE then paused = 0 end
  local tat = num(s[1]) or now
  local floor = math.max(now, paused)
  if tat > floor + tolerance + interval + horizon then tat = floor end
  return tat, paused
end
"#;

/// Leases `want` cells (one while another replica was refused lately).
/// KEYS: state, replicas, refused. ARGV: replica, want, interval,
/// tolerance, ahead, horizon, keep (ms), stale, contend (µs). Answers
/// `{granted, start − now, start, pause left, replicas}` (µs).
const LEASE: &str = r#"
local replica = ARGV[1]
local want, interval, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ahead, horizon, keep, stale = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local contend = tonumber(ARGV[9])
clean(KEYS[3])
local tat, paused = state(interval, tolerance, horizon)
local start = math.max(tat, now)
if paused > now then start = math.max(start, paused + tolerance) end
local granted = 0
local first = start - tolerance
if want > 0 and first <= now + ahead then
  -- Other replicas refused lately share the batch: a replica holding
  -- batches does not keep the fleet's next cells to itself.
  local others = 0
  local refused = redis.call('HGETALL', KEYS[3])
  for i = 1, #refused, 2 do
    local at = num(refused[i + 1])
    if not at or at < now - contend then
      redis.call('HDEL', KEYS[3], refused[i])
    elseif refused[i] ~= replica then
      others = others + 1
    end
  end
  granted = math.max(1, math.floor(want / (others + 1)))
  tat = start + granted * interval
  redis.call('HSET', KEYS[1], 'tat', int(tat))
elseif want > 0 then
  redis.call('HSET', KEYS[3], replica, int(now))
  redis.call('PEXPIRE', KEYS[3], math.ceil(contend / 1000))
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, paused) - now) / 1000) + keep)
end
clean(KEYS[2])
redis.call('HSET', KEYS[2], replica, int(now))
local replicas = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local seen = num(all[i + 1])
  if not seen or seen < now - stale then
    redis.call('HDEL', KEYS[2], all[i])
  else
    replicas = replicas + 1
  end
end
redis.call('PEXPIRE', KEYS[2], math.ceil(stale / 1000))
return { granted, start - now, start, math.max(paused - now, 0), replicas }
"#;

/// Pauses the fleet's limiter. KEYS: state. ARGV: pause, interval,
/// tolerance, horizon, keep (ms). Answers the pause left (µs).
const PAUSE: &str = r#"
local pause, interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local horizon, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local tat, paused = state(interval, tolerance, horizon)
paused = math.max(paused, now + math.min(pause, MAX_PAUSE))
tat = math.max(tat, paused + tolerance)
redis.call('HSET', KEYS[1], 'tat', int(tat), 'paused', int(paused))
redis.call('PEXPIRE', KEYS[1], math.ceil((tat - now) / 1000) + keep)
return paused - now
"#;

/// A lease script's answer: cells granted, where they start from now and
/// on Redis's clock (µs), the pause left (µs), the replicas leasing.
type Answer = (i64, i64, i64, i64, i64);

/// `end` while the limiter runs on its share: no lease bounds it.
const SHARE: u64 = u64::MAX;

/// How many times a caller asks for a lease before it gives up (each lease
/// taken was spent by other callers of this replica first).
const LEASE_TRIES: u32 = 4;

/// A limiter's link to the fleet's limit in Redis.
pub(crate) struct FleetRate {
    fleet: Weak<Fleet>,
    name: Arc<str>,
    /// The state, replicas and refused keys.
    keys: [String; 3],
    lease_script: Script,
    pause_script: Script,
    base: Instant,
    count: u32,
    period: Duration,
    burst: u32,
    /// The fleet's spacing and tolerance in microseconds, as the script
    /// counts (the interval rounded up: never faster than the limit).
    interval_us: u64,
    tolerance_us: u64,
    /// The same in nanoseconds, for the local side.
    interval: u64,
    tolerance: u64,
    /// How late a cell may still be used (half an interval).
    slack: u64,
    /// How far ahead of now (and of a pause) the fleet's TAT can be; past
    /// it, the script starts afresh.
    horizon_us: u64,
    keep_ms: u64,
    stale_us: u64,
    contend_us: u64,
    probe_every: Duration,
    fleet_size: u32,
    lease_max: u32,
    /// The theoretical arrival time of this replica's next cell, in
    /// nanoseconds since `base`.
    tat: AtomicU64,
    /// Where the lease ends (nanoseconds since `base`), or [`SHARE`].
    end: AtomicU64,
    /// The share's spacing and tolerance (nanoseconds) while Redis is
    /// away.
    share_interval: AtomicU64,
    share_tolerance: AtomicU64,
    /// Until when the fleet is paused, as the last lease said.
    paused_until: AtomicU64,
    /// One caller asks Redis at a time; the others wait for its lease.
    /// (An async mutex, taken only when the lease is spent.)
    refill: tokio::sync::Mutex<()>,
    waiting: AtomicU32,
    batch: AtomicU32,
    granted_last: AtomicU64,
    /// Where the fleet's cells stood after this replica's last answer, on
    /// Redis's clock (µs; 0: none): a lease that starts there continues
    /// this replica's.
    fleet_end: AtomicU64,
    taken: AtomicU64,
    taken_at_lease: AtomicU64,
    replicas: AtomicU32,
    round_trips: AtomicU64,
    leases: AtomicU64,
    leased: AtomicU64,
    fallbacks: AtomicU64,
    probing: AtomicBool,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Shares `limiter` with `fleet`: from now on it serves calls from leases
/// of the fleet's limit (or its share while Redis is away).
pub(crate) fn share(fleet: &Arc<Fleet>, limiter: &RateLimiter) {
    let policy = limiter.policy();
    let burst = policy.burst().max(1);
    let interval_us = nanos(policy.interval()).div_ceil(1000).max(1);
    let tolerance_us = interval_us.saturating_mul(u64::from(burst) - 1);
    let interval = interval_us.saturating_mul(1000);
    let period = policy.period();
    let name = limiter.name().clone();
    let rate = FleetRate {
        fleet: Arc::downgrade(fleet),
        keys: [
            fleet.key("rate", &name, "state"),
            fleet.key("rate", &name, "replicas"),
            fleet.key("rate", &name, "refused"),
        ],
        name,
        lease_script: Script::new(&format!("{PRELUDE}{LEASE}")),
        pause_script: Script::new(&format!("{PRELUDE}{PAUSE}")),
        base: Instant::now(),
        count: policy.count(),
        period,
        burst,
        interval_us,
        tolerance_us,
        interval,
        tolerance: tolerance_us.saturating_mul(1000),
        slack: interval / 2,
        horizon_us: micros(period.max(policy.max_wait()).max(Duration::from_secs(60))),
        keep_ms: u64::try_from(period.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1000),
        stale_us: micros(
            fleet
                .sync_every()
                .saturating_mul(8)
                .max(period)
                .max(Duration::from_secs(10)),
        ),
        contend_us: micros(
            policy
                .max_wait()
                .saturating_mul(2)
                .max(policy.interval().saturating_mul(2)),
        ),
        probe_every: fleet.sync_every(),
        fleet_size: fleet.fleet_size(),
        lease_max: fleet.rate_lease(),
        tat: AtomicU64::new(0),
        end: AtomicU64::new(0),
        share_interval: AtomicU64::new(interval),
        share_tolerance: AtomicU64::new(0),
        paused_until: AtomicU64::new(0),
        refill: tokio::sync::Mutex::new(()),
        waiting: AtomicU32::new(0),
        batch: AtomicU32::new(1),
        granted_last: AtomicU64::new(0),
        fleet_end: AtomicU64::new(0),
        taken: AtomicU64::new(0),
        taken_at_lease: AtomicU64::new(0),
        replicas: AtomicU32::new(0),
        round_trips: AtomicU64::new(0),
        leases: AtomicU64::new(0),
        leased: AtomicU64::new(0),
        fallbacks: AtomicU64::new(0),
        probing: AtomicBool::new(false),
    };
    rate.set_share();
    limiter.share_with_fleet(Arc::new(rate));
}

impl FleetRate {
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    /// The spacing, tolerance and slack in force: the fleet's, or the
    /// share's while Redis is away.
    fn params(&self, end: u64) -> (u64, u64, u64) {
        if end == SHARE {
            (
                self.share_interval.load(Relaxed),
                self.share_tolerance.load(Relaxed),
                0,
            )
        } else {
            (self.interval, self.tolerance, self.slack)
        }
    }

    /// The local side of [`RateLimiter::reserve`]: a cell of the lease (or
    /// of the share), [`Admission::Lease`] when the lease is spent.
    pub(crate) fn reserve(&self, max_wait: Duration) -> Admission {
        let now = self.now();
        let max_wait = nanos(max_wait);
        let mut tat = self.tat.load(Acquire);
        loop {
            // Loaded after `tat`: a new lease stores `tat` first, then `end`.
            let end = self.end.load(Acquire);
            let (interval, tolerance, slack) = self.params(end);
            let next = tat.max(now.saturating_sub(slack)).saturating_add(interval);
            if end != SHARE && next > end {
                // No cell of the lease left: the fleet's next one is no
                // earlier than where the lease ends.
                let wait = end.saturating_sub(tolerance).saturating_sub(now);
                if wait > max_wait {
                    return Admission::Refused(Duration::from_nanos(wait));
                }
                return Admission::Lease;
            }
            let wait = tat.saturating_sub(tolerance).saturating_sub(now);
            if wait > max_wait {
                return Admission::Refused(Duration::from_nanos(wait));
            }
            match self.tat.compare_exchange_weak(tat, next, AcqRel, Acquire) {
                Ok(_) => {
                    if end != SHARE {
                        self.taken.fetch_add(1, Relaxed);
                    }
                    return if wait == 0 {
                        Admission::Now
                    } else {
                        Admission::After(Duration::from_nanos(wait), Reserved::at(next))
                    };
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Hands back the cell that ends at `next`, if no call took one after
    /// it.
    pub(crate) fn release(&self, next: u64) {
        let (interval, _, _) = self.params(self.end.load(Acquire));
        let _ = self
            .tat
            .compare_exchange(next, next.saturating_sub(interval), AcqRel, Relaxed);
    }

    /// A vendor's `Retry-After`: no cell of this replica before it ends,
    /// and the pause written to Redis for the rest of the fleet.
    pub(crate) fn pause(&self, pause: Duration) {
        let until = self.now().saturating_add(nanos(pause));
        let (_, tolerance, _) = self.params(self.end.load(Acquire));
        self.tat.fetch_max(until.saturating_add(tolerance), AcqRel);
        self.paused_until.fetch_max(until, Relaxed);
        let Some(fleet) = self.fleet.upgrade() else {
            return;
        };
        let weak = Arc::downgrade(&fleet);
        let script = self.pause_script.clone();
        let key = self.keys[0].clone();
        let args = [
            micros(pause),
            self.interval_us,
            self.tolerance_us,
            self.horizon_us,
            self.keep_ms,
        ];
        let name = self.name.clone();
        fleet.spawn(async move {
            let Some(fleet) = weak.upgrade() else {
                return;
            };
            let written: Result<i64, _> = fleet
                .run(move |mut connection| async move {
                    let mut invocation = script.prepare_invoke();
                    invocation.key(&key);
                    for arg in args {
                        invocation.arg(arg);
                    }
                    invocation.invoke_async(&mut connection).await
                })
                .await;
            if let Err(error) = written {
                tracing::warn!(
                    target: "seawall::rate",
                    limiter = %name,
                    %error,
                    "the vendor's pause could not be written to Redis: other replicas learn it only from the vendor"
                );
            }
        });
    }

    /// Sets the share (spacing and burst) from the replicas known now.
    fn set_share(&self) {
        let n = self.share_of();
        let share_interval = self.interval.saturating_mul(u64::from(n));
        let share_burst = (self.burst / n).max(1);
        self.share_interval.store(share_interval, Relaxed);
        self.share_tolerance.store(
            share_interval.saturating_mul(u64::from(share_burst) - 1),
            Relaxed,
        );
    }

    /// How many replicas the limit is split over while Redis is away.
    fn share_of(&self) -> u32 {
        self.fleet_size.max(self.replicas.load(Relaxed)).max(1)
    }

    /// The share as a limit (`"25/10s"`).
    fn share_text(&self) -> String {
        let n = self.share_of();
        if self.count.is_multiple_of(n) {
            format!("{}/{:?}", self.count / n, self.period)
        } else {
            format!(
                "{:.2}/{:?}",
                f64::from(self.count) / f64::from(n),
                self.period
            )
        }
    }

    /// Asks the fleet for a lease that reaches at most `ahead` into the
    /// future, and installs it; falls back to the share when Redis does not
    /// answer.
    async fn lease(self: &Arc<Self>, ahead: Duration) {
        let Some(fleet) = self.fleet.upgrade() else {
            self.fall_back("the fleet's runtime is gone");
            return;
        };
        // The batch: doubled while leases are used up, halved when cells
        // went unused; never less than the callers waiting for it.
        let granted_last = self.granted_last.load(Relaxed);
        let used = self
            .taken
            .load(Relaxed)
            .saturating_sub(self.taken_at_lease.load(Relaxed));
        let mut batch = self.batch.load(Relaxed);
        if granted_last > 0 {
            batch = if used >= granted_last {
                batch.saturating_mul(2).min(self.lease_max)
            } else {
                (batch / 2).max(1)
            };
        }
        self.batch.store(batch, Relaxed);
        let waiting = self.waiting.load(Relaxed).saturating_add(1);
        let want = batch.max(waiting.min(self.lease_max));
        match self.call(&fleet, want, micros(ahead)).await {
            Ok(answer) => self.install(answer),
            Err(error) => self.fall_back(&error.to_string()),
        }
    }

    /// One lease script.
    async fn call(
        &self,
        fleet: &Fleet,
        want: u32,
        ahead_us: u64,
    ) -> Result<Answer, crate::StoreError> {
        let script = self.lease_script.clone();
        let keys = self.keys.clone();
        let replica = fleet.replica.clone();
        let args = [
            u64::from(want),
            self.interval_us,
            self.tolerance_us,
            ahead_us,
            self.horizon_us,
            self.keep_ms,
            self.stale_us,
            self.contend_us,
        ];
        fleet
            .run(move |mut connection| async move {
                let mut invocation = script.prepare_invoke();
                for key in &keys {
                    invocation.key(key);
                }
                invocation.arg(&replica);
                for arg in args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await
    }

    /// Puts a lease in place: `granted` cells from `start` (none: where
    /// the fleet's next cell is).
    ///
    /// A lease that starts where this replica's last answer left it (no
    /// other replica leased in between) extends its lease as it stands
    /// locally. Any other is placed `start − now` from now on this
    /// replica's clock, as the answer arrives (late by at most the
    /// answer's trip); one that would start a little before this replica's
    /// own next cell (the trips of two answers differ) starts there
    /// instead, so that the cells the fleet granted are not lost.
    fn install(&self, (granted, offset, start, paused_left, replicas): Answer) {
        let positive = |v: i64| u64::try_from(v).unwrap_or(0);
        let (granted, offset, start) = (positive(granted), positive(offset), positive(start));
        let now = self.now();
        let length = granted.saturating_mul(self.interval);
        let previous = self.fleet_end.swap(
            start.saturating_add(granted.saturating_mul(self.interval_us)),
            Relaxed,
        );
        let end = self.end.load(Acquire);
        let end = if start == previous && end != SHARE {
            end.saturating_add(length)
        } else {
            let local = now.saturating_add(offset.saturating_mul(1000));
            // `tat` first, then `end` (see `reserve`).
            let tat = self.tat.fetch_max(local, AcqRel).max(local);
            let from = if tat - local <= self.slack {
                tat
            } else {
                local
            };
            from.saturating_add(length).max(tat)
        };
        self.taken_at_lease.store(self.taken.load(Relaxed), Relaxed);
        self.granted_last.store(granted, Relaxed);
        self.end.store(end, Release);
        self.round_trips.fetch_add(1, Relaxed);
        if granted > 0 {
            self.leases.fetch_add(1, Relaxed);
            self.leased.fetch_add(granted, Relaxed);
        }
        self.replicas.store(
            u32::try_from(positive(replicas)).unwrap_or(u32::MAX),
            Relaxed,
        );
        let paused_left = positive(paused_left);
        if paused_left > 0 {
            self.paused_until.fetch_max(
                now.saturating_add(paused_left.saturating_mul(1000)),
                Relaxed,
            );
        }
    }

    /// Redis did not answer: this replica goes on with its share of the
    /// limit, says so, and probes Redis until it answers.
    fn fall_back(self: &Arc<Self>, detail: &str) {
        self.set_share();
        if self.end.swap(SHARE, AcqRel) != SHARE {
            self.fallbacks.fetch_add(1, Relaxed);
            tracing::warn!(
                target: "seawall::rate",
                limiter = %self.name,
                share = %self.share_text(),
                error = %detail,
                "Redis is away: the rate limiter runs on this replica's share of the limit until it answers"
            );
        }
        if !self.probing.swap(true, AcqRel)
            && let Some(fleet) = self.fleet.upgrade()
        {
            fleet.spawn(probe(Arc::downgrade(self), self.probe_every));
        }
    }

    /// Back on the fleet's limit: an empty lease where this replica's
    /// cells stand, so the next call leases.
    fn rejoin(&self) {
        let tat = self.tat.load(Acquire);
        if self
            .end
            .compare_exchange(SHARE, tat, AcqRel, Relaxed)
            .is_ok()
        {
            self.granted_last.store(0, Relaxed);
            self.batch.store(1, Relaxed);
            tracing::info!(
                target: "seawall::rate",
                limiter = %self.name,
                "Redis answers again: the rate limiter is back on the fleet's limit"
            );
        }
    }

    /// How long until the next lease's first turn, at the earliest.
    fn next_lease_in(&self) -> Duration {
        let end = self.end.load(Acquire);
        let (interval, tolerance, _) = self.params(end);
        let from = if end == SHARE {
            self.tat.load(Acquire)
        } else {
            end
        };
        Duration::from_nanos(
            from.saturating_sub(tolerance)
                .saturating_sub(self.now())
                .max(interval),
        )
    }

    /// Adds the fleet's side to a limiter's status.
    pub(crate) fn amend(&self, status: &mut RateStatus) {
        let now = self.now();
        let tat = self.tat.load(Acquire);
        let end = self.end.load(Acquire);
        let shared = end != SHARE;
        let (interval, tolerance, slack) = self.params(end);
        let from = tat.max(now.saturating_sub(slack));
        let lease_left = if shared {
            end.saturating_sub(from) / interval.max(1)
        } else {
            0
        };
        let conforms = tat.saturating_sub(tolerance) <= now;
        let free = if !conforms {
            0
        } else if shared {
            lease_left
        } else {
            now.saturating_add(tolerance)
                .saturating_sub(tat.max(now))
                .saturating_add(interval)
                / interval.max(1)
        };
        status.available = free.min(u64::from(self.burst));
        let next = if shared && from.saturating_add(interval) > end {
            end
        } else {
            tat
        };
        status.next_in_ms =
            Duration::from_nanos(next.saturating_sub(tolerance).saturating_sub(now)).as_secs_f64()
                * 1000.0;
        let paused_until = self.paused_until.load(Relaxed);
        if paused_until > now {
            let left = Duration::from_nanos(paused_until - now).as_secs_f64() * 1000.0;
            status.paused_for_ms = Some(status.paused_for_ms.map_or(left, |own| own.max(left)));
        }
        status.fleet = Some(FleetLimit {
            shared,
            share: self.share_text(),
            replicas: self.replicas.load(Relaxed),
            lease_left,
            round_trips: self.round_trips.load(Relaxed),
            leases: self.leases.load(Relaxed),
            leased: self.leased.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
        });
    }
}

/// A call found the lease spent: one caller at a time asks the fleet for
/// the next; the others wait for that answer, then take a cell of it (or
/// of the share, if Redis did not answer).
pub(crate) async fn turn(
    limiter: &RateLimiter,
    fleet: &Arc<FleetRate>,
    max_wait: Duration,
) -> Result<(), Duration> {
    let asked = Instant::now();
    fleet.waiting.fetch_add(1, Relaxed);
    let guard = fleet.refill.lock().await;
    fleet.waiting.fetch_sub(1, Relaxed);
    for _ in 0..LEASE_TRIES {
        let left = max_wait.saturating_sub(asked.elapsed());
        match limiter.reserve(crate::telemetry::clock().raw(), left, None) {
            Admission::Now => return Ok(()),
            Admission::After(wait, reserved) => {
                drop(guard);
                crate::rate::wait_turn(limiter, wait, reserved).await;
                return Ok(());
            }
            Admission::Refused(wait) => return Err(wait),
            Admission::Lease => fleet.lease(left).await,
        }
    }
    // Every lease this caller took was spent by others first: the next
    // turn is no earlier than where the last one ends.
    Err(fleet.next_lease_in())
}

/// While the limiter runs on its share: asks Redis every `every` (a lease
/// of no cell) until it answers, then brings the limiter back.
async fn probe(rate: Weak<FleetRate>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(rate) = rate.upgrade() else {
            return;
        };
        let Some(fleet) = rate.fleet.upgrade() else {
            rate.probing.store(false, Release);
            return;
        };
        if rate.end.load(Acquire) != SHARE {
            rate.probing.store(false, Release);
            return;
        }
        if let Ok((_, _, _, _, replicas)) = rate.call(&fleet, 0, 0).await {
            rate.replicas
                .store(u32::try_from(replicas.max(0)).unwrap_or(u32::MAX), Relaxed);
            // Cleared before the limiter rejoins, so a fall-back after it
            // starts a probe of its own.
            rate.probing.store(false, Release);
            rate.rejoin();
            return;
        }
    }
}
