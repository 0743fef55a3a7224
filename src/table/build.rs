//! Builds a [`Table`] from the TOML config and the hosts and opts files it names.
//! Bad lines become [`Problem`]s and are skipped; only an unreadable file or an invalid
//! network definition fails the whole load (and then a reload keeps the last good table).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::ra::RaParams;

use super::config::{ConfigFile, HostConfig, NetworkConfig};
use super::dns::{self, DnsConfig, DnsSettings};
use super::hosts::{self, ClientIdMatch, HostEntry};
use super::options::{code, encode_classless, hex_bytes};
use super::opts::{self, OptionLine};
use super::{Binding, LeaseTime, MacAddr, Network, OptionList, Problem, StateSettings, Table};

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file a network names could not be read.
    #[error("network {network:?}: {key}: {}: {source}", path.display())]
    NetworkFile {
        /// The network.
        network: String,
        /// The key that names the file (`hosts_file`, `opts_file`).
        key: &'static str,
        /// The file, as an absolute path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The config is invalid; the message names the line or the network and field.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// dnsmasq's shortest lease; `min_lease_time` lowers it (for tests of renewal).
pub const MIN_LEASE_SECONDS: u32 = 120;

/// nova's default lease time (dhcp_lease_time).
pub const DEFAULT_LEASE_TIME: LeaseTime = LeaseTime::Seconds(86_400);

/// Reads the config file at `path` and every file it names.
pub fn load(path: &Path) -> Result<Table, LoadError> {
    let config = read_config(path)?;
    let mut table = from_config(&config, path)?;
    table.sources.insert(0, path.to_path_buf());
    Ok(table)
}

/// Reads and parses the config file at `path`, its relative paths made relative to it.
pub fn read_config(path: &Path) -> Result<ConfigFile, LoadError> {
    let text = read(path)?;
    let mut config = ConfigFile::parse(&text).map_err(|e| LoadError::Config {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    config.resolve_paths(path);
    Ok(config)
}

/// The state directory a config names, read leniently: only `[state] dir` (relative to the
/// config's directory) is looked at, so `netnode ctl --config` still finds the daemon's socket
/// while the rest of the file is being edited into shape.
pub fn state_dir_of(path: &Path) -> Result<PathBuf, LoadError> {
    let text = read(path)?;
    let value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| LoadError::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
    let dir = value
        .get("state")
        .and_then(|s| s.get("dir"))
        .and_then(|d| d.as_str())
        .map_or_else(|| super::config::StateConfig::default().dir, PathBuf::from);
    Ok(match path.parent() {
        Some(base) if dir.is_relative() => base.join(dir),
        _ => dir,
    })
}

/// Builds a table from a parsed config; `origin` names it in messages.
pub fn from_config(config: &ConfigFile, origin: &Path) -> Result<Table, LoadError> {
    let invalid = |message: String| LoadError::Config {
        path: origin.to_path_buf(),
        message,
    };
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut networks: Vec<Network> = Vec::new();
    // Served DNS changes what DHCP and router advertisements hand out as the DNS server.
    let dns_on = config.dns.as_ref().is_some_and(|d| d.port != Some(0));
    let fixed_range: Option<Ipv6Network> = match &config.ipv6.fixed_range {
        Some(r) => Some(
            r.parse()
                .map_err(|e| invalid(format!("[ipv6] fixed_range: {r:?}: {e}")))?,
        ),
        None => None,
    };
    for (index, nc) in config.network.iter().enumerate() {
        let label = format!("network {} ({:?})", index + 1, nc.name);
        if networks.iter().any(|n| n.name == nc.name) {
            return Err(invalid(format!("{label}: name: used by another network")));
        }
        let as_field = |e: BuildError| match e {
            BuildError::Field(msg) => invalid(format!("{label}: {msg}")),
            BuildError::Load(e) => e,
        };
        let mut network =
            build_network(nc, origin, dns_on, &mut problems, &mut sources).map_err(as_field)?;
        if network.cidr_v6.is_none() {
            if let Some(range) = fixed_range {
                let derived = nth_subnet64(range, index)
                    .map_err(|m| invalid(format!("{label}: [ipv6] fixed_range: {m}")))?;
                network.cidr_v6 = Some(derived);
            }
        }
        if let Some(v6) = network.cidr_v6 {
            if let Some(other) = networks
                .iter()
                .find(|n| n.cidr_v6.is_some_and(|o| o.overlaps(v6)))
            {
                return Err(invalid(format!(
                    "{label}: cidr_v6: {v6} overlaps network {:?} ({})",
                    other.name,
                    other.cidr_v6.map(|o| o.to_string()).unwrap_or_default()
                )));
            }
            let gateway_v6 = *network
                .gateway_v6
                .get_or_insert_with(|| Ipv6Addr::from(u128::from(v6.network()) + 1));
            if !v6.contains(gateway_v6) {
                return Err(invalid(format!(
                    "{label}: gateway_v6: {gateway_v6} is not in {v6}"
                )));
            }
            let mut params =
                RaParams::from_config(&nc.ra).map_err(|m| invalid(format!("{label}: ra: {m}")))?;
            if dns_on && params.rdnss.is_empty() {
                // RFC 8106: IPv6-only guests learn the resolver and the search domain too.
                params.rdnss = vec![gateway_v6];
                params.dnssl = network.domain.iter().cloned().collect();
            }
            network.ra = params.send.then(|| Arc::new(params));
        }
        if let Some(other) = networks.iter().find(|n| n.cidr.overlaps(network.cidr)) {
            return Err(invalid(format!(
                "{label}: cidr: {} overlaps network {:?} ({})",
                network.cidr, other.name, other.cidr
            )));
        }
        networks.push(network);
    }
    let dns = match &config.dns {
        Some(d) if d.port != Some(0) => Some(
            dns_settings(d, &networks, &mut problems, &mut sources).map_err(|e| match e {
                BuildError::Field(m) => invalid(format!("[dns] {m}")),
                BuildError::Load(e) => e,
            })?,
        ),
        _ => None,
    };
    let state = StateSettings {
        dir: config.state.dir.clone(),
        lease_file: config.state.lease_file.clone(),
        fsync: config.state.fsync,
    };
    let metadata = config
        .metadata
        .as_ref()
        .map(super::instance::settings)
        .transpose()
        .map_err(invalid)?;
    if let Some(path) = config
        .metadata
        .as_ref()
        .and_then(|m| m.vendordata_file.clone())
    {
        sources.push(path);
    }
    let instances = super::instance::build(
        &config.instance,
        &networks,
        config.ipv6.backend,
        origin,
        &mut problems,
    )
    .map_err(invalid)?;
    sources.extend(
        config
            .instance
            .iter()
            .filter_map(|i| i.user_data_file.clone()),
    );
    if !config.drop_in {
        super::control::check_uplinks(&networks).map_err(invalid)?;
        if config.control.is_some() {
            super::control::check_gateways(&networks).map_err(invalid)?;
        }
    }
    let control = super::control::settings(
        config.control.as_ref(),
        config.nat.as_ref(),
        &config.floating,
        &networks,
        metadata.as_ref().map(|m| m.listen),
    )
    .map_err(invalid)?;
    let firewall = super::firewall::settings(
        config
            .control
            .as_ref()
            .map(|c| c.firewall_driver)
            .unwrap_or_default(),
        &config.security_group,
        &instances,
        &networks,
        &origin.display().to_string(),
        &mut problems,
    )
    .map_err(invalid)?;
    let metrics = if config.drop_in {
        None
    } else {
        let listen = config
            .metrics
            .as_ref()
            .map_or(super::config::DEFAULT_METRICS_LISTEN, |m| m.listen.as_str());
        match listen.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                invalid(format!(
                    "[metrics] listen: {text:?} is not address:port (\"\" turns metrics off)"
                ))
            })?),
        }
    };
    Ok(Table {
        firewall,
        metrics,
        networks,
        state,
        problems,
        sources,
        ipv6_backend: config.ipv6.backend,
        metadata,
        instances,
        ra_only: Vec::new(),
        dns,
        control,
        manager: None,
    })
}

/// Validates `[dns]`: upstreams (the `servers`, then the resolv.conf's unless `no_resolv`), never
/// netnode's own listening addresses; the extra hosts files.
fn dns_settings(
    d: &DnsConfig,
    networks: &[Network],
    problems: &mut Vec<Problem>,
    sources: &mut Vec<PathBuf>,
) -> Result<DnsSettings, BuildError> {
    let port = d.port.unwrap_or(dns::DNS_PORT);
    let mut upstreams = Vec::new();
    for text in &d.servers {
        upstreams.extend(dns::parse_server(text).map_err(|e| field(format!("servers: {e}")))?);
    }
    if !d.no_resolv {
        let path = d
            .resolv_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(dns::RESOLV_CONF));
        match fs::read_to_string(&path) {
            Ok(text) => {
                upstreams.extend(
                    dns::parse_resolv(&text)
                        .into_iter()
                        .map(|server| dns::Upstream {
                            domain: vec![0],
                            server: Some(server),
                        }),
                )
            }
            Err(e) => problems.push(Problem::new(
                path.display().to_string(),
                0,
                format!("cannot read the upstream servers: {e}"),
            )),
        }
        sources.push(path);
    }
    // Never forward to ourselves: a loop that would answer nothing, slowly.
    let own = |a: std::net::SocketAddr| {
        a.port() == port
            && networks.iter().any(|n| {
                a.ip() == std::net::IpAddr::V4(n.server)
                    || n.gateway_v6
                        .is_some_and(|g| a.ip() == std::net::IpAddr::V6(g))
            })
    };
    upstreams.retain(|u| match u.server {
        Some(a) if own(a) => {
            problems.push(Problem::new(
                "[dns] servers",
                0,
                format!("{a} is netnode's own DNS address; not forwarding to it"),
            ));
            false
        }
        _ => true,
    });
    let mut hosts = Vec::new();
    for path in &d.addn_hosts {
        let file = path.display().to_string();
        match fs::read_to_string(path) {
            Ok(text) => {
                let (records, bad) = dns::parse_hosts(&file, &text);
                hosts.extend(records);
                problems.extend(bad);
            }
            // dnsmasq warns about an unreadable hosts file and goes on: so does netnode.
            Err(e) => problems.push(Problem::new(file, 0, format!("cannot read: {e}"))),
        }
        sources.push(path.clone());
    }
    Ok(DnsSettings {
        port,
        upstreams,
        strict_order: d.strict_order,
        cache_size: d.cache_size.unwrap_or(dns::DEFAULT_CACHE),
        local_ttl: d.local_ttl.unwrap_or(0),
        dhcp_ttl: d.dhcp_ttl.or(d.local_ttl).unwrap_or(0),
        log_queries: d.log_queries,
        domain_needed: d.domain_needed.unwrap_or(true),
        hosts,
        client_rate: d.client_rate.unwrap_or(dns::DEFAULT_CLIENT_RATE),
    })
}

enum BuildError {
    Field(String),
    Load(LoadError),
}

impl From<LoadError> for BuildError {
    fn from(e: LoadError) -> Self {
        BuildError::Load(e)
    }
}

/// Reads a file a network names; the error names the network, the key and the absolute path.
fn read_network_file(
    nc: &NetworkConfig,
    key: &'static str,
    path: &Path,
) -> Result<String, BuildError> {
    fs::read_to_string(path).map_err(|source| {
        BuildError::Load(LoadError::NetworkFile {
            network: nc.name.clone(),
            key,
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            source,
        })
    })
}

fn read(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds one network: its own settings, its option lines, the options they start from, and
/// the bindings of its three host sources.
fn build_network(
    nc: &NetworkConfig,
    origin: &Path,
    dns_on: bool,
    problems: &mut Vec<Problem>,
    sources: &mut Vec<PathBuf>,
) -> Result<Network, BuildError> {
    let settings = Settings::validate(nc)?;
    let option_lines = option_lines(nc, origin, problems, sources)?;
    // With netnode serving DNS and no servers configured, the server's own address is handed
    // out, as dnsmasq does.
    let dns = if nc.dns_servers.is_empty() && dns_on {
        vec![settings.server]
    } else {
        nc.dns_servers.clone()
    };
    let base = base_options(nc, &settings, &dns)?;
    let network = Network {
        dns,
        mtu_v4: nc.mtu,
        cidr_v6: settings.cidr_v6,
        gateway_v6: nc.gateway_v6,
        ra: None,
        uplink: settings.uplink.clone(),
        share_dhcp_address: nc.share_dhcp_address,
        name: nc.name.clone(),
        bridge: nc.bridge.clone(),
        cidr: settings.cidr,
        gateway: settings.gateway,
        server: settings.server,
        lease_time: settings.lease_time,
        domain: settings.domain.clone(),
        bindings: Vec::new(),
        by_mac: HashMap::new(),
        by_client_id: HashMap::new(),
    };
    // Entries are bound as they are read, never all held at once: a million-line hosts file
    // parsed into a list beside the table it builds doubled the memory a load needs.
    let mut bindings = Bindings {
        network,
        cidr: settings.cidr,
        min_lease: settings.min_lease,
        base: &base,
        option_lines: &option_lines,
        resolved: HashMap::new(),
        domains: HashMap::new(),
        used_ips: HashMap::new(),
    };
    bind_hosts(&mut bindings, nc, origin, problems, sources)?;
    Ok(bindings.network)
}

fn field(msg: String) -> BuildError {
    BuildError::Field(msg)
}

/// A network's own settings, validated; errors name the field.
struct Settings {
    cidr: Ipv4Network,
    gateway: Option<Ipv4Addr>,
    server: Ipv4Addr,
    min_lease: u32,
    lease_time: LeaseTime,
    domain: Option<String>,
    cidr_v6: Option<Ipv6Network>,
    uplink: Option<super::control::Uplink>,
}

impl Settings {
    fn validate(nc: &NetworkConfig) -> Result<Settings, BuildError> {
        if nc.name.is_empty() {
            return Err(field("name: empty".into()));
        }
        if nc.bridge.is_empty()
            || nc.bridge.len() >= libc::IFNAMSIZ
            || nc.bridge.contains(['/', ' '])
        {
            return Err(field(format!(
                "bridge: {:?} is not an interface name",
                nc.bridge
            )));
        }
        let cidr: Ipv4Network = nc
            .cidr
            .parse()
            .map_err(|e| field(format!("cidr: {:?}: {e}", nc.cidr)))?;
        // Normalise to the network address (a config may write the gateway's address/len).
        let cidr = Ipv4Network::new(cidr.network(), cidr.prefix())
            .map_err(|e| field(format!("cidr: {e}")))?;
        if cidr.prefix() > 30 {
            return Err(field(format!(
                "cidr: /{} leaves no room for hosts",
                cidr.prefix()
            )));
        }
        let inside = |what: &str, ip: Ipv4Addr| {
            if cidr.contains(ip) && ip != cidr.network() && ip != cidr.broadcast() {
                Ok(ip)
            } else {
                Err(field(format!(
                    "{what}: {ip} is not a host address of {cidr}"
                )))
            }
        };
        let gateway = nc.gateway.map(|g| inside("gateway", g)).transpose()?;
        let first_host = Ipv4Addr::from(u32::from(cidr.network()) + 1);
        let server = match nc.server_address {
            Some(s) => inside("server_address", s)?,
            None => gateway.unwrap_or(first_host),
        };
        let min_lease = match parse_lease(nc.min_lease_time.as_deref())
            .map_err(|v| field(format!("min_lease_time: {v:?} is not a lease time")))?
        {
            Some(LeaseTime::Seconds(s)) => s,
            Some(LeaseTime::Infinite) => {
                return Err(field("min_lease_time: cannot be infinite".into()))
            }
            None => MIN_LEASE_SECONDS,
        };
        let lease_time = at_least(
            parse_lease(nc.lease_time.as_deref())
                .map_err(|v| field(format!("lease_time: {v:?} is not a lease time")))?
                .unwrap_or(DEFAULT_LEASE_TIME),
            min_lease,
        );
        let domain = match nc.domain.as_deref().map(|d| d.trim_end_matches('.')) {
            Some("") | None => None,
            Some(d) if hosts::is_hostname(d) => Some(d.to_string()),
            Some(d) => return Err(field(format!("domain: {d:?} is not a domain name"))),
        };
        Ok(Settings {
            cidr,
            gateway,
            server,
            min_lease,
            lease_time,
            domain,
            cidr_v6: cidr_v6(nc)?,
            uplink: super::control::uplink(
                nc.bridge_interface.as_deref(),
                nc.vlan,
                nc.vlan_interface.as_deref(),
            )
            .map_err(field)?,
        })
    }
}

/// `cidr_v6`: a prefix SLAAC can use (/64 or shorter), normalised.
fn cidr_v6(nc: &NetworkConfig) -> Result<Option<Ipv6Network>, BuildError> {
    let Some(text) = &nc.cidr_v6 else {
        return Ok(None);
    };
    let net: Ipv6Network = text
        .parse()
        .map_err(|e| field(format!("cidr_v6: {text:?}: {e}")))?;
    if net.prefix() > 64 {
        return Err(field(format!(
            "cidr_v6: /{} is longer than /64, so SLAAC cannot use it",
            net.prefix()
        )));
    }
    Ipv6Network::new(net.network(), net.prefix())
        .map(Some)
        .map_err(|e| field(format!("cidr_v6: {e}")))
}

/// Option lines: TOML `options` first, then the opts file, so the file wins a tie.
fn option_lines(
    nc: &NetworkConfig,
    origin: &Path,
    problems: &mut Vec<Problem>,
    sources: &mut Vec<PathBuf>,
) -> Result<Vec<OptionLine>, BuildError> {
    let mut lines: Vec<OptionLine> = Vec::new();
    let options_origin = format!("{} [network {}] options", origin.display(), nc.name);
    for (i, text) in nc.options.iter().enumerate() {
        match opts::parse_line(text) {
            Ok(mut line) => {
                line.line = i + 1;
                lines.push(line);
            }
            Err(reason) => problems.push(Problem::new(&options_origin, i + 1, reason)),
        }
    }
    if let Some(path) = &nc.opts_file {
        let text = read_network_file(nc, "opts_file", path)?;
        let (parsed, bad) = opts::parse(&path.display().to_string(), &text);
        lines.extend(parsed);
        problems.extend(bad);
        sources.push(path.clone());
    }
    Ok(lines)
}

/// The options a network's own settings give every client, before option lines apply.
fn base_options(
    nc: &NetworkConfig,
    s: &Settings,
    dns: &[Ipv4Addr],
) -> Result<BaseOptions, BuildError> {
    let mut values: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    values.insert(code::SUBNET_MASK, s.cidr.mask().octets().to_vec());
    values.insert(code::BROADCAST, s.cidr.broadcast().octets().to_vec());
    if let Some(g) = s.gateway {
        values.insert(code::ROUTER, g.octets().to_vec());
    }
    if !dns.is_empty() {
        values.insert(
            code::DNS_SERVERS,
            dns.iter().flat_map(|ip| ip.octets()).collect(),
        );
    }
    if let Some(d) = &s.domain {
        values.insert(code::DOMAIN_NAME, d.as_bytes().to_vec());
    }
    if let Some(mtu) = nc.mtu {
        if mtu < 68 {
            return Err(field(format!("mtu: {mtu} is below the IPv4 minimum of 68")));
        }
        values.insert(code::INTERFACE_MTU, mtu.to_be_bytes().to_vec());
    }
    let mut routes = Vec::new();
    for r in &nc.routes {
        let dest: Ipv4Network = r
            .destination
            .parse()
            .map_err(|e| field(format!("routes: destination {:?}: {e}", r.destination)))?;
        routes.push((
            Ipv4Network::new(dest.network(), dest.prefix()).map_err(|e| field(e.to_string()))?,
            r.gateway,
        ));
    }
    Ok(BaseOptions { values, routes })
}

/// Binds the network's hosts: its hosts file, then `--dhcp-host` lines, then TOML hosts.
fn bind_hosts(
    bindings: &mut Bindings<'_>,
    nc: &NetworkConfig,
    origin: &Path,
    problems: &mut Vec<Problem>,
    sources: &mut Vec<PathBuf>,
) -> Result<(), BuildError> {
    if let Some(path) = &nc.hosts_file {
        let file = path.display().to_string();
        let text = read_network_file(nc, "hosts_file", path)?;
        hosts::parse_each(&file, &text, |parsed| match parsed {
            Ok(entry) => bindings.add(&file, entry, problems),
            Err(problem) => problems.push(problem),
        });
        sources.push(path.clone());
    }
    let dhcp_host_origin = format!("{} --dhcp-host", origin.display());
    for (i, line) in nc.host_lines.iter().enumerate() {
        match hosts::parse_line(line) {
            Ok(mut entry) => {
                entry.line = i + 1;
                bindings.add(&dhcp_host_origin, entry, problems);
            }
            Err(reason) => problems.push(Problem::new(&dhcp_host_origin, i + 1, reason)),
        }
    }
    let inline_origin = format!("{} [network {}]", origin.display(), nc.name);
    for (i, hc) in nc.host.iter().enumerate() {
        let origin = format!("{inline_origin} host {}", i + 1);
        match inline_host(hc) {
            Ok(entry) => bindings.add(&origin, entry, problems),
            Err(reason) => problems.push(Problem::new(origin, 0, reason)),
        }
    }
    Ok(())
}

/// A lease time raised to the network's minimum, as dnsmasq raises shorter leases (each renewal
/// is a journal write).
fn at_least(lease: LeaseTime, min: u32) -> LeaseTime {
    match lease {
        LeaseTime::Seconds(s) => LeaseTime::Seconds(s.max(min)),
        LeaseTime::Infinite => LeaseTime::Infinite,
    }
}

/// Builds a network's bindings one host entry at a time.
struct Bindings<'a> {
    network: Network,
    cidr: Ipv4Network,
    /// Per-host lease times shorter than this are raised to it.
    min_lease: u32,
    base: &'a BaseOptions,
    option_lines: &'a [OptionLine],
    /// Option lists by tag set, shared by every binding with those tags.
    resolved: HashMap<Vec<Box<str>>, Arc<OptionList>>,
    /// Domains named after host names, shared by every binding naming them.
    domains: HashMap<Box<str>, Arc<str>>,
    /// Addresses bound so far: the first binding's index and its line.
    used_ips: HashMap<Ipv4Addr, (u32, usize)>,
}

impl Bindings<'_> {
    /// Adds the binding(s) of one entry read from `file`, or a problem saying why not.
    fn add(&mut self, file: &str, entry: HostEntry, problems: &mut Vec<Problem>) {
        let (cidr, network) = (self.cidr, &mut self.network);
        let problem = |reason: String| Problem::new(file, entry.line, reason);
        if entry
            .require_tags
            .iter()
            .any(|t| *t != network.name && t != "known")
        {
            return; // a line for another range (dnsmasq's tag: on dhcp-host)
        }
        let ip = match entry.ip {
            Some(ip) if cidr.contains(ip) && ip != cidr.network() && ip != cidr.broadcast() => ip,
            Some(ip) => {
                problems.push(problem(format!(
                    "address {ip} is not a host address of network {} ({cidr})",
                    network.name
                )));
                return;
            }
            None if entry.ignore => Ipv4Addr::UNSPECIFIED,
            None => {
                problems.push(problem(
                    "no IPv4 address (static mode serves only fixed addresses)".into(),
                ));
                return;
            }
        };
        if !entry.ignore {
            if let Some(&(index, line)) = self.used_ips.get(&ip) {
                let holder = network.bindings.get(index as usize).map_or_else(
                    || "another host".to_string(),
                    |b| match (&b.hostname, b.mac) {
                        (Some(h), Some(m)) => format!("{h} ({m})"),
                        (Some(h), None) => h.to_string(),
                        (None, Some(m)) => m.to_string(),
                        (None, None) => "another host".to_string(),
                    },
                );
                problems.push(problem(format!(
                    "address {ip} is already bound to {holder}, line {line}"
                )));
                return;
            }
        }
        if let Some(mac) = entry.macs.iter().find(|m| network.by_mac.contains_key(m)) {
            problems.push(problem(format!(
                "hardware address {mac} already has a binding"
            )));
            return;
        }
        let mut tags: Vec<Box<str>> = entry.set_tags.iter().map(|t| t.as_str().into()).collect();
        tags.sort();
        tags.dedup();
        let (base, option_lines, name) = (self.base, self.option_lines, &network.name);
        let options = self
            .resolved
            .entry(tags.clone())
            .or_insert_with(|| Arc::new(resolve_options(base, option_lines, name, &tags)))
            .clone();
        let (hostname, name_domain) = split_name(entry.hostname.as_deref());
        let name_domain = name_domain.map(|d| {
            self.domains
                .entry(d)
                .or_insert_with_key(|d| Arc::from(&**d))
                .clone()
        });
        let template = Binding {
            mac: None,
            ip,
            hostname,
            name_domain,
            client_id: entry.client_id.clone(),
            tags: tags.into_boxed_slice(),
            lease_time: entry.lease_time.map(|l| at_least(l, self.min_lease)),
            ignore: entry.ignore,
            options,
        };
        let first_index = network.bindings.len() as u32;
        if entry.macs.is_empty() {
            network.bindings.push(template.clone());
        }
        for mac in &entry.macs {
            network.by_mac.insert(*mac, network.bindings.len() as u32);
            network.bindings.push(Binding {
                mac: Some(*mac),
                ..template.clone()
            });
        }
        if let Some(ClientIdMatch::Exact(id)) = &entry.client_id {
            network
                .by_client_id
                .insert(id.clone().into_boxed_slice(), first_index);
        }
        if !entry.ignore {
            self.used_ips.insert(ip, (first_index, entry.line));
        }
    }
}

/// The `index`-th /64 of `range` (nova pairs them in order with its IPv4 networks).
fn nth_subnet64(range: Ipv6Network, index: usize) -> Result<Ipv6Network, String> {
    if range.prefix() > 64 {
        return Err(format!("{range} is longer than /64"));
    }
    let count_bits = 64 - u32::from(range.prefix());
    if count_bits < 64 && index as u128 >= (1u128 << count_bits) {
        return Err(format!("{range} has no /64 number {index}"));
    }
    let base = u128::from(range.network());
    let addr = std::net::Ipv6Addr::from(base | ((index as u128) << 64));
    Ipv6Network::new(addr, 64).map_err(|e| e.to_string())
}

fn parse_lease(text: Option<&str>) -> Result<Option<LeaseTime>, String> {
    text.map(|t| LeaseTime::parse(t).ok_or_else(|| t.to_string()))
        .transpose()
}

fn inline_host(hc: &HostConfig) -> Result<HostEntry, String> {
    let mac: MacAddr = hc
        .mac
        .parse()
        .map_err(|e| format!("mac: {:?}: {e}", hc.mac))?;
    if let Some(h) = &hc.hostname {
        if !hosts::is_hostname(h) {
            return Err(format!("hostname: {h:?} is not a host name"));
        }
    }
    let lease_time = parse_lease(hc.lease_time.as_deref())
        .map_err(|v| format!("lease_time: {v:?} is not a lease time"))?;
    let client_id = hc.client_id.as_deref().map(|id| match id {
        "*" => ClientIdMatch::Any,
        _ => ClientIdMatch::Exact(hex_bytes(id).unwrap_or_else(|| id.as_bytes().to_vec())),
    });
    Ok(HostEntry {
        macs: vec![mac],
        client_id,
        set_tags: hc.tags.clone(),
        require_tags: Vec::new(),
        ip: Some(hc.ip),
        hostname: hc.hostname.clone(),
        lease_time,
        ignore: hc.ignore,
        line: 0,
    })
}

/// `web-1.novalocal` -> (`web-1`, `novalocal`); nova's `web-1.` -> (`web-1`, none).
fn split_name(name: Option<&str>) -> (Option<Box<str>>, Option<Box<str>>) {
    let Some(name) = name
        .map(|n| n.trim_end_matches('.'))
        .filter(|n| !n.is_empty())
    else {
        return (None, None);
    };
    match name.split_once('.') {
        Some((host, domain)) => (Some(host.into()), Some(domain.into())),
        None => (Some(name.into()), None),
    }
}

/// dnsmasq's choice per option code: among the lines whose tag conditions the client meets,
/// the one with the most tag conditions wins (tagged beats untagged), the later line on a tie.
fn resolve_options(
    base: &BaseOptions,
    lines: &[OptionLine],
    network: &str,
    tags: &[Box<str>],
) -> OptionList {
    let mut client_tags: Vec<&str> = vec![network, "known"];
    client_tags.extend(tags.iter().map(|t| &**t));
    let mut best: BTreeMap<u8, (usize, usize)> = BTreeMap::new();
    for (order, line) in lines.iter().enumerate() {
        if !line.tags.iter().all(|t| t.matches(&client_tags)) {
            continue;
        }
        let rank = (line.tags.len(), order);
        let slot = best.entry(line.code).or_insert(rank);
        if rank >= *slot {
            *slot = rank;
        }
    }
    let mut out: BTreeMap<u8, Vec<u8>> = base.values.clone();
    let lines_set_routes = best.contains_key(&code::CLASSLESS_ROUTES);
    for (code, (_, order)) in best {
        match lines.get(order).and_then(|l| l.value.clone()) {
            Some(value) => out.insert(code, value),
            None => out.remove(&code),
        };
    }
    if !base.routes.is_empty() && !lines_set_routes {
        // RFC 3442: a client given option 121 ignores option 3, so 121 carries the default
        // route too, via the router this client resolved to (none if its option 3 is off).
        let mut routes = base.routes.clone();
        let router = out
            .get(&code::ROUTER)
            .and_then(|r| <[u8; 4]>::try_from(r.get(..4)?).ok());
        if let (Some(r), false) = (router, routes.iter().any(|(d, _)| d.prefix() == 0)) {
            if let Ok(default) = Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0) {
                routes.push((default, Ipv4Addr::from(r)));
            }
        }
        out.insert(code::CLASSLESS_ROUTES, encode_classless(&routes));
    }
    OptionList(
        out.into_iter()
            .map(|(c, v)| (c, v.into_boxed_slice()))
            .collect(),
    )
}

/// A network's own options before opts-file lines apply: values by code, and the classless
/// routes from the TOML (encoded per client, since the default route follows its router).
struct BaseOptions {
    values: BTreeMap<u8, Vec<u8>>,
    routes: Vec<(Ipv4Network, Ipv4Addr)>,
}

/// Which distinct source files a table came from, for the change watcher.
pub fn unique_sources(table: &Table) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    table
        .sources
        .iter()
        .filter(|p| seen.insert(p.to_path_buf()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config(text: &str) -> ConfigFile {
        ConfigFile::parse(text).unwrap()
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        fs::File::create(&p)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        p
    }

    const NET: &str = "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ngateway = \"198.18.0.1\"\nlease_time = \"120s\"\ndomain = \"novalocal\"\n";

    #[test]
    fn builds_from_files_with_nova_tags() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = write(dir.path(), "h.conf", "fa:16:3e:00:00:01,web-1.novalocal,198.18.0.10,net:NW-a\nfa:16:3e:00:00:02,web-2.novalocal,198.18.0.11,net:NW-b\nfa:16:3e:00:00:03,web-3.,198.18.0.12\nfa:16:3e:00:00:04,x,10.0.0.1\nfa:16:3e:00:00:05,y,198.18.0.10");
        let opts = write(
            dir.path(),
            "h.opts",
            "3,198.18.0.1\nNW-a,3,198.18.0.2\nNW-b,3\noption:ntp-server,198.18.0.5\n",
        );
        let text = format!("{NET}hosts_file = {:?}\nopts_file = {:?}\n", hosts, opts);
        let t = from_config(&config(&text), Path::new("c.toml")).unwrap();
        let n = &t.networks[0];
        assert_eq!(n.server, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(n.bindings().len(), 3);
        let a = n
            .binding("fa:16:3e:00:00:01".parse().unwrap(), None)
            .unwrap();
        assert_eq!(a.hostname.as_deref(), Some("web-1"));
        assert_eq!(a.options.get(3), Some(&[198, 18, 0, 2][..]));
        assert_eq!(a.options.get(42), Some(&[198, 18, 0, 5][..]));
        assert_eq!(a.options.get(1), Some(&[255, 255, 255, 0][..]));
        assert_eq!(a.options.get(15), Some(&b"novalocal"[..]));
        let b = n
            .binding("fa:16:3e:00:00:02".parse().unwrap(), None)
            .unwrap();
        assert_eq!(b.options.get(3), None, "bare `NW-b,3` sends no router");
        let c = n
            .binding("fa:16:3e:00:00:03".parse().unwrap(), None)
            .unwrap();
        assert_eq!(c.options.get(3), Some(&[198, 18, 0, 1][..]));
        assert_eq!(c.name_domain, None);
        // Two problems: an address outside the network and a duplicate address.
        assert_eq!(t.problems.len(), 2, "{:?}", t.problems);
        assert_eq!(t.problems[0].line, 4);
        assert_eq!(t.problems[1].line, 5);
        assert_eq!(t.sources.len(), 2);
    }

    #[test]
    fn inline_hosts_routes_and_client_ids() {
        let text = format!("{NET}mtu = 1450\ndns_servers = [\"198.18.0.53\"]\nroutes = [{{ destination = \"198.19.0.0/16\", gateway = \"198.18.0.254\" }}]\n[[network.host]]\nmac = \"fa:16:3e:00:00:09\"\nip = \"198.18.0.20\"\nhostname = \"db\"\nclient_id = \"01:fa:16:3e:00:00:09\"\nlease_time = \"infinite\"\n");
        let t = from_config(&config(&text), Path::new("c.toml")).unwrap();
        let n = &t.networks[0];
        let mac = "fa:16:3e:00:00:09".parse().unwrap();
        assert!(n
            .binding(mac, Some(&[1, 0xfa, 0x16, 0x3e, 0, 0, 9]))
            .is_some());
        assert!(
            n.binding(mac, Some(&[9])).is_none(),
            "a different client id is another client"
        );
        let b = n.binding(mac, None).unwrap();
        assert_eq!(b.lease_time, Some(LeaseTime::Infinite));
        assert_eq!(b.options.get(26), Some(&[0x05, 0xaa][..]));
        assert_eq!(b.options.get(6), Some(&[198, 18, 0, 53][..]));
        assert_eq!(
            b.options.get(121),
            Some(&[16, 198, 19, 198, 18, 0, 254, 0, 198, 18, 0, 1][..])
        );
    }

    #[test]
    fn classless_routes_take_the_default_route_from_the_clients_router() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = write(
            dir.path(),
            "h.conf",
            "fa:16:3e:00:00:01,a,198.18.0.10\nfa:16:3e:00:00:02,b,198.18.0.11,net:NW-b",
        );
        let opts = write(dir.path(), "h.opts", "3,198.18.0.7\nNW-b,3\n");
        let text = format!("{}hosts_file = {hosts:?}\nopts_file = {opts:?}\nroutes = [{{ destination = \"198.19.0.0/16\", gateway = \"198.18.0.254\" }}]\n", NET.replace("gateway = \"198.18.0.1\"\n", ""));
        let t = from_config(&config(&text), Path::new("c.toml")).unwrap();
        let n = &t.networks[0];
        let a = n
            .binding("fa:16:3e:00:00:01".parse().unwrap(), None)
            .unwrap();
        assert_eq!(
            a.options.get(121),
            Some(&[16, 198, 19, 198, 18, 0, 254, 0, 198, 18, 0, 7][..])
        );
        let b = n
            .binding("fa:16:3e:00:00:02".parse().unwrap(), None)
            .unwrap();
        assert_eq!(
            b.options.get(121),
            Some(&[16, 198, 19, 198, 18, 0, 254][..]),
            "no router, no default route"
        );
    }

    #[test]
    fn invalid_networks_name_the_field() {
        let cases = [
            ("cidr = \"198.18.0.0/24\"", "cidr = \"bogus\"", "cidr"),
            (
                "gateway = \"198.18.0.1\"",
                "gateway = \"198.19.0.1\"",
                "gateway",
            ),
            (
                "lease_time = \"120s\"",
                "lease_time = \"soon\"",
                "lease_time",
            ),
        ];
        for (from, to, field) in cases {
            let text = NET.replace(from, to);
            let err = from_config(&config(&text), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field) && err.contains("vmnet"), "{err}");
        }
        let two = format!("{NET}{}", NET.replace("vmnet", "other"));
        let err = from_config(&config(&two), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlaps"), "{err}");
    }

    #[test]
    fn ipv6_prefixes_explicit_and_derived_from_nova_fixed_range() {
        let two = format!("[ipv6]\nfixed_range = \"fd00::/48\"\n{NET}cidr_v6 = \"fd00:9::/64\"\n[network.ra]\nprofile = \"nova\"\n{}", NET.replace("vmnet", "b").replace("198.18.0", "198.18.1"));
        let t = from_config(&config(&two), Path::new("c.toml")).unwrap();
        assert_eq!(t.networks[0].cidr_v6.unwrap().to_string(), "fd00:9::/64");
        assert_eq!(
            t.networks[1].cidr_v6.unwrap().to_string(),
            "fd00:0:0:1::/64",
            "second /64 of the /48"
        );
        assert_eq!(
            t.networks[0].ra.as_ref().unwrap().max_interval,
            std::time::Duration::from_secs(10)
        );
        let (params, prefixes) = t.ra_for("br100").unwrap();
        assert_eq!(prefixes.len(), 2);
        assert_eq!(params.max_interval, std::time::Duration::from_secs(10));
        assert_eq!(t.ra_bridges(), ["br100"]);
        let bad = format!("{NET}cidr_v6 = \"fd00:9::/64\"\n[network.ra]\nMaxRtrAdvInterval = 1\n");
        let err = from_config(&config(&bad), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MaxRtrAdvInterval") && err.contains("vmnet"),
            "{err}"
        );
        assert_eq!(
            nth_subnet64("fd00::/48".parse().unwrap(), 0)
                .unwrap()
                .to_string(),
            "fd00::/64"
        );
        assert!(nth_subnet64("fd00::/63".parse().unwrap(), 2).is_err());
    }

    #[test]
    fn netnode_never_forwards_to_its_own_dns_address() {
        let text = format!(
            "[dns]\nno_resolv = true\nservers = [\"198.18.0.1\", \"198.18.0.1#5353\", \"/test/198.18.0.1\", \"fd00:9::1\"]\n{NET}cidr_v6 = \"fd00:9::/64\"\n"
        );
        let t = from_config(&config(&text), Path::new("c.toml")).unwrap();
        let dns = t.dns.as_ref().unwrap();
        let kept: Vec<String> = dns
            .upstreams
            .iter()
            .filter_map(|u| u.server.map(|a| a.to_string()))
            .collect();
        // Port 53 of the bridge address (v4 and the v6 gateway) is netnode itself; another port
        // on the same address is another server.
        assert_eq!(kept, ["198.18.0.1:5353"]);
        let loops: Vec<_> = t
            .problems
            .iter()
            .filter(|p| p.reason.contains("own DNS address"))
            .collect();
        assert_eq!(loops.len(), 3, "{:?}", t.problems);
    }

    #[test]
    fn a_missing_hosts_file_is_an_error_naming_it() {
        let text = format!("{NET}hosts_file = \"/nonexistent/h.conf\"\n");
        let err = from_config(&config(&text), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/h.conf"), "{err}");
    }
}
