//! What the end-to-end tests of both flavours share: a guest run on its own task with its
//! stdout readable while it runs, and how it ended.

use std::time::{Duration, Instant};

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx};

/// How a guest run ended, and what it printed.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok(code)` when it returned or exited, `Err(trap)` when it trapped.
    pub exit: Result<i32, String>,
    pub stdout: String,
}

/// A guest instance running on its own task, with its stdout readable while it runs.
pub struct Running {
    pub task: tokio::task::JoinHandle<Outcome>,
    pub stdout: MemoryOutputPipe,
}

impl Running {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.contents()).into_owned()
    }

    /// Waits until the guest has printed `line`.
    pub async fn wait_for(&self, line: &str) {
        let start = Instant::now();
        while !self.stdout().lines().any(|l| l == line) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "guest never printed {line:?}; printed {:?}",
                self.stdout()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn finish(self) -> Outcome {
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("guest did not finish in time")
            .unwrap()
    }
}

/// WASI for a guest run with `args` (after a program name), its stdout into `stdout`.
pub fn wasi(args: &[&str], stdout: &MemoryOutputPipe) -> WasiCtx {
    let mut argv = vec!["guest"];
    argv.extend_from_slice(args);
    WasiCtx::builder()
        .args(&argv)
        .stdout(stdout.clone())
        .inherit_stderr()
        .build()
}

/// The outcome of a run that returned `result` (`Err(())` from `run` is exit code 1), with
/// what it printed into `stdout`.
pub fn outcome(result: wasmtime::Result<Result<(), ()>>, stdout: &MemoryOutputPipe) -> Outcome {
    let exit = match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(err) => match err.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(format!("{err:?}")),
        },
    };
    Outcome {
        exit,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
    }
}
