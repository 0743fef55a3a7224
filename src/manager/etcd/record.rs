//! The JSON values under the keys, and what a node serves from them: the same [`Served`] the
//! SQLite database yields, so both backends become config sections through one piece of code.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::manager::export::{Binding, Instance, Served};
use crate::manager::network::NetworkRow;
use crate::manager::rules::{self, NetworkRequest};

/// `<prefix>/networks/<label>`: a network as the SQLite backend stores it, plus what address
/// allocation needs (the manager recomputes the free addresses from these and the allocated
/// address keys). Its `id` is the key's create revision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    /// The network.
    #[serde(flatten)]
    pub row: NetworkRow,
    /// Allocation is limited to this sub-range.
    #[serde(default)]
    pub fixed_cidr: Option<Ipv4Network>,
    /// Allocation starts here.
    #[serde(default)]
    pub allowed_start: Option<Ipv4Addr>,
    /// Allocation ends here.
    #[serde(default)]
    pub allowed_end: Option<Ipv4Addr>,
}

impl NetworkRecord {
    /// A network on `bridge` with the first address of `cidr` as gateway and DHCP server and
    /// everything else at its default (the simulation's, and the tests').
    pub fn simple(label: &str, cidr: Ipv4Network, bridge: &str) -> NetworkRecord {
        let nth = |i: u32| Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(i));
        NetworkRecord {
            row: NetworkRow {
                id: 0,
                uuid: label.into(),
                label: label.into(),
                cidr,
                cidr_v6: None,
                gateway: nth(1),
                gateway_v6: None,
                broadcast: cidr.broadcast(),
                dhcp_server: nth(1),
                dhcp_start: nth(2),
                bridge: bridge.into(),
                bridge_interface: None,
                vlan: None,
                vpn_public_port: None,
                vpn_private_address: None,
                dns1: None,
                dns2: None,
                mtu: None,
                enable_dhcp: true,
                share_address: true,
                multi_host: true,
                project_id: None,
            },
            fixed_cidr: None,
            allowed_start: None,
            allowed_end: None,
        }
    }

    /// The addresses a server may get, in order (the network's layout less its reserved
    /// addresses).
    pub fn allocatable(&self) -> Result<Vec<Ipv4Addr>, String> {
        let layout = rules::layout(&NetworkRequest {
            cidr: self.row.cidr,
            fixed_cidr: self.fixed_cidr,
            gateway: Some(self.row.gateway),
            dhcp_server: Some(self.row.dhcp_server),
            vpn: self.row.vpn_private_address.is_some(),
            allowed_start: self.allowed_start,
            allowed_end: self.allowed_end,
        })?;
        Ok(layout
            .rows
            .into_iter()
            .filter(|(_, reserved)| !reserved)
            .map(|(a, _)| a)
            .collect())
    }
}

/// The server a port belongs to, as the metadata service shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceRecord {
    /// UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Hostname.
    pub hostname: String,
    /// Project.
    pub project_id: String,
    /// Every MAC of the server, the first interface first.
    pub macs: Vec<String>,
    /// Security groups (recorded; the etcd backend keeps no rules).
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// `<prefix>/hosts/<host>/ports/<vif>`: one interface of a server on that host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortRecord {
    /// The network's label.
    pub network: String,
    /// The MAC.
    pub mac: String,
    /// The fixed IP.
    pub address: Ipv4Addr,
    /// Its place on the server (0: the first interface).
    pub position: i64,
    /// The server.
    pub instance: InstanceRecord,
    /// Floating IPs associated with this address (at most one: the outgoing SNAT has one
    /// source), served by this host's NAT.
    #[serde(default)]
    pub floating: Vec<PortFloating>,
    /// When it was written (unix nanoseconds; the scale simulation measures propagation
    /// with it).
    #[serde(default)]
    pub written_ns: u64,
}

/// A floating IP as the port it leads to carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortFloating {
    /// The public address.
    pub address: Ipv4Addr,
    /// The interface it lives on (none: the public interface).
    #[serde(default)]
    pub interface: Option<String>,
}

/// `<prefix>/floating/<ip>`: one floating IP of a pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FloatingRecord {
    /// Its pool.
    pub pool: String,
    /// The interface it lives on (none: the public interface).
    #[serde(default)]
    pub interface: Option<String>,
    /// The project it is allocated to.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Allocated by `auto_assign_floating_ip` (released with its server).
    #[serde(default)]
    pub auto_assigned: bool,
    /// What it leads to, when associated.
    #[serde(default)]
    pub target: Option<FloatingTarget>,
}

/// The fixed IP a floating IP leads to, and the port that has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FloatingTarget {
    /// The fixed IP.
    pub fixed: Ipv4Addr,
    /// The server's name.
    pub server: String,
    /// The port's host.
    pub host: String,
    /// The port's VIF.
    pub vif: String,
}

/// `<prefix>/servers/<name>`: a server, for `server list/show/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerRecord {
    /// The host it runs on.
    pub host: String,
    /// Its ports' keys' last segments (VIF UUIDs), the first interface first.
    pub vifs: Vec<String>,
    /// The server (the same record each port carries).
    pub instance: InstanceRecord,
    /// Its fixed IPs: (network label, address).
    pub addresses: Vec<(String, Ipv4Addr)>,
}

/// `<prefix>/nodes/<host>`: a live node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its host name.
    pub host: String,
    /// netnode's version.
    pub version: String,
    /// Its process.
    pub pid: u32,
    /// When it started (unix seconds).
    pub started: u64,
}

/// One key as listed or watched: its value and create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value (shared: a published view is a copy of pointers, not of values).
    pub value: bytes::Bytes,
    /// The revision that created the key (ids are taken from it).
    pub create_revision: i64,
}

/// What one node serves: every network, and the ports of its host. Values that do not parse,
/// and ports of unknown networks, are left out with a reason (the rest is served).
pub fn served(
    networks: &BTreeMap<String, Stored>,
    ports: &BTreeMap<String, Stored>,
    revision: i64,
) -> (Served, Vec<String>) {
    let mut problems = Vec::new();
    let mut nets: Vec<(NetworkRow, Vec<Binding>)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (key, s) in networks {
        match serde_json::from_slice::<NetworkRecord>(&s.value) {
            Ok(r) => {
                let mut row = r.row;
                row.id = s.create_revision;
                index.insert(row.label.clone(), nets.len());
                nets.push((row, Vec::new()));
            }
            Err(e) => problems.push(format!("{key}: {e}")),
        }
    }
    let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
    let mut floating = Vec::new();
    for (key, s) in ports {
        let p = match serde_json::from_slice::<PortRecord>(&s.value) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                continue;
            }
        };
        let Some(&n) = index.get(&p.network) else {
            problems.push(format!("{key}: no network {:?}", p.network));
            continue;
        };
        if let Some((_, bindings)) = nets.get_mut(n) {
            bindings.push(Binding {
                mac: p.mac.clone(),
                address: p.address,
                hostname: p.instance.hostname.clone(),
                vif_id: s.create_revision,
                position: p.position,
            });
        }
        floating.extend(
            p.floating
                .iter()
                .map(|f| (f.address, p.address, f.interface.clone())),
        );
        let i = &p.instance;
        let entry = instances.entry(i.uuid.clone()).or_insert_with(|| Instance {
            id: s.create_revision,
            uuid: i.uuid.clone(),
            name: i.name.clone(),
            hostname: i.hostname.clone(),
            project_id: i.project_id.clone(),
            macs: i.macs.clone(),
            floating_ips: Vec::new(),
            security_groups: i.security_groups.clone(),
        });
        entry
            .floating_ips
            .extend(p.floating.iter().map(|f| f.address));
    }
    for (_, bindings) in &mut nets {
        bindings.sort_by_key(|b| b.address);
    }
    let served = Served {
        generation: u64::try_from(revision).unwrap_or(0),
        networks: nets,
        instances: instances.into_values().collect(),
        floating,
        security_groups: Vec::new(),
    };
    (served, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(label: &str, cidr: &str) -> Vec<u8> {
        let cidr: Ipv4Network = cidr.parse().unwrap();
        let mut r = NetworkRecord::simple(label, cidr, "br100");
        r.allowed_end = Some(Ipv4Addr::from(u32::from(cidr.network()) + 5));
        serde_json::to_vec(&r).unwrap()
    }

    fn port(network: &str, mac: &str, address: &str, uuid: &str) -> Vec<u8> {
        serde_json::to_vec(&PortRecord {
            network: network.into(),
            mac: mac.into(),
            address: address.parse().unwrap(),
            position: 0,
            instance: InstanceRecord {
                uuid: uuid.into(),
                name: uuid.into(),
                hostname: uuid.into(),
                project_id: "p".into(),
                macs: vec![mac.into()],
                security_groups: Vec::new(),
            },
            floating: vec![PortFloating {
                address: "198.19.0.9".parse().unwrap(),
                interface: None,
            }],
            written_ns: 1,
        })
        .unwrap()
    }

    fn stored(value: Vec<u8>, rev: i64) -> Stored {
        Stored {
            value: value.into(),
            create_revision: rev,
        }
    }

    #[test]
    fn a_node_serves_its_ports_on_known_networks_and_says_what_it_left_out() {
        let networks = BTreeMap::from([(
            "/n/networks/a".to_string(),
            stored(network("a", "198.18.0.0/24"), 3),
        )]);
        let ports = BTreeMap::from([
            (
                "/n/hosts/h/ports/1".to_string(),
                stored(port("a", "fa:16:3e:00:00:01", "198.18.0.5", "i1"), 7),
            ),
            (
                "/n/hosts/h/ports/2".to_string(),
                stored(port("b", "fa:16:3e:00:00:02", "198.18.1.5", "i2"), 8),
            ),
            (
                "/n/hosts/h/ports/3".to_string(),
                stored(b"{not json".to_vec(), 9),
            ),
        ]);
        let (served, problems) = served(&networks, &ports, 12);
        assert_eq!(served.generation, 12);
        assert_eq!(served.networks.len(), 1);
        assert_eq!(
            served.networks[0].0.id, 3,
            "a network's id is its create revision"
        );
        assert_eq!(served.networks[0].1.len(), 1);
        assert_eq!(served.networks[0].1[0].vif_id, 7);
        assert_eq!(served.instances.len(), 1);
        assert_eq!(served.instances[0].id, 7);
        assert_eq!(served.instances[0].floating_ips.len(), 1);
        assert_eq!(served.floating.len(), 1);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("no network \"b\"")));
    }

    #[test]
    fn the_allocatable_addresses_follow_the_layout() {
        let r: NetworkRecord = serde_json::from_slice(&network("a", "198.18.0.0/29")).unwrap();
        // .0 network, .1 gateway and DHCP server, .7 broadcast; allowed_end .5.
        let a = r.allocatable().unwrap();
        assert_eq!(
            a,
            ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"]
                .map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
    }
}
