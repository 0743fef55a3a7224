//! dnsmasq's `--dhcp-script` (nova-dhcpbridge): `init` at start (its output loaded as leases
//! under `--leasefile-ro`), then `add`/`old`/`del <mac> <ip> [hostname]` per lease event, one at
//! a time, with dnsmasq's `DNSMASQ_*` variables and the parent's environment (nova's
//! `CONFIG_FILE` and `NETWORK_ID`). A failing or hanging script never blocks DHCP: events are
//! queued (bounded), each run has a time limit, and a full queue drops with a count.

#![allow(clippy::disallowed_methods)] // IO shell: runs processes, reads the clock

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::dhcp::Lease;
use crate::table::MacAddr;

/// Longest a script run may take before it is killed.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
/// Most events waiting for the script.
pub const QUEUE: usize = 65_536;

/// A lease event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new lease.
    Add,
    /// A lease renewed, or every lease on SIGHUP.
    Old,
    /// A lease released, declined or expired.
    Del,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Old => "old",
            Action::Del => "del",
        }
    }
}

/// One queued script run.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The lease.
    pub lease: Lease,
    /// The interface (bridge) it is on.
    pub interface: String,
}

/// Sends lease events to the script task.
#[derive(Debug, Clone)]
pub struct ScriptRunner {
    tx: mpsc::Sender<Event>,
    /// Addresses with an `old` run already queued (a HUP storm queues each lease once).
    pending_old: Arc<Mutex<HashSet<Ipv4Addr>>>,
    dropped: Arc<AtomicU64>,
    /// Events taken from the queue and not yet finished.
    running: Arc<AtomicU64>,
}

/// Where lease events go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// dnsmasq's `--dhcp-script`: run once per event, one at a time.
    Script {
        /// The program.
        path: PathBuf,
        /// `DNSMASQ_DOMAIN`.
        domain: Option<String>,
    },
    /// netnode's manager: the `leased` flags of its database, a batch per transaction.
    Manager(PathBuf),
}

/// Most events applied to the manager's database in one transaction.
const MANAGER_BATCH: usize = 4096;

impl ScriptRunner {
    /// Starts the task that runs `script` for each event, one at a time.
    pub fn start(script: PathBuf, domain: Option<String>) -> ScriptRunner {
        ScriptRunner::start_sink(Sink::Script {
            path: script,
            domain,
        })
    }

    /// Starts the task that hands every event to `sink`, in order.
    pub fn start_sink(sink: Sink) -> ScriptRunner {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        let pending_old: Arc<Mutex<HashSet<Ipv4Addr>>> = Arc::default();
        let pending = pending_old.clone();
        let running: Arc<AtomicU64> = Arc::default();
        let busy = running.clone();
        tokio::spawn(async move {
            let mut manager = None;
            while let Some(ev) = rx.recv().await {
                busy.fetch_add(1, Ordering::SeqCst);
                let mut batch = vec![ev];
                if matches!(sink, Sink::Manager(_)) {
                    while batch.len() < MANAGER_BATCH {
                        match rx.try_recv() {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                }
                {
                    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                    for ev in batch.iter().filter(|e| e.action == Action::Old) {
                        pending.remove(&ev.lease.ip);
                    }
                }
                match &sink {
                    Sink::Script { path, domain } => {
                        for ev in &batch {
                            run_event(path, domain.as_deref(), ev).await;
                        }
                    }
                    Sink::Manager(db) => {
                        let db = db.clone();
                        let taken = manager.take();
                        let batch: Vec<crate::manager::leases::LeaseEvent> = batch
                            .iter()
                            .map(|e| crate::manager::leases::LeaseEvent {
                                leased: e.action != Action::Del,
                                ip: e.lease.ip,
                                mac: e.lease.mac,
                            })
                            .collect();
                        let done = tokio::task::spawn_blocking(move || {
                            crate::dhcp::manager_sink::apply(taken, &db, &batch)
                        })
                        .await;
                        manager = done.ok().flatten();
                    }
                }
                busy.fetch_sub(1, Ordering::SeqCst);
            }
        });
        ScriptRunner {
            tx,
            pending_old,
            dropped: Arc::default(),
            running,
        }
    }

    /// Waits (at most `limit`) until every queued event has run: a stop does not lose the
    /// `del`s and `add`s nova counts on.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.tx.capacity() < self.tx.max_capacity() || self.running.load(Ordering::SeqCst) > 0
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("stopping with dhcp-script events still queued");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queues an event without waiting; a full queue drops it (counted, logged).
    pub fn send(&self, action: Action, lease: Lease, interface: &str) {
        if action == Action::Old
            && !self
                .pending_old
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(lease.ip)
        {
            return;
        }
        let ip = lease.ip;
        if self
            .tx
            .try_send(Event {
                action,
                lease,
                interface: interface.to_string(),
            })
            .is_err()
        {
            if action == Action::Old {
                self.pending_old
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&ip);
            }
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "dhcp-script queue full; dropping lease events");
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

async fn run_event(script: &PathBuf, domain: Option<&str>, ev: &Event) {
    let l = &ev.lease;
    let mut cmd = tokio::process::Command::new(script);
    cmd.arg(ev.action.word())
        .arg(l.mac.to_string())
        .arg(l.ip.to_string());
    if let Some(h) = &l.hostname {
        cmd.arg(h);
    }
    cmd.env("DNSMASQ_INTERFACE", &ev.interface);
    if let Some(id) = &l.client_id {
        cmd.env("DNSMASQ_CLIENT_ID", hex(id));
    }
    match l.expires {
        Some(e) => {
            cmd.env("DNSMASQ_LEASE_EXPIRES", e.to_string());
            cmd.env(
                "DNSMASQ_TIME_REMAINING",
                e.saturating_sub(crate::clock::unix_now()).to_string(),
            );
        }
        None => {
            cmd.env("DNSMASQ_LEASE_EXPIRES", "0");
            cmd.env("DNSMASQ_TIME_REMAINING", "0");
        }
    }
    if let Some(d) = domain {
        cmd.env("DNSMASQ_DOMAIN", d);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(script = %script.display(), error = %e, "cannot run the dhcp-script");
            return;
        }
    };
    match tokio::time::timeout(RUN_LIMIT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => {
            tracing::warn!(script = %script.display(), action = ev.action.word(), ip = %l.ip, status = %out.status, "the dhcp-script failed")
        }
        Ok(Err(e)) => {
            tracing::warn!(script = %script.display(), error = %e, "waiting for the dhcp-script failed")
        }
        Err(_) => {
            tracing::warn!(script = %script.display(), action = ev.action.word(), "the dhcp-script ran too long and was killed")
        }
    }
}

/// Why the script's `init` gave no leases.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// It could not be started.
    #[error("{}: {source}", script.display())]
    Spawn {
        /// The script.
        script: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran past [`RUN_LIMIT`] and was killed.
    #[error("{} init ran longer than {}s and was killed", script.display(), RUN_LIMIT.as_secs())]
    TooLong {
        /// The script.
        script: PathBuf,
    },
    /// It exited unsuccessfully.
    #[error("{} init failed ({status})", script.display())]
    Failed {
        /// The script.
        script: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// Runs `<script> init` and reads its lease lines (with `--leasefile-ro`, the script is the
/// lease store). Blocking, with the same time limit as every run.
pub fn init(script: &Path) -> Result<Vec<Lease>, ScriptError> {
    let spawn_error = |source| ScriptError::Spawn {
        script: script.to_path_buf(),
        source,
    };
    let mut child = std::process::Command::new(script)
        .arg("init")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_error)?;
    // Read the output while the script runs (a large lease list would fill the pipe and block
    // it), and kill it if it runs past the limit.
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(spawn_error(std::io::Error::other("no stdout pipe")));
    };
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ScriptError::TooLong {
                    script: script.to_path_buf(),
                });
            }
        }
    };
    // The reader ends when the script's stdout closes; a panic there leaves no output.
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(ScriptError::Failed {
            script: script.to_path_buf(),
            status,
        });
    }
    Ok(parse_leases(&String::from_utf8_lossy(&text)))
}

/// Lease lines `<expiry> <mac> <ip> <hostname|*> <client-id|*>` (expiry 0: infinite); lines
/// that do not parse are skipped.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [expiry, mac, ip, host, id, ..] = f.as_slice() else {
                return None;
            };
            let expiry: u64 = expiry.parse().ok()?;
            Some(Lease {
                mac: mac.parse::<MacAddr>().ok()?,
                ip: ip.parse().ok()?,
                expires: (expiry != 0).then_some(expiry),
                hostname: (*host != "*").then(|| host.to_string()),
                client_id: (*id != "*")
                    .then(|| crate::table::options::hex_bytes(id))
                    .flatten(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_reads_a_large_output_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        // ~2 MB of lease lines: far more than a pipe holds.
        std::fs::write(&script, "#!/bin/sh\ni=0\nwhile [ $i -lt 30000 ]; do echo \"0 fa:16:3e:00:00:01 198.18.0.10 vm-$i *\"; i=$((i+1)); done\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(init(&script).unwrap().len(), 30000);
    }

    #[test]
    fn reads_novas_init_output() {
        let text = "1795600000 fa:16:3e:00:00:01 198.18.0.10 vm-1 *\n0 fa:16:3e:00:00:02 198.18.0.11 * 01:02\ngarbage\n";
        let leases = parse_leases(text);
        assert_eq!(leases.len(), 2);
        assert_eq!(leases[0].expires, Some(1_795_600_000));
        assert_eq!(leases[0].hostname.as_deref(), Some("vm-1"));
        assert_eq!(leases[1].expires, None);
        assert_eq!(leases[1].client_id, Some(vec![1, 2]));
    }
}
