//! `seawall key`: the key it prints is the one a real call sends, in its
//! `Idempotency-Key` header, to a loopback vendor.

mod support;

use seawall::Runtime;
use support::{Billing, CARD, Invoice, UP, Vendor, billing, failed, ok, queued_store, seawall};

fn key(contract: &str, method: &str, parts: &str) -> String {
    let out = ok(&seawall([
        "key",
        "--contract",
        contract,
        "--method",
        method,
        "--args",
        parts,
    ]));
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_printed_is_the_one_a_real_call_sends() {
    let vendor = Vendor::default();
    vendor.set(UP);
    let url = vendor.start().await;
    let runtime = Runtime::in_memory();
    let billing = billing(&url, &runtime);

    // Keyed on `[account, invoice.number]`: those two, in that order.
    let invoice = Invoice {
        number: 42,
        cents: 1250,
    };
    assert!(billing.charge("acme", &invoice).await.unwrap().is_done());
    // A bare `idempotent`: every argument, in declaration order.
    assert!(billing.note("acme", CARD.into()).await.unwrap().is_done());
    let sent = vendor.keys();
    assert_eq!(sent.len(), 2);

    let printed = tokio::task::spawn_blocking(|| {
        (
            key(
                "billing",
                "charge",
                r#"{"account": "acme", "invoice.number": 42}"#,
            ),
            key(
                "billing",
                "note",
                &format!(r#"{{"account":"acme","card":"{CARD}"}}"#),
            ),
            // Another order is another key: the policy's order counts.
            key(
                "billing",
                "charge",
                r#"{"invoice.number": 42, "account": "acme"}"#,
            ),
            ok(&seawall([
                "key",
                "--contract",
                "billing",
                "--method",
                "charge",
                "--args",
                r#"{"account":"acme","invoice.number":42}"#,
                "--header",
            ])),
        )
    })
    .await
    .unwrap();
    assert_eq!(printed.0, sent[0], "charge");
    assert_eq!(printed.1, sent[1], "note");
    assert_ne!(printed.2, sent[0]);
    assert_eq!(printed.3.trim(), format!("Idempotency-Key: {}", sent[0]));
}

#[test]
fn the_key_printed_is_the_one_a_queued_write_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let written = queued_store(dir.path());
    let shown = ok(&seawall([
        "queue".to_string(),
        "show".into(),
        written.pending[0].0.to_string(),
        "--store".into(),
        dir.path().display().to_string(),
    ]));
    let stored = shown
        .lines()
        .find_map(|l| l.strip_prefix("key "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        key(
            "billing",
            "charge",
            r#"{"account":"acme","invoice.number":1}"#
        ),
        stored
    );
}

#[test]
fn key_parts_that_are_not_a_json_object_are_refused_clearly() {
    for bad in ["[1, 2]", "{\"a\": 1, \"a\": 2}", "{not json", "42"] {
        let output = seawall([
            "key",
            "--contract",
            "billing",
            "--method",
            "charge",
            "--args",
            bad,
        ]);
        let err = failed(&output, 1);
        assert!(
            err.contains("billing") && err.contains("charge"),
            "{bad}: {err}"
        );
    }
}
