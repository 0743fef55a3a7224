//! What the manager's database serves: the config sections the daemon builds its table from
//! (networks with their bindings and options, instance records, floating IPs), and the same
//! state in nova's dnsmasq files (`netnode export nova`), so a real dnsmasq can serve it too.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::network::NetworkRow;
use super::{from_db, Manager, Result};
use crate::table::config::{HostConfig, InstanceConfig, ManagerKind, NetworkConfig};
use crate::table::control::FloatingConfig;
use crate::table::firewall::SecurityGroupConfig;

/// The tag of every interface but a server's first when `use_single_default_gateway` is on:
/// one option line (`tag:...,3`, "send no router") serves all of them.
pub const NO_DEFAULT_ROUTE_TAG: &str = "netnode-no-default-route";

/// A network's allocated fixed IPs, read at every reload (an index lookup: see the query-plan
/// test in `manager::scenarios`).
pub(super) const BINDINGS_SQL: &str = "SELECT v.mac, f.address, i.hostname, v.id, v.position \
     FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id JOIN instances i ON i.id = f.instance_id \
     WHERE f.network_id = ? AND f.instance_id IS NOT NULL ORDER BY f.address";

/// The associated floating IPs, read at every reload: through the index of the associated
/// ones, never the whole pool (a pool may hold half a million addresses).
pub(super) const FLOATING_SQL: &str = "SELECT f.address, f.fixed_address, f.interface, \
     x.instance_id FROM floating_ips f INDEXED BY floating_ips_associated \
     JOIN fixed_ips x ON x.address = f.fixed_address WHERE f.fixed_address IS NOT NULL";

/// One allocated fixed IP with what serving it needs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Binding {
    /// The interface's MAC.
    pub mac: String,
    /// The address.
    pub address: Ipv4Addr,
    /// The server's hostname.
    pub hostname: String,
    /// nova's virtual interface id.
    pub vif_id: i64,
    /// The interface's place on its server (0: the first).
    pub position: i64,
}

/// One server's record for the metadata service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Instance {
    /// nova's integer id.
    pub id: i64,
    /// UUID.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Hostname.
    pub hostname: String,
    /// Project.
    pub project_id: String,
    /// MACs, first interface first.
    pub macs: Vec<String>,
    /// Associated floating IPs.
    pub floating_ips: Vec<Ipv4Addr>,
    /// Security groups.
    pub security_groups: Vec<String>,
}

/// Everything the daemon serves from the database, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The `generation` it was read at.
    pub generation: u64,
    /// Networks with their allocated fixed IPs.
    pub networks: Vec<(NetworkRow, Vec<Binding>)>,
    /// Servers.
    pub instances: Vec<Instance>,
    /// Associated floating IPs: (floating, fixed, interface).
    pub floating: Vec<(Ipv4Addr, Ipv4Addr, Option<String>)>,
    /// Security groups with their rules.
    pub security_groups: Vec<SecurityGroupConfig>,
}

impl Manager {
    /// Reads the served state in one consistent snapshot.
    pub fn served(&mut self) -> Result<Served> {
        self.read(|tx| {
            let generation = super::generation(tx)?;
            let mut networks = Vec::new();
            let mut st = tx.prepare_cached(BINDINGS_SQL)?;
            for n in super::network::all(tx)? {
                let bindings = st
                    .query_map([n.id], |r| {
                        Ok(Binding {
                            mac: r.get(0)?,
                            address: from_db(r.get(1)?),
                            hostname: r.get(2)?,
                            vif_id: r.get(3)?,
                            position: r.get(4)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                networks.push((n, bindings));
            }
            let mut instances: Vec<Instance> = tx
                .prepare_cached(
                    "SELECT id, uuid, name, hostname, project_id FROM instances ORDER BY id",
                )?
                .query_map([], |r| {
                    Ok(Instance {
                        id: r.get(0)?,
                        uuid: r.get(1)?,
                        name: r.get(2)?,
                        hostname: r.get(3)?,
                        project_id: r.get(4)?,
                        macs: Vec::new(),
                        floating_ips: Vec::new(),
                        security_groups: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let index: std::collections::HashMap<i64, usize> = instances
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id, i))
                .collect();
            let mut st = tx.prepare_cached(
                "SELECT instance_id, mac FROM vifs ORDER BY instance_id, position",
            )?;
            for r in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                let (id, mac) = r?;
                if let Some(i) = index.get(&id).and_then(|&i| instances.get_mut(i)) {
                    i.macs.push(mac);
                }
            }
            let mut floating = Vec::new();
            let mut st = tx.prepare_cached(FLOATING_SQL)?;
            let mut rows = st
                .query_map([], |r| {
                    Ok((
                        from_db(r.get(0)?),
                        from_db(r.get(1)?),
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // In address order, sorted here: an ORDER BY would walk the whole pool instead.
            rows.sort_unstable_by_key(|r| r.0);
            for (a, fixed, interface, instance) in rows {
                if let Some(i) = instance
                    .and_then(|id| index.get(&id))
                    .and_then(|&i| instances.get_mut(i))
                {
                    i.floating_ips.push(a);
                }
                floating.push((a, fixed, interface));
            }
            for (id, name) in super::secgroup::memberships(tx)? {
                if let Some(i) = index.get(&id).and_then(|&i| instances.get_mut(i)) {
                    i.security_groups.push(name);
                }
            }
            Ok(Served {
                generation,
                networks,
                instances,
                floating,
                security_groups: super::secgroup::configs(tx)?,
            })
        })
    }
}

impl Served {
    /// The networks as config sections: bindings with hostnames (none for the flat kind or a
    /// network without DHCP), the DHCP server's address, the domain, DNS servers and MTU, the
    /// uplink the control module plumbs, and the no-default-route option of multinic.
    pub fn network_configs(&self, settings: &super::Settings) -> Vec<NetworkConfig> {
        let single_gateway = settings.use_single_default_gateway;
        let dhcp = settings.kind != ManagerKind::Flat;
        self.networks
            .iter()
            .map(|(n, bindings)| {
                let (vlan, vlan_interface, bridge_interface) =
                    settings.uplink(n.vlan, n.bridge_interface.as_deref());
                let host = if dhcp && n.enable_dhcp {
                    bindings
                        .iter()
                        .map(|b| HostConfig {
                            mac: b.mac.clone(),
                            ip: b.address,
                            hostname: Some(b.hostname.clone()),
                            lease_time: None,
                            client_id: None,
                            tags: if single_gateway && b.position > 0 {
                                vec![NO_DEFAULT_ROUTE_TAG.into()]
                            } else {
                                Vec::new()
                            },
                            ignore: false,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                NetworkConfig {
                    name: n.label.clone(),
                    bridge: n.bridge.clone(),
                    cidr: n.cidr.to_string(),
                    gateway: Some(n.gateway),
                    server_address: Some(n.dhcp_server),
                    domain: Some(settings.dhcp_domain.clone()).filter(|d| !d.is_empty()),
                    dns_servers: n.dns1.into_iter().chain(n.dns2).collect(),
                    mtu: n.mtu,
                    options: if single_gateway {
                        vec![format!("tag:{NO_DEFAULT_ROUTE_TAG},3")]
                    } else {
                        Vec::new()
                    },
                    host,
                    cidr_v6: n.cidr_v6.map(|p| p.to_string()),
                    gateway_v6: n.gateway_v6,
                    ra: settings.ra.clone(),
                    bridge_interface,
                    vlan,
                    vlan_interface,
                    share_dhcp_address: n.share_address && n.multi_host,
                    ..NetworkConfig::default()
                }
            })
            .collect()
    }

    /// The servers as instance records for the metadata service.
    pub fn instance_configs(&self) -> Vec<InstanceConfig> {
        self.instances
            .iter()
            .map(|i| InstanceConfig {
                uuid: i.uuid.clone(),
                name: i.name.clone(),
                hostname: Some(i.hostname.clone()),
                mac: i.macs.first().cloned(),
                macs: i.macs.iter().skip(1).cloned().collect(),
                project_id: Some(i.project_id.clone()),
                floating_ips: i.floating_ips.clone(),
                security_groups: Some(i.security_groups.clone()),
                ports: i
                    .macs
                    .iter()
                    .map(|m| super::rules::port_device(m))
                    .collect(),
                id: u32::try_from(i.id).ok(),
                ..InstanceConfig::default()
            })
            .collect()
    }

    /// The associated floating IPs for the control module.
    pub fn floating_configs(&self) -> Vec<FloatingConfig> {
        self.floating
            .iter()
            .map(|(address, fixed, interface)| FloatingConfig {
                address: *address,
                fixed: *fixed,
                interface: interface.clone(),
            })
            .collect()
    }

    /// nova's dnsmasq files for one network: the hosts file (`<mac>,<host>.<domain>,<ip>`,
    /// with `,net:NW-<vif>` under `use_single_default_gateway`; no trailing newline), the
    /// opts file and the addn-hosts file.
    pub fn nova_files(&self, label: &str, settings: &super::Settings) -> Option<NovaFiles> {
        // `label` is the network's label (the CLI resolves a UUID, id or range to it).
        let (n, bindings) = self.networks.iter().find(|(n, _)| n.label == label)?;
        let single = settings.use_single_default_gateway;
        let domain = &settings.dhcp_domain;
        let name = |h: &str| {
            let h = if h.len() > 63 {
                // nova's shortening: the first two characters, a dash, the last sixty.
                let head: String = h.chars().take(2).collect();
                let tail: String = h
                    .chars()
                    .rev()
                    .take(60)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{head}-{tail}")
            } else {
                h.to_string()
            };
            format!("{h}.{domain}")
        };
        let hosts: Vec<String> = bindings
            .iter()
            .map(|b| {
                let mut line = format!("{},{},{}", b.mac, name(&b.hostname), b.address);
                if single {
                    let _ = write!(line, ",net:NW-{}", b.vif_id);
                }
                line
            })
            .collect();
        let opts = if single {
            bindings
                .iter()
                .map(|b| {
                    if b.position == 0 {
                        format!("NW-{},3,{}", b.vif_id, n.gateway)
                    } else {
                        format!("NW-{},3", b.vif_id)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            format!("3,{}", n.gateway)
        };
        let addn_hosts = bindings
            .iter()
            .map(|b| format!("{}\t{}\n", b.address, name(&b.hostname)))
            .collect();
        Some(NovaFiles {
            hosts: hosts.join("\n"),
            opts,
            addn_hosts,
            network: n.clone(),
        })
    }
}

/// One network's dnsmasq files, as nova wrote them.
#[derive(Debug, Clone)]
pub struct NovaFiles {
    /// `--dhcp-hostsfile`.
    pub hosts: String,
    /// `--dhcp-optsfile`.
    pub opts: String,
    /// `--addn-hosts`.
    pub addn_hosts: String,
    /// The network (for the command line nova would give dnsmasq).
    pub network: NetworkRow,
}
