//! `wasi-cache`: runs a WASI command component (`run`) or serves a `wasi:http/proxy` component
//! (`serve`) with `wasi:keyvalue/cache` served by the embedded cache engine, or by Redis with
//! `--redis URL`. See `wasi-cache run --help` and `wasi-cache serve --help`.
//!
//! Exit codes of `serve`: 0 after a shutdown on SIGINT or SIGTERM, 2 when it cannot start.
//! Exit codes of `run`: the component's own (`exit(n)` → n, returning `ok` → 0, returning `err` → 1);
//! 1 when the component traps (one `error: …` line on stderr; a panic of the host inside the
//! component's run is reported as its trap); 2 for every error before the component runs (bad
//! options, unreadable file, not a component, missing imports, Redis unreachable), when it
//! exceeds `--timeout`, and for an internal error of the host (a panic elsewhere, which should
//! never happen). No Rust panic message or backtrace is ever printed.

mod backend;
mod commands;
mod compiled;
mod engine;
mod exit;
mod flavour;
mod limits;
mod linker;
mod options;
mod outbound;
mod outgoing;
mod panic;
mod pooling;
mod send;
mod shared;
mod startup;
mod stats;
mod store;
mod wasi_ctx;

use std::process::ExitCode;

use clap::Parser;

use commands::{Cli, Command, compile, run, serve};

fn main() -> ExitCode {
    panic::install_hook();
    std::panic::catch_unwind(command).unwrap_or_else(|payload| {
        eprintln!(
            "error: internal error: wasi-cache panicked: {}",
            panic::message(&*payload)
        );
        ExitCode::from(2)
    })
}

/// Parses the command line and runs the command.
fn command() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return commands::report_clap_error(err),
    };
    match cli.command {
        Command::Run(args) => run::main(&args),
        Command::Serve(args) => serve::main(&args),
        Command::Compile(args) => compile::main(&args),
    }
}
