//! The metadata service: the HTTP listener of `[metadata]`, its rendered trees and settings,
//! following the table. A reload re-renders the trees off the request path and swaps them in;
//! `[metadata]` added, removed or moved to another address opens, closes or moves the listener
//! without a restart.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::password::PasswordStore;
use super::server::{self, LiveStats, Shared};
use super::Tree;
use crate::netif::LinkEvent;
use crate::service::{Context, Reload, Service, StartError};
use crate::stats::{Counters, Report};
use crate::table::instance::MetadataSettings;
use crate::table::Table;

/// A bound listener and its task.
struct Listening {
    listen: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The running metadata service (listening or not, as the table says).
pub struct MetadataService {
    ctx: Context,
    listening: Option<Listening>,
    stats: Arc<LiveStats>,
    /// Bumped at each reload; a tree rendered for an older one is not stored.
    generation: Arc<AtomicU64>,
}

/// Starts the metadata service; listens now if the table has `[metadata]` (a bind failure at
/// start is fatal, as an operator must hear of it).
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    let mut service = MetadataService {
        ctx: ctx.clone(),
        listening: None,
        stats: Arc::default(),
        generation: Arc::default(),
    };
    let table = ctx.table.load_full();
    if let Some(settings) = &table.metadata {
        let tree = Tree::build(&table);
        service.listening = Some(service.listen(&table, settings.clone(), tree)?);
    }
    Ok(Some(Box::new(service)))
}

impl MetadataService {
    /// Opens the password store, binds the listener and serves.
    fn listen(
        &self,
        table: &Table,
        settings: MetadataSettings,
        tree: Tree,
    ) -> Result<Listening, StartError> {
        let passwords = PasswordStore::open(&table.state.dir)?;
        let listen = settings.listen;
        let listener = bind(listen).map_err(|source| StartError::Socket {
            what: format!("binding the metadata service to {listen}"),
            source,
        })?;
        tracing::info!(%listen, instances = tree.len(), "metadata listening");
        let shared = Shared {
            tree: Arc::new(ArcSwap::from_pointee(tree)),
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            passwords: Arc::new(passwords),
            stats: self.stats.clone(),
        };
        let stop = self.ctx.shutdown.child_token();
        let task = tokio::spawn(server::run(listener, shared.clone(), stop.clone()));
        Ok(Listening {
            listen,
            shared,
            stop,
            task,
        })
    }

    /// Renders the trees of `table` off the runtime's workers and swaps them in, unless a newer
    /// reload came meanwhile.
    fn render(&self, table: Arc<Table>, into: Arc<ArcSwap<Tree>>) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let latest = self.generation.clone();
        tokio::spawn(async move {
            let Ok(tree) = tokio::task::spawn_blocking(move || Tree::build(&table)).await else {
                return;
            };
            if latest.load(Ordering::SeqCst) == generation {
                into.store(Arc::new(tree));
            }
        });
    }
}

fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

impl Service for MetadataService {
    fn name(&self) -> &'static str {
        "metadata"
    }

    fn update(&mut self, table: &Arc<Table>, _why: Reload) {
        let Some(settings) = &table.metadata else {
            if let Some(old) = self.listening.take() {
                // Stop answering for instances that may be gone (a new instance may reuse a
                // fixed IP): the listener closes.
                old.stop.cancel();
                tracing::info!(listen = %old.listen, "[metadata] removed: the metadata listener is closed");
            }
            return;
        };
        match &self.listening {
            Some(l) if l.listen == settings.listen => {
                l.shared.settings.store(Arc::new(settings.clone()));
                self.render(table.clone(), l.shared.tree.clone());
            }
            _ => {
                // A new or moved listener: bind the new address first, so a failure keeps the
                // old one serving.
                match self.listen(table, settings.clone(), Tree::build(table)) {
                    Ok(new) => {
                        if let Some(old) = self.listening.replace(new) {
                            old.stop.cancel();
                            tracing::info!(from = %old.listen, to = %settings.listen, "[metadata] listen moved");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "[metadata] cannot listen; the previous state stays")
                    }
                }
            }
        }
    }

    fn link(&mut self, _event: &LinkEvent) {}

    fn report(&self) -> Report {
        let mut report = Report::default();
        self.stats.read().report(None, &mut report);
        report.push_histogram("metadata_request_seconds", None, &self.stats.seconds);
        report
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            if let Some(l) = self.listening {
                l.stop.cancel();
                let _ = l.task.await;
            }
            let mut report = Report::default();
            self.stats.read().report(None, &mut report);
            report
        })
    }
}
