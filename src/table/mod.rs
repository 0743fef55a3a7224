//! The table: networks and their MAC-to-IP bindings, read from TOML and dnsmasq-format files,
//! held as an immutable snapshot that a reload replaces whole.

pub mod build;
pub mod config;
pub mod control;
pub mod dns;
pub mod duration;
pub mod firewall;
pub mod hosts;
pub mod instance;
pub mod ipv6;
pub mod mac;
pub mod options;
pub mod opts;
pub mod ra;
mod reaper;

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnetwork::{Ipv4Network, Ipv6Network};

use ipv6::Backend;
use ra::RaParams;

pub use duration::LeaseTime;
pub use hosts::ClientIdMatch;
pub use mac::MacAddr;
pub use reaper::give_back_freed_memory;

/// Something in the sources that could not be used, and why; the rest still loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or config section) it came from.
    pub file: String,
    /// 1-based line number; 0 when the source has no lines (an inline TOML host).
    pub line: usize,
    /// What is wrong, naming the field.
    pub reason: String,
    /// What was left out because of it.
    pub kind: ProblemKind,
}

/// What a [`Problem`] left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line (a host, an option) was skipped.
    Line,
    /// An instance record's interface could not be identified (no metadata through it).
    Instance,
}

impl Problem {
    /// A skipped line at `file:line`.
    pub fn new(file: impl Into<String>, line: usize, reason: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            line,
            reason: reason.into(),
            kind: ProblemKind::Line,
        }
    }

    /// An instance record that cannot be served (in full).
    pub fn instance(file: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Instance,
            ..Problem::new(file, 0, reason)
        }
    }

    /// What the problem did, for log lines: "skipped a line" or what an instance lacks.
    pub fn effect(&self) -> &'static str {
        match self.kind {
            ProblemKind::Line => "skipped a line",
            ProblemKind::Instance => "instance record not identified by an address",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// Splits a dnsmasq line on commas outside double quotes, dropping the quotes.
pub fn split_fields(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                fields.push(unquote(&line[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(unquote(&line[start..]));
    fields
}

fn unquote(field: &str) -> &str {
    let t = field.trim();
    t.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t)
}

/// The options a client is sent besides the per-request ones (53, 54, 51, 58, 59, 82),
/// sorted by code; resolved once per distinct tag set when the table is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionList(pub Vec<(u8, Box<[u8]>)>);

impl OptionList {
    /// The value of one option, if the list has it.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .binary_search_by_key(&code, |(c, _)| *c)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| &**v)
    }
}

/// A fixed address for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The client's hardware address (absent for bindings by client id only).
    pub mac: Option<MacAddr>,
    /// Its fixed IPv4 address.
    pub ip: Ipv4Addr,
    /// The host part of its name (option 12).
    pub hostname: Option<Box<str>>,
    /// The domain written after the host part, used when the network sets none (shared by
    /// every binding naming the same domain: a million bindings hold one copy).
    pub name_domain: Option<Arc<str>>,
    /// How its client identifier is matched.
    pub client_id: Option<ClientIdMatch>,
    /// Tags set for it (`set:`/`net:` in the hosts file, `tags` in TOML).
    pub tags: Box<[Box<str>]>,
    /// A per-host lease time, overriding the network's.
    pub lease_time: Option<LeaseTime>,
    /// Never answer this client.
    pub ignore: bool,
    /// Its options, shared by every binding with the same tags.
    pub options: Arc<OptionList>,
}

/// One IPv4 network served on a bridge.
#[derive(Debug, Clone)]
pub struct Network {
    /// The network's name; also a tag that option lines can match, like dnsmasq's `set:<label>`.
    pub name: String,
    /// The bridge (Linux interface) its clients are on.
    pub bridge: String,
    /// Its IPv4 range.
    pub cidr: Ipv4Network,
    /// The default router, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The server's own address on the bridge: the server identifier (option 54).
    pub server: Ipv4Addr,
    /// The default lease time.
    pub lease_time: LeaseTime,
    /// The domain name (option 15).
    pub domain: Option<String>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Interface MTU (option 26).
    pub mtu_v4: Option<u16>,
    /// The IPv6 prefix advertised for SLAAC.
    pub cidr_v6: Option<Ipv6Network>,
    /// The server's IPv6 address on the bridge (with `cidr_v6`).
    pub gateway_v6: Option<std::net::Ipv6Addr>,
    /// Router advertisement parameters (present when `cidr_v6` is set and AdvSendAdvert is on).
    pub ra: Option<Arc<RaParams>>,
    /// How the bridge reaches the wire (control module), if netnode plumbs it.
    pub uplink: Option<control::Uplink>,
    /// The DHCP server address is shared by every host (nova's share_dhcp_address): DHCP and
    /// ARP for it are kept off the uplink.
    pub share_dhcp_address: bool,
    bindings: Vec<Binding>,
    by_mac: HashMap<MacAddr, u32>,
    by_client_id: HashMap<Box<[u8]>, u32>,
}

impl Network {
    /// The binding for a client: by client identifier first, then by MAC (dnsmasq's order).
    pub fn binding(&self, mac: MacAddr, client_id: Option<&[u8]>) -> Option<&Binding> {
        if let Some(id) = client_id {
            if let Some(&i) = self.by_client_id.get(id) {
                return self.bindings.get(i as usize);
            }
        }
        let binding = self.bindings.get(*self.by_mac.get(&mac)? as usize)?;
        match (&binding.client_id, client_id) {
            // A line naming both a MAC and an id serves only the client sending that id.
            (Some(ClientIdMatch::Exact(want)), Some(got)) if **want != *got => None,
            _ => Some(binding),
        }
    }

    /// The configured DNS servers.
    pub fn dns_servers(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.dns.iter().copied()
    }

    /// The configured MTU.
    pub fn mtu(&self) -> Option<u16> {
        self.mtu_v4
    }

    /// Every binding of the network, in file order.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }
}

/// What the daemon keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// Directory for the lease journal.
    pub dir: PathBuf,
    /// Optional dnsmasq-format lease file, rewritten atomically on every change.
    pub lease_file: Option<PathBuf>,
    /// Whether each acknowledged lease is fsynced before the ACK is sent.
    pub fsync: bool,
}

/// An immutable snapshot of everything the engines answer from.
#[derive(Debug, Clone)]
pub struct Table {
    /// Networks in config order.
    pub networks: Vec<Network>,
    /// Persistent state settings.
    pub state: StateSettings,
    /// Lines that could not be used when this table was built.
    pub problems: Vec<Problem>,
    /// Every file this table was read from (config, hosts and opts files), for change detection.
    pub sources: Vec<PathBuf>,
    /// How instance IPv6 addresses are computed.
    pub ipv6_backend: Backend,
    /// Metadata service settings (none: the service is off).
    pub metadata: Option<instance::MetadataSettings>,
    /// Instance records, joined with the bindings.
    pub instances: Vec<instance::Instance>,
    /// Interfaces that only advertise (radvd mode).
    pub ra_only: Vec<RaOnly>,
    /// DNS settings (none: no DNS).
    pub dns: Option<dns::DnsSettings>,
    /// What the control module sets up besides the networks' bridges.
    pub control: control::ControlSettings,
    /// The manager's database, when part of the table was read from it.
    pub manager: Option<ManagerLink>,
    /// The instance firewall (applied by the control module).
    pub firewall: firewall::FirewallSettings,
    /// Where `/metrics` listens (none: off; drop-in modes have none).
    pub metrics: Option<std::net::SocketAddr>,
}

/// Where the manager's state a table was (partly) read from is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerStore {
    /// The SQLite database file.
    Database(PathBuf),
    /// etcd: this node's host and the key prefix.
    Etcd {
        /// The host whose ports this node serves.
        host: String,
        /// The key prefix.
        prefix: String,
        /// The table was read from a live watch (false: from the cached copy, etcd being
        /// unreachable).
        live: bool,
    },
}

/// The manager state a table was (partly) read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerLink {
    /// Where it is kept.
    pub store: ManagerStore,
    /// Its `generation` counter (etcd: the revision) when the table was read: a different one
    /// means a newer state.
    pub generation: u64,
    /// Leases of bindings that left the table end at once (nova's force_dhcp_release).
    pub force_dhcp_release: bool,
    /// The database existed when the table was read (a missing one reads as empty, which is
    /// right on a fresh node and wrong after someone deleted it: see `server::reload`).
    pub present: bool,
}

impl std::fmt::Display for ManagerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagerStore::Database(p) => write!(f, "database {}", p.display()),
            ManagerStore::Etcd { host, prefix, live } => write!(
                f,
                "etcd {prefix} (host {host}{})",
                if *live { "" } else { ", cached copy" }
            ),
        }
    }
}

impl ManagerLink {
    /// The SQLite database, when the state is kept in one.
    pub fn database(&self) -> Option<&Path> {
        match &self.store {
            ManagerStore::Database(p) => Some(p),
            ManagerStore::Etcd { .. } => None,
        }
    }
}

/// Checks a Linux interface name: 1 to 15 bytes, no `/`, whitespace or `:`.
pub fn interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("{name:?} is not 1 to 15 bytes long"));
    }
    if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) || name == "." {
        return Err(format!("{name:?} is not an interface name"));
    }
    Ok(())
}

/// The networks of a table by first address (see [`Table::network_index`]).
pub struct NetworkIndex<'t> {
    table: &'t Table,
    starts: Vec<(u32, usize)>,
}

impl<'t> NetworkIndex<'t> {
    /// The position in `table.networks` of the network holding `addr`.
    pub fn position(&self, addr: Ipv4Addr) -> Option<usize> {
        let at = self
            .starts
            .partition_point(|(start, _)| *start <= u32::from(addr));
        // Networks do not overlap (the build refuses it), so the nearest start decides.
        at.checked_sub(1)
            .and_then(|k| self.starts.get(k))
            .map(|&(_, i)| i)
            .filter(|&i| {
                self.table
                    .networks
                    .get(i)
                    .is_some_and(|n| n.cidr.contains(addr))
            })
    }

    /// The network holding `addr`.
    pub fn find(&self, addr: Ipv4Addr) -> Option<&'t Network> {
        self.table.networks.get(self.position(addr)?)
    }
}

impl Drop for Table {
    /// A large table is freed off the thread that drops it (see the reaper).
    fn drop(&mut self) {
        reaper::dispose(std::mem::take(&mut self.networks));
    }
}

/// An interface that only advertises (radvd mode): no network, no DHCP.
#[derive(Debug, Clone)]
pub struct RaOnly {
    /// The interface.
    pub interface: String,
    /// What it advertises.
    pub params: Arc<RaParams>,
    /// Its prefixes.
    pub prefixes: Vec<Ipv6Network>,
}

impl Table {
    /// A table with nothing in it (the default state settings).
    pub fn empty() -> Table {
        let state = config::StateConfig::default();
        Table {
            networks: Vec::new(),
            state: StateSettings {
                dir: state.dir,
                lease_file: state.lease_file,
                fsync: state.fsync,
            },
            problems: Vec::new(),
            sources: Vec::new(),
            ipv6_backend: Backend::default(),
            metadata: None,
            instances: Vec::new(),
            ra_only: Vec::new(),
            dns: None,
            control: control::ControlSettings::default(),
            manager: None,
            firewall: firewall::FirewallSettings::default(),
            metrics: None,
        }
    }

    /// The networks served on a bridge.
    pub fn on_bridge<'a>(&'a self, bridge: &'a str) -> impl Iterator<Item = &'a Network> + 'a {
        self.networks.iter().filter(move |n| n.bridge == bridge)
    }

    /// The network whose range holds `addr` (relay agents are matched by giaddr).
    pub fn containing(&self, addr: Ipv4Addr) -> Option<&Network> {
        self.networks.iter().find(|n| n.cidr.contains(addr))
    }

    /// An index of the networks by address, for many lookups in a row (every lease of a
    /// scrape or of `netnode ctl leases`): a binary search each instead of a scan.
    pub fn network_index(&self) -> NetworkIndex<'_> {
        let mut starts: Vec<(u32, usize)> = (self.networks.iter().enumerate())
            .map(|(i, n)| (u32::from(n.cidr.network()), i))
            .collect();
        starts.sort_unstable();
        NetworkIndex {
            table: self,
            starts,
        }
    }

    /// What a bridge advertises: the parameters of its first advertising network and the
    /// prefixes of all of them; `None` when nothing on the bridge advertises.
    pub fn ra_for(&self, bridge: &str) -> Option<(Arc<RaParams>, Vec<Ipv6Network>)> {
        if let Some(r) = self.ra_only.iter().find(|r| r.interface == bridge) {
            return Some((r.params.clone(), r.prefixes.clone()));
        }
        let mut advertising = self
            .on_bridge(bridge)
            .filter_map(|n| Some((n.ra.as_ref()?, n.cidr_v6?)));
        let (params, first) = advertising.next()?;
        let mut prefixes = vec![first];
        prefixes.extend(
            advertising
                .map(|(_, p)| p)
                .filter(|p| !prefixes.contains(p))
                .collect::<Vec<_>>(),
        );
        Some((params.clone(), prefixes))
    }

    /// Bridges with router advertisements, in config order.
    pub fn ra_bridges(&self) -> Vec<String> {
        let mut out: Vec<String> = self.ra_only.iter().map(|r| r.interface.clone()).collect();
        out.extend(
            self.bridges()
                .into_iter()
                .filter(|b| self.ra_for(b).is_some()),
        );
        out
    }

    /// The distinct bridges, in config order.
    pub fn bridges(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.networks {
            if !out.contains(&n.bridge) {
                out.push(n.bridge.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_commas_outside_quotes() {
        assert_eq!(split_fields("a, b ,\"c,d\",e"), ["a", "b", "c,d", "e"]);
        assert_eq!(split_fields("3"), ["3"]);
        assert_eq!(split_fields(""), [""]);
    }

    #[test]
    fn problem_display() {
        assert_eq!(Problem::new("f", 3, "bad").to_string(), "f:3: bad");
        assert_eq!(Problem::new("f", 0, "bad").to_string(), "f: bad");
    }
}
