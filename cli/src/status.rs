//! `seawall status URL`: a running service's status page (the JSON of its
//! `Runtime::health()`) as tables.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::Failure;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Where the service serves `serde_json::to_string(&runtime.health())`.
    url: String,
    /// Print the JSON as fetched instead of tables.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

pub(crate) fn run(args: &StatusArgs) -> Result<(), Failure> {
    let health = fetch(&args.url, Duration::from_secs(args.timeout))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&health).unwrap_or_default()
        );
        return Ok(());
    }
    print!("{}", render(&health));
    Ok(())
}

fn fetch(url: &str, timeout: Duration) -> Result<Value, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("could not start an async runtime: {e}")))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::new(format!("could not build an HTTP client: {e}")))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::new(format!("{url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::new(format!("{url}: answered {status}")));
        }
        let body = response
            .text()
            .await
            .map_err(|e| Failure::new(format!("{url}: {e}")))?;
        let health: Value = serde_json::from_str(&body)
            .map_err(|e| Failure::new(format!("{url}: not JSON ({e})")))?;
        if !health.get("endpoints").is_some_and(Value::is_array) {
            return Err(Failure::new(format!(
                "{url}: not a seawall status (no `endpoints` list; expected \
                 `serde_json::to_string(&runtime.health())`)"
            )));
        }
        Ok(health)
    })
}

/// A value as a cell: numbers and strings as they are, `null` as `-`.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(other) => other.to_string(),
    }
}

fn number(value: Option<&Value>, decimals: usize, suffix: &str) -> String {
    match value.and_then(Value::as_f64) {
        Some(n) => format!("{n:.decimals$}{suffix}"),
        None => "-".into(),
    }
}

fn percent(share: Option<&Value>) -> String {
    match share.and_then(Value::as_f64) {
        Some(share) => format!("{:.1} %", share * 100.0),
        None => "-".into(),
    }
}

fn list(value: &Value, name: &str) -> Vec<Value> {
    value
        .get(name)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The status as tables: endpoints, queues, limiters, bulkheads, pauses,
/// and the store's and shared backends' state.
pub(crate) fn render(health: &Value) -> String {
    let mut out = String::new();
    let mut endpoints = Table::new([
        "ENDPOINT",
        "CALLS",
        "OK",
        "ERROR",
        "QUEUED",
        "STALE",
        "REJECTED",
        "ERROR RATE",
        "P99",
        "BREAKER",
    ]);
    for endpoint in list(health, "endpoints") {
        let calls = endpoint.get("calls");
        let field = |name: &str| cell(calls.and_then(|c| c.get(name)));
        endpoints.row([
            format!(
                "{}.{}",
                cell(endpoint.get("contract")),
                cell(endpoint.get("method"))
            ),
            field("total"),
            field("ok"),
            field("error"),
            field("queued"),
            field("stale"),
            field("rejected"),
            percent(endpoint.get("error_rate")),
            number(
                endpoint.get("latency").and_then(|l| l.get("p99_ms")),
                1,
                " ms",
            ),
            cell(endpoint.get("breaker")),
        ]);
    }
    if endpoints.is_empty() {
        out.push_str("no endpoints called yet\n");
    } else {
        out.push_str(&endpoints.render());
    }

    let queues = list(health, "queues");
    if !queues.is_empty() {
        let mut table = Table::new(["QUEUE", "PENDING", "DEAD LETTERS"]);
        for queue in queues {
            table.row([
                cell(queue.get("contract")),
                cell(queue.get("pending")),
                cell(queue.get("dead_letters")),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }

    let limiters = list(health, "limiters");
    if !limiters.is_empty() {
        out.push('\n');
        out.push_str(&generic_table("LIMITER", &limiters));
    }
    let bulkheads = list(health, "bulkheads");
    if !bulkheads.is_empty() {
        out.push('\n');
        out.push_str(&generic_table("BULKHEAD", &bulkheads));
    }
    let paused = list(health, "paused");
    if !paused.is_empty() {
        out.push('\n');
        out.push_str(&generic_table("PAUSED", &paused));
    }

    let mut state = Table::plain();
    state.row(["quarantined".into(), cell(health.get("quarantined"))]);
    state.row(["store degraded".into(), cell(health.get("store_degraded"))]);
    for shared in ["fleet", "postgres"] {
        if let Some(backend) = health.get(shared).filter(|v| !v.is_null()) {
            let available = cell(backend.get("available"));
            let error = backend
                .get("last_error")
                .filter(|e| !e.is_null())
                .map(|e| format!(" ({})", cell(Some(e))))
                .unwrap_or_default();
            state.row([format!("{shared} available"), format!("{available}{error}")]);
        }
    }
    out.push('\n');
    out.push_str(&state.render());
    out
}

/// A list of objects as a table of their scalar fields, the first column
/// named `first` and holding `name` (or `contract`).
fn generic_table(first: &str, items: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Some(object) = item.as_object() {
            for (name, value) in object {
                let scalar = !value.is_object() && !value.is_array();
                if scalar && name != "name" && name != "contract" && !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = std::iter::once(first.to_owned())
        .chain(columns.iter().map(|c| c.to_uppercase().replace('_', " ")))
        .collect();
    let mut rows = vec![header];
    for item in items {
        let name = item.get("name").or_else(|| item.get("contract"));
        rows.push(
            std::iter::once(cell(name))
                .chain(columns.iter().map(|c| cell(item.get(c))))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
