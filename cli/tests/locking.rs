//! The tool and a running service: a store the service holds is refused at
//! once, with the lock named and the service's own actions pointed at, and
//! left as it was; a store left by a killed service, an empty, damaged or
//! missing one give clear errors, never a panic.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use seawall::Runtime;
use seawall::wal::QueuedWrite;
use support::{failed, ok, seawall, service};

const CHILD_DIR: &str = "SEAWALL_CLI_TEST_CHILD_DIR";

fn with_store(command: &[&str], dir: &std::path::Path) -> std::process::Output {
    seawall(
        command
            .iter()
            .map(|s| s.to_string())
            .chain(["--store".into(), dir.display().to_string()]),
    )
}

const EVERY_COMMAND: &[&[&str]] = &[
    &["queue", "ls"],
    &["queue", "show", "1"],
    &["queue", "retry", "1"],
    &["queue", "purge", "--all", "--yes"],
    &["queue", "export"],
    &["dead-letters"],
];

#[test]
fn a_store_the_service_holds_is_refused_with_the_lock_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let service = service();
    service.block_on(async {
        let runtime = Runtime::embedded(dir.path()).unwrap();
        let log = runtime.write_ahead_log();
        let write = QueuedWrite::new("crm", "add_note", "k1", serde_json::json!({"n": 1}));
        let before = log.append(&write).await.unwrap();

        for command in EVERY_COMMAND {
            let output = tokio::task::block_in_place(|| with_store(command, dir.path()));
            let err = failed(&output, 3);
            assert!(err.contains("seawall.redb"), "{command:?}: {err}");
            assert!(
                err.contains("in use by another process"),
                "{command:?}: {err}"
            );
            assert!(err.contains("status page"), "{command:?}: {err}");
            assert!(err.contains("stop the service"), "{command:?}: {err}");
            assert!(output.stdout.is_empty(), "{command:?} printed something");
        }

        // The service goes on as if nothing happened.
        let write = QueuedWrite::new("crm", "add_note", "k2", serde_json::json!({"n": 2}));
        let after = log.append(&write).await.unwrap();
        assert!(after > before);
        assert_eq!(log.pending("crm", 10).await.unwrap().len(), 2);
        drop(runtime);
    });
    drop(service);

    // Once it stopped, the tool reads both writes.
    let out = ok(&with_store(&["queue", "ls"], dir.path()));
    assert!(out.contains("crm ") && out.contains("add_note"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("add_note")).count(),
        2,
        "{out}"
    );
}

#[test]
fn an_empty_a_damaged_and_a_missing_store_are_clear_errors_not_panics() {
    // Empty.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("seawall.redb"), b"").unwrap();
    for command in EVERY_COMMAND {
        let err = failed(&with_store(command, empty.path()), 1);
        assert!(
            err.contains("seawall.redb") && err.contains("empty"),
            "{command:?}: {err}"
        );
    }

    // Damaged: garbage where the database was.
    let damaged = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(damaged.path().join("seawall.redb"), garbage).unwrap();
    for command in EVERY_COMMAND {
        let err = failed(&with_store(command, damaged.path()), 1);
        assert!(err.contains("seawall.redb"), "{command:?}: {err}");
    }

    // A real store whose file was truncated to half.
    let cut = tempfile::tempdir().unwrap();
    {
        let service = service();
        service.block_on(async {
            let runtime = Runtime::embedded(cut.path()).unwrap();
            for n in 0..50 {
                let write = QueuedWrite::new(
                    "crm",
                    "add_note",
                    format!("k{n}"),
                    serde_json::json!({"n": n}),
                );
                runtime.write_ahead_log().append(&write).await.unwrap();
            }
        });
    }
    let file = cut.path().join("seawall.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for command in [&["queue", "ls"][..], &["queue", "export"]] {
        let output = with_store(command, cut.path());
        let err = failed(&output, 1);
        assert!(err.contains("seawall.redb"), "{command:?}: {err}");
    }

    // Missing: no store in the directory.
    let missing = tempfile::tempdir().unwrap();
    let err = failed(&with_store(&["queue", "ls"], missing.path()), 1);
    assert!(err.contains("no seawall store here"), "{err}");
    assert!(
        !missing.path().join("seawall.redb").exists(),
        "a read created a store"
    );
}

#[test]
fn a_store_that_is_not_the_one_the_directory_held_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let service = service();
    service.block_on(async {
        drop(Runtime::embedded(dir.path()).unwrap());
        drop(Runtime::embedded(other.path()).unwrap());
    });
    std::fs::copy(
        other.path().join("seawall.redb"),
        dir.path().join("seawall.redb"),
    )
    .unwrap();
    let err = failed(&with_store(&["queue", "ls"], dir.path()), 1);
    assert!(err.contains("copied from elsewhere"), "{err}");
}

/// In child mode (the parent sets `CHILD_DIR`): a service that queues a
/// write and then waits to be killed.
#[test]
fn child_service() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let service = service();
    service.block_on(async {
        let runtime = Runtime::embedded(&dir).unwrap();
        let write = QueuedWrite::new("crm", "add_note", "k1", serde_json::json!({"n": 1}));
        runtime.write_ahead_log().append(&write).await.unwrap();
        // Straight to the process's stdout, past libtest's capture.
        let mut stdout = std::io::stdout();
        stdout.write_all(b"\nseawall-child-ready\n").unwrap();
        stdout.flush().unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[test]
fn a_store_left_by_a_killed_service_is_read_after_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_service",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("seawall-child-ready") => break,
            Some(Ok(_)) => continue,
            other => panic!("the child ended before it was ready: {other:?}"),
        }
    }
    // While it runs: refused.
    failed(&with_store(&["queue", "ls"], dir.path()), 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let output = with_store(&["queue", "ls"], dir.path());
    if output.status.success() {
        // redb found nothing to recover: the write is there.
        assert!(String::from_utf8_lossy(&output.stdout).contains("add_note"));
    } else {
        let err = failed(&output, 1);
        assert!(
            err.contains("not closed cleanly") && err.contains("--recover"),
            "{err}"
        );
    }
    let out = ok(&with_store(&["queue", "ls", "--recover"], dir.path()));
    assert!(out.contains("add_note"), "{out}");
    // Recovered: a read-only open works from now on.
    let out = ok(&with_store(&["queue", "ls"], dir.path()));
    assert!(out.contains("add_note"), "{out}");
}
