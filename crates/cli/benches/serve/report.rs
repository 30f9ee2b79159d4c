//! The bench's output: a table per section on stderr, and the machine-readable `RATIO` and
//! `STAMPEDE` lines on stdout.

use std::time::Duration;

use crate::stampede::Outcome;
use crate::wrk::{Load, Report};

/// One load case: what it measures and its runs, one per round.
pub struct Case {
    /// Short name, used in the `RATIO` lines (`hit`, `constant`, `upstream`).
    pub name: &'static str,
    /// What is driven, for the table.
    pub what: &'static str,
    /// The URL `wrk` drives.
    pub url: String,
    /// The process that answers (whose CPU time a run counts).
    pub pid: u32,
    /// One run per round.
    pub runs: Vec<Run>,
}

/// One timed run of a case.
pub struct Run {
    /// What `wrk` measured.
    pub wrk: Report,
    /// The answering process's CPU time (user and system) per completed request.
    pub cpu: Duration,
}

impl Case {
    /// The highest requests/s of the rounds: the run least disturbed by other load.
    fn best_rps(&self) -> f64 {
        self.sorted(|run| run.wrk.rps).pop().unwrap_or_default()
    }

    fn median_rps(&self) -> f64 {
        median(&self.sorted(|run| run.wrk.rps))
    }

    /// The lowest `time` of the rounds.
    fn best(&self, time: fn(&Run) -> Duration) -> Duration {
        self.sorted(time).first().copied().unwrap_or_default()
    }

    fn median(&self, time: fn(&Run) -> Duration) -> Duration {
        median(&self.sorted(time))
    }

    fn sorted<T: PartialOrd>(&self, value: impl Fn(&Run) -> T) -> Vec<T> {
        let mut values: Vec<T> = self.runs.iter().map(value).collect();
        values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        values
    }
}

fn p50(run: &Run) -> Duration {
    run.wrk.p50
}

fn p99(run: &Run) -> Duration {
    run.wrk.p99
}

fn cpu(run: &Run) -> Duration {
    run.cpu
}

/// The middle value of `sorted` (the lower of the middle two for an even count).
fn median<T: Copy + Default>(sorted: &[T]) -> T {
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn ms(latency: Duration) -> String {
    format!("{:.2}", latency.as_secs_f64() * 1e3)
}

fn us(time: Duration) -> String {
    format!("{:.0}", time.as_secs_f64() * 1e6)
}

/// Prints the load cases' table to stderr.
pub fn load_table(cases: &[Case], load: &Load, rounds: usize) {
    eprintln!(
        "\n#### wrk -t{} -c{} -d{} --latency, {rounds} round(s) after a warm-up, cases alternating\n",
        load.threads, load.connections, load.duration
    );
    let header = format!(
        "{:<17} {:<38} {:>9} {:>10} {:>8} {:>10} {:>8} {:>10} {:>10} {:>7} {:>7}",
        "case",
        "what",
        "rps best",
        "rps median",
        "p50 best",
        "p50 median",
        "p99 best",
        "p99 median",
        "CPU us/req",
        "non-2xx",
        "sockerr"
    );
    eprintln!("{header}");
    eprintln!("{}", "-".repeat(header.len()));
    for case in cases {
        let non_2xx: u64 = case.runs.iter().map(|run| run.wrk.non_2xx).sum();
        let socket_errors: u64 = case.runs.iter().map(|run| run.wrk.socket_errors).sum();
        eprintln!(
            "{:<17} {:<38} {:>9.0} {:>10.0} {:>8} {:>10} {:>8} {:>10} {:>10} {:>7} {:>7}",
            case.name,
            case.what,
            case.best_rps(),
            case.median_rps(),
            ms(case.best(p50)),
            ms(case.median(p50)),
            ms(case.best(p99)),
            ms(case.median(p99)),
            us(case.median(cpu)),
            non_2xx,
            socket_errors
        );
    }
    eprintln!(
        "(latencies in ms; CPU: the answering process's user+system time per request, median \
         of the rounds: the server for hit and constant, this bench's upstream for upstream)"
    );
}

/// Prints the `RATIO` lines of `ours` against each peer to stdout (`case=NAME_rps`, `_p50`,
/// `_p99`): requests/s as ours/peer, latencies as peer/ours (above 1, ours is better), all
/// from the best rounds. Returns the requests/s ratio against `goal_peer`.
pub fn ratios(ours: &Case, peers: &[&Case], goal_peer: &str) -> f64 {
    let mut goal = f64::NAN;
    for peer in peers {
        let rps = ours.best_rps() / peer.best_rps();
        if peer.name == goal_peer {
            goal = rps;
        }
        let name = ours.name;
        println!("RATIO case={name}_rps peer={} value={rps:.3}", peer.name);
        for (case, latency) in [("p50", p50 as fn(&Run) -> Duration), ("p99", p99)] {
            let value = peer.best(latency).as_secs_f64() / ours.best(latency).as_secs_f64();
            println!(
                "RATIO case={name}_{case} peer={} value={value:.3}",
                peer.name
            );
        }
    }
    goal
}

/// `ours`'s best p50 and p99 over `peer`'s (above 1: `ours` is slower).
pub fn latency_over(ours: &Case, peer: &Case) -> (f64, f64) {
    let over =
        |time: fn(&Run) -> Duration| ours.best(time).as_secs_f64() / peer.best(time).as_secs_f64();
    (over(p50), over(p99))
}

/// What the upstream saw of the stampede's path.
pub struct UpstreamSide {
    /// Requests it received for the path (1 when the rendezvous works).
    pub requests: usize,
    /// How long after the release the first of them arrived.
    pub first_after: Option<Duration>,
}

/// Prints the stampede's table to stderr and its `STAMPEDE` line to stdout; returns whether
/// every request was answered within `bound`.
pub fn stampede(outcome: &Outcome, upstream: &UpstreamSide, bound: Duration) -> bool {
    let n = outcome.replies.len();
    let [first, p50, p99, max] = [0.0, 0.5, 0.99, 1.0].map(|share| outcome.percentile(share));
    let within = max <= bound;
    let by_cache = outcome
        .by_cache()
        .iter()
        .map(|(how, count)| format!("{how}:{count}"))
        .collect::<Vec<_>>()
        .join(",");
    let upstream_at = upstream.first_after.map_or("-".to_owned(), ms);
    eprintln!("\n#### Cold stampede: {n} concurrent GETs of one new path, one connection each\n");
    let header = format!(
        "{:>8} {:>8} {:>11} {:>5} {:<18} {:>8} {:>7} {:>7} {:>7} {:>16}",
        "requests",
        "upstream",
        "upstream at",
        "200s",
        "x-cache",
        "first ms",
        "p50 ms",
        "p99 ms",
        "max ms",
        "max <= bound"
    );
    eprintln!("{header}");
    eprintln!("{}", "-".repeat(header.len()));
    eprintln!(
        "{n:>8} {:>8} {upstream_at:>11} {:>5} {by_cache:<18} {:>8} {:>7} {:>7} {:>7} {:>16}",
        upstream.requests,
        outcome.ok(),
        ms(first),
        ms(p50),
        ms(p99),
        ms(max),
        format!("{within} ({} ms)", bound.as_millis())
    );
    eprintln!(
        "(upstream: requests the upstream received for the path; upstream at: ms after the release)"
    );
    println!(
        "STAMPEDE requests={n} upstream_requests={} upstream_at_ms={upstream_at} ok={} \
         x_cache={by_cache} first_ms={} p50_ms={} p99_ms={} max_ms={} bound_ms={} \
         within_bound={within}",
        upstream.requests,
        outcome.ok(),
        ms(first),
        ms(p50),
        ms(p99),
        ms(max),
        bound.as_millis()
    );
    within
}
