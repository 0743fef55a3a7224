//! The DHCP listener of one bridge: the thin IO shell around [`Engine`].
//!
//! Each wakeup: take up to [`BATCH`] datagrams in one system call, read the clock once, ask the
//! engine about each, send the replies that change no lease, and hand the lease changes to the
//! writer, which makes them durable (one journal write and one fdatasync for everything queued)
//! before it sends the ACKs that announce them. An ACK whose lease could not be made durable is
//! not sent.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use super::arp;
use super::batch::{nothing_received, RecvBatch, SendBatch};
use super::engine::{Decision, Destination, Engine, RxMeta, Transmit};
use super::lease::LeaseChange;
use super::stats::{DropReason, Stats};
use super::store::LeaseStore;
use crate::ratelimit::LogLimiter;
use crate::table::{MacAddr, Table};

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// Most datagrams handled per wakeup (bounds latency and the size of one journal write).
pub const BATCH: usize = 64;

/// Opens the server socket of one bridge: port 67 on any address, bound to the device so each
/// bridge has its own listener and replies leave through it, broadcast allowed.
pub fn bind(bridge: &str, port: u16) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(bridge.as_bytes()))?;
    socket.set_nonblocking(true)?;
    // Room for bursts (boot storms, load tests): 4 MiB. SO_RCVBUF is capped by rmem_max (208 KiB
    // by default, and not settable inside a network namespace); as root SO_RCVBUFFORCE is not.
    let _ = socket.set_recv_buffer_size(4 << 20);
    force_buffer(&socket, libc::SO_RCVBUFFORCE, 4 << 20);
    force_buffer(&socket, libc::SO_SNDBUFFORCE, 4 << 20);
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

/// Sets a socket buffer size past the sysctl cap where privileges allow; otherwise leaves it.
fn force_buffer(socket: &Socket, option: libc::c_int, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: the option value is a c_int that lives for the call.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// What a listener needs besides its socket.
#[derive(Clone)]
pub struct Shared {
    /// The current table.
    pub table: Arc<ArcSwap<Table>>,
    /// The lease store.
    pub store: Arc<LeaseStore>,
    /// Where the listener publishes its counters after each batch.
    pub stats: Arc<Mutex<Stats>>,
    /// dnsmasq's `--dhcp-script`, told of every lease change (drop-in mode).
    pub script: Option<crate::compat::script::ScriptRunner>,
}

/// How long a blocked receive waits before it looks at the stop signal again. (Shutting the
/// socket's receive side would wake it at once, but Linux reports that as an empty datagram
/// with no sender address, which nix's recvmmsg would read uninitialised.)
const STOP_POLL: Duration = Duration::from_millis(100);

/// Serves one bridge until `shutdown` turns true, on the calling thread (a thread of its own:
/// it blocks in the kernel between batches).
///
/// Two threads per bridge, and no more, because every wakeup of another thread costs about as
/// much as handling a packet: this one receives a batch in one `recvmmsg`, asks the engine about
/// each datagram and sends the replies that need no durability (OFFER, NAK, ACK to INFORM) in
/// one `sendmmsg`; the lease writer (see [`write_and_send`]) makes lease changes durable and then
/// sends the ACKs that announce them.
pub fn run(
    bridge: String,
    socket: std::net::UdpSocket,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(STOP_POLL))?;
    // Group commit: lease changes and the ACKs that announce them go to the writer, which makes
    // everything queued durable with one write and one fdatasync, then sends those ACKs. The
    // receive loop never waits for the disk, so under load one fsync covers many batches.
    let (commit_tx, commit_rx) = std::sync::mpsc::sync_channel::<Pending>(COMMIT_QUEUE);
    let writer = {
        let (bridge, socket, shared) = (bridge.clone(), socket.try_clone()?, shared.clone());
        std::thread::Builder::new()
            .name(format!("dhcp-w-{bridge}"))
            .spawn(move || write_and_send(&bridge, &socket, &shared, &commit_rx))?
    };
    let mut engine = Engine::new();
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    let mut batch = RecvBatch::new(BATCH);
    let mut sender = SendBatch::new(BATCH);
    let mut immediate: Vec<Transmit> = Vec::with_capacity(BATCH);
    // A dropped sender means the server is gone: stop as well.
    while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
        match batch.recv(&socket) {
            Ok(_) => {}
            Err(e) if nothing_received(&e) => continue,
            Err(e) => {
                if let Some(held) = limiter.allow("recv", Instant::now()) {
                    tracing::warn!(bridge, error = %e, suppressed = held, "dhcp receive failed");
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let table = shared.table.load();
        let holders = super::store::Holders {
            store: &shared.store,
            now,
        };
        let mut pending = Pending::default();
        for (packet, rx) in batch.iter() {
            let from = SocketAddr::V4(rx.from);
            if rx.truncated {
                engine.count_shell_drop(DropReason::Oversized);
                log_drop(&mut limiter, &bridge, DropReason::Oversized, packet, from);
                continue;
            }
            let rx_meta = RxMeta { bridge: &bridge };
            match engine.handle_with_leases(&table, rx_meta, packet, now, &holders) {
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
                    transmit,
                    lease: None,
                    ..
                } => immediate.push(transmit),
                Decision::Record(change) => {
                    log_change(&bridge, &change);
                    pending.changes.push(change);
                }
                Decision::Drop(reason) => log_drop(&mut limiter, &bridge, reason, packet, from),
            }
        }
        send_all(&mut sender, &socket, &bridge, &immediate, &mut limiter);
        immediate.clear();
        if !pending.changes.is_empty() && commit_tx.send(pending).is_err() {
            tracing::error!(bridge, "the lease writer stopped; stopping the listener");
            break;
        }
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
    }
    drop(commit_tx);
    let _ = writer.join();
    *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
    Ok(())
}

/// Batches waiting for the writer; bounds memory and pushes back on the receive loop.
const COMMIT_QUEUE: usize = 64;

/// Lease changes of one receive batch, and the ACKs to send once they are durable.
#[derive(Default)]
struct Pending {
    changes: Vec<LeaseChange>,
    replies: Vec<Transmit>,
}

/// The lease writer of one bridge (a thread): takes every batch that is queued, makes them
/// durable together, then sends their ACKs (or withholds them if the journal could not be
/// written). Ends when the listener drops its end of the queue.
fn write_and_send(
    bridge: &str,
    socket: &std::net::UdpSocket,
    shared: &Shared,
    rx: &std::sync::mpsc::Receiver<Pending>,
) {
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    let mut sender = SendBatch::new(BATCH);
    let mut acks: Vec<Transmit> = Vec::new();
    let mut replaced: Vec<Option<crate::dhcp::Lease>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        acks.clear();
        replaced.clear();
        for p in &mut group {
            acks.append(&mut p.replies);
        }
        let changes = group.iter().flat_map(|p| p.changes.iter());
        let committed = match &shared.script {
            // The script is told what each change replaced, as the store saw it under its lock.
            Some(_) => shared
                .store
                .commit_with(changes.clone(), |_, prior| replaced.push(prior)),
            None => shared.store.commit(changes.clone()),
        };
        if let Err(e) = committed {
            tracing::error!(bridge, error = %e, "lease journal write failed; withholding ACKs");
            continue;
        }
        if let Some(script) = &shared.script {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            tell_script(script, bridge, changes, &replaced, now);
        }
        send_all(&mut sender, socket, bridge, &acks, &mut limiter);
    }
}

/// Sends replies in batches; a failure is logged (rate-limited) and the rest still go.
fn send_all(
    sender: &mut SendBatch,
    socket: &std::net::UdpSocket,
    bridge: &str,
    replies: &[Transmit],
    limiter: &mut LogLimiter,
) {
    let mut datagrams = Vec::with_capacity(replies.len());
    for t in replies {
        match destination(socket, bridge, t) {
            Ok(to) => datagrams.push((to, t.payload.as_slice())),
            Err(e) => send_failed(limiter, bridge, t, &e),
        }
    }
    for (i, e) in sender.send(socket, &datagrams) {
        if let Some((to, _)) = datagrams.get(i) {
            if let Some(held) = limiter.allow("send", Instant::now()) {
                tracing::warn!(bridge, %to, error = %e, suppressed = held, "dhcp send failed");
            }
        }
    }
}

fn send_failed(limiter: &mut LogLimiter, bridge: &str, t: &Transmit, e: &io::Error) {
    if let Some(held) = limiter.allow("send", Instant::now()) {
        tracing::warn!(bridge, to = ?t.to, error = %e, suppressed = held, "dhcp send failed");
    }
}

/// Where a reply goes; for a client with no address yet, writes its neighbour entry first.
fn destination(
    socket: &std::net::UdpSocket,
    bridge: &str,
    t: &Transmit,
) -> io::Result<SocketAddrV4> {
    Ok(match t.to {
        Destination::Relay(giaddr) => SocketAddrV4::new(giaddr, SERVER_PORT),
        Destination::Client(ciaddr) => SocketAddrV4::new(ciaddr, CLIENT_PORT),
        Destination::Hardware { ip, mac } => {
            arp::set_neighbour(socket, bridge, ip, mac)?;
            SocketAddrV4::new(ip, CLIENT_PORT)
        }
        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
    })
}

/// Tells the dhcp-script of committed changes: `replaced` holds, change by change, the lease
/// each one took the place of; only leases still active at `now` count.
fn tell_script<'c>(
    script: &crate::compat::script::ScriptRunner,
    bridge: &str,
    changes: impl Iterator<Item = &'c LeaseChange>,
    replaced: &[Option<crate::dhcp::Lease>],
    now: u64,
) {
    use crate::compat::script::Action;
    for (change, prior) in changes.zip(replaced) {
        let prior = prior.as_ref().filter(|p| p.is_active(now));
        match change {
            LeaseChange::Grant(l) => {
                let renewal = prior.is_some_and(|p| p.mac == l.mac);
                if let (Some(p), false) = (prior, renewal) {
                    script.send(Action::Del, p.clone(), bridge); // the address changed hands
                }
                script.send(
                    if renewal { Action::Old } else { Action::Add },
                    l.clone(),
                    bridge,
                );
            }
            // The store ends a lease only for its holder, so `prior` is that lease.
            LeaseChange::Release { .. } | LeaseChange::Decline { .. } => {
                if let Some(p) = prior {
                    script.send(Action::Del, p.clone(), bridge);
                }
            }
        }
    }
}

fn log_change(bridge: &str, change: &LeaseChange) {
    match change {
        LeaseChange::Release { mac, ip } => tracing::info!(bridge, %mac, %ip, "lease released"),
        LeaseChange::Decline { mac, ip } => {
            tracing::warn!(bridge, %mac, %ip, "client declined its address: another host on the link may be using it")
        }
        LeaseChange::Grant(_) => {}
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
    let mac = packet
        .get(28..34)
        .and_then(MacAddr::from_slice)
        .map(|m| m.to_string())
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
