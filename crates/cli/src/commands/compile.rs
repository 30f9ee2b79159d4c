//! `wasi-cache compile`: its options ([`CompileArgs`]) and its `main`, which compiles a component ahead of time into a `.cwasm` file, on the engine
//! settings `run` and `serve` use, so that they load it without compiling.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use wasmtime::Result;
use wasmtime::error::Context;

use crate::compiled::{self, check_header};
use crate::engine;
use crate::exit::setup_error;

/// Options of `wasi-cache compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Where to write the precompiled component (default: COMPONENT with the extension .cwasm).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// The component to compile (a .wasm file built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,
}

/// Runs `wasi-cache compile`: exit code 0 once the file is written, 2 on any error (one
/// `error:` line).
pub fn main(args: &CompileArgs) -> ExitCode {
    match compile(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => setup_error(&err),
    }
}

/// Reads, checks and precompiles the component, then writes the `.cwasm`.
fn compile(args: &CompileArgs) -> Result<()> {
    let path = &args.component;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check_header(path, &bytes)?;
    let engine = engine::engine(None, None)?;
    let out = compiled::precompile(&engine, &bytes)
        .with_context(|| format!("{} is not a valid component", path.display()))?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| path.with_extension("cwasm"));
    std::fs::write(&output, out).with_context(|| format!("cannot write {}", output.display()))
}
