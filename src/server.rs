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

use crate::lock::{LockError, StateLock};
use crate::netif::{self, LinkEvent};
use crate::service::{Context, DropIn, Reload, Service, Shutdown, StartError};
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

fn log_table(table: &Table, what: &str) {
    let bindings: usize = table.networks.iter().map(|n| n.bindings().len()).sum();
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
    /// Held for the daemon's life (none in radvd mode, which keeps no state).
    _lock: Option<StateLock>,
}

impl Server {
    /// Loads the table from `source` and starts every service. Must run inside a tokio runtime.
    pub fn start(source: Source, drop_in: DropIn) -> Result<Server, ServerError> {
        let table = source.load()?;
        log_table(&table, "table loaded");
        // One daemon per state directory, checked before anything reads the journal.
        let lock = if source.serves_dhcp() || table.metadata.is_some() {
            Some(StateLock::acquire(&table.state.dir)?)
        } else {
            None
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
        let ctx = Context {
            table: Arc::new(ArcSwap::from_pointee(table)),
            shutdown: Shutdown::new(),
            drop_in,
            require_bridges: source.requires_bridges(),
            serves_dhcp: source.serves_dhcp(),
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
            _lock: lock,
        })
    }

    /// Builds a new table off the hot path and swaps it in; a bad one is reported and the
    /// last good table keeps serving.
    pub async fn reload(&mut self, why: Reload) {
        let source = self.source.clone();
        let started = tokio::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || source.load()).await;
        let took_ms = started.elapsed().as_millis() as u64;
        let table = match loaded {
            Ok(Ok(table)) => table,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload failed ({}); still serving the last good table", describe(why));
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; still serving the last good table");
                return;
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
            tracing::error!(database = %m.database.display(), "reload refused ({}): the manager's database is gone, and a missing database is not an empty one; still serving the last table (restore it)", describe(why));
            return;
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
        let table = Arc::new(table);
        self.ctx.table.store(table.clone());
        for s in &mut self.services {
            s.update(&table, why);
        }
    }

    /// Every service's counters.
    pub fn report(&self) -> Report {
        let mut report = Report::default();
        for s in &self.services {
            report.extend(s.report());
        }
        report
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
    }
}

/// The watch of the table's manager database: the one kept when it still names it, a new one,
/// or none (no `[manager]`, or it cannot be watched: then reload with SIGHUP).
fn watch_database(table: &Table, kept: Option<DbWatch>) -> Option<DbWatch> {
    let link = table.manager.as_ref()?;
    if let Some(w) = kept.filter(|w| w.database() == link.database) {
        return Some(w);
    }
    match DbWatch::new(&link.database) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(database = %link.database.display(), error = %e, "cannot watch the manager's database; reload with SIGHUP");
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
    let mut server = Server::start(source, drop_in)?;
    if let Err(e) = ready(&server) {
        server.stop().await;
        return Err(e.into());
    }
    loop {
        tokio::select! {
            _ = hup.recv() => server.reload(Reload::Hangup).await,
            _ = usr1.recv() => tracing::info!("stats {}", server.report()),
            event = next_link(&mut server.links) => server.link(&event),
            _ = next_file_change(&mut server.watcher) => server.reload(Reload::FileChanged).await,
            _ = next_db_change(&mut server.db_watch, &server.ctx.table) => server.reload(Reload::Manager).await,
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    server.stop().await;
    Ok(())
}
