//! Wiring: the table holder, one DHCP listener per bridge and one router advertisement
//! listener per bridge with an IPv6 prefix, both following the table; reloads on SIGHUP and
//! file changes, stats on SIGUSR1, a clean stop on SIGTERM/SIGINT (with a final RA).

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dhcp::listener::{self, Shared};
use crate::dhcp::{LeaseStore, Stats};
use crate::metadata::{self, password::PasswordStore, Tree};
use crate::ra::listener::Control;
use crate::ra::RaStats;
use crate::table::instance::MetadataSettings;
use crate::table::{build, Table};

/// How often source files are checked for changes and the lease file flushed.
const TICK: Duration = Duration::from_secs(1);
/// How often a listener retries binding to a bridge that does not exist yet.
const BIND_RETRY: Duration = Duration::from_secs(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A cheap fingerprint of the table's source files: (mtime, size, inode) each, or none.
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(i64, i64, u64, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
        })
        .collect()
}

fn log_table(table: &Table, what: &str) {
    let bindings: usize = table.networks.iter().map(|n| n.bindings().len()).sum();
    for p in &table.problems {
        tracing::warn!(problem = %p, "skipped a line");
    }
    tracing::info!(
        networks = table.networks.len(),
        bindings,
        problems = table.problems.len(),
        "{what}"
    );
}

struct ListenerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<Mutex<Stats>>,
}

/// The metadata service, when configured.
struct MetadataHandle {
    shared: metadata::server::Shared,
    listen: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct RaHandle {
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
    stats: Arc<Mutex<RaStats>>,
    /// Told of a table without its bridge: it withdraws and ends by itself.
    retiring: bool,
}

/// Where the table comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// netnode's TOML config.
    Toml(PathBuf),
    /// A dnsmasq command line (drop-in mode): its files are re-read at each load.
    Dnsmasq(Box<crate::compat::dnsmasq::DnsmasqOptions>),
    /// A radvd.conf (drop-in mode): router advertisements only.
    Radvd(PathBuf),
}

impl Source {
    /// Builds the table, reading every file it names.
    pub fn load(&self) -> anyhow::Result<Table> {
        match self {
            Source::Toml(path) => Ok(build::load(path)?),
            Source::Dnsmasq(opts) => {
                let config =
                    crate::compat::dnsmasq::to_config(opts, &crate::netif::ipv4_addresses())
                        .map_err(anyhow::Error::msg)?;
                let mut table = build::from_config(&config, Path::new("dnsmasq command line"))?;
                table.problems.extend(
                    crate::compat::dnsmasq::check_addn_hosts(opts).map_err(anyhow::Error::msg)?,
                );
                Ok(table)
            }
            Source::Radvd(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let ifaces = crate::compat::radvd::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let mut table = crate::compat::radvd::to_table(&ifaces)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                table.sources.push(path.clone());
                Ok(table)
            }
        }
    }

    /// Whether this source serves DHCP (a radvd.conf does not).
    fn serves_dhcp(&self) -> bool {
        !matches!(self, Source::Radvd(_))
    }
}

/// The running daemon.
pub struct Server {
    source: Source,
    table: Arc<ArcSwap<Table>>,
    store: Arc<LeaseStore>,
    script: Option<crate::compat::script::ScriptRunner>,
    listeners: HashMap<String, ListenerHandle>,
    advertisers: HashMap<String, RaHandle>,
    metadata: Option<MetadataHandle>,
    generation: u64,
    watched: Vec<PathBuf>,
    fingerprint: Vec<Option<(i64, i64, u64, u64)>>,
}

impl Server {
    /// Loads the config, opens the lease store and starts a listener per bridge.
    pub fn start(config: &Path) -> anyhow::Result<Server> {
        Server::start_from(Source::Toml(config.to_path_buf()), None)
    }

    /// Loads the table from `source`, opens the lease store (with `script`'s `init` leases
    /// imported, dnsmasq's `--leasefile-ro` way) and starts the listeners.
    pub fn start_from(
        source: Source,
        script: Option<(PathBuf, Option<String>, bool)>,
    ) -> anyhow::Result<Server> {
        let table = source.load().context("loading the config")?;
        log_table(&table, "table loaded");
        if matches!(source, Source::Dnsmasq(_)) {
            // dnsmasq dies when it cannot listen, and nova must see that exit status: so the
            // drop-in checks each bridge's port 67 now, before it reports itself ready.
            for bridge in table.bridges() {
                crate::dhcp::listener::bind(&bridge, crate::dhcp::listener::SERVER_PORT)
                    .with_context(|| {
                        format!("failed to create listening socket on {bridge}, port 67")
                    })?;
            }
        }
        let state = &table.state;
        let (store, report) = if source.serves_dhcp() {
            LeaseStore::open(
                &state.dir,
                state.fsync,
                state.lease_file.clone(),
                unix_now(),
            )
            .context("opening the lease store")?
        } else {
            // radvd mode keeps no leases: an empty store whose directory is removed at once (it is
            // never written; nothing is left behind by the restarts nova does).
            let dir = std::env::temp_dir().join(format!(
                "netnode-radvd-{}-{}",
                std::process::id(),
                unix_now()
            ));
            let opened = LeaseStore::open(&dir, false, None, unix_now())
                .context("opening an empty lease store");
            let _ = std::fs::remove_dir_all(&dir);
            opened?
        };
        tracing::info!(dir = %state.dir.display(), records = report.records, active = report.active, torn_bytes = report.torn_bytes, "lease journal replayed");
        let script = match script {
            Some((path, domain, leasefile_ro)) => {
                if leasefile_ro {
                    let leases = crate::compat::script::init(&path)
                        .map_err(anyhow::Error::msg)
                        .context("running the dhcp-script's init")?;
                    tracing::info!(
                        leases = leases.len(),
                        "loaded leases from the dhcp-script (--leasefile-ro)"
                    );
                    let changes: Vec<_> = leases
                        .into_iter()
                        .map(crate::dhcp::LeaseChange::Grant)
                        .collect();
                    store
                        .commit(&changes)
                        .context("storing the dhcp-script's leases")?;
                }
                Some(crate::compat::script::ScriptRunner::start(path, domain))
            }
            None => None,
        };
        let watched = build::unique_sources(&table);
        let metadata = match &table.metadata {
            Some(settings) => Some(start_metadata(&table, settings.clone())?),
            None => None,
        };
        let mut server = Server {
            metadata,
            source,
            script,
            fingerprint: fingerprint(&watched),
            watched,
            table: Arc::new(ArcSwap::from_pointee(table)),
            store: Arc::new(store),
            listeners: HashMap::new(),
            advertisers: HashMap::new(),
            generation: 0,
        };
        server.reconcile_listeners();
        // What reading the files took (their text, the parsed lines) is free now.
        give_back_freed_memory();
        Ok(server)
    }

    /// Builds a new table off the hot path and swaps it in; a bad one is reported and the
    /// last good table keeps serving.
    pub async fn reload(&mut self, why: &str) {
        let source = self.source.clone();
        let result = tokio::task::spawn_blocking(move || {
            source.load().map(|table| {
                // Rendered only where a metadata service will serve it.
                let tree = table.metadata.is_some().then(|| Tree::build(&table));
                (table, tree)
            })
        })
        .await;
        match result {
            Ok(Ok((table, tree))) => {
                if let Some(m) = &self.metadata {
                    match &table.metadata {
                        Some(settings) => {
                            if settings.listen != m.listen {
                                tracing::warn!(
                                    "[metadata] listen changed; it takes effect at the next start"
                                );
                            }
                            m.shared.settings.store(Arc::new(settings.clone()));
                            m.shared.tree.store(Arc::new(tree.unwrap_or_default()));
                        }
                        None => {
                            // Stop answering for instances that may be gone (a new instance may
                            // reuse a fixed IP); the listener itself goes at the next start.
                            m.shared.tree.store(Arc::new(Tree::default()));
                            tracing::warn!("[metadata] removed: answering no instance; the listener closes at the next start");
                        }
                    }
                } else if table.metadata.is_some() {
                    tracing::warn!("[metadata] added; the service starts at the next start");
                }
                self.watched = build::unique_sources(&table);
                self.fingerprint = fingerprint(&self.watched);
                if table.state != self.table.load().state {
                    tracing::warn!("[state] changed; it takes effect at the next start");
                }
                log_table(&table, &format!("table reloaded ({why})"));
                let old = self.table.swap(Arc::new(table));
                self.reconcile_listeners();
                // The old table goes when the last batch using it ends (a batch in flight holds
                // it); then hand its memory back, since a large table is many small allocations
                // that malloc would otherwise keep.
                tokio::task::spawn_blocking(move || {
                    for _ in 0..500 {
                        if Arc::strong_count(&old) == 1 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    drop(old);
                    give_back_freed_memory();
                });
            }
            Ok(Err(e)) => {
                // Remember the files as they are now so one bad edit is reported once.
                self.fingerprint = fingerprint(&self.watched);
                tracing::error!(error = %e, "reload failed ({why}); still serving the last good table");
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; still serving the last good table")
            }
        }
    }

    /// Starts listeners for new bridges and stops those whose bridge left the table.
    fn reconcile_listeners(&mut self) {
        let bridges = if self.source.serves_dhcp() {
            self.table.load().bridges()
        } else {
            Vec::new()
        };
        self.listeners.retain(|bridge, handle| {
            let keep = bridges.contains(bridge);
            if !keep {
                tracing::info!(bridge, "bridge left the table; stopping its listener");
                let _ = handle.stop.send(true);
            }
            keep
        });
        for bridge in bridges {
            if self.listeners.contains_key(&bridge) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let stats = Arc::new(Mutex::new(Stats::default()));
            let shared = Shared {
                table: self.table.clone(),
                store: self.store.clone(),
                stats: stats.clone(),
                script: self.script.clone(),
            };
            let task = tokio::spawn(serve_bridge(bridge.clone(), shared, stop_rx));
            self.listeners
                .insert(bridge, ListenerHandle { stop, task, stats });
        }
        self.reconcile_advertisers();
    }

    /// Tells every advertiser about the new table (each retires itself when its bridge has no
    /// IPv6 network left) and starts advertisers for bridges that gained one.
    fn reconcile_advertisers(&mut self) {
        self.generation += 1;
        let wanted = self.table.load().ra_bridges();
        // A retiring advertiser whose bridge came back is replaced by a fresh one (it still
        // sends its withdrawal, then the new one announces again).
        self.advertisers
            .retain(|bridge, h| !(h.task.is_finished() || h.retiring && wanted.contains(bridge)));
        for (bridge, h) in self.advertisers.iter_mut() {
            h.retiring = !wanted.contains(bridge);
            let _ = h.control.send(Control::Run(self.generation));
        }
        for bridge in wanted {
            if self.advertisers.contains_key(&bridge) {
                continue;
            }
            let (control, control_rx) = watch::channel(Control::Run(self.generation));
            let stats = Arc::new(Mutex::new(RaStats::default()));
            let task = tokio::spawn(crate::ra::listener::run(
                bridge.clone(),
                self.table.clone(),
                stats.clone(),
                control_rx,
            ));
            self.advertisers.insert(
                bridge,
                RaHandle {
                    control,
                    task,
                    stats,
                    retiring: false,
                },
            );
        }
    }

    /// The bridge whose network holds an address ("" when none does).
    fn bridge_of(&self, ip: std::net::Ipv4Addr) -> String {
        self.table
            .load()
            .containing(ip)
            .map(|n| n.bridge.clone())
            .unwrap_or_default()
    }

    /// dnsmasq calls its script with `old` for every lease on SIGHUP.
    fn script_old_for_all(&self) {
        if let Some(script) = &self.script {
            for lease in self.store.active(unix_now()) {
                let bridge = self.bridge_of(lease.ip);
                script.send(crate::compat::script::Action::Old, lease, &bridge);
            }
        }
    }

    /// Counters of every listener and advertiser, as one log line.
    pub fn report(&self) -> String {
        let mut ra = RaStats::default();
        for h in self.advertisers.values() {
            ra.add(&h.stats.lock().unwrap_or_else(|p| p.into_inner()));
        }
        match &self.metadata {
            Some(m) => format!("{} {} {}", self.stats(), ra, m.shared.stats),
            None => format!("{} {}", self.stats(), ra),
        }
    }

    /// Counters of all listeners, summed.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for h in self.listeners.values() {
            total.add(&h.stats.lock().unwrap_or_else(|p| p.into_inner()));
        }
        total
    }

    /// Periodic work: notice changed source files, flush the lease file, compact the journal.
    async fn tick(&mut self) {
        if fingerprint(&self.watched) != self.fingerprint {
            self.reload("a source file changed").await;
        }
        let expired = self.store.expire(unix_now());
        if let Some(script) = &self.script {
            for lease in expired {
                let bridge = self.bridge_of(lease.ip);
                script.send(crate::compat::script::Action::Del, lease, &bridge);
            }
        }
        if let Err(e) = self.store.flush_lease_file(unix_now()) {
            tracing::error!(error = %e, "writing the lease file failed");
        }
        match self.store.maybe_compact(unix_now()) {
            Ok(true) => tracing::info!(leases = self.store.len(), "lease journal compacted"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "compacting the lease journal failed"),
        }
    }

    /// Stops every listener and writes what is pending.
    pub async fn stop(mut self) {
        for h in self.listeners.values() {
            let _ = h.stop.send(true);
        }
        for h in self.advertisers.values() {
            let _ = h.control.send(Control::Shutdown);
        }
        let metadata_stats = self.metadata.as_ref().map(|m| m.shared.stats.clone());
        if let Some(m) = self.metadata.take() {
            let _ = m.stop.send(true);
            let _ = m.task.await;
        }
        // Wait for every task, keeping its counters for the final report.
        let mut dhcp = Stats::default();
        for (_, h) in self.listeners.drain() {
            let _ = h.task.await;
            dhcp.add(&h.stats.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let mut ra = RaStats::default();
        for (bridge, h) in self.advertisers.drain() {
            if tokio::time::timeout(Duration::from_secs(2), h.task)
                .await
                .is_err()
            {
                tracing::warn!(bridge, "router advertisement listener did not stop in time");
            }
            ra.add(&h.stats.lock().unwrap_or_else(|p| p.into_inner()));
        }
        if let Some(script) = &self.script {
            script.drain(Duration::from_secs(10)).await;
        }
        let stats = match metadata_stats {
            Some(m) => format!("{dhcp} {ra} {m}"),
            None => format!("{dhcp} {ra}"),
        };
        if let Err(e) = self.store.flush_lease_file(unix_now()) {
            tracing::error!(error = %e, "writing the lease file failed");
        }
        tracing::info!("stopped; stats {stats}");
    }
}

/// Renders the metadata trees, opens the password store, binds the listener and serves.
fn start_metadata(table: &Table, settings: MetadataSettings) -> anyhow::Result<MetadataHandle> {
    let passwords = PasswordStore::open(&table.state.dir).context("opening the password store")?;
    let listen = settings.listen;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&listen.into())
        .with_context(|| format!("binding the metadata service to {listen}"))?;
    socket.listen(1024)?;
    let listener = tokio::net::TcpListener::from_std(socket.into())?;
    let tree = Tree::build(table);
    tracing::info!(%listen, instances = tree.len(), "metadata listening");
    let shared = metadata::server::Shared {
        tree: Arc::new(ArcSwap::from_pointee(tree)),
        settings: Arc::new(ArcSwap::from_pointee(settings)),
        passwords: Arc::new(passwords),
        stats: Arc::new(Default::default()),
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(metadata::server::run(listener, shared.clone(), stop_rx));
    Ok(MetadataHandle {
        shared,
        listen,
        stop,
        task,
    })
}

/// Binds the bridge's socket (waiting for the bridge to exist) and serves it on a thread of
/// its own (see [`listener::run`]); finishes when that thread has stopped.
async fn serve_bridge(bridge: String, shared: Shared, mut stop: watch::Receiver<bool>) {
    let mut warned = false;
    let socket = loop {
        match listener::bind(&bridge, listener::SERVER_PORT) {
            Ok(s) => break s,
            Err(e) => {
                if !warned {
                    tracing::warn!(bridge, error = %e, "cannot listen on the bridge yet; retrying every second");
                    warned = true;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread = {
        let (bridge, stop) = (bridge.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("dhcp-{bridge}"))
            .spawn(move || {
                if let Err(e) = listener::run(bridge.clone(), socket, shared, stop) {
                    tracing::error!(bridge, error = %e, "dhcp listener failed");
                }
                let _ = done_tx.send(());
            })
    };
    if let Err(e) = thread {
        tracing::error!(bridge, error = %e, "cannot start the dhcp listener thread");
        return;
    }
    tracing::info!(bridge, port = listener::SERVER_PORT, "dhcp listening");
    // The thread sees the stop signal within its receive timeout.
    let _ = done_rx.await;
}

/// Returns memory malloc holds but no longer uses to the system (glibc keeps freed small
/// allocations for reuse; after a reload of a million bindings that is over 100 MB).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: &Path) -> anyhow::Result<()> {
    serve_from(Source::Toml(config.to_path_buf()), None, |_| Ok(())).await
}

/// Runs the daemon from any source until SIGTERM or SIGINT. `ready` is called once every
/// listener is started (drop-in mode writes its pid file and lets its parent exit there).
pub async fn serve_from(
    source: Source,
    script: Option<(PathBuf, Option<String>, bool)>,
    ready: impl FnOnce(&Server) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut server = Server::start_from(source, script)?;
    ready(&server)?;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                server.reload("SIGHUP").await;
                server.script_old_for_all();
            }
            _ = usr1.recv() => tracing::info!(leases = server.store.len(), "stats {}", server.report()),
            _ = tick.tick() => server.tick().await,
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    server.stop().await;
    Ok(())
}
