//! The queue stage: a write the vendor cannot take now is appended to the
//! write-ahead log, and a drain delivers it later with the same
//! idempotency key.
//!
//! While the contract has writes waiting, a new one is queued behind them
//! without calling the vendor, so that it never overtakes them.

use std::sync::Arc;
use std::time::Duration;

use crate::__private_v1::args::PreparedArguments;
use crate::endpoint::Endpoint;
use crate::idempotency::IdempotencyKey;
use crate::queue::ContractQueue;
use crate::telemetry::CorrelationId;
use crate::wal::{QueuedWrite, Ticket};
use crate::{ContractError, Error, ErrorClass};

/// Why a write cannot go through the queue stage at all (before anything
/// happens): redacted arguments and no sealing key for a durable log.
pub(crate) fn refusal<E: ContractError>(
    endpoint: &Endpoint,
    queue: &ContractQueue,
    arguments: &PreparedArguments,
) -> Option<E> {
    let reason = queue.refusal(&arguments.0.1)?;
    Some(E::from(Error::Unrepresentable {
        contract: endpoint.contract.clone(),
        method: endpoint.method.clone(),
        reason: reason.into(),
    }))
}

/// Whether a new write must queue behind writes already waiting: writes
/// of its ordering key (`order_by`), or of its contract without one.
pub(crate) fn behind_others(queue: &ContractQueue, arguments: &PreparedArguments) -> bool {
    queue.waiting_ahead(arguments.0.2.as_deref())
}

/// Whether a write that failed with `error` is queued rather than failed:
/// the vendor was unavailable (retryable or a vendor fault).
pub(crate) fn covers<E: ContractError>(error: &E) -> bool {
    matches!(
        error.class(),
        ErrorClass::Retryable | ErrorClass::VendorFault
    )
}

/// How long the drain leaves the vendor alone after `error`: as long as it
/// asked, or as the breaker stays open (whether it turned this call away or
/// the call's failures opened it), else a first backoff.
pub(crate) fn wait_after<E: ContractError>(endpoint: &Endpoint, error: &E) -> Duration {
    endpoint
        .unavailable_for(error)
        .unwrap_or(crate::queue::FIRST_WAIT)
}

/// The write a call of `endpoint` queues: its key, its serialized
/// arguments, the names of the redacted ones and its ordering key.
pub(crate) fn write(
    endpoint: &Endpoint,
    key: &IdempotencyKey,
    arguments: PreparedArguments,
) -> QueuedWrite {
    let (arguments, redacted, order_key) = *arguments.0;
    let mut write = QueuedWrite::new(
        &*endpoint.contract,
        &*endpoint.method,
        key.as_str(),
        arguments,
    );
    write.redacted = redacted;
    write.order_key = order_key;
    write
}

/// Appends the write to the log, once durable answering its ticket;
/// [`Error::NotQueued`] (with `why`, what made it queue) when it cannot be.
pub(crate) async fn enqueue<E: ContractError>(
    endpoint: &Endpoint,
    queue: &Arc<ContractQueue>,
    key: &IdempotencyKey,
    arguments: PreparedArguments,
    why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    wait: Duration,
    correlation: impl FnOnce() -> CorrelationId,
) -> Result<Ticket, E> {
    match queue.append(write(endpoint, key, arguments), wait).await {
        Ok(ticket) => {
            endpoint.stats.queued();
            if tracing::enabled!(target: "seawall::queue", tracing::Level::INFO) {
                tracing::info!(
                    target: "seawall::queue",
                    contract = %endpoint.contract,
                    method = %endpoint.method,
                    outcome = "queued",
                    correlation_id = %correlation(),
                    %ticket,
                    "vendor unavailable; write queued"
                );
            }
            Ok(ticket)
        }
        Err(error) => Err(E::from(Error::NotQueued {
            reason: error.to_string(),
            last: why.into(),
        })),
    }
}
