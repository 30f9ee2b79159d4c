//! `wasi-cache run`: builds the cache (the embedded engine, or Redis with `--redis`), the
//! wasmtime engine and linker, instantiates the component as a `wasi:cli/command` and runs it,
//! mapping its outcome to an exit code (exit code 2 too for a run that exceeded `--timeout`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wasi_cache_engine::Backend;
use wasmtime::{Engine, Error, Result};
use wasmtime_wasi::{I32Exit, WasiCtx};

use crate::args::{RunArgs, format_duration};
use crate::common::{self, EXIT_USAGE, InstanceState, setup_error};
use crate::flavour::{self, Flavour};
use crate::{limits, panic};
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
    let runtime = match common::start(&args.common) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let backend = match common::backend(&args.common, &runtime) {
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
        common::report_stats(&args.common, &*backend);
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
    let mut store = common::new_store(&engine, &args.common, backend, wasi_ctx(args), deadline);
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
    let pre = common::instantiate_pre(&args.common, path, false)?;
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
    let mut argv = vec![common::argv0(args.component())];
    argv.extend(args.args().iter().cloned());
    common::wasi_ctx(&args.common, &argv)
}
