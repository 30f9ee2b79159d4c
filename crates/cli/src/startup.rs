//! What `run` and `serve` do first: check the options against each other and start the tokio
//! runtime everything else runs on ([`start`]).

use std::process::ExitCode;

use wasmtime::error::Context;

use crate::exit::{EXIT_USAGE, setup_error};
use crate::options::CommonArgs;

/// What both commands do first: checks the options against each other and starts a
/// multi-threaded tokio runtime with every driver (the backend's tasks, timers, sockets); on
/// failure, the exit code after the one `error:` line is printed.
pub fn start(args: &CommonArgs) -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(message) = args.validate() {
        eprintln!("error: {message}");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
        .map_err(|err| setup_error(&err))
}
