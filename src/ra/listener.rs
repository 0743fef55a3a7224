//! The router advertisement socket of one bridge: a raw ICMPv6 socket (hop limit 255, joined to
//! ff02::2, filtered to RS and RA, sending from the bridge's link-local address), the task that
//! reads it, and sending. The [service](super::service) drives one [`Advertiser`] per bridge.
//!
//! [`Advertiser`]: super::Advertiser

use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::engine::Output;
use crate::netif;
use crate::table::MacAddr;

/// All-nodes multicast.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers multicast.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// `ICMP6_FILTER` socket option (RFC 3542), level IPPROTO_ICMPV6.
const ICMP6_FILTER: libc::c_int = 1;
/// Largest ICMPv6 message read; longer ones are cut and then fail to parse.
const RECEIVE_BUFFER: usize = 2048;

/// The interface a socket is opened on: when any of it changes, the socket is opened again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Its usable link-local address (the source of every RA).
    pub link_local: Ipv6Addr,
    /// Its MAC (the source link-layer address option).
    pub mac: MacAddr,
}

impl Link {
    /// The interface as it is now; `None` while it is missing or has no usable link-local
    /// address (a fresh bridge gets one once it has carrier, after duplicate address detection).
    pub fn current(bridge: &str) -> Option<Link> {
        Some(Link {
            ifindex: netif::index(bridge)?,
            link_local: netif::link_local(bridge)?,
            mac: netif::mac(bridge).ok()?,
        })
    }
}

/// Opens the raw ICMPv6 socket of a bridge, bound to its link-local address.
pub fn open(bridge: &str, link: Link) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(bridge.as_bytes()))?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    s.set_multicast_if_v6(link.ifindex)?;
    s.join_multicast_v6(&ALL_ROUTERS, link.ifindex)?;
    setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true)?;
    // Pass only RS (133) and RA (134): a set bit blocks a type.
    let mut filter = [u32::MAX; 8];
    for t in [133u32, 134] {
        if let Some(word) = filter.get_mut((t >> 5) as usize) {
            *word &= !(1 << (t & 31));
        }
    }
    // SAFETY: the option value is the 32-byte icmp6_filter struct, valid for the call. (No safe
    // wrapper exists for ICMP6_FILTER.)
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    s.bind(&SockAddr::from(SocketAddrV6::new(
        link.link_local,
        0,
        0,
        link.ifindex,
    )))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Receives one message with its source and IPv6 hop limit (from the IPV6_HOPLIMIT cmsg).
fn recv_with_hop_limit(s: &Socket, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr, u8)> {
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let src = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
    let mut hop_limit = 0u8;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv6HopLimit(h) = c {
            hop_limit = u8::try_from(h).unwrap_or(0);
        }
    }
    Ok((msg.bytes, src, hop_limit))
}

/// Sends an RA from the bridge's socket.
pub fn send(s: &Socket, ifindex: u32, out: &Output) -> io::Result<usize> {
    let (to, payload) = match out {
        Output::Multicast(p) => (ALL_NODES, p),
        Output::Unicast { to, payload } => (*to, payload),
    };
    s.send_to(
        payload,
        &SockAddr::from(SocketAddrV6::new(to, 0, 0, ifindex)),
    )
}

/// What a reader task hands the service.
#[derive(Debug)]
pub enum Input {
    /// A message received on a bridge's socket.
    Message {
        /// The bridge.
        bridge: Arc<str>,
        /// Which of the bridge's sockets (a socket replaced since is ignored).
        socket: u64,
        /// Its source.
        src: Ipv6Addr,
        /// Its IPv6 hop limit.
        hop_limit: u8,
        /// The ICMPv6 message.
        bytes: Vec<u8>,
    },
    /// The socket failed and its reader stopped.
    Closed {
        /// The bridge.
        bridge: Arc<str>,
        /// Which of its sockets.
        socket: u64,
        /// Why.
        error: io::Error,
    },
}

/// Reads a bridge's socket until it fails or the receiver is gone, handing each message on.
/// Parked in the runtime while nothing arrives: an idle bridge costs no wakeup.
pub async fn read(
    bridge: Arc<str>,
    id: u64,
    socket: Arc<AsyncFd<Socket>>,
    to: mpsc::Sender<Input>,
) {
    if let Some(error) = receive(&bridge, id, &socket, &to).await {
        let _ = to
            .send(Input::Closed {
                bridge,
                socket: id,
                error,
            })
            .await;
    }
}

/// The receive loop of [`read`]: the socket's error, or `None` when the receiver is gone.
async fn receive(
    bridge: &Arc<str>,
    id: u64,
    socket: &AsyncFd<Socket>,
    to: &mpsc::Sender<Input>,
) -> Option<io::Error> {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    loop {
        let mut guard = match socket.readable().await {
            Ok(g) => g,
            Err(error) => return Some(error),
        };
        // A bounded number per wakeup, so a flood shares the runtime.
        for _ in 0..64 {
            match guard.try_io(|s| recv_with_hop_limit(s.get_ref(), &mut buf)) {
                Ok(Ok((n, src, hop_limit))) => {
                    let message = Input::Message {
                        bridge: bridge.clone(),
                        socket: id,
                        src,
                        hop_limit,
                        bytes: buf.get(..n).unwrap_or(&[]).to_vec(),
                    };
                    if to.send(message).await.is_err() {
                        return None;
                    }
                }
                Ok(Err(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // A control message was cut: the message itself is dropped, the socket is fine.
                }
                Ok(Err(error)) => return Some(error),
                Err(_would_block) => break,
            }
        }
    }
}
