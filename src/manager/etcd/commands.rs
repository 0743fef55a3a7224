//! The manager's commands against etcd. Every change is one transaction guarded by compares
//! on what it read (optimistic concurrency): an address key is created only if it does not
//! exist, so two managers never hand out one address; a loser reads again and retries.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnetwork::Ipv6Network;
use serde::Serialize;

use super::keys::{self, Layout};
use super::record::{InstanceRecord, NetworkRecord, NodeRecord, PortRecord, ServerRecord};
use super::{EtcdSettings, REQUEST_TIMEOUT};
use crate::manager::network::{CreateNetwork, NetworkFlags, NetworkRow};
use crate::manager::rules::{self, NetworkRequest};
use crate::manager::server::{Deleted, Nic, ServerCreate, ServerRow};
use crate::manager::{ManagerError, Result, Settings};
use crate::table::config::ManagerKind;

/// How often a change is tried again after another manager's change got in first.
const ATTEMPTS: usize = 16;
/// Most servers one `server create --count` makes against etcd (one transaction each).
pub const MAX_COUNT: u32 = 1_000;

/// One listed key: (key, value, mod revision, create revision).
pub type Listed = (String, Vec<u8>, i64, i64);

/// A live node as `netnode nodes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeRow {
    /// Its host.
    pub host: String,
    /// netnode's version.
    pub version: String,
    /// Its pid.
    pub pid: u32,
    /// When it started (unix seconds).
    pub started: u64,
    /// Seconds left on its lease (it is gone when this runs out without a keep-alive).
    pub ttl: i64,
    /// Ports on its host.
    pub ports: i64,
}

/// The manager's commands on one etcd client.
pub struct EtcdManager {
    pub(super) client: Client,
    pub(super) settings: Settings,
    pub(super) layout: Layout,
    pub(super) endpoints: String,
}

fn etcd(endpoints: &str) -> impl Fn(etcd_client::Error) -> ManagerError + '_ {
    move |e| ManagerError::Etcd(format!("etcd ({endpoints}): {e}"))
}

/// Runs one request with the request timeout.
pub(super) async fn timed<T>(
    endpoints: &str,
    f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(etcd(endpoints)),
        Err(_) => Err(ManagerError::Etcd(format!(
            "etcd ({endpoints}): no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

pub(super) fn invalid(e: String) -> ManagerError {
    ManagerError::Invalid(e)
}

impl EtcdManager {
    /// Connects with the settings' `[etcd]`.
    pub async fn connect(settings: Settings, etcd: &EtcdSettings) -> Result<EtcdManager> {
        let client = tokio::time::timeout(super::CONNECT_TIMEOUT * 2, etcd.connect())
            .await
            .map_err(|_| {
                ManagerError::Etcd(format!(
                    "etcd ({}): not reachable within {} s",
                    etcd.endpoints.join(","),
                    (super::CONNECT_TIMEOUT * 2).as_secs()
                ))
            })?
            .map_err(|e| ManagerError::Etcd(e.to_string()))?;
        Ok(EtcdManager {
            client,
            settings,
            layout: etcd.layout.clone(),
            endpoints: etcd.endpoints.join(","),
        })
    }

    /// Every key under `prefix` with its value and mod revision, and the revision read at.
    pub(super) async fn list(&mut self, prefix: &str) -> Result<(i64, Vec<Listed>)> {
        let mut r = timed(
            &self.endpoints,
            self.client
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = r.header().map_or(0, |h| h.revision());
        let kvs = r
            .take_kvs()
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                    kv.mod_revision(),
                    kv.create_revision(),
                )
            })
            .collect();
        Ok((revision, kvs))
    }

    /// Every network (each `row.id` its key's create revision: compares use it) and the
    /// revision read at.
    pub(super) async fn networks(&mut self) -> Result<(i64, Vec<NetworkRecord>)> {
        let (rev, kvs) = self.list(&self.layout.networks()).await?;
        let mut out = Vec::new();
        for (key, value, _, created) in kvs {
            let mut r: NetworkRecord = serde_json::from_slice(&value)
                .map_err(|e| ManagerError::Etcd(format!("{key}: {e}")))?;
            r.row.id = created;
            out.push(r);
        }
        Ok((rev, out))
    }

    /// A key's create revision (0: none).
    pub(super) async fn created(&mut self, key: &str) -> Result<i64> {
        let r = timed(&self.endpoints, self.client.get(key, None)).await?;
        Ok(r.kvs().first().map_or(0, |kv| kv.create_revision()))
    }

    pub(super) async fn commit(&mut self, txn: Txn) -> Result<bool> {
        Ok(timed(&self.endpoints, self.client.txn(txn))
            .await?
            .succeeded())
    }

    /// `network-create` against etcd: one network per command.
    pub async fn network_create(&mut self, req: &CreateNetwork) -> Result<Vec<NetworkRow>> {
        // Every host serves its instances (multi_host) with the network's own address (nova's
        // share_dhcp_address): the isolation rules keep each host's DHCP on its own side.
        let NetworkFlags {
            label,
            range: cidr,
            fixed_cidr,
            v6_range: v6,
            enable_dhcp,
            multi_host,
        } = req.flags(true)?;
        let share_address = req.share_address(true)?;
        keys::segment("label", &label).map_err(invalid)?;
        for (flag, given) in [
            ("--num-networks", req.num_networks.is_some_and(|n| n > 1)),
            ("--vlan-start", req.vlan_start.is_some()),
            ("--network-size", req.network_size.is_some()),
        ] {
            if given {
                return Err(invalid(format!(
                    "{flag}: not with [manager] backend = \"etcd\" (one network per command)"
                )));
            }
        }
        let vlan_kind = self.settings.kind == ManagerKind::Vlan;
        for _ in 0..ATTEMPTS {
            let (rev, existing) = self.networks().await?;
            let rows: Vec<&NetworkRow> = existing.iter().map(|r| &r.row).collect();
            if rows.iter().any(|n| n.label == label) {
                return Err(ManagerError::Refused(format!(
                    "network label {label:?} is taken"
                )));
            }
            if let Some(n) = rows
                .iter()
                .find(|n| n.cidr.contains(cidr.network()) || cidr.contains(n.cidr.network()))
            {
                return Err(ManagerError::Refused(format!(
                    "{cidr} overlaps network {:?} ({})",
                    n.label, n.cidr
                )));
            }
            let vlan = match req.vlan {
                Some(v) => Some(rules::vlan_id(v, 0).map_err(invalid)?),
                None if vlan_kind => {
                    let used: HashSet<u16> = rows.iter().filter_map(|n| n.vlan).collect();
                    let start = self.settings.vlan_start;
                    Some(
                        (start..=rules::MAX_VLAN as u16)
                            .find(|v| !used.contains(v))
                            .ok_or_else(|| ManagerError::Refused("no free VLAN id".into()))?,
                    )
                }
                None => None,
            };
            if let Some(v) = vlan.filter(|v| rows.iter().any(|n| n.vlan == Some(*v))) {
                return Err(ManagerError::Refused(format!("VLAN {v} is taken")));
            }
            let layout = rules::layout(&NetworkRequest {
                cidr,
                fixed_cidr,
                gateway: req.gateway,
                dhcp_server: req.dhcp_server,
                vpn: false,
                allowed_start: req.allowed_start,
                allowed_end: req.allowed_end,
            })
            .map_err(invalid)?;
            let cidr_v6 = match v6 {
                Some(r) => {
                    Some(Ipv6Network::new(r.network(), 64).map_err(|e| invalid(e.to_string()))?)
                }
                None if self.settings.use_ipv6 => {
                    Some(free_64(&rows, self.settings.fixed_range_v6)?)
                }
                None => None,
            };
            if let Some(p) = cidr_v6.filter(|p| rows.iter().any(|n| n.cidr_v6 == Some(*p))) {
                return Err(ManagerError::Refused(format!("{p} is taken")));
            }
            let gateway_v6 = req.gateway_v6_in(cidr_v6)?;
            let bridge = match (&req.bridge, vlan) {
                (Some(b), _) => b.clone(),
                (None, Some(v)) => format!("br{v}"),
                (None, None) => (100..)
                    .map(|i| format!("br{i}"))
                    .find(|b| !rows.iter().any(|n| &n.bridge == b))
                    .unwrap_or_else(|| "br100".into()),
            };
            crate::table::interface_name(&bridge).map_err(|e| invalid(format!("--bridge: {e}")))?;
            if let Some(n) = rows.iter().find(|n| n.bridge == bridge) {
                return Err(ManagerError::Refused(format!(
                    "bridge {bridge} is network {:?}'s",
                    n.label
                )));
            }
            let row = NetworkRow {
                id: 0,
                uuid: crate::manager::uuid4(),
                label: label.clone(),
                cidr,
                cidr_v6,
                gateway: layout.gateway,
                gateway_v6,
                broadcast: layout.broadcast,
                dhcp_server: layout.dhcp_server,
                dhcp_start: layout.dhcp_start,
                bridge,
                bridge_interface: req.bridge_interface.clone(),
                vlan,
                vpn_public_port: None,
                vpn_private_address: None,
                dns1: req.dns1,
                dns2: req.dns2,
                mtu: req.mtu,
                enable_dhcp,
                share_address,
                multi_host,
                project_id: req.project_id.clone(),
            };
            let record = NetworkRecord {
                row: row.clone(),
                fixed_cidr,
                allowed_start: req.allowed_start,
                allowed_end: req.allowed_end,
            };
            let key = self.layout.network(&label);
            let value = serde_json::to_vec(&record).unwrap_or_default();
            // No network changed since the list (a range or bridge check still holds).
            let txn = Txn::new()
                .when([
                    Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                    Compare::mod_revision(self.layout.networks(), CompareOp::Less, rev + 1)
                        .with_prefix(),
                ])
                .and_then([TxnOp::put(key.as_str(), value, None)]);
            if self.commit(txn).await? {
                let id = self.created(&key).await?;
                return Ok(vec![NetworkRow { id, ..row }]);
            }
        }
        Err(busy())
    }

    /// Every network.
    pub async fn network_list(&mut self) -> Result<Vec<NetworkRow>> {
        Ok(self
            .networks()
            .await?
            .1
            .into_iter()
            .map(|r| r.row)
            .collect())
    }

    /// One network, by label, UUID or range.
    pub async fn network_show(&mut self, key: &str) -> Result<NetworkRow> {
        Ok(self.find_network(key).await?.row)
    }

    pub(super) async fn find_network(&mut self, key: &str) -> Result<NetworkRecord> {
        self.networks()
            .await?
            .1
            .into_iter()
            .find(|r| r.row.label == key || r.row.uuid == key || r.row.cidr.to_string() == key)
            .ok_or_else(|| ManagerError::NotFound {
                what: "network",
                name: key.to_string(),
            })
    }

    /// `network-delete`: refused while a server has an address on it or a project holds it.
    pub async fn network_delete(&mut self, key: &str) -> Result<NetworkRow> {
        let n = self.find_network(key).await?.row;
        let created = n.id;
        if let Some(p) = &n.project_id {
            return Err(ManagerError::Refused(format!(
                "network {:?} is associated with project {p}; disassociate it first",
                n.label
            )));
        }
        let key = self.layout.network(&n.label);
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, created),
                // No address of it is allocated.
                Compare::create_revision(self.layout.addresses(&n.label), CompareOp::Equal, 0)
                    .with_prefix(),
            ])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        if self.commit(txn).await? {
            Ok(n)
        } else {
            Err(ManagerError::Refused(format!(
                "network {:?} has servers; delete them first",
                n.label
            )))
        }
    }

    /// `server create` against etcd: each server is one transaction creating its server key,
    /// its address keys (only if free) and its ports on `--host` (default: this node's host).
    pub async fn server_create(&mut self, req: &ServerCreate) -> Result<Vec<ServerRow>> {
        keys::segment("server name", &req.name).map_err(invalid)?;
        if req.project.trim().is_empty() {
            return Err(invalid("--project is required".into()));
        }
        if req.count > MAX_COUNT {
            return Err(invalid(format!(
                "--count: {} is over {MAX_COUNT} servers in one command (etcd backend)",
                req.count
            )));
        }
        let host = req.host.clone().unwrap_or_else(|| self.layout.host.clone());
        keys::segment("host", &host).map_err(invalid)?;
        let mut made = Vec::new();
        for name in req.names() {
            made.push(self.create_one(&name, &host, req).await?);
        }
        Ok(made)
    }

    async fn create_one(
        &mut self,
        name: &str,
        host: &str,
        req: &ServerCreate,
    ) -> Result<ServerRow> {
        let server_key = self.layout.server(name);
        for _ in 0..ATTEMPTS {
            if self.created(&server_key).await? != 0 {
                return Err(ManagerError::Refused(format!(
                    "server name {name:?} is taken"
                )));
            }
            let networks = self.networks_for(&req.project, &req.networks).await?;
            let uuid = crate::manager::uuid4();
            let hostname = crate::table::instance::sanitize_hostname(name);
            let mut nics = Vec::new();
            let mut compares = vec![Compare::create_revision(
                server_key.as_str(),
                CompareOp::Equal,
                0,
            )];
            for record in &networks {
                let (label, created) = (&record.row.label, record.row.id);
                let (_, taken) = self.list(&self.layout.addresses(label)).await?;
                let taken: HashSet<String> = taken.into_iter().map(|(k, _, _, _)| k).collect();
                let free: Vec<Ipv4Addr> = record
                    .allocatable()
                    .map_err(ManagerError::Refused)?
                    .into_iter()
                    .filter(|a| !taken.contains(&self.layout.address(label, *a)))
                    .collect();
                // A random free address: two managers racing rarely pick the same one, and
                // the compare below settles it when they do.
                let Some(&address) = free.get(fastrand::usize(..free.len().max(1))) else {
                    return Err(ManagerError::Refused(format!(
                        "network {label:?} has no free fixed IP"
                    )));
                };
                compares.push(Compare::create_revision(
                    self.layout.network(label),
                    CompareOp::Equal,
                    created,
                ));
                compares.push(Compare::create_revision(
                    self.layout.address(label, address),
                    CompareOp::Equal,
                    0,
                ));
                let mac = rules::mac([fastrand::u8(..), fastrand::u8(..), fastrand::u8(..)]);
                nics.push((
                    label.clone(),
                    address,
                    mac.to_string(),
                    crate::manager::uuid4(),
                ));
            }
            let instance = InstanceRecord {
                uuid: uuid.clone(),
                name: name.to_string(),
                hostname: hostname.clone(),
                project_id: req.project.clone(),
                macs: nics.iter().map(|n| n.2.clone()).collect(),
                security_groups: req.security_groups.clone(),
            };
            let server = ServerRecord {
                host: host.to_string(),
                vifs: nics.iter().map(|n| n.3.clone()).collect(),
                instance: instance.clone(),
                addresses: nics.iter().map(|n| (n.0.clone(), n.1)).collect(),
            };
            let written_ns = crate::clock::unix_nanos();
            let mut ops = vec![TxnOp::put(
                server_key.as_str(),
                serde_json::to_vec(&server).unwrap_or_default(),
                None,
            )];
            // nova's auto_assign_floating_ip: one for the first interface, in the same
            // transaction (the server is refused when the pool is empty).
            let mut first_floating = Vec::new();
            if let (true, Some((_, address, _, vif))) =
                (self.settings.auto_assign_floating_ip, nics.first())
            {
                let target = super::record::FloatingTarget {
                    fixed: *address,
                    server: name.to_string(),
                    host: host.to_string(),
                    vif: vif.clone(),
                };
                let (compare, op, on_port) = self.auto_floating(&req.project, target).await?;
                compares.push(compare);
                ops.push(op);
                first_floating.push(on_port);
            }
            let floating_ips: Vec<Ipv4Addr> = first_floating.iter().map(|f| f.address).collect();
            for (position, (label, address, mac, vif)) in nics.iter().enumerate() {
                ops.push(TxnOp::put(
                    self.layout.address(label, *address),
                    format!("{host}/{vif}"),
                    None,
                ));
                let port = PortRecord {
                    network: label.clone(),
                    mac: mac.clone(),
                    address: *address,
                    position: position as i64,
                    instance: instance.clone(),
                    floating: std::mem::take(&mut first_floating),
                    written_ns,
                };
                ops.push(TxnOp::put(
                    self.layout.port(host, vif),
                    serde_json::to_vec(&port).unwrap_or_default(),
                    None,
                ));
            }
            let r = timed(
                &self.endpoints,
                self.client.txn(Txn::new().when(compares).and_then(ops)),
            )
            .await?;
            if r.succeeded() {
                let id = r.header().map_or(0, |h| h.revision());
                return Ok(ServerRow {
                    floating_ips,
                    ..server_row(id, &server)
                });
            }
        }
        Err(busy())
    }

    /// The networks a new server of the project gets: the named ones (by label or UUID),
    /// else the project's, else (flat kinds) every network no project holds.
    async fn networks_for(
        &mut self,
        project: &str,
        named: &[String],
    ) -> Result<Vec<NetworkRecord>> {
        let all = self.networks().await?.1;
        let own = |r: &NetworkRecord| r.row.project_id.as_deref().is_none_or(|p| p == project);
        if !named.is_empty() {
            let mut out: Vec<NetworkRecord> = Vec::new();
            for key in named {
                let Some(n) = all
                    .iter()
                    .find(|r| r.row.label == *key || r.row.uuid == *key)
                else {
                    return Err(ManagerError::NotFound {
                        what: "network",
                        name: key.clone(),
                    });
                };
                if !own(n) {
                    return Err(ManagerError::Refused(format!(
                        "network {key:?} belongs to another project"
                    )));
                }
                if out.iter().any(|r| r.row.label == n.row.label) {
                    return Err(invalid(format!(
                        "--network {key}: named twice (one interface per network)"
                    )));
                }
                out.push(n.clone());
            }
            return Ok(out);
        }
        let mine: Vec<_> = all
            .iter()
            .filter(|r| r.row.project_id.as_deref() == Some(project))
            .cloned()
            .collect();
        let out = match self.settings.kind {
            ManagerKind::Vlan => mine,
            ManagerKind::Flat | ManagerKind::Flatdhcp => {
                all.into_iter().filter(|r| own(r)).collect()
            }
        };
        if out.is_empty() {
            return Err(ManagerError::Refused(format!(
                "no network for project {project}; create one (netnode network-create)"
            )));
        }
        Ok(out)
    }

    pub(super) async fn find_server(
        &mut self,
        key: &str,
    ) -> Result<(String, ServerRecord, i64, i64)> {
        // By name: one key. By UUID: every server is read.
        let direct = self.layout.server(key);
        let r = timed(&self.endpoints, self.client.get(direct.as_str(), None)).await?;
        if let Some(kv) = r.kvs().first() {
            let s: ServerRecord = serde_json::from_slice(kv.value())
                .map_err(|e| ManagerError::Etcd(format!("{direct}: {e}")))?;
            return Ok((direct, s, kv.mod_revision(), kv.create_revision()));
        }
        let (_, kvs) = self.list(&self.layout.servers()).await?;
        for (k, value, modified, created) in kvs {
            let s: ServerRecord = serde_json::from_slice(&value)
                .map_err(|e| ManagerError::Etcd(format!("{k}: {e}")))?;
            if s.instance.uuid == key {
                return Ok((k, s, modified, created));
            }
        }
        Err(ManagerError::NotFound {
            what: "server",
            name: key.to_string(),
        })
    }

    /// `server delete`: its server key, ports and address keys go in one transaction (the
    /// host's node sees its ports deleted and ends their leases).
    pub async fn server_delete(&mut self, key: &str) -> Result<Deleted> {
        let (server_key, s, modified, created) = self.find_server(key).await?;
        let (mut compares, mut ops, released) = self.release_floating(&s.instance.name).await?;
        compares.push(Compare::mod_revision(
            server_key.as_str(),
            CompareOp::Equal,
            modified,
        ));
        ops.push(TxnOp::delete(server_key.as_str(), None));
        for vif in &s.vifs {
            ops.push(TxnOp::delete(self.layout.port(&s.host, vif), None));
        }
        for (label, address) in &s.addresses {
            ops.push(TxnOp::delete(self.layout.address(label, *address), None));
        }
        let txn = Txn::new().when(compares).and_then(ops);
        if !self.commit(txn).await? {
            return Err(busy());
        }
        Ok(Deleted {
            server: server_row(created, &s),
            released_floating: released,
        })
    }

    /// `server list`.
    pub async fn server_list(&mut self) -> Result<Vec<ServerRow>> {
        let (_, kvs) = self.list(&self.layout.servers()).await?;
        let floating = self.floating_list(None).await?;
        let mut out = Vec::new();
        for (k, value, _, id) in kvs {
            let s: ServerRecord = serde_json::from_slice(&value)
                .map_err(|e| ManagerError::Etcd(format!("{k}: {e}")))?;
            out.push(with_floating(server_row(id, &s), &floating));
        }
        Ok(out)
    }

    /// `server show`.
    pub async fn server_show(&mut self, key: &str) -> Result<ServerRow> {
        let (_, s, _, created) = self.find_server(key).await?;
        let floating = self.floating_list(None).await?;
        Ok(with_floating(server_row(created, &s), &floating))
    }

    /// `netnode nodes`: the live nodes, their leases' time left and their hosts' ports.
    pub async fn nodes(&mut self) -> Result<Vec<NodeRow>> {
        let r = timed(
            &self.endpoints,
            self.client
                .get(self.layout.nodes(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let Ok(n) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
                continue;
            };
            let ttl = if kv.lease() != 0 {
                timed(
                    &self.endpoints,
                    self.client.lease_time_to_live(kv.lease(), None),
                )
                .await?
                .ttl()
            } else {
                -1
            };
            let ports = timed(
                &self.endpoints,
                self.client.get(
                    self.layout.host_ports(&n.host),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            )
            .await?
            .count();
            out.push(NodeRow {
                host: n.host,
                version: n.version,
                pid: n.pid,
                started: n.started,
                ttl,
                ports,
            });
        }
        Ok(out)
    }
}

pub(super) fn busy() -> ManagerError {
    ManagerError::Refused(format!(
        "other managers changed the same keys {ATTEMPTS} times in a row; try again"
    ))
}

/// The floating IPs associated with the server's addresses.
fn with_floating(
    mut row: ServerRow,
    floating: &[crate::manager::floating::FloatingRow],
) -> ServerRow {
    row.floating_ips = floating
        .iter()
        .filter(|f| f.server.as_deref() == Some(row.name.as_str()))
        .map(|f| f.address)
        .collect();
    row
}

/// A server as `server list` shows it.
fn server_row(id: i64, s: &ServerRecord) -> ServerRow {
    ServerRow {
        id,
        uuid: s.instance.uuid.clone(),
        name: s.instance.name.clone(),
        hostname: s.instance.hostname.clone(),
        project_id: s.instance.project_id.clone(),
        addresses: s
            .addresses
            .iter()
            .zip(&s.instance.macs)
            .map(|((network, address), mac)| Nic {
                network: network.clone(),
                address: *address,
                mac: mac.clone(),
                vif_id: id,
                port: rules::port_device(mac),
            })
            .collect(),
        floating_ips: Vec::new(),
        security_groups: s.instance.security_groups.clone(),
    }
}

/// The first /64 of `range` no network has.
fn free_64(rows: &[&NetworkRow], range: Ipv6Network) -> Result<Ipv6Network> {
    let used: BTreeMap<u128, ()> = rows
        .iter()
        .filter_map(|n| n.cidr_v6)
        .map(|p| (u128::from(p.network()), ()))
        .collect();
    let base = u128::from(range.network());
    let count = 1u128 << (64 - u32::from(range.prefix().min(64)));
    (0..count.min(1 << 20))
        .map(|i| base + (i << 64))
        .find(|a| !used.contains_key(a))
        .and_then(|a| Ipv6Network::new(Ipv6Addr::from(a), 64).ok())
        .ok_or_else(|| ManagerError::Refused(format!("no free /64 in {range}")))
}
