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
use crate::compat::script::{Action, ScriptRunner};
use crate::ratelimit::LogLimiter;
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
    pub script: Option<crate::compat::script::ScriptRunner>,
    /// Told after each commit, so the lease file is rewritten soon.
    pub committed: Arc<tokio::sync::Notify>,
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
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        replaced.clear();
        let changes = group.iter().flat_map(|p| p.changes.iter());
        let committed = match &shared.script {
            // The script is told what each change replaced, as the store saw it under its lock.
            Some(_) => shared
                .store
                .commit_with(changes.clone(), |_, prior| replaced.push(prior)),
            None => shared.store.commit(changes),
        };
        if let Err(e) = committed {
            if limiter.allow("commit", std::time::Instant::now()).is_some() {
                tracing::error!(error = %e, "lease journal write failed; withholding ACKs");
            }
            continue;
        }
        shared.committed.notify_one();
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

/// Logs a lease ended by its client.
pub fn log_change(bridge: &str, change: &LeaseChange) {
    match change {
        LeaseChange::Release { mac, ip } => tracing::info!(bridge, %mac, %ip, "lease released"),
        LeaseChange::Decline { mac, ip } => {
            tracing::warn!(bridge, %mac, %ip, "client declined its address: another host on the link may be using it")
        }
        LeaseChange::Grant(_) => {}
    }
}
