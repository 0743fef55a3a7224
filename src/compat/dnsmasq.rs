//! dnsmasq's command line and conf files, as nova and neutron's DHCP agent write them. Pure:
//! arguments (and the text of conf files, read through a callback) in, options or an error
//! naming the option out.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use crate::table::config::{ConfigFile, NetworkConfig, StateConfig};
use crate::table::dns::DnsConfig;
use crate::table::LeaseTime;

/// One `--dhcp-range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    /// `set:` (or `tag:`/`net:`) label: the network's tag.
    pub tag: Option<String>,
    /// First address (the network comes from it and the netmask).
    pub start: Ipv4Addr,
    /// Netmask (default /24 as dnsmasq guesses for a static range without one).
    pub netmask: Option<Ipv4Addr>,
    /// Lease time (dnsmasq's default one hour).
    pub lease_time: Option<LeaseTime>,
    /// `static`: only hosts from the hosts file are served.
    pub is_static: bool,
}

/// What a dnsmasq command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsmasqOptions {
    /// `--keep-in-foreground` / `--no-daemon`: do not fork.
    pub foreground: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--listen-address`es.
    pub listen_addresses: Vec<Ipv4Addr>,
    /// `--interface`s.
    pub interfaces: Vec<String>,
    /// `--except-interface`s.
    pub except_interfaces: Vec<String>,
    /// `--bind-interfaces` / `--bind-dynamic`.
    pub bind_interfaces: bool,
    /// `--dhcp-range`s.
    pub ranges: Vec<DhcpRange>,
    /// `--dhcp-lease-max`.
    pub lease_max: Option<u32>,
    /// `--dhcp-hostsfile`s.
    pub hosts_files: Vec<PathBuf>,
    /// `--dhcp-optsfile`s.
    pub opts_files: Vec<PathBuf>,
    /// `--dhcp-option` / `--dhcp-option-force` values, in opts-file syntax.
    pub options: Vec<String>,
    /// `--dhcp-host` values, in hosts-file syntax.
    pub hosts: Vec<String>,
    /// `--dhcp-leasefile`.
    pub lease_file: Option<PathBuf>,
    /// `--leasefile-ro`.
    pub leasefile_ro: bool,
    /// `--dhcp-script`.
    pub script: Option<PathBuf>,
    /// `--domain`.
    pub domain: Option<String>,
    /// `--addn-hosts` files (their names answered by DNS; re-read on HUP).
    pub addn_hosts: Vec<PathBuf>,
    /// `--no-hosts`.
    pub no_hosts: bool,
    /// `--port` (0 disables DNS).
    pub port: Option<u16>,
    /// `--strict-order`.
    pub strict_order: bool,
    /// `--no-resolv`.
    pub no_resolv: bool,
    /// `--server`s (and `--local`s: a server without an address).
    pub servers: Vec<String>,
    /// `--cache-size`.
    pub cache_size: Option<usize>,
    /// `--local-ttl`.
    pub local_ttl: Option<u32>,
    /// `--dhcp-ttl`.
    pub dhcp_ttl: Option<u32>,
    /// `--log-queries`.
    pub log_queries: bool,
    /// `--resolv-file`.
    pub resolv_file: Option<PathBuf>,
    /// `--log-facility`: a syslog facility, a file, or `-` for stderr.
    pub log_facility: Option<String>,
    /// `--log-dhcp`: log every lease event.
    pub log_dhcp: bool,
    /// Options accepted for compatibility that change nothing netnode does.
    pub ignored: Vec<String>,
}

/// Why a command line is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An option dnsmasq has but netnode does not know.
    #[error("unknown option {0}")]
    Unknown(String),
    /// An option without its value.
    #[error("option {0} needs a value")]
    MissingValue(String),
    /// A flag given a value.
    #[error("option {0} takes no value")]
    UnexpectedValue(String),
    /// A bad value.
    #[error("option {option}: {reason}")]
    BadValue {
        /// The option.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// A conf file could not be read.
    #[error("conf file {path}: {reason}")]
    ConfFile {
        /// The file.
        path: String,
        /// What is wrong, with the line.
        reason: String,
    },
}

/// Why a parsed command line cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No IPv4 `--dhcp-range`.
    #[error("no IPv4 --dhcp-range: netnode's dnsmasq serves DHCP")]
    NoRange,
    /// More than one hosts or opts file.
    #[error("netnode takes one --dhcp-hostsfile and one --dhcp-optsfile")]
    SeveralFiles,
    /// No local interface has an address in a range.
    #[error("no interface has an address for the range starting {start} (listen addresses {listen:?}, interfaces {interfaces:?})")]
    NoInterface {
        /// The range's start.
        start: Ipv4Addr,
        /// `--listen-address`es.
        listen: Vec<Ipv4Addr>,
        /// `--interface`s.
        interfaces: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Flag,
    Value,
    /// A value that may be absent or empty (`--conf-file` alone, `--conf-file=`).
    OptionalValue,
}

/// (long name, short letter, arity). Short letters as dnsmasq's own.
const OPTIONS: &[(&str, Option<char>, Arity)] = &[
    ("keep-in-foreground", Some('k'), Arity::Flag),
    ("no-daemon", Some('d'), Arity::Flag),
    ("pid-file", Some('x'), Arity::Value),
    ("listen-address", Some('a'), Arity::Value),
    ("interface", Some('i'), Arity::Value),
    ("except-interface", Some('I'), Arity::Value),
    ("bind-interfaces", Some('z'), Arity::Flag),
    ("bind-dynamic", None, Arity::Flag),
    ("dhcp-range", Some('F'), Arity::Value),
    ("dhcp-lease-max", Some('X'), Arity::Value),
    ("dhcp-hostsfile", None, Arity::Value),
    ("dhcp-optsfile", None, Arity::Value),
    ("dhcp-option", Some('O'), Arity::Value),
    ("dhcp-option-force", None, Arity::Value),
    ("dhcp-host", Some('G'), Arity::Value),
    ("dhcp-leasefile", Some('l'), Arity::Value),
    ("leasefile-ro", None, Arity::Flag),
    ("dhcp-script", Some('6'), Arity::Value),
    ("domain", Some('s'), Arity::Value),
    ("addn-hosts", Some('H'), Arity::Value),
    ("no-hosts", Some('h'), Arity::Flag),
    ("conf-file", Some('C'), Arity::OptionalValue),
    ("port", Some('p'), Arity::Value),
    ("strict-order", Some('o'), Arity::Flag),
    ("no-resolv", Some('R'), Arity::Flag),
    ("server", Some('S'), Arity::Value),
    ("log-dhcp", None, Arity::Flag),
    ("log-facility", Some('8'), Arity::Value),
    ("local", None, Arity::Value),
    ("cache-size", Some('c'), Arity::Value),
    ("local-ttl", Some('T'), Arity::Value),
    ("dhcp-ttl", None, Arity::Value),
    ("log-queries", Some('q'), Arity::OptionalValue),
    ("local-service", None, Arity::Flag),
    ("resolv-file", Some('r'), Arity::Value),
    ("domain-needed", None, Arity::Flag),
    ("bogus-priv", None, Arity::Flag),
];

/// Options accepted for compatibility: they change nothing netnode does (said on stderr).
const NO_EFFECT: &[(&str, Option<char>, Arity)] = &[
    ("no-ping", None, Arity::Flag),
    ("dhcp-authoritative", Some('K'), Arity::Flag),
    ("dhcp-match", None, Arity::Value),
    ("dhcp-userclass", Some('j'), Arity::Value),
    ("dhcp-ignore-clid", None, Arity::Flag),
    ("user", Some('u'), Arity::Value),
    ("group", Some('g'), Arity::Value),
    ("enable-ra", None, Arity::Flag),
    ("ra-param", None, Arity::Value),
    ("dhcp-fqdn", None, Arity::Flag),
    ("dns-loop-detect", None, Arity::Flag),
    ("no-negcache", Some('N'), Arity::Flag),
    ("dhcp-client-update", None, Arity::Flag),
    ("quiet-dhcp", None, Arity::Flag),
];

/// Every option netnode's dnsmasq accepts.
fn all_options() -> impl Iterator<Item = &'static (&'static str, Option<char>, Arity)> {
    OPTIONS.iter().chain(NO_EFFECT)
}

/// `dnsmasq --help`: what netnode's dnsmasq takes, from the same tables the parser reads.
pub fn usage() -> String {
    let line = |(long, short, arity): &(&str, Option<char>, Arity)| {
        let value = match arity {
            Arity::Flag => "",
            Arity::Value => "=<value>",
            Arity::OptionalValue => "[=<value>]",
        };
        match short {
            Some(c) => format!("  -{c}, --{long}{value}\n"),
            None => format!("      --{long}{value}\n"),
        }
    };
    let mut out = String::from(
        "Usage: dnsmasq [options]\n\nnetnode in place of dnsmasq: DHCPv4 from the hosts file's MAC-to-IP table (static mode),\nwith nova's and neutron's command lines, files, pid file, signals and --dhcp-script.\n-w, --help prints this; -v, --version the version.\n\nOptions acted on:\n",
    );
    out.extend(OPTIONS.iter().map(line));
    out.push_str("\nAccepted with no effect (said on stderr):\n");
    out.extend(NO_EFFECT.iter().map(line));
    out
}

/// Parses dnsmasq's arguments (without argv[0]). `read_conf` reads a `--conf-file`.
pub fn parse(
    args: &[String],
    read_conf: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<DnsmasqOptions, ArgError> {
    let mut out = DnsmasqOptions::default();
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let letter = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            let long = all_options()
                .find(|(_, s, _)| *s == Some(letter))
                .map(|(l, _, _)| l.to_string())
                .ok_or_else(|| ArgError::Unknown(arg.clone()))?;
            (long, (!rest.is_empty()).then_some(rest))
        } else {
            return Err(ArgError::Unknown(arg.clone()));
        };
        let arity = all_options()
            .find(|(l, _, _)| *l == name)
            .map(|(_, _, a)| *a)
            .ok_or_else(|| ArgError::Unknown(format!("--{name}")))?;
        let value = match (arity, inline) {
            (Arity::Flag, Some(_)) => return Err(ArgError::UnexpectedValue(format!("--{name}"))),
            (Arity::Flag, None) => None,
            (Arity::Value, Some(v)) => Some(v),
            (Arity::Value, None) => {
                let v = args
                    .get(i)
                    .filter(|v| !v.starts_with('-'))
                    .ok_or_else(|| ArgError::MissingValue(format!("--{name}")))?;
                i += 1;
                Some(v.clone())
            }
            (Arity::OptionalValue, v) => Some(v.unwrap_or_default()),
        };
        pairs.push((name, value));
    }
    for (name, value) in pairs {
        apply(&mut out, &name, value, read_conf, 0)?;
    }
    Ok(out)
}

fn apply(
    out: &mut DnsmasqOptions,
    name: &str,
    value: Option<String>,
    read_conf: &dyn Fn(&str) -> std::io::Result<String>,
    depth: u8,
) -> Result<(), ArgError> {
    let bad = |reason: String| ArgError::BadValue {
        option: format!("--{name}"),
        reason,
    };
    let v = || value.clone().unwrap_or_default();
    match name {
        "keep-in-foreground" | "no-daemon" => out.foreground = true,
        "pid-file" => out.pid_file = Some(v().into()),
        "log-facility" => out.log_facility = Some(v()),
        "log-dhcp" => out.log_dhcp = true,
        "listen-address" => {
            for a in v().split(',') {
                out.listen_addresses.push(a.trim().parse().map_err(|_| bad(format!("{a:?} is not an IPv4 address (IPv6 listen addresses are for DNS, not served yet)")))?);
            }
        }
        "interface" => out
            .interfaces
            .extend(v().split(',').map(|s| s.trim().to_string())),
        "except-interface" => out
            .except_interfaces
            .extend(v().split(',').map(|s| s.trim().to_string())),
        "bind-interfaces" | "bind-dynamic" => out.bind_interfaces = true,
        "dhcp-range" => {
            if let Some(r) = parse_range(&v()).map_err(bad)? {
                out.ranges.push(r);
            }
        }
        "dhcp-lease-max" => {
            out.lease_max = Some(
                v().parse()
                    .map_err(|_| bad(format!("{:?} is not a number", v())))?,
            )
        }
        "dhcp-hostsfile" => out.hosts_files.push(v().into()),
        "dhcp-optsfile" => out.opts_files.push(v().into()),
        "dhcp-option" | "dhcp-option-force" => out.options.push(v()),
        "dhcp-host" => out.hosts.push(v()),
        "dhcp-leasefile" => out.lease_file = Some(v().into()),
        "leasefile-ro" => out.leasefile_ro = true,
        "dhcp-script" => out.script = Some(v().into()),
        "domain" => {
            // `--domain=example,198.18.0.0/24` scopes a domain to a range: the name counts.
            let d = v().split(',').next().unwrap_or("").trim().to_string();
            out.domain = (!d.is_empty()).then_some(d);
        }
        "addn-hosts" => out.addn_hosts.push(v().into()),
        "no-hosts" => out.no_hosts = true,
        "port" => {
            out.port = Some(
                v().parse()
                    .map_err(|_| bad(format!("{:?} is not a port", v())))?,
            )
        }
        "strict-order" => out.strict_order = true,
        "no-resolv" => out.no_resolv = true,
        "server" | "local" => out.servers.push(v()),
        "cache-size" => {
            out.cache_size = Some(
                v().parse()
                    .map_err(|_| bad(format!("{:?} is not a number", v())))?,
            )
        }
        "local-ttl" | "dhcp-ttl" => {
            let ttl = Some(
                v().parse()
                    .map_err(|_| bad(format!("{:?} is not a number of seconds", v())))?,
            );
            if name == "local-ttl" {
                out.local_ttl = ttl;
            } else {
                out.dhcp_ttl = ttl;
            }
        }
        // `--log-queries=extra` adds detail in dnsmasq; netnode's line is the same either way.
        "log-queries" => out.log_queries = true,
        // netnode answers only clients of the bridges' own subnets, always.
        "local-service" => {}
        "resolv-file" => out.resolv_file = Some(v().into()),
        // netnode never forwards single labels nor its own reverse zones: these are always on.
        "domain-needed" | "bogus-priv" => {}
        "conf-file" => {
            let path = v();
            // nova passes `--conf-file=` (empty) when dnsmasq_config_file is unset.
            if !path.is_empty() && path != "/dev/null" {
                if depth > 4 {
                    return Err(bad("conf files nest too deep".into()));
                }
                let text = read_conf(&path).map_err(|e| ArgError::ConfFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                conf_file(out, &path, &text, read_conf, depth + 1)?;
            }
        }
        other if NO_EFFECT.iter().any(|(l, _, _)| *l == other) => {
            out.ignored.push(format!("--{other}"))
        }
        other => return Err(ArgError::Unknown(format!("--{other}"))),
    }
    Ok(())
}

/// A conf file: one `option[=value]` per line, `#` comments, blank lines.
fn conf_file(
    out: &mut DnsmasqOptions,
    path: &str,
    text: &str,
    read_conf: &dyn Fn(&str) -> std::io::Result<String>,
    depth: u8,
) -> Result<(), ArgError> {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (line, None),
        };
        let at_line = |e: ArgError| ArgError::ConfFile {
            path: path.to_string(),
            reason: format!("line {}: {e}", n + 1),
        };
        let arity = all_options()
            .find(|(l, _, _)| *l == name)
            .map(|(_, _, a)| *a)
            .ok_or_else(|| at_line(ArgError::Unknown(name.to_string())))?;
        match (arity, &value) {
            (Arity::Flag, Some(_)) => {
                return Err(at_line(ArgError::UnexpectedValue(name.to_string())))
            }
            (Arity::Value, None) => return Err(at_line(ArgError::MissingValue(name.to_string()))),
            _ => {}
        }
        apply(out, name, value, read_conf, depth).map_err(at_line)?;
    }
    Ok(())
}

/// `[set:<tag>|tag:<tag>|net:<tag>,]<start>[,<end>|,static][,<netmask>][,<lease>]`. IPv6 ranges
/// (neutron) are skipped: `Ok(None)`.
fn parse_range(text: &str) -> Result<Option<DhcpRange>, String> {
    let mut fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let mut tag = None;
    while let Some(first) = fields.first() {
        match first.split_once(':') {
            Some(("set" | "tag" | "net", t)) => {
                tag = Some(t.to_string());
                fields.remove(0);
            }
            _ => break,
        }
    }
    let Some(start) = fields.first() else {
        return Err("no start address".into());
    };
    if start.contains(':') {
        return Ok(None); // DHCPv6 / RA modes: not this server's
    }
    let start: Ipv4Addr = start
        .parse()
        .map_err(|_| format!("{start:?} is not an IPv4 address"))?;
    let mut range = DhcpRange {
        tag,
        start,
        netmask: None,
        lease_time: None,
        is_static: false,
    };
    for f in fields.iter().skip(1) {
        if *f == "static" {
            range.is_static = true;
        } else if let Ok(addr) = f.parse::<Ipv4Addr>() {
            // The end of a dynamic range, or the netmask: a netmask has contiguous ones.
            if ipnetwork::ipv4_mask_to_prefix(addr).is_ok_and(|p| p > 0) {
                range.netmask = Some(addr);
            }
        } else if let Some(l) = LeaseTime::parse(f) {
            range.lease_time = Some(l);
        } else if matches!(
            *f,
            "proxy"
                | "ra-only"
                | "ra-names"
                | "slaac"
                | "ra-stateless"
                | "ra-advrouter"
                | "off-link"
        ) {
            // Modes for IPv6 ranges.
        } else {
            return Err(format!(
                "field {f:?} is not an address, netmask, lease time or mode"
            ));
        }
    }
    Ok(Some(range))
}

/// The network a range serves: its interface, the server's address on it, and the subnet
/// (the range's netmask, else the address's own prefix).
fn locate(
    o: &DnsmasqOptions,
    r: &DhcpRange,
    addresses: &[(String, Ipv4Addr, u8)],
) -> Result<(String, Ipv4Addr, Ipv4Network), ConfigError> {
    let subnet_of = |addr: Ipv4Addr, prefix: u8| {
        let subnet = match r.netmask {
            Some(mask) => Ipv4Network::with_netmask(addr, mask).ok()?,
            None => Ipv4Network::new(addr, prefix).ok()?,
        };
        let subnet = Ipv4Network::new(subnet.network(), subnet.prefix()).ok()?;
        subnet.contains(r.start).then_some(subnet)
    };
    let usable = |name: &str| {
        !o.except_interfaces.iter().any(|e| e == name)
            && (o.interfaces.is_empty() || o.interfaces.iter().any(|i| i == name))
    };
    let listening =
        |addr: &Ipv4Addr| o.listen_addresses.is_empty() || o.listen_addresses.contains(addr);
    addresses
        .iter()
        .find_map(|(name, addr, prefix)| {
            if !usable(name) || !listening(addr) {
                return None;
            }
            subnet_of(*addr, *prefix).map(|net| (name.clone(), *addr, net))
        })
        .ok_or_else(|| ConfigError::NoInterface {
            start: r.start,
            listen: o.listen_addresses.clone(),
            interfaces: o.interfaces.clone(),
        })
}

/// The table config that serves what the command line asks, given the host's IPv4 addresses.
/// The state (the lease journal) lives beside the pid file.
pub fn to_config(
    o: &DnsmasqOptions,
    addresses: &[(String, Ipv4Addr, u8)],
) -> Result<ConfigFile, ConfigError> {
    if o.ranges.is_empty() {
        return Err(ConfigError::NoRange);
    }
    if o.hosts_files.len() > 1 || o.opts_files.len() > 1 {
        return Err(ConfigError::SeveralFiles);
    }
    let mut config = ConfigFile {
        drop_in: true,
        ..ConfigFile::default()
    };
    for (i, r) in o.ranges.iter().enumerate() {
        let (bridge, server, subnet) = locate(o, r, addresses)?;
        if !r.is_static {
            tracing::warn!(start = %r.start, "a dynamic --dhcp-range is served in static mode: only hosts with a binding get an address");
        }
        config.network.push(NetworkConfig {
            name: r.tag.clone().unwrap_or_else(|| format!("range{i}")),
            bridge,
            cidr: subnet.to_string(),
            // dnsmasq's default router is its own address; nova's opts file sets option 3.
            gateway: Some(server),
            server_address: Some(server),
            lease_time: Some(r.lease_time.unwrap_or(LeaseTime::Seconds(3600)).to_string()),
            domain: o.domain.clone(),
            // With DNS on, the server's own address is handed out (option 6), as dnsmasq
            // does; with --port=0 none is, unless an option line says otherwise.
            hosts_file: o.hosts_files.first().cloned(),
            opts_file: o.opts_files.first().cloned(),
            options: o.options.clone(),
            host_lines: o.hosts.clone(),
            ..NetworkConfig::default()
        });
    }
    let state_dir = match &o.pid_file {
        Some(pid) => pid.with_extension("netnode"),
        None => PathBuf::from(format!(
            "/var/lib/netnode/dnsmasq-{}",
            config.network[0].bridge
        )),
    };
    config.state = StateConfig {
        dir: state_dir,
        lease_file: if o.leasefile_ro {
            None
        } else {
            Some(
                o.lease_file
                    .clone()
                    .unwrap_or_else(|| "/var/lib/misc/dnsmasq.leases".into()),
            )
        },
        fsync: true,
    };
    if o.port != Some(0) {
        let mut addn_hosts = o.addn_hosts.clone();
        if !o.no_hosts {
            addn_hosts.insert(0, "/etc/hosts".into());
        }
        config.dns = Some(DnsConfig {
            port: o.port,
            servers: o.servers.clone(),
            resolv_file: o.resolv_file.clone(),
            no_resolv: o.no_resolv,
            strict_order: o.strict_order,
            cache_size: o.cache_size,
            local_ttl: o.local_ttl,
            dhcp_ttl: o.dhcp_ttl,
            log_queries: o.log_queries,
            domain_needed: Some(true),
            addn_hosts,
            client_rate: None,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn no_conf(_: &str) -> std::io::Result<String> {
        Err(std::io::Error::other("not expected"))
    }

    /// nova's command line for br100, as linux_net.py builds it (without the env prefix).
    const NOVA: &str = "--strict-order --bind-interfaces --conf-file= --pid-file=/var/lib/nova/networks/nova-br100.pid --dhcp-optsfile=/var/lib/nova/networks/nova-br100.opts --listen-address=198.18.0.1 --except-interface=lo --dhcp-range=set:private,198.18.0.2,static,255.255.255.0,86400s --dhcp-lease-max=256 --dhcp-hostsfile=/var/lib/nova/networks/nova-br100.conf --dhcp-script=/usr/bin/nova-dhcpbridge --no-hosts --leasefile-ro --domain=novalocal --addn-hosts=/var/lib/nova/networks/nova-br100.hosts --no-resolv --server=198.18.0.53";

    #[test]
    fn novas_whole_command_line() {
        let o = parse(&args(NOVA), &no_conf).unwrap();
        assert!(
            o.strict_order
                && o.bind_interfaces
                && o.no_hosts
                && o.leasefile_ro
                && o.no_resolv
                && !o.foreground
        );
        assert_eq!(
            o.pid_file,
            Some("/var/lib/nova/networks/nova-br100.pid".into())
        );
        assert_eq!(o.listen_addresses, [Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(o.except_interfaces, ["lo"]);
        assert_eq!(
            o.ranges,
            [DhcpRange {
                tag: Some("private".into()),
                start: Ipv4Addr::new(198, 18, 0, 2),
                netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                lease_time: Some(LeaseTime::Seconds(86400)),
                is_static: true
            }]
        );
        assert_eq!(o.lease_max, Some(256));
        assert_eq!(
            o.hosts_files,
            [PathBuf::from("/var/lib/nova/networks/nova-br100.conf")]
        );
        assert_eq!(o.script, Some("/usr/bin/nova-dhcpbridge".into()));
        assert_eq!(o.domain.as_deref(), Some("novalocal"));
        assert_eq!(o.servers, ["198.18.0.53"]);
    }

    #[test]
    fn neutrons_command_line() {
        let neutron = "--no-hosts --no-resolv --pid-file=/var/lib/neutron/dhcp/n1/pid --dhcp-hostsfile=/var/lib/neutron/dhcp/n1/host --addn-hosts=/var/lib/neutron/dhcp/n1/addn_hosts --dhcp-optsfile=/var/lib/neutron/dhcp/n1/opts --dhcp-leasefile=/var/lib/neutron/dhcp/n1/leases --dhcp-match=set:ipxe,175 --dhcp-userclass=set:ipxe6,iPXE --local-service --bind-dynamic --dhcp-range=set:subnet-1,198.18.0.0,static,255.255.255.0,86400s --dhcp-range=set:subnet-2,fd00:1::,static,64,86400s --dhcp-option-force=option:mtu,1450 --dhcp-lease-max=256 --conf-file=/dev/null --domain=openstacklocal --interface=tap1234 --except-interface=lo";
        let o = parse(&args(neutron), &no_conf).unwrap();
        assert_eq!(o.ranges.len(), 1, "the IPv6 range is skipped");
        assert_eq!(o.interfaces, ["tap1234"]);
        assert_eq!(o.options, ["option:mtu,1450"]);
        assert_eq!(o.lease_file, Some("/var/lib/neutron/dhcp/n1/leases".into()));
        assert!(o.ignored.contains(&"--dhcp-match".to_string()));
    }

    #[test]
    fn short_options_separate_values_and_conf_files() {
        let conf = |path: &str| match path {
            "/etc/dnsmasq.conf" => Ok(
                "# comment\n\ndomain=example\nkeep-in-foreground\ndhcp-option=42,198.18.0.1\n"
                    .to_string(),
            ),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        let o = parse(
            &args("-k -x /run/d.pid -a 198.18.0.1 --conf-file=/etc/dnsmasq.conf -p0"),
            &conf,
        )
        .unwrap();
        assert!(o.foreground);
        assert_eq!(o.pid_file, Some("/run/d.pid".into()));
        assert_eq!(o.domain.as_deref(), Some("example"));
        assert_eq!(o.options, ["42,198.18.0.1"]);
        assert_eq!(o.port, Some(0));
        let err = parse(&args("--conf-file=/missing"), &conf).unwrap_err();
        assert!(err.to_string().contains("/missing"), "{err}");
        let bad = |_: &str| Ok("domain=x\nbogus-option=1\n".to_string());
        let err = parse(&args("--conf-file=/x"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("bogus-option"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_malformed_options_are_errors_naming_them() {
        assert_eq!(
            parse(&args("--frobnicate"), &no_conf),
            Err(ArgError::Unknown("--frobnicate".into()))
        );
        assert_eq!(
            parse(&args("-Z"), &no_conf),
            Err(ArgError::Unknown("-Z".into()))
        );
        assert_eq!(
            parse(&args("--pid-file"), &no_conf),
            Err(ArgError::MissingValue("--pid-file".into()))
        );
        assert_eq!(
            parse(&args("--no-hosts=yes"), &no_conf),
            Err(ArgError::UnexpectedValue("--no-hosts".into()))
        );
        assert!(matches!(
            parse(&args("--dhcp-range=banana"), &no_conf),
            Err(ArgError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&args("--listen-address=x"), &no_conf),
            Err(ArgError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&args("stray"), &no_conf),
            Err(ArgError::Unknown(_))
        ));
    }

    #[test]
    fn novas_line_becomes_a_network_on_the_listen_addresses_bridge() {
        let o = parse(&args(NOVA), &no_conf).unwrap();
        let addrs = vec![
            ("lo".to_string(), Ipv4Addr::LOCALHOST, 8),
            ("eth0".into(), Ipv4Addr::new(198, 18, 5, 1), 24),
            ("br100".into(), Ipv4Addr::new(198, 18, 0, 1), 24),
        ];
        let c = to_config(&o, &addrs).unwrap();
        let n = &c.network[0];
        assert_eq!(
            (n.name.as_str(), n.bridge.as_str(), n.cidr.as_str()),
            ("private", "br100", "198.18.0.0/24")
        );
        assert_eq!(n.server_address, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(n.lease_time.as_deref(), Some("86400s"));
        assert_eq!(
            n.hosts_file,
            Some("/var/lib/nova/networks/nova-br100.conf".into())
        );
        assert_eq!(
            c.state.dir,
            PathBuf::from("/var/lib/nova/networks/nova-br100.netnode")
        );
        assert_eq!(c.state.lease_file, None, "--leasefile-ro");
        assert!(matches!(
            to_config(&o, &addrs[..2]),
            Err(ConfigError::NoInterface { .. })
        ));
        // DNS as nova's line asks: the hosts files, the server, no resolv.conf, strict order.
        let dns = c.dns.as_ref().unwrap();
        assert_eq!(dns.servers, ["198.18.0.53"]);
        assert!(dns.no_resolv && dns.strict_order && !dns.log_queries);
        assert_eq!(
            dns.addn_hosts,
            [PathBuf::from("/var/lib/nova/networks/nova-br100.hosts")],
            "--no-hosts: no /etc/hosts"
        );
        // The DNS options of neutron and operators act too; --port=0 turns DNS off.
        let more = format!("{NOVA} --log-queries --dhcp-ttl=30 --local-ttl=5 --local-service --cache-size=500 --local=/internal/");
        let c = to_config(&parse(&args(&more), &no_conf).unwrap(), &addrs).unwrap();
        let dns = c.dns.as_ref().unwrap();
        assert!(dns.log_queries);
        assert_eq!(
            (dns.dhcp_ttl, dns.local_ttl, dns.cache_size),
            (Some(30), Some(5), Some(500))
        );
        assert_eq!(dns.servers, ["198.18.0.53", "/internal/"]);
        let off = format!("{NOVA} --port=0");
        let c = to_config(&parse(&args(&off), &no_conf).unwrap(), &addrs).unwrap();
        assert!(c.dns.is_none());
    }

    #[test]
    fn ranges() {
        let r = parse_range("198.18.0.10,198.18.0.100,12h")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.netmask, r.lease_time, r.is_static),
            (None, Some(LeaseTime::Seconds(43200)), false)
        );
        let r = parse_range("tag:a,198.18.0.0,static,255.255.0.0,infinite")
            .unwrap()
            .unwrap();
        assert_eq!(r.tag.as_deref(), Some("a"));
        assert_eq!(r.netmask, Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(parse_range("fd00::,ra-only").unwrap(), None);
        let r = parse_range("set:net.1,198.18.0.0,static,255.255.255.0")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.tag.as_deref(),
            Some("net.1"),
            "a label with a dot is still a label"
        );
    }
}
