//! The idempotency store shared by a fleet: claims and records of keyed
//! writes (`idempotent(.., store)`) in Redis, so that a write runs once per
//! key across every replica, not once per process.
//!
//! Each key has two Redis keys in one cluster slot:
//!
//! - `record`: the completed outcome, the same JSON record the local store
//!   keeps, expiring after the policy's `retention` (`PX`);
//! - `claim`: `<token> <fingerprint>` while a replica calls the vendor,
//!   expiring after the [claim lease](super::Redis::claim_lease). The
//!   holder renews the lease every third of it while the call runs, and
//!   deletes the claim when the call ends (recorded or not), is cancelled or
//!   dropped. A replica that dies holding a claim stops renewing it: the
//!   claim expires and the next call proceeds.
//!
//! Why a lease and not a lock held until released: a process killed
//! between its claim and its release never releases anything. A lease lets
//! the fleet forget it after at most one lease, at the price of a second
//! vendor call if a living holder cannot renew for a whole lease (Redis
//! away that long).
//!
//! Every step is one atomic script (look up the record, or the claim, or
//! take it; record and release; renew or release only while the token is
//! ours), so no interleaving of replicas lets two of them claim one key.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::Fleet;
use crate::idempotency::shared::{Claim as SharedClaim, Seen};
use crate::store::StoreError;

/// Looks up the record, else the claim, else takes the claim. Answers the
/// record prefixed with `r`, the claim prefixed with `h`, or `c` when
/// claimed.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local record = redis.call('GET', KEYS[1])
if record then return 'r' .. record end
local claim = redis.call('GET', KEYS[2])
if claim then return 'h' .. claim end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 'c'
"#,
    )
});

/// Writes the record, then deletes the claim if it is still ours.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"#,
    )
});

/// Extends the claim's lease if it is still ours: 1 if so, 0 if not.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Deletes the claim if it is still ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One atomic look at `key`: its record, or who holds its claim, or the
/// claim taken for this call (with its lease renewed from then on).
pub(crate) async fn begin(
    fleet: &Arc<Fleet>,
    key: &str,
    fingerprint: &str,
) -> Result<Seen, StoreError> {
    let record_key = fleet.key("idem", key, "record");
    let claim_key = fleet.key("idem", key, "claim");
    // Who holds it (for a person reading Redis) and a random part, so that
    // only this call renews or releases this claim.
    let value = format!(
        "{}:{:016x} {fingerprint}",
        fleet.replica,
        rand::random::<u64>()
    );
    let lease = fleet.claim_lease();
    let mut invocation = BEGIN.prepare_invoke();
    invocation
        .key(&record_key)
        .key(&claim_key)
        .arg(&value)
        .arg(ms(lease));
    let answer: Vec<u8> = fleet
        .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
        .await?;
    match answer.split_first() {
        Some((b'r', record)) => Ok(Seen::Recorded(record.to_vec())),
        Some((b'h', claim)) => {
            let claim = String::from_utf8_lossy(claim);
            match claim.split_once(' ') {
                Some((_, fingerprint)) => Ok(Seen::Held {
                    fingerprint: fingerprint.to_owned(),
                }),
                None => Err(StoreError::Record(format!(
                    "the claim on {key} is not `<token> <fingerprint>`: {claim:?}"
                ))),
            }
        }
        Some((b'c', _)) => Ok(Seen::Claimed(SharedClaim::Redis(Claim::hold(
            fleet.clone(),
            record_key,
            claim_key,
            value,
            lease,
        )))),
        _ => Err(StoreError::Record(format!(
            "an unexpected answer from the claim script: {:?}",
            String::from_utf8_lossy(&answer)
        ))),
    }
}

/// A claim this call holds in Redis: renewed while it lives, deleted when
/// it is recorded or dropped.
pub(crate) struct Claim {
    fleet: Arc<Fleet>,
    record_key: String,
    claim_key: String,
    /// `<token> <fingerprint>`, as written.
    value: String,
    renewal: Option<tokio::task::JoinHandle<()>>,
    /// Whether it may still be in Redis (not deleted by the record).
    held: bool,
}

impl Claim {
    fn hold(
        fleet: Arc<Fleet>,
        record_key: String,
        claim_key: String,
        value: String,
        lease: Duration,
    ) -> Self {
        let renewal = tokio::spawn(renew(
            fleet.clone(),
            claim_key.clone(),
            value.clone(),
            lease,
        ));
        Self {
            fleet,
            record_key,
            claim_key,
            value,
            renewal: Some(renewal),
            held: true,
        }
    }

    /// Records the completed write (`record`, kept for `retention`) and
    /// lets go of the claim, in one step: no replica can see the key
    /// neither claimed nor recorded.
    pub(crate) async fn record(
        &mut self,
        record: Vec<u8>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let mut invocation = RECORD.prepare_invoke();
        invocation
            .key(&self.record_key)
            .key(&self.claim_key)
            .arg(&self.value)
            .arg(record)
            .arg(ms(retention));
        let _: i64 = self
            .fleet
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        self.held = false;
        Ok(())
    }
}

impl Claim {
    /// Lets go of the claim now (a call that ended without a record), so
    /// that the next call of the key need not wait for its lease. If Redis
    /// does not answer, the drop tries again in the background.
    pub(crate) async fn release(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if self.held && release(&self.fleet, &self.claim_key, &self.value).await {
            self.held = false;
        }
    }
}

/// Deletes the claim `claim_key` if it still holds `value`; whether Redis
/// answered.
async fn release(fleet: &Fleet, claim_key: &str, value: &str) -> bool {
    let mut invocation = RELEASE.prepare_invoke();
    invocation.key(claim_key).arg(value);
    let released: Result<i64, _> = fleet
        .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
        .await;
    if let Err(error) = &released {
        tracing::debug!(
            target: "seawall::idempotency",
            %error,
            "could not release a claim; it expires with its lease"
        );
    }
    released.is_ok()
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if !self.held {
            return;
        }
        // Drop cannot wait for Redis: the release runs on its own. Without
        // a tokio runtime (dropped at shutdown) the lease runs out instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let fleet = self.fleet.clone();
        let claim_key = std::mem::take(&mut self.claim_key);
        let value = std::mem::take(&mut self.value);
        runtime.spawn(async move {
            release(&fleet, &claim_key, &value).await;
        });
    }
}

/// Extends the claim's lease every third of it, until the claim is dropped
/// (which aborts this task) or is found to be no longer ours.
async fn renew(fleet: Arc<Fleet>, claim_key: String, value: String, lease: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut invocation = RENEW.prepare_invoke();
        invocation.key(&claim_key).arg(&value).arg(ms(lease));
        let renewed: Result<i64, _> = fleet
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(
                    target: "seawall::idempotency",
                    key = %claim_key,
                    "a claim ran out before it could be renewed: another replica may call the vendor with this key too"
                );
                return;
            }
            // Redis is away (the fleet said so); try again at the next tick,
            // while the lease may still hold.
            Err(_) => {}
        }
    }
}
