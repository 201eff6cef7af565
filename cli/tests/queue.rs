//! `seawall queue ls|show|retry|purge|export` and `seawall dead-letters`
//! on a real store: written by a real runtime whose loopback vendor was
//! down, with some writes drained into dead letters.

mod support;

use std::time::Duration;

use seawall::Runtime;
use seawall::wal::TicketStatus;
use support::{
    Billing, CARD, FIXED, Vendor, billing, failed, ok, queued_store, seawall, service, stdout,
};

fn store_arg(dir: &std::path::Path) -> [String; 2] {
    ["--store".into(), dir.display().to_string()]
}

#[test]
fn ls_lists_each_contract_and_its_pending_writes_with_lane_attempts_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let out = ok(&seawall(
        ["queue", "ls"]
            .iter()
            .map(|s| s.to_string())
            .chain(store_arg(dir.path())),
    ));
    // The summary: 3 charges of acme and a note pending, in two lanes
    // (acme's and the contract's writes without an ordering key), 2 dead.
    let summary = out
        .lines()
        .find(|line| line.starts_with("billing "))
        .unwrap_or_else(|| panic!("no summary row:\n{out}"));
    let cells: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(&cells[..4], ["billing", "4", "2", "2"], "{out}");
    // Every pending write, with its ticket, method, ordering key, attempts.
    for ticket in written.pending.iter().chain([&written.note]) {
        let row = out
            .lines()
            .find(|line| line.starts_with(&format!("{ticket} ")))
            .unwrap_or_else(|| panic!("no row for {ticket}:\n{out}"));
        if *ticket == written.note {
            assert!(row.contains("note"), "{row}");
        } else {
            assert!(
                row.contains("charge") && row.contains("account=\"acme\""),
                "{row}"
            );
        }
    }
    // acme's first write was tried once more by the drain, and counted.
    let first = out
        .lines()
        .find(|line| line.starts_with(&format!("{} ", written.pending[0])))
        .unwrap();
    let attempts: u32 = first.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(attempts >= 1, "{first}");
    // Dead letters are not pending.
    for ticket in &written.dead {
        assert!(
            !out.lines().any(|l| l.starts_with(&format!("{ticket} "))),
            "{out}"
        );
    }
    assert!(!out.contains(CARD), "a redacted argument was shown:\n{out}");

    // One contract only; another has nothing.
    let other = ok(&seawall(
        ["queue", "ls", "--contract", "crm"]
            .iter()
            .map(|s| s.to_string())
            .chain(store_arg(dir.path())),
    ));
    assert!(other.contains("no queued writes of `crm`"), "{other}");
}

#[test]
fn show_prints_a_pending_write_a_dead_letter_and_a_redacted_note_whole() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let show = |ticket: String| {
        seawall(
            ["queue".into(), "show".into(), ticket]
                .into_iter()
                .chain(store_arg(dir.path())),
        )
    };

    let out = ok(&show(written.pending[1].0.to_string()));
    assert!(out.contains("pending"), "{out}");
    assert!(out.contains("account=\"acme\""), "{out}");
    assert!(out.contains("\"number\": 2"), "{out}");
    let key_line = out.lines().find(|l| l.starts_with("key ")).unwrap();
    assert_eq!(key_line.split_whitespace().nth(1).unwrap().len(), 64);

    // `#N` works as well as `N`.
    let out = ok(&show(written.dead[0].to_string()));
    assert!(out.contains("dead letter"), "{out}");
    assert!(out.contains("422 Unprocessable Entity"), "{out}");

    let out = ok(&show(written.note.0.to_string()));
    assert!(out.contains("\"card\": \"<redacted>\""), "{out}");
    assert!(!out.contains(CARD), "{out}");

    let err = failed(&show("999999".into()), 1);
    assert!(err.contains("no entry under #999999"), "{err}");
    let err = failed(&show("nine".into()), 2);
    assert!(err.contains("not a ticket"), "{err}");
}

#[test]
fn dead_letters_lists_the_writes_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let out = ok(&seawall(
        ["dead-letters".to_string()]
            .into_iter()
            .chain(store_arg(dir.path())),
    ));
    for ticket in &written.dead {
        let row = out
            .lines()
            .find(|line| line.starts_with(&format!("{ticket} ")))
            .unwrap_or_else(|| panic!("no row for {ticket}:\n{out}"));
        assert!(
            row.contains("billing") && row.contains("charge") && row.contains("422"),
            "{row}"
        );
    }
    for ticket in &written.pending {
        assert!(
            !out.lines().any(|l| l.starts_with(&format!("{ticket} "))),
            "{out}"
        );
    }
}

#[test]
fn retry_queues_a_dead_letter_again_and_the_service_delivers_it_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let retried = written.dead[0];
    let out = ok(&seawall(
        ["queue".into(), "retry".into(), retried.0.to_string()]
            .into_iter()
            .chain(store_arg(dir.path())),
    ));
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{retried} queued again as #")))
        .unwrap_or_else(|| panic!("{out}"));
    let new: u64 = line.rsplit('#').next().unwrap().parse().unwrap();
    assert!(
        new > written.note.0,
        "behind every write queued before: {line}"
    );

    // It is pending now, and no longer a dead letter.
    let letters = ok(&seawall(
        ["dead-letters".to_string()]
            .into_iter()
            .chain(store_arg(dir.path())),
    ));
    assert!(!letters.contains(&format!("{retried} ")), "{letters}");
    assert!(
        letters.contains(&format!("{} ", written.dead[1])),
        "{letters}"
    );
    let shown = ok(&seawall(
        ["queue".into(), "show".into(), new.to_string()]
            .into_iter()
            .chain(store_arg(dir.path())),
    ));
    assert!(shown.contains("pending"), "{shown}");

    // A ticket that is not a dead letter: nothing done, and said so.
    let err = failed(
        &seawall(
            [
                "queue".into(),
                "retry".into(),
                written.pending[0].0.to_string(),
            ]
            .into_iter()
            .chain(store_arg(dir.path())),
        ),
        1,
    );
    assert!(err.contains("not dead letters"), "{err}");

    // The service, started again with its vendor fixed, delivers it with
    // the key it was first sent with.
    let dead_key = written
        .vendor_keys
        .iter()
        .rev()
        .find(|k| !k.is_empty())
        .cloned();
    assert!(dead_key.is_some());
    let service = service();
    service.block_on(async {
        let vendor = Vendor::default();
        vendor.set(FIXED);
        let url = vendor.start().await;
        let runtime = Runtime::builder()
            .plaintext_redacted()
            .embedded(dir.path())
            .unwrap();
        let billing = billing(&url, &runtime);
        billing.resume_queued();
        let status = tokio::time::timeout(
            Duration::from_secs(20),
            runtime.write_ahead_log().settled(seawall::wal::Ticket(new)),
        )
        .await
        .expect("delivered in time")
        .unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "{status:?}"
        );
        // Its key is the dead letter's original one: the vendor saw it
        // before (when it refused the write).
        let keys = vendor.keys();
        assert!(
            keys.iter().any(|key| written.vendor_keys.contains(key)),
            "the retried write was sent with a new key: {keys:?}"
        );
    });
}

#[test]
fn purge_changes_nothing_without_yes_then_drops_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let purge = |args: &[&str]| {
        seawall(
            ["queue", "purge"]
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .chain(store_arg(dir.path())),
        )
    };
    let first = written.dead[0].0.to_string();
    let refused = purge(&[&first]);
    let err = failed(&refused, 2);
    assert!(
        err.contains("nothing was purged") && err.contains("--yes"),
        "{err}"
    );
    assert!(stdout(&refused).contains(&format!("{} ", written.dead[0])));
    let letters = || {
        ok(&seawall(
            ["dead-letters".to_string()]
                .into_iter()
                .chain(store_arg(dir.path())),
        ))
    };
    assert!(letters().contains(&format!("{} ", written.dead[0])));

    let out = ok(&purge(&[&first, "--yes"]));
    assert!(out.contains("1 dead letter(s) purged"), "{out}");
    let after = letters();
    assert!(!after.contains(&format!("{} ", written.dead[0])), "{after}");
    assert!(after.contains(&format!("{} ", written.dead[1])), "{after}");

    // Purging a pending write is refused: only dead letters are dropped.
    let pending = written.pending[0].0.to_string();
    let err = failed(&purge(&[&pending, "--yes"]), 1);
    assert!(err.contains("not dead letters"), "{err}");

    let out = ok(&purge(&["--all", "--contract", "billing", "--yes"]));
    assert!(out.contains("1 dead letter(s) purged"), "{out}");
    assert!(letters().contains("no dead letters"));
    // The pending writes are untouched.
    let listed = ok(&seawall(
        ["queue", "ls"]
            .iter()
            .map(|s| s.to_string())
            .chain(store_arg(dir.path())),
    ));
    for ticket in &written.pending {
        assert!(listed.contains(&format!("{ticket} ")), "{listed}");
    }
}

#[test]
fn export_writes_json_lines_with_redacted_arguments_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let out = ok(&seawall(
        ["queue", "export"]
            .iter()
            .map(|s| s.to_string())
            .chain(store_arg(dir.path())),
    ));
    assert!(!out.contains(CARD), "{out}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let state = |s: &str| records.iter().filter(|r| r["state"] == s).count();
    assert_eq!(state("pending"), 4, "{out}");
    assert_eq!(state("dead_letter"), 2, "{out}");
    let first = records
        .iter()
        .find(|r| r["ticket"] == written.pending[0].0)
        .unwrap();
    assert_eq!(first["contract"], "billing");
    assert_eq!(first["method"], "charge");
    assert_eq!(first["order_key"], "account=\"acme\"");
    assert_eq!(first["arguments"]["invoice"]["number"], 1);
    assert_eq!(first["key"].as_str().unwrap().len(), 64);
    let note = records
        .iter()
        .find(|r| r["ticket"] == written.note.0)
        .unwrap();
    assert_eq!(note["arguments"]["card"], "<redacted>");
    assert_eq!(note["redacted"], serde_json::json!(["card"]));
    let dead = records
        .iter()
        .find(|r| r["ticket"] == written.dead[0].0)
        .unwrap();
    assert!(dead["error"].as_str().unwrap().contains("422"), "{dead}");
}
