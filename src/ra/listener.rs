//! The router advertisement shell of one bridge: a raw ICMPv6 socket (hop limit 255, joined to
//! ff02::2, filtered to RS and RA, sending from the bridge's link-local address) around an
//! [`Advertiser`]. It waits for the bridge and its link-local address as long as it takes.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::engine::{Advertiser, Output, RaSpec, RaStats, Received};
use crate::netif;
use crate::ratelimit::LogLimiter;
use crate::table::Table;

/// All-nodes multicast.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers multicast.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// `ICMP6_FILTER` socket option (RFC 3542), level IPPROTO_ICMPV6.
const ICMP6_FILTER: libc::c_int = 1;
/// How often the bridge is checked for while it is missing or has no link-local address.
const LINK_POLL: Duration = Duration::from_millis(250);

/// What the server tells a running listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going; the number changes on every table reload.
    Run(u64),
    /// netnode is stopping: send the final RA (router lifetime 0).
    Shutdown,
}

/// Opens the raw ICMPv6 socket of a bridge, bound to its link-local address.
pub fn open(bridge: &str, ifindex: u32, link_local: Ipv6Addr) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(bridge.as_bytes()))?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    s.set_multicast_if_v6(ifindex)?;
    s.join_multicast_v6(&ALL_ROUTERS, ifindex)?;
    set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    // Pass only RS (133) and RA (134): a set bit blocks a type.
    let mut filter = [u32::MAX; 8];
    for t in [133u32, 134] {
        filter[(t >> 5) as usize] &= !(1 << (t & 31));
    }
    // SAFETY: the option value is the 32-byte icmp6_filter struct, valid for the call.
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
        link_local, 0, 0, ifindex,
    )))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn set_int(
    s: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int, valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message with its source and IPv6 hop limit (from the IPV6_HOPLIMIT cmsg).
fn recv_with_hop_limit(s: &Socket, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr, u8)> {
    let mut name = MaybeUninit::<libc::sockaddr_in6>::zeroed();
    let mut control = [0u64; 16];
    let mut iov = [IoSliceMut::new(buf)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg is fully initialised and points at live buffers.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote a sockaddr_in6 (the socket is AF_INET6).
    let src = Ipv6Addr::from(unsafe { name.assume_init() }.sin6_addr.s6_addr);
    let mut hop_limit = 0u8;
    // SAFETY: walking the control buffer with the CMSG macros, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_HOPLIMIT
            {
                let value = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                hop_limit = u8::try_from(value).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, src, hop_limit))
}

fn send(s: &Socket, ifindex: u32, out: &Output) -> io::Result<usize> {
    let (to, payload) = match out {
        Output::Multicast(p) => (ALL_NODES, p),
        Output::Unicast { to, payload } => (*to, payload),
    };
    s.send_to(
        payload,
        &SockAddr::from(SocketAddrV6::new(to, 0, 0, ifindex)),
    )
}

/// Serves router advertisements on `bridge` until its control says stop or the bridge leaves
/// the table (then it retires its prefixes).
pub async fn run(
    bridge: String,
    table: Arc<ArcSwap<Table>>,
    stats: Arc<Mutex<RaStats>>,
    mut control: watch::Receiver<Control>,
) {
    let origin = Instant::now();
    let mut totals = RaStats::default();
    // One pass per appearance of the interface: when it is deleted and recreated, or its MAC
    // or link-local address changes, or the socket fails, netnode waits for it again.
    loop {
        let Some(link) = wait_for_link(&bridge, &table, &mut control).await else {
            return;
        };
        // SAFETY (register): the socket is owned by the AsyncFd and closed only when it drops.
        let socket = match open(&bridge, link.ifindex, link.link_local)
            .and_then(|s| unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(bridge, error = %e, "cannot open the router advertisement socket; retrying");
                tokio::time::sleep(LINK_POLL * 8).await;
                continue;
            }
        };
        let (exit, counted) = serve_link(
            &bridge,
            link,
            socket,
            &table,
            &stats,
            totals,
            &mut control,
            origin,
        )
        .await;
        totals = counted;
        match exit {
            Exit::Stopped => return,
            Exit::LinkChanged => tracing::info!(bridge, "the bridge changed (recreated, new MAC or link-local address); advertising again when it is ready"),
        }
    }
}

/// What an interface pass is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    ifindex: u32,
    link_local: Ipv6Addr,
    mac: crate::table::MacAddr,
}

fn current_link(bridge: &str) -> Option<Link> {
    let ifindex = netif::index(bridge)?;
    Some(Link {
        ifindex,
        link_local: netif::link_local(bridge)?,
        mac: netif::mac(bridge).ok()?,
    })
}

/// Waits for the interface and a usable link-local address: radvd gives up ("not ready");
/// netnode keeps waiting, so a bridge that gets carrier later is still served. `None` when
/// told to stop or when the bridge left the table meanwhile.
async fn wait_for_link(
    bridge: &str,
    table: &ArcSwap<Table>,
    control: &mut watch::Receiver<Control>,
) -> Option<Link> {
    let mut told = false;
    loop {
        table.load().ra_for(bridge)?;
        if let Some(link) = current_link(bridge) {
            return Some(link);
        }
        if !told {
            tracing::info!(bridge, "waiting for the bridge and its IPv6 link-local address (it appears once the bridge has carrier)");
            told = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(LINK_POLL) => {}
            changed = control.changed() => if changed.is_err() || *control.borrow() == Control::Shutdown { return None },
        }
    }
}

enum Exit {
    /// Shut down, or retired because the bridge left the table.
    Stopped,
    /// The interface is no longer the one the socket was opened on.
    LinkChanged,
}

/// How often the interface is checked against the one the socket was opened on.
const LINK_CHECK: Duration = Duration::from_secs(2);

#[allow(clippy::too_many_arguments)]
async fn serve_link(
    bridge: &str,
    link: Link,
    socket: AsyncFd<Socket>,
    table: &ArcSwap<Table>,
    stats: &Mutex<RaStats>,
    before: RaStats,
    control: &mut watch::Receiver<Control>,
    origin: Instant,
) -> (Exit, RaStats) {
    let Link {
        ifindex,
        link_local,
        mac,
    } = link;
    let spec_of = |t: &Table| {
        t.ra_for(bridge).map(|(params, prefixes)| RaSpec {
            params,
            prefixes,
            mac,
            link_local,
        })
    };
    let Some(spec) = spec_of(&table.load()) else {
        return (Exit::Stopped, before);
    };
    let seed =
        u64::from(ifindex) ^ (origin.elapsed().as_nanos() as u64) ^ u64::from(std::process::id());
    let mut adv = Advertiser::new(spec, origin.elapsed(), seed);
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    tracing::info!(bridge, %link_local, prefixes = ?adv.spec().prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "router advertisements on");
    let mut buf = vec![0u8; 2048];
    let mut check = tokio::time::interval(LINK_CHECK);
    let publish = |adv: &Advertiser| {
        let mut total = before;
        total.add(adv.stats());
        *stats.lock().unwrap_or_else(|p| p.into_inner()) = total;
        total
    };
    let exit = loop {
        let due = origin + adv.poll_timeout();
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {
                if let Some(out) = adv.handle_timeout(origin.elapsed()) {
                    report_send(&mut limiter, bridge, send(socket.get_ref(), ifindex, &out));
                }
            }
            _ = check.tick() => {
                if current_link(bridge) != Some(link) {
                    break Exit::LinkChanged;
                }
            }
            ready = socket.readable() => {
                let Ok(mut guard) = ready else { break Exit::LinkChanged };
                for _ in 0..64 {
                    match guard.try_io(|s| recv_with_hop_limit(s.get_ref(), &mut buf)) {
                        Ok(Ok((n, src, hops))) => {
                            let received = adv.handle_icmp(origin.elapsed(), src, hops, buf.get(..n).unwrap_or(&[]));
                            handle_received(&mut limiter, bridge, received, socket.get_ref(), ifindex);
                        }
                        Ok(Err(e)) => {
                            if limiter.allow("recv", Instant::now()).is_some() {
                                tracing::warn!(bridge, error = %e, "receive failed");
                            }
                            break;
                        }
                        Err(_would_block) => break,
                    }
                }
            }
            changed = control.changed() => {
                if changed.is_err() || *control.borrow() == Control::Shutdown {
                    report_send(&mut limiter, bridge, send(socket.get_ref(), ifindex, &adv.shutdown()));
                    tracing::info!(bridge, "sent the final router advertisement (router lifetime 0)");
                    break Exit::Stopped;
                }
                match spec_of(&table.load()) {
                    Some(spec) => {
                        if let Some(out) = adv.update(spec, origin.elapsed()) {
                            tracing::info!(bridge, "withdrawing removed prefixes");
                            report_send(&mut limiter, bridge, send(socket.get_ref(), ifindex, &out));
                        }
                    }
                    None => {
                        report_send(&mut limiter, bridge, send(socket.get_ref(), ifindex, &adv.retire()));
                        tracing::info!(bridge, "no IPv6 network left on the bridge: withdrew its prefixes and default route");
                        break Exit::Stopped;
                    }
                }
            }
        }
        publish(&adv);
    };
    (exit, publish(&adv))
}

fn handle_received(
    limiter: &mut LogLimiter,
    bridge: &str,
    received: Received,
    socket: &Socket,
    ifindex: u32,
) {
    match received {
        Received::Reply(out) => report_send(limiter, bridge, send(socket, ifindex, &out)),
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

fn report_send(limiter: &mut LogLimiter, bridge: &str, result: io::Result<usize>) {
    if let Err(e) = result {
        if let Some(held) = limiter.allow("send", Instant::now()) {
            tracing::warn!(bridge, error = %e, suppressed = held, "sending a router advertisement failed");
        }
    }
}
