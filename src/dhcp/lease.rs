//! Leases: what the server has acknowledged to whom, until when.

use std::net::Ipv4Addr;

use crate::table::MacAddr;

/// One acknowledged lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// The address it holds.
    pub ip: Ipv4Addr,
    /// Expiry in unix seconds; `None` for an infinite lease.
    pub expires: Option<u64>,
    /// The host name given to it.
    pub hostname: Option<String>,
    /// The client identifier it sent.
    pub client_id: Option<Vec<u8>>,
}

impl Lease {
    /// Whether the lease is still held at `now` (unix seconds).
    pub fn is_active(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// The map key: the address (a static binding has one; a new grant replaces the holder).
    pub fn key(&self) -> Ipv4Addr {
        self.ip
    }
}

/// A change to the lease state decided by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// An ACK granted or extended this lease.
    Grant(Lease),
    /// The client released its address.
    Release {
        /// The client.
        mac: MacAddr,
        /// The address it gave back.
        ip: Ipv4Addr,
    },
    /// The client found its address in use by someone else.
    Decline {
        /// The client.
        mac: MacAddr,
        /// The address it declined.
        ip: Ipv4Addr,
    },
}

impl LeaseChange {
    /// The address this change touches.
    pub fn key(&self) -> Ipv4Addr {
        match self {
            LeaseChange::Grant(l) => l.key(),
            LeaseChange::Release { ip, .. } | LeaseChange::Decline { ip, .. } => *ip,
        }
    }
}
