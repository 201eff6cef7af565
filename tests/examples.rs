//! The examples run as tests too: their scenarios must keep holding.

#[path = "../examples/payments.rs"]
#[allow(dead_code)]
mod payments;

#[path = "../examples/crm.rs"]
#[allow(dead_code)]
mod crm;

#[path = "../examples/ehr.rs"]
#[allow(dead_code)]
mod ehr;

#[path = "../examples/telephony.rs"]
#[allow(dead_code)]
mod telephony;

#[path = "../examples/metrics_prometheus.rs"]
#[allow(dead_code)]
mod metrics_prometheus;

#[path = "../examples/mock_service.rs"]
#[allow(dead_code)]
mod mock_service;

#[tokio::test]
async fn the_ehr_example_answers_an_outage_with_its_custom_fallback() {
    let outcome = ehr::run().await.expect("the scenario runs");
    assert!(matches!(outcome.before, ehr::Records::Found(ref lines) if lines.len() == 1));
    let ehr::Records::Unavailable(message) = &outcome.during else {
        panic!("expected the fallback's answer, got {:?}", outcome.during);
    };
    assert!(message.contains("p-17") && message.contains("temporarily unavailable"));
    let error = outcome.unknown.expect_err("a 404 is not an outage");
    assert!(error.contains("404"), "{error}");
}

#[tokio::test]
async fn the_crm_example_serves_stale_reads_while_the_crm_is_down() {
    let reads = crm::run().await.expect("every read is answered");
    let down: Vec<_> = reads.iter().filter(|r| r.phase == "down").collect();
    assert!(!down.is_empty());
    let last_fresh = reads
        .iter()
        .filter(|r| r.phase == "up")
        .map(|r| r.version)
        .max()
        .unwrap();
    for read in &down {
        assert!(read.stale, "{read:?}");
        assert_eq!(read.version, last_fresh, "the last good answer");
        assert!(read.age > std::time::Duration::ZERO);
    }
    for read in reads.iter().filter(|r| r.phase == "up") {
        assert!(!read.stale, "{read:?}");
    }
    // Back up: stale answers (the last good one) until the breaker's probe
    // finds the CRM, then fresh ones.
    let back: Vec<_> = reads.iter().filter(|r| r.phase == "back").collect();
    let first_fresh = back.iter().position(|r| !r.stale).expect("fresh again");
    assert!(
        back[..first_fresh]
            .iter()
            .all(|r| r.stale && r.version == last_fresh)
    );
    assert!(
        back[first_fresh..]
            .iter()
            .all(|r| !r.stale && r.version > last_fresh)
    );
}

#[tokio::test]
async fn the_payments_example_charges_exactly_once_despite_a_timed_out_attempt() {
    let outcome = payments::run().await.expect("the scenario runs");
    assert!(
        outcome.keys.len() >= 2,
        "the first attempt timed out and was retried"
    );
    assert!(
        outcome.keys.iter().all(|key| key == &outcome.keys[0]),
        "every attempt carried the same key: {:?}",
        outcome.keys
    );
    assert_eq!(outcome.charges.len(), 1, "the vendor charged once");
    assert_eq!(
        outcome.charge, outcome.charges[0],
        "and the caller got that charge"
    );
}

#[tokio::test]
async fn the_telephony_example_delivers_rules_queued_in_an_outage_once_each_in_order() {
    let outcome = telephony::run().await.expect("the scenario runs");
    let applied = outcome.applied();
    let written: Vec<_> = outcome
        .writes
        .iter()
        .map(|(rule, _)| (rule.number.as_str(), rule.target.as_str()))
        .collect();
    let taken: Vec<_> = applied
        .iter()
        .map(|r| (r.number.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        taken, written,
        "every rule applied once, in the order written"
    );
    let keys: std::collections::HashSet<_> = applied.iter().map(|r| &r.key).collect();
    assert_eq!(keys.len(), applied.len(), "one applied request per key");

    let queued = outcome
        .writes
        .iter()
        .filter(|(_, answer)| answer.is_queued())
        .count();
    assert_eq!(queued, 4, "the rules written during the outage were queued");
    assert_eq!(outcome.queued_keys.len(), queued);
    let delivered_keys: Vec<_> = applied[applied.len() - queued..]
        .iter()
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(
        delivered_keys, outcome.queued_keys,
        "delivered in ticket order, each with the key it was queued with"
    );
    for (ticket, status) in &outcome.settled {
        assert!(
            matches!(status, seawall::wal::TicketStatus::Delivered { .. }),
            "{ticket}: {status:?}"
        );
    }
    assert_eq!(outcome.depth, 0, "the log ended empty");
    assert_eq!(
        outcome.table["+15550101"], "voicemail:support",
        "the last route wins"
    );
}

#[tokio::test]
async fn the_metrics_example_scrapes_what_each_call_did_from_its_prometheus_route() {
    // Twice in one process: the second run reuses the installed recorder,
    // and counts only its own calls.
    for run in 1..=2 {
        let report = metrics_prometheus::run().await.expect("the scenario runs");
        assert_eq!(report.failures(), Vec::<String>::new(), "run {run}");
        let counted = |what: &str| {
            report
                .checks
                .iter()
                .find(|check| check.what == what)
                .map(|check| check.counted)
        };
        let series = |name: &str, method: &str, outcome: &str| {
            counted(&format!(
                "{name}{{method=\"{method}\",outcome=\"{outcome}\"}}"
            ))
        };
        let attempts = |method, outcome| series("seawall_attempts_total", method, outcome);
        let calls = |method, outcome| series("seawall_calls_total", method, outcome);
        assert_eq!(attempts("price", "permanent"), Some(1.0), "the one 404");
        assert_eq!(attempts("price", "vendor_fault"), Some(1.0), "the one 500");
        for outcome in ["success", "retryable", "timeout"] {
            assert!(attempts("price", outcome) > Some(0.0), "{outcome}");
        }
        for outcome in ["ok", "error", "rejected"] {
            assert!(calls("price", outcome) > Some(0.0), "{outcome}");
        }
        assert_eq!(calls("product", "stale"), Some(3.0));
        assert_eq!(calls("price", "cancelled"), Some(0.0));
        assert_eq!(
            counted(r#"seawall_cache_stale_total{method="product"}"#),
            Some(3.0)
        );
        assert_eq!(
            counted(r#"seawall_cache_misses_total{method="product"}"#),
            Some(1.0)
        );
        assert!(report.lines.iter().any(|line| {
            line.starts_with(r#"seawall_call_duration_seconds_bucket{contract="catalog""#)
        }));
    }
}

// The mock example's scenarios are tests already: each asserts its outcome
// and the double's expectations, checked when it is dropped.

#[tokio::test(start_paused = true)]
async fn the_mock_example_serves_an_outage_from_the_cache_with_its_age() {
    mock_service::an_outage_is_answered_from_the_cache_with_its_age().await;
}

#[tokio::test(start_paused = true)]
async fn the_mock_example_queues_notes_in_an_outage_and_delivers_them_in_order() {
    mock_service::notes_written_in_an_outage_are_queued_then_delivered_in_order().await;
}

#[tokio::test(start_paused = true)]
async fn the_mock_example_replays_the_same_run_from_the_same_seeds() {
    mock_service::the_same_seeds_replay_the_same_run().await;
    // And the seeds matter: another fault seed fails other calls.
    let other = mock_service::flaky_run(7, 12).await;
    assert_ne!(other, mock_service::flaky_run(7, 11).await);
}
