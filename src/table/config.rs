//! The native TOML config: its serde shape, kept apart from the validated table.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

// The instance records' serde shapes live with the instances they become (no import circle).
pub use super::instance::{ForwardedHeader, InstanceConfig, MetadataConfig};

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Networks, one `[[network]]` table each.
    #[serde(default)]
    pub network: Vec<NetworkConfig>,
    /// Where state lives.
    #[serde(default)]
    pub state: StateConfig,
    /// IPv6 settings shared by all networks.
    #[serde(default)]
    pub ipv6: Ipv6Config,
    /// The metadata service (off when absent).
    pub metadata: Option<MetadataConfig>,
    /// Instance records, one `[[instance]]` table each.
    #[serde(default)]
    pub instance: Vec<InstanceConfig>,
    /// DNS for instances (off when absent).
    pub dns: Option<super::dns::DnsConfig>,
    /// The control module: bridges, VLANs, addresses and NAT.
    pub control: Option<super::control::ControlConfig>,
    /// NAT settings (nova's linux_net options).
    pub nat: Option<super::control::NatConfig>,
    /// Floating IPs, one `[[floating]]` table each.
    #[serde(default)]
    pub floating: Vec<super::control::FloatingConfig>,
    /// Security groups, one `[[security_group]]` table each (the instance firewall's rules).
    #[serde(default)]
    pub security_group: Vec<super::firewall::SecurityGroupConfig>,
    /// netnode's own manager (networks, fixed and floating IPs in a database): its networks,
    /// instances and floating IPs are served besides those written here.
    pub manager: Option<ManagerConfig>,
    /// The Prometheus endpoint (default `127.0.0.1:9167`).
    pub metrics: Option<MetricsConfig>,
    /// The etcd cluster the manager's state lives in (`[manager] backend = "etcd"`).
    pub etcd: Option<EtcdConfig>,
    /// Built from a drop-in command line (nova does the plumbing there): the checks of what the
    /// control module would set up are left out.
    #[serde(skip)]
    pub drop_in: bool,
}

/// The manager's kind: nova's network_manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    /// FlatManager: a bridge per network, no DHCP (addresses are injected), no floating IPs.
    Flat,
    /// FlatDHCPManager: DHCP on the networks' bridges, floating IPs.
    #[default]
    Flatdhcp,
    /// VlanManager: a network, VLAN and bridge per project, numbered from `vlan_start`.
    Vlan,
}

/// Where the manager keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerBackend {
    /// SQLite in the state directory: one node serves every instance.
    #[default]
    Sqlite,
    /// etcd (`[etcd]`): every node serves its own host's instances.
    Etcd,
}

/// `[etcd]`: the cluster, the key prefix and this node's host name.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs (`http://10.0.0.1:2379`, or `https://` with `ca_file`).
    pub endpoints: Vec<String>,
    /// Every key lives under it (default `/netnode`).
    pub prefix: Option<String>,
    /// This node's name: it serves the ports under `<prefix>/hosts/<host>/` (default: the
    /// machine's hostname).
    pub host: Option<String>,
    /// The CA that signed the members' certificates (TLS).
    pub ca_file: Option<PathBuf>,
    /// This client's certificate (TLS client authentication, with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// This client's private key.
    pub key_file: Option<PathBuf>,
    /// etcd user (authentication, with `password_file`).
    pub user: Option<String>,
    /// A file holding the user's password (first line).
    pub password_file: Option<PathBuf>,
}

/// `[manager]`: nova's network manager options, with nova's defaults.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// `flat`, `flatdhcp` (default) or `vlan`.
    #[serde(default)]
    pub kind: ManagerKind,
    /// `sqlite` (default) or `etcd`: where networks, servers and addresses are kept.
    #[serde(default)]
    pub backend: ManagerBackend,
    /// The database (default `<[state] dir>/manager.db`).
    pub database: Option<PathBuf>,
    /// First VLAN id given to `vlan` networks (default 100).
    pub vlan_start: Option<u16>,
    /// First VPN (cloudpipe) port (default 1000).
    pub vpn_start: Option<u16>,
    /// Addresses per network when `network-create` splits a range (default 256).
    pub network_size: Option<u32>,
    /// Networks `network-create` makes by default (default 1).
    pub num_networks: Option<u32>,
    /// The range IPv6 /64s are taken from when `use_ipv6` is on (default `fd00::/48`).
    pub fixed_range_v6: Option<String>,
    /// Give every new network a /64 of `fixed_range_v6` (default false).
    #[serde(default)]
    pub use_ipv6: bool,
    /// The instances' domain (default `novalocal`).
    pub dhcp_domain: Option<String>,
    /// Every new server gets a floating IP from `default_floating_pool` (default false).
    #[serde(default)]
    pub auto_assign_floating_ip: bool,
    /// The pool `floating create` and `floating allocate` use by default (default `nova`).
    pub default_floating_pool: Option<String>,
    /// Multinic: only each server's first interface gets a default route (default false).
    #[serde(default)]
    pub use_single_default_gateway: bool,
    /// `server delete` ends the leases at once (default true).
    pub force_dhcp_release: Option<bool>,
    /// Enslaved to every network's bridge that names no `--bridge-interface` (nova's
    /// flat_interface).
    pub flat_interface: Option<String>,
    /// VLAN devices of `vlan` networks are made on it (nova's vlan_interface).
    pub vlan_interface: Option<String>,
    /// Floating IPs live on it (default `[nat] public_interface`).
    pub public_interface: Option<String>,
    /// Router advertisements of every manager network with an IPv6 prefix (radvd's names, as
    /// `[network.ra]`).
    #[serde(default)]
    pub ra: super::ra::RaConfig,
}

/// `[ipv6]`: nova's `fixed_range_v6` and `ipv6_backend`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Ipv6Config {
    /// A range (nova's default `fd00::/48`) split into /64s that are paired in order with the
    /// networks that have no `cidr_v6` of their own.
    pub fixed_range: Option<String>,
    /// How instance addresses are computed: `rfc2462` (EUI-64, default) or `account_identifier`.
    #[serde(default)]
    pub backend: super::ipv6::Backend,
}

/// One `[[network]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Unique name; also a tag for option lines.
    pub name: String,
    /// The bridge its clients are on.
    pub bridge: String,
    /// IPv4 range, `a.b.c.d/len`.
    pub cidr: String,
    /// Default router (option 3) unless the opts file says otherwise.
    pub gateway: Option<Ipv4Addr>,
    /// The server's own address on the bridge (server identifier); default: the gateway.
    pub server_address: Option<Ipv4Addr>,
    /// Default lease time (`120s`, `12h`, `infinite`...); default 86400 s, as nova.
    pub lease_time: Option<String>,
    /// Shorter lease times are raised to this (default 120 s, as dnsmasq).
    pub min_lease_time: Option<String>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// DNS servers (option 6).
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Interface MTU (option 26).
    pub mtu: Option<u16>,
    /// Classless static routes (option 121).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Extra options in opts-file syntax, e.g. `"option:ntp-server,198.18.0.1"`.
    #[serde(default)]
    pub options: Vec<String>,
    /// A dnsmasq-format hosts file.
    pub hosts_file: Option<PathBuf>,
    /// A dnsmasq-format opts file.
    pub opts_file: Option<PathBuf>,
    /// Inline bindings.
    #[serde(default)]
    pub host: Vec<HostConfig>,
    /// IPv6 prefix advertised on the bridge for SLAAC, e.g. `fd00:1::/64`.
    pub cidr_v6: Option<String>,
    /// The server's IPv6 address on the bridge (DNS listens on it; RAs name it as the DNS
    /// server); default: the prefix's first address, as nova's gateway_v6.
    pub gateway_v6: Option<std::net::Ipv6Addr>,
    /// Router advertisement parameters, with radvd's names.
    #[serde(default)]
    pub ra: super::ra::RaConfig,
    /// Flat uplink: this interface is enslaved to the bridge, which takes its MAC and its
    /// IPv4 addresses and routes (nova's flat_interface).
    pub bridge_interface: Option<String>,
    /// Every host serves this network with the same DHCP server address (nova's
    /// share_dhcp_address with multi_host): the control module keeps DHCP, and ARP for that
    /// address, off the uplink, so each host answers only its own instances.
    #[serde(default)]
    pub share_dhcp_address: bool,
    /// VLAN uplink: `vlan<N>` is made on `vlan_interface` and enslaved (VlanManager).
    pub vlan: Option<u32>,
    /// The interface the VLAN device is made on.
    pub vlan_interface: Option<String>,
    /// Bindings in hosts-file syntax from a command line (dnsmasq's `--dhcp-host`); not TOML.
    #[serde(skip)]
    pub host_lines: Vec<String>,
}

/// One `[[network.host]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Hardware address.
    pub mac: String,
    /// Fixed IPv4 address.
    pub ip: Ipv4Addr,
    /// Host name (the host part goes in option 12).
    pub hostname: Option<String>,
    /// Per-host lease time.
    pub lease_time: Option<String>,
    /// Client identifier as hex octets (`01:fa:16:...`), text, or `*`.
    pub client_id: Option<String>,
    /// Tags for option matching.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Never answer this client.
    #[serde(default)]
    pub ignore: bool,
}

/// One classless static route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `a.b.c.d/len`.
    pub destination: String,
    /// Next hop.
    pub gateway: Ipv4Addr,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `address:port` of `/metrics`; `""` turns it off.
    pub listen: String,
}

/// Where `/metrics` listens when `[metrics]` is absent (Prometheus' port registry has no
/// netnode; 9167 is free there).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9167";

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory for the lease journal.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// Also keep a dnsmasq-format lease file here.
    pub lease_file: Option<PathBuf>,
    /// fsync each acknowledged lease before the ACK goes out (default true).
    #[serde(default = "default_true")]
    pub fsync: bool,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            lease_file: None,
            fsync: true,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/netnode")
}

fn default_true() -> bool {
    true
}

impl ConfigFile {
    /// Parses TOML text; the error names the line and field.
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }

    /// Makes relative file paths relative to the directory of the config file.
    pub fn resolve_paths(&mut self, config_path: &Path) {
        let base = config_path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for n in &mut self.network {
            n.hosts_file.as_mut().map(fix);
            n.opts_file.as_mut().map(fix);
        }
        fix(&mut self.state.dir);
        if let Some(m) = &mut self.metadata {
            m.vendordata_file.as_mut().map(fix);
        }
        for i in &mut self.instance {
            i.user_data_file.as_mut().map(fix);
        }
        if let Some(d) = &mut self.dns {
            d.resolv_file.as_mut().map(fix);
            d.addn_hosts.iter_mut().for_each(fix);
        }
        self.state.lease_file.as_mut().map(fix);
        if let Some(m) = &mut self.manager {
            m.database.as_mut().map(fix);
        }
        if let Some(e) = &mut self.etcd {
            for f in [
                &mut e.ca_file,
                &mut e.cert_file,
                &mut e.key_file,
                &mut e.password_file,
            ] {
                f.as_mut().map(fix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_config_parses_as_written() {
        let text = r#"
[[network]]
name = "vmnet"
bridge = "br100"
cidr = "198.18.0.0/15"
gateway = "198.18.0.1"
lease_time = "120s"
domain = "novalocal"
hosts_file = "/var/lib/netnode/nova-br100.conf"   # dnsmasq hosts-file format
opts_file = "/var/lib/netnode/nova-br100.opts"    # optional
[state]
dir = "/var/lib/netnode"                          # leases live here
"#;
        let c = ConfigFile::parse(text).unwrap();
        assert_eq!(c.network.len(), 1);
        assert_eq!(c.network[0].bridge, "br100");
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/netnode"));
        assert!(c.state.fsync);
    }

    #[test]
    fn inline_hosts_and_unknown_keys() {
        let text = r#"
[[network]]
name = "n"
bridge = "br0"
cidr = "198.18.0.0/24"
[[network.host]]
mac = "fa:16:3e:00:00:01"
ip = "198.18.0.10"
hostname = "web-1"
"#;
        let c = ConfigFile::parse(text).unwrap();
        assert_eq!(c.network[0].host[0].ip, Ipv4Addr::new(198, 18, 0, 10));
        let err = ConfigFile::parse(
            "[[network]]\nname = \"n\"\nbridge = \"b\"\ncidr = \"x\"\nlease = 3\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 5") && msg.contains("lease"), "{msg}");
    }
}
