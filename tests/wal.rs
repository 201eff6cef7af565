//! The write-ahead log: durable appends in order, settled entries, status,
//! and a restart that finds everything pending again.

use seawall::Runtime;
use seawall::wal::{QueuedWrite, Ticket, TicketStatus};

fn write(contract: &str, n: u64) -> QueuedWrite {
    QueuedWrite::new(
        contract,
        "route",
        format!("key-{n}"),
        serde_json::json!({ "n": n }),
    )
}

#[tokio::test]
async fn an_in_memory_runtime_has_no_log_to_lose() {
    assert!(!Runtime::in_memory().write_ahead_log().is_durable());
}

#[tokio::test]
async fn appends_are_pending_in_order_per_contract_until_settled() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    let mut tickets = Vec::new();
    for n in 0..6 {
        let contract = if n % 2 == 0 { "telephony" } else { "crm" };
        tickets.push(log.append(&write(contract, n)).await.unwrap());
    }
    assert!(
        tickets.windows(2).all(|pair| pair[0] < pair[1]),
        "{tickets:?}"
    );
    let pending = log.pending("telephony", 10).await.unwrap();
    let ns: Vec<_> = pending
        .iter()
        .map(|(_, w)| w.arguments["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [0, 2, 4]);
    assert_eq!(log.depth().await.unwrap(), 6);

    let (first, _) = pending[0].clone();
    log.settle(
        first,
        TicketStatus::Delivered {
            answer: serde_json::json!("ok"),
            at_ms: 1,
        },
    )
    .await
    .unwrap();
    let (second, _) = pending[1].clone();
    log.settle(
        second,
        TicketStatus::Dead {
            error: "422".into(),
            at_ms: 2,
        },
    )
    .await
    .unwrap();
    let pending = log.pending("telephony", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        log.status(first).await.unwrap(),
        Some(TicketStatus::Delivered {
            answer: serde_json::json!("ok"),
            at_ms: 1
        })
    );
    assert!(matches!(
        log.status(second).await.unwrap(),
        Some(TicketStatus::Dead { .. })
    ));
    assert_eq!(
        log.status(pending[0].0).await.unwrap(),
        Some(TicketStatus::Pending)
    );
    assert_eq!(log.status(Ticket(999_999)).await.unwrap(), None);
}

#[tokio::test]
async fn a_restart_finds_the_log_as_it_was_and_continues_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        let log = runtime.write_ahead_log();
        let mut last = None;
        for n in 0..3 {
            last = Some(log.append(&write("telephony", n)).await.unwrap());
        }
        last.unwrap()
    };
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let log = runtime.write_ahead_log();
    let pending = log.pending("telephony", 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0].1, write_with_time(&pending[0].1, 0));
    let next = log.append(&write("telephony", 3)).await.unwrap();
    assert!(next > last, "tickets keep growing across restarts");
}

fn write_with_time(seen: &QueuedWrite, n: u64) -> QueuedWrite {
    // `QueuedWrite` is non-exhaustive: built with `new`, then its public
    // fields set.
    let mut write = write("telephony", n);
    write.enqueued_at_ms = seen.enqueued_at_ms;
    write
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_each_get_one_place_in_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::embedded(dir.path()).unwrap();
    let tasks: Vec<_> = (0..50u64)
        .map(|task| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let log = runtime.write_ahead_log();
                let mut tickets = Vec::new();
                for n in 0..20u64 {
                    tickets.push((
                        log.append(&write("telephony", task * 100 + n))
                            .await
                            .unwrap(),
                        n,
                    ));
                }
                tickets
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let tickets = task.await.unwrap();
        // Each task's own writes are in the order it made them.
        assert!(tickets.windows(2).all(|pair| pair[0].0 < pair[1].0));
        all.extend(tickets.into_iter().map(|(ticket, _)| ticket));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "every append got its own ticket");
    let log = runtime.write_ahead_log();
    let pending = log.pending("telephony", 2000).await.unwrap();
    assert_eq!(pending.len(), 1000);
    assert!(
        pending.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "read back in ticket order"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("seawall-data");
    let _runtime = Runtime::embedded(&data).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("seawall.redb")), 0o600);
}
