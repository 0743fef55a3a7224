//! The daemon's DHCP hot path without sockets, for `valgrind --tool=callgrind`
//! (`scripts/profile-dhcp`): DORA exchanges of 10,000 clients through the engine, each batch
//! of ACKed leases committed to a lease journal (no fsync), as the listener and its writer do.
//! Instruction counts are repeatable where timings on a shared machine are not.
//!
//! Usage: `dhcp_profile [exchanges]` (default 100,000).

use netnode::dhcp::{Decision, Engine, LeaseStore, RxMeta};

#[path = "../benches/support/mod.rs"]
mod support;

/// Clients in the table, each doing one DORA in turn.
const CLIENTS: u32 = 10_000;

/// The measured part (callgrind collects inside this function only).
#[inline(never)]
fn run_exchanges(
    table: &netnode::table::Table,
    store: &LeaseStore,
    packets: &[(Vec<u8>, Vec<u8>)],
    exchanges: u32,
) -> u64 {
    let mut engine = Engine::new();
    let rx = RxMeta { bridge: "br100" };
    let mut acks = 0u64;
    let mut changes = Vec::with_capacity(64);
    // A second of clock per 10,000 exchanges keeps every client under its rate limit.
    for x in 0..exchanges {
        let now = 1_000_000 + u64::from(x / CLIENTS);
        let Some((discover, request)) = packets.get((x % CLIENTS) as usize) else {
            continue;
        };
        let _ = engine.handle(table, rx, discover, now);
        if let Decision::Reply {
            lease: Some(change),
            ..
        } = engine.handle(table, rx, request, now)
        {
            changes.push(change);
            acks += 1;
        }
        if changes.len() == 64 {
            store.commit(&changes).expect("journal write");
            changes.clear();
        }
    }
    store.commit(&changes).expect("journal write");
    acks
}

fn main() {
    let exchanges: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let table = support::table(CLIENTS);
    let packets: Vec<_> = (0..CLIENTS)
        .map(|i| (support::discover(i, i), support::request(i, i)))
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, _) = LeaseStore::open(dir.path(), false, None, 0).expect("lease store");
    let acks = run_exchanges(&table, &store, &packets, exchanges);
    println!("exchanges={exchanges} acks={acks}");
}
