//! The DHCP listeners: the thin IO shell around [`Engine`], serving every bridge's socket from a
//! fixed set of threads.
//!
//! Each worker thread waits on one readiness set (epoll, through mio) holding its share of the
//! bridges' sockets and a waker. Each wakeup: take up to [`BATCH`] datagrams from a ready
//! socket in one system call, read the clock once, ask that bridge's engine about each, send
//! the replies that change no lease, and hand the lease changes to the [lease
//! writer](super::writer), which makes them durable before it sends the ACKs that announce
//! them. An idle bridge costs nothing: no thread of its own and no timer; a stop or a new
//! socket wakes the worker through its waker.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::{nothing_received, RecvBatch, SendBatch};
use super::engine::{Decision, Engine, RxMeta, Transmit};
use super::send::send_all;
use super::stats::{DropReason, Stats};
use super::store::Holders;
use super::writer::{self, Pending, Shared};
use crate::ratelimit::{LogBudget, LogLimiter};
use crate::stats::Counters;
use crate::table::MacAddr;

pub use super::send::{BATCH, CLIENT_PORT, SERVER_PORT};
/// Most worker threads, whatever the number of cores.
pub const MAX_WORKERS: usize = 4;
/// The waker's token; sockets use their slot number plus one.
const WAKER: Token = Token(0);

/// Opens the server socket of one bridge: port 67 on any address, bound to the device so each
/// bridge has its own socket and replies leave through it, broadcast allowed. No SO_REUSEADDR:
/// a bridge already served by another process (a second netnode, a dnsmasq) is refused with
/// "address in use" rather than shared.
pub fn bind(bridge: &str, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(bridge.as_bytes()))?;
    // Room for bursts (boot storms, load tests): 4 MiB. SO_RCVBUF is capped by rmem_max (208 KiB
    // by default, and not settable inside a network namespace); as root SO_RCVBUFFORCE is not.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = setsockopt(&socket, sockopt::RcvBufForce, &(4 << 20));
    let _ = setsockopt(&socket, sockopt::SndBufForce, &(4 << 20));
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

/// One bridge's socket, as handed to a worker.
pub struct BridgeSocket {
    /// The bridge.
    pub name: Arc<str>,
    /// Its bound socket (blocking; received from without waiting once epoll says it is ready).
    pub socket: Arc<UdpSocket>,
    /// Where the worker publishes the bridge's counters after each batch; they carry on from
    /// what is there (a recreated bridge keeps its counts).
    pub stats: Arc<Mutex<Stats>>,
}

enum Command {
    Add(BridgeSocket),
    Remove(Arc<str>),
}

/// One worker thread and the way to reach it.
struct Worker {
    commands: Arc<Mutex<Vec<Command>>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Sockets it serves (new ones go to the worker with the fewest).
    load: usize,
}

impl Worker {
    fn send(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(command);
        self.wake();
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake a dhcp worker");
        }
    }
}

/// Every bridge's DHCP socket, served by a fixed set of worker threads and one lease writer.
pub struct Listeners {
    workers: Vec<Worker>,
    /// Which worker serves each bridge.
    assigned: std::collections::HashMap<Arc<str>, usize>,
    writer: Option<JoinHandle<()>>,
}

impl Listeners {
    /// Starts `workers` worker threads (at least one) and the lease writer; no socket yet.
    pub fn start(shared: &Shared, workers: usize) -> io::Result<Listeners> {
        let (commit, writer) = writer::start(shared.clone())?;
        let mut started = Vec::new();
        for i in 0..workers.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let commands: Arc<Mutex<Vec<Command>>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (commands, stop, shared, commit) = (
                    commands.clone(),
                    stop.clone(),
                    shared.clone(),
                    commit.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("dhcp-{i}"))
                    .spawn(move || run(poll, &commands, &stop, &shared, &commit))?
            };
            started.push(Worker {
                commands,
                waker,
                stop,
                thread: Some(thread),
                load: 0,
            });
        }
        // Only the workers hold the commit queue now: the writer ends when they all have.
        drop(commit);
        Ok(Listeners {
            workers: started,
            assigned: Default::default(),
            writer: Some(writer),
        })
    }

    /// Serves a bridge's socket (replacing the one it had, if any).
    pub fn add(&mut self, socket: BridgeSocket) {
        self.remove(&socket.name);
        let Some((i, worker)) = self
            .workers
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, w)| w.load)
        else {
            return;
        };
        worker.load += 1;
        self.assigned.insert(socket.name.clone(), i);
        worker.send(Command::Add(socket));
    }

    /// Stops serving a bridge; its socket is closed.
    pub fn remove(&mut self, bridge: &str) {
        if let Some(i) = self.assigned.remove(bridge) {
            if let Some(worker) = self.workers.get_mut(i) {
                worker.load = worker.load.saturating_sub(1);
                worker.send(Command::Remove(bridge.into()));
            }
        }
    }

    /// Tells every worker to stop (they finish the batch in hand).
    pub fn stop(&self) {
        for w in &self.workers {
            w.stop.store(true, Ordering::Release);
            w.wake();
        }
    }

    /// A handle that tells every worker to stop, for whoever holds the shutdown token.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let workers: Vec<(Arc<AtomicBool>, Arc<Waker>)> = self
            .workers
            .iter()
            .map(|w| (w.stop.clone(), w.waker.clone()))
            .collect();
        move || {
            for (stop, waker) in &workers {
                stop.store(true, Ordering::Release);
                let _ = waker.wake();
            }
        }
    }

    /// Stops and waits for the workers, then for the writer to make the last changes durable
    /// and send their ACKs. Blocking.
    pub fn join(mut self) {
        self.stop();
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

/// A bridge as its worker serves it.
struct Slot {
    name: Arc<str>,
    socket: Arc<UdpSocket>,
    engine: Engine,
    /// The counters published before this socket (earlier sockets of the same bridge).
    before: Stats,
    published: Arc<Mutex<Stats>>,
    /// In the ready queue already.
    queued: bool,
}

impl Slot {
    fn publish(&self) {
        let mut total = self.before;
        total.add(self.engine.stats());
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = total;
    }
}

/// What one worker reuses from wakeup to wakeup.
struct Buffers {
    batch: RecvBatch,
    sender: SendBatch,
    immediate: Vec<Transmit>,
    limiter: LogLimiter,
    /// Lines about clients (NAK, release, decline; OFFER at debug).
    lines: LogBudget,
}

/// The loop of one worker thread: wait for readiness, serve the ready sockets a batch each
/// (round robin, so a flooded bridge cannot starve the others), until told to stop.
fn run(
    mut poll: Poll,
    commands: &Mutex<Vec<Command>>,
    stop: &AtomicBool,
    shared: &Shared,
    commit: &SyncSender<Pending>,
) {
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut ready: VecDeque<usize> = VecDeque::new();
    let mut events = Events::with_capacity(256);
    let mut buffers = Buffers {
        batch: RecvBatch::new(BATCH),
        sender: SendBatch::new(BATCH),
        immediate: Vec::with_capacity(BATCH),
        limiter: LogLimiter::new(Duration::from_secs(1)),
        lines: writer::client_lines(shared),
    };
    while !stop.load(Ordering::Acquire) {
        // Sleep until something happens, unless a socket still has datagrams waiting.
        let timeout = (!ready.is_empty()).then_some(Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "dhcp worker cannot wait for its sockets; stopping it");
                break;
            }
            continue;
        }
        for event in &events {
            if event.token() == WAKER {
                let pending =
                    std::mem::take(&mut *commands.lock().unwrap_or_else(|p| p.into_inner()));
                for command in pending {
                    apply(command, &mut slots, &mut ready, poll.registry());
                }
            } else if let Some(Some(slot)) = slots.get_mut(event.token().0 - 1) {
                if !slot.queued {
                    slot.queued = true;
                    ready.push_back(event.token().0 - 1);
                }
            }
        }
        for _ in 0..ready.len() {
            let Some(i) = ready.pop_front() else { break };
            let Some(Some(slot)) = slots.get_mut(i) else {
                continue;
            };
            // A full batch means more may be waiting: epoll reports a socket again only when a
            // new datagram arrives, so it goes back in the queue.
            if serve_batch(slot, shared, commit, &mut buffers) {
                ready.push_back(i);
            } else {
                slot.queued = false;
            }
        }
    }
    for slot in slots.iter().flatten() {
        slot.publish();
    }
}

/// Adds or removes a socket of this worker.
fn apply(
    command: Command,
    slots: &mut Vec<Option<Slot>>,
    ready: &mut VecDeque<usize>,
    registry: &mio::Registry,
) {
    match command {
        Command::Add(b) => {
            let i = slots
                .iter()
                .position(Option::is_none)
                .unwrap_or(slots.len());
            let fd = b.socket.as_raw_fd();
            if let Err(e) = registry.register(&mut SourceFd(&fd), Token(i + 1), Interest::READABLE)
            {
                tracing::error!(bridge = %b.name, error = %e, "cannot watch the dhcp socket");
                return;
            }
            let before = *b.stats.lock().unwrap_or_else(|p| p.into_inner());
            let slot = Slot {
                name: b.name,
                socket: b.socket,
                engine: Engine::new(),
                before,
                published: b.stats,
                // Datagrams may have arrived before the registration: look once.
                queued: true,
            };
            ready.push_back(i);
            match slots.get_mut(i) {
                Some(free) => *free = Some(slot),
                None => slots.push(Some(slot)),
            }
        }
        Command::Remove(name) => {
            for entry in slots.iter_mut() {
                if entry.as_ref().is_some_and(|s| s.name == name) {
                    if let Some(slot) = entry.take() {
                        let fd = slot.socket.as_raw_fd();
                        let _ = registry.deregister(&mut SourceFd(&fd));
                        slot.publish();
                    }
                }
            }
            // Stale queue entries point at empty slots (skipped), or at a new socket that
            // reused the slot (served once for nothing).
            ready.retain(|i| slots.get(*i).is_some_and(Option::is_some));
        }
    }
}

/// Serves one batch of one socket; returns whether the batch was full (more may be waiting).
fn serve_batch(
    slot: &mut Slot,
    shared: &Shared,
    commit: &SyncSender<Pending>,
    b: &mut Buffers,
) -> bool {
    let bridge = &*slot.name;
    let got = match b.batch.recv_queued(&*slot.socket) {
        Ok(n) => n,
        Err(e) if nothing_received(&e) => return false,
        Err(e) => {
            if let Some(held) = b.limiter.allow("recv", Instant::now()) {
                tracing::warn!(bridge, error = %e, suppressed = held, "dhcp receive failed");
            }
            return false;
        }
    };
    let now = crate::clock::unix_now();
    let table = shared.table.load();
    let holders = Holders {
        store: &shared.store,
        now,
    };
    let mut pending = Pending::new(slot.name.clone(), slot.socket.clone());
    for (packet, rx) in b.batch.iter() {
        let from = SocketAddr::V4(rx.from);
        if rx.truncated {
            slot.engine.count_shell_drop(DropReason::Oversized);
            log_drop(&mut b.limiter, bridge, DropReason::Oversized, packet, from);
            continue;
        }
        let rx_meta = RxMeta { bridge };
        match slot
            .engine
            .handle_with_leases(&table, rx_meta, packet, now, &holders)
        {
            Decision::Reply {
                transmit,
                lease: Some(change),
                ..
            } => {
                pending.changes.push(change);
                pending.replies.push(transmit);
            }
            // OFFER, NAK, ACK to INFORM: nothing to make durable.
            Decision::Reply {
                kind,
                transmit,
                lease: None,
            } => {
                log_reply(&mut b.lines, bridge, kind, packet, &transmit);
                b.immediate.push(transmit)
            }
            Decision::Record(change) => {
                writer::log_change(&mut b.lines, bridge, &change);
                pending.changes.push(change);
            }
            Decision::Drop(reason) => log_drop(&mut b.limiter, bridge, reason, packet, from),
        }
    }
    drop(table);
    send_all(
        &mut b.sender,
        &slot.socket,
        bridge,
        &b.immediate,
        &mut b.limiter,
    );
    b.immediate.clear();
    if !pending.changes.is_empty() && commit.send(pending).is_err() {
        tracing::error!(
            bridge,
            "the lease writer stopped; leases cannot be made durable"
        );
    }
    slot.publish();
    got == BATCH
}

/// Logs a reply that changes no lease: a NAK at info (the client asked for an address that is
/// not its own), an OFFER or INFORM's ACK at debug.
fn log_reply(
    lines: &mut LogBudget,
    bridge: &str,
    kind: dhcproto::v4::MessageType,
    packet: &[u8],
    reply: &Transmit,
) {
    use dhcproto::v4::MessageType;
    let level_on = match kind {
        MessageType::Nak => tracing::enabled!(tracing::Level::INFO),
        _ => tracing::enabled!(tracing::Level::DEBUG),
    };
    if !level_on {
        return;
    }
    let Some(held) = lines.allow(Instant::now()) else {
        return;
    };
    let Ok(req) = super::wire::parse(packet) else {
        return;
    };
    let mac = req.chaddr;
    let hostname = req
        .hostname
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    match kind {
        MessageType::Nak => {
            let asked = req.requested_ip.unwrap_or(req.ciaddr);
            tracing::info!(bridge, %mac, ip = %asked, %hostname, suppressed = held, "DHCPNAK: the client asked for an address that is not its binding")
        }
        MessageType::Offer => {
            let ip = super::reply::yiaddr(&reply.payload).unwrap_or(Ipv4Addr::UNSPECIFIED);
            tracing::debug!(bridge, %mac, %ip, %hostname, suppressed = held, "DHCPOFFER")
        }
        other => {
            tracing::debug!(bridge, %mac, %hostname, kind = ?other, suppressed = held, "dhcp reply")
        }
    }
}

fn log_drop(
    limiter: &mut LogLimiter,
    bridge: &str,
    reason: DropReason,
    packet: &[u8],
    from: SocketAddr,
) {
    let Some(held) = limiter.allow(reason.name(), Instant::now()) else {
        return;
    };
    // The MAC is read straight from the header for the log line only; it may be garbage.
    let mac = super::wire::chaddr_mac(packet)
        .map(|m: MacAddr| m.to_string())
        .unwrap_or_default();
    match reason {
        DropReason::Malformed(e) => {
            tracing::warn!(bridge, %from, ?e, suppressed = held, "dropped malformed dhcp packet")
        }
        DropReason::UnknownClient => {
            tracing::info!(bridge, %from, mac, suppressed = held, "no binding for client; not answering (static mode)")
        }
        DropReason::Oversized => {
            tracing::warn!(bridge, %from, max = super::batch::SLOT, suppressed = held, "dropped a dhcp datagram longer than the receive slot")
        }
        DropReason::RateLimited => {
            tracing::warn!(bridge, %from, mac, suppressed = held, "client over its request rate; dropping")
        }
        other => {
            tracing::debug!(bridge, %from, mac, reason = other.name(), suppressed = held, "dhcp request not answered")
        }
    }
}
