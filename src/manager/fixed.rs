//! Fixed IPs: `fixed reserve`, `fixed unreserve`, `fixed list`, and the allocation servers use
//! (a free, unreserved, unleased row, least recently touched first, as nova).

use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::{from_db, to_db, Change, Manager, ManagerError, Result};

/// One fixed IP as `fixed list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FixedRow {
    /// The address.
    pub address: Ipv4Addr,
    /// Its network's label.
    pub network: String,
    /// Never allocated.
    pub reserved: bool,
    /// Given to a server.
    pub allocated: bool,
    /// A DHCP lease on it is live (as nova-dhcpbridge recorded).
    pub leased: bool,
    /// The server it belongs to.
    pub server: Option<String>,
    /// The server's hostname.
    pub hostname: Option<String>,
    /// The MAC of the interface it is on.
    pub mac: Option<String>,
}

impl Manager {
    /// `fixed reserve --address A`: never allocated from now on. Refused for an address in no
    /// network (naming it) or in use by a server.
    pub fn fixed_reserve(&mut self, address: Ipv4Addr) -> Result<()> {
        self.change(|c| set_reserved(c, address, true))
    }

    /// `fixed unreserve --address A`: allocatable again, except the network's own addresses
    /// (network, gateway, broadcast, DHCP server, VPN), which stay reserved.
    pub fn fixed_unreserve(&mut self, address: Ipv4Addr) -> Result<()> {
        self.change(|c| set_reserved(c, address, false))
    }

    /// `fixed list [--network N]`.
    pub fn fixed_list(&mut self, network: Option<&str>) -> Result<Vec<FixedRow>> {
        self.read(|tx| {
            let id = network
                .map(|k| super::network::find(tx, k).map(|n| n.id))
                .transpose()?;
            let mut st = tx.prepare(
                "SELECT f.address, n.label, f.reserved, f.allocated, f.leased, i.name, i.hostname, v.mac \
                 FROM fixed_ips f JOIN networks n ON n.id = f.network_id \
                 LEFT JOIN instances i ON i.id = f.instance_id LEFT JOIN vifs v ON v.id = f.vif_id \
                 WHERE ?1 IS NULL OR f.network_id = ?1 ORDER BY f.address",
            )?;
            let rows = st
                .query_map([id], |r| {
                    Ok(FixedRow {
                        address: from_db(r.get(0)?),
                        network: r.get(1)?,
                        reserved: r.get(2)?,
                        allocated: r.get(3)?,
                        leased: r.get(4)?,
                        server: r.get(5)?,
                        hostname: r.get(6)?,
                        mac: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

fn set_reserved(c: &mut Change<'_>, address: Ipv4Addr, reserved: bool) -> Result<()> {
    let db = c.db();
    let row: Option<(i64, Option<String>)> = db
        .query_row(
            "SELECT f.network_id, i.name FROM fixed_ips f LEFT JOIN instances i ON i.id = f.instance_id \
             WHERE f.address = ?",
            [to_db(address)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((network_id, server)) = row else {
        return Err(ManagerError::Refused(format!(
            "{address} is in no network's fixed range"
        )));
    };
    if reserved {
        if let Some(s) = server {
            return Err(ManagerError::Refused(format!(
                "{address} is in use by server {s:?}; delete it first"
            )));
        }
    } else if let Some(role) = own_address(db, network_id, address)? {
        return Err(ManagerError::Refused(format!(
            "{address} is the network's {role}; it stays reserved"
        )));
    }
    db.execute(
        "UPDATE fixed_ips SET reserved = ?, updated = ? WHERE address = ?",
        params![reserved, c.seq, to_db(address)],
    )?;
    Ok(())
}

/// What the network uses an address for itself, if it does.
fn own_address(
    db: &Transaction<'_>,
    network_id: i64,
    address: Ipv4Addr,
) -> Result<Option<&'static str>> {
    type Own = (
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let (first, gateway, broadcast, dhcp, vpn, fixed_cidr, lo, hi): Own = db.query_row(
        "SELECT first, gateway, broadcast, dhcp_server, vpn_private_address, fixed_cidr, \
         allowed_start, allowed_end FROM networks WHERE id = ?",
        [network_id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        },
    )?;
    let a = to_db(address);
    let outside_fixed = fixed_cidr
        .and_then(|f| f.parse::<ipnetwork::Ipv4Network>().ok())
        .is_some_and(|f| !f.contains(address));
    if outside_fixed || lo.is_some_and(|lo| a < lo) || hi.is_some_and(|hi| a > hi) {
        return Ok(Some("outside its --fixed-cidr or allowed range"));
    }
    Ok(if a == first {
        Some("network address")
    } else if a == gateway {
        Some("gateway")
    } else if a == broadcast {
        Some("broadcast address")
    } else if a == dhcp {
        Some("DHCP server")
    } else if Some(a) == vpn {
        Some("VPN address")
    } else {
        None
    })
}

/// The next free address of a network, per server created (the partial index `fixed_ips_free`).
pub(super) const FREE_SQL: &str = "SELECT address FROM fixed_ips WHERE network_id = ? \
     AND reserved = 0 AND allocated = 0 AND leased = 0 AND instance_id IS NULL \
     ORDER BY updated, address LIMIT 1";

/// Takes a free address of the network for a server's interface: unreserved, unallocated,
/// unleased, the least recently touched first (freed addresses are reused last).
pub fn allocate(
    c: &Change<'_>,
    network_id: i64,
    label: &str,
    instance_id: i64,
    vif_id: i64,
) -> Result<Ipv4Addr> {
    let db = c.db();
    let address: Option<i64> = db
        .prepare_cached(FREE_SQL)?
        .query_row([network_id], |r| r.get(0))
        .optional()?;
    let Some(address) = address else {
        return Err(ManagerError::Refused(format!(
            "network {label:?} has no free fixed IP"
        )));
    };
    db.prepare_cached(
        "UPDATE fixed_ips SET allocated = 1, instance_id = ?, vif_id = ?, updated = ? WHERE address = ?",
    )?
    .execute(params![instance_id, vif_id, c.seq, address])?;
    Ok(from_db(address))
}
