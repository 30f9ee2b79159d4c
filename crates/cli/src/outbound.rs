//! The outbound HTTP policy of `serve`'s guests (`--allow-outbound`): which destinations an
//! outgoing `wasi:http` request may reach, decided on the address it is about to connect to
//! (after name resolution), never on the name alone, so a name that resolves to a refused
//! address is refused too. How requests are resolved, checked and connected is in
//! [`crate::send`].
//!
//! Without `--allow-outbound`, the policy is `public`: every address but loopback, private
//! (RFC 1918, shared 100.64/10, ULA `fc00::/7`), link-local (`169.254/16`, where cloud metadata
//! services answer, and `fe80::/10`), unspecified, multicast, reserved and documentation ranges
//! (IPv4 embedded in IPv6 — mapped, compatible, NAT64, 6to4 — judged as the IPv4 address), and
//! the server's own admin endpoint. Given once or more, the patterns are the whole policy: a
//! destination is allowed when one of them matches it, even in a range `public` refuses (that is
//! how a local upstream is allowed), and `public` may be listed among them to keep the default.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use prometheus_client::metrics::counter::Counter;

/// One `--allow-outbound` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every destination, refused ranges included.
    Any,
    /// `public`: every address outside the refused ranges, but the admin endpoint.
    Public,
    /// `none`: nothing (a policy of `none` alone refuses every request).
    None,
    /// `NAME`, `NAME:PORT`, `*.NAME`, `*.NAME:PORT`: the request's host name (exactly, or any
    /// name below it for `*.`), whatever it resolves to, on any port or on `port`.
    Host {
        /// The name, lower case, without a trailing dot.
        name: String,
        /// Whether names below `name` match (not `name` itself).
        subdomains: bool,
        /// The one port allowed, if not all.
        port: Option<u16>,
    },
    /// `IP`, `IP:PORT`, `[IPV6]:PORT`, `IP/PREFIX`: the resolved address, in a range, on any
    /// port or on `port`.
    Net {
        /// The range's first address (host bits cleared).
        addr: IpAddr,
        /// The prefix length.
        prefix: u8,
        /// The one port allowed, if not all.
        port: Option<u16>,
    },
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, port) = match self {
            Pattern::Any => ("*".to_owned(), None),
            Pattern::Public => ("public".to_owned(), None),
            Pattern::None => ("none".to_owned(), None),
            Pattern::Host {
                name,
                subdomains,
                port,
            } => {
                let star = if *subdomains { "*." } else { "" };
                (format!("{star}{name}"), *port)
            }
            Pattern::Net { addr, prefix, port } => {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                match addr {
                    _ if *prefix != full => (format!("{addr}/{prefix}"), None),
                    IpAddr::V6(v6) if port.is_some() => (format!("[{v6}]"), *port),
                    addr => (addr.to_string(), *port),
                }
            }
        };
        match port {
            Some(port) => write!(f, "{text}:{port}"),
            None => f.write_str(&text),
        }
    }
}

/// Parses one `--allow-outbound` pattern (clap's value parser).
pub fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let text = text.trim();
    match text {
        "" => return Err("empty pattern".into()),
        "*" => return Ok(Pattern::Any),
        "public" => return Ok(Pattern::Public),
        "none" => return Ok(Pattern::None),
        _ => {}
    }
    if let Some((addr, prefix)) = text.split_once('/') {
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{text:?}: not an IP range (ADDRESS/PREFIX, e.g. 10.0.0.0/8)"))?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= full)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {full}"))?;
        return Ok(Pattern::Net {
            addr: network(addr, prefix),
            prefix,
            port: None,
        });
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(single(addr, None));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(single(addr.ip(), Some(addr.port())));
    }
    if let Some(v6) = text.strip_prefix('[').and_then(|v6| v6.strip_suffix(']')) {
        let addr: Ipv6Addr = v6
            .parse()
            .map_err(|_| format!("{text:?}: not an IPv6 address"))?;
        return Ok(single(IpAddr::V6(addr), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{text:?}: {port:?} is not a port (0 to 65535)"))?;
            (host, Some(port))
        }
        None => (text, None),
    };
    let (name, subdomains) = match host.strip_prefix("*.") {
        Some(name) => (name, true),
        None => (host, false),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{text:?}: not a host name, HOST:PORT, IP address, IP/PREFIX, `public`, `none` or `*`"
        ));
    }
    Ok(Pattern::Host {
        name,
        subdomains,
        port,
    })
}

/// A pattern matching exactly `addr` (its IPv4 form when it is an IPv4-mapped IPv6 address).
fn single(addr: IpAddr, port: Option<u16>) -> Pattern {
    let addr = addr.to_canonical();
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    Pattern::Net { addr, prefix, port }
}

/// `addr` with every bit past `prefix` cleared (the first address of its range), in IPv4 form
/// when it is IPv4-mapped.
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Whether `addr` lies in `range/prefix` (both of one family; an IPv4-mapped `addr` is compared
/// as IPv4).
fn in_range(addr: IpAddr, range: IpAddr, prefix: u8) -> bool {
    match (addr.to_canonical(), range) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            network(addr.to_canonical(), prefix) == range
        }
        _ => false,
    }
}

/// Whether an IPv4 address is outside every range `public` refuses.
fn is_public_v4(ip: Ipv4Addr) -> bool {
    const REFUSED: [(Ipv4Addr, u8); 14] = [
        (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", unspecified
        (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
        (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared (carrier NAT; some clouds' metadata)
        (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
        (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
        (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
        (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
        (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
        (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
        (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
        (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
        (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
        (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
        (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
    ];
    !REFUSED
        .iter()
        .any(|(range, prefix)| in_range(IpAddr::V4(ip), IpAddr::V4(*range), *prefix))
}

/// Whether an IPv6 address is outside every range `public` refuses; one that embeds an IPv4
/// address a gateway would reach (mapped, compatible, NAT64, 6to4) is judged as that address.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    let in_v6 = |range: u128, prefix: u32| {
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        bits & mask == range
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // Compatible (::a.b.c.d, deprecated; :: and ::1 included) and NAT64 (64:ff9b::/96).
    if in_v6(0, 96) || in_v6(0x0064_ff9b << 96, 96) {
        return is_public_v4(low32);
    }
    // 6to4: 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD.
    if in_v6(0x2002 << 112, 16) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const REFUSED: [(u128, u32); 8] = [
        (0x0064_ff9b_0001 << 80, 48), // local-use NAT64
        (0x0100 << 112, 64),          // discard-only
        (0x2001_0000 << 96, 32),      // Teredo
        (0x2001_0db8 << 96, 32),      // documentation
        (0xfc00 << 112, 7),           // unique local (ULA)
        (0xfe80 << 112, 10),          // link-local
        (0xfec0 << 112, 10),          // site-local (deprecated)
        (0xff00 << 112, 8),           // multicast
    ];
    !REFUSED.iter().any(|(range, prefix)| in_v6(*range, *prefix))
}

/// Whether `ip` is outside every range `public` refuses (see the module's docs).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Whether `ip` is an address of this host: one a socket can be bound to.
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The policy every outgoing request of a server's guests is checked against, and the count of
/// those it refused.
#[derive(Debug, Clone)]
pub struct Outbound {
    patterns: Vec<Pattern>,
    /// Destinations `public` refuses although their addresses are public: the admin endpoint.
    own: Vec<SocketAddr>,
    /// Requests refused (exported as a metric by `serve`).
    denied: Counter,
}

impl Default for Outbound {
    /// The default policy, `public`, with no admin endpoint.
    fn default() -> Self {
        Self::new(&[], Vec::new())
    }
}

impl Outbound {
    /// The policy of `patterns` (`public` when empty), refusing `own` (the server's admin
    /// endpoint) unless a pattern other than `public` allows it.
    pub fn new(patterns: &[Pattern], own: Vec<SocketAddr>) -> Self {
        let patterns = if patterns.is_empty() {
            vec![Pattern::Public]
        } else {
            patterns.to_vec()
        };
        Self {
            patterns,
            own,
            denied: Counter::default(),
        }
    }

    /// The count of requests refused (for the metrics).
    pub fn denied(&self) -> &Counter {
        &self.denied
    }

    /// Counts one refused request.
    pub fn deny(&self) {
        self.denied.inc();
    }

    /// Whether a request to `host` could be allowed at any address: `false` only when no
    /// pattern looks at addresses and none names `host`, so the name need not even be resolved
    /// (a guest cannot use the server's resolver as a channel to the outside).
    pub fn may_allow(&self, host: &str) -> bool {
        self.patterns.iter().any(|pattern| match pattern {
            Pattern::None => false,
            Pattern::Host { .. } => host_matches(pattern, host),
            Pattern::Any | Pattern::Public | Pattern::Net { .. } => true,
        })
    }

    /// Whether a request naming `host` (a name or an IP literal, as in its URI) may connect to
    /// `addr`, one of the addresses `host` resolved to.
    pub fn allows(&self, host: &str, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.patterns.iter().any(|pattern| match pattern {
            Pattern::Any => true,
            Pattern::None => false,
            Pattern::Public => is_public(ip) && !self.is_own(ip, addr.port()),
            Pattern::Host { port, .. } => {
                host_matches(pattern, host) && port.is_none_or(|port| port == addr.port())
            }
            Pattern::Net {
                addr: range,
                prefix,
                port,
            } => in_range(ip, *range, *prefix) && port.is_none_or(|port| port == addr.port()),
        })
    }

    /// Whether `ip:port` is the admin endpoint (on every address of the host, when it listens
    /// on the unspecified address).
    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|own| {
            own.port() == port
                && (own.ip().to_canonical() == ip || (own.ip().is_unspecified() && is_local(ip)))
        })
    }
}

/// Whether a [`Pattern::Host`] names `host` (case aside, a trailing dot aside).
fn host_matches(pattern: &Pattern, host: &str) -> bool {
    let Pattern::Host {
        name, subdomains, ..
    } = pattern
    else {
        return false;
    };
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    let name = name.as_bytes();
    if *subdomains {
        // Bytes, not str slices: a host that is not ASCII cannot split a character here.
        host.len() > name.len() + 1
            && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
            && host[host.len() - name.len() - 1] == b'.'
    } else {
        host.eq_ignore_ascii_case(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> Outbound {
        let patterns: Vec<_> = patterns.iter().map(|p| parse_pattern(p).unwrap()).collect();
        Outbound::new(&patterns, Vec::new())
    }

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn the_default_refuses_every_local_range() {
        let default = Outbound::default();
        for refused in [
            "127.0.0.1:80",
            "127.1.2.3:8080",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "172.31.255.255:80",
            "192.168.1.1:443",
            "100.64.0.1:80",
            "100.100.100.200:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[::]:80",
            "[fc00::1]:80",
            "[fd00:ec2::254]:80",
            "[fe80::1]:80",
            "[ff02::1]:80",
            // IPv4 inside IPv6: mapped, compatible, NAT64, 6to4.
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:10.0.0.1]:80",
            "[::10.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:7f00:1::]:80",
        ] {
            assert!(!default.allows("example.com", at(refused)), "{refused}");
        }
        for allowed in [
            "93.184.215.14:80",
            "8.8.8.8:443",
            "172.32.0.1:80",
            "100.128.0.1:80",
            "[2606:4700::1111]:443",
            "[::ffff:93.184.215.14]:80",
            "[64:ff9b::808:808]:80",
            "[2002:808:808::]:80",
        ] {
            assert!(default.allows("example.com", at(allowed)), "{allowed}");
        }
    }

    #[test]
    fn a_pattern_allows_what_it_matches_and_only_that() {
        let local = policy(&["127.0.0.1:9000"]);
        assert!(local.allows("127.0.0.1", at("127.0.0.1:9000")));
        // Judged on the resolved address: a name resolving there is allowed too.
        assert!(local.allows("upstream.test", at("127.0.0.1:9000")));
        assert!(local.allows("x", at("[::ffff:127.0.0.1]:9000")));
        assert!(!local.allows("127.0.0.1", at("127.0.0.1:9001")));
        // The listed patterns are the whole policy: public addresses are refused now.
        assert!(!local.allows("example.com", at("8.8.8.8:9000")));
        let both = policy(&["public", "127.0.0.1:9000"]);
        assert!(both.allows("example.com", at("8.8.8.8:80")));
        assert!(both.allows("x", at("127.0.0.1:9000")));
        assert!(!both.allows("x", at("127.0.0.1:22")));
        let any_port = policy(&["10.0.0.5"]);
        assert!(any_port.allows("x", at("10.0.0.5:1")));
        assert!(!any_port.allows("x", at("10.0.0.6:1")));
        let v6 = policy(&["[::1]:8080", "fd00::/8"]);
        assert!(v6.allows("x", at("[::1]:8080")));
        assert!(!v6.allows("x", at("[::1]:8081")));
        assert!(v6.allows("x", at("[fd12::3]:1")));
        assert!(!v6.allows("x", at("[fc12::3]:1")));
    }

    #[test]
    fn cidr_ranges() {
        let private = policy(&["10.0.0.0/8", "192.168.1.77/24"]);
        assert!(private.allows("x", at("10.255.0.1:80")));
        assert!(private.allows("x", at("192.168.1.1:80")));
        assert!(private.allows("x", at("[::ffff:10.9.9.9]:80")));
        assert!(!private.allows("x", at("192.168.2.1:80")));
        assert!(!private.allows("x", at("11.0.0.1:80")));
        // An IPv4 range never matches a (non-mapped) IPv6 address, nor the reverse.
        assert!(!private.allows("x", at("[a00::1]:80")));
        let everything_v4 = policy(&["0.0.0.0/0"]);
        assert!(everything_v4.allows("x", at("127.0.0.1:1")));
        assert!(!everything_v4.allows("x", at("[::1]:1")));
        assert_eq!(
            parse_pattern("192.168.1.77/24").unwrap().to_string(),
            "192.168.1.0/24"
        );
    }

    #[test]
    fn host_names_allow_whatever_they_resolve_to() {
        let names = policy(&["localhost:9000", "*.internal.example"]);
        assert!(names.allows("localhost", at("127.0.0.1:9000")));
        assert!(names.allows("LocalHost.", at("[::1]:9000")));
        assert!(!names.allows("localhost", at("127.0.0.1:9001")));
        assert!(names.allows("api.internal.example", at("10.0.0.1:443")));
        assert!(names.allows("a.b.internal.example", at("10.0.0.1:80")));
        assert!(!names.allows("internal.example", at("10.0.0.1:80")));
        assert!(!names.allows("evilinternal.example", at("10.0.0.1:80")));
        // Another name resolving to the same address is not allowed by a name.
        assert!(!names.allows("other", at("127.0.0.1:9000")));
        assert!(names.may_allow("localhost"));
        assert!(!names.may_allow("elsewhere.example"));
        assert!(policy(&["public"]).may_allow("elsewhere.example"));
    }

    #[test]
    fn star_allows_everything_and_none_nothing() {
        let any = policy(&["*"]);
        for addr in ["127.0.0.1:1", "169.254.169.254:80", "[::]:1", "8.8.8.8:53"] {
            assert!(any.allows("x", at(addr)), "{addr}");
        }
        let none = policy(&["none"]);
        for addr in ["127.0.0.1:1", "8.8.8.8:53"] {
            assert!(!none.allows("x", at(addr)), "{addr}");
        }
        assert!(!none.may_allow("example.com"));
    }

    #[test]
    fn the_admin_endpoint_is_refused_unless_listed() {
        let admin = at("127.0.0.1:9100");
        let public = Outbound::new(&[Pattern::Public], vec![admin]);
        assert!(!public.allows("x", admin));
        let exposed = at("0.0.0.0:9100");
        let public = Outbound::new(&[Pattern::Public], vec![exposed]);
        assert!(!public.allows("x", admin));
        assert!(public.allows("x", at("8.8.8.8:9100")));
        let listed = Outbound::new(&[parse_pattern("127.0.0.1:9100").unwrap()], vec![admin]);
        assert!(listed.allows("x", admin));
    }

    #[test]
    fn patterns_parse_or_say_why_not() {
        for (text, shown) in [
            ("*", "*"),
            ("public", "public"),
            ("none", "none"),
            ("Example.COM", "example.com"),
            ("example.com.:8080", "example.com:8080"),
            ("*.example.com", "*.example.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[::1]:80", "[::1]:80"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("fc00::/7", "fc00::/7"),
        ] {
            assert_eq!(parse_pattern(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "fc00::/129",
            "10.0.0.0/x",
            "host:99999",
            "host:",
            "a..b",
            "http://example.com",
            "ex ample.com",
            "[::1",
        ] {
            let err = parse_pattern(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
