//! How a command ends before or after its component: the exit code of errors before the
//! component runs ([`EXIT_USAGE`]), the one `error: …` line they print ([`setup_error`]), and
//! the `--stats` report ([`report_stats`]).

use std::process::ExitCode;

use wasi_cache_engine::Backend;
use wasmtime::Error;

use crate::options::CommonArgs;
use crate::{compiled, stats};

/// Exit code of errors before the component runs (bad options, bad file, missing imports,
/// Redis unreachable, an address in use).
pub const EXIT_USAGE: u8 = 2;

/// Prints `err` as one `error: …` line and returns [`EXIT_USAGE`].
pub fn setup_error(err: &Error) -> ExitCode {
    eprintln!("error: {}", one_line(&format!("{err:#}")));
    ExitCode::from(EXIT_USAGE)
}

/// Joins the lines of an error message so that it prints as one line.
pub fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the backend's counters, and what the compilation cache did, to stderr when `--stats`
/// was given.
pub fn report_stats(args: &CommonArgs, backend: &dyn Backend) {
    if args.stats {
        let line = stats::render(&backend.stats(), args.uses_redis());
        match compiled::report() {
            Some(compile) => eprintln!("{line} {compile}"),
            None => eprintln!("{line}"),
        }
    }
}
