//! The control planner on arbitrary desired and observed states: it never panics, and after the
//! kernel (the model in `simulate`) has done what the plan says, the plan is empty. Names and
//! addresses come from small pools, so bridges, uplinks, public interfaces and existing links
//! collide in every way an operator's config and a host can make them.
#![no_main]
use std::net::Ipv4Addr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use libfuzzer_sys::fuzz_target;
use netnode::control::firewall::Firewall;
use netnode::control::nft::{NatInput, NftState, Ruleset};
use netnode::control::state::{Address, BridgeSpec, Desired, Link, LinkKind, Observed, Route};
use netnode::control::{plan, simulate, teardown};
use netnode::table::control::{FloatingIp, MetadataTarget, Uplink};
use netnode::table::firewall::{
    Direction, Ethertype, FirewallSettings, Group, Port, Remote, Rule,
};
use netnode::table::MacAddr;

const NAMES: [&str; 6] = ["br100", "br101", "eth1", "vlan5", "pub0", "tap1"];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map(|(b, r)| (*b, r)).unwrap_or((0, &[]));
        self.0 = rest;
        b
    }
    fn name(&mut self) -> String {
        NAMES[self.byte() as usize % NAMES.len()].to_string()
    }
    fn count(&mut self, max: u8) -> usize {
        (self.byte() % (max + 1)) as usize
    }
    fn v4(&mut self) -> Ipv4Network {
        let ip = Ipv4Addr::new(198, 18 + (self.byte() & 1), self.byte() % 4, self.byte() % 4);
        Ipv4Network::new(ip, [24, 32, 16][self.byte() as usize % 3]).unwrap()
    }
    fn v6(&mut self) -> Ipv6Network {
        Ipv6Network::new(format!("fd00:{}::1", self.byte() % 3).parse().unwrap(), 64).unwrap()
    }
    /// Security groups with rules of every shape, and ports in them.
    fn firewall(&mut self) -> FirewallSettings {
        let groups = 1 + self.count(2);
        let mut s = FirewallSettings::default();
        for g in 0..groups {
            let mut rules = Vec::new();
            for _ in 0..self.count(4) {
                let ethertype = if self.byte() & 1 == 0 { Ethertype::IPv4 } else { Ethertype::IPv6 };
                let lo = u16::from(self.byte() % 30);
                rules.push(Rule {
                    direction: if self.byte() & 1 == 0 { Direction::Ingress } else { Direction::Egress },
                    ethertype,
                    protocol: [None, Some(6), Some(17), Some(1)][self.byte() as usize % 4],
                    ports: (self.byte() & 1 == 1).then_some((lo, lo + u16::from(self.byte() % 8))),
                    remote: match (self.byte() % 3, ethertype) {
                        (0, _) => Remote::Any,
                        (1, Ethertype::IPv4) => Remote::Cidr(IpNetwork::V4(self.v4())),
                        (1, Ethertype::IPv6) => Remote::Cidr(IpNetwork::V6(self.v6())),
                        _ => Remote::Group(self.byte() as usize % groups),
                    },
                });
            }
            s.groups.push(Group { project: "p".into(), name: format!("g{g}"), rules });
        }
        for i in 0..self.count(3) {
            let mac = MacAddr([0xfa, 0x16, 0x3e, 0, 0, i as u8]);
            s.ports.push(Port {
                device: format!("tap{i}"),
                bridge: "br100".into(),
                mac,
                v4: vec![Ipv4Addr::new(198, 18, 0, 3 + i as u8)],
                v6: vec![netnode::table::firewall::link_local(mac)],
                groups: (0..groups).filter(|_| self.byte() & 1 == 1).collect(),
                instance: format!("u{i}"),
            });
        }
        s
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut bridges: Vec<BridgeSpec> = Vec::new();
    for _ in 0..b.count(3) {
        let name = b.name();
        let uplink = match b.byte() % 3 {
            0 => None,
            1 => Some(Uplink::Flat(b.name())),
            _ => Some(Uplink::Vlan { id: 5, parent: b.name() }),
        };
        let addresses: Vec<Ipv4Network> = (0..1 + b.count(2)).map(|_| b.v4()).collect();
        let addresses_v6 = (0..b.count(1)).map(|_| b.v6()).collect();
        let mtu = (b.byte() & 1 == 1).then_some(1400);
        // A table merges networks on one bridge into one spec, and refuses overlapping ranges.
        let overlaps = bridges.iter().any(|x: &BridgeSpec| {
            x.addresses.iter().any(|a| addresses.iter().any(|b: &Ipv4Network| a.overlaps(*b)))
        });
        if !bridges.iter().any(|x| x.name == name) && !overlaps {
            bridges.push(BridgeSpec { name, mtu, addresses, addresses_v6, uplink });
        }
    }
    let mut floating: Vec<FloatingIp> = Vec::new();
    for _ in 0..b.count(3) {
        let f = FloatingIp { address: b.v4().ip(), fixed: b.v4().ip(), interface: b.name() };
        // The table refuses a floating or fixed address listed twice, and a floating address
        // inside a fixed range.
        let inside = bridges.iter().any(|x| x.addresses.iter().any(|n| n.contains(f.address)));
        if !inside && !floating.iter().any(|o| o.address == f.address || o.fixed == f.fixed) {
            floating.push(f);
        }
    }
    let input = NatInput {
        fixed: bridges.iter().flat_map(|br| br.addresses.first().copied()).collect(),
        bridges: bridges.iter().map(|br| br.name.clone()).collect(),
        metadata: (b.byte() & 1 == 1).then_some(MetadataTarget::Redirect(8775)),
        dmz: (0..b.count(2)).map(|_| b.v4()).collect(),
        public_interface: (b.byte() & 1 == 1).then(|| b.name()),
        routing_source_ip: None,
        floating: floating.clone(),
    };
    let settings = b.firewall();
    let d = Desired {
        firewall: Firewall::build(&settings),
        firewall_settings: std::sync::Arc::new(settings),
        isolation: netnode::control::isolate::spec(
            (0..b.count(3)).map(|i| format!("eth{i}")).collect(),
            (0..b.count(3))
                .map(|i| format!("198.18.{i}.1"))
                .collect(),
        ),
        ip_forward: b.byte() & 1 == 1,
        ipv6_forward: b.byte() & 1 == 1,
        garp_count: b.count(3) as u32,
        public_interface: input.public_interface.clone(),
        ruleset: Ruleset::build(&input),
        floating,
        bridges,
    };
    let mut o = Observed::default();
    for _ in 0..b.count(5) {
        let kind = match b.byte() % 3 {
            0 => LinkKind::Other,
            1 => LinkKind::Bridge { stp: b.byte() & 1 == 1, forward_delay: b.byte() as u32 },
            _ => LinkKind::Vlan { parent: Some(b.name()), id: 5 },
        };
        let name = b.name();
        // The kernel has one link per name.
        if o.link(&name).is_some() {
            continue;
        }
        o.links.push(Link {
            name,
            kind,
            master: (b.byte() & 1 == 1).then(|| b.name()),
            up: b.byte() & 1 == 1,
            mtu: 1500,
            mac: (b.byte() & 1 == 1).then(|| MacAddr([2, 0, 0, 0, 0, b.byte()])),
            owned: b.byte() & 1 == 1,
            accept_ra: Some(b.byte() % 3),
            ra_learned: b.byte() & 1 == 1,
        });
    }
    for _ in 0..b.count(6) {
        let cidr = if b.byte() & 3 == 0 { IpNetwork::V6(b.v6()) } else { IpNetwork::V4(b.v4()) };
        let link = b.name();
        let owned = b.byte() & 1 == 1;
        // Addresses live on links that exist, once each.
        if o.link(&link).is_some() && !o.addresses.iter().any(|a| a.link == link && a.cidr == cidr) {
            o.addresses.push(Address { link, cidr, owned });
        }
    }
    for _ in 0..b.count(2) {
        let r = Route {
            link: b.name(),
            destination: b.v4(),
            gateway: (b.byte() & 1 == 1).then(|| b.v4().ip()),
            metric: b.byte() as u32,
            protocol: b.byte() % 4,
        };
        if o.link(&r.link).is_some() && !o.routes.contains(&r) {
            o.routes.push(r);
        }
    }
    o.ip_forward = b.byte() & 1 == 1;
    o.ipv6_forward = b.byte() & 1 == 1;
    o.nft = match b.byte() % 3 {
        0 => None,
        1 => Some(d.ruleset.state()),
        _ => Some(NftState {
            marker: Some("x".into()),
            ..NftState::default()
        }),
    };
    // The firewall's tables as a pass with other settings left them (or none).
    if b.byte() & 1 == 1 {
        if let Some(f) = Firewall::build(&b.firewall()) {
            for t in f.tables() {
                o.tables.insert(t.table.to_string(), t.state());
            }
        }
    }
    o.bridge_nf = [None, Some(false), Some(true)][b.byte() as usize % 3];
    let p = plan(&d, &o);
    let after = simulate(&o, &p.ops);
    let again = plan(&d, &after);
    assert!(again.ops.is_empty(), "not converged:\nfirst {:#?}\nthen {:#?}", p.ops, again.ops);
    let gone = simulate(&after, &teardown(&d, &after).ops);
    assert!(gone.nft.is_none());
    assert!(gone.tables.is_empty());
    assert!(gone.links.iter().all(|l| !l.owned));
});
