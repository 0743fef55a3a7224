//! DHCP lease events kept in the `leased` flags, as nova-dhcpbridge did: `add` (and `old`)
//! marks a fixed IP leased when the lease's MAC is its interface's; `del` clears it. A flag
//! change is not served state (the table does not move) but it does order reuse: a fixed IP
//! is reallocated only once it is no longer leased.

use std::net::Ipv4Addr;

use rusqlite::params;

use super::{to_db, Manager, Result};
use crate::table::MacAddr;

/// One lease event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEvent {
    /// `true`: the address is leased (add, old); `false`: released, declined or expired.
    pub leased: bool,
    /// The address.
    pub ip: Ipv4Addr,
    /// The client.
    pub mac: MacAddr,
}

/// What a batch of events changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows whose flag changed.
    pub changed: usize,
    /// Events for an address the manager did not give that MAC (nova logged these).
    pub strangers: usize,
}

impl Manager {
    /// Makes the `leased` flags exactly the leases held (`active`, as the lease store has them
    /// at the daemon's start): events lost while the database was busy or the daemon was down
    /// are mended, in one transaction.
    pub fn reconcile_leases(&mut self, active: &[LeaseEvent]) -> Result<Applied> {
        self.change(|c| {
            let cleared = c
                .db()
                .execute("UPDATE fixed_ips SET leased = 0 WHERE leased = 1", [])?;
            let mut st = c.db().prepare_cached(
                "UPDATE fixed_ips SET leased = 1 WHERE address = ?1 \
                 AND vif_id = (SELECT id FROM vifs WHERE mac = ?2)",
            )?;
            let mut set = 0;
            for e in active.iter().filter(|e| e.leased) {
                set += st.execute(params![to_db(e.ip), e.mac.to_string()])?;
            }
            Ok(Applied {
                changed: cleared.abs_diff(set),
                strangers: active.len() - set,
            })
        })
    }

    /// Applies a batch of lease events in one transaction.
    pub fn lease_events(&mut self, events: &[LeaseEvent]) -> Result<Applied> {
        self.change(|c| {
            let db = c.db();
            let mut lease = db.prepare_cached(
                "UPDATE fixed_ips SET leased = 1, updated = ?1 WHERE address = ?2 AND leased = 0 \
                 AND vif_id = (SELECT id FROM vifs WHERE mac = ?3)",
            )?;
            let mut mine = db.prepare_cached(
                "SELECT count(*) FROM fixed_ips f JOIN vifs v ON v.id = f.vif_id \
                 WHERE f.address = ?1 AND v.mac = ?2",
            )?;
            let mut release = db.prepare_cached(
                "UPDATE fixed_ips SET leased = 0, updated = ?1 WHERE address = ?2 AND leased = 1 \
                 AND (vif_id IS NULL OR vif_id = (SELECT id FROM vifs WHERE mac = ?3))",
            )?;
            let mut applied = Applied::default();
            for e in events {
                let mac = e.mac.to_string();
                let n = if e.leased {
                    lease.execute(params![c.seq, to_db(e.ip), mac])?
                } else {
                    release.execute(params![c.seq, to_db(e.ip), mac])?
                };
                applied.changed += n;
                if e.leased && n == 0 {
                    let ok: i64 = mine.query_row(params![to_db(e.ip), mac], |r| r.get(0))?;
                    if ok == 0 {
                        applied.strangers += 1;
                    }
                }
            }
            Ok(applied)
        })
    }
}
