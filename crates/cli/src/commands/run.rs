//! `wasi-cache run`: its options ([`RunArgs`]) and its `main`, which builds the cache (the
//! embedded engine, or Redis with `--redis`), the wasmtime engine and linker, instantiates the
//! component as a `wasi:cli/command` and runs it, mapping its outcome to an exit code (exit
//! code 2 too for a run that exceeded `--timeout`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use wasi_cache_engine::Backend;
use wasmtime::{Engine, Error, Result};
use wasmtime_wasi::{I32Exit, WasiCtx};

use crate::exit::{self, EXIT_USAGE, setup_error};
use crate::flavour::{self, Flavour};
use crate::options::CommonArgs;
use crate::options::duration::{format_duration, parse_duration};
use crate::store::{self, InstanceState};
use crate::{backend, limits, linker, panic, startup, wasi_ctx};

/// The end of `wasi-cache run --help`: examples, the cache, the limits, the component's
/// arguments and environment, the exit status.
pub const EXAMPLES: &str = "\
Examples:
  wasi-cache run app.wasm
  wasi-cache run --stats --capacity 64MiB --namespace tenant-a app.wasm --verbose input.txt
  wasi-cache run --vacancy-timeout 500ms --max-value-size 1MiB --env RUST_LOG=debug app.wasm
  wasi-cache run --redis redis://127.0.0.1:6379/0 --namespace tenant-a --stats app.wasm
  wasi-cache run --redis rediss://cache.internal:6380/0 --redis-ca-cert ca.pem app.wasm
  wasi-cache run --redis-cluster redis://10.0.0.1:7000,redis://10.0.0.2:7000 app.wasm
  wasi-cache run --max-memory 256MiB --max-resources 10000 --timeout 30s app.wasm

With --redis, the cache lives in Redis (6 or later) and is shared by every process on the
same server: their get-or-set calls on one key (same --namespace) wait for one fill. Redis
does its own eviction (--capacity does not apply); a crashed holder's vacancy passes to a
waiter after --vacancy-timeout. --redis-cluster does the same on a Redis Cluster (7 or later):
each key lives on one shard, and a shard that is down fails only the operations on its keys.

An untrusted component is held within --max-memory (its linear memory), --max-resources
(handles it holds at once), --memory-budget (host memory it makes the cache hold),
--max-live-futures and, when given, --timeout (wall clock from instantiation on). Growing
memory past its cap fails inside the component (a Rust component aborts: a trap); one
resource too many traps the component; the timeout ends the run.

Everything after COMPONENT is passed to the component (its argv[0] is the file's name).
The component inherits stdin, stdout and stderr; it sees no files, and no environment
variables but those given with --env. Sizes take KiB, MiB, GiB, TiB, KB, MB, GB, TB or plain
bytes (at most 256TiB); durations take ns, us, ms, s, m or h (at most 365 days).

Exit status: the component's own exit code (returning normally is 0, returning an error
is 1); 1 when it traps (a limit it ran into included); 2 when it cannot be run (bad option,
unreadable file, not a component, an import this host does not provide, Redis unreachable or
its TLS handshake refused) or when it exceeds --timeout.";

/// Options of `wasi-cache run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cache, the per-instance limits, the environment and `--stats`.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Longest the component may run, wall clock from its instantiation on (compiling does not
    /// count), whether it computes or waits; then the run ends with exit code 2. No limit unless
    /// given (0 means none too).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// The component to run (a .wasm file built for wasm32-wasip2), then its arguments.
    ///
    /// Everything from COMPONENT on belongs to the component, options included.
    #[arg(
        value_name = "COMPONENT",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub component_and_args: Vec<String>,
}

impl RunArgs {
    /// The component's path.
    pub fn component(&self) -> &Path {
        Path::new(&self.component_and_args[0])
    }

    /// The arguments passed to the component after its argv[0].
    pub fn args(&self) -> &[String] {
        &self.component_and_args[1..]
    }

    /// The run's time limit: `--timeout`, unless absent or zero.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout.filter(|limit| !limit.is_zero())
    }
}

/// Exit code of a component that trapped, or returned an error from `run`.
const EXIT_FAILURE: u8 = 1;

/// How a run ended.
enum Outcome {
    /// The component could not be run; nothing of it executed.
    Setup(Error),
    /// The component ran and ended with this exit code.
    Exited(i32),
    /// The component trapped, for this reason (one line).
    Trapped(String),
    /// The component was still running when its time limit, this long, passed.
    TimedOut(Duration),
}

/// Runs `wasi-cache run` and returns the process's exit code.
pub fn main(args: &RunArgs) -> ExitCode {
    let runtime = match startup::start(&args.common) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let backend = match backend::backend(&args.common, &runtime) {
        Ok(backend) => backend,
        Err(err) => return setup_error(&err),
    };
    let outcome = runtime.block_on(run(args, backend.clone()));
    // Lets the backend calls the component left behind finish before the runtime stops: the
    // release of a vacancy it held when it exited, trapped or timed out (so a waiter elsewhere
    // need not wait for the vacancy timeout) and writes whose futures it dropped.
    runtime.block_on(backend.settle(args.common.redis_timeout));
    // Backend calls of futures the component left behind must not outlive the report.
    drop(runtime);
    if !matches!(outcome, Outcome::Setup(_)) {
        exit::report_stats(&args.common, &*backend);
    }
    let component = args.component().display();
    match outcome {
        Outcome::Setup(err) => setup_error(&err),
        Outcome::Exited(code) => exit_code(code),
        Outcome::Trapped(reason) => {
            eprintln!("error: {component} trapped: {reason}");
            ExitCode::from(EXIT_FAILURE)
        }
        Outcome::TimedOut(limit) => {
            eprintln!(
                "error: {component} exceeded the --timeout of {}",
                format_duration(limit)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The component's exit code as the process's (wasi exit codes are 0..=255).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILURE))
}

/// Where a run failed.
enum Failure {
    /// Instantiating the component (its memories, tables, start functions).
    Instantiate(Error),
    /// Its `wasi:cli/run#run`.
    Run(Error),
}

async fn run(args: &RunArgs, backend: Arc<dyn Backend>) -> Outcome {
    let (engine, pre) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(err) => return Outcome::Setup(err),
    };
    // The clock starts once the component is compiled and linked.
    let limit = args.time_limit();
    let deadline = limits::deadline(limit);
    let _ticker = match deadline.map(|_| limits::EpochTicker::start(&engine)) {
        Some(Err(err)) => return Outcome::Setup(err),
        ticker => ticker,
    };
    let mut store = store::new_store(&engine, &args.common, backend, wasi_ctx(args), deadline);
    let call = panic::catch(async {
        match pre {
            CommandPre::P2(pre) => {
                let command = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                command
                    .wasi_cli_run()
                    .call_run(&mut store)
                    .await
                    .map_err(Failure::Run)
            }
            CommandPre::P3(pre) => {
                let command = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                // A WASI 0.3 `run` is an async export: it runs in the store's event loop.
                store
                    .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
                    .await
                    .and_then(|result| result)
                    .map_err(Failure::Run)
            }
        }
    });
    // The epoch callback stops a component that computes; this stops one blocked in a host
    // call (on a pollable, say), which runs no code that could check the epoch.
    let finished = limits::within(deadline, call).await;
    let limit = limit.unwrap_or_default();
    match finished {
        None => Outcome::TimedOut(limit),
        Some(Err(panic)) => Outcome::Trapped(format!("host panicked: {panic}")),
        Some(Ok(Ok(Ok(())))) => Outcome::Exited(0),
        Some(Ok(Ok(Err(())))) => Outcome::Exited(i32::from(EXIT_FAILURE)),
        Some(Ok(Err(Failure::Run(err) | Failure::Instantiate(err))))
            if limits::is_deadline(&err) =>
        {
            Outcome::TimedOut(limit)
        }
        Some(Ok(Err(Failure::Instantiate(err)))) => Outcome::Setup(Error::msg(format!(
            "cannot instantiate {}: {}",
            args.component().display(),
            limits::explain(&err, &store.data().cache, &args.common)
        ))),
        Some(Ok(Err(Failure::Run(err)))) => match err.downcast_ref::<I32Exit>() {
            Some(exit) => Outcome::Exited(exit.0),
            None => Outcome::Trapped(limits::explain(&err, &store.data().cache, &args.common)),
        },
    }
}

/// A linked command component of either flavour, ready to instantiate.
enum CommandPre {
    /// It exports `wasi:cli/run@0.2.x`.
    P2(wasmtime_wasi::p2::bindings::CommandPre<InstanceState>),
    /// It exports `wasi:cli/run@0.3.0`.
    P3(wasmtime_wasi::p3::bindings::CommandPre<InstanceState>),
}

/// Loads and checks the component, and links WASI and the cache, on an engine set up for the
/// options' limits; runs it as the WASI 0.2 or 0.3 command it is.
fn prepare(args: &RunArgs) -> Result<(Engine, CommandPre)> {
    let path = args.component();
    let pre = linker::instantiate_pre(&args.common, path, false, None)?;
    let engine = pre.engine().clone();
    let not_a_command = |why: String| {
        Error::msg(format!(
            "{} is not a wasi:cli/command component: {why}",
            path.display()
        ))
    };
    let pre = match flavour::command(pre.component(), &engine).map_err(not_a_command)? {
        Flavour::P2 => wasmtime_wasi::p2::bindings::CommandPre::new(pre).map(CommandPre::P2),
        Flavour::P3 => wasmtime_wasi::p3::bindings::CommandPre::new(pre).map(CommandPre::P3),
    }
    .map_err(|err| not_a_command(format!("its wasi:cli/run does not match: {err}")))?;
    Ok((engine, pre))
}

/// WASI for the component: inherited stdio, its file's name and the given arguments, the
/// environment of `--env`, no files.
fn wasi_ctx(args: &RunArgs) -> WasiCtx {
    let mut argv = vec![wasi_ctx::argv0(args.component())];
    argv.extend(args.args().iter().cloned());
    wasi_ctx::wasi_ctx(&args.common, &argv)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use clap::Parser;

    use crate::commands::{Cli, Command, run_args};

    #[test]
    fn timeout_zero_means_none() {
        assert_eq!(run_args(&["--timeout", "0"]).time_limit(), None);
        assert_eq!(run_args(&["--timeout", "0s"]).time_limit(), None);
        assert_eq!(
            run_args(&["--timeout", "5s"]).time_limit(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn component_args_are_passed_through() {
        let cli = Cli::try_parse_from([
            "wasi-cache",
            "run",
            "--stats",
            "x.wasm",
            "--stats",
            "-v",
            "a",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.common.stats);
        assert_eq!(args.component(), Path::new("x.wasm"));
        assert_eq!(args.args(), ["--stats", "-v", "a"]);
    }
}
