//! The router advertisement service: one task for every advertising bridge, with one timer
//! queue for all their schedules. Each bridge has an [`Advertiser`] (the pure engine) while its
//! interface is there with a usable link-local address; link events from netlink say when to
//! look again, so a bridge that appears, gets carrier or is recreated is advertised on without
//! any polling.

#![allow(clippy::disallowed_methods)] // IO shell: reads the monotonic clock

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::{Advertiser, Output, RaSpec, Received, Stats};
use super::listener::{self, Input, Link};
use crate::netif::LinkEvent;
use crate::ratelimit::LogLimiter;
use crate::service::{Context, Reload, Service, Shutdown, StartError};
use crate::stats::{Counters, Report};
use crate::table::Table;
use crate::timer::TimerQueue;

/// How long to wait before trying again to open a socket that could not be opened.
const REOPEN: Duration = Duration::from_secs(2);
/// Messages waiting between the readers and the service.
const INPUT_QUEUE: usize = 1024;

enum Command {
    Update(Arc<Table>),
    Link(LinkEvent),
}

type SharedStats = Arc<Mutex<HashMap<Arc<str>, Stats>>>;

/// The running RA service: a handle on its task.
pub struct RaService {
    commands: mpsc::UnboundedSender<Command>,
    stats: SharedStats,
    finished: tokio::sync::oneshot::Receiver<()>,
}

/// Starts the RA service (an idle task when no bridge advertises: a reload may add one).
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    let (commands, rx) = mpsc::unbounded_channel();
    let stats = SharedStats::default();
    let table = ctx.table.load_full();
    // A thread of its own with a single-threaded runtime: each advertisement is then one
    // wakeup of one thread (the timer and the sockets share its epoll), where the daemon's
    // multi-threaded runtime woke a second worker for every timer that fired.
    let shutdown = ctx.shutdown.clone();
    let task_stats = stats.clone();
    let finished =
        crate::service::spawn_thread("ra", move || run(table, rx, task_stats, shutdown))?;
    Ok(Some(Box::new(RaService {
        commands,
        stats,
        finished,
    })))
}

impl Service for RaService {
    fn name(&self) -> &'static str {
        "ra"
    }

    fn update(&mut self, table: &Arc<Table>, _why: Reload) {
        let _ = self.commands.send(Command::Update(table.clone()));
    }

    fn link(&mut self, event: &LinkEvent) {
        let _ = self.commands.send(Command::Link(event.clone()));
    }

    fn report(&self) -> Report {
        report_of(&self.stats)
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let _ = self.finished.await;
            report_of(&self.stats)
        })
    }
}

fn report_of(stats: &SharedStats) -> Report {
    let stats = stats.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = Report::default();
    let mut bridges: Vec<_> = stats.iter().collect();
    bridges.sort_by(|a, b| a.0.cmp(b.0));
    for (bridge, s) in bridges {
        s.report(Some(bridge), &mut report);
    }
    if report.samples.is_empty() {
        Stats::default().report(None, &mut report);
    }
    report
}

/// A bridge with an open socket and its advertiser.
struct Active {
    link: Link,
    socket: Arc<AsyncFd<Socket>>,
    id: u64,
    reader: JoinHandle<()>,
    adv: Advertiser,
}

/// One advertising bridge.
#[derive(Default)]
struct Bridge {
    active: Option<Active>,
    /// Counters of the advertisers this bridge had before the current one.
    before: Stats,
    /// "Waiting for the bridge" was logged since it was last active.
    told_waiting: bool,
}

/// The service's task state.
struct State {
    table: Arc<Table>,
    bridges: HashMap<Arc<str>, Bridge>,
    timers: TimerQueue<Arc<str>>,
    origin: Instant,
    inputs: mpsc::Sender<Input>,
    next_socket: u64,
    stats: SharedStats,
    limiter: LogLimiter,
}

async fn run(
    table: Arc<Table>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stats: SharedStats,
    shutdown: Shutdown,
) {
    let (inputs, mut received) = mpsc::channel(INPUT_QUEUE);
    let mut state = State {
        table: table.clone(),
        bridges: HashMap::new(),
        timers: TimerQueue::default(),
        origin: Instant::now(),
        inputs,
        next_socket: 0,
        stats,
        limiter: LogLimiter::new(Duration::from_secs(1)),
    };
    state.update(table);
    loop {
        let due = state.timers.next().map(|at| state.origin + at);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            command = commands.recv() => match command {
                Some(Command::Update(table)) => state.update(table),
                Some(Command::Link(event)) => state.link(&event),
                None => break,
            },
            Some(input) = received.recv() => state.input(input),
            _ = sleep_until(due) => state.timeouts(),
        }
    }
    state.stop();
}

/// Sleeps until `due`, or forever when there is nothing to wait for.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl State {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// A new table: bridges that stopped advertising withdraw; the others take the new spec.
    fn update(&mut self, table: Arc<Table>) {
        self.table = table;
        let wanted = self.table.ra_bridges();
        let gone: Vec<Arc<str>> = self
            .bridges
            .keys()
            .filter(|b| !wanted.iter().any(|w| w.as_str() == &***b))
            .cloned()
            .collect();
        for name in gone {
            self.close_with(
                &name,
                Advertiser::retire,
                "no IPv6 network left on the bridge: withdrew its prefixes and default route",
            );
            self.bridges.remove(&name);
        }
        for name in wanted {
            let name: Arc<str> = name.into();
            if !self.bridges.contains_key(&name) {
                // A bridge that advertised before in this run carries on counting.
                let before = self
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&name)
                    .copied()
                    .unwrap_or_default();
                let bridge = Bridge {
                    before,
                    ..Bridge::default()
                };
                self.bridges.insert(name.clone(), bridge);
                self.follow(&name);
                continue;
            }
            let now = self.now();
            let Some(bridge) = self.bridges.get_mut(&name) else {
                continue;
            };
            let Some(active) = bridge.active.as_mut() else {
                continue;
            };
            let Some(spec) = spec_of(&self.table, &name, active.link) else {
                continue;
            };
            if let Some(out) = active.adv.update(spec, now) {
                tracing::info!(bridge = &*name, "withdrawing removed prefixes");
                let result = listener::send(active.socket.get_ref(), active.link.ifindex, &out);
                report_send(&mut self.limiter, &name, result);
            }
            let at = active.adv.poll_timeout();
            self.timers.set(name.clone(), at);
            self.publish(&name);
        }
    }

    fn link(&mut self, event: &LinkEvent) {
        let names: Vec<Arc<str>> = self
            .bridges
            .iter()
            .filter(|(name, b)| event.concerns(name, b.active.as_ref().map(|a| a.link.ifindex)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.follow(&name);
        }
    }

    /// Brings a bridge's socket in line with its interface: opens one when the interface is
    /// ready, opens a new one when it changed (recreated, new MAC or link-local address), and
    /// closes it when the interface is gone or not ready.
    fn follow(&mut self, name: &Arc<str>) {
        let current = Link::current(name);
        let had = self
            .bridges
            .get(name)
            .and_then(|b| b.active.as_ref())
            .map(|a| a.link);
        if had.is_some() && had == current {
            return;
        }
        if let Some(active) = self.close(name) {
            self.count(name, &active);
            tracing::info!(bridge = &**name, "the bridge changed (recreated, new MAC or link-local address, or gone); advertising again when it is ready");
        }
        let Some(link) = current else {
            if let Some(b) = self.bridges.get_mut(name) {
                if !std::mem::replace(&mut b.told_waiting, true) {
                    tracing::info!(bridge = &**name, "waiting for the bridge and its IPv6 link-local address (it appears once the bridge has carrier)");
                }
            }
            return;
        };
        let Some(spec) = spec_of(&self.table, name, link) else {
            return;
        };
        // SAFETY (register): the socket is owned by the AsyncFd and closed only when it drops.
        let registered = listener::open(name, link)
            .and_then(|s| unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1));
        let socket = match registered {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(bridge = &**name, error = %e, "cannot open the router advertisement socket; retrying");
                self.timers.set(name.clone(), self.now() + REOPEN);
                return;
            }
        };
        self.next_socket += 1;
        let id = self.next_socket;
        let reader = tokio::spawn(listener::read(
            name.clone(),
            id,
            socket.clone(),
            self.inputs.clone(),
        ));
        let now = self.now();
        let seed =
            u64::from(link.ifindex) ^ (now.as_nanos() as u64) ^ u64::from(std::process::id());
        let adv = Advertiser::new(spec, now, seed);
        tracing::info!(bridge = &**name, link_local = %link.link_local, prefixes = ?adv.spec().prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "router advertisements on");
        self.timers.set(name.clone(), adv.poll_timeout());
        if let Some(b) = self.bridges.get_mut(name) {
            b.told_waiting = false;
            b.active = Some(Active {
                link,
                socket,
                id,
                reader,
                adv,
            });
        }
        self.publish(name);
    }

    /// Takes a bridge's socket and advertiser away (the reader stops).
    fn close(&mut self, name: &Arc<str>) -> Option<Active> {
        self.timers.cancel(name);
        let active = self.bridges.get_mut(name)?.active.take()?;
        active.reader.abort();
        Some(active)
    }

    /// Keeps a closed advertiser's counters with its bridge.
    fn count(&mut self, name: &Arc<str>, active: &Active) {
        if let Some(b) = self.bridges.get_mut(name) {
            b.before.add(active.adv.stats());
        }
        self.publish(name);
    }

    fn publish(&self, name: &Arc<str>) {
        let Some(b) = self.bridges.get(name) else {
            return;
        };
        let mut total = b.before;
        if let Some(a) = &b.active {
            total.add(a.adv.stats());
        }
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), total);
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Message {
                bridge,
                socket,
                src,
                hop_limit,
                bytes,
            } => {
                let now = self.now();
                let Some(active) = self
                    .bridges
                    .get_mut(&bridge)
                    .and_then(|b| b.active.as_mut())
                    .filter(|a| a.id == socket)
                else {
                    return;
                };
                let received = active.adv.handle_icmp(now, src, hop_limit, &bytes);
                let (ifindex, at) = (active.link.ifindex, active.adv.poll_timeout());
                let socket = active.socket.clone();
                handle_received(
                    &mut self.limiter,
                    &bridge,
                    received,
                    socket.get_ref(),
                    ifindex,
                );
                self.timers.set(bridge.clone(), at);
                self.publish(&bridge);
            }
            Input::Closed {
                bridge,
                socket,
                error,
            } => {
                let current = self
                    .bridges
                    .get(&bridge)
                    .and_then(|b| b.active.as_ref())
                    .is_some_and(|a| a.id == socket);
                if current {
                    tracing::warn!(bridge = &*bridge, %error, "the router advertisement socket failed; opening it again");
                    if let Some(active) = self.close(&bridge) {
                        self.count(&bridge, &active);
                    }
                    self.timers.set(bridge.clone(), self.now() + REOPEN);
                }
            }
        }
    }

    /// Sends every RA that is due, and reopens sockets whose retry time came.
    fn timeouts(&mut self) {
        let now = self.now();
        for name in self.timers.pop_due(now) {
            let Some(active) = self.bridges.get_mut(&name).and_then(|b| b.active.as_mut()) else {
                self.follow(&name);
                continue;
            };
            let out = active.adv.handle_timeout(now);
            let at = active.adv.poll_timeout();
            if let Some(out) = out {
                let result = listener::send(active.socket.get_ref(), active.link.ifindex, &out);
                report_send(&mut self.limiter, &name, result);
            }
            self.timers.set(name.clone(), at);
            self.publish(&name);
        }
    }

    /// netnode is stopping: every advertising bridge sends its final RA (router lifetime 0).
    fn stop(&mut self) {
        let names: Vec<Arc<str>> = self.bridges.keys().cloned().collect();
        for name in names {
            self.close_with(
                &name,
                Advertiser::shutdown,
                "sent the final router advertisement (router lifetime 0)",
            );
        }
    }

    /// Closes a bridge's socket after a last RA (which `last` makes), keeping its counters.
    fn close_with(&mut self, name: &Arc<str>, last: fn(&mut Advertiser) -> Output, said: &str) {
        if let Some(mut active) = self.close(name) {
            let out = last(&mut active.adv);
            self.send(name, &active, &out);
            tracing::info!(bridge = &**name, "{said}");
            self.count(name, &active);
        }
    }

    fn send(&mut self, name: &str, active: &Active, out: &Output) {
        let result = listener::send(active.socket.get_ref(), active.link.ifindex, out);
        report_send(&mut self.limiter, name, result);
    }
}

/// What the bridge advertises, on the interface as it is.
fn spec_of(table: &Table, bridge: &str, link: Link) -> Option<RaSpec> {
    table.ra_for(bridge).map(|(params, prefixes)| RaSpec {
        params,
        prefixes,
        mac: link.mac,
        link_local: link.link_local,
    })
}

fn handle_received(
    limiter: &mut LogLimiter,
    bridge: &str,
    received: Received,
    socket: &Socket,
    ifindex: u32,
) {
    match received {
        Received::Reply(out) => report_send(limiter, bridge, listener::send(socket, ifindex, &out)),
        Received::Scheduled | Received::Own => {}
        Received::OtherRouter {
            from,
            inconsistencies,
        } => {
            if !inconsistencies.is_empty()
                && limiter.allow("inconsistent", Instant::now()).is_some()
            {
                tracing::warn!(bridge, %from, ?inconsistencies, "another router on the link advertises differently (RFC 4861 6.2.7)");
            }
        }
        Received::Drop(reason) => {
            if let Some(held) = limiter.allow(reason.name(), Instant::now()) {
                tracing::info!(
                    bridge,
                    reason = reason.name(),
                    suppressed = held,
                    "dropped an ICMPv6 message"
                );
            }
        }
    }
}

fn report_send(limiter: &mut LogLimiter, bridge: &str, result: std::io::Result<usize>) {
    if let Err(e) = result {
        if let Some(held) = limiter.allow("send", Instant::now()) {
            tracing::warn!(bridge, error = %e, suppressed = held, "sending a router advertisement failed");
        }
    }
}
