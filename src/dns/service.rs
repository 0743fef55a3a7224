//! The DNS service: the engine and its sockets on a thread of their own (a single-threaded
//! runtime), following the table (listening addresses added and removed at a reload, the zone
//! rebuilt off the request path) and the bridges (a bridge recreated gets new sockets).

#![allow(clippy::disallowed_methods)] // IO shell

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::Engine;
use super::listener::{self, Shell};
use super::stats::Stats;
use super::zone::Zone;
use crate::netif::{self, LinkEvent};
use crate::service::{Context, Reload, Service, Shutdown, StartError};
use crate::stats::{Counters, Report};
use crate::table::dns::DnsSettings;
use crate::table::Table;

enum Command {
    Update(Arc<Table>),
    Link(LinkEvent),
}

/// The running DNS service.
pub struct DnsService {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Mutex<Stats>>,
    finished: tokio::sync::oneshot::Receiver<()>,
}

/// Where DNS listens for a table: each network's server address and IPv6 gateway, on its bridge.
pub fn listen_addresses(table: &Table) -> Vec<(String, SocketAddr)> {
    let Some(dns) = &table.dns else {
        return Vec::new();
    };
    let mut out: Vec<(String, SocketAddr)> = Vec::new();
    for n in &table.networks {
        let mut add = |a: SocketAddr| {
            if !out.iter().any(|(b, x)| *b == n.bridge && *x == a) {
                out.push((n.bridge.clone(), a));
            }
        };
        add(SocketAddr::new(n.server.into(), dns.port));
        if let Some(g) = n.gateway_v6 {
            add(SocketAddr::new(g.into(), dns.port));
        }
    }
    out
}

fn socket_error(bridge: &str, addr: SocketAddr, source: io::Error) -> StartError {
    StartError::Socket {
        what: format!("failed to create DNS listening socket on {bridge}, {addr}"),
        source,
    }
}

/// Starts the DNS service (an idle thread when the table has no `[dns]`: a reload may add it).
/// Every listening socket whose bridge exists is bound now, so that a port another process holds
/// fails the start.
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    let table = ctx.table.load_full();
    let mut first = Vec::new();
    for (bridge, addr) in listen_addresses(&table) {
        if netif::index(&bridge).is_none() {
            if ctx.require_bridges {
                return Err(socket_error(
                    &bridge,
                    addr,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            continue;
        }
        let udp = listener::bind_udp(&bridge, addr).map_err(|e| socket_error(&bridge, addr, e))?;
        let tcp = listener::bind_tcp(&bridge, addr).map_err(|e| socket_error(&bridge, addr, e))?;
        first.push((bridge, addr, udp, tcp));
    }
    let (commands, rx) = mpsc::unbounded_channel();
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let (shutdown, shared) = (ctx.shutdown.clone(), stats.clone());
    let finished =
        crate::service::spawn_thread("dns", move || run(table, first, rx, shared, shutdown))?;
    Ok(Some(Box::new(DnsService {
        commands,
        stats,
        finished,
    })))
}

impl Service for DnsService {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn update(&mut self, table: &Arc<Table>, _why: Reload) {
        let _ = self.commands.send(Command::Update(table.clone()));
    }

    fn link(&mut self, event: &LinkEvent) {
        let _ = self.commands.send(Command::Link(event.clone()));
    }

    fn report(&self) -> Report {
        let mut report = Report::default();
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report(None, &mut report);
        report
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let _ = self.finished.await;
            let mut report = Report::default();
            self.stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .report(None, &mut report);
            report
        })
    }
}

/// A listening address with its sockets' tasks.
struct Bound {
    ifindex: u32,
    udp_id: u32,
    tasks: Vec<JoinHandle<()>>,
}

/// The DNS thread's state: the shell, and what is bound where.
struct State {
    shell: Rc<Shell>,
    table: Arc<Table>,
    bound: HashMap<(String, SocketAddr), Bound>,
}

fn settings_of(table: &Table) -> Arc<DnsSettings> {
    // No DNS: nothing listens; the engine holds settings that forward nothing.
    Arc::new(table.dns.clone().unwrap_or_else(|| DnsSettings {
        domain_needed: true,
        ..DnsSettings::default()
    }))
}

async fn run(
    table: Arc<Table>,
    first: Vec<(
        String,
        SocketAddr,
        std::net::UdpSocket,
        std::net::TcpListener,
    )>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stats: Arc<Mutex<Stats>>,
    shutdown: Shutdown,
) {
    let zone = Arc::new(Zone::build(&table));
    let engine = Engine::new(zone, settings_of(&table), rand::random());
    let mut state = State {
        shell: Shell::new(engine, stats),
        table: table.clone(),
        bound: HashMap::new(),
    };
    for (bridge, addr, udp, tcp) in first {
        let ifindex = netif::index(&bridge).unwrap_or(0);
        state.serve(bridge, addr, ifindex, udp, tcp);
    }
    if !state.bound.is_empty() {
        tracing::info!(
            addresses = state.bound.len(),
            names = Zone::build(&table).len(),
            "dns listening"
        );
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            command = commands.recv() => match command {
                Some(Command::Update(table)) => state.update(table).await,
                Some(Command::Link(event)) => state.link(&event),
                None => break,
            },
        }
    }
    for (_, b) in state.bound.drain() {
        b.tasks.iter().for_each(JoinHandle::abort);
    }
    state.shell.publish();
}

impl State {
    /// Starts serving already bound sockets of one address.
    fn serve(
        &mut self,
        bridge: String,
        addr: SocketAddr,
        ifindex: u32,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) {
        let (udp, tcp) = match (
            tokio::net::UdpSocket::from_std(udp),
            tokio::net::TcpListener::from_std(tcp),
        ) {
            (Ok(u), Ok(t)) => (Rc::new(u), t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(bridge, %addr, error = %e, "cannot serve DNS on the address");
                return;
            }
        };
        let id = self.shell.add_socket(udp.clone());
        let tasks = vec![
            tokio::task::spawn_local(listener::serve_udp(self.shell.clone(), id, udp)),
            tokio::task::spawn_local(listener::serve_tcp(self.shell.clone(), tcp)),
        ];
        tracing::info!(bridge, %addr, "dns listening on the address");
        self.bound.insert(
            (bridge, addr),
            Bound {
                ifindex,
                udp_id: id,
                tasks,
            },
        );
    }

    fn close(&mut self, key: &(String, SocketAddr)) {
        if let Some(b) = self.bound.remove(key) {
            b.tasks.iter().for_each(JoinHandle::abort);
            self.shell.remove_socket(b.udp_id);
        }
    }

    /// Brings one address's sockets in line with its bridge.
    fn follow(&mut self, bridge: &str, addr: SocketAddr) {
        let key = (bridge.to_string(), addr);
        let now = netif::index(bridge);
        match (self.bound.get(&key).map(|b| b.ifindex), now) {
            (Some(old), Some(new)) if old == new => return,
            (None, None) => return,
            (Some(_), None) => {
                self.close(&key);
                tracing::warn!(bridge, %addr, "the bridge went away; DNS serves it again once it is back");
                return;
            }
            (Some(_), Some(_)) => self.close(&key),
            (None, Some(_)) => {}
        }
        match (
            listener::bind_udp(bridge, addr),
            listener::bind_tcp(bridge, addr),
        ) {
            (Ok(u), Ok(t)) => self.serve(bridge.to_string(), addr, now.unwrap_or(0), u, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(bridge, %addr, error = %e, "cannot listen for DNS on the address")
            }
        }
    }

    async fn update(&mut self, table: Arc<Table>) {
        // The zone of a large table takes a while to build: not on this thread.
        let build = table.clone();
        let zone = match tokio::task::spawn_blocking(move || Zone::build(&build)).await {
            Ok(z) => Arc::new(z),
            Err(_) => return,
        };
        self.shell.engine().update(zone, settings_of(&table));
        let wanted = listen_addresses(&table);
        let gone: Vec<(String, SocketAddr)> = self
            .bound
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for key in gone {
            tracing::info!(bridge = key.0, addr = %key.1, "the address left the table; DNS closes it");
            self.close(&key);
        }
        for (bridge, addr) in &wanted {
            self.follow(bridge, *addr);
        }
        self.table = table;
    }

    fn link(&mut self, event: &LinkEvent) {
        for (bridge, addr) in listen_addresses(&self.table) {
            let known = self.bound.get(&(bridge.clone(), addr)).map(|b| b.ifindex);
            if event.concerns(&bridge, known) {
                self.follow(&bridge, addr);
            }
        }
    }
}
