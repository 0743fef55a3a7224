//! The control service of `netnode serve`: applies the desired state at start and after every
//! reload when `[control] enabled = true`, and puts back what someone else undoes. It runs one
//! pass (observe, plan, apply) whenever something may have changed: a new table, an interface
//! event, any nftables change in the namespace (the kernel's NFNLGRP_NFTABLES multicast, so
//! `nft flush ruleset` is noticed at once), and every 30 s as a backstop. Triggers that come
//! together are folded into one pass; a pass that finds nothing to do costs a netlink dump and
//! one `nft -j list`.

#![allow(clippy::disallowed_methods)] // IO shell: timers

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtnetlink::sys::{protocols::NETLINK_NETFILTER, AsyncSocket, AsyncSocketExt, TokioSocket};
use tokio::sync::{mpsc, oneshot};

use super::kernel::Kernel;
use super::run::{pass, summary, Mode};
use super::state::Desired;
use crate::netif::LinkEvent;
use crate::service::{Context, Reload, Service, Shutdown, StartError};
use crate::stats::Report;
use crate::table::Table;

/// The kernel's multicast group for nftables changes (NFNLGRP_NFTABLES).
const NFNLGRP_NFTABLES: u32 = 7;
/// Triggers this close together make one pass.
const SETTLE: Duration = Duration::from_millis(150);
/// The longest a pass waits for triggers to settle.
const FOLD: Duration = Duration::from_secs(1);
/// A pass even when nothing said so.
const BACKSTOP: Duration = Duration::from_secs(30);
/// How long the start waits for the first pass (bridges exist before the listeners look).
const FIRST_PASS: Duration = Duration::from_secs(10);

enum Trigger {
    Table(Arc<Table>),
    Changed,
    /// nftables changed (netnode's own changes come back this way too).
    Nftables,
}

/// Counters of the control service.
#[derive(Default)]
struct Stats {
    passes: AtomicU64,
    ops: AtomicU64,
    failures: AtomicU64,
    /// Passes that had work to do though the table had not changed: something undid netnode's
    /// state (a deleted table, a flushed ruleset, a removed address or link).
    repairs: AtomicU64,
}

/// The running control service.
pub struct ControlService {
    triggers: mpsc::UnboundedSender<Trigger>,
    stats: Arc<Stats>,
    finished: oneshot::Receiver<()>,
}

/// Starts the control service in native mode (drop-in mode never does control: nova does it).
pub fn start(ctx: &Context) -> Result<Option<Box<dyn Service>>, StartError> {
    if ctx.require_bridges || !ctx.serves_dhcp {
        return Ok(None);
    }
    let (triggers, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Stats::default());
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let table = ctx.table.load_full();
    let shutdown = ctx.shutdown.clone();
    let task_stats = stats.clone();
    let nft_tx = triggers.clone();
    let finished = crate::service::spawn_thread("control", move || {
        run(table, rx, nft_tx, task_stats, shutdown, first_tx)
    })?;
    // The first pass makes the bridges the other services are about to look for.
    let _ = first_rx.recv_timeout(FIRST_PASS);
    Ok(Some(Box::new(ControlService {
        triggers,
        stats,
        finished,
    })))
}

impl Service for ControlService {
    fn name(&self) -> &'static str {
        "control"
    }

    fn update(&mut self, table: &Arc<Table>, _why: Reload) {
        let _ = self.triggers.send(Trigger::Table(table.clone()));
    }

    fn link(&mut self, _event: &LinkEvent) {
        let _ = self.triggers.send(Trigger::Changed);
    }

    fn report(&self) -> Report {
        report_of(&self.stats)
    }

    fn finished(self: Box<Self>) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let _ = self.finished.await;
            report_of(&self.stats)
        })
    }
}

fn report_of(s: &Stats) -> Report {
    let mut r = Report::default();
    for (name, v) in [
        ("control_passes", &s.passes),
        ("control_ops", &s.ops),
        ("control_failures", &s.failures),
        ("control_repairs", &s.repairs),
    ] {
        r.push(name, None, None, v.load(Ordering::Relaxed));
    }
    r
}

async fn run(
    mut table: Arc<Table>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    nft_tx: mpsc::UnboundedSender<Trigger>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    first: std::sync::mpsc::Sender<()>,
) {
    let kernel = match Kernel::new() {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "control: cannot talk to the kernel; no control");
            let _ = first.send(());
            return;
        }
    };
    tokio::spawn(watch_nftables(nft_tx));
    let mut control = Control {
        kernel,
        stats,
        warnings: Vec::new(),
        told_disabled: false,
    };
    control.pass(&table, true).await;
    tracing::info!("control: first pass done");
    let _ = first.send(());
    loop {
        let mut new_table = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            t = triggers.recv() => match t {
                Some(Trigger::Table(t)) => { table = t; new_table = true; }
                Some(Trigger::Changed) => {}
                Some(Trigger::Nftables) => control.kernel.nft_changed(),
                None => break,
            },
            _ = tokio::time::sleep(BACKSTOP) => control.kernel.nft_changed(),
        }
        // Fold what comes right after into this pass, for at most FOLD (a steady trickle of
        // events must not hold the pass back for ever), and not past a stop.
        let fold_until = tokio::time::Instant::now() + FOLD;
        while let Ok(Some(t)) = tokio::time::timeout(
            SETTLE.min(fold_until.saturating_duration_since(tokio::time::Instant::now())),
            triggers.recv(),
        )
        .await
        {
            if shutdown.is_cancelled() {
                break;
            }
            match t {
                Trigger::Table(t) => {
                    table = t;
                    new_table = true;
                }
                Trigger::Nftables => control.kernel.nft_changed(),
                Trigger::Changed => {}
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        control.pass(&table, new_table).await;
    }
}

struct Control {
    kernel: Kernel,
    stats: Arc<Stats>,
    warnings: Vec<String>,
    told_disabled: bool,
}

impl Control {
    async fn pass(&mut self, table: &Table, new_table: bool) {
        if !table.control.enabled {
            if !self.told_disabled {
                tracing::info!("control: [control] enabled is false; netnode changes no link, address or rule (what it made before stays until `netnode net teardown`)");
                self.told_disabled = true;
            }
            return;
        }
        self.told_disabled = false;
        let desired = Desired::from_table(table);
        let outcome = match pass(&self.kernel, &desired, Mode::Apply).await {
            Ok(o) => o,
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "control: cannot read the kernel's state; will try again");
                return;
            }
        };
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        if outcome.plan.warnings != self.warnings {
            for w in &outcome.plan.warnings {
                tracing::warn!("control: {w}");
            }
            self.warnings = outcome.plan.warnings.clone();
        }
        let ops = &outcome.plan.ops;
        if ops.is_empty() {
            return;
        }
        self.stats
            .ops
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        if !new_table {
            self.stats.repairs.fetch_add(1, Ordering::Relaxed);
        }
        for (i, op) in ops.iter().enumerate() {
            let text = op.to_string();
            let first = text.lines().next().unwrap_or_default();
            match outcome.failed.iter().find(|(j, _)| *j == i) {
                Some((_, e)) => tracing::error!(error = %e, "control: failed: {first}"),
                None => tracing::info!("control: {first}"),
            }
        }
        self.stats
            .failures
            .fetch_add(outcome.failed.len() as u64, Ordering::Relaxed);
        tracing::info!(
            repair = !new_table,
            "control: applied {} operations ({}), {} failed; {}",
            ops.len(),
            summary(ops),
            outcome.failed.len(),
            outcome.timing_line()
        );
    }
}

/// Any change to any nftables table of the namespace: netnode's own changes come back too and
/// cost one empty pass.
async fn watch_nftables(tx: mpsc::UnboundedSender<Trigger>) {
    let mut socket = match TokioSocket::new(NETLINK_NETFILTER) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "control: cannot follow nftables changes; checking every 30 s");
            return;
        }
    };
    let joined = socket
        .socket_mut()
        .bind_auto()
        .and_then(|_| socket.socket_mut().add_membership(NFNLGRP_NFTABLES));
    if let Err(e) = joined {
        tracing::warn!(error = %e, "control: cannot follow nftables changes; checking every 30 s");
        return;
    }
    loop {
        match socket.recv_from_full().await {
            Ok(_) => {
                if tx.send(Trigger::Nftables).is_err() {
                    return;
                }
            }
            Err(e) => {
                // An overrun loses events, not the fact that something changed.
                tracing::debug!(error = %e, "control: nftables events");
                if tx.send(Trigger::Nftables).is_err() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
}
