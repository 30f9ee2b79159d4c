//! `wasi-cache`: runs a WASI command component with `wasi:keyvalue/cache` served by the embedded
//! cache engine, or by Redis with `--redis URL`. See `wasi-cache run --help`.
//!
//! Exit codes: the component's own (`exit(n)` → n, returning `ok` → 0, returning `err` → 1);
//! 1 when the component traps (one `error: …` line on stderr); 2 for every error before the
//! component runs (bad options, unreadable file, not a component, missing imports, Redis
//! unreachable).

mod args;
mod run;
mod stats;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return args::report_clap_error(err),
    };
    match cli.command {
        args::Command::Run(run_args) => run::main(&run_args),
    }
}
