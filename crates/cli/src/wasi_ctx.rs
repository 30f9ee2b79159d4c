//! The WASI context a component sees ([`wasi_ctx`]): inherited stdio, its arguments (argv[0]
//! its file's name: [`argv0`]), the environment of `--env`, no files.

use std::path::Path;

use wasmtime_wasi::WasiCtx;

use crate::options::CommonArgs;

/// WASI for a component: inherited stdio, `argv`, the environment of `--env`, no files.
pub fn wasi_ctx(args: &CommonArgs, argv: &[String]) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().args(argv);
    for (name, value) in &args.env {
        match value {
            Some(value) => {
                wasi.env(name, value);
            }
            None => {
                if let Ok(value) = std::env::var(name) {
                    wasi.env(name, value);
                }
            }
        }
    }
    wasi.build()
}

/// The name a component sees as its argv[0]: its file's name.
pub fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
