//! Where a shared idempotency store lives, one seam over its homes: Redis
//! ([`crate::fleet`]'s idempotency module) or PostgreSQL
//! ([`crate::postgres`]'s). Both answer the same three things for a key (its
//! record, who holds its claim, or the claim taken) and hold a claim the
//! same way (renewed while it lives, replaced by the record, released when
//! it drops), so the store's logic (`store.rs`) is written once.

use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;

/// The shared home of a runtime's idempotency store.
#[derive(Clone)]
pub(crate) enum Shared {
    /// The fleet's Redis.
    #[cfg(feature = "redis")]
    Redis(Arc<crate::fleet::Fleet>),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(Arc<crate::postgres::Database>),
}

/// What the shared store knows of a key, as one look found it.
pub(crate) enum Seen {
    /// A completed write's record (the JSON bytes).
    Recorded(Vec<u8>),
    /// Another call holds the claim, for this payload's fingerprint.
    Held { fingerprint: String },
    /// The claim is this call's now.
    Claimed(Claim),
}

impl Shared {
    /// One atomic look at `key`: its record, who holds it, or the claim
    /// taken for a call with `fingerprint`.
    pub(crate) async fn begin(&self, key: &str, fingerprint: &str) -> Result<Seen, StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(fleet) => crate::fleet::idempotency::begin(fleet, key, fingerprint).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(db) => crate::postgres::idempotency::begin(db, key, fingerprint).await,
        }
    }

    /// Whether keyed writes run on the local store while it is away.
    pub(crate) fn local_when_away(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(fleet) => fleet.local_idempotency_when_away(),
            #[cfg(feature = "postgres")]
            Self::Postgres(db) => db.local_idempotency_when_away(),
        }
    }

    /// Its kind, as `Runtime`'s `Debug` shows it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    /// Its name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => "Redis",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A claim a call holds in the shared store.
pub(crate) enum Claim {
    #[cfg(feature = "redis")]
    Redis(crate::fleet::idempotency::Claim),
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::idempotency::Claim),
}

impl Claim {
    /// Records the completed write (kept for `retention`) in place of the
    /// claim, in one step.
    pub(crate) async fn record(
        &mut self,
        record: Vec<u8>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(claim) => claim.record(record, retention).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(claim) => claim.record(record, retention).await,
        }
    }

    /// Lets go of the claim now (a call that ended without a record).
    pub(crate) async fn release(&mut self) {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(claim) => claim.release().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(claim) => claim.release().await,
        }
    }
}
