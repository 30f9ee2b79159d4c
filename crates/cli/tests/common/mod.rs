//! What the CLI's integration tests share: running `wasi-cache` to its end ([`wasi_cache`]) or
//! in the background ([`Proc`]), scratch space, talking to a test Redis server directly,
//! `wasi-cache run --redis` scenarios ([`redis_runs`]), and the `serve` tests' client and server
//! ([`serve`]).
// Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub mod http;

pub mod redis_runs;

pub mod serve;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a process may take to start and reach its first output (it compiles the component).
pub const STARTUP: Duration = Duration::from_secs(60);

/// The host end-to-end guest's scenarios that must pass through the CLI, on any backend.
/// `busy-poll` and `busy-ready` read 200 waiters' results by spinning, never blocking.
pub const HOST_SCENARIOS: [&str; 7] = [
    "basic",
    "errors",
    "streams",
    "get-or-set",
    "futures",
    "busy-poll",
    "busy-ready",
];

/// The limits and namespace those scenarios expect (their `errors` case probes the limits).
pub const HOST_SCENARIO_OPTIONS: [&str; 6] = [
    "--max-key-size",
    "1KiB",
    "--max-value-size",
    "4KiB",
    "--namespace",
    "cli",
];

/// Scratch space of this test run (cargo's temporary directory for integration tests).
pub fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The memo example's component, built once per test binary.
pub fn memo_wasm() -> &'static Path {
    static WASM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    WASM.get_or_init(|| wasi_cache_guest_build::build(wasi_cache_guest_build::MEMO, tmp()))
}

/// Asserts that `run` is a successful run of the memo example: 32 callers on each of three
/// keys made one computation per key, the others waited for it, then a hit and a miss.
pub fn assert_memo_ran(run: &Run) {
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout.matches("32 callers, 1 computation (").count(),
        3,
        "{run:#?}"
    );
    assert_eq!(run.stdout.matches("), 31 waited").count(), 3, "{run:#?}");
    assert!(
        run.stdout.contains("get nth-prime:10000: hit (104729)"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("get nth-prime:1: miss"), "{run:#?}");
    assert!(
        run.stdout
            .contains("total: 96 get-or-set calls, 3 computations, 93 served by the rendezvous"),
        "{run:#?}"
    );
}

/// What one run of `wasi-cache` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wasi-cache ARGS…` to its end.
pub fn wasi_cache<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_wasi-cache"))
        .args(args)
        .output()
        .expect("cannot run wasi-cache");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A running `wasi-cache` process: its stdout arrives line by line, its stderr is collected,
/// its stdin stays open until [`Proc::send_line`] or drop. Killed on drop.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a [`Proc`] ended: its status, when it was seen ending, and its output.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    pub at: Instant,
    pub stdout: String,
    pub stderr: String,
}

impl Proc {
    /// Starts `wasi-cache ARGS…`.
    pub fn spawn<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasi-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run wasi-cache");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits (at most `limit`) for the stdout line `want`; panics with the output so far if
    /// it does not come.
    pub fn expect_line(&mut self, want: &str, limit: Duration) {
        self.next_line(want, |line| line == want, limit);
    }

    /// Waits (at most `limit`) for a stdout line starting with `prefix` and returns it; panics
    /// with the output so far if none comes.
    pub fn expect_line_with(&mut self, prefix: &str, limit: Duration) -> String {
        self.next_line(prefix, |line| line.starts_with(prefix), limit)
    }

    /// Waits (at most `limit`) for a stdout line that `matches` and returns it; panics naming
    /// `what` with the output so far if none comes.
    fn next_line(&mut self, what: &str, matches: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = matches(&line);
                    self.stdout.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what:?} line within {limit:?}: {:?}", self.stdout)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "stdout closed before {what:?}: {:?}, stderr {:?}",
                        self.stdout,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -s TERM failed");
    }

    /// The process's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The stderr collected so far (all of it once the process has ended).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Writes one line to the process's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (at most `limit`) for the process to end; panics (killing it) if it does not.
    pub fn wait(mut self, limit: Duration) -> Ended {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}: stdout {:?}",
                self.stdout
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let at = Instant::now();
        self.stdin.take();
        // The process is gone: its pipes close, so the readers finish.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let mut stdout = self.stdout.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        Ended {
            status,
            at,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command to the Redis server at `port` (inline protocol) and returns its raw reply.
pub fn redis_command(port: u16, command: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// What a TLS handshake with a Redis server signed by a CA the client does not trust fails with.
pub const UNKNOWN_CA: &str = "TLS handshake with Redis failed: certificate verify failed: the \
                              server's certificate is signed by an unknown CA";

/// Writes to `path` the certificate of a CA that signed no test server (for `--redis-ca-cert`).
pub fn write_unrelated_ca_cert(path: &Path) {
    wasi_cache_redis_server::TestCa::new("unrelated CA").write_cert(path);
}

/// Asserts that `stderr`, the error output of `run`, says the server's certificate is signed by
/// a CA that `wasi-cache` does not trust ([`UNKNOWN_CA`]).
pub fn assert_unknown_ca(stderr: &str, run: &impl std::fmt::Debug) {
    assert!(stderr.contains(UNKNOWN_CA), "{run:#?}");
}

/// Whether some client of the server at `port` subscribes to a key's channel: a get-or-set
/// waiter does before it waits (holders never subscribe). The probe channel every process
/// subscribes to for a moment at start-up does not count.
pub fn someone_waits(port: u16) -> bool {
    // A RESP array of bulk strings: `*N`, then `$LEN` and the name for each channel.
    redis_command(port, "PUBSUB CHANNELS wc:*")
        .split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty() && !line.starts_with('$'))
        .any(|name| !is_probe_channel(name))
}

/// Whether `name` is the backend's probe channel, `wc:{<16 hex digits>}c<db>:` (a key's channel
/// goes on after the colon).
fn is_probe_channel(name: &str) -> bool {
    name.get("wc:{0123456789abcdef}".len()..)
        .and_then(|rest| rest.strip_prefix('c'))
        .and_then(|rest| rest.strip_suffix(':'))
        .is_some_and(|db| db.bytes().all(|b| b.is_ascii_digit()))
}

impl Ended {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}
