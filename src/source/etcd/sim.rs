//! The multi-host simulation (`netnode sim-etcd`, run by `scripts/sim-etcd`): many hosts'
//! feeds in one process against a local etcd, each the daemon's own list-and-watch
//! ([`spawn_with`]), on a few shared connections or one connection per host. It measures the
//! cold start of every host, the propagation of a write stream at a fixed rate (each value
//! carries its write time), the events each host got against the writes meant for it,
//! relists after a compaction and after a member restart, and memory and CPU.

#![allow(clippy::disallowed_methods)] // IO shell: a benchmark reads clocks

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use serde::Serialize;

use super::{spawn_with, FeedStats, Follow, View};
use crate::lab::etcd::Cluster;
use crate::manager::etcd::keys::Layout;
use crate::manager::etcd::record::{InstanceRecord, NetworkRecord, PortRecord};
use crate::manager::etcd::EtcdSettings;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Hosts.
    pub hosts: usize,
    /// Ports per host.
    pub ports: usize,
    /// Writes per second in the stream.
    pub rate: u32,
    /// Seconds of the stream.
    pub seconds: u64,
    /// Shared connections (0: one per host).
    pub connections: usize,
    /// Where etcd's data goes.
    pub dir: std::path::PathBuf,
}

/// Why the simulation stopped.
pub type SimError = Box<dyn std::error::Error + Send + Sync>;

/// Percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Worst.
    pub max_ms: f64,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub struct SimReport {
    /// Hosts.
    pub hosts: usize,
    /// Ports in etcd.
    pub ports: usize,
    /// Connections the hosts shared (= hosts: one each).
    pub connections: usize,
    /// Seconds to write every port.
    pub populate_s: f64,
    /// Seconds until every host had listed (and watched) its ports, from cold.
    pub cold_start_s: f64,
    /// Writes sent in the stream and the rate achieved.
    pub writes: u64,
    /// Writes per second achieved.
    pub write_rate: f64,
    /// Write to the affected host's new view.
    pub propagation: Latency,
    /// Writes seen by no host within 5 s (lost).
    pub unseen: u64,
    /// Events hosts got for writes meant for other hosts (must be 0).
    pub events_to_unaffected_hosts: u64,
    /// Lists caused by a compaction of the current revision (synced watchers: 0).
    pub relists_after_compaction: u64,
    /// Lists after the member restarted (watches resume from their revision: 0 unless compacted).
    pub relists_after_member_restart: u64,
    /// Seconds until every host watched again after the member restart.
    pub reconnect_after_restart_s: f64,
    /// Lists after a compaction then a member restart (hosts whose copy predates it).
    pub relists_after_compaction_and_restart: u64,
    /// Seconds until every host watched again then.
    pub reconnect_after_compaction_and_restart_s: f64,
    /// etcd's resident memory at the end (MiB).
    pub etcd_rss_mib: f64,
    /// This process's resident memory with every host's copy (MiB), and per host (KiB).
    pub sim_rss_mib: f64,
    /// Per host.
    pub per_host_kib: f64,
    /// CPU (user + system) of this process per 1,000 events delivered, in ms.
    pub cpu_ms_per_1000_events: f64,
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn host_name(i: usize) -> String {
    format!("h{i:05}")
}

fn port_value(host: usize, port: usize, written_ns: u64) -> Vec<u8> {
    let mac = format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        (host >> 8) & 0xff,
        host & 0xff,
        port & 0xff
    );
    let a = std::net::Ipv4Addr::from(0x0a00_0000u32 + (host * 256 + port) as u32);
    serde_json::to_vec(&PortRecord {
        network: "sim".into(),
        mac: mac.clone(),
        address: a,
        position: 0,
        instance: InstanceRecord {
            uuid: format!("{host:05}-{port:03}"),
            name: format!("vm-{host}-{port}"),
            hostname: format!("vm-{host}-{port}"),
            project_id: "sim".into(),
            macs: vec![mac],
            security_groups: Vec::new(),
        },
        floating: Vec::new(),
        written_ns,
    })
    .unwrap_or_default()
}

fn percentiles(mut v: Vec<f64>) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latency {
        count: v.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// Kills and restarts the one member; returns the seconds until every host watches again and
/// stays so. A resumed watch counts as watching as soon as it is asked for, and a compacted
/// one is cancelled (and listed again) a moment later: the hosts are watched for 3 s more, and
/// the time is the last moment they all became connected.
async fn restart(cluster: &mut Cluster, stats: &[Arc<FeedStats>]) -> Result<f64, SimError> {
    let errors_before: u64 = stats.iter().map(|s| s.errors.load(Relaxed)).sum();
    cluster.kill(0)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.start_member(0)?;
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(120);
    loop {
        let errors: u64 = stats.iter().map(|s| s.errors.load(Relaxed)).sum();
        let connected = stats
            .iter()
            .filter(|s| s.connected.load(Relaxed) == 1)
            .count();
        if errors >= errors_before + stats.len() as u64 && connected == stats.len() {
            let mut all_since = restarted.elapsed();
            let mut dropped = false;
            let settle = Instant::now() + Duration::from_secs(3);
            while Instant::now() < settle || dropped {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let all = stats.iter().all(|s| s.connected.load(Relaxed) == 1);
                if !all {
                    dropped = true;
                } else if dropped {
                    dropped = false;
                    all_since = restarted.elapsed();
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            return Ok(all_since.as_secs_f64());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{connected} of {} hosts watching 120 s after a restart",
                stats.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each host's monitor: the write times it has seen per port.
struct Monitor {
    latencies: Mutex<Vec<f64>>,
    seen: AtomicU64,
}

/// Runs the simulation; prints progress on stderr.
pub async fn run(cfg: &SimConfig) -> Result<SimReport, SimError> {
    let mut cluster = Cluster::start(&cfg.dir, 1)?;
    let endpoints = cluster.endpoints();
    let prefix = "/sim";
    let settings = |host: &str| EtcdSettings::plain(endpoints.clone(), prefix, host);
    let mut report = SimReport {
        hosts: cfg.hosts,
        ports: cfg.hosts * cfg.ports,
        connections: if cfg.connections == 0 {
            cfg.hosts
        } else {
            cfg.connections
        },
        ..SimReport::default()
    };
    // Populate: one network, every host's ports, 100 puts per transaction, 8 writers.
    let writer = settings("writer").connect().await?;
    let layout = Layout {
        prefix: prefix.into(),
        host: "writer".into(),
    };
    let net = NetworkRecord::simple("sim", "10.0.0.0/8".parse()?, "br100");
    writer
        .clone()
        .put(layout.network("sim"), serde_json::to_vec(&net)?, None)
        .await?;
    let started = Instant::now();
    let all: Vec<(usize, usize)> = (0..cfg.hosts)
        .flat_map(|h| (0..cfg.ports).map(move |p| (h, p)))
        .collect();
    let mut tasks = Vec::new();
    for chunk in all.chunks(all.len().div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let mut c = writer.clone();
        let layout = layout.clone();
        tasks.push(tokio::spawn(async move {
            for batch in chunk.chunks(100) {
                let ops: Vec<TxnOp> = batch
                    .iter()
                    .map(|&(h, p)| {
                        TxnOp::put(
                            layout.port(&host_name(h), &format!("p{p:03}")),
                            port_value(h, p, 0),
                            None,
                        )
                    })
                    .collect();
                c.txn(Txn::new().and_then(ops)).await?;
            }
            Ok::<_, etcd_client::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    report.populate_s = started.elapsed().as_secs_f64();
    eprintln!(
        "sim-etcd: {} ports written in {:.1} s",
        report.ports, report.populate_s
    );
    // Cold start: every host lists and watches.
    let clients: Vec<Client> = if cfg.connections == 0 {
        Vec::new()
    } else {
        let mut v = Vec::new();
        for _ in 0..cfg.connections {
            v.push(settings("shared").connect().await?);
        }
        v
    };
    let started = Instant::now();
    let mut views = Vec::new();
    let mut stats: Vec<Arc<FeedStats>> = Vec::new();
    let mut followers = Vec::new();
    for h in 0..cfg.hosts {
        let shared = clients.get(h % clients.len().max(1)).cloned();
        let (rx, st, task) = spawn_with(
            Follow {
                settings: settings(&host_name(h)),
                liveness: false,
                save_to: None,
            },
            shared,
        );
        views.push(rx);
        stats.push(st);
        followers.push(task);
    }
    for rx in &mut views {
        let ports = cfg.ports;
        tokio::time::timeout(
            Duration::from_secs(120),
            rx.wait_for(|v| v.as_ref().is_some_and(|v| v.live && v.ports.len() == ports)),
        )
        .await
        .map_err(|_| "a host did not list within 120 s")??;
    }
    report.cold_start_s = started.elapsed().as_secs_f64();
    eprintln!(
        "sim-etcd: {} hosts listed and watching in {:.2} s",
        cfg.hosts, report.cold_start_s
    );
    // Monitors: on each view, the ports whose write time moved give a latency each.
    let monitor = Arc::new(Monitor {
        latencies: Mutex::new(Vec::new()),
        seen: AtomicU64::new(0),
    });
    let mut monitors = Vec::new();
    for rx in &views {
        let mut rx = rx.clone();
        let monitor = monitor.clone();
        monitors.push(tokio::spawn(async move {
            // The values as last seen: only a value that changed is parsed.
            let mut last: HashMap<String, bytes::Bytes> = rx
                .borrow()
                .as_ref()
                .map(|v| {
                    v.ports
                        .iter()
                        .map(|(k, s)| (k.clone(), s.value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            while rx.changed().await.is_ok() {
                let Some(v): Option<Arc<View>> = rx.borrow_and_update().clone() else {
                    continue;
                };
                let now = crate::clock::unix_nanos();
                for (k, s) in &v.ports {
                    if last.get(k) == Some(&s.value) {
                        continue;
                    }
                    last.insert(k.clone(), s.value.clone());
                    let Ok(p) = serde_json::from_slice::<PortRecord>(&s.value) else {
                        continue;
                    };
                    if p.written_ns != 0 {
                        let ms = now.saturating_sub(p.written_ns) as f64 / 1e6;
                        monitor
                            .latencies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(ms);
                        monitor.seen.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    // The write stream: one port of a random host per write, at a fixed rate.
    let events_before: u64 = stats.iter().map(|s| s.events.load(Relaxed)).sum();
    let cpu_before = cpu_seconds();
    let mut expected = vec![0u64; cfg.hosts];
    let total = u64::from(cfg.rate) * cfg.seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(cfg.rate.max(1)));
    let c = writer.clone();
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (h, p) = (fastrand::usize(..cfg.hosts), fastrand::usize(..cfg.ports));
        expected[h] += 1;
        let key = layout.port(&host_name(h), &format!("p{p:03}"));
        let value = port_value(h, p, crate::clock::unix_nanos());
        let mut c2 = c.clone();
        pending.push(tokio::spawn(async move {
            c2.put(key, value, None).await.map(|_| ())
        }));
        if pending.len() >= 64 {
            for t in pending.drain(..) {
                t.await??;
            }
        }
    }
    for t in pending.drain(..) {
        t.await??;
    }
    report.writes = total;
    report.write_rate = total as f64 / started.elapsed().as_secs_f64();
    // Let the last ones arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitor.seen.load(Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds() - cpu_before;
    let events: u64 = stats.iter().map(|s| s.events.load(Relaxed)).sum::<u64>() - events_before;
    report.cpu_ms_per_1000_events = if events > 0 {
        cpu * 1e6 / events as f64
    } else {
        0.0
    };
    let seen = monitor.seen.load(Relaxed);
    report.unseen = total.saturating_sub(seen);
    report.propagation = percentiles(std::mem::take(
        &mut *monitor.latencies.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    // Events per host against the writes meant for it: any surplus went to a host it did not
    // concern (a foreign key), or a write was delivered twice.
    report.events_to_unaffected_hosts = stats
        .iter()
        .zip(&expected)
        .map(|(s, e)| s.foreign_events.load(Relaxed) + s.events.load(Relaxed).saturating_sub(*e))
        .sum::<u64>();
    eprintln!(
        "sim-etcd: {} writes at {:.0}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} unseen; {} events to unaffected hosts",
        report.writes, report.write_rate, report.propagation.p50_ms, report.propagation.p99_ms, report.propagation.max_ms,
        report.unseen, report.events_to_unaffected_hosts
    );
    let etcd_pid = cluster.members[0].pid().map_or(0, |p| p as u32);
    report.etcd_rss_mib = rss_kib(etcd_pid) / 1024.0;
    report.sim_rss_mib = rss_kib(std::process::id()) / 1024.0;
    report.per_host_kib = report.sim_rss_mib * 1024.0 / cfg.hosts.max(1) as f64;
    let lists = |stats: &[Arc<FeedStats>]| stats.iter().map(|s| s.lists.load(Relaxed)).sum::<u64>();
    // A compaction of the current revision: synced watches are not cancelled...
    let before = lists(&stats);
    cluster.compact()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.relists_after_compaction = lists(&stats) - before;
    // ...but a host whose copy is older than the compaction (no write of its own and no
    // progress notification since) lists when its watch resumes after a member restart.
    let before = lists(&stats);
    report.reconnect_after_compaction_and_restart_s = restart(&mut cluster, &stats).await?;
    report.relists_after_compaction_and_restart = lists(&stats) - before;
    // A member restart with no compaction since: every watch resumes, no list.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = lists(&stats);
    report.reconnect_after_restart_s = restart(&mut cluster, &stats).await?;
    report.relists_after_member_restart = lists(&stats) - before;
    for t in followers.iter().chain(&monitors) {
        t.abort();
    }
    drop(cluster);
    Ok(report)
}
