//! The two sides the planner compares, as plain values: what the table wants ([`Desired`]) and
//! what the kernel has ([`Observed`]). Neither holds a socket; the applier reads the kernel into
//! an `Observed`, and tests and the fuzz target build both by hand.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::table::control::{ControlSettings, FloatingIp, Uplink};
use crate::table::{MacAddr, Table};

use super::firewall::Firewall;
use super::nft::{self, NftState};
use super::nftable::TableState;
use crate::table::firewall::FirewallSettings;
use std::sync::Arc;

/// The interface alias that marks a link netnode created (`ip link show` prints it).
pub const OWNER_ALIAS: &str = "netnode";

/// The address protocol (`IFA_PROTO`, Linux 6.1+) that marks an address netnode added:
/// iproute2 6.2 and later print it as `proto 0x4e`.
pub const OWNER_PROTO: u8 = 0x4e;

/// One bridge the table wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Its name.
    pub name: String,
    /// Its MTU, when a network on it sets one.
    pub mtu: Option<u32>,
    /// Its IPv4 addresses: each network's server address with the network's prefix, the first
    /// network's first (nova: the gateway must be the bridge's first address).
    pub addresses: Vec<Ipv4Network>,
    /// Its IPv6 addresses (each network's `gateway_v6` in its prefix).
    pub addresses_v6: Vec<Ipv6Network>,
    /// How it reaches the wire.
    pub uplink: Option<Uplink>,
}

/// Everything the control module sets up, from one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Bridges, in the order of their first network.
    pub bridges: Vec<BridgeSpec>,
    /// `net.ipv4.ip_forward = 1`.
    pub ip_forward: bool,
    /// IPv6 forwarding too (a network has an IPv6 prefix).
    pub ipv6_forward: bool,
    /// Floating IPs.
    pub floating: Vec<FloatingIp>,
    /// Gratuitous ARPs per newly associated floating IP.
    pub garp_count: u32,
    /// The outside interface.
    pub public_interface: Option<String>,
    /// netnode's nftables table.
    pub ruleset: nft::Ruleset,
    /// The instance firewall's tables (none: off, or nothing to filter).
    pub firewall: Option<Firewall>,
    /// What the firewall was built from (judging established flows after a change).
    pub firewall_settings: Arc<FirewallSettings>,
    /// Multi-host isolation of shared DHCP addresses (`bridge netnode_isolate`).
    pub isolation: Option<super::nftable::TableSpec>,
}

impl Desired {
    /// What `table` asks for.
    pub fn from_table(table: &Table) -> Desired {
        let mut bridges: Vec<BridgeSpec> = Vec::new();
        for n in &table.networks {
            let v4 = Ipv4Network::new(n.server, n.cidr.prefix()).unwrap_or(n.cidr);
            let v6 = match (n.gateway_v6, n.cidr_v6) {
                (Some(g), Some(p)) => Ipv6Network::new(g, p.prefix()).ok(),
                _ => None,
            };
            let mtu = n.mtu().map(u32::from);
            match bridges.iter_mut().find(|b| b.name == n.bridge) {
                Some(b) => {
                    push_new(&mut b.addresses, v4);
                    if let Some(v6) = v6 {
                        push_new(&mut b.addresses_v6, v6);
                    }
                    b.mtu = b.mtu.or(mtu);
                }
                None => bridges.push(BridgeSpec {
                    name: n.bridge.clone(),
                    mtu,
                    addresses: vec![v4],
                    addresses_v6: v6.into_iter().collect(),
                    uplink: n.uplink.clone(),
                }),
            }
        }
        let c: &ControlSettings = &table.control;
        Desired {
            ipv6_forward: c.ip_forward && bridges.iter().any(|b| !b.addresses_v6.is_empty()),
            ip_forward: c.ip_forward,
            floating: c.floating.clone(),
            garp_count: c.garp_count,
            public_interface: c.public_interface.clone(),
            ruleset: nft::Ruleset::new(table),
            firewall: Firewall::build(&table.firewall),
            firewall_settings: Arc::new(table.firewall.clone()),
            isolation: super::isolate::build(table),
            bridges,
        }
    }
}

fn push_new<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// What kind of link an interface is, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge {
        /// STP is on.
        stp: bool,
        /// Its forward delay, in hundredths of a second (the kernel's unit).
        forward_delay: u32,
    },
    /// An 802.1Q device.
    Vlan {
        /// The interface it is made on.
        parent: Option<String>,
        /// Its id.
        id: u16,
    },
    /// Anything else (veth, physical, macvlan...).
    Other,
}

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: LinkKind,
    /// The bridge it is enslaved to.
    pub master: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// MAC address.
    pub mac: Option<MacAddr>,
    /// netnode created it (its alias is [`OWNER_ALIAS`]).
    pub owned: bool,
    /// `net.ipv6.conf.<name>.accept_ra`.
    pub accept_ra: Option<u8>,
    /// It has a route learnt from a router advertisement (the host configures itself by RA).
    pub ra_learned: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The interface.
    pub link: String,
    /// The address and prefix length.
    pub cidr: IpNetwork,
    /// netnode added it (its protocol is [`OWNER_PROTO`]).
    pub owned: bool,
}

/// An IPv4 route of the main table through an interface (only routes an operator or DHCP
/// made: kernel routes follow the addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface.
    pub link: String,
    /// Destination.
    pub destination: Ipv4Network,
    /// Next hop.
    pub gateway: Option<Ipv4Addr>,
    /// Metric (priority).
    pub metric: u32,
    /// Who made it (`RTPROT_*`: boot, static, dhcp...), kept when it moves: the kernel deletes a
    /// route only when the protocol matches.
    pub protocol: u8,
}

/// The kernel's state, as far as the planner looks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Every interface.
    pub links: Vec<Link>,
    /// Every address, in the kernel's order per interface (the primary first).
    pub addresses: Vec<Address>,
    /// Routes that would move with a flat uplink's addresses.
    pub routes: Vec<Route>,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// `net.ipv6.conf.all.forwarding`.
    pub ipv6_forward: bool,
    /// netnode's nftables table, when it exists.
    pub nft: Option<NftState>,
    /// The firewall's tables that exist, by family and name.
    pub tables: BTreeMap<String, TableState>,
    /// `net.bridge.bridge-nf-call-iptables` and `-ip6tables` are both 1 (none: br_netfilter is
    /// not loaded, so bridged frames never reach the IP hooks).
    pub bridge_nf: Option<bool>,
}

impl Observed {
    /// The interface called `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The addresses of `link`, in order.
    pub fn addresses_of<'a>(&'a self, link: &'a str) -> impl Iterator<Item = &'a Address> + 'a {
        self.addresses.iter().filter(move |a| a.link == link)
    }

    /// The global IPv4 addresses of `link` (what nova moved from an interface to its bridge).
    pub fn global_v4(&self, link: &str) -> Vec<(Ipv4Network, bool)> {
        self.addresses_of(link)
            .filter_map(|a| match a.cidr {
                IpNetwork::V4(n) if is_global_v4(n.ip()) => Some((n, a.owned)),
                _ => None,
            })
            .collect()
    }

    /// The floating IP mapping netnode's table holds now (floating -> fixed).
    pub fn floating_map(&self) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
        self.nft
            .as_ref()
            .and_then(|n| n.maps.get(nft::FLOATING_DNAT).cloned())
            .unwrap_or_default()
    }
}

/// Not loopback, link-local or unspecified.
pub fn is_global_v4(a: Ipv4Addr) -> bool {
    !a.is_loopback() && !a.is_link_local() && !a.is_unspecified()
}

/// The MAC netnode gives a VLAN device it makes: `fa:16:3e` (nova's prefix) and three bytes
/// derived from the parent and the id, so a plan is the same each time it is computed.
pub fn vlan_mac(parent: &str, id: u16) -> MacAddr {
    // FNV-1a: small, stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in parent.bytes().chain(id.to_be_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let [_, a, b, c] = h.to_be_bytes();
    MacAddr([0xfa, 0x16, 0x3e, a, b, c])
}
