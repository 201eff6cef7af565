//! A retry budget shared by a fleet: the fleet's tokens live in Redis, and
//! each replica holds a share of them between syncs.
//!
//! At each sync a replica gives back every token it holds (the ones it was
//! given, less what its retries spent, plus what its successes earned) and
//! takes a new share: the fleet's balance, capped at the policy's `max`,
//! divided by the replicas that synced within the stale period. So the
//! fleet's retries are bounded by one budget, not one per replica, and no
//! call waits for Redis: withdrawing and depositing stay local atomics.
//!
//! A new replica holds the policy's `max` until its first sync, so it can
//! retry without Redis; that first share replaces those tokens.
//!
//! What it costs in precision: between two syncs a replica spends at most
//! its share, and tokens earned on one replica reach the others at the
//! next sync. The floor (`min_per_second`) stays per replica. A replica that
//! dies takes its share with it; successes refill it. While Redis is away
//! each replica runs on the tokens it holds and the floor.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::Script;

use super::Fleet;
use crate::RetryBudget;

const SYNC: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local replica = ARGV[1]
local returned, full, stale, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
if not balance then balance = full end
balance = math.min(full, balance + returned)
redis.call('HSET', KEYS[2], replica, now)
local replicas = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now - stale then
    redis.call('HDEL', KEYS[2], all[i])
  else
    replicas = replicas + 1
  end
end
local share = math.floor(balance / math.max(replicas, 1))
balance = balance - share
redis.call('HSET', KEYS[1], 'balance', balance)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return share
"#;

/// Starts the sync task of a budget shared by `fleet`.
pub(crate) fn share(fleet: &Arc<Fleet>, budget: &Arc<RetryBudget>) {
    let task = sync_loop(
        Arc::downgrade(fleet),
        Arc::downgrade(budget),
        fleet.sync_every(),
    );
    fleet.spawn(task);
}

async fn sync_loop(fleet: Weak<Fleet>, budget: Weak<RetryBudget>, every: Duration) {
    let script = Script::new(SYNC);
    // A new budget starts full on its own, for a start without Redis; its
    // first share from the fleet replaces those tokens rather than adding
    // them to the fleet's.
    let mut first = true;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(fleet), Some(budget)) = (fleet.upgrade(), budget.upgrade()) else {
            return;
        };
        let held = budget.held();
        let keys = [
            fleet.key("budget", budget.name(), "balance"),
            fleet.key("budget", budget.name(), "replicas"),
        ];
        let args = [
            if first { 0 } else { held },
            budget.full(),
            u64::try_from(every.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(8)
                .max(2_000),
            24 * 3600 * 1000,
        ];
        let replica = fleet.replica.clone();
        let script = script.clone();
        let answer: Result<u64, _> = fleet
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
            .await;
        // Away: keep what is held (the tokens stay with this replica).
        if let Ok(share) = answer {
            budget.exchange(held, share);
            first = false;
        }
    }
}
