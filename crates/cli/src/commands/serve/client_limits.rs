//! `serve`'s limits against hostile clients: their options ([`ClientLimitArgs`], flattened into
//! `ServeArgs`), the open-file limit the connection cap is sized against ([`raise_file_limit`]),
//! and the count of each client address's requests in flight ([`PerClient`]). How a stalled
//! client loses its slot is in `stall`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;

use crate::options::count::parse_count;
use crate::options::duration::parse_duration;
use crate::options::size::{format_size, parse_positive_size_usize};

/// The default `--max-concurrent-connections` where the open-file limit allows more.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Files kept free of client connections beyond one per request slot (each instance may hold
/// an outgoing connection): Redis connections, the compilation cache, the admin endpoint's
/// connections, the runtime's own descriptors.
pub const FILE_RESERVE: usize = 256;

/// The smallest `--max-request-header-size` hyper accepts (its read buffer's floor).
pub const MIN_HEADER_SIZE: usize = 8192;

/// Options that bound what clients can make the server hold: connections, requests per
/// address, request heads, and how long a client may stall a request's body or its response.
#[derive(Debug, Clone, Args)]
pub struct ClientLimitArgs {
    /// Most client connections open at once; one beyond it is closed as soon as it is
    /// accepted (the admin endpoint's are apart). Default: 10000, or less when the open-file
    /// limit (raised to its hard limit at start-up) leaves less room beside one file per
    /// request slot and 256 for Redis and the rest.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_concurrent_connections: Option<usize>,

    /// Most requests one client address (an IPv6 client's /64) may have in flight at once; one
    /// beyond it is answered 429 at once. Default: a quarter of --max-concurrent-requests, but
    /// at least 64 (all of them when there are fewer).
    /// Behind a reverse proxy every request comes from the proxy's address: raise it to
    /// --max-concurrent-requests there.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_requests_per_client: Option<usize>,

    /// Largest request head (request line and headers) a client may send; a larger one is
    /// answered 431 and its connection closed (at least 8KiB).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "64KiB",
        value_parser = parse_header_size
    )]
    pub max_request_header_size: usize,

    /// Most header fields a request may have; more is answered 431 and the connection closed.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_count)]
    pub max_request_headers: usize,

    /// Longest a request's body may deliver nothing while the component waits for it; past
    /// it the request fails (408 when not answered yet), its instance is stopped and its slot
    /// freed (0 means no limit).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Longest the server may wait for a client to take more of a response (its socket full);
    /// past it the connection is closed, the instance stopped and its slot freed (0 means no
    /// limit).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub response_write_timeout: Duration,
}

impl ClientLimitArgs {
    /// `--max-concurrent-connections`, or its default for an open-file limit of `files` (none:
    /// unlimited) and `max_requests` request slots.
    pub fn max_connections(&self, files: Option<u64>, max_requests: usize) -> usize {
        if let Some(max) = self.max_concurrent_connections {
            return max;
        }
        let Some(files) = files else {
            return DEFAULT_MAX_CONNECTIONS;
        };
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        let room = files.saturating_sub(max_requests.saturating_add(FILE_RESERVE));
        // A limit too low for that reserve still leaves half the files to connections.
        room.max(files / 2).clamp(1, DEFAULT_MAX_CONNECTIONS)
    }

    /// `--max-requests-per-client`, or a quarter of `max_requests` but at least 64 (all of them
    /// when there are fewer: a small server is not split four ways).
    pub fn max_requests_per_client(&self, max_requests: usize) -> usize {
        self.max_requests_per_client
            .unwrap_or((max_requests / 4).max(max_requests.min(64)))
    }

    /// `--body-read-timeout`, unless zero.
    pub fn body_read_timeout(&self) -> Option<Duration> {
        Some(self.body_read_timeout).filter(|limit| !limit.is_zero())
    }

    /// `--response-write-timeout`, unless zero.
    pub fn response_write_timeout(&self) -> Option<Duration> {
        Some(self.response_write_timeout).filter(|limit| !limit.is_zero())
    }
}

/// Parses `--max-request-header-size`: a size of at least [`MIN_HEADER_SIZE`] (below it hyper
/// would panic).
fn parse_header_size(text: &str) -> Result<usize, String> {
    let size = parse_positive_size_usize(text)?;
    if size < MIN_HEADER_SIZE {
        return Err(format!(
            "must be at least {} (a request line and the usual headers)",
            format_size(MIN_HEADER_SIZE as u64)
        ));
    }
    Ok(size)
}

/// Raises the process's soft limit on open files to its hard limit (connections are files) and
/// returns the limit now in force (`None`: unlimited). A limit that cannot be raised stays as
/// it was.
pub fn raise_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(err) => tracing::warn!(
                "cannot raise the open-file limit from {:?} to {:?}: {err}",
                limit.current,
                limit.maximum
            ),
        }
    }
    limit.current
}

/// Each client address's requests in flight, against `--max-requests-per-client`.
#[derive(Debug)]
pub struct PerClient {
    /// `--max-requests-per-client`.
    limit: usize,
    /// The addresses with requests in flight (none kept at zero, so the map is bounded by the
    /// request slots).
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// No client has a request in flight yet.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// A slot of `client`'s, held until dropped, unless it has `limit` requests in flight.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let client = client_key(client);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            client,
        })
    }
}

/// One request in flight of one client's, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<PerClient>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = (self.clients.counts.lock()).unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The address `client` is counted under: an IPv4 address as itself (an IPv4-mapped IPv6 one
/// too), an IPv6 one by its /64, which one host usually holds whole.
fn client_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_cap_leaves_room_below_the_file_limit() {
        let args = ClientLimitArgs {
            max_concurrent_connections: None,
            max_requests_per_client: None,
            max_request_header_size: 65536,
            max_request_headers: 100,
            body_read_timeout: Duration::ZERO,
            response_write_timeout: Duration::ZERO,
        };
        assert_eq!(args.max_connections(None, 1000), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            args.max_connections(Some(1 << 20), 1000),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(args.max_connections(Some(4096), 1000), 4096 - 1256);
        assert_eq!(args.max_connections(Some(1024), 1000), 512);
        assert_eq!(args.max_requests_per_client(1000), 250);
        assert_eq!(args.max_requests_per_client(100), 64);
        assert_eq!(args.max_requests_per_client(3), 3);
        let set = ClientLimitArgs {
            max_concurrent_connections: Some(7),
            max_requests_per_client: Some(3),
            ..args
        };
        assert_eq!(set.max_connections(Some(1024), 1000), 7);
        assert_eq!(set.max_requests_per_client(1000), 3);
        assert!(
            parse_header_size("4KiB")
                .unwrap_err()
                .contains("at least 8KiB")
        );
        assert_eq!(parse_header_size("16KiB"), Ok(16384));
    }

    #[test]
    fn each_address_has_its_own_count_and_an_ipv6_client_its_64() {
        let clients = Arc::new(PerClient::new(2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = clients.try_acquire(a).unwrap();
        let _second = clients.try_acquire(a).unwrap();
        assert!(clients.try_acquire(a).is_none());
        // IPv4-mapped: the same client.
        assert!(
            clients
                .try_acquire("::ffff:127.0.0.1".parse().unwrap())
                .is_none()
        );
        let _other = clients.try_acquire(b).unwrap();
        drop(first);
        let _again = clients.try_acquire(a).unwrap();
        let v6 = |text: &str| text.parse::<IpAddr>().unwrap();
        let _one = clients.try_acquire(v6("2001:db8::1")).unwrap();
        let _two = clients.try_acquire(v6("2001:db8::ffff:2")).unwrap();
        assert!(clients.try_acquire(v6("2001:db8::3")).is_none());
        assert!(clients.try_acquire(v6("2001:db8:0:1::3")).is_some());
    }

    #[test]
    fn a_released_slot_leaves_no_entry() {
        let clients = Arc::new(PerClient::new(1));
        let slot = clients.try_acquire("10.0.0.1".parse().unwrap()).unwrap();
        drop(slot);
        assert!(clients.counts.lock().unwrap().is_empty());
    }
}
