//! DNS settings: the `[dns]` table of the TOML config (or what a dnsmasq command line says),
//! validated into what the DNS service serves: upstream servers with dnsmasq's `--server`
//! syntax, the cache, TTLs, and the extra hosts files.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::Problem;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// dnsmasq's default cache size is 150 names; netnode's is larger (a name costs about 200 bytes).
pub const DEFAULT_CACHE: usize = 10_000;
/// The resolver file read for upstreams unless told not to.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// `[dns]`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The port on every network's server address (0: no DNS). Default 53.
    pub port: Option<u16>,
    /// Upstreams in dnsmasq's `--server` syntax: `198.18.0.53`, `198.18.0.53#5353`,
    /// `/corp.example/198.18.0.60` (that domain only), `/local.zone/` (answered locally only).
    #[serde(default)]
    pub servers: Vec<String>,
    /// Also take upstreams from this resolv.conf (default `/etc/resolv.conf`) unless `no_resolv`.
    pub resolv_file: Option<PathBuf>,
    /// Ignore the resolv.conf.
    #[serde(default)]
    pub no_resolv: bool,
    /// Try upstreams in the order given (else the last one that answered first).
    #[serde(default)]
    pub strict_order: bool,
    /// Names cached (0: no cache).
    pub cache_size: Option<usize>,
    /// TTL of netnode's own answers (hosts-file names, negative answers), seconds (default 0,
    /// as dnsmasq).
    pub local_ttl: Option<u32>,
    /// TTL of the bindings' names (dnsmasq's `--dhcp-ttl`; default `local_ttl`).
    pub dhcp_ttl: Option<u32>,
    /// Log every query and what was done with it (dnsmasq's `--log-queries`).
    #[serde(default)]
    pub log_queries: bool,
    /// Do not forward single-label names (default true).
    pub domain_needed: Option<bool>,
    /// More hosts files (`<ip> <name> [aliases]` per line), as dnsmasq's `--addn-hosts`.
    #[serde(default)]
    pub addn_hosts: Vec<PathBuf>,
    /// Queries answered per second per client address (default 2,000; 0: no limit).
    pub client_rate: Option<u32>,
}

/// The per-client rate unless configured: well above a guest's needs (a boot resolves a
/// handful of names), well below a flood.
pub const DEFAULT_CLIENT_RATE: u32 = 2_000;

/// Where a query for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The domain it serves (wire format, lower case; the root for every name).
    pub domain: Vec<u8>,
    /// The server, or `None`: names in the domain are answered locally only.
    pub server: Option<SocketAddr>,
}

/// A line of a hosts file: an address and its names (the first is the canonical one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// The address.
    pub ip: IpAddr,
    /// Its names, the first being the one PTR answers with.
    pub names: Vec<String>,
}

/// What the DNS service serves; present when DNS is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// The port on every network's server address.
    pub port: u16,
    /// Upstreams, in the order given.
    pub upstreams: Vec<Upstream>,
    /// Try them in order (dnsmasq's `--strict-order`).
    pub strict_order: bool,
    /// Names cached.
    pub cache_size: usize,
    /// TTL of local answers.
    pub local_ttl: u32,
    /// TTL of the bindings' names.
    pub dhcp_ttl: u32,
    /// Log every query.
    pub log_queries: bool,
    /// Single-label names are never forwarded.
    pub domain_needed: bool,
    /// Extra names (`--addn-hosts`, `/etc/hosts` where read).
    pub hosts: Vec<HostRecord>,
    /// Queries answered per second per client (0: no limit).
    pub client_rate: u32,
}

/// A dotted name (`vm-1.novalocal`, a trailing dot or not) in wire format, lower-cased; `None`
/// when a label is empty or too long or the name too long.
pub fn encode_name(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('.');
    let mut out = Vec::with_capacity(text.len() + 2);
    if !text.is_empty() {
        for label in text.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// Parses one `--server` value: `ip[#port]`, `/domain/[/domain/]ip[#port]` or `/domain/`.
pub fn parse_server(text: &str) -> Result<Vec<Upstream>, String> {
    let (domains, addr) = match text.strip_prefix('/') {
        Some(rest) => {
            let (domains, addr) = rest
                .rsplit_once('/')
                .ok_or_else(|| format!("{text:?}: a domain list is written /domain/"))?;
            (domains.split('/').collect::<Vec<_>>(), addr)
        }
        None => (vec![""], text),
    };
    let server = if addr.is_empty() {
        None
    } else {
        let (host, port) = match addr.split_once('#') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{text:?}: bad port {p:?}"))?,
            ),
            None => (addr, DNS_PORT),
        };
        // dnsmasq also takes `@interface` after the address; the routing table decides here.
        let host = host.split('@').next().unwrap_or(host);
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("{text:?}: {host:?} is not an address"))?;
        Some(SocketAddr::new(ip, port))
    };
    domains
        .into_iter()
        .map(|d| {
            Ok(Upstream {
                domain: encode_name(d).ok_or_else(|| format!("{text:?}: {d:?} is not a domain"))?,
                server,
            })
        })
        .collect()
}

/// The `nameserver` lines of a resolv.conf.
pub fn parse_resolv(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver")
                .then(|| words.next()?.parse::<IpAddr>().ok())
                .flatten()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

/// Parses a hosts file (`/etc/hosts` format); lines that are not `<address> <name>...` are
/// problems, named by file and line.
pub fn parse_hosts(file: &str, text: &str) -> (Vec<HostRecord>, Vec<Problem>) {
    let (mut records, mut problems) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split('#').next().unwrap_or("").split_whitespace();
        let Some(ip) = fields.next() else { continue };
        let names: Vec<String> = fields
            .map(|f| f.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        match ip.parse::<IpAddr>() {
            Ok(ip) if !names.is_empty() && names.iter().all(|n| encode_name(n).is_some()) => {
                records.push(HostRecord { ip, names })
            }
            _ => problems.push(Problem::new(file, n + 1, "not `<address> <name>...`")),
        }
    }
    (records, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_syntax_as_dnsmasq_writes_it() {
        let one = parse_server("198.18.0.53").unwrap();
        assert_eq!(one[0].domain, vec![0]);
        assert_eq!(one[0].server, Some("198.18.0.53:53".parse().unwrap()));
        let port = parse_server("198.18.0.53#5353").unwrap();
        assert_eq!(port[0].server, Some("198.18.0.53:5353".parse().unwrap()));
        let routed = parse_server("/corp.example/lab.example/198.18.0.60").unwrap();
        assert_eq!(routed.len(), 2);
        assert_eq!(routed[1].domain, encode_name("lab.example").unwrap());
        let local = parse_server("/local.zone/").unwrap();
        assert_eq!(local[0].server, None);
        assert!(parse_server("banana").is_err());
        assert!(parse_server("/x/1.2.3.4#x").is_err());
    }

    #[test]
    fn resolv_and_hosts_files() {
        assert_eq!(
            parse_resolv(
                "# c\nnameserver 198.18.0.53\nsearch x\nnameserver fd00::53\nnameserver junk\n"
            ),
            vec![
                "198.18.0.53:53".parse().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        let (records, problems) = parse_hosts(
            "h",
            "198.18.0.10\tvm-1.novalocal vm-1 # c\n\nbad\n198.18.0.11\n",
        );
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].names, ["vm-1.novalocal", "vm-1"]);
        assert_eq!(problems.len(), 2);
    }
}
