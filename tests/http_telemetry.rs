//! Correlation ids on the wire, against a real HTTP server on loopback:
//! `traceparent` on every attempt, the caller's id or one per call.
//! (`tests/secrets.rs` checks what the logs hold.)

#![cfg(feature = "http")]

mod loopback_api;

use loopback_api::{Api, ApiHttp, Vendor, client, trace_id};
use seawall::telemetry::{CorrelationId, correlation_scope};
use seawall::{Resilient, Runtime};

#[tokio::test]
async fn every_attempt_carries_the_callers_correlation_id_as_traceparent() {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let api = Resilient::new(
        ApiHttp {
            client: client(|_| {}),
            url,
        },
        &Runtime::in_memory(),
    );
    // The id of the request being served, from its own traceparent.
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let id = CorrelationId::from_traceparent(incoming).unwrap();
    correlation_scope(id, api.fetch("t")).await.unwrap();

    let traceparents = vendor.header("traceparent");
    assert_eq!(traceparents.len(), 2, "a 503, then a retry");
    for traceparent in &traceparents {
        assert_eq!(trace_id(traceparent), "0af7651916cd43dd8448eb211c80319c");
    }
    assert_ne!(
        traceparents[0], traceparents[1],
        "each attempt is its own span"
    );
    assert_eq!(
        vendor.header("x-correlation-id"),
        ["0af7651916cd43dd8448eb211c80319c"; 2]
    );
}

#[tokio::test]
async fn a_call_outside_any_scope_has_one_id_of_its_own_for_all_its_attempts() {
    let vendor = Vendor::default();
    let url = vendor.start().await;
    let api = Resilient::new(
        ApiHttp {
            client: client(|_| {}),
            url,
        },
        &Runtime::in_memory(),
    );
    api.fetch("t").await.unwrap();
    api.fetch("t").await.unwrap();
    let ids: Vec<String> = vendor
        .header("traceparent")
        .iter()
        .map(|t| trace_id(t))
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[1], "one call, one id");
    assert_eq!(ids[2], ids[3], "one call, one id");
    assert_ne!(ids[0], ids[2], "two calls, two ids");
}
