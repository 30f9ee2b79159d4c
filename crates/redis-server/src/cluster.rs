//! A private Redis Cluster for tests: `redis-server --cluster-enabled yes` nodes on free loopback
//! ports (cluster bus ports too), joined by `redis-cli --cluster create`, every node stopped on
//! drop; and the views a test needs of it (who serves a slot, which nodes are masters), read
//! with `redis-cli` from the nodes themselves.
//!
//! Nodes time out after [`NODE_TIMEOUT_MS`], so a killed master's replica takes over within a
//! few seconds; `cluster-require-full-coverage no` keeps the other shards answering while a
//! shard is down (the default stops the whole cluster), as a deployment that wants a shard's
//! outage to stay the shard's own would configure it.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port};

/// The cluster node timeout: how long a silent node has before it is failed over.
pub(crate) const NODE_TIMEOUT_MS: u64 = 1_000;

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// A running Redis Cluster; its nodes are killed (and their directories removed) on drop.
pub struct RedisCluster {
    /// Every node, by index; `None` once killed.
    nodes: Vec<Option<RedisServer>>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each, joins them into one
    /// cluster covering every slot, and waits until every node reports `cluster_state:ok` (and
    /// every replica is in sync). Panics if that takes over a minute.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        let count = masters * (1 + replicas_per_master);
        let nodes: Vec<Option<RedisServer>> = (0..count)
            .map(|_| {
                let bus = free_port();
                Some(RedisServer::start_with(
                    [
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
                    .to_vec(),
                ))
            })
            .collect();
        let cluster = Self { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in cluster.nodes.iter().flatten() {
            create.arg(format!("127.0.0.1:{}", node.port()));
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
        let live: Vec<usize> = (0..self.len())
            .filter(|&n| self.nodes[n].is_some())
            .collect();
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
                self.nodes[n]
                    .as_ref()
                    .is_some_and(|s| Some(s.port()) == port)
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

    /// A running node.
    fn any_live(&self) -> usize {
        (0..self.len())
            .find(|&n| self.nodes[n].is_some())
            .expect("a running node")
    }
}
