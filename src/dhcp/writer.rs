//! The lease writer: one thread for every bridge, making lease changes durable in groups.
//!
//! Workers queue each batch's lease changes with the ACKs that announce them. The writer takes
//! everything queued, makes it durable with one journal write and one fdatasync (group
//! commit), then sends those ACKs, each from its own bridge's socket. An ACK whose lease could
//! not be made durable is not sent. The workers never wait for the disk, so under load one
//! fsync covers many batches, of many bridges.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::io;
use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::batch::SendBatch;
use super::engine::Transmit;
use super::lease::{Lease, LeaseChange};
use super::send::{send_all, BATCH};
use super::store::LeaseStore;
use crate::dhcp::script::{Action, ScriptRunner};
use crate::ratelimit::{LogBudget, LogLimiter};
use crate::stats::Histogram;
use crate::table::Table;
use arc_swap::ArcSwap;

/// What the workers and the writer share.
#[derive(Clone)]
pub struct Shared {
    /// The current table.
    pub table: Arc<ArcSwap<Table>>,
    /// The lease store.
    pub store: Arc<LeaseStore>,
    /// dnsmasq's `--dhcp-script`, told of every lease change (drop-in mode).
    pub script: Option<crate::dhcp::script::ScriptRunner>,
    /// Told after each commit, so the lease file is rewritten soon.
    pub committed: Arc<tokio::sync::Notify>,
    /// What could not be made durable.
    pub failures: Arc<Failures>,
    /// The group commits' latency and size.
    pub commits: Arc<CommitTimes>,
    /// Log every lease event (dnsmasq's `--log-dhcp`), not at most [`CLIENT_LINES`] a second.
    pub log_dhcp: bool,
}

/// Lines about clients (ACK, NAK, release, decline) logged per second per thread; a flood beyond
/// that is counted in the next line's `suppressed`.
pub const CLIENT_LINES: u32 = 100;

/// The budget of client lines of one thread.
pub fn client_lines(shared: &Shared) -> LogBudget {
    LogBudget::new(if shared.log_dhcp {
        u32::MAX
    } else {
        CLIENT_LINES
    })
}

/// Commits the journal refused (a full disk, a failed write), and the ACKs withheld for them:
/// a lease that is not durable is not promised.
#[derive(Debug, Default)]
pub struct Failures {
    /// Commits that failed.
    pub commits: std::sync::atomic::AtomicU64,
    /// ACKs not sent because their lease could not be made durable.
    pub acks_withheld: std::sync::atomic::AtomicU64,
}

/// Bounds of the commit latency histogram, in seconds (fdatasync on a disk: 0.1 to 20 ms).
pub const COMMIT_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Bounds of the group size histogram, in lease changes per commit.
pub const GROUP_CHANGES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// How the journal's group commits go: each one's latency (write and fdatasync) and size.
#[derive(Debug)]
pub struct CommitTimes {
    /// Seconds per commit; its count is the number of commits (fdatasyncs, with `fsync`).
    pub seconds: Histogram,
    /// Lease changes per commit.
    pub changes: Histogram,
}

impl CommitTimes {
    /// Runs one commit of `changes` lease changes, recording its time and size (failed ones
    /// too: a slow failure is worth seeing).
    pub fn time<T>(&self, changes: usize, commit: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = commit();
        self.seconds.observe(started.elapsed().as_secs_f64());
        self.changes.observe(changes as f64);
        out
    }
}

impl Default for CommitTimes {
    fn default() -> Self {
        CommitTimes {
            seconds: Histogram::new(&COMMIT_SECONDS),
            changes: Histogram::new(&GROUP_CHANGES),
        }
    }
}

/// Batches waiting for the writer; bounds memory and pushes back on the workers.
const COMMIT_QUEUE: usize = 256;

/// Lease changes of one receive batch of one bridge, and the ACKs to send once they are durable.
pub struct Pending {
    /// The bridge.
    pub bridge: Arc<str>,
    /// Its socket, which the ACKs leave from.
    pub socket: Arc<UdpSocket>,
    /// The changes, in order.
    pub changes: Vec<LeaseChange>,
    /// The replies that announce them.
    pub replies: Vec<Transmit>,
}

impl Pending {
    /// An empty batch for a bridge.
    pub fn new(bridge: Arc<str>, socket: Arc<UdpSocket>) -> Pending {
        Pending {
            bridge,
            socket,
            changes: Vec::new(),
            replies: Vec::new(),
        }
    }
}

/// Starts the writer thread; it ends when every sender of the returned queue is gone.
pub fn start(shared: Shared) -> io::Result<(SyncSender<Pending>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(COMMIT_QUEUE);
    let thread = std::thread::Builder::new()
        .name("dhcp-writer".into())
        .spawn(move || write_and_send(&shared, &rx))?;
    Ok((tx, thread))
}

/// Takes every batch that is queued, makes them durable together, then sends their ACKs (or
/// withholds them if the journal could not be written).
fn write_and_send(shared: &Shared, rx: &Receiver<Pending>) {
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    let mut sender = SendBatch::new(BATCH);
    let mut replaced: Vec<Option<Lease>> = Vec::new();
    let mut lines = client_lines(shared);
    // Failed commits since the journal last took one: reported once it does again.
    let mut failing: (u64, u64) = (0, 0);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        replaced.clear();
        let changes = group.iter().flat_map(|p| p.changes.iter());
        let committed = shared.commits.time(changes.clone().count(), || {
            match &shared.script {
                // The script is told what each change replaced, as the store saw it under its
                // lock.
                Some(_) => shared
                    .store
                    .commit_with(changes, |_, prior| replaced.push(prior)),
                None => shared.store.commit(changes),
            }
        });
        if let Err(e) = committed {
            let withheld: u64 = group.iter().map(|p| p.replies.len() as u64).sum();
            use std::sync::atomic::Ordering::Relaxed;
            shared.failures.commits.fetch_add(1, Relaxed);
            shared.failures.acks_withheld.fetch_add(withheld, Relaxed);
            failing = (failing.0 + 1, failing.1 + withheld);
            if let Some(held) = limiter.allow("commit", std::time::Instant::now()) {
                tracing::error!(error = %e, acks_withheld = failing.1, suppressed = held, "LEASES CANNOT BE MADE DURABLE (full disk?): withholding ACKs; existing leases are still honoured");
            }
            continue;
        }
        if failing.0 > 0 {
            tracing::warn!(
                failed_commits = failing.0,
                acks_withheld = failing.1,
                "the lease journal takes writes again; acknowledging leases"
            );
            failing = (0, 0);
        }
        shared.committed.notify_one();
        log_grants(&mut lines, &group);
        if let Some(script) = &shared.script {
            let now = crate::clock::unix_now();
            let mut prior = replaced.iter();
            for p in &group {
                tell_script(script, &p.bridge, &p.changes, &mut prior, now);
            }
        }
        // One sendmmsg for the ACKs of consecutive batches of the same bridge.
        let mut acks: Vec<Transmit> = Vec::new();
        let mut from: Option<(Arc<str>, Arc<UdpSocket>)> = None;
        for mut p in group {
            if let Some((bridge, socket)) = &from {
                if !Arc::ptr_eq(socket, &p.socket) {
                    send_all(&mut sender, socket, bridge, &acks, &mut limiter);
                    acks.clear();
                }
            }
            acks.append(&mut p.replies);
            from = Some((p.bridge, p.socket));
        }
        if let Some((bridge, socket)) = &from {
            send_all(&mut sender, socket, bridge, &acks, &mut limiter);
        }
    }
}

/// Tells the dhcp-script of committed changes: `replaced` yields, change by change, the lease
/// each one took the place of; only leases still active at `now` count.
fn tell_script<'r>(
    script: &ScriptRunner,
    bridge: &str,
    changes: &[LeaseChange],
    replaced: &mut impl Iterator<Item = &'r Option<Lease>>,
    now: u64,
) {
    for (change, prior) in changes.iter().zip(replaced) {
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

/// Logs each lease granted (made durable, its ACK about to go out): who got what.
fn log_grants(lines: &mut LogBudget, group: &[Pending]) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    for p in group {
        for change in &p.changes {
            let LeaseChange::Grant(l) = change else {
                continue;
            };
            let Some(held) = lines.allow(std::time::Instant::now()) else {
                continue;
            };
            let hostname = l.hostname.as_deref().unwrap_or("-");
            let lease = l.expires.map_or("infinite".to_string(), |e| e.to_string());
            tracing::info!(bridge = &*p.bridge, mac = %l.mac, ip = %l.ip, hostname, expires = lease, suppressed = held, "DHCPACK: lease granted");
        }
    }
}

/// Logs a lease ended by its client.
pub fn log_change(lines: &mut LogBudget, bridge: &str, change: &LeaseChange) {
    if matches!(change, LeaseChange::Grant(_)) {
        return;
    }
    let Some(held) = lines.allow(std::time::Instant::now()) else {
        return;
    };
    match change {
        LeaseChange::Release { mac, ip } => {
            tracing::info!(bridge, %mac, %ip, suppressed = held, "DHCPRELEASE: lease released")
        }
        LeaseChange::Decline { mac, ip } => {
            tracing::warn!(bridge, %mac, %ip, suppressed = held, "DHCPDECLINE: the client says another host on the link uses its address")
        }
        LeaseChange::Grant(_) => {}
    }
}
