//! The etcd backend's floating IPs (`<prefix>/floating/<ip>`), fixed-IP reservations (an
//! address key whose value is `reserved`) and project association of networks. Every change
//! is one transaction that compares the mod revisions of what it read; a floating IP that is
//! associated is also written into the port it leads to, so the host serving that port (and no
//! other) gets its NAT.

use std::net::Ipv4Addr;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::commands::{busy, invalid, timed, EtcdManager};
use super::record::{FloatingRecord, FloatingTarget, NetworkRecord, PortFloating, PortRecord};
use crate::manager::fixed::FixedRow;
use crate::manager::floating::FloatingRow;
use crate::manager::network::NetworkRow;
use crate::manager::{rules, ManagerError, Result};

/// The value of a reserved address's key.
pub const RESERVED: &str = "reserved";
/// Keys per transaction when a range is created or deleted (etcd's default limit is 128).
const BATCH: usize = 100;
/// How often a change is tried again after another manager's got in first.
const ATTEMPTS: usize = 16;

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| ManagerError::Etcd(format!("{key}: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn row(address: Ipv4Addr, r: &FloatingRecord) -> FloatingRow {
    FloatingRow {
        address,
        pool: r.pool.clone(),
        interface: r.interface.clone(),
        project_id: r.project_id.clone(),
        fixed_ip: r.target.as_ref().map(|t| t.fixed),
        server: r.target.as_ref().map(|t| t.server.clone()),
        auto_assigned: r.auto_assigned,
    }
}

impl EtcdManager {
    /// Every floating IP with its record and mod revision, by address.
    async fn floatings(&mut self) -> Result<Vec<(Ipv4Addr, FloatingRecord, i64)>> {
        let (_, kvs) = self.list(&self.layout.floatings()).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for (key, value, modified, _) in kvs {
            let Some(a) = key.rsplit('/').next().and_then(|a| a.parse().ok()) else {
                continue;
            };
            out.push((a, parse(&key, &value)?, modified));
        }
        out.sort_by_key(|(a, _, _)| *a);
        Ok(out)
    }

    /// One floating IP and its mod revision.
    async fn floating(&mut self, address: Ipv4Addr) -> Result<(FloatingRecord, i64)> {
        let key = self.layout.floating(address);
        let r = timed(&self.endpoints, self.client.get(key.as_str(), None)).await?;
        let kv = r.kvs().first().ok_or_else(|| ManagerError::NotFound {
            what: "floating IP",
            name: address.to_string(),
        })?;
        Ok((parse(&key, kv.value())?, kv.mod_revision()))
    }

    /// A port and its mod revision (none: gone).
    async fn port(&mut self, host: &str, vif: &str) -> Result<Option<(PortRecord, i64)>> {
        let key = self.layout.port(host, vif);
        let r = timed(&self.endpoints, self.client.get(key.as_str(), None)).await?;
        match r.kvs().first() {
            Some(kv) => Ok(Some((parse(&key, kv.value())?, kv.mod_revision()))),
            None => Ok(None),
        }
    }

    /// `floating create`: the range's addresses join the pool, a hundred per transaction,
    /// each only if it is not floating already.
    pub async fn floating_create(
        &mut self,
        pool: Option<&str>,
        range: &str,
        interface: Option<&str>,
    ) -> Result<usize> {
        let addresses = crate::manager::floating::create_request(&self.settings, range, interface)?;
        let (_, networks) = self.networks().await?;
        if let Some(n) = networks
            .iter()
            .find(|n| addresses.iter().any(|a| n.row.cidr.contains(*a)))
        {
            return Err(ManagerError::Refused(format!(
                "--ip_range: {range} overlaps network {:?} ({})",
                n.row.label, n.row.cidr
            )));
        }
        let pool = pool
            .unwrap_or(&self.settings.default_floating_pool)
            .to_string();
        let record = FloatingRecord {
            pool,
            interface: interface.map(String::from),
            ..FloatingRecord::default()
        };
        let value = json(&record);
        let mut made = 0;
        for batch in addresses.chunks(BATCH) {
            let keys: Vec<String> = batch.iter().map(|a| self.layout.floating(*a)).collect();
            let txn = Txn::new()
                .when(
                    keys.iter()
                        .map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    keys.iter()
                        .map(|k| TxnOp::put(k.as_str(), value.clone(), None))
                        .collect::<Vec<_>>(),
                );
            if !self.commit(txn).await? {
                let mut taken = None;
                for a in batch {
                    if self.floating(*a).await.is_ok() {
                        taken = Some(*a);
                        break;
                    }
                }
                return Err(ManagerError::Refused(format!(
                    "{} is already a floating IP{}",
                    taken.map_or_else(|| "an address of the range".into(), |a| a.to_string()),
                    if made > 0 {
                        format!(" ({made} addresses before it were added)")
                    } else {
                        String::new()
                    }
                )));
            }
            made += batch.len();
        }
        Ok(made)
    }

    /// `floating list [--pool P]`.
    pub async fn floating_list(&mut self, pool: Option<&str>) -> Result<Vec<FloatingRow>> {
        Ok(self
            .floatings()
            .await?
            .iter()
            .filter(|(_, r, _)| pool.is_none_or(|p| r.pool == p))
            .map(|(a, r, _)| row(*a, r))
            .collect())
    }

    /// `floating delete R`: refused while one of the range's floating IPs is associated.
    pub async fn floating_delete(&mut self, range: &str) -> Result<usize> {
        let addresses = rules::floating_range(range).map_err(invalid)?;
        let (lo, hi) = match (addresses.first(), addresses.last()) {
            (Some(lo), Some(hi)) => (*lo, *hi),
            _ => return Ok(0),
        };
        let found: Vec<_> = self
            .floatings()
            .await?
            .into_iter()
            .filter(|(a, _, _)| *a >= lo && *a <= hi)
            .collect();
        if let Some((a, _, _)) = found.iter().find(|(_, r, _)| r.target.is_some()) {
            return Err(ManagerError::Refused(format!(
                "floating IP {a} is associated; disassociate it first"
            )));
        }
        if found.is_empty() {
            return Err(ManagerError::NotFound {
                what: "floating IP in",
                name: range.to_string(),
            });
        }
        for batch in found.chunks(BATCH) {
            let keys: Vec<String> = batch
                .iter()
                .map(|(a, _, _)| self.layout.floating(*a))
                .collect();
            let txn = Txn::new()
                .when(
                    keys.iter()
                        .zip(batch)
                        .map(|(k, (_, _, m))| {
                            Compare::mod_revision(k.as_str(), CompareOp::Equal, *m)
                        })
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    keys.iter()
                        .map(|k| TxnOp::delete(k.as_str(), None))
                        .collect::<Vec<_>>(),
                );
            if !self.commit(txn).await? {
                return Err(busy());
            }
        }
        Ok(found.len())
    }

    /// Takes a free floating IP of the pool for the project (a random one: two managers rarely
    /// pick the same, and the compare settles it when they do). Returns it with its key's mod
    /// revision and record, not yet written.
    async fn free_floating(&mut self, pool: &str) -> Result<(Ipv4Addr, FloatingRecord, i64)> {
        let free: Vec<_> = self
            .floatings()
            .await?
            .into_iter()
            .filter(|(_, r, _)| r.pool == pool && r.project_id.is_none())
            .collect();
        if free.is_empty() {
            return Err(ManagerError::Refused(format!(
                "floating IP pool {pool:?} has no free address"
            )));
        }
        let i = fastrand::usize(..free.len());
        Ok(free
            .into_iter()
            .nth(i)
            .unwrap_or_else(|| unreachable!("i < len")))
    }

    /// `floating allocate --pool P --project ID`.
    pub async fn floating_allocate(
        &mut self,
        pool: Option<&str>,
        project: &str,
    ) -> Result<FloatingRow> {
        let pool = pool
            .unwrap_or(&self.settings.default_floating_pool)
            .to_string();
        for _ in 0..ATTEMPTS {
            let (a, mut r, modified) = self.free_floating(&pool).await?;
            r.project_id = Some(project.to_string());
            let key = self.layout.floating(a);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    modified,
                )])
                .and_then([TxnOp::put(key.as_str(), json(&r), None)]);
            if self.commit(txn).await? {
                return Ok(row(a, &r));
            }
        }
        Err(busy())
    }

    /// `floating associate IP --server NAME [--fixed-address A]`: the floating IP leads to the
    /// server's first fixed IP (or the one named); its port carries it to its host.
    pub async fn floating_associate(
        &mut self,
        address: Ipv4Addr,
        server: &str,
        fixed: Option<Ipv4Addr>,
    ) -> Result<FloatingRow> {
        for _ in 0..ATTEMPTS {
            let (mut f, f_mod) = self.floating(address).await?;
            let (_, s, _, _) = self.find_server(server).await?;
            let project = &s.instance.project_id;
            match &f.project_id {
                None => {
                    return Err(ManagerError::Refused(format!(
                        "floating IP {address} is not allocated; allocate it to project {project} first (netnode floating allocate)"
                    )))
                }
                Some(p) if p != project => {
                    return Err(ManagerError::Refused(format!(
                        "floating IP {address} is allocated to project {p}, server {server:?} is in project {project}"
                    )))
                }
                Some(_) => {}
            }
            if let Some(t) = &f.target {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is already associated with {}; disassociate it first",
                    t.fixed
                )));
            }
            let index = match fixed {
                Some(a) => s
                    .addresses
                    .iter()
                    .position(|(_, x)| *x == a)
                    .ok_or_else(|| {
                        ManagerError::Refused(format!("{a} is not a fixed IP of server {server:?}"))
                    })?,
                None if s.addresses.is_empty() => {
                    return Err(ManagerError::Refused(format!(
                        "server {server:?} has no fixed IP"
                    )))
                }
                None => 0,
            };
            let (Some((_, target)), Some(vif)) = (s.addresses.get(index), s.vifs.get(index)) else {
                return Err(ManagerError::Refused(format!(
                    "server {server:?} has no fixed IP"
                )));
            };
            let Some((mut port, p_mod)) = self.port(&s.host, vif).await? else {
                return Err(busy());
            };
            if let Some(other) = port.floating.first() {
                // One floating IP per fixed IP: the outgoing SNAT must have one source.
                return Err(ManagerError::Refused(format!(
                    "fixed IP {target} of server {server:?} already has floating IP {}",
                    other.address
                )));
            }
            port.floating.push(PortFloating {
                address,
                interface: f.interface.clone(),
            });
            f.target = Some(FloatingTarget {
                fixed: *target,
                server: s.instance.name.clone(),
                host: s.host.clone(),
                vif: vif.clone(),
            });
            let (fk, pk) = (
                self.layout.floating(address),
                self.layout.port(&s.host, vif),
            );
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(fk.as_str(), CompareOp::Equal, f_mod),
                    Compare::mod_revision(pk.as_str(), CompareOp::Equal, p_mod),
                ])
                .and_then([
                    TxnOp::put(fk.as_str(), json(&f), None),
                    TxnOp::put(pk.as_str(), json(&port), None),
                ]);
            if self.commit(txn).await? {
                return Ok(row(address, &f));
            }
        }
        Err(busy())
    }

    /// The ops that take floating IP `address` off its port (if the port still exists):
    /// compares and writes to add to a transaction.
    async fn unlink(
        &mut self,
        address: Ipv4Addr,
        target: &FloatingTarget,
    ) -> Result<(Vec<Compare>, Vec<TxnOp>)> {
        let Some((mut port, p_mod)) = self.port(&target.host, &target.vif).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        port.floating.retain(|f| f.address != address);
        let pk = self.layout.port(&target.host, &target.vif);
        Ok((
            vec![Compare::mod_revision(pk.as_str(), CompareOp::Equal, p_mod)],
            vec![TxnOp::put(pk.as_str(), json(&port), None)],
        ))
    }

    /// `floating disassociate IP`: it stays allocated to its project.
    pub async fn floating_disassociate(&mut self, address: Ipv4Addr) -> Result<FloatingRow> {
        for _ in 0..ATTEMPTS {
            let (mut f, f_mod) = self.floating(address).await?;
            let Some(target) = f.target.take() else {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is not associated"
                )));
            };
            let (mut compares, mut ops) = self.unlink(address, &target).await?;
            let fk = self.layout.floating(address);
            compares.push(Compare::mod_revision(fk.as_str(), CompareOp::Equal, f_mod));
            ops.push(TxnOp::put(fk.as_str(), json(&f), None));
            if self.commit(Txn::new().when(compares).and_then(ops)).await? {
                return Ok(row(address, &f));
            }
        }
        Err(busy())
    }

    /// `floating deallocate IP`: back to its pool. Refused while it is associated.
    pub async fn floating_deallocate(&mut self, address: Ipv4Addr) -> Result<FloatingRow> {
        for _ in 0..ATTEMPTS {
            let (mut f, f_mod) = self.floating(address).await?;
            if let Some(t) = &f.target {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is associated with {}; disassociate it first",
                    t.fixed
                )));
            }
            f.project_id = None;
            f.auto_assigned = false;
            let fk = self.layout.floating(address);
            let txn = Txn::new()
                .when([Compare::mod_revision(fk.as_str(), CompareOp::Equal, f_mod)])
                .and_then([TxnOp::put(fk.as_str(), json(&f), None)]);
            if self.commit(txn).await? {
                return Ok(row(address, &f));
            }
        }
        Err(busy())
    }

    /// For `server create` with `auto_assign_floating_ip`: a free floating IP of the default
    /// pool, allocated to the project and associated with the first port, as the compare and
    /// the write to add to the server's transaction, and what the port carries.
    pub(super) async fn auto_floating(
        &mut self,
        project: &str,
        target: FloatingTarget,
    ) -> Result<(Compare, TxnOp, PortFloating)> {
        let pool = self.settings.default_floating_pool.clone();
        let (a, mut r, modified) = self.free_floating(&pool).await?;
        r.project_id = Some(project.to_string());
        r.auto_assigned = true;
        r.target = Some(target);
        let key = self.layout.floating(a);
        Ok((
            Compare::mod_revision(key.as_str(), CompareOp::Equal, modified),
            TxnOp::put(key.as_str(), json(&r), None),
            PortFloating {
                address: a,
                interface: r.interface.clone(),
            },
        ))
    }

    /// For `server delete`: the floating IPs leading to the server's addresses are
    /// disassociated (auto-assigned ones go back to their pool), as compares and writes for
    /// the server's transaction; returns the released ones too.
    pub(super) async fn release_floating(
        &mut self,
        server: &str,
    ) -> Result<(Vec<Compare>, Vec<TxnOp>, Vec<Ipv4Addr>)> {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut released = Vec::new();
        for (a, mut r, modified) in self.floatings().await? {
            if r.target.as_ref().is_none_or(|t| t.server != server) {
                continue;
            }
            r.target = None;
            if r.auto_assigned {
                r.project_id = None;
                r.auto_assigned = false;
                released.push(a);
            }
            let key = self.layout.floating(a);
            compares.push(Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                modified,
            ));
            ops.push(TxnOp::put(key.as_str(), json(&r), None));
        }
        Ok((compares, ops, released))
    }

    /// `fixed reserve --address A`: the address's key says `reserved`, so no server gets it.
    pub async fn fixed_reserve(&mut self, address: Ipv4Addr) -> Result<()> {
        let label = self.network_of(address).await?.row.label;
        let key = self.layout.address(&label, address);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), RESERVED, None)]);
        if self.commit(txn).await? {
            return Ok(());
        }
        let r = timed(&self.endpoints, self.client.get(key.as_str(), None)).await?;
        match r.kvs().first().map(|kv| kv.value()) {
            Some(v) if v == RESERVED.as_bytes() => Ok(()),
            Some(v) => Err(ManagerError::Refused(format!(
                "{address} is in use by {}",
                String::from_utf8_lossy(v)
            ))),
            None => Err(busy()),
        }
    }

    /// `fixed unreserve --address A`: allocatable again (the network's own addresses stay
    /// out of allocation by its layout).
    pub async fn fixed_unreserve(&mut self, address: Ipv4Addr) -> Result<()> {
        let label = self.network_of(address).await?.row.label;
        let key = self.layout.address(&label, address);
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, RESERVED)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        // Deleted, or not there at all: either way it is allocatable.
        if self.commit(txn).await? || self.created(&key).await? == 0 {
            Ok(())
        } else {
            Err(ManagerError::Refused(format!(
                "{address} is in use by a server"
            )))
        }
    }

    async fn network_of(&mut self, address: Ipv4Addr) -> Result<NetworkRecord> {
        self.networks()
            .await?
            .1
            .into_iter()
            .find(|r| r.row.cidr.contains(address))
            .ok_or_else(|| ManagerError::NotFound {
                what: "network containing",
                name: address.to_string(),
            })
    }

    /// `fixed list [--network N]`: every address of the networks, with what holds it.
    pub async fn fixed_list(&mut self, network: Option<&str>) -> Result<Vec<FixedRow>> {
        let networks: Vec<NetworkRecord> = match network {
            Some(k) => vec![self.find_network(k).await?],
            None => self.networks().await?.1,
        };
        // Who holds each address: (network, address) -> (server, hostname, MAC).
        let mut held = std::collections::HashMap::new();
        let (_, servers) = self.list(&self.layout.servers()).await?;
        for (k, v, _, _) in servers {
            let s: super::record::ServerRecord = parse(&k, &v)?;
            for ((label, a), mac) in s.addresses.iter().zip(&s.instance.macs) {
                held.insert(
                    (label.clone(), *a),
                    (
                        s.instance.name.clone(),
                        s.instance.hostname.clone(),
                        mac.clone(),
                    ),
                );
            }
        }
        let mut out = Vec::new();
        for n in networks {
            let label = n.row.label.clone();
            let allocatable: std::collections::BTreeSet<Ipv4Addr> = n
                .allocatable()
                .map_err(ManagerError::Refused)?
                .into_iter()
                .collect();
            let (_, keys) = self.list(&self.layout.addresses(&label)).await?;
            let reserved: std::collections::BTreeSet<Ipv4Addr> = keys
                .into_iter()
                .filter(|(_, v, _, _)| v == RESERVED.as_bytes())
                .filter_map(|(k, _, _, _)| k.rsplit('/').next()?.parse().ok())
                .collect();
            for i in 0..(1u64 << (32 - n.row.cidr.prefix())) {
                let a = Ipv4Addr::from(u32::from(n.row.cidr.network()).wrapping_add(i as u32));
                let holder = held.get(&(label.clone(), a));
                out.push(FixedRow {
                    address: a,
                    network: label.clone(),
                    reserved: !allocatable.contains(&a) || reserved.contains(&a),
                    allocated: holder.is_some(),
                    leased: false,
                    server: holder.map(|h| h.0.clone()),
                    hostname: holder.map(|h| h.1.clone()),
                    mac: holder.map(|h| h.2.clone()),
                });
            }
        }
        Ok(out)
    }

    /// `network-associate`: the network belongs to the project from now on.
    pub async fn network_associate(&mut self, key: &str, project: &str) -> Result<NetworkRow> {
        self.set_project(key, Some(project)).await
    }

    /// `network-disassociate`: the network belongs to no project.
    pub async fn network_disassociate(&mut self, key: &str) -> Result<NetworkRow> {
        self.set_project(key, None).await
    }

    async fn set_project(&mut self, key: &str, project: Option<&str>) -> Result<NetworkRow> {
        for _ in 0..ATTEMPTS {
            let mut r = self.find_network(key).await?;
            if let (Some(p), Some(new)) = (&r.row.project_id, project) {
                if p != new {
                    return Err(ManagerError::Refused(format!(
                        "network {:?} is associated with project {p}; disassociate it first",
                        r.row.label
                    )));
                }
            }
            let nk = self.layout.network(&r.row.label);
            let read = timed(&self.endpoints, self.client.get(nk.as_str(), None)).await?;
            let Some(modified) = read.kvs().first().map(|kv| kv.mod_revision()) else {
                return Err(busy());
            };
            r.row.project_id = project.map(String::from);
            let id = r.row.id;
            r.row.id = 0;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    nk.as_str(),
                    CompareOp::Equal,
                    modified,
                )])
                .and_then([TxnOp::put(nk.as_str(), json(&r), None)]);
            if self.commit(txn).await? {
                return Ok(NetworkRow { id, ..r.row });
            }
        }
        Err(busy())
    }

    /// `project scrub`: every network of the project is disassociated.
    pub async fn project_scrub(&mut self, project: &str) -> Result<Vec<String>> {
        let labels: Vec<String> = self
            .networks()
            .await?
            .1
            .into_iter()
            .filter(|r| r.row.project_id.as_deref() == Some(project))
            .map(|r| r.row.label)
            .collect();
        for l in &labels {
            self.set_project(l, None).await?;
        }
        Ok(labels)
    }
}
