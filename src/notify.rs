//! systemd's readiness protocol (`Type=notify`), through the sd-notify crate: READY=1 once every
//! listener is bound, RELOADING=1 (with MONOTONIC_USEC=) then READY=1 around each reload,
//! STATUS= with a one-line summary, WATCHDOG=1 at half of `WatchdogSec`, STOPPING=1.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call does nothing. A failed send is logged
//! once and otherwise ignored: systemd's bookkeeping must never stop the data plane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

static WARNED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot tell systemd (NOTIFY_SOCKET)");
        }
    }
}

/// Every listener is bound: the daemon serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (systemd 253's protocol; 252 accepts it too).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A new one-line summary.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to send WATCHDOG=1: half of `WatchdogSec`, when the unit sets one.
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The daemon's loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Awaits `work` (a reload building its table) while telling the watchdog the daemon is alive:
/// the loop that normally does is busy with it, and a large table takes longer to build than
/// `WatchdogSec`.
pub async fn keep_alive<F: std::future::Future>(work: F) -> F::Output {
    let Some(every) = watchdog_interval() else {
        return work.await;
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => watchdog(),
        }
    }
}
