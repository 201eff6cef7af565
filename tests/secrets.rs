//! Secrets stay out of the logs: everything a traced call writes at
//! `trace` level, against a real HTTP server on loopback, holds no header,
//! query string or redacted argument value, and neither does the health
//! snapshot.

#![cfg(feature = "http")]

mod loopback_api;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use loopback_api::{Api, ApiHttp, Filter, Vendor, client};
use seawall::{Resilient, Runtime};

/// Everything `tracing` writes, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_spans_events_or_the_health_snapshot() {
    const SECRETS: [&str; 4] = [
        "Bearer-SECRET-AUTH",
        "session=SECRET-COOKIE",
        "SECRET-API-KEY",
        "SECRET-TOKEN-ARG",
    ];
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = Runtime::in_memory();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The global default, in a test binary of its own: a thread-local
    // default can miss events whose callsites other test threads
    // registered first.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    {
        tokio.block_on(async {
            let vendor = Vendor::default();
            let url = vendor.start().await;
            let api = Resilient::new(
                ApiHttp {
                    client: client(|headers| {
                        headers.insert("authorization", "Bearer-SECRET-AUTH".parse().unwrap());
                        headers.insert("cookie", "session=SECRET-COOKIE".parse().unwrap());
                        headers.insert("x-api-key", "SECRET-API-KEY".parse().unwrap());
                    }),
                    url,
                },
                &runtime,
            );
            // The argument goes into the query string too.
            api.fetch("SECRET-TOKEN-ARG").await.unwrap();
            api.search(7, &Filter).await.unwrap();
            assert_eq!(vendor.header("x-api-key"), ["SECRET-API-KEY"; 2]);
            // A vendor that cannot be reached: reqwest's error names the URL,
            // query string and all, and the call's end reports the error.
            let unreachable = Resilient::new(
                ApiHttp {
                    client: client(|_| {}),
                    url: "http://127.0.0.1:1/data".into(),
                },
                &runtime,
            );
            let error = unreachable.fetch("SECRET-TOKEN-ARG").await.unwrap_err();
            assert!(
                format!("{error:?}").contains("SECRET-TOKEN-ARG"),
                "the caller's own error keeps the URL: {error:?}"
            );
        });
    }
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The call was traced: its span, both attempts and both responses.
    assert!(output.contains("seawall.call"), "{output}");
    assert!(output.contains("correlation_id="), "{output}");
    assert!(output.contains("http.response.status_code=503"), "{output}");
    assert!(output.contains("outcome=\"retryable\""), "{output}");
    // The unreachable call ended in an error whose message names the URL,
    // without its query.
    assert!(
        output.contains("call ended") && output.contains("http://127.0.0.1:1/data?…"),
        "{output}"
    );
    // Arguments are a `debug` event: by `Debug`, unless redacted.
    assert!(output.contains("arg.token=\"<redacted>\""), "{output}");
    assert!(
        output.contains("arg.page=7 arg.filter=<not Debug>"),
        "{output}"
    );
    let health = serde_json::to_string(&runtime.health()).unwrap();
    for secret in SECRETS {
        assert!(!output.contains(secret), "{secret} in the logs:\n{output}");
        assert!(!health.contains(secret), "{secret} in the health snapshot");
    }
}
