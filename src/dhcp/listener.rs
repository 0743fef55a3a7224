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
    // Room for bursts (boot storms, load tests); the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
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
        let mut changes: Vec<LeaseChange> = Vec::new();
        let mut sends: Vec<(Transmit, bool)> = Vec::with_capacity(packets.len());
        for (packet, from) in &packets {
            match engine.handle(&table, RxMeta { bridge: &bridge }, packet, now) {
                Decision::Reply {
                    transmit, lease, ..
                } => {
                    let durable = lease.is_some();
                    changes.extend(lease);
                    sends.push((transmit, durable));
                }
                Decision::Record(change) => {
                    log_change(&bridge, &change);
                    changes.push(change);
                }
                Decision::Drop(reason) => log_drop(&mut limiter, &bridge, reason, packet, *from),
            }
        }
        // What each change replaces, for the script's add/old/del.
        let before: Vec<Option<crate::dhcp::Lease>> = match &shared.script {
            Some(_) => changes
                .iter()
                .map(|c| shared.store.get(c.key()).filter(|l| l.is_active(now)))
                .collect(),
            None => Vec::new(),
        };
        let committed = match shared.store.commit(&changes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(bridge, error = %e, "lease journal write failed; withholding ACKs");
                false
            }
        };
        if let (Some(script), true) = (&shared.script, committed) {
            tell_script(script, &bridge, &changes, &before);
        }
        for (transmit, needs_commit) in sends {
            if needs_commit && !committed {
                continue;
            }
            if let Err(e) = send(&socket, &bridge, &transmit).await {
                if let Some(held) = limiter.allow("send", Instant::now()) {
                    tracing::warn!(bridge, to = ?transmit.to, error = %e, suppressed = held, "dhcp send failed");
                }
            }
        }
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
    }
    *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = *engine.stats();
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
