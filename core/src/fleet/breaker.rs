//! A breaker shared by a fleet: one sync task per breaker, one script per
//! sync.
//!
//! Redis holds, per breaker, three hashes under one cluster slot:
//!
//! - `state`: the fleet's state (`kind` closed 0 / open 1 / half-open 2,
//!   `epoch`, `until` for open, `since` for half-open, `reopens`, `granted`);
//! - `tally`: each replica's latest window, `calls failures slow run at`,
//!   counted only if it was measured under the current epoch and refreshed
//!   within the stale period (a replica that died drops out);
//! - `probes`: while half-open, each replica's granted probes (`g:<replica>`)
//!   and their results (`<replica>`: `admitted done failures slow`).
//!
//! The script applies the local breaker's rules to the fleet:
//!
//! - **closed → open** when the summed tallies reach a rate threshold over at
//!   least `min_calls`, or when a strict majority of the replicas that have
//!   calls in their window have a run of `consecutive_failures`. One replica
//!   whose own path is broken is a minority and a small share of the calls:
//!   it opens for itself only.
//! - **open → half-open** once `until` has passed (Redis's clock, so replicas'
//!   clocks do not matter).
//! - **half-open**: a replica that refused calls asks for probes; the script
//!   grants at most `probes` for the whole fleet. When every granted probe
//!   has reported, or `half_open_max` after the first grant with some still
//!   out (they count as failed), it judges them: open again (the next open
//!   duration) or closed with every tally dropped.
//!
//! The epoch starts at Redis's clock in milliseconds and grows by one per
//! transition, so a state that was flushed never reuses an old epoch. `born`
//! (the epoch the state started at) tells replicas that the fleet's memory
//! was lost (Redis emptied or restarted without persistence): they then keep
//! their own state instead of taking a fresh "closed" for a recovery.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Script;

use super::Fleet;
use crate::Breaker;
use crate::breaker::{FleetState, Report, Seen};

const SYNC: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local replica = ARGV[1]
local known = tonumber(ARGV[2])
local calls, failures, slow, run = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local want = tonumber(ARGV[7])
local p_admitted, p_done, p_failures, p_slow = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local failure_ppm, slow_ppm = tonumber(ARGV[12]), tonumber(ARGV[13])
local min_calls, run_limit = tonumber(ARGV[14]), tonumber(ARGV[15])
local open_for, open_max = tonumber(ARGV[16]), tonumber(ARGV[17])
local probes, half_open_max = tonumber(ARGV[18]), tonumber(ARGV[19])
local stale, ttl = tonumber(ARGV[20]), tonumber(ARGV[21])

local s = redis.call('HMGET', KEYS[1], 'kind', 'epoch', 'until', 'since', 'reopens', 'granted', 'born')
local kind = tonumber(s[1]) or 0
local epoch = tonumber(s[2])
local until_ms = tonumber(s[3]) or 0
local since = tonumber(s[4]) or 0
local reopens = tonumber(s[5]) or 0
local granted = tonumber(s[6]) or 0
local born = tonumber(s[7])
if not epoch or not born then
  epoch = now
  born = now
  kind = 0
end

local function trips(c, f, sl, least)
  if c == 0 or c < least then return false end
  if f > 0 and f * 1000000 >= failure_ppm * c then return true end
  if slow_ppm > 0 and sl > 0 and sl * 1000000 >= slow_ppm * c then return true end
  return false
end

local function enter(k)
  epoch = epoch + 1
  kind = k
  granted = 0
  since = 0
  redis.call('DEL', KEYS[3])
  if k ~= 1 then until_ms = 0 end
end

local function open(n)
  local d = open_for
  if open_max > open_for then d = math.min(open_for * (2 ^ math.min(n, 40)), open_max) end
  reopens = n
  enter(1)
  until_ms = now + d
end

local function close()
  reopens = 0
  enter(0)
  redis.call('DEL', KEYS[2])
end

if kind == 0 then
  if known == epoch then
    redis.call('HSET', KEYS[2], replica, calls .. ' ' .. failures .. ' ' .. slow .. ' ' .. run .. ' ' .. now)
  end
  local c, f, sl, reporting, in_run = 0, 0, 0, 0, 0
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    local v = {}
    for x in string.gmatch(all[i + 1], '%S+') do v[#v + 1] = tonumber(x) end
    if #v < 5 or v[5] < now - stale then
      redis.call('HDEL', KEYS[2], all[i])
    else
      c, f, sl = c + v[1], f + v[2], sl + v[3]
      if v[1] > 0 then
        reporting = reporting + 1
        if run_limit > 0 and v[4] >= run_limit then in_run = in_run + 1 end
      end
    end
  end
  if trips(c, f, sl, min_calls) or (reporting > 0 and in_run * 2 > reporting) then
    open(0)
  end
elseif kind == 1 and now >= until_ms then
  enter(2)
end

local mine = 0
if kind == 2 then
  if known == epoch then
    redis.call('HSET', KEYS[3], replica, p_admitted .. ' ' .. p_done .. ' ' .. p_failures .. ' ' .. p_slow)
  end
  mine = tonumber(redis.call('HGET', KEYS[3], 'g:' .. replica)) or 0
  if want > 0 and granted < probes then
    local give = math.min(want, probes - granted)
    granted = granted + give
    mine = mine + give
    redis.call('HSET', KEYS[3], 'g:' .. replica, mine)
    if since == 0 then since = now end
  end
  local done, f, sl = 0, 0, 0
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) ~= 'g:' then
      local v = {}
      for x in string.gmatch(all[i + 1], '%S+') do v[#v + 1] = tonumber(x) end
      done, f, sl = done + v[2], f + v[3], sl + v[4]
    end
  end
  local judged = nil
  if granted >= probes and done >= probes then
    judged = { done, f, sl }
  elseif since > 0 and now >= since + half_open_max then
    local out = math.max(granted - done, 0)
    judged = { math.max(granted, done), f + out, sl }
  end
  if judged then
    if trips(judged[1], judged[2], judged[3], 1) then open(reopens + 1) else close() end
    mine = 0
  end
end

redis.call('HSET', KEYS[1], 'kind', kind, 'epoch', epoch, 'until', until_ms, 'since', since, 'reopens', reopens, 'granted', granted, 'born', born)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
local left = 0
if kind == 1 then left = math.max(until_ms - now, 0) end
return { kind, epoch, left, mine, born }
"#;

/// How long the fleet keeps a breaker's keys after the last sync of any
/// replica: a breaker no replica serves any more disappears.
const KEYS_TTL: Duration = Duration::from_secs(24 * 3600);

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Starts the sync task of a breaker shared by `fleet`, on the fleet's
/// thread.
pub(crate) fn share(fleet: &Arc<Fleet>, breaker: &Arc<Breaker>) {
    let every = fleet.sync_every();
    if breaker.link_to_fleet(every).is_none() {
        return;
    }
    let task = sync_loop(Arc::downgrade(fleet), Arc::downgrade(breaker), every);
    fleet.spawn(task);
}

async fn sync_loop(fleet: Weak<Fleet>, breaker: Weak<Breaker>, every: Duration) {
    let script = Script::new(SYNC);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        {
            let Some(breaker) = breaker.upgrade() else {
                return;
            };
            let Some(link) = breaker.fleet_link() else {
                return;
            };
            // A tick, or earlier when the breaker opened on its own or a
            // probe ended (the notify keeps one permit, so none is lost).
            tokio::select! {
                _ = tick.tick() => {}
                () = link.nudge.notified() => {}
            }
        }
        let (Some(fleet), Some(breaker)) = (fleet.upgrade(), breaker.upgrade()) else {
            return;
        };
        match sync_once(&fleet, &breaker, &script).await {
            Ok(seen) => breaker.adopt(seen),
            Err(_) => breaker.let_go_of_fleet(),
        }
    }
}

/// One exchange: this replica's report in, the fleet's state out.
pub(crate) async fn sync_once(
    fleet: &Fleet,
    breaker: &Breaker,
    script: &Script,
) -> Result<Seen, crate::StoreError> {
    let report: Report = breaker.fleet_report();
    let policy = breaker.policy();
    let name = breaker.name();
    let keys = [
        fleet.key("breaker", name, "state"),
        fleet.key("breaker", name, "tally"),
        fleet.key("breaker", name, "probes"),
    ];
    let ppm = |rate: f64| (rate * 1_000_000.0).round() as u64;
    let slow_ppm = if policy.slow().is_some() {
        ppm(policy.slow_rate()).max(1)
    } else {
        0
    };
    let open_for = ms(policy.open_duration(0)).max(1);
    let open_max = ms(policy.open_duration(u32::MAX)).max(open_for);
    let stale = ms(fleet.sync_every()).saturating_mul(8).max(2_000);
    let args = [
        report.epoch,
        report.calls,
        report.failures,
        report.slow,
        report.run,
        report.want,
        report.probes_admitted,
        report.probes_done,
        report.probe_failures,
        report.probe_slow,
        ppm(policy.failure_rate()),
        slow_ppm,
        u64::from(policy.min_calls()),
        policy.consecutive_failures().map_or(0, u64::from),
        open_for,
        open_max,
        u64::from(policy.probes()),
        ms(policy.half_open_max()),
        stale,
        ms(KEYS_TTL),
    ];
    let replica = fleet.replica.clone();
    let script = script.clone();
    let (kind, epoch, left, granted, born): (u64, u64, u64, u64, u64) = fleet
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
        .await?;
    let state = match kind {
        1 => FleetState::Open {
            remaining: Duration::from_millis(left),
        },
        2 => FleetState::HalfOpen { granted },
        _ => FleetState::Closed,
    };
    Ok(Seen { state, epoch, born })
}
