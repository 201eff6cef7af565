//! Redis for the fleet tests: the shared server on 127.0.0.1:6379, or a
//! private `redis-server` on a free port that a fault test may stop, kill,
//! pause or flush without disturbing anything else.
//!
//! Without a Redis server on 127.0.0.1:6379 the fleet tests skip and say
//! which, unless `SEAWALL_REQUIRE_REDIS` is set (CI sets it), in which case
//! they fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SHARED: &str = "redis://127.0.0.1:6379/";

/// Sends one inline command and returns its answer (RESP, lines joined by
/// `\n`: `+OK`, or `$1\n1` for a bulk string).
pub fn command(port: u16, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    // A bulk string may come in two pieces: read until a complete answer
    // (its last line ended) and a short silence.
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if answer.is_empty() => return Err(error),
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&answer);
        let complete = !text.starts_with('$') || text.lines().count() >= 2 || text == "$-1\r\n";
        if complete && answer.ends_with(b"\r\n") {
            break;
        }
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    Ok(String::from_utf8_lossy(&answer)
        .lines()
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The shared server's URL, or `None` (with a note on stderr) when it does
/// not answer and Redis is not required.
pub fn shared(test: &str) -> Option<&'static str> {
    match command(6379, "PING") {
        Ok(answer) if answer == "+PONG" => Some(SHARED),
        other => {
            assert!(
                std::env::var_os("SEAWALL_REQUIRE_REDIS").is_none(),
                "SEAWALL_REQUIRE_REDIS is set but Redis on 127.0.0.1:6379 does not answer: {other:?}"
            );
            skipped(&format!(
                "SKIPPED {test}: no Redis on 127.0.0.1:6379 ({other:?}). Start one \
                 (`redis-server --daemonize yes`) and run `cargo test --workspace` again."
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

/// A key prefix no other test run uses.
pub fn prefix(test: &str) -> String {
    format!("seawall-test:{test}:{:x}", rand::random::<u64>())
}

/// A private `redis-server` on a free port, killed when dropped.
pub struct Private {
    pub port: u16,
    child: Option<Child>,
}

impl Private {
    /// Starts one, or returns `None` when `redis-server` is not installed
    /// (and Redis is not required).
    pub fn start(test: &str) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        match server.launch() {
            Ok(()) => Some(server),
            Err(error) => {
                assert!(
                    std::env::var_os("SEAWALL_REQUIRE_REDIS").is_none(),
                    "SEAWALL_REQUIRE_REDIS is set but redis-server could not start: {error}"
                );
                skipped(&format!(
                    "SKIPPED {test}: redis-server could not start ({error}); install it \
                     (`apt-get install redis-server`) and run `cargo test --workspace` again."
                ));
                None
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (or restarts) the server on its port and waits for it.
    pub fn launch(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if command(self.port, "PING").is_ok_and(|answer| answer == "+PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(
            "redis-server did not answer within 10 s",
        ))
    }

    /// SIGSTOP: the server keeps its connections but answers nothing (a
    /// Redis that is slow, not gone) until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: a paused server answers again.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {signal} failed");
        }
    }

    /// SIGKILL: the server is gone at once, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.kill();
    }
}
