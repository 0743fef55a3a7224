//! `netnode bench`: a DHCP load generator, and `--null`, a responder with no logic.
//!
//! The generator plays relay agents, as perfdhcp does: each thread owns a relay address (its
//! giaddr), sends DISCOVERs for the table's MACs by unicast to the server, answers each OFFER
//! with a REQUEST and counts the ACKs, keeping a window of exchanges in flight. With
//! [`Cycle::Full`] each client then renews (REQUEST with ciaddr) and releases its lease. Threads use
//! separate relay addresses so that the kernel hands each its own replies. It reports the
//! achieved DORA rate, the exchanges that got no answer, and latency percentiles.
//!
//! The null responder answers every DISCOVER with an OFFER and every REQUEST with an ACK, copied
//! from the request with no table, no journal and no options: what the kernel path can carry.

#![allow(clippy::disallowed_methods)] // a load tool: it reads the clock

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use socket2::{Domain, Protocol, Socket, Type};

use crate::dhcp::batch::{nothing_received, RecvBatch, SendBatch};
use crate::dhcp::wire::{self, RequestBuilder};
use crate::table::MacAddr;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Interface the relays send on.
    pub iface: String,
    /// Relay addresses (one thread each), on `iface`.
    pub relays: Vec<Ipv4Addr>,
    /// The server's address.
    pub server: Ipv4Addr,
    /// The clients' MACs (cycled).
    pub macs: Vec<MacAddr>,
    /// Exchanges to start per second in all (0: as fast as the window allows).
    pub rate: u32,
    /// How long to run.
    pub duration: Duration,
    /// Exchanges in flight per thread.
    pub window: usize,
    /// An exchange with no ACK after this long counts as dropped.
    pub timeout: Duration,
    /// What each client does.
    pub cycle: Cycle,
}

/// One client's exchange in a load run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cycle {
    /// DISCOVER, OFFER, REQUEST, ACK.
    #[default]
    Dora,
    /// DORA, then a renewal (REQUEST with ciaddr, ACK), then a RELEASE (no answer): three
    /// lease changes per cycle for the server to make durable.
    Full,
}

/// What one run achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Exchanges started.
    pub started: u64,
    /// Exchanges completed (ACK received).
    pub completed: u64,
    /// Exchanges that timed out.
    pub dropped: u64,
    /// Completed exchanges (DORAs, or full cycles) per second.
    pub rate: f64,
    /// Latency percentiles of completed exchanges (DISCOVER sent to ACK received), microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// What each exchange was.
    pub cycle: Cycle,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ratio = if self.started == 0 {
            0.0
        } else {
            self.dropped as f64 / self.started as f64 * 100.0
        };
        write!(
            f,
            "{}={:.0} started={} completed={} dropped={} drop_pct={:.2} p50_us={} p99_us={} p999_us={}",
            match self.cycle {
                Cycle::Dora => "dora_per_s",
                Cycle::Full => "cycles_per_s",
            },
            self.rate,
            self.started,
            self.completed, self.dropped, ratio, self.p50_us, self.p99_us, self.p999_us
        )
    }
}

pub(crate) fn relay_socket(iface: &str, addr: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(iface.as_bytes()))?;
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&SocketAddr::from((addr, 67)).into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(1)))?;
    Ok(s)
}

/// Runs the load and returns what it achieved.
pub fn run(cfg: &LoadConfig) -> io::Result<LoadReport> {
    if cfg.macs.len() < cfg.relays.len() || cfg.relays.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no relay addresses, or fewer MACs than relays (each thread needs its own clients)",
        ));
    }
    let threads = cfg.relays.len();
    let mut handles = Vec::new();
    for (t, relay) in cfg.relays.iter().enumerate() {
        let socket = relay_socket(&cfg.iface, *relay)?;
        let macs: Vec<MacAddr> = cfg.macs.iter().skip(t).step_by(threads).copied().collect();
        let cfg = cfg.clone();
        let relay = *relay;
        handles.push(std::thread::spawn(move || {
            drive(&cfg, socket, relay, macs, t as u32, threads as u32)
        }));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for h in handles {
        let (r, l) = h
            .join()
            .map_err(|_| io::Error::other("a load thread panicked"))??;
        report.started += r.started;
        report.completed += r.completed;
        report.dropped += r.dropped;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    report.rate = report.completed as f64 / cfg.duration.as_secs_f64();
    report.cycle = cfg.cycle;
    report.p50_us = pct(0.50);
    report.p99_us = pct(0.99);
    report.p999_us = pct(0.999);
    Ok(report)
}

struct Flight {
    mac: MacAddr,
    started: Instant,
    stage: Stage,
}

/// Where a client is in its cycle: what it sent last and waits to have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Discovered,
    Requested,
    Renewed,
}

/// One thread's loop: send what is due (new DISCOVERs up to the window and the rate, and the
/// REQUESTs that answer OFFERs) in one `sendmmsg`, then take the replies that are there in one
/// `recvmmsg`, waiting (up to a millisecond) only when there was nothing to send.
fn drive(
    cfg: &LoadConfig,
    socket: UdpSocket,
    relay: Ipv4Addr,
    macs: Vec<MacAddr>,
    thread: u32,
    threads: u32,
) -> io::Result<(LoadReport, Vec<u64>)> {
    let server = SocketAddrV4::new(cfg.server, 67);
    let mut report = LoadReport::default();
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut flights: HashMap<u32, Flight> = HashMap::with_capacity(cfg.window * 2);
    let mut next_xid = thread.wrapping_mul(0x1000_0000) | 1;
    let mut next_mac = 0usize;
    let start = Instant::now();
    let end = start + cfg.duration;
    let per_thread_rate = f64::from(cfg.rate) / f64::from(threads);
    let mut rx = RecvBatch::new(BATCH);
    let mut tx = SendBatch::new(BATCH);
    let mut due: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut last_sweep = start;
    while Instant::now() < end {
        // Start exchanges up to the window and the rate.
        let allowed = if cfg.rate == 0 {
            u64::MAX
        } else {
            (start.elapsed().as_secs_f64() * per_thread_rate) as u64
        };
        while flights.len() < cfg.window && report.started < allowed && due.len() < BATCH {
            let Some(&mac) = next_mac.checked_rem(macs.len()).and_then(|i| macs.get(i)) else {
                break;
            };
            next_mac += 1;
            let xid = next_xid;
            next_xid = next_xid.wrapping_add(1);
            due.push(
                RequestBuilder::new(MessageType::Discover, mac, xid)
                    .relayed_by(relay)
                    .option(55, PARAMETER_REQUEST_LIST)
                    .build(),
            );
            flights.insert(
                xid,
                Flight {
                    mac,
                    started: Instant::now(),
                    stage: Stage::Discovered,
                },
            );
            report.started += 1;
        }
        let sent_any = !due.is_empty();
        let datagrams: Vec<(SocketAddrV4, &[u8])> =
            due.iter().map(|p| (server, p.as_slice())).collect();
        if let Some((_, e)) = tx.send(&socket, &datagrams).into_iter().next() {
            return Err(e);
        }
        due.clear();
        // Take the replies that are there; wait for one only when there was nothing to send.
        let got = if sent_any {
            rx.recv_queued(&socket)
        } else {
            rx.recv(&socket)
        };
        match got {
            Ok(_) => {}
            Err(e) if nothing_received(&e) => {}
            Err(e) => return Err(e),
        }
        for (reply, _) in rx.iter() {
            let Some((xid, kind, yiaddr)) = reply_fields(reply) else {
                continue;
            };
            let Some(f) = flights.get_mut(&xid) else {
                continue;
            };
            match (kind, f.stage) {
                (2, Stage::Discovered) => {
                    f.stage = Stage::Requested;
                    due.push(
                        RequestBuilder::new(MessageType::Request, f.mac, xid)
                            .relayed_by(relay)
                            .option(50, &yiaddr.octets())
                            .option(54, &cfg.server.octets())
                            .build(),
                    );
                }
                (5, Stage::Requested) if cfg.cycle == Cycle::Full => {
                    f.stage = Stage::Renewed;
                    due.push(
                        RequestBuilder::new(MessageType::Request, f.mac, xid)
                            .relayed_by(relay)
                            .ciaddr(yiaddr)
                            .build(),
                    );
                }
                (5, Stage::Requested) | (5, Stage::Renewed) => {
                    if f.stage == Stage::Renewed {
                        due.push(
                            RequestBuilder::new(MessageType::Release, f.mac, xid)
                                .relayed_by(relay)
                                .ciaddr(yiaddr)
                                .option(54, &cfg.server.octets())
                                .build(),
                        );
                    }
                    latencies.push(f.started.elapsed().as_micros() as u64);
                    flights.remove(&xid);
                    report.completed += 1;
                }
                _ => {}
            }
        }
        if last_sweep.elapsed() > Duration::from_millis(20) {
            let timeout = cfg.timeout;
            let before = flights.len();
            flights.retain(|_, f| f.started.elapsed() < timeout);
            report.dropped += (before - flights.len()) as u64;
            last_sweep = Instant::now();
        }
    }
    // The RELEASEs (and REQUESTs) the last replies asked for.
    let datagrams: Vec<(SocketAddrV4, &[u8])> =
        due.iter().map(|p| (server, p.as_slice())).collect();
    if let Some((_, e)) = tx.send(&socket, &datagrams).into_iter().next() {
        return Err(e);
    }
    // What is still in flight at the end had its chance only if it is older than the timeout.
    report.dropped += flights
        .values()
        .filter(|f| f.started.elapsed() >= cfg.timeout)
        .count() as u64;
    Ok((report, latencies))
}

/// What the load tools' clients ask for (option 55), as a nova instance's client does.
pub(crate) const PARAMETER_REQUEST_LIST: &[u8] = &[1, 3, 6, 12, 15, 28, 51, 54];

/// Datagrams per system call in the load generator.
const BATCH: usize = 64;

/// xid, message type (option 53) and yiaddr of a reply, read without a full decode.
pub(crate) fn reply_fields(p: &[u8]) -> Option<(u32, u8, Ipv4Addr)> {
    if p.first() != Some(&2) {
        return None;
    }
    let xid = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
    let yiaddr = Ipv4Addr::from(<[u8; 4]>::try_from(p.get(16..20)?).ok()?);
    Some((xid, wire::message_type_of(p)?, yiaddr))
}

/// The null responder: serves `iface` on port 67 until `stop`, answering DISCOVER with OFFER
/// and REQUEST with ACK of a fixed address, to the relay (or broadcast), with no logic.
///
/// Its replies carry the same options as netnode's answer to a nova instance (mask, router,
/// hostname, domain, broadcast, lease, renewal and rebinding times, server id), canned once:
/// a load tool parses every option it is given, so a reply with fewer options would measure a
/// lighter load than the one the real servers carry.
pub fn null_responder(iface: &str, server: Ipv4Addr, stop: Arc<AtomicBool>) -> io::Result<()> {
    let socket: UdpSocket = crate::dhcp::listener::bind(iface, 67)?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 1500];
    let offer_ip = Ipv4Addr::from(u32::from(server) + 100);
    let offer = canned_options(server, 2);
    let ack = canned_options(server, 5);
    let mut out = Vec::with_capacity(wire::HEADER_LEN + offer.len().max(ack.len()));
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if nothing_received(&e) => continue,
            Err(e) => return Err(e),
        };
        let Some(req) = buf.get(..n) else { continue };
        let options = match request_type(req) {
            Some(1) => &offer,
            Some(3) => &ack,
            _ => continue,
        };
        let (Some(head), Some(giaddr)) = (
            req.get(..wire::HEADER_LEN),
            req.get(24..28).and_then(|g| <[u8; 4]>::try_from(g).ok()),
        ) else {
            continue;
        };
        out.clear();
        out.extend_from_slice(head);
        out.extend_from_slice(options);
        if let Some(op) = out.first_mut() {
            *op = 2;
        }
        if let Some(yiaddr) = out.get_mut(16..20) {
            yiaddr.copy_from_slice(&offer_ip.octets());
        }
        let giaddr = Ipv4Addr::from(giaddr);
        let to = if giaddr.is_unspecified() {
            SocketAddr::from((Ipv4Addr::BROADCAST, 68))
        } else {
            SocketAddr::from((giaddr, 67))
        };
        socket.send_to(&out, to)?;
    }
    Ok(())
}

/// The options of the null responder's reply of type `kind` (2 OFFER, 5 ACK), after the magic
/// cookie, to the end option, padded to a 300-byte message as netnode pads its own.
fn canned_options(server: Ipv4Addr, kind: u8) -> Vec<u8> {
    let s = server.octets();
    let mut o = Vec::new();
    for (code, value) in [
        (1u8, &[255, 255, 255, 0][..]),
        (3, &s[..]),
        (12, b"vm-null"),
        (15, b"novalocal"),
        (28, &[s[0], s[1], s[2], 255]),
        (51, &86_400u32.to_be_bytes()),
        (53, &[kind]),
        (54, &s[..]),
        (58, &43_200u32.to_be_bytes()),
        (59, &75_600u32.to_be_bytes()),
    ] {
        o.push(code);
        o.push(value.len() as u8);
        o.extend_from_slice(value);
    }
    o.push(255);
    o.resize(o.len().max(300 - wire::HEADER_LEN), 0);
    o
}

fn request_type(p: &[u8]) -> Option<u8> {
    (p.first() == Some(&1))
        .then(|| wire::message_type_of(p))
        .flatten()
}
