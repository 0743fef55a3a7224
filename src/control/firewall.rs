//! The instance firewall as two nftables tables, built from the table's
//! [`FirewallSettings`](crate::table::firewall::FirewallSettings) (pure: values in, tables out).
//!
//! - `bridge netnode`: stateless checks of every frame an instance port sends (prerouting, so
//!   frames to the node and to neighbours alike): its MAC, its IPs, ARP naming them, neighbour
//!   advertisements for its addresses only, DHCP and RS from it; DHCP server replies and router
//!   advertisements from it dropped (the guards). Drops are counted per port and reason in
//!   named counters (`nft list counters table bridge netnode`).
//! - `inet netnode_sg`: security groups, stateful (conntrack works in the IP hooks, which see
//!   bridged frames through br_netfilter; the bridge family has no conntrack on this kernel).
//!   Established and related flows pass first; a new flow from a port's address must match one
//!   of that address's egress elements (address, protocol, port range, remote range), a new
//!   flow to one an ingress element.
//!
//! Every fact is an element of a few sets whose declarations never change: the per-packet cost
//! is a few hash and interval lookups whatever the number of rules, groups or instances, and
//! adding an instance, a group or a rule is element updates in one transaction. An instance's
//! elements are its groups' rules, cut into disjoint boxes once per combination of groups
//! (a remote group gives its members' addresses, joined into ranges). One set per group would
//! have been the obvious layout, but a transaction of 4,000 small interval sets took 1.8 s on
//! this kernel against 70 ms for the same elements in one set.
//!
//! Interval sets of concatenations refuse an element whose start another element covers, so the
//! rules' boxes are cut into disjoint ones first ([`cover`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::nftable::{ChainSpec, Field, SetSpec, TableSpec};
use crate::table::firewall::{Direction, Ethertype, FirewallSettings, Port, Remote, Rule};

/// The anti-spoofing table.
pub const BRIDGE_TABLE: &str = "bridge netnode";
/// The security group table.
pub const GROUP_TABLE: &str = "inet netnode_sg";
/// Every table the firewall may leave behind (removed when the firewall is off).
pub const TABLES: [&str; 2] = [BRIDGE_TABLE, GROUP_TABLE];

/// The per-port drop reasons, each a counter map of the bridge table.
/// `not_own` counts frames toward a port that are not for its addresses (broadcast and
/// multicast other than DHCP and neighbour discovery, or another address at its MAC).
pub const REASONS: [&str; 4] = ["spoof", "dhcp_guard", "ra_guard", "not_own"];

/// ICMPv6 that always passes: neighbour discovery and MLD (IPv6 does not work without them).
const ND_TYPES: &str = "{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
                        nd-router-advert, mld-listener-query, mld-listener-report, \
                        mld2-listener-report }";

/// The two tables of a table's firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    /// `bridge netnode`.
    pub bridge: TableSpec,
    /// `inet netnode_sg`.
    pub groups: TableSpec,
}

impl Firewall {
    /// The tables `settings` asks for (none when the driver is noop or no port is known).
    pub fn build(settings: &FirewallSettings) -> Option<Firewall> {
        if !settings.active() {
            return None;
        }
        Some(Firewall {
            bridge: bridge_table(&settings.ports),
            groups: group_table(settings),
        })
    }

    /// Both tables.
    pub fn tables(&self) -> [&TableSpec; 2] {
        [&self.bridge, &self.groups]
    }
}

/// A counter name for a port: the device name when nft takes it as it is, else its hex.
pub fn counter_name(reason: &str, device: &str) -> String {
    if device
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        format!("{reason}_{device}")
    } else {
        let hex: String = device.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{reason}_x{hex}")
    }
}

fn set(name: &str, kind: &'static str, decl: &str, fields: &[Field]) -> SetSpec {
    SetSpec {
        name: name.into(),
        kind,
        decl: decl.into(),
        fields: fields.to_vec(),
        interval: decl.contains("flags interval"),
        elements: BTreeSet::new(),
    }
}

fn bridge_table(ports: &[Port]) -> TableSpec {
    let mut s_ports = set("ports", "set", "type ifname;", &[Field::Ifname]);
    let mut mac = set(
        "port_mac",
        "set",
        "type ifname . ether_addr;",
        &[Field::Ifname, Field::Ether],
    );
    let mut arp = set(
        "port_arp",
        "set",
        "type ifname . ether_addr . ipv4_addr;",
        &[Field::Ifname, Field::Ether, Field::Ipv4],
    );
    let mut v4 = set(
        "port_v4",
        "set",
        "type ifname . ipv4_addr;",
        &[Field::Ifname, Field::Ipv4],
    );
    let mut v6 = set(
        "port_v6",
        "set",
        "type ifname . ipv6_addr;",
        &[Field::Ifname, Field::Ipv6],
    );
    // The target of a neighbour advertisement (nft 1.0.6 has no `icmpv6 taddr`): bits 64-191
    // of the ICMPv6 header.
    let mut nd = set(
        "port_nd",
        "set",
        "typeof iifname . @th,64,128;",
        &[Field::Ifname, Field::Other],
    );
    let mut maps: Vec<SetSpec> = REASONS
        .iter()
        .map(|r| {
            set(
                r,
                "map",
                "type ifname : counter;",
                &[Field::Ifname, Field::Counter],
            )
        })
        .collect();
    let mut counters = BTreeSet::new();
    for p in ports {
        let d = &p.device;
        s_ports.elements.insert(d.clone());
        mac.elements.insert(format!("{d} . {}", p.mac));
        arp.elements
            .insert(format!("{d} . {} . {}", p.mac, Ipv4Addr::UNSPECIFIED));
        for a in &p.v4 {
            arp.elements.insert(format!("{d} . {} . {a}", p.mac));
            v4.elements.insert(format!("{d} . {a}"));
        }
        for a in &p.v6 {
            v6.elements.insert(format!("{d} . {a}"));
            nd.elements.insert(format!("{d} . 0x{:x}", u128::from(*a)));
        }
        for (reason, map) in REASONS.iter().zip(&mut maps) {
            let c = counter_name(reason, d);
            map.elements.insert(format!("{d} : {c}"));
            counters.insert(c);
        }
    }
    let drop = |reason: &str| format!("counter name iifname map @{reason} drop");
    let spoof = drop("spoof");
    // No instance has a reason to send to a DHCP client's port, whatever its source port.
    let rules = vec![
        "iifname != @ports accept".to_string(),
        format!("udp dport 68 {}", drop("dhcp_guard")),
        format!("udp dport 546 {}", drop("dhcp_guard")),
        format!("icmpv6 type nd-router-advert {}", drop("ra_guard")),
        format!("iifname . ether saddr != @port_mac {spoof}"),
        format!("ether type arp iifname . arp saddr ether . arp saddr ip != @port_arp {spoof}"),
        "ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept".into(),
        format!("ether type ip iifname . ip saddr != @port_v4 {spoof}"),
        "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, nd-router-solicit, \
         mld-listener-report, mld2-listener-report } accept"
            .into(),
        format!("ether type ip6 icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @port_nd {spoof}"),
        format!("ether type ip6 iifname . ip6 saddr != @port_v6 {spoof}"),
        format!("ether type != {{ ip, ip6, arp }} {spoof}"),
    ];
    // What a port receives (forwarded from another port, or sent by the node): IP only to its
    // own addresses, so broadcast, multicast and a foreign address at its MAC never slip past
    // the groups (which judge by destination address); DHCP replies and neighbour discovery
    // excepted.
    let not_own = "counter name oifname map @not_own drop";
    let to_port = vec![
        "oifname != @ports accept".to_string(),
        "ether type ip udp sport 67 udp dport 68 accept".into(),
        format!("ether type ip oifname . ip daddr != @port_v4 {not_own}"),
        format!("ether type ip6 icmpv6 type {ND_TYPES} accept"),
        format!("ether type ip6 oifname . ip6 daddr != @port_v6 {not_own}"),
    ];
    let mut sets = vec![s_ports, mac, arp, v4, v6, nd];
    sets.extend(maps);
    let base = |name: &str, hook: &str, rules: Vec<String>| ChainSpec {
        name: name.into(),
        hook: Some(format!(
            "type filter hook {hook} priority -200; policy accept;"
        )),
        rules,
    };
    TableSpec::new(
        BRIDGE_TABLE,
        sets,
        counters,
        vec![
            base("prerouting", "prerouting", rules),
            base("forward", "forward", vec!["jump to_port".into()]),
            base("output", "output", vec!["jump to_port".into()]),
            ChainSpec {
                name: "to_port".into(),
                hook: None,
                rules: to_port,
            },
        ],
    )
}

/// How many sets each direction and family's elements are spread over. Deleting an element
/// from a concatenated interval set costs in proportion to the set (about 20 ms at 19,000
/// elements on this kernel): sixteen shards make a rule change or an instance's removal
/// sixteen times cheaper, for one verdict-map lookup per packet more.
pub const SHARDS: usize = 16;

/// The shard of an address: its last byte (addresses are handed out in order, so shards fill
/// evenly).
fn shard(a: &IpAddr) -> usize {
    let last = match a {
        IpAddr::V4(v) => v.octets()[3],
        IpAddr::V6(v) => v.octets()[15],
    };
    usize::from(last) % SHARDS
}

fn group_table(s: &FirewallSettings) -> TableSpec {
    let family = [
        (Ethertype::IPv4, "4", "ip", "ipv4_addr", Field::Ipv4),
        (Ethertype::IPv6, "6", "ip6", "ipv6_addr", Field::Ipv6),
    ];
    let directions = [(Direction::Ingress, "in"), (Direction::Egress, "out")];
    let mut sets: BTreeMap<String, SetSpec> = BTreeMap::new();
    for (_, fam, _, addr, a) in family {
        for (_, dir) in directions {
            // The verdict map sends a port's address to its shard's chain.
            let map = format!("{dir}{fam}");
            sets.insert(
                map.clone(),
                set(
                    &map,
                    "map",
                    &format!("type {addr} : verdict;"),
                    &[a, Field::Other],
                ),
            );
            for k in 0..SHARDS {
                let name = format!("{dir}{fam}_{k}");
                sets.insert(
                    name.clone(),
                    set(
                        &name,
                        "set",
                        &format!(
                            "type {addr} . inet_proto . inet_service . {addr}; flags interval;"
                        ),
                        &[a, Field::Proto, Field::Port, a],
                    ),
                );
            }
        }
    }
    // The disjoint boxes of each combination of groups, computed once however many ports
    // share it (a group's members are many, its rules few).
    let mut covers: BTreeMap<(&[usize], Direction, Ethertype), Vec<String>> = BTreeMap::new();
    for p in &s.ports {
        for (ethertype, fam, _, _, _) in family {
            let addresses: Vec<IpAddr> = match ethertype {
                Ethertype::IPv4 => p.v4.iter().map(|a| IpAddr::V4(*a)).collect(),
                Ethertype::IPv6 => p.v6.iter().map(|a| IpAddr::V6(*a)).collect(),
            };
            for (direction, dir) in directions {
                let cover = covers
                    .entry((p.groups.as_slice(), direction, ethertype))
                    .or_insert_with(|| {
                        let boxes: Vec<Box3> = p
                            .groups
                            .iter()
                            .filter_map(|&g| s.groups.get(g))
                            .flat_map(|g| &g.rules)
                            .filter(|r| r.direction == direction && r.ethertype == ethertype)
                            .flat_map(|r| boxes(r, s))
                            .collect();
                        cover(&boxes)
                            .iter()
                            .map(|b| element(b, ethertype))
                            .collect()
                    });
                for a in &addresses {
                    let k = shard(a);
                    if let Some(map) = sets.get_mut(&format!("{dir}{fam}")) {
                        map.elements
                            .insert(format!("{a} : jump check_{dir}{fam}_{k}"));
                    }
                    if let Some(set) = sets.get_mut(&format!("{dir}{fam}_{k}")) {
                        for e in cover.iter() {
                            set.elements.insert(format!("{a} . {e}"));
                        }
                    }
                }
            }
        }
    }
    // DHCP replies come from the node (output); forwarded ones are nobody's to send.
    let always = [
        "udp sport 67 udp dport 68 accept".to_string(),
        "udp sport 547 udp dport 546 accept".to_string(),
        format!("icmpv6 type {ND_TYPES} accept"),
    ];
    let mut forward = vec!["ct state established,related accept".to_string()];
    forward.push(format!("icmpv6 type {ND_TYPES} accept"));
    // Metadata, wherever it was DNATed to.
    forward.push("ct original ip daddr 169.254.169.254 accept".into());
    let mut output = vec!["ct state established,related accept".to_string()];
    output.extend(always.iter().cloned());
    // Egress first (a shard chain that finds the flow allowed returns here), then ingress.
    for (_, fam, ip, _, _) in family {
        forward.push(format!("{ip} saddr vmap @out{fam}"));
    }
    for (_, fam, ip, _, _) in family {
        forward.push(format!("{ip} daddr vmap @in{fam}"));
        output.push(format!("{ip} daddr vmap @in{fam}"));
    }
    let mut chains = vec![
        ChainSpec {
            name: "forward".into(),
            hook: Some("type filter hook forward priority 0; policy accept;".into()),
            rules: forward,
        },
        ChainSpec {
            name: "output".into(),
            hook: Some("type filter hook output priority 0; policy accept;".into()),
            rules: output,
        },
    ];
    // A shard's chain: one lookup of the port's own (address, protocol, port, remote).
    for (_, fam, ip, _, _) in family {
        for (_, dir) in directions {
            let (own, remote) = if dir == "in" {
                ("daddr", "saddr")
            } else {
                ("saddr", "daddr")
            };
            for k in 0..SHARDS {
                chains.push(ChainSpec {
                    name: format!("check_{dir}{fam}_{k}"),
                    hook: None,
                    rules: vec![format!(
                        "{ip} {own} . meta l4proto . th dport . {ip} {remote} != @{dir}{fam}_{k} counter drop"
                    )],
                });
            }
        }
    }
    TableSpec::new(
        GROUP_TABLE,
        sets.into_values().collect(),
        BTreeSet::new(),
        chains,
    )
}

/// Whether changes to the group table take something away (an element of a shard set: a
/// rule's box, an instance's address) or filter an address that was not (a verdict-map element
/// added), so flows must be judged again. A rule more, or a port leaving, ends nothing.
pub fn narrows(c: &super::nftable::Changes) -> bool {
    c.delete.keys().any(|set| set.contains('_')) || c.add.keys().any(|set| !set.contains('_'))
}

/// An inclusive range.
type Span = (u128, u128);
/// (protocol, port, address) ranges.
type Box3 = (Span, Span, Span);

const ANY_V4: Span = (0, u32::MAX as u128);
const ANY_V6: Span = (0, u128::MAX);

/// A rule's boxes: one per remote address range (a remote group gives one per member address).
fn boxes(r: &Rule, s: &FirewallSettings) -> Vec<Box3> {
    let proto = r
        .protocol
        .map_or((0, 255), |p| (u128::from(p), u128::from(p)));
    let ports = r
        .ports
        .map_or((0, 65535), |(lo, hi)| (u128::from(lo), u128::from(hi)));
    let v6 = r.ethertype == Ethertype::IPv6;
    let remotes: Vec<Span> = match &r.remote {
        Remote::Any if v6 => vec![ANY_V6],
        Remote::Any => vec![ANY_V4],
        Remote::Cidr(IpNetwork::V4(n)) => vec![(
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        )],
        Remote::Cidr(IpNetwork::V6(n)) => {
            let lo = u128::from(n.network());
            let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            vec![(lo, lo | host)]
        }
        Remote::Group(g) => s
            .ports
            .iter()
            .filter(|p| p.groups.contains(g))
            .flat_map(|p| -> Vec<u128> {
                if v6 {
                    p.v6.iter().map(|a| u128::from(*a)).collect()
                } else {
                    p.v4.iter().map(|a| u128::from(u32::from(*a))).collect()
                }
            })
            .map(|a| (a, a))
            .collect(),
    };
    remotes.into_iter().map(|a| (proto, ports, a)).collect()
}

/// Disjoint boxes covering exactly the union of `boxes`: cut along the protocol, then the
/// port, then merge the address ranges; neighbouring slices with the same contents are joined
/// back, so one rule stays one element.
pub fn cover(boxes: &[Box3]) -> Vec<Box3> {
    let mut out = Vec::new();
    for (protos, inner) in slices(
        boxes,
        |b| b.0,
        |sub| {
            slices(
                sub,
                |b| b.1,
                |subsub| merge(subsub.iter().map(|b| b.2).collect()),
            )
        },
    ) {
        for (ports, addrs) in inner {
            for a in addrs {
                out.push((protos, ports, a));
            }
        }
    }
    out
}

/// Cuts `boxes` along one dimension into slices where the same boxes are present, computes
/// `inner` of each slice's boxes, and joins neighbouring slices whose results are equal.
fn slices<T: PartialEq>(
    boxes: &[Box3],
    dim: impl Fn(&Box3) -> Span,
    inner: impl Fn(&[Box3]) -> T,
) -> Vec<(Span, T)> {
    let mut points: Vec<u128> = Vec::new();
    for b in boxes {
        let (lo, hi) = dim(b);
        points.push(lo);
        if let Some(next) = hi.checked_add(1) {
            points.push(next);
        }
    }
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<(Span, T)> = Vec::new();
    for (i, &start) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(u128::MAX, |n| n - 1);
        let present: Vec<Box3> = boxes
            .iter()
            .filter(|b| {
                let (lo, hi) = dim(b);
                lo <= start && end <= hi
            })
            .copied()
            .collect();
        if present.is_empty() {
            continue;
        }
        let value = inner(&present);
        match out.last_mut() {
            Some((span, v)) if span.1.checked_add(1) == Some(start) && *v == value => {
                span.1 = end;
            }
            _ => out.push(((start, end), value)),
        }
    }
    out
}

/// Overlapping or touching ranges joined.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut out: Vec<Span> = Vec::new();
    for (lo, hi) in spans {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1).is_none_or(|n| lo <= n) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// A box as nft prints the element (`-p`: protocols as numbers; a range of one value as the
/// value; an address range that is a prefix as the prefix).
fn element(b: &Box3, ethertype: Ethertype) -> String {
    let number = |(lo, hi): Span| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        }
    };
    let bits: u32 = if ethertype == Ethertype::IPv6 {
        128
    } else {
        32
    };
    let addr = |a: u128| -> IpAddr {
        if bits == 32 {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    };
    let (lo, hi) = b.2;
    let address = if lo == hi {
        addr(lo).to_string()
    } else {
        let size = hi - lo;
        // A prefix: the size is 2^k - 1 and lo is aligned to it.
        if size.checked_add(1).is_none_or(|n| n.is_power_of_two()) && lo & size == 0 {
            let host_bits = 128 - size.leading_zeros();
            format!("{}/{}", addr(lo), bits - host_bits)
        } else {
            format!("{}-{}", addr(lo), addr(hi))
        }
    };
    format!("{} . {} . {address}", number(b.0), number(b.1))
}

/// Whether the groups let a flow through, as the tables will judge its first packet:
/// `source`/`destination` after NAT (the instance's own addresses), `port` the destination
/// port (0 for protocols without one).
pub fn allows(
    s: &FirewallSettings,
    protocol: u8,
    source: IpAddr,
    destination: IpAddr,
    port: u16,
) -> bool {
    // DHCP replies always pass (ND is not tracked, so no flow of it is asked about).
    if protocol == 17 && (port == 68 || port == 546) {
        return true;
    }
    let port_of = |a: IpAddr| {
        s.ports.iter().find(|p| match a {
            IpAddr::V4(v4) => p.v4.contains(&v4),
            IpAddr::V6(v6) => p.v6.contains(&v6),
        })
    };
    let judge = |p: &Port, direction: Direction, remote: IpAddr| {
        p.groups.iter().filter_map(|&g| s.groups.get(g)).any(|g| {
            g.rules.iter().any(|r| {
                r.direction == direction
                    && crate::table::firewall::same_family(r.ethertype, remote)
                    && r.protocol.is_none_or(|x| x == protocol)
                    && r.ports.is_none_or(|(lo, hi)| lo <= port && port <= hi)
                    && match &r.remote {
                        Remote::Any => true,
                        Remote::Cidr(n) => n.contains(remote),
                        Remote::Group(m) => s.ports.iter().any(|q| {
                            q.groups.contains(m)
                                && match remote {
                                    IpAddr::V4(a) => q.v4.contains(&a),
                                    IpAddr::V6(a) => q.v6.contains(&a),
                                }
                        }),
                    }
            })
        })
    };
    if let Some(p) = port_of(source) {
        if !judge(p, Direction::Egress, destination) {
            return false;
        }
    }
    if let Some(p) = port_of(destination) {
        if !judge(p, Direction::Ingress, source) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(lo: u128, hi: u128) -> Span {
        (lo, hi)
    }

    #[test]
    fn cover_is_disjoint_and_exact() {
        // tcp 22 from anywhere, tcp 20-30 from 198.18.0.0/24, any from 198.18.0.5.
        let a = u128::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)));
        let boxes = vec![
            (span(6, 6), span(22, 22), ANY_V4),
            (span(6, 6), span(20, 30), span(a, a + 255)),
            (span(0, 255), span(0, 65535), span(a + 5, a + 5)),
        ];
        let out = cover(&boxes);
        for (i, x) in out.iter().enumerate() {
            for y in &out[i + 1..] {
                let meet = |p: Span, q: Span| p.0 <= q.1 && q.0 <= p.1;
                assert!(
                    !(meet(x.0, y.0) && meet(x.1, y.1) && meet(x.2, y.2)),
                    "{x:?} meets {y:?}"
                );
            }
        }
        // Every point of every input box is covered, and nothing more (checked on a grid of
        // the interesting points).
        let inside = |b: &Box3, p: (u128, u128, u128)| {
            b.0 .0 <= p.0
                && p.0 <= b.0 .1
                && b.1 .0 <= p.1
                && p.1 <= b.1 .1
                && b.2 .0 <= p.2
                && p.2 <= b.2 .1
        };
        for proto in [0, 5, 6, 7, 17, 255] {
            for port in [0, 19, 20, 22, 23, 30, 31, 65535] {
                for addr in [
                    0,
                    a - 1,
                    a,
                    a + 4,
                    a + 5,
                    a + 6,
                    a + 255,
                    a + 256,
                    u32::MAX as u128,
                ] {
                    let p = (proto, port, addr);
                    assert_eq!(
                        boxes.iter().any(|b| inside(b, p)),
                        out.iter().any(|b| inside(b, p)),
                        "{p:?}"
                    );
                }
            }
        }
        // One rule is one element.
        assert_eq!(cover(&boxes[..1]), boxes[..1].to_vec());
    }

    #[test]
    fn elements_in_nfts_own_form() {
        let a = u128::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)));
        let e = |b| element(&b, Ethertype::IPv4);
        assert_eq!(e((span(6, 6), span(22, 22), ANY_V4)), "6 . 22 . 0.0.0.0/0");
        assert_eq!(
            e((span(0, 255), span(0, 65535), span(a, a + 255))),
            "0-255 . 0-65535 . 198.18.0.0/24"
        );
        assert_eq!(
            e((span(1, 1), span(0, 65535), span(a + 5, a + 5))),
            "1 . 0-65535 . 198.18.0.5"
        );
        assert_eq!(
            e((span(6, 6), span(80, 90), span(a + 1, a + 9))),
            "6 . 80-90 . 198.18.0.1-198.18.0.9"
        );
        assert_eq!(
            element(&(span(58, 58), span(0, 65535), ANY_V6), Ethertype::IPv6),
            "58 . 0-65535 . ::/0"
        );
    }
}
