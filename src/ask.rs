//! Questions to the running daemon from its own tasks (the metrics endpoint, the control
//! socket), answered by the server's loop, which owns the services: counters are read out at
//! the moment of the question, never kept twice.

use std::net::Ipv4Addr;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::dhcp::Lease;
use crate::stats::Report;

/// A question and where its answer goes.
#[derive(Debug)]
pub enum Ask {
    /// Every service's counters, and the daemon's own.
    Report(oneshot::Sender<Report>),
    /// What runs, since when, and the last reload.
    Status(oneshot::Sender<Status>),
    /// Every lease held.
    Leases(oneshot::Sender<Vec<LeaseRow>>),
    /// End a lease now (journaled, as a RELEASE).
    Release(Ipv4Addr, oneshot::Sender<Result<LeaseRow, String>>),
    /// Reload the table as SIGHUP does.
    Reload(oneshot::Sender<ReloadRecord>),
}

/// The daemon's state, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// netnode's version.
    pub version: &'static str,
    /// The daemon's process id.
    pub pid: u32,
    /// When it started, in unix seconds.
    pub started: u64,
    /// Seconds since.
    pub uptime_seconds: u64,
    /// Where the table comes from.
    pub source: String,
    /// Each service and the bridges it serves.
    pub services: Vec<ServiceStatus>,
    /// Networks in the table.
    pub networks: usize,
    /// Addresses bound in the table.
    pub bindings: usize,
    /// The table's problems (lines left out), as `file:line: reason`.
    pub problems: Vec<String>,
    /// The last reload, if any came since the start.
    pub last_reload: Option<ReloadRecord>,
}

/// One service in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: &'static str,
    /// The bridges it reports counters for.
    pub bridges: Vec<String>,
}

/// How a reload went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When it ended, in unix seconds.
    pub at: u64,
    /// What asked for it.
    pub why: &'static str,
    /// Whether the new table is served.
    pub ok: bool,
    /// How long building the table took.
    pub took_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// The new table's problems.
    pub problems: Vec<String>,
}

/// One lease, for `leases`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseRow {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client's MAC.
    pub mac: String,
    /// The host name given.
    pub hostname: Option<String>,
    /// Expiry in unix seconds (none: infinite).
    pub expires: Option<u64>,
    /// The network holding the address ("" when no network does any more).
    pub network: String,
    /// Its bridge.
    pub bridge: String,
}

impl LeaseRow {
    /// A lease as a row, with the network holding its address (if one still does).
    pub fn new(lease: &Lease, network: Option<&crate::table::Network>) -> LeaseRow {
        LeaseRow {
            ip: lease.ip,
            mac: lease.mac.to_string(),
            hostname: lease.hostname.clone(),
            expires: lease.expires,
            network: network.map(|n| n.name.clone()).unwrap_or_default(),
            bridge: network.map(|n| n.bridge.clone()).unwrap_or_default(),
        }
    }
}

/// The sending end, cloned into every task that asks.
#[derive(Debug, Clone)]
pub struct Asker(mpsc::Sender<Ask>);

/// Questions waiting for the server's loop; more wait in the askers' tasks.
const QUEUE: usize = 64;

impl Asker {
    /// A channel: the asker, and the receiver the server's loop answers from.
    pub fn channel() -> (Asker, mpsc::Receiver<Ask>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Asker(tx), rx)
    }

    /// Asks; `None` when the daemon is stopping.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Ask) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.0.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}
