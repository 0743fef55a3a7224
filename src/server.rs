//! The daemon: the list of services, the table they share, reloads and signals. No protocol
//! logic lives here: each service (see [`crate::service`]) is started from the first table, told
//! of each new table and of each interface change, and stopped through the shutdown token.
//!
//! Reloads come from SIGHUP and from edits of the table's source files (inotify); interface
//! changes from netlink. SIGUSR1 logs every service's counters; SIGTERM and SIGINT stop.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::ask::{Ask, Asker, LeaseRow, ReloadRecord, ServiceStatus, Status};
use crate::lock::{LockError, StateLock};
use crate::netif::{self, LinkEvent};
use crate::service::{Context, DropIn, Reload, Service, Shutdown, StartError};
use crate::source::etcd::{Feed, Follow};
use crate::source::files::Watcher;
use crate::source::manager::DbWatch;
use crate::source::{Source, SourceError};
use crate::stats::Report;
use crate::table::{build, Table};

/// Starts one service: `None` when the source has nothing for it to do (no DHCP in radvd mode).
pub type StartFn = fn(&Context) -> Result<Option<Box<dyn Service>>, StartError>;

/// Every service, in start order; they stop in reverse. Adding a service is one line here.
pub const SERVICES: &[StartFn] = &[
    // First: its first pass makes the bridges the others then find.
    crate::control::service::start,
    crate::dhcp::service::start,
    crate::ra::service::start,
    crate::metadata::service::start,
    crate::dns::service::start,
    // Last: they answer from the others.
    crate::metrics::service::start,
    crate::ctl::server::start,
];

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The table could not be loaded.
    #[error("loading the config: {0}")]
    Load(#[from] SourceError),
    /// A service could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Another daemon holds the state directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Signals, the runtime or the readiness hook.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn bindings(table: &Table) -> usize {
    table.networks.iter().map(|n| n.bindings().len()).sum()
}

/// A table's problems as `file:line: reason` lines.
fn problems(table: &Table) -> Vec<String> {
    table.problems.iter().map(|p| p.to_string()).collect()
}

/// The one-line summary systemd shows (`STATUS=`).
fn summary(table: &Table) -> String {
    let problems = match table.problems.len() {
        0 => String::new(),
        n => format!(", {n} problems"),
    };
    format!(
        "serving {} networks, {} bindings{problems}",
        table.networks.len(),
        bindings(table)
    )
}

fn log_table(table: &Table, what: &str) {
    let bindings = bindings(table);
    for p in &table.problems {
        tracing::warn!(problem = %p, "{}", p.effect());
    }
    tracing::info!(
        networks = table.networks.len(),
        bindings,
        problems = table.problems.len(),
        "{what}"
    );
}

/// The running daemon.
pub struct Server {
    source: Source,
    ctx: Context,
    services: Vec<Box<dyn Service>>,
    watcher: Option<Watcher>,
    links: Option<mpsc::UnboundedReceiver<LinkEvent>>,
    /// The manager's database, when the table comes partly from it.
    db_watch: Option<DbWatch>,
    /// The etcd feed, when the manager's state is kept in etcd.
    etcd: Option<Feed>,
    /// Held for the daemon's life (none in radvd mode, which keeps no state).
    _lock: Option<StateLock>,
    /// Questions from the metrics endpoint and the control socket.
    asks: Option<mpsc::Receiver<Ask>>,
    /// When the daemon started (unix seconds).
    started: u64,
    /// Reloads since the start, and how the last one went.
    reloads: Reloads,
}

/// The reload counters.
#[derive(Debug, Default)]
struct Reloads {
    ok: u64,
    failed: u64,
    /// When a table was last loaded (the start counts).
    last_success: u64,
    last: Option<ReloadRecord>,
}

impl Server {
    /// Loads the table from `source` and starts every service. Must run inside a tokio runtime.
    pub fn start(source: Source, drop_in: DropIn) -> Result<Server, ServerError> {
        Server::start_with(source, drop_in, None)
    }

    /// As [`Server::start`], with the etcd feed already following (and the state directory's
    /// lock it was started under).
    fn start_with(
        source: Source,
        drop_in: DropIn,
        etcd: Option<(Feed, StateLock)>,
    ) -> Result<Server, ServerError> {
        let (etcd, held) = match etcd {
            Some((feed, lock)) => (Some(feed), Some(lock)),
            None => (None, None),
        };
        let view = etcd.as_ref().and_then(|f| f.views.borrow().clone());
        let table = source.load_with(view.as_deref())?;
        log_table(&table, "table loaded");
        // One daemon per state directory, checked before anything reads the journal.
        let lock = match held {
            Some(lock) => Some(lock),
            None if source.serves_dhcp() || table.metadata.is_some() => {
                Some(StateLock::acquire(&table.state.dir)?)
            }
            None => None,
        };
        // Interface events first, so none is missed between a service's first look and its
        // subscription.
        let links = match netif::monitor::monitor() {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow interface changes (netlink); bridges are checked only at reloads");
                None
            }
        };
        let watcher = match Watcher::new() {
            Ok(mut w) => {
                w.watch(&build::unique_sources(&table));
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the source files (inotify); reload with SIGHUP");
                None
            }
        };
        let db_watch = watch_database(&table, None);
        let (asker, asks) = Asker::channel();
        let ctx = Context {
            table: Arc::new(ArcSwap::from_pointee(table)),
            shutdown: Shutdown::new(),
            drop_in,
            require_bridges: source.requires_bridges(),
            serves_dhcp: source.serves_dhcp(),
            asker,
            owns_state: lock.is_some(),
        };
        let mut services = Vec::new();
        for start in SERVICES {
            match start(&ctx) {
                Ok(Some(s)) => services.push(s),
                Ok(None) => {}
                Err(e) => {
                    // Those already started stop with the token.
                    ctx.shutdown.cancel();
                    return Err(e.into());
                }
            }
        }
        // What reading the files took (their text, the parsed lines) is free now.
        crate::table::give_back_freed_memory();
        Ok(Server {
            source,
            ctx,
            services,
            watcher,
            links,
            db_watch,
            etcd,
            _lock: lock,
            asks: Some(asks),
            started: crate::clock::unix_now(),
            reloads: Reloads {
                last_success: crate::clock::unix_now(),
                ..Reloads::default()
            },
        })
    }

    /// Builds a new table off the hot path and swaps it in; a bad one is reported and the
    /// last good table keeps serving.
    pub async fn reload(&mut self, why: Reload) -> ReloadRecord {
        crate::notify::reloading();
        let record = self.load_and_swap(why).await;
        if record.ok {
            self.reloads.ok += 1;
            self.reloads.last_success = record.at;
        } else {
            self.reloads.failed += 1;
        }
        self.reloads.last = Some(record.clone());
        let table = self.ctx.table.load();
        crate::notify::ready(&match &record.error {
            None => summary(&table),
            Some(_) => format!("{}; the last reload failed", summary(&table)),
        });
        record
    }

    async fn load_and_swap(&mut self, why: Reload) -> ReloadRecord {
        let mut record = ReloadRecord {
            at: 0,
            why: describe(why),
            ok: false,
            took_ms: 0,
            error: None,
            problems: Vec::new(),
        };
        let failed = |mut record: ReloadRecord, error: String| {
            record.at = crate::clock::unix_now();
            record.error = Some(error);
            record
        };
        let source = self.source.clone();
        let view = self.etcd.as_ref().and_then(|f| f.views.borrow().clone());
        let started = tokio::time::Instant::now();
        let loaded = crate::notify::keep_alive(tokio::task::spawn_blocking(move || {
            source.load_with(view.as_deref())
        }))
        .await;
        let took_ms = started.elapsed().as_millis() as u64;
        record.took_ms = took_ms;
        let table = match loaded {
            Ok(Ok(table)) => table,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload failed ({}); still serving the last good table", describe(why));
                return failed(record, e.to_string());
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; still serving the last good table");
                return failed(record, e.to_string());
            }
        };
        let had_database = self
            .ctx
            .table
            .load()
            .manager
            .as_ref()
            .is_some_and(|m| m.present);
        if let Some(m) = table
            .manager
            .as_ref()
            .filter(|m| had_database && !m.present)
        {
            let what = match m.store {
                crate::table::ManagerStore::Database(_) => "database",
                crate::table::ManagerStore::Etcd { .. } => "etcd view",
            };
            tracing::error!(store = %m.store, "reload refused ({}): the manager's {what} is gone, and a missing {what} is not an empty one; still serving the last table (restore it)", describe(why));
            return failed(
                record,
                format!(
                    "the manager's {} is gone; still serving the last table",
                    m.store
                ),
            );
        }
        if let Some(feed) = &self.etcd {
            // The feed follows the keys of the start's [etcd]; a table from other keys (or
            // another backend) would mix two states.
            let same = matches!(
                table.manager.as_ref().map(|m| &m.store),
                Some(crate::table::ManagerStore::Etcd { host, prefix, .. })
                    if *host == feed.layout().host && *prefix == feed.layout().prefix
            );
            if !same {
                tracing::error!("reload refused ({}): [manager] backend or [etcd] host/prefix changed; restart netnode to apply it", describe(why));
                return failed(
                    record,
                    "[manager] backend or [etcd] host/prefix changed: restart netnode to apply it"
                        .into(),
                );
            }
        }
        if table.state != self.ctx.table.load().state {
            tracing::warn!("[state] changed; it takes effect at the next start");
        }
        if let Some(w) = &mut self.watcher {
            w.watch(&build::unique_sources(&table));
        }
        self.db_watch = watch_database(&table, self.db_watch.take());
        log_table(
            &table,
            &format!("table reloaded ({}) in {took_ms} ms", describe(why)),
        );
        record.problems = problems(&table);
        let table = Arc::new(table);
        self.ctx.table.store(table.clone());
        for s in &mut self.services {
            s.update(&table, why);
        }
        record.ok = true;
        record.at = crate::clock::unix_now();
        record
    }

    /// Every service's counters.
    pub fn report(&self) -> Report {
        let mut report = Report::default();
        for s in &self.services {
            report.extend(s.report());
        }
        report.push("reloads", None, None, self.reloads.ok);
        report.push("reload_failures", None, None, self.reloads.failed);
        report.push("last_reload_success", None, None, self.reloads.last_success);
        report.push("start_time", None, None, self.started);
        if let Some(m) = &self.ctx.table.load().manager {
            report.push("manager_generation", None, None, m.generation);
        }
        if let Some(f) = &self.etcd {
            f.stats.report(&mut report);
        }
        report
    }

    /// What runs, since when, and the last reload.
    pub fn status(&self) -> Status {
        let table = self.ctx.table.load();
        let now = crate::clock::unix_now();
        let services = self
            .services
            .iter()
            .map(|s| {
                let mut bridges: Vec<String> = s
                    .report()
                    .samples
                    .iter()
                    .filter_map(|x| x.bridge.as_deref().map(str::to_string))
                    .collect();
                bridges.sort();
                bridges.dedup();
                ServiceStatus {
                    name: s.name(),
                    bridges,
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started: self.started,
            uptime_seconds: now.saturating_sub(self.started),
            source: match &table.manager {
                Some(m) => format!("{}; manager {}", self.source.describe(), m.store),
                None => self.source.describe(),
            },
            services,
            networks: table.networks.len(),
            bindings: bindings(&table),
            problems: problems(&table),
            last_reload: self.reloads.last.clone(),
        }
    }

    /// Every lease held, with its network and bridge.
    pub fn leases(&self) -> Vec<LeaseRow> {
        let table = self.ctx.table.load();
        let index = table.network_index();
        let mut rows: Vec<LeaseRow> = self
            .services
            .iter()
            .filter_map(|s| s.leases())
            .flatten()
            .map(|l| LeaseRow::new(&l, index.find(l.ip)))
            .collect();
        rows.sort_by_key(|r| r.ip);
        rows
    }

    /// Answers one question (a release is answered from a task of its own: it waits for the
    /// journal).
    async fn answer(&mut self, ask: Ask) {
        match ask {
            Ask::Report(tx) => {
                let _ = tx.send(self.report());
            }
            Ask::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Ask::Leases(tx) => {
                let _ = tx.send(self.leases());
            }
            Ask::Reload(tx) => {
                let record = self.reload(Reload::Control).await;
                let _ = tx.send(record);
            }
            Ask::Release(ip, tx) => {
                let table = self.ctx.table.load_full();
                let Some(release) = self.services.iter().find_map(|s| s.release(ip)) else {
                    let _ = tx.send(Err("this daemon serves no DHCP".into()));
                    return;
                };
                tokio::spawn(async move {
                    let answer = release
                        .await
                        .map(|l| LeaseRow::new(&l, table.containing(l.ip)));
                    let _ = tx.send(answer);
                });
            }
        }
    }

    /// Stops every service (the last in the list first) and logs their final counters.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        let mut report = Report::default();
        let mut finals = Vec::new();
        for s in self.services.into_iter().rev() {
            finals.push(s.finished().await);
        }
        for r in finals.into_iter().rev() {
            report.extend(r);
        }
        if let Some(feed) = self.etcd {
            // `netnode nodes` stops listing this node now, not when its lease runs out.
            feed.stop().await;
        }
        tracing::info!("stopped; stats {report}");
    }

    /// Tells every service of an interface change.
    fn link(&mut self, event: &LinkEvent) {
        for s in &mut self.services {
            s.link(event);
        }
    }
}

fn describe(why: Reload) -> &'static str {
    match why {
        Reload::Hangup => "SIGHUP",
        Reload::FileChanged => "a source file changed",
        Reload::Manager => "the manager's database changed",
        Reload::Control => "the control socket's reload",
        Reload::Etcd => "etcd's view changed",
    }
}

/// The watch of the table's manager database: the one kept when it still names it, a new one,
/// or none (no `[manager]`, or it cannot be watched: then reload with SIGHUP).
fn watch_database(table: &Table, kept: Option<DbWatch>) -> Option<DbWatch> {
    let database = table.manager.as_ref()?.database()?;
    if let Some(w) = kept.filter(|w| w.database() == database) {
        return Some(w);
    }
    match DbWatch::new(database) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(database = %database.display(), error = %e, "cannot watch the manager's database; reload with SIGHUP");
            None
        }
    }
}

/// Waits until the manager's database serves something the table lacks, or forever.
async fn next_db_change(watch: &mut Option<DbWatch>, table: &Arc<ArcSwap<Table>>) {
    let served = table.load().manager.as_ref().map(|m| m.generation);
    let (Some(w), Some(served)) = (watch.as_mut(), served) else {
        return std::future::pending().await;
    };
    if let Err(e) = w.changed(served).await {
        tracing::warn!(error = %e, "watching the manager's database failed; reload with SIGHUP");
        *watch = None;
        std::future::pending::<()>().await;
    }
}

/// Waits for the next interface event, or forever when there is no monitor.
async fn next_link(links: &mut Option<mpsc::UnboundedReceiver<LinkEvent>>) -> LinkEvent {
    match links {
        Some(rx) => match rx.recv().await {
            Some(e) => e,
            None => {
                *links = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Waits for a change of a watched source file, then for the writes to settle (an editor or a
/// script writes in several steps), or forever when nothing is watched.
async fn next_file_change(watcher: &mut Option<Watcher>) {
    /// How long the files must be quiet before the reload.
    const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);
    let Some(w) = watcher else {
        return std::future::pending().await;
    };
    if let Err(e) = w.changed().await {
        tracing::warn!(error = %e, "watching the source files failed; reload with SIGHUP");
        *watcher = None;
        return std::future::pending().await;
    }
    while tokio::time::timeout(SETTLE, w.changed()).await.is_ok() {}
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: &Path) -> Result<(), ServerError> {
    serve_from(
        Source::Toml(config.to_path_buf()),
        DropIn::default(),
        |_| Ok(()),
    )
    .await
}

/// Runs the daemon from any source until SIGTERM or SIGINT. `ready` is called once every
/// service is started (drop-in mode writes its pid file and lets its parent exit there).
pub async fn serve_from(
    source: Source,
    drop_in: DropIn,
    ready: impl FnOnce(&Server) -> std::io::Result<()>,
) -> Result<(), ServerError> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let etcd = follow_etcd(&source).await?;
    let mut server = Server::start_with(source, drop_in, etcd)?;
    if let Err(e) = ready(&server) {
        server.stop().await;
        return Err(e.into());
    }
    crate::notify::ready(&summary(&server.ctx.table.load()));
    let mut asks = server.asks.take();
    let mut watchdog = crate::notify::watchdog_interval().map(tokio::time::interval);
    loop {
        tokio::select! {
            _ = hup.recv() => { server.reload(Reload::Hangup).await; }
            Some(ask) = next_ask(&mut asks) => server.answer(ask).await,
            _ = next_tick(&mut watchdog) => crate::notify::watchdog(),
            _ = usr1.recv() => tracing::info!("stats {}", server.report()),
            event = next_link(&mut server.links) => server.link(&event),
            _ = next_file_change(&mut server.watcher) => { server.reload(Reload::FileChanged).await; }
            _ = next_db_change(&mut server.db_watch, &server.ctx.table) => { server.reload(Reload::Manager).await; }
            _ = next_view(&mut server.etcd) => { server.reload(Reload::Etcd).await; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    crate::notify::stopping();
    // Questions still queued are answered "stopping" (their senders see the channel close).
    drop(asks);
    server.stop().await;
    Ok(())
}

/// With `[manager] backend = "etcd"`: takes the state directory's lock (a second copy started
/// by mistake must not touch this node's liveness key), starts following etcd, and waits a few
/// seconds for the first list. If etcd does not answer, the view saved at the last run is
/// served meanwhile (or nothing from etcd on a first start) and the feed keeps trying.
async fn follow_etcd(source: &Source) -> Result<Option<(Feed, StateLock)>, ServerError> {
    /// How long a start waits for etcd's first list: a little with a saved view to serve
    /// meanwhile, longer without (the config alone serves no instance).
    const WITH_SAVED: std::time::Duration = std::time::Duration::from_secs(1);
    const WITHOUT: std::time::Duration = std::time::Duration::from_secs(5);
    let Source::Toml(path) = source else {
        return Ok(None);
    };
    let config = build::read_config(path).map_err(SourceError::from)?;
    let settings = crate::manager::etcd::EtcdSettings::from_config(&config).map_err(|e| {
        SourceError::Manager {
            path: path.clone(),
            source: crate::manager::ManagerError::Invalid(e.to_string()),
        }
    })?;
    let Some(settings) = settings else {
        return Ok(None);
    };
    let lock = StateLock::acquire(&config.state.dir)?;
    let mut feed = Feed::start(Follow {
        settings,
        liveness: true,
        save_to: Some(config.state.dir.join(crate::source::etcd::SAVED_FILE)),
    });
    let wait = if feed.views.borrow().is_some() {
        WITH_SAVED
    } else {
        WITHOUT
    };
    match feed.first(wait).await {
        Some(v) if v.live => {}
        Some(v) => tracing::warn!(
            revision = v.revision,
            "etcd: not reachable at start; serving the view saved at the last run until it is"
        ),
        None => tracing::warn!(
            "etcd: not reachable at start and no saved view; serving the config alone until it is"
        ),
    }
    // The first view is in the table being built; only later ones are changes.
    feed.views.borrow_and_update();
    Ok(Some((feed, lock)))
}

/// Waits for the etcd feed's next view, or forever without a feed.
async fn next_view(feed: &mut Option<Feed>) {
    let Some(f) = feed else {
        return std::future::pending().await;
    };
    if f.views.changed().await.is_err() {
        *feed = None;
        std::future::pending::<()>().await;
    }
}

/// The next question, or forever when there is no channel.
async fn next_ask(asks: &mut Option<mpsc::Receiver<Ask>>) -> Option<Ask> {
    match asks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next watchdog tick, or forever when systemd set no watchdog.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
