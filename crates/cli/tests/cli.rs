//! Tests of the `wasi-cache` binary: the example guest and the host's end-to-end guest run
//! through it, exit codes pass through, and every setup error is one `error: …` line with
//! exit code 2.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasi_cache_guest_build as guest_build;

fn memo_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| guest_build::build(guest_build::MEMO, tmp()))
}

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
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout.matches("32 callers, 1 computation (").count(),
        3,
        "{run:#?}"
    );
    assert_eq!(run.stdout.matches("), 31 waited").count(), 3, "{run:#?}");
    assert!(
        run.stdout.contains("get nth-prime:10000: hit (104729)"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("get nth-prime:1: miss"), "{run:#?}");
    assert!(
        run.stdout
            .contains("total: 96 get-or-set calls, 3 computations, 93 served by the rendezvous"),
        "{run:#?}"
    );
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
        "10000",
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
        "is not a wasi:cli/command component",
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
    assert_setup_error(&run, "cannot create the cache: invalid cache configuration");
}

#[test]
fn help_shows_examples() {
    let run = wasi_cache(["run", "--help"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("Examples:"), "{run:#?}");
    assert!(
        run.stdout.contains("--vacancy-timeout <DURATION>"),
        "{run:#?}"
    );
}
