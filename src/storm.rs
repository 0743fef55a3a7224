//! `netnode storm`: a boot storm, measured from the create to the first DHCP ACK. One thread
//! creates instances, through netnode's manager (in transactions of `batch` servers) or nova's
//! way (rewrite the dnsmasq hosts file and SIGHUP the server, once per instance); another plays
//! a relay agent that sends each new instance's DISCOVER at once and again every `retry` until
//! it is ACKed. It reports creates per second and the create-to-ACK latency.

#![allow(clippy::disallowed_methods)] // a load tool: it reads the clock

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;

use crate::dhcp::wire::RequestBuilder;
use crate::manager::server::ServerCreate;
use crate::manager::{Manager, Settings};
use crate::table::MacAddr;

/// How instances are created.
#[derive(Debug, Clone)]
pub enum Creator {
    /// netnode's manager on this database, `batch` servers per transaction.
    Manager {
        /// The database.
        database: PathBuf,
        /// Servers per transaction.
        batch: u32,
    },
    /// nova's way: the hosts file rewritten whole and the server HUPed, per instance.
    HostsFile {
        /// The dnsmasq hosts file the server reads.
        path: PathBuf,
        /// The server's pid.
        pid: i32,
        /// The network the addresses come from (from its `.10`).
        network: Ipv4Addr,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// How instances are created.
    pub creator: Creator,
    /// How many.
    pub instances: u32,
    /// Creates per second (0: as fast as they go).
    pub rate: u32,
    /// The interface the relay agent sends on.
    pub iface: String,
    /// The relay agent's address (in the served network).
    pub relay: Ipv4Addr,
    /// The DHCP server.
    pub server: Ipv4Addr,
    /// A DISCOVER or REQUEST unanswered this long is sent again.
    pub retry: Duration,
    /// An instance not ACKed this long after its create counts as lost.
    pub timeout: Duration,
}

/// What a storm achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StormReport {
    /// Instances created.
    pub created: u64,
    /// Creates per second, over the creating phase.
    pub creates_per_second: f64,
    /// Instances ACKed.
    pub acked: u64,
    /// Instances never ACKed within the timeout.
    pub lost: u64,
    /// Create-to-ACK latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "created={} creates_per_s={:.0} acked={} lost={} create_to_ack_p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
            self.created,
            self.creates_per_second,
            self.acked,
            self.lost,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// One created instance, handed to the client thread.
struct Created {
    mac: MacAddr,
    at: Instant,
}

/// Runs the storm.
pub fn run(cfg: &StormConfig) -> io::Result<StormReport> {
    let socket = crate::loadgen::relay_socket(&cfg.iface, cfg.relay)?;
    let (tx, rx) = mpsc::channel::<Created>();
    let creator_cfg = cfg.clone();
    let creator = std::thread::spawn(move || create(&creator_cfg, tx));
    let latencies = follow(cfg, &socket, rx)?;
    let (created, elapsed) = creator
        .join()
        .map_err(|_| io::Error::other("the creating thread panicked"))??;
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(StormReport {
        created,
        creates_per_second: created as f64 / elapsed.as_secs_f64().max(1e-9),
        acked: ms.len() as u64,
        lost: created.saturating_sub(ms.len() as u64),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    })
}

/// The creating thread: returns how many it created and how long that took.
fn create(cfg: &StormConfig, tx: mpsc::Sender<Created>) -> io::Result<(u64, Duration)> {
    let start = Instant::now();
    let mut created = 0u64;
    let pace = |created: u64| {
        if cfg.rate > 0 {
            let due = start + Duration::from_secs_f64(created as f64 / f64::from(cfg.rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    };
    match &cfg.creator {
        Creator::Manager { database, batch } => {
            let mut m = Manager::open(Settings::with_database(database.clone()))
                .map_err(io::Error::other)?;
            let tag = std::process::id();
            while created < u64::from(cfg.instances) {
                pace(created);
                let count = (*batch).max(1).min(cfg.instances - created as u32);
                let made = m
                    .server_create(&ServerCreate {
                        name: format!("storm-{tag}-{created}"),
                        project: "storm".into(),
                        networks: Vec::new(),
                        count,
                        security_groups: Vec::new(),
                        host: None,
                    })
                    .map_err(io::Error::other)?;
                let at = Instant::now();
                for s in made {
                    for nic in s.addresses {
                        let mac = nic.mac.parse().map_err(io::Error::other)?;
                        let _ = tx.send(Created { mac, at });
                    }
                }
                created += u64::from(count);
            }
        }
        Creator::HostsFile { path, pid, network } => {
            let mut lines = String::new();
            let base = u32::from(*network) + 10;
            while created < u64::from(cfg.instances) {
                pace(created);
                let i = created as u32;
                let mac = MacAddr([0xfa, 0x16, 0x3e, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
                if !lines.is_empty() {
                    lines.push('\n');
                }
                lines.push_str(&format!(
                    "{mac},storm-{i}.novalocal,{}",
                    Ipv4Addr::from(base + i)
                ));
                // nova's write_to_file: open, truncate, write; then kill -HUP.
                std::fs::File::create(path)?.write_all(lines.as_bytes())?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(io::Error::from)?;
                let _ = tx.send(Created {
                    mac,
                    at: Instant::now(),
                });
                created += 1;
            }
        }
    }
    Ok((created, start.elapsed()))
}

/// Where an instance's exchange is.
struct Pending {
    created: Instant,
    xid: u32,
    /// The address offered (REQUEST sent), if any.
    offered: Option<Ipv4Addr>,
    sent: Instant,
}

/// The client thread: DORA for every created instance; the create-to-ACK latencies.
fn follow(
    cfg: &StormConfig,
    socket: &std::net::UdpSocket,
    rx: mpsc::Receiver<Created>,
) -> io::Result<Vec<Duration>> {
    let server = SocketAddrV4::new(cfg.server, 67);
    let mut pending: HashMap<MacAddr, Pending> = HashMap::new();
    let mut by_xid: HashMap<u32, MacAddr> = HashMap::new();
    let mut latencies = Vec::new();
    let mut next_xid = 0x5700_0000u32;
    let mut creating = true;
    let mut buf = [0u8; 1500];
    let send = |p: &Pending, mac: MacAddr| -> io::Result<()> {
        let packet = match p.offered {
            None => RequestBuilder::new(MessageType::Discover, mac, p.xid)
                .relayed_by(cfg.relay)
                .option(55, crate::loadgen::PARAMETER_REQUEST_LIST)
                .build(),
            Some(a) => RequestBuilder::new(MessageType::Request, mac, p.xid)
                .relayed_by(cfg.relay)
                .option(50, &a.octets())
                .option(54, &cfg.server.octets())
                .build(),
        };
        socket.send_to(&packet, server).map(drop)
    };
    while creating || !pending.is_empty() {
        // New instances: their DISCOVER goes at once.
        loop {
            match rx.try_recv() {
                Ok(c) => {
                    next_xid = next_xid.wrapping_add(1);
                    let p = Pending {
                        created: c.at,
                        xid: next_xid,
                        offered: None,
                        sent: Instant::now(),
                    };
                    send(&p, c.mac)?;
                    by_xid.insert(p.xid, c.mac);
                    pending.insert(c.mac, p);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    creating = false;
                    break;
                }
            }
        }
        // Replies (the socket waits at most a millisecond).
        while let Ok(n) = socket.recv(&mut buf) {
            let Some((xid, kind, yiaddr)) = buf.get(..n).and_then(crate::loadgen::reply_fields)
            else {
                continue;
            };
            let Some(mac) = by_xid.get(&xid).copied() else {
                continue;
            };
            let Some(p) = pending.get_mut(&mac) else {
                continue;
            };
            match kind {
                2 if p.offered.is_none() => {
                    p.offered = Some(yiaddr);
                    p.sent = Instant::now();
                    send(p, mac)?;
                }
                5 => {
                    latencies.push(p.created.elapsed());
                    by_xid.remove(&xid);
                    pending.remove(&mac);
                }
                // A NAK: start over.
                6 => p.offered = None,
                _ => {}
            }
        }
        // Retries and give-ups.
        let now = Instant::now();
        let mut lost = Vec::new();
        for (mac, p) in pending.iter_mut() {
            if now.duration_since(p.created) > cfg.timeout {
                lost.push(*mac);
            } else if now.duration_since(p.sent) >= cfg.retry {
                p.sent = now;
                send(p, *mac)?;
            }
        }
        for mac in lost {
            if let Some(p) = pending.remove(&mac) {
                by_xid.remove(&p.xid);
            }
        }
    }
    Ok(latencies)
}
