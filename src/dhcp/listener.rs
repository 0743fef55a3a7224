//! The DHCP listener of one bridge: the thin IO shell around [`Engine`].
//!
//! Each wakeup: drain up to [`BATCH`] datagrams, read the clock once, ask the engine about
//! each, make the batch's lease changes durable with one journal write and one fdatasync,
//! then send the replies. An ACK whose lease could not be made durable is not sent.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::arp;
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

/// Serves one bridge until `shutdown` turns true.
pub async fn run(
    bridge: String,
    socket: UdpSocket,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    // Group commit: lease changes and the ACKs that announce them go to a writer task, which
    // makes everything queued durable with one write and one fdatasync, then sends those ACKs.
    // The receive loop never waits for the disk, so under load one fsync covers many batches.
    let (commit_tx, commit_rx) = tokio::sync::mpsc::channel::<Pending>(COMMIT_QUEUE);
    let writer = tokio::spawn(write_and_send(
        bridge.clone(),
        socket.clone(),
        shared.clone(),
        commit_rx,
    ));
    let mut engine = Engine::new();
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    let mut buf = vec![0u8; 65_536];
    let mut packets: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::error!(bridge, error = %e, "dhcp socket failed");
                    break;
                }
            }
        }
        packets.clear();
        while packets.len() < BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => packets.push((buf.get(..n).unwrap_or(&[]).to_vec(), from)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(bridge, error = %e, "dhcp receive failed");
                    break;
                }
            }
        }
        if packets.is_empty() {
            continue;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let table = shared.table.load();
        let mut pending = Pending::default();
        for (packet, from) in &packets {
            let holders = super::store::Holders {
                store: &shared.store,
                now,
            };
            match engine.handle_with_leases(
                &table,
                RxMeta { bridge: &bridge },
                packet,
                now,
                &holders,
            ) {
                Decision::Reply {
                    transmit,
                    lease: Some(change),
                    ..
                } => {
                    pending.changes.push(change);
                    pending.replies.push(transmit);
                }
                Decision::Reply {
                    transmit,
                    lease: None,
                    ..
                } => {
                    // OFFER, NAK, ACK to INFORM: nothing to make durable.
                    send_logged(&socket, &bridge, &transmit, &mut limiter).await;
                }
                Decision::Record(change) => {
                    log_change(&bridge, &change);
                    pending.changes.push(change);
                }
                Decision::Drop(reason) => log_drop(&mut limiter, &bridge, reason, packet, *from),
            }
        }
        if !pending.changes.is_empty() && commit_tx.send(pending).await.is_err() {
            tracing::error!(bridge, "the lease writer stopped; stopping the listener");
            break;
        }
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
    }
    drop(commit_tx);
    let _ = writer.await;
    *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
}

/// Batches waiting for the writer; bounds memory and pushes back on the receive loop.
const COMMIT_QUEUE: usize = 64;

/// Lease changes of one receive batch, and the ACKs to send once they are durable.
#[derive(Default)]
struct Pending {
    changes: Vec<LeaseChange>,
    replies: Vec<Transmit>,
    before: Vec<Option<crate::dhcp::Lease>>,
}

/// For the script's add/old/del: the lease each change replaces, in the order the changes are
/// made (a later change in the group sees the earlier ones, not the store as it was).
fn what_each_change_replaces(store: &LeaseStore, group: &mut [Pending]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut overlay: std::collections::HashMap<Ipv4Addr, Option<crate::dhcp::Lease>> =
        std::collections::HashMap::new();
    for p in group.iter_mut() {
        p.before = p
            .changes
            .iter()
            .map(|c| {
                let ip = c.key();
                let prior = match overlay.get(&ip) {
                    Some(known) => known.clone(),
                    None => store.get(ip).filter(|l| l.is_active(now)),
                };
                let after = match c {
                    LeaseChange::Grant(l) => Some(l.clone()),
                    LeaseChange::Release { mac, .. } | LeaseChange::Decline { mac, .. } => {
                        prior.clone().filter(|l| l.mac != *mac)
                    }
                };
                overlay.insert(ip, after);
                prior
            })
            .collect();
    }
}

/// The writer: takes every batch that is queued, makes them durable together, then sends
/// their ACKs (or withholds them if the journal could not be written).
async fn write_and_send(
    bridge: String,
    socket: Arc<UdpSocket>,
    shared: Shared,
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
) {
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        if shared.script.is_some() {
            what_each_change_replaces(&shared.store, &mut group);
        }
        let changes: Vec<LeaseChange> = group
            .iter()
            .flat_map(|p| p.changes.iter().cloned())
            .collect();
        let store = shared.store.clone();
        let committed = match tokio::task::spawn_blocking(move || store.commit(&changes)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(bridge, error = %e, "lease journal write failed; withholding ACKs");
                false
            }
            Err(e) => {
                tracing::error!(bridge, error = %e, "lease journal task failed; withholding ACKs");
                false
            }
        };
        if !committed {
            continue;
        }
        for p in &group {
            if let Some(script) = &shared.script {
                tell_script(script, &bridge, &p.changes, &p.before);
            }
            for t in &p.replies {
                send_logged(&socket, &bridge, t, &mut limiter).await;
            }
        }
    }
}

async fn send_logged(socket: &UdpSocket, bridge: &str, t: &Transmit, limiter: &mut LogLimiter) {
    if let Err(e) = send(socket, bridge, t).await {
        if let Some(held) = limiter.allow("send", Instant::now()) {
            tracing::warn!(bridge, to = ?t.to, error = %e, suppressed = held, "dhcp send failed");
        }
    }
}

async fn send(socket: &UdpSocket, bridge: &str, t: &Transmit) -> io::Result<usize> {
    let to = match t.to {
        Destination::Relay(giaddr) => SocketAddrV4::new(giaddr, SERVER_PORT),
        Destination::Client(ciaddr) => SocketAddrV4::new(ciaddr, CLIENT_PORT),
        Destination::Hardware { ip, mac } => {
            arp::set_neighbour(socket, bridge, ip, mac)?;
            SocketAddrV4::new(ip, CLIENT_PORT)
        }
        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
    };
    socket.send_to(&t.payload, to).await
}

fn tell_script(
    script: &crate::compat::script::ScriptRunner,
    bridge: &str,
    changes: &[LeaseChange],
    before: &[Option<crate::dhcp::Lease>],
) {
    use crate::compat::script::Action;
    for (change, prior) in changes.iter().zip(before) {
        match change {
            LeaseChange::Grant(l) => {
                let renewal = prior.as_ref().is_some_and(|p| p.mac == l.mac);
                if let (Some(p), false) = (prior, renewal) {
                    script.send(Action::Del, p.clone(), bridge); // the address changed hands
                }
                script.send(
                    if renewal { Action::Old } else { Action::Add },
                    l.clone(),
                    bridge,
                );
            }
            LeaseChange::Release { mac, .. } | LeaseChange::Decline { mac, .. } => {
                if let Some(p) = prior.as_ref().filter(|p| p.mac == *mac) {
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
        DropReason::RateLimited => {
            tracing::warn!(bridge, %from, mac, suppressed = held, "client over its request rate; dropping")
        }
        other => {
            tracing::debug!(bridge, %from, mac, reason = other.name(), suppressed = held, "dhcp request not answered")
        }
    }
}
