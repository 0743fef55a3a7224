//! The planner: `plan(desired, observed)` is the list of operations that turns what the kernel
//! has into what the table wants, as values. Pure: no sockets, no clock. [`simulate`] applies
//! a plan to an `Observed` the way the kernel would, so tests and the fuzz target can check
//! that the plan for the state a plan produces is empty.
//!
//! What netnode owns, it may change or remove: links with its alias, addresses with its
//! protocol, its nftables table. What it does not own, it only adds to (enslaving an interface,
//! moving a flat interface's addresses onto its bridge, as nova did) and never deletes.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::table::control::Uplink;
use crate::table::firewall::FirewallSettings;
use crate::table::MacAddr;

use super::firewall;
use super::nft::{self, MapChange, NftState};
use super::nftable::{ElementBatch, TableSpec, TableState};
use super::state::{vlan_mac, Address, BridgeSpec, Desired, Link, LinkKind, Observed, Route};

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a bridge (forward delay 0, STP off, up, alias `netnode`).
    AddBridge {
        /// Its name.
        name: String,
        /// Its MTU.
        mtu: Option<u32>,
    },
    /// Create `vlan<id>` on `parent` with `mac`, enslaved to `master` and up (alias `netnode`).
    AddVlan {
        /// Its name.
        name: String,
        /// The interface it is made on.
        parent: String,
        /// The 802.1Q id.
        id: u16,
        /// Its MAC (nova gave VLAN devices a `fa:16:3e` one).
        mac: MacAddr,
        /// Its MTU.
        mtu: Option<u32>,
        /// The bridge it joins.
        master: String,
    },
    /// Turn STP off and the forward delay to 0 on a bridge.
    SetBridge {
        /// The bridge.
        name: String,
    },
    /// Change one property of a link.
    SetLink {
        /// The link.
        name: String,
        /// What changes.
        change: LinkChange,
    },
    /// Delete a link netnode created.
    DeleteLink {
        /// Its name.
        name: String,
    },
    /// Add an address.
    AddAddress {
        /// The interface.
        link: String,
        /// Address and prefix length.
        cidr: IpNetwork,
        /// Marked as netnode's (not for addresses moved from a flat interface).
        owned: bool,
    },
    /// Delete an address.
    DeleteAddress {
        /// The interface.
        link: String,
        /// Address and prefix length.
        cidr: IpNetwork,
    },
    /// Add a route.
    AddRoute(Route),
    /// Delete a route.
    DeleteRoute(Route),
    /// Write a sysctl (`/proc/sys/<key>`).
    Sysctl {
        /// The path under /proc/sys, with slashes (interface names may hold dots).
        key: String,
        /// The value.
        value: String,
    },
    /// One nftables transaction on netnode's table.
    Nft {
        /// The `nft -f` script.
        script: String,
        /// When only map elements change: the same as element changes, which the applier
        /// sends over netlink without running `nft`.
        maps: Vec<MapChange>,
        /// The table it leaves (none: deleted).
        result: Option<NftState>,
    },
    /// One `nft -f` transaction on one of the firewall's tables.
    Table {
        /// Its family and name.
        table: String,
        /// The script (a replacement, element updates, or the delete).
        script: String,
        /// When only elements change: the same as netlink batches, which the applier sends
        /// without running `nft` (whose deletes from an interval set read the whole set first).
        elements: Vec<ElementBatch>,
        /// The table it leaves (none: deleted).
        result: Option<TableState>,
    },
    /// End the flows the security groups no longer allow (a walk of the conntrack table).
    ForgetForbidden(Arc<FirewallSettings>),
    /// End the connections that went through these floating IPs (nova's `conntrack -D`), as
    /// (floating, fixed) pairs: one walk of the conntrack table for all of them.
    ForgetFlows(Vec<(Ipv4Addr, Ipv4Addr)>),
    /// Send gratuitous ARPs for an address (nova's `arping -U`).
    AnnounceArp {
        /// The interface.
        interface: String,
        /// The address.
        address: Ipv4Addr,
        /// How many.
        count: u32,
    },
}

/// A change to one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Bring it up.
    Up,
    /// Set its MTU.
    Mtu(u32),
    /// Set its MAC.
    Mac(MacAddr),
    /// Enslave it to this bridge.
    Master(String),
    /// Release it from its bridge.
    NoMaster,
}

/// A plan: the operations in order, and what could not be planned (named, not fatal).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The operations.
    pub ops: Vec<Op>,
    /// Things left undone, each naming the interface or key.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What turns `o` into `d`.
pub fn plan(d: &Desired, o: &Observed) -> Plan {
    let mut p = Plan::default();
    // Links netnode made and no longer wants go first (a VLAN device goes with its parent), so
    // that a name they held is free for what is wanted now.
    let mut links: HashSet<String> = HashSet::new();
    let mut vlans: Vec<(String, LinkKind)> = Vec::new();
    for b in &d.bridges {
        links.insert(b.name.clone());
        if let Some(u @ Uplink::Vlan { .. }) = &b.uplink {
            links.insert(u.port());
        }
        if let Ok(Some(u @ Uplink::Vlan { id, parent })) = usable_uplink(d, b) {
            let kind = LinkKind::Vlan {
                parent: Some(parent.clone()),
                id: *id,
            };
            vlans.push((u.port(), kind));
        }
    }
    // A VLAN device of netnode's on another parent or id is made again.
    let stale_vlan = |l: &Link| {
        vlans
            .iter()
            .any(|(name, kind)| *name == l.name && l.kind != *kind)
    };
    let doomed: Vec<&Link> = o
        .links
        .iter()
        .filter(|l| l.owned && (!links.contains(&l.name) || stale_vlan(l)))
        .collect();
    delete_links(&mut p, doomed);
    let after_deletes = simulate(o, &p.ops);
    let o = &after_deletes;
    let mut addrs: HashSet<(String, IpNetwork)> = HashSet::new();
    for b in &d.bridges {
        for a in &b.addresses {
            addrs.insert((b.name.clone(), IpNetwork::V4(*a)));
        }
        for a in &b.addresses_v6 {
            addrs.insert((b.name.clone(), IpNetwork::V6(*a)));
        }
        let bridge = match o.link(&b.name) {
            None => {
                p.ops.push(Op::AddBridge {
                    name: b.name.clone(),
                    mtu: b.mtu,
                });
                None
            }
            Some(l) => match l.kind {
                LinkKind::Bridge { stp, forward_delay } => {
                    if stp || forward_delay != 0 {
                        p.ops.push(Op::SetBridge {
                            name: b.name.clone(),
                        });
                    }
                    link_basics(&mut p, l, b.mtu);
                    Some(l)
                }
                _ => {
                    p.warnings.push(format!(
                        "bridge {}: an interface of that name exists and is not a bridge; left alone",
                        b.name
                    ));
                    continue;
                }
            },
        };
        // The uplink: enslaved and up; the bridge takes its MAC.
        let mut port_mac = None;
        let mut moved: Vec<Ipv4Network> = Vec::new();
        let mut moved_routes: Vec<&Route> = Vec::new();
        let uplink = match usable_uplink(d, b) {
            Ok(u) => u,
            Err(u) => {
                p.warnings.push(format!(
                    "bridge {}: its uplink {u} is a bridge of the config or another bridge's uplink; not enslaved",
                    b.name
                ));
                None
            }
        };
        match uplink {
            None => {}
            Some(Uplink::Vlan { id, parent }) => {
                let name = format!("vlan{id}");
                if o.link(parent).is_none() {
                    p.warnings.push(format!(
                        "bridge {}: vlan_interface {parent} does not exist; no VLAN device made",
                        b.name
                    ));
                } else {
                    let want_kind = LinkKind::Vlan {
                        parent: Some(parent.clone()),
                        id: *id,
                    };
                    match o.link(&name) {
                        None => {
                            let mac = vlan_mac(parent, *id);
                            p.ops.push(Op::AddVlan {
                                name,
                                parent: parent.clone(),
                                id: *id,
                                mac,
                                mtu: b.mtu,
                                master: b.name.clone(),
                            });
                            port_mac = Some(mac);
                        }
                        Some(v) if v.kind == want_kind => {
                            enslave(&mut p, v, &b.name, b.mtu);
                            port_mac = v.mac;
                        }
                        Some(_) => p.warnings.push(format!(
                            "bridge {}: {name} exists and is not VLAN {id} on {parent}; not netnode's, left alone",
                            b.name
                        )),
                    }
                }
            }
            Some(Uplink::Flat(port)) => match o.link(port) {
                None => p.warnings.push(format!(
                    "bridge {}: bridge_interface {port} does not exist; not enslaved",
                    b.name
                )),
                Some(l) => {
                    enslave(&mut p, l, &b.name, None);
                    port_mac = l.mac;
                    // Not a floating IP's /32 that is meant to stay on the interface.
                    let floating_here = |a: &Ipv4Network| {
                        d.floating
                            .iter()
                            .any(|f| &f.interface == port && Ipv4Network::from(f.address) == *a)
                    };
                    moved = o
                        .global_v4(port)
                        .into_iter()
                        .filter(|(a, owned)| !owned && !floating_here(a))
                        .map(|(a, _)| a)
                        .collect();
                    moved_routes = o.routes.iter().filter(|r| r.link == *port).collect();
                }
            },
        }
        if let Some(mac) = port_mac {
            if bridge.and_then(|l| l.mac) != Some(mac) {
                p.ops.push(Op::SetLink {
                    name: b.name.clone(),
                    change: LinkChange::Mac(mac),
                });
            }
        }
        // The gateway first. Only netnode's own addresses are taken down to get there: taking
        // down someone else's would take the routes through the bridge with it.
        let have = if bridge.is_some() {
            o.global_v4(&b.name)
        } else {
            Vec::new()
        };
        let first_ok = have.first().map(|(a, _)| a) == b.addresses.first();
        let foreign = have.iter().any(|(_, owned)| !owned);
        if !have.is_empty() && !first_ok && !foreign {
            for (a, _) in &have {
                p.ops.push(Op::DeleteAddress {
                    link: b.name.clone(),
                    cidr: IpNetwork::V4(*a),
                });
            }
            for a in &b.addresses {
                p.ops.push(add_owned(&b.name, IpNetwork::V4(*a)));
            }
            // The others come back (a floating IP's /32 may live here too); those nothing
            // wants any more are deleted below.
            for (a, _) in &have {
                if !b.addresses.contains(a) {
                    p.ops.push(add_owned(&b.name, IpNetwork::V4(*a)));
                }
            }
        } else {
            if !have.is_empty() && !first_ok {
                p.warnings.push(format!(
                    "bridge {}: the gateway {} is not its first address ({} is, and is not netnode's); left as it is",
                    b.name,
                    b.addresses.first().map(|a| a.to_string()).unwrap_or_default(),
                    have.first().map(|(a, _)| a.to_string()).unwrap_or_default()
                ));
            }
            for a in &b.addresses {
                if !have.iter().any(|(h, _)| h == a) {
                    p.ops.push(add_owned(&b.name, IpNetwork::V4(*a)));
                }
            }
        }
        // A flat interface's addresses and routes move onto the bridge, as nova moved them.
        if let Some(Uplink::Flat(port)) = uplink {
            for r in &moved_routes {
                p.ops.push(Op::DeleteRoute((*r).clone()));
            }
            for a in &moved {
                p.ops.push(Op::DeleteAddress {
                    link: port.clone(),
                    cidr: IpNetwork::V4(*a),
                });
                if !b.addresses.contains(a) {
                    p.ops.push(Op::AddAddress {
                        link: b.name.clone(),
                        cidr: IpNetwork::V4(*a),
                        owned: false,
                    });
                }
            }
            for r in moved_routes {
                p.ops.push(Op::AddRoute(Route {
                    link: b.name.clone(),
                    ..r.clone()
                }));
            }
        }
        for a in &b.addresses_v6 {
            let cidr = IpNetwork::V6(*a);
            if bridge.is_none() || !o.addresses_of(&b.name).any(|h| h.cidr == cidr) {
                p.ops.push(add_owned(&b.name, cidr));
            }
        }
    }
    if let Some(public) = &d.public_interface {
        if o.link(public).is_none() {
            p.warnings.push(format!(
                "[nat] public_interface: {public} does not exist; its SNAT rules are written all the same"
            ));
        }
    }
    let present: HashSet<(&str, IpNetwork)> = o
        .addresses
        .iter()
        .map(|a| (a.link.as_str(), a.cidr))
        .collect();
    let mut announce = Vec::new();
    for f in &d.floating {
        let cidr = host(f.address);
        addrs.insert((f.interface.clone(), cidr));
        // A bridge or VLAN device made earlier in this plan counts as there.
        let made = p.ops.iter().any(|op| {
            matches!(op, Op::AddBridge { name, .. } | Op::AddVlan { name, .. } if *name == f.interface)
        });
        if o.link(&f.interface).is_none() && !made {
            p.warnings.push(format!(
                "floating IP {}: interface {} does not exist; its /32 is not added",
                f.address, f.interface
            ));
            continue;
        }
        if !present.contains(&(f.interface.as_str(), cidr)) || o.link(&f.interface).is_none() {
            p.ops.push(add_owned(&f.interface, cidr));
            if d.garp_count > 0 {
                announce.push(Op::AnnounceArp {
                    interface: f.interface.clone(),
                    address: f.address,
                    count: d.garp_count,
                });
            }
        }
    }
    sysctls(&mut p, d, o);
    let want = d.ruleset.state();
    match &o.nft {
        // Same structure: the same hash, rule counts and maps (a map someone added is not).
        Some(s)
            if s.marker == want.marker
                && s.chains == want.chains
                && s.maps.keys().eq(want.maps.keys()) =>
        {
            if s.maps != want.maps {
                let maps = d.ruleset.map_changes(s);
                p.ops.push(Op::Nft {
                    script: nft::Ruleset::update_script(&maps),
                    maps,
                    result: Some(want),
                });
            }
        }
        _ => p.ops.push(Op::Nft {
            script: d.ruleset.replace_script(),
            maps: Vec::new(),
            result: Some(want),
        }),
    }
    firewall(&mut p, d, o);
    // Flows through a floating IP that is gone or leads elsewhere now end, after the rules.
    let wanted: HashSet<(Ipv4Addr, Ipv4Addr)> =
        d.floating.iter().map(|f| (f.address, f.fixed)).collect();
    let ended: Vec<(Ipv4Addr, Ipv4Addr)> = o
        .floating_map()
        .into_iter()
        .filter(|pair| !wanted.contains(pair))
        .collect();
    if !ended.is_empty() {
        p.ops.push(Op::ForgetFlows(ended));
    }
    // Addresses netnode added and no longer wants.
    for a in &o.addresses {
        if a.owned && !addrs.contains(&(a.link.clone(), a.cidr)) {
            p.ops.push(Op::DeleteAddress {
                link: a.link.clone(),
                cidr: a.cidr,
            });
        }
    }
    p.ops.extend(announce);
    p
}

/// The firewall's tables: element updates when the structure is the same, else a replacement;
/// tables no longer wanted go. A change to the groups ends the flows they no longer allow.
fn firewall(p: &mut Plan, d: &Desired, o: &Observed) {
    let wanted: Vec<&TableSpec> = d
        .firewall
        .iter()
        .flat_map(|f| f.tables())
        .chain(d.isolation.as_ref())
        .collect();
    let mut groups_changed = false;
    for spec in &wanted {
        let group_table = spec.table == firewall::GROUP_TABLE;
        let (script, elements) = match o.tables.get(spec.table) {
            Some(s) if spec.same_structure(s) => {
                let c = spec.changes(s);
                if c.is_empty() {
                    continue;
                }
                groups_changed |= group_table && firewall::narrows(&c);
                (
                    spec.update_script(&c),
                    spec.element_batches(&c).unwrap_or_default(),
                )
            }
            _ => {
                groups_changed |= group_table;
                (spec.replace_script(), Vec::new())
            }
        };
        p.ops.push(Op::Table {
            table: spec.table.to_string(),
            script,
            elements,
            result: Some(spec.state()),
        });
    }
    for name in o.tables.keys() {
        if !wanted.iter().any(|w| w.table == name) {
            p.ops.push(Op::Table {
                table: name.clone(),
                script: TableSpec::delete_script(name),
                elements: Vec::new(),
                result: None,
            });
        }
    }
    if d.firewall.is_some() {
        match o.bridge_nf {
            Some(true) => {}
            Some(false) => {
                for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
                    p.ops.push(Op::Sysctl {
                        key: format!("net/bridge/{key}"),
                        value: "1".into(),
                    });
                }
            }
            None => p.warnings.push(
                "firewall: br_netfilter is not loaded (modprobe br_netfilter): security \
                 groups do not see traffic between instances on one bridge"
                    .into(),
            ),
        }
    }
    if groups_changed {
        p.ops.push(Op::ForgetForbidden(d.firewall_settings.clone()));
    }
}

/// Removes everything netnode made: its table, its addresses, its links; a flat interface's
/// addresses and routes go back from the bridge to it. Sysctls stay as they are (other
/// software on the host may rely on forwarding by now).
pub fn teardown(d: &Desired, o: &Observed) -> Plan {
    let mut p = Plan::default();
    if o.nft.is_some() {
        p.ops.push(Op::Nft {
            script: nft::delete_script(),
            maps: Vec::new(),
            result: None,
        });
    }
    for name in o.tables.keys() {
        p.ops.push(Op::Table {
            table: name.clone(),
            script: TableSpec::delete_script(name),
            elements: Vec::new(),
            result: None,
        });
    }
    let flows: Vec<(Ipv4Addr, Ipv4Addr)> = o.floating_map().into_iter().collect();
    if !flows.is_empty() {
        p.ops.push(Op::ForgetFlows(flows));
    }
    for b in &d.bridges {
        let Some(Uplink::Flat(port)) = &b.uplink else {
            continue;
        };
        let (Some(bridge), Some(port_link)) = (o.link(&b.name), o.link(port)) else {
            continue;
        };
        let routes: Vec<&Route> = o.routes.iter().filter(|r| r.link == b.name).collect();
        for r in &routes {
            p.ops.push(Op::DeleteRoute((*r).clone()));
        }
        for (a, owned) in o.global_v4(&b.name) {
            if !owned {
                p.ops.push(Op::DeleteAddress {
                    link: b.name.clone(),
                    cidr: IpNetwork::V4(a),
                });
                p.ops.push(Op::AddAddress {
                    link: port.clone(),
                    cidr: IpNetwork::V4(a),
                    owned: false,
                });
            }
        }
        for r in routes {
            p.ops.push(Op::AddRoute(Route {
                link: port.clone(),
                ..r.clone()
            }));
        }
        if !bridge.owned && port_link.master.as_deref() == Some(&b.name) {
            p.ops.push(Op::SetLink {
                name: port.clone(),
                change: LinkChange::NoMaster,
            });
        }
    }
    let doomed: Vec<&Link> = o.links.iter().filter(|l| l.owned).collect();
    for a in &o.addresses {
        if a.owned && !doomed.iter().any(|l| l.name == a.link) {
            p.ops.push(Op::DeleteAddress {
                link: a.link.clone(),
                cidr: a.cidr,
            });
        }
    }
    delete_links(&mut p, doomed);
    p
}

/// The bridge's uplink, unless a name it uses (the interface, or the VLAN device and its parent)
/// is a bridge of the config or an earlier bridge's uplink: then that name, as the error.
fn usable_uplink<'a>(d: &'a Desired, b: &'a BridgeSpec) -> Result<Option<&'a Uplink>, String> {
    let Some(uplink) = &b.uplink else {
        return Ok(None);
    };
    let names = match uplink {
        Uplink::Flat(port) => vec![port.clone()],
        Uplink::Vlan { parent, .. } => vec![uplink.port(), parent.clone()],
    };
    if let Some(n) = names
        .into_iter()
        .find(|n| d.bridges.iter().any(|x| x.name == *n))
    {
        return Err(n);
    }
    let port = uplink.port();
    let taken = d
        .bridges
        .iter()
        .take_while(|x| x.name != b.name)
        .any(|x| x.uplink.as_ref().map(Uplink::port).as_ref() == Some(&port));
    if taken {
        return Err(port);
    }
    Ok(Some(uplink))
}

/// VLAN devices before the bridges they are enslaved to.
fn delete_links(p: &mut Plan, mut doomed: Vec<&Link>) {
    doomed.sort_by_key(|l| matches!(l.kind, LinkKind::Bridge { .. }));
    for l in doomed {
        p.ops.push(Op::DeleteLink {
            name: l.name.clone(),
        });
    }
}

fn host(a: Ipv4Addr) -> IpNetwork {
    IpNetwork::V4(Ipv4Network::from(a))
}

fn add_owned(link: &str, cidr: IpNetwork) -> Op {
    Op::AddAddress {
        link: link.to_string(),
        cidr,
        owned: true,
    }
}

fn link_basics(p: &mut Plan, l: &Link, mtu: Option<u32>) {
    if let Some(m) = mtu {
        if l.mtu != m {
            p.ops.push(Op::SetLink {
                name: l.name.clone(),
                change: LinkChange::Mtu(m),
            });
        }
    }
    if !l.up {
        p.ops.push(Op::SetLink {
            name: l.name.clone(),
            change: LinkChange::Up,
        });
    }
}

fn enslave(p: &mut Plan, l: &Link, bridge: &str, mtu: Option<u32>) {
    if l.master.as_deref() != Some(bridge) {
        p.ops.push(Op::SetLink {
            name: l.name.clone(),
            change: LinkChange::Master(bridge.to_string()),
        });
    }
    link_basics(p, l, mtu);
}

/// Forwarding on; with IPv6, interfaces that configure themselves by RA keep doing so
/// (`accept_ra = 2`) before forwarding would make the kernel ignore RAs.
fn sysctls(p: &mut Plan, d: &Desired, o: &Observed) {
    if d.ip_forward && !o.ip_forward {
        p.ops.push(Op::Sysctl {
            key: "net/ipv4/ip_forward".into(),
            value: "1".into(),
        });
    }
    if d.ipv6_forward {
        for l in &o.links {
            if l.accept_ra == Some(1) && l.ra_learned {
                p.ops.push(Op::Sysctl {
                    key: format!("net/ipv6/conf/{}/accept_ra", l.name),
                    value: "2".into(),
                });
            }
        }
        if !o.ipv6_forward {
            p.ops.push(Op::Sysctl {
                key: "net/ipv6/conf/all/forwarding".into(),
                value: "1".into(),
            });
        }
    }
}

/// `o` after `ops`, as the kernel would leave it.
pub fn simulate(o: &Observed, ops: &[Op]) -> Observed {
    let mut o = o.clone();
    for op in ops {
        match op {
            Op::AddBridge { name, mtu } => o.links.push(Link {
                name: name.clone(),
                kind: LinkKind::Bridge {
                    stp: false,
                    forward_delay: 0,
                },
                master: None,
                up: true,
                mtu: mtu.unwrap_or(1500),
                mac: None,
                owned: true,
                accept_ra: Some(1),
                ra_learned: false,
            }),
            Op::AddVlan {
                name,
                parent,
                id,
                mac,
                mtu,
                master,
            } => o.links.push(Link {
                name: name.clone(),
                kind: LinkKind::Vlan {
                    parent: Some(parent.clone()),
                    id: *id,
                },
                master: Some(master.clone()),
                up: true,
                mtu: mtu.unwrap_or(1500),
                mac: Some(*mac),
                owned: true,
                accept_ra: Some(1),
                ra_learned: false,
            }),
            Op::SetBridge { name } => {
                if let Some(l) = o.links.iter_mut().find(|l| &l.name == name) {
                    l.kind = LinkKind::Bridge {
                        stp: false,
                        forward_delay: 0,
                    };
                }
            }
            Op::SetLink { name, change } => {
                if let Some(l) = o.links.iter_mut().find(|l| &l.name == name) {
                    match change {
                        LinkChange::Up => l.up = true,
                        LinkChange::Mtu(m) => l.mtu = *m,
                        LinkChange::Mac(m) => l.mac = Some(*m),
                        LinkChange::Master(b) => l.master = Some(b.clone()),
                        LinkChange::NoMaster => l.master = None,
                    }
                }
            }
            Op::DeleteLink { name } => {
                o.links.retain(|l| {
                    &l.name != name
                        && !matches!(&l.kind, LinkKind::Vlan { parent: Some(p), .. } if p == name)
                });
                let alive: HashSet<String> = o.links.iter().map(|l| l.name.clone()).collect();
                for l in &mut o.links {
                    if l.master.as_ref().is_some_and(|m| !alive.contains(m)) {
                        l.master = None;
                    }
                }
                o.addresses.retain(|a| alive.contains(&a.link));
                o.routes.retain(|r| alive.contains(&r.link));
            }
            Op::AddAddress { link, cidr, owned } => {
                let exists = o
                    .addresses
                    .iter()
                    .any(|a| &a.link == link && a.cidr == *cidr);
                if o.link(link).is_some() && !exists {
                    o.addresses.push(Address {
                        link: link.clone(),
                        cidr: *cidr,
                        owned: *owned,
                    });
                }
            }
            Op::DeleteAddress { link, cidr } => {
                o.addresses
                    .retain(|a| !(&a.link == link && a.cidr == *cidr));
            }
            Op::AddRoute(r) => {
                if !o.routes.contains(r) {
                    o.routes.push(r.clone());
                }
            }
            Op::DeleteRoute(r) => o.routes.retain(|x| x != r),
            Op::Sysctl { key, value } => {
                let on = value == "1";
                match key.as_str() {
                    "net/ipv4/ip_forward" => o.ip_forward = on,
                    "net/ipv6/conf/all/forwarding" => o.ipv6_forward = on,
                    "net/bridge/bridge-nf-call-ip6tables" => o.bridge_nf = Some(on),
                    k => {
                        let link = k
                            .strip_prefix("net/ipv6/conf/")
                            .and_then(|k| k.strip_suffix("/accept_ra"));
                        if let Some(l) = o.links.iter_mut().find(|l| Some(l.name.as_str()) == link)
                        {
                            l.accept_ra = value.parse().ok();
                        }
                    }
                }
            }
            Op::Nft { result, .. } => o.nft = result.clone(),
            Op::Table { table, result, .. } => match result {
                Some(r) => {
                    o.tables.insert(table.clone(), r.clone());
                }
                None => {
                    o.tables.remove(table);
                }
            },
            Op::ForgetFlows(_) | Op::ForgetForbidden(_) | Op::AnnounceArp { .. } => {}
        }
    }
    o
}

impl fmt::Display for Op {
    /// The operation as the command an operator would type for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddBridge { name, mtu } => {
                write!(
                    f,
                    "ip link add {name} type bridge forward_delay 0 stp_state 0"
                )?;
                if let Some(m) = mtu {
                    write!(f, " mtu {m}")?;
                }
                write!(f, " && ip link set {name} alias netnode up")
            }
            Op::AddVlan {
                name,
                parent,
                id,
                mac,
                mtu,
                master,
            } => {
                write!(
                    f,
                    "ip link add link {parent} name {name} address {mac} type vlan id {id}"
                )?;
                if let Some(m) = mtu {
                    write!(f, " mtu {m}")?;
                }
                write!(f, " && ip link set {name} alias netnode master {master} up")
            }
            Op::SetBridge { name } => {
                write!(
                    f,
                    "ip link set {name} type bridge forward_delay 0 stp_state 0"
                )
            }
            Op::SetLink { name, change } => match change {
                LinkChange::Up => write!(f, "ip link set {name} up"),
                LinkChange::Mtu(m) => write!(f, "ip link set {name} mtu {m}"),
                LinkChange::Mac(m) => write!(f, "ip link set {name} address {m}"),
                LinkChange::Master(b) => write!(f, "ip link set {name} master {b}"),
                LinkChange::NoMaster => write!(f, "ip link set {name} nomaster"),
            },
            Op::DeleteLink { name } => write!(f, "ip link delete {name}"),
            Op::AddAddress { link, cidr, owned } => {
                write!(f, "ip address add {cidr} dev {link}")?;
                if *owned {
                    write!(f, " proto {:#x}", super::state::OWNER_PROTO)?;
                }
                Ok(())
            }
            Op::DeleteAddress { link, cidr } => write!(f, "ip address delete {cidr} dev {link}"),
            Op::AddRoute(r) | Op::DeleteRoute(r) => {
                let verb = if matches!(self, Op::AddRoute(_)) {
                    "add"
                } else {
                    "delete"
                };
                write!(f, "ip route {verb} {}", r.destination)?;
                if let Some(g) = r.gateway {
                    write!(f, " via {g}")?;
                }
                write!(f, " dev {} metric {}", r.link, r.metric)
            }
            Op::Sysctl { key, value } => write!(f, "sysctl -w {}={value}", key.replace('/', ".")),
            Op::Nft { script, .. } => write!(f, "nft -f - <<'EOF'\n{}EOF", script),
            Op::Table { script, .. } => {
                // A firewall table holds an element per port and rule: thousands of lines
                // would flood the log, so a long script shows its head.
                const HEAD: usize = 40;
                let lines = script.lines().count();
                if lines <= HEAD {
                    return write!(f, "nft -f - <<'EOF'\n{script}EOF");
                }
                let head: Vec<&str> = script.lines().take(HEAD).collect();
                write!(
                    f,
                    "nft -f - <<'EOF'\n{}\n# ... {} more lines\nEOF",
                    head.join("\n"),
                    lines - HEAD
                )
            }
            Op::ForgetForbidden(_) => write!(f, "conntrack: end the flows the groups now forbid"),
            Op::ForgetFlows(flows) => {
                write!(f, "conntrack -D (over netlink) the flows through")?;
                for (i, (floating, fixed)) in flows.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep} {floating} to {fixed}")?;
                }
                Ok(())
            }
            Op::AnnounceArp {
                interface,
                address,
                count,
            } => write!(f, "arping -U -c {count} -I {interface} {address}"),
        }
    }
}
