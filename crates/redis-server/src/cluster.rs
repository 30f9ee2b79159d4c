//! A private Redis Cluster for tests: `redis-server --cluster-enabled yes` nodes on free loopback
//! ports (cluster bus ports too), joined by `redis-cli --cluster create`, every node stopped on
//! drop; and the views a test needs of it (who serves a slot, which nodes are masters), read
//! with `redis-cli` from the nodes themselves.
//!
//! Nodes time out after [`NODE_TIMEOUT_MS`], so a killed master's replica takes over within a
//! few seconds; `cluster-require-full-coverage no` keeps the other shards answering while a
//! shard is down (the default stops the whole cluster), as a deployment that wants a shard's
//! outage to stay the shard's own would configure it.
//!
//! [`RedisCluster::start_tls`] starts the same cluster with TLS everywhere the backend goes:
//! clients, the cluster bus (`tls-cluster yes`) and replication (`tls-replication yes`), on
//! certificates of one CA made for the cluster. Each node keeps a plain port for the tests' own
//! views (`redis-cli` without TLS); a TLS client is told the nodes' TLS ports (`CLUSTER SLOTS`
//! answers with the port of the client's own kind), so what is under test, seeded with
//! [`RedisCluster::tls_seeds`], only ever connects over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{ClientAuth, PemPair, RedisServer, TestCa, TlsFiles, free_port};

/// The cluster node timeout: how long a silent node has before it is failed over.
pub(crate) const NODE_TIMEOUT_MS: u64 = 1_000;

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// A running Redis Cluster; its nodes are killed (and their directories removed) on drop.
pub struct RedisCluster {
    /// Every node, by index; `None` once killed.
    nodes: Vec<Option<RedisServer>>,
    /// The certificates of a TLS cluster, in a directory of the cluster's own (removed on drop).
    tls: Option<(PathBuf, TlsFiles)>,
    /// Which nodes are frozen ([`RedisCluster::freeze`]): the views skip them, as a command to
    /// a frozen node would never return.
    frozen: Vec<AtomicBool>,
}

/// A node frozen by [`RedisCluster::freeze`]; thawed (`SIGCONT`) when dropped, so a failing test
/// leaves no frozen process behind.
pub struct Frozen<'a> {
    cluster: &'a RedisCluster,
    node: usize,
}

impl Frozen<'_> {
    /// The frozen node.
    pub fn node(&self) -> usize {
        self.node
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Some(server) = &self.cluster.nodes[self.node] {
            server.freeze(false);
        }
        self.cluster.frozen[self.node].store(false, Ordering::Relaxed);
    }
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each, joins them into one
    /// cluster covering every slot, and waits until every node reports `cluster_state:ok` (and
    /// every replica is in sync). Panics if that takes over a minute.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        Self::start_with(masters, replicas_per_master, None)
    }

    /// As [`RedisCluster::start`], with TLS for clients, the cluster bus and replication, on
    /// certificates of a CA made for this cluster ([`RedisCluster::ca_cert`]). Clients need no
    /// certificate of their own, and one they show must be signed by the CA.
    pub fn start_tls(masters: usize, replicas_per_master: usize) -> Self {
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wasi-cache-redis-cluster-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the cluster's temp dir");
        // A cluster shared by a whole test binary lives in a `static`, which is never dropped.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; rm -rf "$1""#)
            .arg(std::process::id().to_string())
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let certs = TlsFiles::issue(&TestCa::new("wasi-cache test cluster CA"), &dir);
        Self::start_with(masters, replicas_per_master, Some((dir, certs)))
    }

    fn start_with(
        masters: usize,
        replicas_per_master: usize,
        tls: Option<(PathBuf, TlsFiles)>,
    ) -> Self {
        let count = masters * (1 + replicas_per_master);
        let nodes: Vec<Option<RedisServer>> = (0..count)
            .map(|_| {
                let bus = free_port();
                let mut extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT_MS.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-require-full-coverage",
                    "no",
                    "--cluster-replica-validity-factor",
                    "0",
                ]
                .map(str::to_owned)
                .to_vec();
                Some(match &tls {
                    None => RedisServer::start_with(extra),
                    Some((_, certs)) => {
                        extra.extend(
                            ["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_owned),
                        );
                        RedisServer::start_tls_with(ClientAuth::Optional, certs.clone(), extra)
                    }
                })
            })
            .collect();
        let frozen = nodes.iter().map(|_| AtomicBool::new(false)).collect();
        let cluster = Self { nodes, tls, frozen };
        let mut create = Command::new("redis-cli");
        if let Some((_, certs)) = &cluster.tls {
            // The nodes meet on the addresses given here: their TLS ports.
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(&certs.ca_cert)
                .arg("--cert")
                .arg(&certs.client.cert)
                .arg("--key")
                .arg(&certs.client.key);
        }
        create.arg("--cluster").arg("create");
        for node in cluster.nodes.iter().flatten() {
            let port = match cluster.tls {
                Some(_) => node.tls_port(),
                None => node.port(),
            };
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", &replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .output()
            .expect("running redis-cli --cluster create (redis-cli must be on the PATH)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(60));
        cluster
    }

    /// How many nodes the cluster was started with (killed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node at all (never: [`RedisCluster::start`] makes some).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The URL of node `node`.
    pub fn url(&self, node: usize) -> String {
        format!("redis://127.0.0.1:{}", self.port(node))
    }

    /// The port of node `node`.
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node]
            .as_ref()
            .map(RedisServer::port)
            .unwrap_or_else(|| panic!("node {node} was killed"))
    }

    /// The URLs of the nodes still running: seed nodes for a client.
    pub fn seeds(&self) -> Vec<String> {
        (0..self.len())
            .filter(|&n| self.nodes[n].is_some())
            .map(|n| self.url(n))
            .collect()
    }

    /// The TLS URL of node `node`, `rediss://127.0.0.1:TLS_PORT`. Panics unless the cluster was
    /// started with [`RedisCluster::start_tls`].
    pub fn tls_url(&self, node: usize) -> String {
        self.nodes[node]
            .as_ref()
            .map(RedisServer::tls_url)
            .unwrap_or_else(|| panic!("node {node} was killed"))
    }

    /// The TLS URLs of the nodes still running: seed nodes for a client (a TLS cluster only).
    pub fn tls_seeds(&self) -> Vec<String> {
        (0..self.len())
            .filter(|&n| self.nodes[n].is_some())
            .map(|n| self.tls_url(n))
            .collect()
    }

    /// The CA certificate (PEM file) that signed every node's certificate (a TLS cluster only).
    pub fn ca_cert(&self) -> &Path {
        &self.certs().ca_cert
    }

    /// A client certificate and key (PEM files) signed by [`RedisCluster::ca_cert`].
    pub fn client_cert(&self) -> &PemPair {
        &self.certs().client
    }

    fn certs(&self) -> &TlsFiles {
        let (_, certs) = self
            .tls
            .as_ref()
            .expect("a TLS cluster (RedisCluster::start_tls)");
        certs
    }

    /// Freezes node `node` (`SIGSTOP`) until the returned guard is dropped (`SIGCONT`): while
    /// frozen its kernel still accepts connections, but it answers nothing, not even the
    /// cluster bus, so the others fail it over after the node timeout.
    pub fn freeze(&self, node: usize) -> Frozen<'_> {
        let server = self.nodes[node]
            .as_ref()
            .unwrap_or_else(|| panic!("node {node} was killed"));
        self.frozen[node].store(true, Ordering::Relaxed);
        server.freeze(true);
        Frozen {
            cluster: self,
            node,
        }
    }

    /// Runs one `redis-cli` command on node `node` and returns its output (trimmed).
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port(node).to_string()])
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The slot of `key` (the hash of its hash tag, if any).
    pub fn slot_of(&self, key: &str) -> u16 {
        let node = self.any_live();
        let out = self.cli(node, &["CLUSTER", "KEYSLOT", key]);
        out.parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key:?} answered {out:?}"))
    }

    /// The node serving `slot` as master, as a running node sees it (`None` if no running
    /// master serves it).
    pub fn master_of_slot(&self, slot: u16) -> Option<usize> {
        self.view()
            .into_iter()
            .find(|(_, slots)| slots.iter().any(|r| r.contains(&u32::from(slot))))
            .map(|(node, _)| node)
    }

    /// The node serving `key`'s slot as master.
    pub fn master_of_key(&self, key: &str) -> Option<usize> {
        self.master_of_slot(self.slot_of(key))
    }

    /// The `total_reads_processed` of every master, summed (see [`crate::reads_processed`]).
    pub fn reads_processed(&self) -> u64 {
        self.masters()
            .into_iter()
            .map(|m| crate::reads_processed(self.port(m)))
            .sum()
    }

    /// The running masters that serve slots.
    pub fn masters(&self) -> Vec<usize> {
        let mut masters: Vec<usize> = self.view().into_iter().map(|(node, _)| node).collect();
        masters.sort_unstable();
        masters
    }

    /// The names of the keys on node `node` that match `pattern` (`SCAN` with `MATCH`).
    pub fn keys_on(&self, node: usize, pattern: &str) -> Vec<String> {
        let out = self.cli(node, &["--scan", "--pattern", pattern]);
        out.lines().map(str::to_owned).collect()
    }

    /// Kills node `node` (as a crash would) and waits for it to exit.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut server) = self.nodes[node].take() {
            server.stop();
        }
    }

    /// Waits until a running master serves every slot, as every running node sees it, and
    /// every running replica is in sync with its master (e.g. after a kill, until a replica
    /// took over). Panics after `limit`.
    pub fn wait_until_ok(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let last = self.problem();
            match last {
                None => return,
                Some(problem) => assert!(
                    start.elapsed() < limit,
                    "the Redis Cluster is not ok after {limit:?}: {problem}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is not ok yet, if anything.
    fn problem(&self) -> Option<String> {
        let live: Vec<usize> = (0..self.len()).filter(|&n| self.answering(n)).collect();
        for &node in &live {
            let info = self.cli(node, &["CLUSTER", "INFO"]);
            if !info.contains("cluster_state:ok") {
                return Some(format!("node {node}: {info}"));
            }
            let nodes = self.cli(node, &["CLUSTER", "NODES"]);
            let covered: u32 = self
                .parse_nodes(&nodes)
                .iter()
                .flat_map(|(_, slots)| slots.iter().map(|r| r.end() - r.start() + 1))
                .sum();
            if covered != SLOTS {
                return Some(format!(
                    "node {node} sees {covered} slots served by running masters"
                ));
            }
            let replication = self.cli(node, &["INFO", "replication"]);
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Some(format!("replica {node} is not in sync"));
            }
        }
        None
    }

    /// The running masters and the slot ranges they serve, as a running node sees them.
    fn view(&self) -> Vec<(usize, Vec<std::ops::RangeInclusive<u32>>)> {
        let nodes = self.cli(self.any_live(), &["CLUSTER", "NODES"]);
        self.parse_nodes(&nodes)
    }

    /// The running masters of a `CLUSTER NODES` reply (not marked failed), with their slots.
    fn parse_nodes(&self, reply: &str) -> Vec<(usize, Vec<std::ops::RangeInclusive<u32>>)> {
        let mut out = Vec::new();
        for line in reply.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                continue;
            }
            let flags = fields[2];
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let port: Option<u16> = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            let Some(node) = (0..self.len()).find(|&n| {
                self.nodes[n].as_ref().is_some_and(|s| {
                    Some(s.port()) == port || (s.tls.is_some() && Some(s.tls_port()) == port)
                })
            }) else {
                continue;
            };
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                    None => s.parse().ok().map(|v| v..=v),
                })
                .collect::<Vec<_>>();
            if !slots.is_empty() {
                out.push((node, slots));
            }
        }
        out
    }

    /// A running node that answers (not frozen).
    fn any_live(&self) -> usize {
        (0..self.len())
            .find(|&n| self.answering(n))
            .expect("a running node")
    }

    /// Whether node `node` runs and is not frozen.
    fn answering(&self, node: usize) -> bool {
        self.nodes[node].is_some() && !self.frozen[node].load(Ordering::Relaxed)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // The nodes first: they read the certificates.
        self.nodes.clear();
        if let Some((dir, _)) = &self.tls {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
