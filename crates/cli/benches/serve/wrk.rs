//! Driving one URL with `wrk` (run as a child process, killed if the bench unwinds while it
//! runs) and reading its `--latency` report.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How hard `wrk` drives a URL.
#[derive(Debug, Clone)]
pub struct Load {
    /// `-t`: wrk's threads.
    pub threads: usize,
    /// `-c`: connections kept open, each with one request in flight.
    pub connections: usize,
    /// `-d`: how long it runs, in wrk's notation (`10s`, `1m`).
    pub duration: String,
}

/// What one `wrk` run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Completed requests.
    pub requests: u64,
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Responses with a status outside 2xx and 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors together.
    pub socket_errors: u64,
}

/// Whether a `wrk` executable is on `PATH`.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join("wrk"))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `wrk --latency` against `url` under `load` and reads its report; panics with wrk's
/// output if the run fails or the report cannot be read.
pub fn run(load: &Load, url: &str) -> Report {
    let child = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}", load.duration))
        .arg("--latency")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot run wrk");
    let mut wrk = KillOnDrop(child);
    let mut out = String::new();
    wrk.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = wrk.0.wait().unwrap();
    assert!(status.success(), "wrk {url} failed ({status}):\n{out}");
    parse(&out).unwrap_or_else(|| panic!("cannot read wrk's report:\n{out}"))
}

/// A child process killed (and reaped) when dropped, should it still run.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads wrk 4's report: `Requests/sec:`, the `50%` and `99%` lines of the latency
/// distribution, and the error lines it prints only when there were errors.
fn parse(out: &str) -> Option<Report> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in out.lines().map(str::trim) {
        if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.parse().ok();
        } else if let Some(value) = line.strip_prefix("Requests/sec:") {
            rps = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("50%") {
            p50 = duration(value.trim());
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = duration(value.trim());
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = value.trim().parse().ok()?;
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for count in counts.split(',') {
                socket_errors += count.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
    }
    Some(Report {
        requests: requests?,
        rps: rps?,
        p50: p50?,
        p99: p99?,
        non_2xx,
        socket_errors,
    })
}

/// A wrk duration: a number and a unit among `us`, `ms`, `s`, `m`, `h`.
fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}
