//! The one shape every long-running part of netnode has (DHCP, router advertisements, metadata;
//! DNS, control and metrics next).
//!
//! A service is started from the first table snapshot and a [`Context`], told of every new
//! snapshot ([`Service::update`]) and of every interface change ([`Service::link`]), reports
//! its counters as a [`Report`], and stops when the context's shutdown token is cancelled;
//! [`Service::finished`] then waits for it. The server keeps only the list of services, the
//! reload and the signals: adding a service is one entry in its list.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::netif::LinkEvent;
use crate::stats::Report;
use crate::table::Table;

/// The one stop signal of the daemon: cancelled once, seen by every service.
pub type Shutdown = CancellationToken;

/// What a service is started with.
#[derive(Clone)]
pub struct Context {
    /// The current table; the server swaps a new snapshot in before it calls `update`.
    pub table: Arc<ArcSwap<Table>>,
    /// Cancelled when the daemon stops.
    pub shutdown: Shutdown,
    /// What a drop-in command line adds (dnsmasq's script and `--log-dhcp`).
    pub drop_in: DropIn,
    /// Drop-in dnsmasq: every bridge must exist at start, as dnsmasq dies when it cannot
    /// listen (nova must see that exit status). Native mode waits for missing bridges.
    pub require_bridges: bool,
    /// Whether this source serves DHCP at all (a radvd.conf does not).
    pub serves_dhcp: bool,
    /// Asks the server's loop (the metrics endpoint and the control socket read the daemon's
    /// state through it).
    pub asker: crate::ask::Asker,
    /// The daemon holds its state directory (not in radvd mode): the control socket lives there.
    pub owns_state: bool,
}

/// What a drop-in command line adds to its source.
#[derive(Debug, Clone, Default)]
pub struct DropIn {
    /// dnsmasq's `--dhcp-script`, told of every lease change.
    pub script: Option<ScriptSettings>,
    /// dnsmasq's `--log-dhcp`: every lease event logged, none held back.
    pub log_dhcp: bool,
}

/// dnsmasq's `--dhcp-script` and how it is run.
#[derive(Debug, Clone)]
pub struct ScriptSettings {
    /// The script.
    pub path: PathBuf,
    /// `DNSMASQ_DOMAIN`.
    pub domain: Option<String>,
    /// `--leasefile-ro`: the script's `init` output is the lease database at start.
    pub leasefile_ro: bool,
}

/// Why a new snapshot came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP (dnsmasq also tells its script `old` for every lease then).
    Hangup,
    /// A source file changed.
    FileChanged,
    /// The manager's database changed.
    Manager,
    /// The control socket's `reload`.
    Control,
    /// The etcd feed published a new view (`[manager] backend = "etcd"`).
    Etcd,
}

/// A running service.
pub trait Service: Send {
    /// Its name in logs.
    fn name(&self) -> &'static str;

    /// A new snapshot is in place (`table` is the one now in the context's holder).
    fn update(&mut self, table: &Arc<Table>, why: Reload);

    /// An interface appeared, changed or went away.
    fn link(&mut self, event: &LinkEvent);

    /// Its counters now.
    fn report(&self) -> Report;

    /// The leases it holds (DHCP only).
    fn leases(&self) -> Option<Vec<crate::dhcp::Lease>> {
        None
    }

    /// Ends the lease of `ip` now, journaled as a RELEASE (DHCP only): resolves to the lease
    /// ended, or why not.
    fn release(&self, _ip: std::net::Ipv4Addr) -> Option<ReleaseFuture> {
        None
    }

    /// Waits until the service has stopped (the shutdown token is cancelled first) and
    /// returns its last counters.
    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>>;
}

/// The next connection `accept` gives, or `None` once `stop` is cancelled. A failed accept (out
/// of descriptors, typically) is logged as `what` and retried 100 ms later.
pub async fn next_connection<S, F>(
    stop: &Shutdown,
    what: &str,
    mut accept: impl FnMut() -> F,
) -> Option<S>
where
    F: Future<Output = std::io::Result<S>>,
{
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = accept() => match accepted {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    }
                }
            },
        }
    }
}

/// What [`Service::release`] returns.
pub type ReleaseFuture = Pin<Box<dyn Future<Output = Result<crate::dhcp::Lease, String>> + Send>>;

/// Runs the future `make` returns on a thread called `name` with a single-threaded runtime of
/// its own (inside a `LocalSet`, so it may spawn tasks that are not `Send`): one thread's epoll
/// for all its sockets and timers. The receiver resolves once the future has returned.
pub fn spawn_thread<F>(
    name: &str,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<()>, StartError>
where
    F: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Thread)?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            tokio::task::LocalSet::new().block_on(&runtime, make());
            let _ = done.send(());
        })
        .map_err(StartError::Thread)?;
    Ok(finished)
}

/// A local fault that keeps a service from starting. Peers never cause these.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be opened or bound.
    #[error("{what}: {source}")]
    Socket {
        /// What was being opened, with its address or interface.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The lease store could not be opened.
    #[error("opening the lease store: {0}")]
    Store(#[from] crate::dhcp::store::StoreError),
    /// The password store could not be opened.
    #[error("opening the password store: {0}")]
    Passwords(#[from] crate::metadata::password::LoadError),
    /// The dhcp-script's `init` failed.
    #[error("running the dhcp-script's init: {0}")]
    Script(#[from] crate::dhcp::script::ScriptError),
    /// A thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
}
