//! Floating IPs: pools (`floating create`, `delete`, `list`) and each address's life: free,
//! allocated to a project, associated with a server's fixed IP.

use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::rules;
use super::{found, from_db, opt_addr, to_db, Change, Manager, ManagerError, Result};
use crate::table::config::ManagerKind;

/// One floating IP as `floating list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FloatingRow {
    /// The public address.
    pub address: Ipv4Addr,
    /// Its pool.
    pub pool: String,
    /// The interface it lives on (none: the public interface).
    pub interface: Option<String>,
    /// The project it is allocated to.
    pub project_id: Option<String>,
    /// The fixed IP it leads to.
    pub fixed_ip: Option<Ipv4Addr>,
    /// The server of that fixed IP.
    pub server: Option<String>,
    /// Allocated by `auto_assign_floating_ip` (released with its server).
    pub auto_assigned: bool,
}

const SELECT: &str =
    "SELECT f.address, f.pool, f.interface, f.project_id, f.fixed_address, i.name, \
     f.auto_assigned FROM floating_ips f LEFT JOIN fixed_ips x ON x.address = f.fixed_address \
     LEFT JOIN instances i ON i.id = x.instance_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FloatingRow> {
    Ok(FloatingRow {
        address: from_db(r.get(0)?),
        pool: r.get(1)?,
        interface: r.get(2)?,
        project_id: r.get(3)?,
        fixed_ip: opt_addr(r.get(4)?),
        server: r.get(5)?,
        auto_assigned: r.get(6)?,
    })
}

fn get(db: &Transaction<'_>, address: Ipv4Addr) -> Result<FloatingRow> {
    let mut st = db.prepare_cached(&format!("{SELECT} WHERE f.address = ?"))?;
    found(
        st.query_row([to_db(address)], row),
        "floating IP",
        &address.to_string(),
    )
}

impl Manager {
    /// `floating create --pool P --ip_range R [--interface I]`: the range's addresses join the
    /// pool. Refused when one is already floating or inside a network's fixed range.
    pub fn floating_create(
        &mut self,
        pool: Option<&str>,
        range: &str,
        interface: Option<&str>,
    ) -> Result<usize> {
        let addresses = create_request(&self.settings, range, interface)?;
        if let Some(own) = self.settings.config_networks.iter().find(|n| {
            n.cidr
                .is_some_and(|c| addresses.iter().any(|a| c.contains(*a)))
        }) {
            return Err(ManagerError::Refused(format!(
                "--ip_range: {range} overlaps the config's network {:?}",
                own.name
            )));
        }
        let pool = pool
            .unwrap_or(&self.settings.default_floating_pool)
            .to_string();
        let (Some(lo), Some(hi)) = (addresses.first(), addresses.last()) else {
            return Ok(0);
        };
        let (lo, hi) = (to_db(*lo), to_db(*hi));
        self.change(|c| {
            let db = c.db();
            if let Some((a, p)) = db
                .query_row(
                    "SELECT address, pool FROM floating_ips WHERE address BETWEEN ? AND ? LIMIT 1",
                    [lo, hi],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?
            {
                return Err(ManagerError::Refused(format!(
                    "{} is already a floating IP (pool {p:?})",
                    from_db(a)
                )));
            }
            if let Some((label, cidr)) = db
                .query_row(
                    "SELECT label, cidr FROM networks WHERE first <= ? AND last >= ? LIMIT 1",
                    [hi, lo],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?
            {
                return Err(ManagerError::Refused(format!(
                    "--ip_range: {range} overlaps network {label:?} ({cidr})"
                )));
            }
            let mut st = db.prepare_cached(
                "INSERT INTO floating_ips (address, pool, interface) VALUES (?, ?, ?)",
            )?;
            for a in &addresses {
                st.execute(params![to_db(*a), pool, interface])?;
            }
            Ok(addresses.len())
        })
    }

    /// `floating list [--pool P]`.
    pub fn floating_list(&mut self, pool: Option<&str>) -> Result<Vec<FloatingRow>> {
        self.read(|tx| {
            let mut st = tx.prepare(&format!(
                "{SELECT} WHERE ?1 IS NULL OR f.pool = ?1 ORDER BY f.address"
            ))?;
            let rows = st
                .query_map([pool], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// `floating delete R`: the range's floating IPs leave their pool. Refused while one of
    /// them is associated.
    pub fn floating_delete(&mut self, range: &str) -> Result<usize> {
        let addresses = rules::floating_range(range).map_err(ManagerError::Invalid)?;
        let (Some(lo), Some(hi)) = (addresses.first(), addresses.last()) else {
            return Ok(0);
        };
        let (lo, hi) = (to_db(*lo), to_db(*hi));
        self.change(|c| {
            let db = c.db();
            if let Some(a) = db
                .query_row(
                    "SELECT address FROM floating_ips WHERE address BETWEEN ? AND ? \
                     AND fixed_address IS NOT NULL LIMIT 1",
                    [lo, hi],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            {
                return Err(ManagerError::Refused(format!(
                    "floating IP {} is associated; disassociate it first",
                    from_db(a)
                )));
            }
            let n = db.execute(
                "DELETE FROM floating_ips WHERE address BETWEEN ? AND ?",
                [lo, hi],
            )?;
            if n == 0 {
                return Err(ManagerError::NotFound {
                    what: "floating IP in",
                    name: range.to_string(),
                });
            }
            Ok(n)
        })
    }

    /// `floating allocate --pool P --project ID`: the pool's first free address.
    pub fn floating_allocate(&mut self, pool: Option<&str>, project: &str) -> Result<FloatingRow> {
        let pool = pool
            .unwrap_or(&self.settings.default_floating_pool)
            .to_string();
        self.change(|c| {
            let a = allocate(c, &pool, project, false)?;
            get(c.db(), a)
        })
    }

    /// `floating associate IP --server NAME [--fixed-address A]`: the floating IP leads to the
    /// server's first fixed IP (or the one named). Refused unless it is allocated to the
    /// server's project and not associated yet.
    pub fn floating_associate(
        &mut self,
        address: Ipv4Addr,
        server: &str,
        fixed: Option<Ipv4Addr>,
    ) -> Result<FloatingRow> {
        self.change(|c| {
            let f = get(c.db(), address)?;
            let s = server_of(c.db(), server)?;
            match &f.project_id {
                None => {
                    return Err(ManagerError::Refused(format!(
                        "floating IP {address} is not allocated; allocate it to project {} first (netnode floating allocate)",
                        s.project_id
                    )))
                }
                Some(p) if *p != s.project_id => {
                    return Err(ManagerError::Refused(format!(
                        "floating IP {address} is allocated to project {p}, server {server:?} is in project {}",
                        s.project_id
                    )))
                }
                Some(_) => {}
            }
            if let Some(x) = f.fixed_ip {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is already associated with {x}; disassociate it first"
                )));
            }
            let target = match fixed {
                Some(a) if s.addresses.contains(&a) => a,
                Some(a) => {
                    return Err(ManagerError::Refused(format!(
                        "{a} is not a fixed IP of server {server:?}"
                    )))
                }
                None => s
                    .addresses
                    .first()
                    .copied()
                    .ok_or_else(|| ManagerError::Refused(format!("server {server:?} has no fixed IP")))?,
            };
            if let Some(other) = c
                .db()
                .query_row(
                    "SELECT address FROM floating_ips WHERE fixed_address = ?",
                    [to_db(target)],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            {
                // One floating IP per fixed IP: the outgoing SNAT must have one source.
                return Err(ManagerError::Refused(format!(
                    "fixed IP {target} of server {server:?} already has floating IP {}",
                    from_db(other)
                )));
            }
            associate(c, address, target)?;
            get(c.db(), address)
        })
    }

    /// `floating disassociate IP`: it stays allocated to its project.
    pub fn floating_disassociate(&mut self, address: Ipv4Addr) -> Result<FloatingRow> {
        self.change(|c| {
            let f = get(c.db(), address)?;
            if f.fixed_ip.is_none() {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is not associated"
                )));
            }
            c.db().execute(
                "UPDATE floating_ips SET fixed_address = NULL WHERE address = ?",
                [to_db(address)],
            )?;
            c.served();
            get(c.db(), address)
        })
    }

    /// `floating deallocate IP`: back to its pool. Refused while it is associated.
    pub fn floating_deallocate(&mut self, address: Ipv4Addr) -> Result<FloatingRow> {
        self.change(|c| {
            let f = get(c.db(), address)?;
            if let Some(x) = f.fixed_ip {
                return Err(ManagerError::Refused(format!(
                    "floating IP {address} is associated with {x}; disassociate it first"
                )));
            }
            c.db().execute(
                "UPDATE floating_ips SET project_id = NULL, auto_assigned = 0 WHERE address = ?",
                [to_db(address)],
            )?;
            get(c.db(), address)
        })
    }
}

/// What associating needs of a server (by name or UUID): its project and its fixed IPs, the
/// first interface's first.
struct Target {
    project_id: String,
    addresses: Vec<Ipv4Addr>,
}

fn server_of(db: &Transaction<'_>, key: &str) -> Result<Target> {
    let (id, project_id): (i64, String) = found(
        db.query_row(
            "SELECT id, project_id FROM instances WHERE name = ?1 OR uuid = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ),
        "server",
        key,
    )?;
    let addresses = db
        .prepare_cached(
            "SELECT f.address FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id \
             WHERE f.instance_id = ? ORDER BY v.position",
        )?
        .query_map([id], |r| Ok(from_db(r.get(0)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Target {
        project_id,
        addresses,
    })
}

/// `floating create`'s checks that need no state: the kind has floating IPs, the range is one,
/// the interface is a name. Returns the range's addresses.
pub fn create_request(
    settings: &super::Settings,
    range: &str,
    interface: Option<&str>,
) -> Result<Vec<Ipv4Addr>> {
    if settings.kind == ManagerKind::Flat {
        return Err(ManagerError::Refused(
            "the flat manager has no floating IPs (nova's FlatManager)".into(),
        ));
    }
    let addresses = rules::floating_range(range).map_err(ManagerError::Invalid)?;
    if let Some(i) = interface {
        crate::table::control::interface_name(i)
            .map_err(|m| ManagerError::Invalid(format!("--interface: {m}")))?;
    }
    Ok(addresses)
}

/// Takes the pool's first free address for the project.
pub fn allocate(c: &Change<'_>, pool: &str, project: &str, auto: bool) -> Result<Ipv4Addr> {
    let db = c.db();
    let a: Option<i64> = db
        .prepare_cached(
            "SELECT address FROM floating_ips WHERE pool = ? AND project_id IS NULL ORDER BY address LIMIT 1",
        )?
        .query_row([pool], |r| r.get(0))
        .optional()?;
    let Some(a) = a else {
        return Err(ManagerError::Refused(format!(
            "floating IP pool {pool:?} has no free address"
        )));
    };
    db.prepare_cached(
        "UPDATE floating_ips SET project_id = ?, auto_assigned = ? WHERE address = ?",
    )?
    .execute(params![project, auto, a])?;
    Ok(from_db(a))
}

/// Points a floating IP at a fixed IP (a change the daemon serves).
pub fn associate(c: &mut Change<'_>, address: Ipv4Addr, fixed: Ipv4Addr) -> Result<()> {
    c.db()
        .prepare_cached("UPDATE floating_ips SET fixed_address = ? WHERE address = ?")?
        .execute([to_db(fixed), to_db(address)])?;
    c.served();
    Ok(())
}
