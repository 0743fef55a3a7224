//! Lease events into netnode's manager: the `leased` flags nova-dhcpbridge kept, written by the
//! DHCP service's event task (off the request path, a batch per transaction).

use std::path::Path;

use crate::manager::leases::LeaseEvent;
use crate::manager::{Manager, Settings};

/// At the daemon's start: the `leased` flags made exactly the leases the store holds.
pub fn reconcile(db: &Path, active: &[LeaseEvent]) {
    let result = Manager::open(Settings::with_database(db.to_path_buf()))
        .and_then(|mut m| m.reconcile_leases(active));
    match result {
        Ok(a) => tracing::info!(
            leases = active.len(),
            flags_changed = a.changed,
            "the manager's leased flags match the lease store"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot match the manager's leased flags to the lease store")
        }
    }
}

/// Applies a batch, opening the database when `manager` is `None`; returns the connection to
/// keep (none after a failure, so the next batch opens it afresh).
pub fn apply(manager: Option<Manager>, db: &Path, events: &[LeaseEvent]) -> Option<Manager> {
    let mut manager = match manager {
        Some(m) => m,
        None => match Manager::open(Settings::with_database(db.to_path_buf())) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, events = events.len(), "cannot record lease events in the manager's database");
                return None;
            }
        },
    };
    // A busy database (a large command holding the write lock past the busy timeout) is tried
    // again; a flag still lost is mended at the next start (`reconcile`).
    let mut tries = 0;
    let result = loop {
        tries += 1;
        match manager.lease_events(events) {
            Err(e) if tries < 3 => {
                tracing::warn!(error = %e, "recording lease events in the manager's database failed; trying again");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            other => break other,
        }
    };
    match result {
        Ok(applied) => {
            if applied.strangers > 0 {
                tracing::debug!(
                    strangers = applied.strangers,
                    "leases of addresses the manager did not give those MACs"
                );
            }
            Some(manager)
        }
        Err(e) => {
            tracing::warn!(error = %e, events = events.len(), "recording lease events in the manager's database failed");
            None
        }
    }
}
