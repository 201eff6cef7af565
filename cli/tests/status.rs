//! `seawall status URL`: a running service's `Runtime::health()`, served as
//! JSON by axum on 127.0.0.1, printed as tables.

mod support;

use axum::Router;
use axum::routing::get;
use seawall::Runtime;
use support::{Billing, DOWN, Invoice, Vendor, billing, failed, ok, seawall};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn tool(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || seawall(args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_running_services_health_as_tables() {
    let vendor = Vendor::default();
    vendor.set(DOWN);
    let url = vendor.start().await;
    let runtime = Runtime::in_memory();
    let billing = billing(&url, &runtime);
    for number in 1..=2 {
        let invoice = Invoice { number, cents: 1 };
        assert!(billing.charge("acme", &invoice).await.unwrap().is_queued());
    }
    let health = runtime.clone();
    let app = Router::new().route(
        "/status",
        get(move || {
            let runtime = health.clone();
            async move { serde_json::to_string(&runtime.health()).unwrap() }
        }),
    );
    let status = format!("{}/status", serve(app).await);

    let out = ok(&tool(vec!["status".into(), status.clone()]).await);
    let endpoint = out
        .lines()
        .find(|l| l.starts_with("billing.charge "))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = endpoint.split_whitespace().collect();
    // calls, ok, error, queued.
    assert_eq!(&cells[1..5], ["2", "0", "0", "2"], "{out}");
    assert!(
        out.contains("billing.note "),
        "a method not called yet is listed: {out}"
    );
    let queue = out
        .lines()
        .skip_while(|l| !l.starts_with("QUEUE"))
        .find(|l| l.starts_with("billing "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        queue.split_whitespace().collect::<Vec<_>>(),
        ["billing", "2", "0"]
    );
    assert!(out.contains("store degraded"), "{out}");

    // `--json` prints what the service served.
    let json = ok(&tool(vec!["status".into(), status, "--json".into()]).await);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["queues"][0]["pending"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_a_status_page_is_a_clear_error() {
    let app = Router::new()
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route("/html", get(|| async { "<html></html>" }))
        .route("/other", get(|| async { r#"{"ok": true}"# }));
    let url = serve(app).await;
    let err = failed(
        &tool(vec!["status".into(), format!("{url}/broken")]).await,
        1,
    );
    assert!(err.contains("500"), "{err}");
    let err = failed(&tool(vec!["status".into(), format!("{url}/html")]).await, 1);
    assert!(err.contains("not JSON"), "{err}");
    let err = failed(
        &tool(vec!["status".into(), format!("{url}/other")]).await,
        1,
    );
    assert!(err.contains("not a seawall status"), "{err}");
    // Nothing listens there (a port just freed).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/status", free.local_addr().unwrap());
    drop(free);
    let err = failed(&tool(vec!["status".into(), gone.clone()]).await, 1);
    assert!(err.contains(&gone), "{err}");
}
