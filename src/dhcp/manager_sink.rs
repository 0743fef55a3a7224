//! Lease events into netnode's manager: the `leased` flags nova-dhcpbridge kept, written by the
//! DHCP service's event task (off the request path, a batch per transaction).

use std::path::Path;

use crate::manager::leases::LeaseEvent;
use crate::manager::{Manager, Settings};

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
    match manager.lease_events(events) {
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
