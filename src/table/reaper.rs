//! Where old tables go. A table of a million bindings is millions of small allocations: freeing
//! it takes a while, and glibc keeps what was freed for reuse (over 100 MB after such a
//! reload). So a large table is not freed by whichever thread lets go of it last (a DHCP worker
//! between two batches, say): its networks are handed to a thread of its own, which frees them
//! and then gives the memory back to the system. No one polls for the last reader.

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

use super::Network;

/// Tables with fewer bindings than this are freed where they are dropped.
const LARGE: usize = 10_000;

/// The reaper thread's queue, started on the first large table.
static REAPER: OnceLock<Mutex<Option<Sender<Vec<Network>>>>> = OnceLock::new();

/// Frees a dropped table's networks: here when they are small, else on the reaper thread.
pub(super) fn dispose(networks: Vec<Network>) {
    let bindings: usize = networks.iter().map(|n| n.bindings().len()).sum();
    if bindings < LARGE {
        return;
    }
    let queue = REAPER.get_or_init(|| Mutex::new(start()));
    let sent = match &*queue.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(tx) => tx.send(networks).map_err(|e| e.0),
        None => Err(networks),
    };
    if let Err(networks) = sent {
        drop(networks);
        give_back_freed_memory();
    }
}

fn start() -> Option<Sender<Vec<Network>>> {
    let (tx, rx) = mpsc::channel::<Vec<Network>>();
    std::thread::Builder::new()
        .name("table-reaper".into())
        .spawn(move || {
            while let Ok(networks) = rx.recv() {
                drop(networks);
                // Several reloads in a row: free them all, then trim once.
                for more in rx.try_iter() {
                    drop(more);
                }
                give_back_freed_memory();
            }
        })
        .ok()
        .map(|_| tx)
}

/// Returns memory malloc holds but no longer uses to the system (glibc keeps freed small
/// allocations for reuse).
pub fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
