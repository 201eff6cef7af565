//! `seawall queue ls|show|retry|purge|export` and `seawall dead-letters`
//! with `--postgres URL`: on an outbox written by a real runtime whose
//! loopback vendor was down (some writes drained into dead letters), also
//! while another runtime drains it.
//!
//! The shared server on 127.0.0.1:5432, each test in a schema of its own;
//! skipped (and says so) without it, unless `SEAWALL_REQUIRE_POSTGRES` is
//! set. The refused URL needs no server.

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use seawall::Runtime;
use seawall::wal::{Ticket, TicketStatus};
use support::{
    Billing, CARD, FIXED, Vendor, billing, failed, ok, outbox_config, pg, queued_outbox, seawall,
    service, stdout,
};

/// Runs the tool on the outbox of `schema`.
fn tool(url: &str, schema: &str, args: &[&str]) -> Output {
    seawall(args.iter().map(|s| s.to_string()).chain([
        "--postgres".into(),
        url.into(),
        "--schema".into(),
        schema.into(),
    ]))
}

/// Everything in the schema's two tables, as text, in order.
fn snapshot(url: &str, schema: &str) -> (Vec<String>, Vec<String>) {
    service().block_on(async {
        let pool = pg::connect(url).await;
        let rows =
            |table: &str| format!("SELECT row_to_json(t)::text FROM {schema}.{table} t ORDER BY 1");
        let outbox: Vec<String> = sqlx::query_scalar(&rows("outbox"))
            .fetch_all(&pool)
            .await
            .unwrap();
        let lanes: Vec<String> = sqlx::query_scalar(&rows("outbox_lanes"))
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        (outbox, lanes)
    })
}

/// `billing`'s summary row of `queue ls`: pending, lanes, dead letters.
fn summary(url: &str, schema: &str) -> Option<(u64, u64, u64)> {
    let out = ok(&tool(url, schema, &["queue", "ls"]));
    let row = out.lines().find(|line| line.starts_with("billing "))?;
    let cells: Vec<u64> = row
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|cell| cell.parse().unwrap())
        .collect();
    Some((cells[0], cells[1], cells[2]))
}

fn drop_schema(url: &str, schema: &str) {
    service().block_on(pg::drop_schema(url, schema));
}

#[test]
fn reads_list_show_and_export_the_outbox_and_change_nothing() {
    let Some(url) = pg::shared("reads_list_show_and_export_the_outbox_and_change_nothing") else {
        return;
    };
    let schema = pg::schema("cli_reads");
    let written = queued_outbox(url, &schema);
    let before = snapshot(url, &schema);

    // ls: 3 charges of acme and a note pending in two lanes, 2 dead.
    let out = ok(&tool(url, &schema, &["queue", "ls"]));
    assert!(
        out.starts_with(&format!(
            "outbox postgres://127.0.0.1:5432/test (schema {schema})"
        )),
        "{out}"
    );
    assert_eq!(summary(url, &schema), Some((4, 2, 2)), "{out}");
    for ticket in written.pending.iter().chain([&written.note]) {
        let row = out
            .lines()
            .find(|line| line.starts_with(&format!("{ticket} ")))
            .unwrap_or_else(|| panic!("no row for {ticket}:\n{out}"));
        let method = if *ticket == written.note {
            "note"
        } else {
            "charge"
        };
        assert!(row.contains(method), "{row}");
    }
    let first = out
        .lines()
        .find(|line| line.starts_with(&format!("{} ", written.pending[0])))
        .unwrap();
    assert!(first.contains("account=\"acme\""), "{first}");
    let attempts: u32 = first.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(attempts >= 1, "the drain's attempt was counted: {first}");
    for ticket in &written.dead {
        assert!(
            !out.lines().any(|l| l.starts_with(&format!("{ticket} "))),
            "{out}"
        );
    }
    assert!(!out.contains(CARD), "a redacted argument was shown:\n{out}");
    let other = ok(&tool(url, &schema, &["queue", "ls", "--contract", "crm"]));
    assert!(other.contains("no queued writes of `crm`"), "{other}");

    // show: a pending write, a dead letter, the note with its card hidden.
    let show = |ticket: Ticket| tool(url, &schema, &["queue", "show", &ticket.to_string()]);
    let out = ok(&show(written.pending[1]));
    assert!(out.contains("pending"), "{out}");
    assert!(out.contains("\"number\": 2"), "{out}");
    let key_line = out.lines().find(|l| l.starts_with("key ")).unwrap();
    assert_eq!(key_line.split_whitespace().nth(1).unwrap().len(), 64);
    let out = ok(&show(written.dead[0]));
    assert!(out.contains("dead letter"), "{out}");
    assert!(out.contains("422 Unprocessable Entity"), "{out}");
    let out = ok(&show(written.note));
    assert!(out.contains("\"card\": \"<redacted>\""), "{out}");
    assert!(!out.contains(CARD), "{out}");
    let err = failed(&show(Ticket(999_999)), 1);
    assert!(err.contains("no entry under #999999"), "{err}");

    // dead-letters: bad's two charges, refused with 422.
    let out = ok(&tool(url, &schema, &["dead-letters"]));
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

    // export: JSON lines, the card hidden.
    let out = ok(&tool(url, &schema, &["queue", "export"]));
    assert!(!out.contains(CARD), "{out}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let state = |s: &str| records.iter().filter(|r| r["state"] == s).count();
    assert_eq!((state("pending"), state("dead_letter")), (4, 2), "{out}");
    let first = records
        .iter()
        .find(|r| r["ticket"] == written.pending[0].0)
        .unwrap();
    assert_eq!(first["method"], "charge");
    assert_eq!(first["order_key"], "account=\"acme\"");
    assert_eq!(first["arguments"]["invoice"]["number"], 1);
    let note = records
        .iter()
        .find(|r| r["ticket"] == written.note.0)
        .unwrap();
    assert_eq!(note["arguments"]["card"], "<redacted>");
    assert_eq!(note["redacted"], serde_json::json!(["card"]));

    // A purge without `--yes` reads too: it lists, and drops nothing.
    let refused = tool(url, &schema, &["queue", "purge", "--all"]);
    let err = failed(&refused, 2);
    assert!(err.contains("nothing was purged"), "{err}");
    assert!(stdout(&refused).contains(&format!("{} ", written.dead[0])));

    // Not a row, not a lease changed by any of it.
    assert_eq!(snapshot(url, &schema), before);
    drop_schema(url, &schema);
}

#[test]
fn retry_queues_a_dead_letter_once_and_a_drain_delivers_it() {
    let Some(url) = pg::shared("retry_queues_a_dead_letter_once_and_a_drain_delivers_it") else {
        return;
    };
    let schema = pg::schema("cli_retry");
    let written = queued_outbox(url, &schema);
    let retried = written.dead[0];
    let out = ok(&tool(
        url,
        &schema,
        &["queue", "retry", &retried.to_string()],
    ));
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{retried} queued again as #")))
        .unwrap_or_else(|| panic!("{out}"));
    let new = Ticket(line.rsplit('#').next().unwrap().parse().unwrap());
    assert!(
        new.0 > written.note.0,
        "behind every write queued before: {line}"
    );
    // Pending once: one more pending (in account `bad`'s lane, a third
    // one), one dead letter less.
    assert_eq!(summary(url, &schema), Some((5, 3, 1)));
    let shown = ok(&tool(url, &schema, &["queue", "show", &new.to_string()]));
    let attempts = shown.lines().find(|l| l.starts_with("attempts ")).unwrap();
    assert!(
        shown.contains("pending") && attempts.ends_with(" 0"),
        "{shown}"
    );

    // Again: it is no dead letter any more, nothing is queued twice.
    let err = failed(
        &tool(url, &schema, &["queue", "retry", &retried.to_string()]),
        1,
    );
    assert!(
        err.contains("not dead letters") && err.contains(&retried.to_string()),
        "{err}"
    );
    assert_eq!(summary(url, &schema), Some((5, 3, 1)));

    // A runtime on the outbox, its vendor fixed, delivers it with the key
    // the vendor refused before.
    let refused_key = ok(&tool(url, &schema, &["queue", "export"]))
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["ticket"] == new.0)
        .map(|record| record["key"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(written.vendor_keys.contains(&refused_key));
    service().block_on(async {
        let vendor = Vendor::default();
        vendor.set(FIXED);
        let vendor_url = vendor.start().await;
        let runtime = Runtime::builder()
            .plaintext_redacted()
            .postgres(outbox_config(url, &schema))
            .in_memory();
        let billing = billing(&vendor_url, &runtime);
        billing.resume_queued();
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            runtime.write_ahead_log().settled(new),
        )
        .await
        .expect("delivered in time")
        .unwrap();
        assert!(
            matches!(status, Some(TicketStatus::Delivered { .. })),
            "{status:?}"
        );
        let sent = vendor.keys().iter().filter(|k| **k == refused_key).count();
        assert_eq!(sent, 1, "{:?}", vendor.keys());
    });
    let out = ok(&tool(url, &schema, &["queue", "show", &new.to_string()]));
    assert!(out.contains("delivered"), "{out}");
    drop_schema(url, &schema);
}

#[test]
fn purge_drops_dead_letters_only_and_the_counts_stay_right() {
    let Some(url) = pg::shared("purge_drops_dead_letters_only_and_the_counts_stay_right") else {
        return;
    };
    let schema = pg::schema("cli_purge");
    let written = queued_outbox(url, &schema);
    let first = written.dead[0].to_string();
    let out = ok(&tool(url, &schema, &["queue", "purge", &first, "--yes"]));
    assert!(out.contains("1 dead letter(s) purged"), "{out}");
    assert_eq!(summary(url, &schema), Some((4, 2, 1)));
    let err = failed(&tool(url, &schema, &["queue", "show", &first]), 1);
    assert!(err.contains("no entry under"), "{err}");
    let letters = ok(&tool(url, &schema, &["dead-letters"]));
    assert!(!letters.contains(&format!("{first} ")), "{letters}");
    assert!(
        letters.contains(&format!("{} ", written.dead[1])),
        "{letters}"
    );

    // A pending write is not a dead letter: refused, and kept.
    let pending = written.pending[0].to_string();
    let err = failed(
        &tool(url, &schema, &["queue", "purge", &pending, "--yes"]),
        1,
    );
    assert!(err.contains("not dead letters"), "{err}");
    assert_eq!(summary(url, &schema), Some((4, 2, 1)));

    // Another contract's `--all` drops nothing of billing's.
    let out = ok(&tool(
        url,
        &schema,
        &["queue", "purge", "--all", "--contract", "crm", "--yes"],
    ));
    assert!(out.contains("0 dead letter(s) purged"), "{out}");
    let out = ok(&tool(
        url,
        &schema,
        &["queue", "purge", "--all", "--contract", "billing", "--yes"],
    ));
    assert!(out.contains("1 dead letter(s) purged"), "{out}");
    assert_eq!(summary(url, &schema), Some((4, 2, 0)));
    assert!(ok(&tool(url, &schema, &["dead-letters"])).contains("no dead letters"));
    drop_schema(url, &schema);
}

#[test]
fn a_database_that_refuses_is_named_without_its_password_at_once() {
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:s3cret-pw@127.0.0.1:{port}/test");
    for args in [
        &["queue", "ls"][..],
        &["queue", "show", "1"],
        &["queue", "export"],
        &["dead-letters"],
        &["queue", "retry", "1"],
        &["queue", "purge", "--all", "--yes"],
    ] {
        let started = Instant::now();
        let out = seawall(args.iter().copied().chain(["--postgres", url.as_str()]));
        let err = failed(&out, 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            err.contains(&format!(
                "postgres://127.0.0.1:{port}/test (schema seawall)"
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("refused"), "{args:?}: {err}");
        assert!(
            !err.contains("s3cret") && !stdout(&out).contains("s3cret"),
            "{err}"
        );
    }

    // A URL that is not one is a wrong command line, not echoed either.
    let err = failed(
        &seawall([
            "queue",
            "ls",
            "--postgres",
            "mysql://root:s3cret-pw@127.0.0.1/x",
        ]),
        2,
    );
    assert!(
        err.contains("not a PostgreSQL URL") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn a_database_without_the_schema_is_said_so_and_left_without_it() {
    let Some(url) = pg::shared("a_database_without_the_schema_is_said_so_and_left_without_it")
    else {
        return;
    };
    let schema = pg::schema("cli_absent");
    for args in [
        &["queue", "ls"][..],
        &["queue", "show", "1"],
        &["queue", "export"],
        &["dead-letters"],
        &["queue", "retry", "1"],
        &["queue", "purge", "--all", "--yes"],
    ] {
        let err = failed(&tool(url, &schema, args), 1);
        assert!(
            err.contains(&format!("there is no schema `{schema}` in this database"))
                && err.contains("Nothing was created"),
            "{args:?}: {err}"
        );
    }
    let exists: bool = service().block_on(async {
        let pool = pg::connect(url).await;
        let exists =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&schema)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        exists
    });
    assert!(!exists, "the tool created schema {schema}");
}

/// Three tools retry every dead letter at once while a runtime drains the
/// outbox: each letter is queued again once, and delivered once.
#[test]
fn retries_racing_a_draining_service_deliver_each_letter_once() {
    let Some(url) = pg::shared("retries_racing_a_draining_service_deliver_each_letter_once") else {
        return;
    };
    let schema = pg::schema("cli_race");
    let written = queued_outbox(url, &schema);
    let dead_keys: BTreeMap<String, Ticket> = ok(&tool(url, &schema, &["queue", "export"]))
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["state"] == "dead_letter")
        .map(|record| {
            let ticket = Ticket(record["ticket"].as_u64().unwrap());
            (record["key"].as_str().unwrap().to_owned(), ticket)
        })
        .collect();
    assert_eq!(dead_keys.len(), written.dead.len());

    let service = service();
    let vendor = Vendor::default();
    vendor.set(FIXED);
    let (runtime, wrapper) = service.block_on(async {
        let vendor_url = vendor.start().await;
        let runtime = Runtime::builder()
            .plaintext_redacted()
            .postgres(outbox_config(url, &schema))
            .in_memory();
        let wrapper = billing(&vendor_url, &runtime);
        // The drain starts and keeps looking (every 100 ms) for writes.
        wrapper.resume_queued();
        (runtime, wrapper)
    });
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let tools: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| tool(url, &schema, &["queue", "retry", "--all"])))
            .collect();
        tools.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut queued_again = 0;
    for output in &outputs {
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{}",
            support::stderr(output)
        );
        queued_again += stdout(output).matches(" queued again as #").count();
    }
    assert_eq!(queued_again, written.dead.len(), "{outputs:?}");

    // Everything drained: nothing pending, no dead letter left.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if summary(url, &schema).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "not drained within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = vendor.keys();
    for (key, ticket) in &dead_keys {
        // Refused once before the retry (in `queued_outbox`), delivered
        // once after it.
        let sent = keys.iter().filter(|k| *k == key).count();
        assert_eq!(sent, 1, "dead letter {ticket} sent {sent} times: {keys:?}");
    }
    let delivered: Vec<(String, i64)> = service.block_on(async {
        let pool = pg::connect(url).await;
        let rows = sqlx::query_as(&format!(
            "SELECT key, count(*) FROM {schema}.outbox WHERE status = 'delivered' \
             GROUP BY key HAVING count(*) > 1"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    });
    assert!(delivered.is_empty(), "delivered twice: {delivered:?}");
    drop(wrapper);
    drop(runtime);
    drop(service);
    drop_schema(url, &schema);
}

/// `--store` and `--postgres` exclude each other; the command line wins
/// over the environment; both variables set, without either option, is an
/// error rather than a silent choice.
#[test]
fn the_command_line_wins_over_the_environment() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_seawall"))
            .args(args)
            .env_remove("SEAWALL_STORE")
            .env_remove("SEAWALL_POSTGRES_URL")
            .envs(env.iter().copied())
            .output()
            .expect("the tool runs")
    };
    let no_store = "no seawall store here";
    let at_url = format!("127.0.0.1:{port}/test");

    let err = failed(
        &run(&["queue", "ls", "--postgres", &url, "--store", &store], &[]),
        2,
    );
    assert!(err.contains("cannot be used with"), "{err}");
    let err = failed(&run(&["queue", "ls", "--schema", "billing"], &[]), 2);
    assert!(
        err.contains("`--schema`") && err.contains("--postgres URL"),
        "{err}"
    );

    // The variable alone names the outbox.
    let err = failed(&run(&["queue", "ls"], &[("SEAWALL_POSTGRES_URL", &url)]), 1);
    assert!(err.contains(&at_url), "{err}");
    // An option wins over the other's variable.
    let err = failed(
        &run(
            &["queue", "ls", "--store", &store],
            &[("SEAWALL_POSTGRES_URL", &url)],
        ),
        1,
    );
    assert!(err.contains(no_store), "{err}");
    let err = failed(
        &run(
            &["queue", "ls", "--postgres", &url],
            &[("SEAWALL_STORE", &store)],
        ),
        1,
    );
    assert!(err.contains(&at_url), "{err}");
    // Both variables: neither wins.
    let both = [
        ("SEAWALL_STORE", store.as_str()),
        ("SEAWALL_POSTGRES_URL", &url),
    ];
    let err = failed(&run(&["queue", "ls"], &both), 2);
    assert!(
        err.contains("both SEAWALL_STORE and SEAWALL_POSTGRES_URL"),
        "{err}"
    );
}

/// A runtime draining the outbox counts its contract's dead letters as the
/// table holds them: those a tool purged or queued again are no longer
/// counted in its health.
#[test]
fn a_draining_runtime_counts_what_a_tool_purged_or_retried() {
    let Some(url) = pg::shared("a_draining_runtime_counts_what_a_tool_purged_or_retried") else {
        return;
    };
    let schema = pg::schema("cli_counts");
    let written = queued_outbox(url, &schema);
    let service = service();
    // Down: the pending writes stay pending, the drain keeps looking.
    let vendor = Vendor::default();
    let (runtime, wrapper) = service.block_on(async {
        let vendor_url = vendor.start().await;
        let runtime = Runtime::builder()
            .plaintext_redacted()
            .postgres(outbox_config(url, &schema))
            .in_memory();
        let wrapper = billing(&vendor_url, &runtime);
        wrapper.resume_queued();
        (runtime, wrapper)
    });
    let counted = |dead: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = runtime.health();
            let queue = health.queues.iter().find(|q| q.contract == "billing");
            if queue.is_some_and(|q| q.dead_letters == dead) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not {dead} dead letters within 10 s: {:?}",
                health.queues
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Refused before this runtime started, counted all the same.
    counted(2);
    ok(&tool(
        url,
        &schema,
        &["queue", "purge", &written.dead[0].to_string(), "--yes"],
    ));
    counted(1);
    ok(&tool(
        url,
        &schema,
        &["queue", "retry", &written.dead[1].to_string()],
    ));
    counted(0);
    drop(wrapper);
    drop(runtime);
    drop(service);
    drop_schema(url, &schema);
}
