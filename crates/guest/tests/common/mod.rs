//! What the SDK's end-to-end test files share: unique keys, the runtime and timer of the
//! flavour under test, and the harness.
//!
//! The harness: libtest's own `main` exports the WASI 0.2 `wasi:cli/run`, a sync function that
//! wasmtime does not let block on a WASI 0.3 future ("cannot block a synchronous task"). So the
//! test files are `harness = false` and end with [`sdk_tests!`]: on 0.2 a `main`, on 0.3 the
//! async `run` of `wasi:cli/run@0.3.0` (no `main`), both running the listed tests through
//! libtest-mimic, with libtest's arguments and output.

/// A key unique to this run and API (`api` keeps the async and blocking tests apart), so the
/// tests can rerun against a cache that outlives them (Redis).
pub fn unique_key(api: &str, name: &str) -> String {
    static RUN: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!("{api}:{run}:{name}")
}

/// Runs `future` to completion in a (synchronous) test: on wstd's reactor for the WASI 0.2
/// flavour, on wit-bindgen's for 0.3.
#[cfg(not(feature = "p3"))]
#[allow(dead_code, reason = "the blocking API's tests need no runtime")]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    wstd::runtime::block_on(future)
}

/// Runs `future` to completion in a (synchronous) test: on wstd's reactor for the WASI 0.2
/// flavour, on wit-bindgen's for 0.3.
#[cfg(feature = "p3")]
#[allow(dead_code, reason = "the blocking API's tests need no runtime")]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    wit_bindgen::block_on(future)
}

/// Waits `ms` milliseconds while the test's other tasks run.
#[allow(dead_code, reason = "the blocking API's tests need no timer")]
pub async fn sleep(ms: u64) {
    let pause = std::time::Duration::from_millis(ms);
    #[cfg(not(feature = "p3"))]
    wstd::task::sleep(pause.into()).await;
    #[cfg(feature = "p3")]
    wasip3::clocks::monotonic_clock::wait_for(pause.as_nanos() as u64).await;
}

/// Runs `tests` (name and function) as libtest would, with the command's arguments; whether
/// all passed.
pub fn run(tests: &[(&'static str, fn())]) -> bool {
    let args = libtest_mimic::Arguments::from_args();
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            libtest_mimic::Trial::test(name, move || {
                test();
                Ok(())
            })
            // The parts of multi-process scenarios, run only by the CLI's tests
            // (`--ignored --exact NAME`), with their parameters in the environment.
            .with_ignored_flag(name.starts_with("two_hosts"))
        })
        .collect();
    !libtest_mimic::run(&args, trials).has_failed()
}

/// The entry point of a test file running the listed test functions: `main` on the WASI 0.2
/// flavour, the export of `wasi:cli/run@0.3.0` on 0.3 (the file starts with
/// `#![cfg_attr(feature = "p3", no_main)]`).
#[macro_export]
macro_rules! sdk_tests {
    ($($test:ident),* $(,)?) => {
        const TESTS: &[(&str, fn())] = &[$((stringify!($test), $test)),*];

        #[cfg(not(feature = "p3"))]
        fn main() {
            std::process::exit(if common::run(TESTS) { 0 } else { 101 });
        }

        #[cfg(feature = "p3")]
        struct Tests;

        #[cfg(feature = "p3")]
        impl wasip3::exports::cli::run::Guest for Tests {
            async fn run() -> Result<(), ()> {
                if common::run(TESTS) { Ok(()) } else { Err(()) }
            }
        }

        #[cfg(feature = "p3")]
        wasip3::cli::command::export!(Tests with_types_in wasip3);
    };
}
