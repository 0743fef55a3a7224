//! Sending replies from a bridge's socket, in batches: the workers send what needs no
//! durability, the writer the ACKs it made durable.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock for its log limiter

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Instant;

use super::arp;
use super::batch::SendBatch;
use super::engine::{Destination, Transmit};
use crate::ratelimit::LogLimiter;

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// Most datagrams handled per wakeup of one socket (bounds latency, the share of one bridge
/// before the others are served, and the size of one journal write).
pub const BATCH: usize = 64;

/// Sends replies in batches; a failure is logged (rate-limited) and the rest still go.
pub fn send_all(
    sender: &mut SendBatch,
    socket: &UdpSocket,
    bridge: &str,
    replies: &[Transmit],
    limiter: &mut LogLimiter,
) {
    let mut datagrams = Vec::with_capacity(replies.len());
    for t in replies {
        match destination(socket, bridge, t) {
            Ok(to) => datagrams.push((to, t.payload.as_slice())),
            Err(e) => send_failed(limiter, bridge, &format!("{:?}", t.to), &e),
        }
    }
    for (i, e) in sender.send(socket, &datagrams) {
        if let Some((to, _)) = datagrams.get(i) {
            send_failed(limiter, bridge, &to.to_string(), &e);
        }
    }
}

fn send_failed(limiter: &mut LogLimiter, bridge: &str, to: &str, e: &io::Error) {
    if let Some(held) = limiter.allow("send", Instant::now()) {
        tracing::warn!(bridge, to, error = %e, suppressed = held, "dhcp send failed");
    }
}

/// Where a reply goes; for a client with no address yet, writes its neighbour entry first.
fn destination(socket: &UdpSocket, bridge: &str, t: &Transmit) -> io::Result<SocketAddrV4> {
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
