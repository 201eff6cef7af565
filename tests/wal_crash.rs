//! Crash test for the write-ahead log: a child process appends writes and
//! acknowledges each one once `append` has returned (the write is on disk);
//! the parent kills it with SIGKILL at a random moment, opens the same
//! directory, and checks that every acknowledged write is in the log exactly
//! once and that the log holds its writes in the order they were queued.
//!
//! The child is this same test binary, started with `child <dir> <count>`.
//! `SEAWALL_CRASH_KILLS` sets how many kill points one run makes (default 5).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use seawall::Runtime;
use seawall::wal::QueuedWrite;

const WRITES: u64 = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(Path::new(&args[2]), args[3].parse().expect("a count"));
        return;
    }
    let kills: u64 = std::env::var("SEAWALL_CRASH_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut failed = 0;
    for round in 0..kills {
        // Kill points spread over the run: after a pseudo-random number of
        // acknowledged writes (a fixed LCG, so a failure can be re-run).
        let kill_after = 1
            + (round
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                >> 33)
                % (WRITES - 1);
        match crash_round(kill_after) {
            Ok(summary) => println!("kill point {round}: {summary}"),
            Err(error) => {
                failed += 1;
                println!("kill point {round} FAILED: {error}");
            }
        }
    }
    println!("wal_crash: {} passed, {failed} failed", kills - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Appends `count` writes one after another, printing each acknowledgement.
fn child(dir: &Path, count: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let seawall = Runtime::embedded(dir).expect("the store opens");
        let log = seawall.write_ahead_log();
        let mut out = std::io::stdout().lock();
        for n in 0..count {
            let write = QueuedWrite::new(
                "telephony",
                "route",
                format!("key-{n}"),
                serde_json::json!(n),
            );
            let ticket = log.append(&write).await.expect("the append is durable");
            writeln!(out, "acked {n} {}", ticket.0).expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

fn crash_round(kill_after: u64) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("child")
        .arg(dir.path())
        .arg(WRITES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut acked = BTreeSet::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix("acked ") {
            let n: u64 = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or("a bad line")?;
            acked.insert(n);
        }
        if acked.len() as u64 >= kill_after || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no goodbye.
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pending = runtime.block_on(async {
        let seawall = Runtime::embedded(dir.path()).map_err(|e| e.to_string())?;
        let log = seawall.write_ahead_log();
        log.pending("telephony", usize::MAX)
            .await
            .map_err(|e| e.to_string())
    })?;
    let found: Vec<u64> = pending
        .iter()
        .map(|(_, write)| write.arguments.as_u64().ok_or("a bad entry"))
        .collect::<Result<_, _>>()?;
    // In queue order, each write once.
    if !found.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(format!(
            "the log is out of order or repeats a write: {found:?}"
        ));
    }
    let kept: BTreeSet<u64> = found.iter().copied().collect();
    let lost: Vec<_> = acked.difference(&kept).collect();
    if !lost.is_empty() {
        return Err(format!(
            "acknowledged writes missing after the crash: {lost:?}"
        ));
    }
    Ok(format!(
        "killed after {} acknowledged writes; {} in the log, none lost, in order",
        acked.len(),
        found.len()
    ))
}
