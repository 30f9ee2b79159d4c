//! Test support shared by the Redis backend's and the CLI's tests (dev-only, never published): a
//! private `redis-server` per test binary (or per test), on a free loopback port in a temp dir,
//! without persistence, stopped on drop. Never the system's server on 6379.
//!
//! [`RedisServer::start_tls`] adds a TLS port with a server certificate signed by a CA made in
//! the test process ([`TestCa`]), and a client certificate for mutual TLS. [`RedisCluster`]
//! starts a Redis Cluster of such servers.

#![deny(missing_docs)]

mod certs;
mod cluster;

pub use certs::{PemPair, TestCa};
pub use cluster::{Frozen, RedisCluster};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process; killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    tls: Option<Tls>,
    /// More `redis-server` arguments (a cluster node's).
    extra: Vec<String>,
}

/// Whether the TLS port asks clients for a certificate (`--tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client may connect without a certificate; one it shows must be signed by the CA.
    Optional,
    /// Mutual TLS: a client without a certificate signed by the CA is refused.
    Required,
}

/// The certificate files of a TLS server: the CA, the server's certificate, and a client
/// certificate (which the server also shows when it connects to other nodes as a client).
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA certificate (PEM).
    pub(crate) ca_cert: PathBuf,
    /// The server certificate and key.
    pub(crate) server: PemPair,
    /// The client certificate and key.
    pub(crate) client: PemPair,
}

impl TlsFiles {
    /// Writes `ca`'s certificate, and a server and a client certificate it issues, to `dir`.
    pub(crate) fn issue(ca: &TestCa, dir: &Path) -> Self {
        let ca_cert = dir.join("ca.crt");
        ca.write_cert(&ca_cert);
        Self {
            ca_cert,
            server: ca.issue_server(dir),
            client: ca.issue_client(dir),
        }
    }
}

/// The TLS side of a server: its port, and the files a client needs.
struct Tls {
    port: u16,
    auth: ClientAuth,
    ca_cert: PathBuf,
    server: PemPair,
    client: PemPair,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// Panics with an install hint if `redis-server` is missing: these tests never skip.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Starts a server on a free port with more arguments, and waits until it answers PING; it
    /// is also stopped when the test process exits without dropping it.
    pub(crate) fn start_with(extra: Vec<String>) -> Self {
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            dir: temp_dir(port),
            tls: None,
            extra,
        };
        server.spawn();
        server
    }

    /// Starts a server with a TLS port as well, on certificates made for it: a fresh CA, a
    /// server certificate for `127.0.0.1` and `localhost`, and a client certificate (for
    /// [`ClientAuth::Required`]), all in the server's temp dir.
    ///
    /// The plain port stays open for the tests' own checks (readiness, `PUBSUB CHANNELS`);
    /// what is under test connects to [`RedisServer::tls_url`].
    pub fn start_tls(auth: ClientAuth) -> Self {
        let port = free_port();
        let dir = temp_dir(port);
        let ca = TestCa::new("wasi-cache test CA");
        let certs = TlsFiles::issue(&ca, &dir);
        Self::launch_tls(port, dir, auth, certs, Vec::new())
    }

    /// Starts a server with a TLS port on the certificates `certs` (shared by the nodes of a TLS
    /// cluster), with more arguments, and waits until it answers PING.
    pub(crate) fn start_tls_with(auth: ClientAuth, certs: TlsFiles, extra: Vec<String>) -> Self {
        let port = free_port();
        Self::launch_tls(port, temp_dir(port), auth, certs, extra)
    }

    /// Starts the server on `port` in `dir`, with a TLS port of its own on `certs`.
    fn launch_tls(
        port: u16,
        dir: PathBuf,
        auth: ClientAuth,
        certs: TlsFiles,
        extra: Vec<String>,
    ) -> Self {
        // Two free ports may come out equal (each listener is closed before the next).
        let tls_port = std::iter::repeat_with(free_port)
            .find(|&p| p != port)
            .expect("an endless iterator");
        let tls = Tls {
            port: tls_port,
            auth,
            ca_cert: certs.ca_cert,
            server: certs.server,
            client: certs.client,
        };
        let mut server = Self {
            child: None,
            port,
            dir,
            tls: Some(tls),
            extra,
        };
        server.spawn();
        server
    }

    /// The (plain) port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's (plain) URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port. Panics on a server without TLS.
    pub fn tls_port(&self) -> u16 {
        self.tls().port
    }

    /// The TLS port's URL, `rediss://127.0.0.1:PORT`. Panics on a server without TLS.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port())
    }

    /// The CA certificate (PEM file) that signed the server's and the client's certificates.
    pub fn ca_cert(&self) -> &Path {
        &self.tls().ca_cert
    }

    /// A client certificate and key (PEM files) signed by [`RedisServer::ca_cert`].
    pub fn client_cert(&self) -> &PemPair {
        &self.tls().client
    }

    fn tls(&self) -> &Tls {
        self.tls
            .as_ref()
            .expect("a TLS server (RedisServer::start_tls)")
    }

    /// Freezes (`SIGSTOP`, `true`) or thaws (`SIGCONT`, `false`) the server: while frozen it
    /// accepts nothing and answers nothing, like a host that stopped responding.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("server running").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// The server's `total_reads_processed` (see [`reads_processed`]).
    pub fn reads_processed(&self) -> u64 {
        reads_processed(self.port)
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", self.dir.to_str().expect("utf-8 temp dir")])
            .args(&self.extra);
        if let Some(tls) = &self.tls {
            let auth = match tls.auth {
                ClientAuth::Optional => "optional",
                ClientAuth::Required => "yes",
            };
            command
                .args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.server.cert)
                .arg("--tls-key-file")
                .arg(&tls.server.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_cert)
                .args(["--tls-auth-clients", auth])
                // What the server shows when it is the client (cluster bus, replication): the
                // server certificate is for server authentication only.
                .arg("--tls-client-cert-file")
                .arg(&tls.client.cert)
                .arg("--tls-client-key-file")
                .arg(&tls.client.key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis tests need it on the PATH; \
                     install it with `apt-get install redis-server`"
                )
            });
        if !self.extra.is_empty() {
            self.watch(child.id());
        }
        self.child = Some(child);
        self.wait_for_ping();
    }

    /// Stops the server `pid` once the test process is gone: a server shared by a whole test
    /// binary lives in a `static`, which is never dropped.
    fn watch(&self, pid: u32) {
        let script = r#"while kill -0 "$0" 2>/dev/null; do kill -0 "$1" 2>/dev/null || exit 0; sleep 1; done; kill -9 "$1"; rm -rf "$2""#;
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(std::process::id().to_string())
            .arg(pid.to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    fn wait_for_ping(&mut self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new temp dir for the server on `port` (its working dir, and its certificates).
fn temp_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wasi-cache-redis-test-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("creating the server's temp dir");
    dir
}

/// The `total_reads_processed` (`INFO stats`, Redis 6.2 or later) of the server on loopback
/// `port`, read with `redis-cli`: how many reads it made, which shows how well requests were
/// batched on their way in (one read per request is no batching at all).
pub fn reads_processed(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "INFO", "stats"])
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_reads_processed in INFO stats (Redis 6.2 or later)")
}

/// A loopback port nobody listens on now (the OS picks it; never 6379).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = listener.local_addr().expect("local address").port();
        if port != 6379 {
            return port;
        }
    }
}
