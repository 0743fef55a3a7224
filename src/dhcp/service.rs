//! The DHCP service: the lease store, a socket per bridge of the table (following each bridge as
//! it is deleted and created again), the [listeners](super::listener) that serve them, and the
//! lease housekeeping (expiry, the dnsmasq-format lease file, compaction, the dhcp-script).

#![allow(clippy::disallowed_methods)] // IO shell

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::listener::{self, BridgeSocket, Listeners};
use super::store::LeaseStore;
use super::writer::Shared;
use super::{LeaseChange, Stats};
use crate::clock::unix_now;
use crate::dhcp::script::{self, Action, ScriptRunner};
use crate::netif::{self, LinkEvent};
use crate::service::{Context, Reload, Service, StartError};
use crate::stats::{Counters, Report};
use crate::table::Table;

/// The lease file is rewritten at most this often while leases change.
const LEASE_FILE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest sleep between expiry checks (the wall clock may be stepped meanwhile).
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);
/// How long a stop waits for queued dhcp-script events.
const SCRIPT_DRAIN: Duration = Duration::from_secs(10);

/// A bridge that has a socket now.
struct Bound {
    ifindex: u32,
}

/// The running DHCP service.
pub struct DhcpService {
    ctx: Context,
    shared: Shared,
    listeners: Listeners,
    bound: HashMap<String, Bound>,
    /// Bridges whose missing interface was logged (once per absence).
    waiting: HashSet<String>,
    /// Counters of every bridge served since start.
    stats: HashMap<Arc<str>, Arc<Mutex<Stats>>>,
    housekeeping: JoinHandle<()>,
}

/// Starts the DHCP service, unless the source serves no DHCP (radvd mode: no lease store).
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    if !ctx.serves_dhcp {
        return Ok(None);
    }
    let table = ctx.table.load_full();
    let state = &table.state;
    let (store, report) = LeaseStore::open(
        &state.dir,
        state.fsync,
        state.lease_file.clone(),
        unix_now(),
    )?;
    tracing::info!(dir = %state.dir.display(), records = report.records, active = report.active, torn_bytes = report.torn_bytes, "lease journal replayed");
    let script = match &ctx.drop_in.script {
        Some(s) => {
            if s.leasefile_ro {
                let leases = script::init(&s.path)?;
                tracing::info!(
                    leases = leases.len(),
                    "loaded leases from the dhcp-script (--leasefile-ro)"
                );
                let changes: Vec<_> = leases.into_iter().map(LeaseChange::Grant).collect();
                store.commit(&changes)?;
            }
            Some(ScriptRunner::start(s.path.clone(), s.domain.clone()))
        }
        // netnode's manager keeps nova-dhcpbridge's `leased` flags from the same events.
        None => table
            .manager
            .as_ref()
            .and_then(|m| m.database())
            .map(|db| ScriptRunner::start_sink(script::Sink::Manager(db.to_path_buf()))),
    };
    // The manager's leased flags as the leases stand, before any new lease event can come
    // (events lost while the database was busy or the daemon was down are mended here).
    if let Some(db) = table
        .manager
        .as_ref()
        .filter(|m| m.present)
        .and_then(|m| m.database())
    {
        let active: Vec<crate::manager::leases::LeaseEvent> = store
            .active(unix_now())
            .into_iter()
            .map(|l| crate::manager::leases::LeaseEvent {
                leased: true,
                ip: l.ip,
                mac: l.mac,
            })
            .collect();
        super::manager_sink::reconcile(db, &active);
    }
    let shared = Shared {
        table: ctx.table.clone(),
        store: Arc::new(store),
        script,
        committed: Arc::new(Notify::new()),
        failures: Arc::default(),
        commits: Arc::default(),
        log_dhcp: ctx.drop_in.log_dhcp,
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(listener::MAX_WORKERS);
    let listeners = Listeners::start(&shared, workers).map_err(StartError::Thread)?;
    let housekeeping = tokio::spawn(housekeeping(shared.clone(), ctx.shutdown.clone()));
    let mut service = DhcpService {
        ctx: ctx.clone(),
        shared,
        listeners,
        bound: HashMap::new(),
        waiting: HashSet::new(),
        stats: HashMap::new(),
        housekeeping,
    };
    for bridge in table.bridges() {
        match service.follow(&bridge) {
            Ok(()) => {}
            // Another process serves this bridge: refuse to start rather than share it.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(socket_error(&bridge, e));
            }
            Err(e) if ctx.require_bridges => return Err(socket_error(&bridge, e)),
            Err(e) => tracing::error!(bridge, error = %e, "cannot serve DHCP on the bridge yet"),
        }
        if ctx.require_bridges && !service.bound.contains_key(&bridge) {
            return Err(socket_error(
                &bridge,
                io::Error::new(io::ErrorKind::NotFound, "no such interface"),
            ));
        }
    }
    // Servers deleted while the daemon was down.
    service.release_unbound(&table);

    // The workers are stopped by the shutdown token like every other part of the service.
    let stopper = service.listeners.stopper();
    let token = ctx.shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        stopper();
    });
    Ok(Some(Box::new(service)))
}

fn socket_error(bridge: &str, source: io::Error) -> StartError {
    StartError::Socket {
        what: format!("failed to create listening socket on {bridge}, port 67"),
        source,
    }
}

impl DhcpService {
    /// Brings a bridge's socket in line with the interface: opens it when the bridge exists
    /// and has none, opens a new one when the bridge was recreated (a new index), closes it
    /// when the bridge is gone.
    fn follow(&mut self, bridge: &str) -> io::Result<()> {
        let now = netif::index(bridge);
        let had = self.bound.get(bridge).map(|b| b.ifindex);
        match (had, now) {
            (Some(old), Some(new)) if old == new => return Ok(()),
            (None, None) => {
                if self.waiting.insert(bridge.to_string()) {
                    tracing::warn!(
                        bridge,
                        "the bridge does not exist; DHCP serves it once it appears"
                    );
                }
                return Ok(());
            }
            (Some(_), None) => {
                self.unbind(bridge);
                tracing::warn!(
                    bridge,
                    "the bridge went away; DHCP serves it again once it is back"
                );
                self.waiting.insert(bridge.to_string());
                return Ok(());
            }
            (Some(_), Some(_)) => {
                self.unbind(bridge);
                tracing::info!(bridge, "the bridge was recreated; listening on the new one");
            }
            (None, Some(_)) => {}
        }
        let socket = listener::bind(bridge, listener::SERVER_PORT)?;
        // The index the socket is bound to: read again, after the bind, so that a bridge
        // recreated in between is seen as changed at its next event.
        let ifindex = netif::index(bridge).unwrap_or(0);
        let name: Arc<str> = bridge.into();
        let stats = self.stats.entry(name.clone()).or_default().clone();
        self.listeners.add(BridgeSocket {
            name,
            socket: Arc::new(socket),
            stats,
        });
        self.bound.insert(bridge.to_string(), Bound { ifindex });
        self.waiting.remove(bridge);
        tracing::info!(bridge, port = listener::SERVER_PORT, "dhcp listening");
        Ok(())
    }

    fn unbind(&mut self, bridge: &str) {
        self.listeners.remove(bridge);
        self.bound.remove(bridge);
    }

    fn follow_logged(&mut self, bridge: &str) {
        if let Err(e) = self.follow(bridge) {
            tracing::error!(bridge, error = %e, "cannot listen for DHCP on the bridge");
        }
    }

    /// dnsmasq calls its script with `old` for every lease on SIGHUP.
    fn script_old_for_all(&self, table: &Table) {
        if let Some(script) = &self.shared.script {
            for lease in self.shared.store.active(unix_now()) {
                let bridge = bridge_of(table, &lease);
                script.send(Action::Old, lease, &bridge);
            }
        }
    }
}

impl DhcpService {
    /// With the manager's `force_dhcp_release`, a lease whose binding left the table (its
    /// server was deleted) ends now, as nova's dhcp_release ended it in dnsmasq: the address is
    /// free for the next server and the old client is NAKed at its next renewal.
    fn release_unbound(&self, table: &Arc<Table>) {
        // A database that is not there says nothing about which servers are gone.
        if !table
            .manager
            .as_ref()
            .is_some_and(|m| m.force_dhcp_release && m.present)
        {
            return;
        }
        let gone: Vec<super::Lease> = self
            .shared
            .store
            .active(unix_now())
            .into_iter()
            .filter(|l| !bound(table, l))
            .collect();
        if gone.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let table = table.clone();
        tokio::task::spawn_blocking(move || match end_leases(&shared, &table, &gone) {
            Ok(()) => tracing::info!(
                leases = gone.len(),
                "leases ended: their bindings left the manager (force_dhcp_release)"
            ),
            Err(e) => {
                tracing::error!(error = %e, "ending the leases of deleted servers failed; they end at expiry")
            }
        });
    }
}

/// Ends leases now, as their clients' RELEASEs would: journaled first, then the dhcp-script
/// hears `del` and the lease file is rewritten. Blocks on the journal.
fn end_leases(
    shared: &Shared,
    table: &Table,
    leases: &[super::Lease],
) -> Result<(), super::store::StoreError> {
    let changes: Vec<LeaseChange> = leases
        .iter()
        .map(|l| LeaseChange::Release {
            mac: l.mac,
            ip: l.ip,
        })
        .collect();
    shared
        .commits
        .time(changes.len(), || shared.store.commit(&changes))?;
    if let Some(script) = &shared.script {
        for lease in leases {
            let bridge = bridge_of(table, lease);
            script.send(Action::Del, lease.clone(), &bridge);
        }
    }
    shared.committed.notify_one();
    Ok(())
}

/// Whether the table still binds the lease's client to the lease's address.
fn bound(table: &Table, lease: &super::Lease) -> bool {
    table
        .containing(lease.ip)
        .and_then(|n| n.binding(lease.mac, lease.client_id.as_deref()))
        .is_some_and(|b| b.ip == lease.ip)
}

/// The bridge whose network holds a lease's address ("" when none does).
fn bridge_of(table: &Table, lease: &super::Lease) -> String {
    table
        .containing(lease.ip)
        .map(|n| n.bridge.clone())
        .unwrap_or_default()
}

impl Service for DhcpService {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    fn leases(&self) -> Option<Vec<super::Lease>> {
        Some(self.shared.store.active(unix_now()))
    }

    fn release(&self, ip: std::net::Ipv4Addr) -> Option<crate::service::ReleaseFuture> {
        let shared = self.shared.clone();
        Some(Box::pin(async move {
            let lease = shared
                .store
                .get(ip)
                .filter(|l| l.is_active(unix_now()))
                .ok_or_else(|| format!("no lease is held on {ip}"))?;
            let table = shared.table.load_full();
            let ended = lease.clone();
            tokio::task::spawn_blocking(move || end_leases(&shared, &table, &[ended]))
                .await
                .map_err(|e| format!("the release task failed: {e}"))?
                .map_err(|e| format!("the journal refused the release: {e}"))?;
            tracing::info!(mac = %lease.mac, %ip, "lease released by the control socket");
            Ok(lease)
        }))
    }

    fn update(&mut self, table: &Arc<Table>, why: Reload) {
        let wanted = table.bridges();
        let gone: Vec<String> = self
            .bound
            .keys()
            .filter(|b| !wanted.contains(b))
            .cloned()
            .collect();
        for bridge in gone {
            tracing::info!(bridge, "bridge left the table; stopping its listener");
            self.unbind(&bridge);
        }
        self.waiting.retain(|b| wanted.contains(b));
        for bridge in &wanted {
            self.follow_logged(bridge);
        }
        // dnsmasq tells its script `old` for every lease at SIGHUP; `netnode ctl reload` is the
        // same reload.
        if matches!(why, Reload::Hangup | Reload::Control) {
            self.script_old_for_all(table);
        }
        self.release_unbound(table);
    }

    fn link(&mut self, event: &LinkEvent) {
        let table = self.ctx.table.load_full();
        for bridge in table.bridges() {
            let known = self.bound.get(&bridge).map(|b| b.ifindex);
            if event.concerns(&bridge, known) {
                self.follow_logged(&bridge);
            }
        }
    }

    fn report(&self) -> Report {
        report_of(&self.stats, &self.shared)
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let DhcpService {
                shared,
                listeners,
                housekeeping,
                stats,
                ..
            } = *self;
            let _ = housekeeping.await;
            // The workers end their batch, then the writer makes the last changes durable.
            let _ = tokio::task::spawn_blocking(move || listeners.join()).await;
            if let Some(script) = &shared.script {
                script.drain(SCRIPT_DRAIN).await;
            }
            if let Err(e) = shared.store.flush_lease_file(unix_now()) {
                tracing::error!(error = %e, "writing the lease file failed");
            }
            report_of(&stats, &shared)
        })
    }
}

/// Every bridge's counters, sorted by bridge (zeros when no bridge was ever served), then the
/// leases held and the journal's failures.
fn report_of(stats: &HashMap<Arc<str>, Arc<Mutex<Stats>>>, shared: &Shared) -> Report {
    let mut report = Report::default();
    let mut bridges: Vec<_> = stats.iter().collect();
    bridges.sort_by(|a, b| a.0.cmp(b.0));
    for (bridge, stats) in bridges {
        let s = *stats.lock().unwrap_or_else(|p| p.into_inner());
        s.report(Some(bridge), &mut report);
    }
    if report.samples.is_empty() {
        Stats::default().report(None, &mut report);
    }
    use std::sync::atomic::Ordering::Relaxed;
    // Leases held and addresses bound, per network of the current table.
    let table = shared.table.load();
    let mut held = vec![0u64; table.networks.len()];
    // A binary search per lease: a scrape of 100,000 leases in 1,000 networks stays in
    // milliseconds.
    let index = table.network_index();
    shared.store.for_each_active(unix_now(), |ip| {
        if let Some(h) = index.position(ip).and_then(|i| held.get_mut(i)) {
            *h += 1;
        }
    });
    for (n, held) in table.networks.iter().zip(held) {
        let name: Arc<str> = n.name.as_str().into();
        report.push_network("leases", &name, held);
        report.push_network("bound", &name, n.bindings().len() as u64);
    }
    report.push(
        "journal_failures",
        None,
        None,
        shared.failures.commits.load(Relaxed),
    );
    report.push(
        "acks_withheld",
        None,
        None,
        shared.failures.acks_withheld.load(Relaxed),
    );
    report.push_histogram("dhcp_journal_commit_seconds", None, &shared.commits.seconds);
    report.push_histogram("dhcp_journal_commit_changes", None, &shared.commits.changes);
    report
}

/// Lease upkeep, woken by commits and by the next expiry, never by a fixed tick: expired
/// leases leave (the dhcp-script hears `del`), the lease file is rewritten (at most once a
/// second while leases change), and the journal is compacted when it has grown well past the
/// live leases.
async fn housekeeping(shared: Shared, shutdown: crate::service::Shutdown) {
    let store = &shared.store;
    let mut last_flush: Option<tokio::time::Instant> = None;
    loop {
        let now = unix_now();
        let expired = store.expire(now);
        if let Some(script) = &shared.script {
            let table = shared.table.load();
            for lease in expired {
                let bridge = bridge_of(&table, &lease);
                script.send(Action::Del, lease, &bridge);
            }
        }
        match store.flush_lease_file(now) {
            Ok(()) => last_flush = Some(tokio::time::Instant::now()),
            Err(e) => tracing::error!(error = %e, "writing the lease file failed"),
        }
        match store.maybe_compact(now) {
            Ok(true) => tracing::info!(leases = store.len(), "lease journal compacted"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "compacting the lease journal failed"),
        }
        let until_expiry = store
            .next_expiry()
            .map_or(LONGEST_SLEEP, |t| {
                Duration::from_secs(t.saturating_sub(now).max(1))
            })
            .min(LONGEST_SLEEP);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(until_expiry) => {}
            _ = shared.committed.notified() => {
                // Coalesce: a busy minute rewrites the lease file sixty times, not per ACK.
                if let Some(at) = last_flush {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep_until(at + LEASE_FILE_INTERVAL) => {}
                    }
                }
            }
        }
    }
}
