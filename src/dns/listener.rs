//! The DNS shell: sockets around the [`Engine`], on one thread with a single-threaded runtime.
//!
//! Every listening address (each network's server address on its bridge, and its IPv6 gateway
//! address) has a UDP socket and a TCP listener, bound to the bridge. UDP over IPv4 is received
//! and answered in batches (`recvmmsg`/`sendmmsg`), as DHCP is. A forwarded query goes out from
//! a fresh UDP socket connected to the upstream (a new random source port each time, and the
//! kernel drops datagrams from anyone else), or over TCP when the client asked over TCP; its
//! task waits for the reply until the engine's timeout, and hands what it gets to the engine,
//! which says whom to answer.

#![allow(clippy::disallowed_methods)] // IO shell: reads the monotonic clock

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::engine::{
    Decision, Delivery, Engine, Forward, Resolution, RxMeta, Waiter, TCP_LIMIT, UPSTREAM_TIMEOUT,
};
use super::stats::Stats;
use super::wire;
use crate::dhcp::batch::{nothing_received, RecvBatch, SendBatch};
use crate::ratelimit::LogLimiter;

/// Datagrams taken per system call.
const BATCH: usize = 64;
/// TCP connections served at once; more are closed at once.
pub const MAX_TCP: usize = 256;
/// A TCP connection with no query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries of one TCP connection waiting for an upstream at once.
const TCP_PIPELINE: usize = 32;

/// Opens a listening UDP socket on `addr`, bound to `bridge`. The address need not be on the
/// bridge yet (IP_FREEBIND): it serves once it is. No SO_REUSEADDR: a port another process
/// holds is refused.
pub fn bind_udp(bridge: &str, addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind_device(Some(bridge.as_bytes()))?;
    free_bind(&s, addr)?;
    dont_fragment(&s, addr)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20));
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBufForce, &(4 << 20));
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Opens a TCP listener on `addr`, bound to `bridge`.
pub fn bind_tcp(bridge: &str, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind_device(Some(bridge.as_bytes()))?;
    free_bind(&s, addr)?;
    s.set_reuse_address(true)?; // TIME_WAIT connections of a previous run
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// DF on every answer whatever the path MTU cache says. Answers fit in 1,280 bytes (the EDNS
/// payload is capped at 1,232), so none is ever fragmented, and a forged ICMP "fragmentation
/// needed" cannot make netnode fragment one (the DNS flag day 2020 advice). It also spares the
/// kernel choosing an IPv4 id per datagram.
fn dont_fragment(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    let (level, name, value) = match addr {
        SocketAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        ),
        SocketAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        ),
    };
    // SAFETY: an open socket, and an int option passed with its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lets the socket bind an address the bridge does not hold yet (dnsmasq's `--bind-dynamic`).
fn free_bind(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => s.set_freebind_v4(true),
        SocketAddr::V6(_) => s.set_freebind_v6(true),
    }
}

/// What the tasks of the DNS thread share.
pub struct Shell {
    engine: RefCell<Engine>,
    origin: Instant,
    /// UDP sockets by id (`Waiter::Udp::socket`); a closed one leaves `None`.
    sockets: RefCell<Vec<Option<Rc<UdpSocket>>>>,
    /// TCP connections waiting for an answer, by connection id.
    tcp_waiters: RefCell<HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>,
    next_conn: Cell<u64>,
    tcp_open: Cell<usize>,
    /// Counted here, published with the engine's counters.
    tcp_refused: Cell<u64>,
    tcp_idle_closed: Cell<u64>,
    /// Where the counters are published for the service's reports.
    pub stats: Arc<Mutex<Stats>>,
    limiter: RefCell<LogLimiter>,
}

impl Shell {
    /// A shell around an engine.
    pub fn new(engine: Engine, stats: Arc<Mutex<Stats>>) -> Rc<Shell> {
        Rc::new(Shell {
            engine: RefCell::new(engine),
            origin: Instant::now(),
            sockets: RefCell::new(Vec::new()),
            tcp_waiters: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            tcp_open: Cell::new(0),
            tcp_refused: Cell::new(0),
            tcp_idle_closed: Cell::new(0),
            stats,
            limiter: RefCell::new(LogLimiter::new(Duration::from_secs(1))),
        })
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The engine, for a reload.
    pub fn engine(&self) -> std::cell::RefMut<'_, Engine> {
        self.engine.borrow_mut()
    }

    /// Publishes the engine's counters.
    pub fn publish(&self) {
        let mut s = *self.engine.borrow().stats();
        s.tcp_refused = self.tcp_refused.get();
        s.tcp_idle_closed = self.tcp_idle_closed.get();
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Registers a UDP socket; its id names it in the engine's waiters.
    pub fn add_socket(&self, socket: Rc<UdpSocket>) -> u32 {
        let mut sockets = self.sockets.borrow_mut();
        let id = sockets
            .iter()
            .position(Option::is_none)
            .unwrap_or(sockets.len());
        match sockets.get_mut(id) {
            Some(slot) => *slot = Some(socket),
            None => sockets.push(Some(socket)),
        }
        id as u32
    }

    /// Forgets a closed socket.
    pub fn remove_socket(&self, id: u32) {
        if let Some(slot) = self.sockets.borrow_mut().get_mut(id as usize) {
            *slot = None;
        }
    }

    fn warn(&self, key: &'static str, what: &str, e: &io::Error) {
        if let Some(held) = self.limiter.borrow_mut().allow(key, Instant::now()) {
            tracing::warn!(error = %e, suppressed = held, "{what}");
        }
    }

    /// Sends answers to waiting clients and sends a retry upstream.
    fn resolve(self: &Rc<Self>, r: Resolution) {
        for Delivery { to, bytes } in r.deliveries {
            match to {
                Waiter::Udp { socket, addr } => {
                    let sock = self
                        .sockets
                        .borrow()
                        .get(socket as usize)
                        .cloned()
                        .flatten();
                    if let Some(sock) = sock {
                        if let Err(e) = sock.try_send_to(&bytes, addr) {
                            self.warn("send", "dns send failed", &e);
                        }
                    }
                }
                Waiter::Tcp { conn } => {
                    if let Some(tx) = self.tcp_waiters.borrow_mut().remove(&conn) {
                        let _ = tx.send(bytes);
                    }
                }
            }
        }
        if let Some(f) = r.retry {
            self.forward(f);
        }
        self.publish();
    }

    /// Starts a forward's task.
    fn forward(self: &Rc<Self>, f: Forward) {
        tokio::task::spawn_local(upstream(self.clone(), f));
    }
}

/// Asks the upstream and hands its reply (or the timeout) to the engine.
async fn upstream(shell: Rc<Shell>, f: Forward) {
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    let result = if f.tcp {
        tokio::time::timeout_at(deadline, ask_tcp(&shell, &f)).await
    } else {
        tokio::time::timeout_at(deadline, ask_udp(&shell, &f)).await
    };
    let r = match result {
        Ok(Some(r)) => r,
        // Timed out, or the socket failed: the engine moves on.
        _ => shell.engine.borrow_mut().handle_timeout(f.token),
    };
    shell.resolve(r);
}

/// UDP from a fresh socket connected to the server; waits for a reply the engine believes.
async fn ask_udp(shell: &Rc<Shell>, f: &Forward) -> Option<Resolution> {
    let local: SocketAddr = match f.server.ip() {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            shell.warn("upstream", "cannot open an upstream socket", &e);
            return None;
        }
    };
    if let Err(e) = sock
        .connect(f.server)
        .await
        .and(sock.send(&f.query).await.map(|_| ()))
    {
        shell.warn("upstream", "cannot send to the upstream", &e);
        return None;
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        let now = shell.now();
        let r = shell.engine.borrow_mut().handle_upstream(
            f.token,
            f.server,
            buf.get(..n).unwrap_or(&[]),
            now,
        );
        if r.settled {
            return Some(r);
        }
    }
}

/// TCP to the server: one query, one reply.
async fn ask_tcp(shell: &Rc<Shell>, f: &Forward) -> Option<Resolution> {
    let mut stream = TcpStream::connect(f.server).await.ok()?;
    let mut msg = (f.query.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&f.query);
    stream.write_all(&msg).await.ok()?;
    let reply = read_message(&mut stream).await.ok()?;
    let now = shell.now();
    let r = shell
        .engine
        .borrow_mut()
        .handle_upstream(f.token, f.server, &reply, now);
    r.settled.then_some(r)
}

/// Reads one length-prefixed DNS message from a TCP stream.
async fn read_message(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Serves one UDP socket until it fails or the task is aborted.
pub async fn serve_udp(shell: Rc<Shell>, id: u32, sock: Rc<UdpSocket>) {
    match sock.local_addr() {
        Ok(SocketAddr::V4(_)) => serve_udp_batched(shell, id, sock).await,
        _ => serve_udp_single(shell, id, sock).await,
    }
}

/// IPv4: many datagrams per system call each way.
async fn serve_udp_batched(shell: Rc<Shell>, id: u32, sock: Rc<UdpSocket>) {
    let mut batch = RecvBatch::new(BATCH);
    let mut sender = SendBatch::new(BATCH);
    // One answer buffer per datagram of a batch, kept from batch to batch.
    let mut answers: Vec<(SocketAddrV4, Vec<u8>)> = (0..BATCH)
        .map(|_| {
            (
                SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
                Vec::with_capacity(512),
            )
        })
        .collect();
    loop {
        if let Err(e) = sock.readable().await {
            shell.warn("recv", "dns socket failed", &e);
            return;
        }
        loop {
            match sock.try_io(Interest::READABLE, || batch.recv_queued(&*sock)) {
                Ok(_) => {}
                Err(e) if nothing_received(&e) => break,
                Err(e) => {
                    shell.warn("recv", "dns receive failed", &e);
                    break;
                }
            }
            let now = shell.now();
            let mut ready = 0;
            {
                let mut engine = shell.engine.borrow_mut();
                for (bytes, rx) in batch.iter() {
                    let Some((to, out)) = answers.get_mut(ready) else {
                        break;
                    };
                    if rx.truncated {
                        continue;
                    }
                    let from = SocketAddr::V4(rx.from);
                    let meta = RxMeta {
                        from,
                        waiter: Waiter::Udp {
                            socket: id,
                            addr: from,
                        },
                    };
                    let decision = engine.handle(meta, bytes, now, out);
                    if engine.log_queries() {
                        log_query(&engine, from, bytes, &decision);
                    }
                    match decision {
                        Decision::Reply => {
                            *to = rx.from;
                            ready += 1;
                        }
                        Decision::Forward(f) => {
                            // Runs once this batch is done and the engine is free again.
                            tokio::task::spawn_local(upstream(shell.clone(), f));
                        }
                        Decision::Wait | Decision::Drop(_) => {}
                    }
                }
            }
            let datagrams: Vec<(SocketAddrV4, &[u8])> = answers
                .iter()
                .take(ready)
                .map(|(a, b)| (*a, b.as_slice()))
                .collect();
            for (_, e) in sender.send(&*sock, &datagrams) {
                shell.warn("send", "dns send failed", &e);
            }
            shell.publish();
        }
    }
}

/// IPv6: a datagram at a time.
async fn serve_udp_single(shell: Rc<Shell>, id: u32, sock: Rc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(512);
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                shell.warn("recv", "dns receive failed", &e);
                return;
            }
        };
        let meta = RxMeta {
            from,
            waiter: Waiter::Udp {
                socket: id,
                addr: from,
            },
        };
        let now = shell.now();
        let decision =
            shell
                .engine
                .borrow_mut()
                .handle(meta, buf.get(..n).unwrap_or(&[]), now, &mut out);
        {
            let engine = shell.engine.borrow();
            if engine.log_queries() {
                log_query(&engine, from, buf.get(..n).unwrap_or(&[]), &decision);
            }
        }
        match decision {
            Decision::Reply => {
                if let Err(e) = sock.try_send_to(&out, from) {
                    shell.warn("send", "dns send failed", &e);
                }
            }
            Decision::Forward(f) => shell.forward(f),
            Decision::Wait | Decision::Drop(_) => {}
        }
        shell.publish();
    }
}

/// Accepts TCP connections, at most [`MAX_TCP`] at once.
pub async fn serve_tcp(shell: Rc<Shell>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                shell.warn("accept", "dns accept failed", &e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shell.tcp_open.get() >= MAX_TCP {
            // Dropped: closed at once.
            shell.tcp_refused.set(shell.tcp_refused.get() + 1);
            shell.publish();
            continue;
        }
        shell.tcp_open.set(shell.tcp_open.get() + 1);
        let shell = shell.clone();
        tokio::task::spawn_local(async move {
            tcp_connection(&shell, stream, peer).await;
            shell.tcp_open.set(shell.tcp_open.get().saturating_sub(1));
        });
    }
}

/// One TCP connection (RFC 7766): every whole query read is handled at once and local answers
/// are written together; forwarded ones are written when they come, in any order. At most
/// [`TCP_PIPELINE`] wait for upstreams; more are not read until one is answered. A query
/// dropped (rate, malformed) closes the connection once the waiting ones are answered.
async fn tcp_connection(shell: &Rc<Shell>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut outbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(512);
    let mut waiting = 0usize;
    let mut reading = true;
    loop {
        let mut used = 0;
        while reading && waiting < TCP_PIPELINE {
            let Some(&[hi, lo]) = inbuf.get(used..used + 2) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let Some(query) = inbuf.get(used + 2..used + 2 + len) else {
                break;
            };
            let conn = shell.next_conn.get();
            shell.next_conn.set(conn + 1);
            let meta = RxMeta {
                from: peer,
                waiter: Waiter::Tcp { conn },
            };
            let now = shell.now();
            let decision = shell.engine.borrow_mut().handle(meta, query, now, &mut out);
            {
                let engine = shell.engine.borrow();
                if engine.log_queries() {
                    log_query(&engine, peer, query, &decision);
                }
            }
            used += 2 + len;
            match decision {
                Decision::Reply => frame(&mut outbuf, &out),
                Decision::Forward(_) | Decision::Wait => {
                    shell.tcp_waiters.borrow_mut().insert(conn, tx.clone());
                    waiting += 1;
                    if let Decision::Forward(f) = decision {
                        shell.forward(f);
                    }
                }
                Decision::Drop(_) => reading = false,
            }
        }
        inbuf.drain(..used);
        shell.publish();
        if !outbuf.is_empty() {
            if wr.write_all(&outbuf).await.is_err() {
                return;
            }
            outbuf.clear();
        }
        if !reading && waiting == 0 {
            return;
        }
        inbuf.reserve(4096);
        tokio::select! {
            got = tokio::time::timeout(TCP_IDLE, rd.read_buf(&mut inbuf)), if reading && waiting < TCP_PIPELINE => {
                match got {
                    // The client is done sending (or gone): answer what waits, then close.
                    Ok(Ok(0)) | Ok(Err(_)) => reading = false,
                    Ok(Ok(_)) => {}
                    Err(_) if waiting == 0 => {
                        shell.tcp_idle_closed.set(shell.tcp_idle_closed.get() + 1);
                        shell.publish();
                        return;
                    }
                    Err(_) => {}
                }
            }
            Some(answer) = rx.recv(), if waiting > 0 => {
                waiting -= 1;
                frame(&mut outbuf, &answer);
            }
            else => return,
        }
    }
}

/// `--log-queries`: a line per query, what it asked and what became of it (dnsmasq writes
/// `query[A] name from ip` and then a line of what it did).
fn log_query(engine: &Engine, from: SocketAddr, bytes: &[u8], decision: &Decision) {
    let (qtype, name) = match wire::parse_query(bytes) {
        Ok(q) => (
            hickory_proto::rr::RecordType::from(q.qtype).to_string(),
            wire::name_text(q.qname),
        ),
        Err(_) => ("?".to_string(), "?".to_string()),
    };
    let what = match decision {
        Decision::Forward(f) => format!("forwarded to {}", f.server),
        Decision::Drop(r) => format!("dropped ({})", r.kind().name()),
        Decision::Reply | Decision::Wait => engine
            .stats()
            .last
            .map_or("answered", |o| o.name())
            .to_string(),
    };
    tracing::info!("query[{qtype}] {name} from {}: {what}", from.ip());
}

/// Appends a DNS message with its TCP length prefix (cut to what the prefix can say).
fn frame(outbuf: &mut Vec<u8>, answer: &[u8]) {
    let answer = answer.get(..TCP_LIMIT).unwrap_or(answer);
    outbuf.extend_from_slice(&(answer.len() as u16).to_be_bytes());
    outbuf.extend_from_slice(answer);
}
