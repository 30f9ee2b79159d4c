//! `wasi-cache compile`: compiles a component ahead of time into a `.cwasm` file, on the engine
//! settings `run` and `serve` use, so that they load it without compiling.

use std::process::ExitCode;

use wasmtime::Result;
use wasmtime::error::Context;

use crate::args::CompileArgs;
use crate::common::{check_header, setup_error};
use crate::{compiled, limits};

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
    let engine = limits::engine(None)?;
    let out = compiled::precompile(&engine, &bytes)
        .with_context(|| format!("{} is not a valid component", path.display()))?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| path.with_extension("cwasm"));
    std::fs::write(&output, out).with_context(|| format!("cannot write {}", output.display()))
}
