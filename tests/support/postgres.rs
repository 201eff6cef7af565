//! PostgreSQL for the backend's tests: the shared server on
//! 127.0.0.1:5432 (database `test`, trust auth), each test in a schema of
//! its own, or a private server (`initdb` + `pg_ctl` on a free port) that a
//! fault test may stop or kill without disturbing anything else.
//!
//! Without a server on 127.0.0.1:5432 the PostgreSQL tests skip and say
//! which, unless `SEAWALL_REQUIRE_POSTGRES` is set (CI sets it), in which
//! case they fail.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};

pub const SHARED: &str = "postgres://postgres@127.0.0.1:5432/test";

const REQUIRED: &str = "SEAWALL_REQUIRE_POSTGRES";

fn answers(port: u16) -> std::io::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).map(drop)
}

/// The shared server's URL, or `None` (with a note on stderr) when it does
/// not answer and PostgreSQL is not required.
pub fn shared(test: &str) -> Option<&'static str> {
    match answers(5432) {
        Ok(()) => Some(SHARED),
        Err(error) => {
            assert!(
                std::env::var_os(REQUIRED).is_none(),
                "{REQUIRED} is set but PostgreSQL on 127.0.0.1:5432 does not answer: {error}"
            );
            skipped(&format!(
                "SKIPPED {test}: no PostgreSQL on 127.0.0.1:5432 ({error}). Start one (database \
                 `test`, trust auth for 127.0.0.1; `.ci/run` shows how) and run `cargo test \
                 --workspace` again."
            ));
            None
        }
    }
}

/// Says a test was skipped where `cargo test` shows it: straight to the
/// process's stderr, past the test harness's capture of `eprintln!`.
fn skipped(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A schema name no other test run uses.
pub fn schema(test: &str) -> String {
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("seawall_test_{test}_{:012x}", rand::random::<u64>() >> 16)
}

/// A small pool for a test's own queries.
pub async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .expect("the test's own connection to PostgreSQL")
}

/// Drops a test's schema (and everything in it).
pub async fn drop_schema(url: &str, schema: &str) {
    let pool = connect(url).await;
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await;
    pool.close().await;
}

/// A PostgreSQL server program: on `PATH`, else in Debian's
/// `/usr/lib/postgresql/<version>/bin`, the newest first.
fn program(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from(name);
    }
    versions
        .iter()
        .rev()
        .map(|version| version.join("bin").join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether this process runs as root (the server refuses to, so it runs as
/// `postgres` then).
fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a server program, as `postgres` when this process is root.
fn run(program_name: &str, args: &[&str]) -> std::io::Result<()> {
    let program = program(program_name);
    let mut command = if root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&program);
        command
    } else {
        Command::new(&program)
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", program.display())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// A private server on a free port, in a data directory of its own; stopped
/// and deleted when dropped.
pub struct Private {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

impl Private {
    /// Creates and starts one, or returns `None` when `initdb` or `pg_ctl`
    /// cannot run (and PostgreSQL is not required).
    pub fn start(test: &str) -> Option<Self> {
        match Self::create() {
            Ok(server) => Some(server),
            Err(error) => {
                assert!(
                    std::env::var_os(REQUIRED).is_none(),
                    "{REQUIRED} is set but a private PostgreSQL could not start: {error}"
                );
                skipped(&format!(
                    "SKIPPED {test}: a private PostgreSQL could not start ({error}); install \
                     Debian's `postgresql` (initdb, pg_ctl) and run `cargo test --workspace` again."
                ));
                None
            }
        }
    }

    fn create() -> std::io::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::Builder::new().prefix("seawall-pg").tempdir()?;
        if root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other("chown postgres failed"));
            }
        }
        let data = dir.path().join("data");
        run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let mut server = Self {
            port,
            dir,
            running: false,
        };
        server.launch()?;
        Ok(server)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server and waits until it answers.
    pub fn launch(&mut self) -> std::io::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data()),
                "-o",
                &options,
                "-l",
                path(&log),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )?;
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if answers(self.port).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(
            "the private server did not answer within 10 s",
        ))
    }

    /// The server's processes: the postmaster (from `postmaster.pid`) and
    /// its children (each connection's backend, the background workers).
    fn processes(&self) -> Vec<u32> {
        let Some(postmaster) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|pid| pid.lines().next().and_then(|line| line.trim().parse().ok()))
        else {
            return Vec::new();
        };
        let mut processes = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // `pid (name) state ppid ...`; the name may hold spaces.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                processes.push(pid);
            }
        }
        processes
    }

    fn signal(&self, signal: &str) {
        for pid in self.processes() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGSTOP to every process of the server: it keeps its connections
    /// and accepts new ones into the kernel's queue, but answers nothing (a
    /// database that is slow, not gone) until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: a paused server answers again.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `pg_ctl stop -m immediate`: the server is gone at once, without a
    /// checkpoint, its connections reset (as in a crash).
    pub fn stop(&mut self) {
        if self.running {
            self.resume();
            let _ = run(
                "pg_ctl",
                &["-D", path(&self.data()), "-m", "immediate", "-w", "stop"],
            );
            self.running = false;
        }
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
    }
}
