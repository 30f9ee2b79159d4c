//! The commands of `wasi-cache`: the command line ([`Cli`], clap derive; a bad one is one
//! `error:` line: [`report_clap_error`]) and its commands [`run`], [`serve`] and [`compile`],
//! each of which keeps its own options beside its `main`; the options `run` and `serve` share
//! are [`crate::options::CommonArgs`].

pub mod compile;
pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The end of `wasi-cache --help`: examples and the forms of sizes and durations.
const EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm
  wasi-cache serve --env UPSTREAM=http://127.0.0.1:9000 --allow-outbound 127.0.0.1:9000 proxy.wasm

Sizes take KiB, MiB, GiB, TiB (powers of 1024), KB, MB, GB, TB (powers of 1000) or plain
bytes; durations take ns, us, ms, s, m or h (e.g. 300ms, 30s, 2m).";

/// `wasi-cache`: WebAssembly components with a cache.
#[derive(Debug, Parser)]
#[command(name = "wasi-cache", version, after_help = EXAMPLES)]
#[command(
    about = "Runs WebAssembly components with wasi:keyvalue/cache served by an embedded cache or Redis"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a wasi:cli/command component with WASI 0.2 and wasi:keyvalue/cache.
    #[command(after_help = run::EXAMPLES)]
    Run(Box<run::RunArgs>),
    /// Serve a wasi:http/proxy or wasi:http/service component over HTTP/1.1, each request in a
    /// fresh or reused instance, all sharing one cache.
    #[command(after_help = serve::EXAMPLES)]
    // Run and Serve are boxed: they hold many more options than Compile.
    Serve(Box<serve::ServeArgs>),
    /// Compile a component ahead of time into a .cwasm file that `run` and `serve` load without
    /// compiling (for this version of wasi-cache on this kind of machine only).
    Compile(compile::CompileArgs),
}

/// Prints a clap error as one `error: …` line and returns exit code 2; help and version go to
/// stdout with exit code 0.
pub fn report_clap_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!("{}", one_line(&err.render().to_string()));
    ExitCode::from(2)
}

/// Folds clap's multi-line error text into one line, dropping the usage and hint paragraphs.
pub(crate) fn one_line(text: &str) -> String {
    let body = text
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    if body.starts_with("error:") {
        body
    } else {
        format!("error: {body}")
    }
}

#[cfg(test)]
/// The `run` options parsed from `options` (then `x.wasm`).
pub(crate) fn run_args(options: &[&str]) -> run::RunArgs {
    let argv = ["wasi-cache", "run"]
        .iter()
        .chain(options)
        .chain(&["x.wasm"]);
    let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not run")
    };
    *args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_errors_fold_into_one_line() {
        let err =
            Cli::try_parse_from(["wasi-cache", "run", "--capacity", "lots", "x.wasm"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(line.starts_with("error: invalid value 'lots'"), "{line}");
        assert!(!line.contains('\n'));
        let err = Cli::try_parse_from(["wasi-cache", "run"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            line.starts_with("error: ") && line.contains("<COMPONENT>"),
            "{line}"
        );
        Cli::command().debug_assert();
    }
}
