//! `prebuild TMPDIR`: builds the test guests that have a target dir of their own
//! (`golem3-compat`, whose golem-rust 3.0.2 alone is the longest unit of the whole build) into
//! `TMPDIR`, the folder the tests build guests in (`CARGO_TARGET_TMPDIR`: `TARGET_DIR/tmp`).
//!
//! `.ci/run` starts it in the background before anything else, so that this build overlaps
//! clippy and the compilation of the tests instead of holding up the test binaries that wait for
//! the build script's prebuild; the build script and the tests then find the guest up to date
//! (or wait for it, on the same lock). Exits 1, with the build's message, when a build fails.

use std::path::PathBuf;
use std::process::ExitCode;

use wasi_cache_guest_build::{CLI_TESTS, HOST_TESTS, SHARED, try_build};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: prebuild TMPDIR (the tests' CARGO_TARGET_TMPDIR: TARGET_DIR/tmp)");
        return ExitCode::from(2);
    };
    let mut code = ExitCode::SUCCESS;
    let own_target = CLI_TESTS
        .iter()
        .chain(HOST_TESTS)
        .filter(|g| g.target != SHARED);
    for guest in own_target {
        match try_build(*guest, &dir) {
            Ok(path) => println!("prebuilt {}", path.display()),
            Err(err) => {
                eprintln!("prebuild: {err}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}
