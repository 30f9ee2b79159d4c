//! Tests of the `wasi-cache` binary: the example guest and the host's end-to-end guest run
//! through it, exit codes pass through, every setup error (every bad option value included) is
//! one `error: …` line with exit code 2, and the limits on memory, resources and time end a
//! component that runs into them with one `error: …` line.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasi_cache_guest_build as guest_build;

fn e2e_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::GUEST_E2E, tmp()))
}

/// Writes `bytes` to a scratch file named `name` and returns its path.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = tmp().join("cli-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts that the run failed before running anything: exit code 2, one `error: ` line.
fn assert_setup_error(run: &Run, needle: &str) {
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line expected: {run:#?}");
    assert!(run.stderr.starts_with("error: "), "{run:#?}");
    assert!(run.stderr.contains(needle), "{needle:?} not in {run:#?}");
}

#[test]
fn memo_example_computes_once_per_key() {
    let run = wasi_cache([Path::new("run"), Path::new("--stats"), memo_wasm()]);
    assert_memo_ran(&run);
    let stats = run.stderr.trim_end();
    assert!(stats.starts_with("wasi-cache stats: hits=3 "), "{run:#?}");
    for field in [
        "inserts=3",
        "rendezvous=93",
        "handoffs=0",
        "timeouts=0",
        "entries=3",
    ] {
        assert!(stats.contains(field), "{field} not in {stats}");
    }
}

#[test]
fn component_arguments_pass_through() {
    let run = wasi_cache([Path::new("run"), memo_wasm(), Path::new("5")]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("3 keys x 5 concurrent"), "{run:#?}");
    assert!(run.stderr.is_empty(), "no --stats, no report: {run:#?}");
    let run = wasi_cache([Path::new("run"), memo_wasm(), Path::new("many")]);
    // The guest's `exit(2)` reaches the host as a failure: 1 (see `exit_codes_pass_through`).
    assert_eq!(run.code, Some(1), "the guest's own usage error: {run:#?}");
    assert!(run.stderr.contains("usage: memo"), "{run:#?}");
}

#[test]
fn host_scenarios_run_under_the_cli() {
    let wasm = e2e_wasm().to_string_lossy();
    for scenario in HOST_SCENARIOS {
        let args = ["run"].iter().chain(&HOST_SCENARIO_OPTIONS);
        let run = wasi_cache(args.chain(&[&*wasm, scenario]));
        assert_eq!(run.code, Some(0), "{scenario}: {run:#?}");
        assert!(
            run.stdout.contains(&format!("ok {scenario}\n")) && run.stdout.ends_with("done\n"),
            "{scenario}: {run:#?}"
        );
    }
}

/// A command component that calls `wasi:cli/exit#exit-with-code(code)` from `run`.
fn exit_with_code_component(code: u8) -> Vec<u8> {
    let text = format!(
        r#"(component
  (import "wasi:cli/exit@0.2.12" (instance $exit
    (export "exit-with-code" (func (param "status-code" u8)))))
  (core module $m
    (import "exit" "exit-with-code" (func $exit (param i32)))
    (func (export "run") (result i32)
      i32.const {code}
      call $exit
      unreachable))
  (core func $exit_lowered (canon lower (func $exit "exit-with-code")))
  (core instance $i (instantiate $m
    (with "exit" (instance (export "exit-with-code" (func $exit_lowered))))))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run_inst (export "run" (func $run)))
  (export "wasi:cli/run@0.2.12" (instance $run_inst)))"#
    );
    wat::parse_str(text).unwrap()
}

#[test]
fn memory_budget_option_reaches_the_host() {
    let run = wasi_cache([
        "run",
        "--max-value-size",
        "4KiB",
        "--memory-budget",
        "16000",
        &e2e_wasm().to_string_lossy(),
        "budget",
    ]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("ok budget\n"), "{run:#?}");
}

#[test]
fn exit_codes_pass_through() {
    for code in [0u8, 3, 42, 255] {
        let path = scratch(
            &format!("exit-{code}.wasm"),
            &exit_with_code_component(code),
        );
        let run = wasi_cache([Path::new("run"), &path]);
        assert_eq!(run.code, Some(i32::from(code)), "{run:#?}");
        assert!(run.stderr.is_empty(), "{run:#?}");
    }
    // Rust's `std::process::exit(n)` on wasm32-wasip2 reports success or failure only: 0 or 1.
    for (code, expected) in [("0", 0), ("3", 1)] {
        let run = wasi_cache([
            Path::new("run"),
            e2e_wasm(),
            Path::new("exit"),
            Path::new(code),
        ]);
        assert_eq!(run.code, Some(expected), "{run:#?}");
    }
}

#[test]
fn a_trap_exits_1_with_one_error_line() {
    let run = wasi_cache([Path::new("run"), e2e_wasm(), Path::new("no-such-scenario")]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("trapped: "),
        "{run:#?}"
    );
    // The guest's own panic message comes first.
    assert!(run.stderr.contains("unknown scenario"), "{run:#?}");
}

#[test]
fn missing_file_is_an_error() {
    let run = wasi_cache(["run", "/no/such/dir/app.wasm"]);
    assert_setup_error(&run, "cannot read /no/such/dir/app.wasm");
}

#[test]
fn non_wasm_file_is_an_error() {
    let path = scratch("notes.wasm", b"just some text\n");
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "is not a WebAssembly component",
    );
}

#[test]
fn core_module_is_an_error() {
    let path = scratch("core.wasm", &wat::parse_str("(module)").unwrap());
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "is a core WebAssembly module, not a component",
    );
}

#[test]
fn missing_import_is_an_error() {
    let component = wat::parse_str(
        r#"(component (import "example:missing/thing@1.0.0" (instance (export "f" (func)))))"#,
    )
    .unwrap();
    let path = scratch("missing-import.wasm", &component);
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "example:missing/thing@1.0.0",
    );
}

#[test]
fn component_without_run_export_is_an_error() {
    let path = scratch("no-run.wasm", &wat::parse_str("(component)").unwrap());
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "is not a wasi:cli/command component: it must export wasi:cli/run@0.2.x (a WASI 0.2 command) or wasi:cli/run@0.3.0 (a WASI 0.3 command); it exports nothing",
    );
}

/// A component whose exports are not a command's: the one error line names what it exports.
#[test]
fn component_exporting_something_else_is_named() {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $thing (export "f" (func $f)))
            (export "example:thing/api@1.0.0" (instance $thing)))"#,
    )
    .unwrap();
    let path = scratch("other-export.wasm", &component);
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "it exports example:thing/api@1.0.0",
    );
}

#[test]
fn invalid_component_is_an_error() {
    // The component header followed by garbage.
    let path = scratch("broken.wasm", b"\0asm\x0d\0\x01\0garbage");
    assert_setup_error(
        &wasi_cache([Path::new("run"), &path]),
        "is not a valid component",
    );
}

#[test]
fn bad_options_are_errors() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["run", "--capacity", "12XB", "x.wasm"],
            "unknown size unit `xb`",
        ),
        (
            &["run", "--max-value-size", "big", "x.wasm"],
            "is not a size",
        ),
        (&["run", "--vacancy-timeout", "5", "x.wasm"], "has no unit"),
        (
            &["run", "--namespace", &"n".repeat(300), "x.wasm"],
            "invalid namespace",
        ),
        (&["run", "--env", "=x", "x.wasm"], "no variable name"),
        (&["run"], "<COMPONENT>"),
        (&["walk", "x.wasm"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        assert_setup_error(&wasi_cache(args), needle);
    }
}

#[test]
fn an_invalid_cache_configuration_is_an_error() {
    let run = wasi_cache([
        Path::new("run"),
        Path::new("--capacity"),
        Path::new("0"),
        e2e_wasm(),
    ]);
    assert_setup_error(
        &run,
        "invalid value '0' for '--capacity <SIZE>': must be above zero",
    );
}

/// Every option that takes a size, with a value it accepts.
const SIZE_OPTIONS: [&str; 5] = [
    "--capacity",
    "--max-key-size",
    "--max-value-size",
    "--memory-budget",
    "--max-memory",
];
/// Every option that takes a count.
const COUNT_OPTIONS: [&str; 2] = ["--max-live-futures", "--max-resources"];
/// Every option that takes a duration (`--redis-timeout` also needs `--redis`).
const DURATION_OPTIONS: [&str; 3] = ["--vacancy-timeout", "--redis-timeout", "--timeout"];

/// `run OPTION VALUE x.wasm`, with `--redis` when `OPTION` needs it.
fn with_option(option: &str, value: &str) -> Vec<String> {
    let mut args = vec!["run".to_owned()];
    if option == "--redis-timeout" {
        args.extend(["--redis".to_owned(), "redis://127.0.0.1:1".to_owned()]);
    }
    args.extend([option.to_owned(), value.to_owned(), "x.wasm".to_owned()]);
    args
}

/// Asserts [`assert_setup_error`] and that nothing of a Rust panic shows.
fn assert_option_error(args: &[String], needle: &str) {
    let run = wasi_cache(args);
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{args:?}: {run:#?}"
    );
    assert_setup_error(&run, needle);
}

#[test]
fn every_extreme_option_value_is_one_error_line() {
    // Values of the issue: these once panicked (an `Instant` overflow at the first get-or-set
    // miss) or divided by zero (at start-up).
    assert_option_error(
        &with_option("--vacancy-timeout", "18446744073709551615s"),
        "is too large (at most 8760h, 365 days)",
    );
    assert_option_error(
        &with_option("--max-value-size", "18446744073709485996"),
        "is too large (at most 256TiB)",
    );
    for option in SIZE_OPTIONS {
        assert_option_error(&with_option(option, "0"), "must be above zero");
        for huge in ["18446744073709551615", "257TiB", "99999999999999999999KiB"] {
            assert_option_error(&with_option(option, huge), "is too large");
        }
    }
    for option in COUNT_OPTIONS {
        assert_option_error(&with_option(option, "0"), "must be above zero");
        for huge in ["4294967296", "18446744073709551615"] {
            assert_option_error(&with_option(option, huge), "is too large");
        }
        assert_option_error(
            &with_option(option, "18446744073709551616"),
            "is not a count",
        );
    }
    for option in DURATION_OPTIONS {
        for huge in [
            "18446744073709551615s",
            "18446744073709551615ns",
            "18446744073709551615h",
            "8761h",
        ] {
            assert_option_error(&with_option(option, huge), "is too large");
        }
        if option != "--timeout" {
            assert_option_error(&with_option(option, "0s"), "must be above zero");
        }
    }
    // Options that each fit their range but not each other.
    let cases: [(&[&str], &str); 3] = [
        (
            &["--capacity", "1MiB"],
            "--max-value-size (16MiB) is above --capacity (1MiB)",
        ),
        (
            &["--max-value-size", "100MiB"],
            "--max-value-size (100MiB) is above 1/2 of --memory-budget (64MiB)",
        ),
        (
            &["--capacity", "4KiB", "--max-value-size", "1KiB"],
            "--max-key-size (64KiB) is above --capacity (4KiB)",
        ),
    ];
    for (options, needle) in cases {
        let args: Vec<String> = ["run"]
            .iter()
            .chain(options)
            .chain(&["x.wasm"])
            .map(|arg| arg.to_string())
            .collect();
        assert_option_error(&args, needle);
    }
}

#[test]
fn the_largest_option_values_run() {
    let wasm = e2e_wasm().to_string_lossy();
    let mut args = vec!["run"];
    for option in SIZE_OPTIONS {
        // A set holds its value twice, so the largest value is half the largest budget.
        let size = if option == "--max-value-size" {
            "128TiB"
        } else {
            "256TiB"
        };
        args.extend([option, size]);
    }
    for option in COUNT_OPTIONS {
        args.extend([option, "4294967295"]);
    }
    args.extend(["--vacancy-timeout", "8760h", "--timeout", "8760h"]);
    args.extend([&*wasm, "get-or-set"]);
    let run = wasi_cache(&args);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("ok get-or-set\n"), "{run:#?}");
    // `--timeout 0` is no limit.
    let run = wasi_cache(["run", "--timeout", "0", &*wasm, "basic"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
}

/// Asserts that the component ran and was stopped with one `error: ` line (the last) holding
/// every needle, with exit code `code`, and no Rust panic output.
fn assert_stopped(ended: &Ended, code: i32, needles: &[&str]) {
    assert_eq!(ended.status.code(), Some(code), "{ended:#?}");
    let errors: Vec<&str> = ended
        .stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {ended:#?}");
    assert_eq!(ended.stderr.lines().last(), Some(errors[0]), "{ended:#?}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} not in {ended:#?}");
    }
    assert!(!ended.stderr.contains("panicked"), "{ended:#?}");
}

/// Runs the end-to-end guest's `scenario` with `options` to its end (at most two minutes: it
/// is compiled first).
fn run_e2e(options: &[&str], scenario: &[&str]) -> Ended {
    let wasm = e2e_wasm().to_string_lossy();
    let wasm = [&*wasm];
    let args = ["run"].iter().chain(options).chain(&wasm).chain(scenario);
    Proc::spawn(args).wait(2 * STARTUP)
}

#[test]
fn max_memory_stops_a_component_that_grows_past_it() {
    let ended = run_e2e(&["--max-memory", "16MiB"], &["alloc", "64"]);
    assert_stopped(
        &ended,
        1,
        &[
            "trapped: ",
            "its memory was refused growth",
            "--max-memory is 16MiB",
        ],
    );
    // The component's own allocator reports the failure first; it got some of the way.
    assert!(ended.stderr.contains("memory allocation of"), "{ended:#?}");
    assert!(ended.stdout.contains("allocated 8 MiB\n"), "{ended:#?}");
    assert!(!ended.stdout.contains("allocated 16 MiB"), "{ended:#?}");
    // The same allocation within the limit succeeds.
    let ended = run_e2e(&["--max-memory", "128MiB"], &["alloc", "64"]);
    assert_eq!(ended.status.code(), Some(0), "{ended:#?}");
    assert!(
        ended.stdout.contains("allocated 64 MiB\ndone\n"),
        "{ended:#?}"
    );
}

#[test]
fn max_memory_below_what_the_component_needs_is_a_setup_error() {
    let ended = run_e2e(&["--max-memory", "64KiB"], &["basic"]);
    assert_stopped(&ended, 2, &["cannot instantiate", "--max-memory is 64KiB"]);
    assert!(ended.stdout.is_empty(), "{ended:#?}");
}

#[test]
fn max_resources_stops_a_component_that_holds_more() {
    let ended = run_e2e(&["--max-resources", "1000"], &["resources", "2000"]);
    assert_stopped(
        &ended,
        1,
        &[
            "trapped: resource table has no free keys",
            "--max-resources allows, 1000",
        ],
    );
    assert!(!ended.stdout.contains("held"), "{ended:#?}");
    let ended = run_e2e(&["--max-resources", "1000"], &["resources", "500"]);
    assert_eq!(ended.status.code(), Some(0), "{ended:#?}");
    assert!(ended.stdout.contains("held 500\n"), "{ended:#?}");
}

#[test]
fn timeout_stops_a_component_that_computes_forever() {
    let ended = run_e2e(&["--timeout", "2s", "--stats"], &["spin"]);
    assert_eq!(ended.stdout, "spinning\n", "{ended:#?}");
    // The counters still print, before the error line.
    assert!(ended.stderr.starts_with("wasi-cache stats: "), "{ended:#?}");
    assert_stopped(&ended, 2, &["exceeded the --timeout of 2s"]);
}

#[test]
fn timeout_stops_a_component_blocked_in_the_host() {
    // It waits on a rendezvous whose vacancy it holds itself, for an hour.
    let options = ["--timeout", "2s", "--vacancy-timeout", "1h"];
    let ended = run_e2e(&options, &["block-forever", "k"]);
    assert_eq!(ended.stdout, "blocking\n", "{ended:#?}");
    assert_stopped(&ended, 2, &["exceeded the --timeout of 2s"]);
}

#[test]
fn help_shows_examples() {
    let run = wasi_cache(["run", "--help"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("Examples:"), "{run:#?}");
    for option in [
        "--vacancy-timeout <DURATION>",
        "--max-memory <SIZE>",
        "--max-resources <N>",
        "--timeout <DURATION>",
        "[default: 1GiB]",
        "[default: 100000]",
    ] {
        assert!(run.stdout.contains(option), "{option} not in {run:#?}");
    }
}

/// The `compile_cache=…` figure of a `--stats` run.
fn compile_cache(run: &Run) -> &str {
    assert_eq!(run.code, Some(0), "{run:#?}");
    run.stderr
        .split_whitespace()
        .find_map(|field| field.strip_prefix("compile_cache="))
        .unwrap_or_else(|| panic!("no compile_cache in {run:#?}"))
}

#[test]
fn a_second_run_takes_the_compiled_component_from_the_cache() {
    let dir = tmp().join("compile-cache");
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_str().unwrap();
    let memo = memo_wasm().to_str().unwrap();
    let run = |options: &[&str]| {
        let mut args = vec!["run", "--stats", "--cache-dir", dir];
        args.extend(options);
        args.extend([memo, "2"]);
        wasi_cache(args)
    };
    assert_eq!(compile_cache(&run(&[])), "miss");
    let artifacts = std::fs::read_dir(dir).unwrap().count();
    assert!(artifacts > 0, "nothing written to {dir}");
    assert_eq!(compile_cache(&run(&[])), "hit");
    // A time limit does not change the compiled code: the same artifact serves.
    assert_eq!(compile_cache(&run(&["--timeout", "1m"])), "hit");
    // Another component is another artifact.
    let e2e = e2e_wasm().to_str().unwrap();
    let other = wasi_cache(["run", "--stats", "--cache-dir", dir, e2e, "basic"]);
    assert_eq!(compile_cache(&other), "miss");

    let again = wasi_cache(["run", "--stats", "--no-cache", memo, "2"]);
    assert_eq!(compile_cache(&again), "off");
    let both = wasi_cache(["run", "--no-cache", "--cache-dir", dir, memo]);
    assert_setup_error(&both, "--no-cache");

    // A directory that cannot be made (under a file): a warning, and the run goes on.
    let file = scratch("not-a-directory", b"");
    let under_file = file.join("cache");
    let unusable = wasi_cache([
        "run",
        "--stats",
        "--cache-dir",
        under_file.to_str().unwrap(),
        memo,
        "2",
    ]);
    assert_eq!(compile_cache(&unusable), "off");
    assert!(
        unusable
            .stderr
            .starts_with("warning: compiling without the compilation cache: "),
        "{unusable:#?}"
    );
}

#[test]
fn processes_starting_at_once_share_an_empty_compilation_cache() {
    let dir = tmp().join("compile-cache-race");
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_str().unwrap();
    let memo = memo_wasm().to_str().unwrap();
    let args = ["run", "--stats", "--cache-dir", dir, memo, "2"];
    let runs = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4).map(|_| scope.spawn(|| wasi_cache(args))).collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect::<Vec<_>>()
    });
    // Each compiles or finds the artifact; one that compiled may find another's artifact stored
    // first (`unstored`): every run succeeds all the same.
    for run in &runs {
        let outcome = compile_cache(run);
        assert!(["hit", "miss", "unstored"].contains(&outcome), "{run:#?}");
    }
    assert_eq!(compile_cache(&wasi_cache(args)), "hit");
}

#[test]
fn a_precompiled_component_runs_and_a_damaged_or_foreign_one_is_refused() {
    use sha2::{Digest, Sha256};
    let dir = tmp().join("cwasm");
    std::fs::create_dir_all(&dir).unwrap();
    let cwasm = dir.join("memo.cwasm");
    let memo = memo_wasm().to_str().unwrap();
    let compiled = wasi_cache(["compile", memo, "-o", cwasm.to_str().unwrap()]);
    assert_eq!(compiled.code, Some(0), "{compiled:#?}");
    assert!(compiled.stderr.is_empty(), "{compiled:#?}");
    let run = wasi_cache(["run", "--stats", cwasm.to_str().unwrap(), "2"]);
    assert_eq!(compile_cache(&run), "precompiled");
    assert!(run.stdout.contains("1 computation"), "{run:#?}");

    let bytes = std::fs::read(&cwasm).unwrap();
    let (body, trailer) = bytes.split_at(bytes.len() - 40);
    let refused = |name: &str, bytes: &[u8], needle: &str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let run = wasi_cache(["run", path.to_str().unwrap()]);
        assert_setup_error(&run, needle);
    };
    // One byte changed in the compiled code.
    let mut damaged = bytes.clone();
    damaged[body.len() / 2] ^= 0x40;
    refused("damaged.cwasm", &damaged, "damaged precompiled component");
    // wasmtime's own format, without the checksum: not ours to trust.
    refused("foreign.cwasm", body, "not made by `wasi-cache compile`");
    // Made by another wasmtime version (its version string changed, the checksum made to fit).
    // wasmtime's engine section: a format byte (0), the length of the major version and the
    // version (that of crates/cli/Cargo.toml's wasmtime), then the target triple.
    let mut section = vec![0u8, 2];
    section.extend_from_slice(b"48");
    let at = body
        .windows(section.len() + 1 + std::env::consts::ARCH.len())
        .position(|window| {
            window.starts_with(&section) && window.ends_with(std::env::consts::ARCH.as_bytes())
        })
        .expect("wasmtime's engine section in the artifact");
    let mut other = body.to_vec();
    other[at + 2] = b'9';
    let mut other_version = other.clone();
    other_version.extend_from_slice(&Sha256::digest(&other));
    other_version.extend_from_slice(&trailer[32..]);
    refused("other-version.cwasm", &other_version, "another version");
    // Cut short.
    refused("truncated.cwasm", &bytes[..bytes.len() / 2], "");
}
