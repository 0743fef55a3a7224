//! The wall clock, read in one place. Engines never call this: IO shells read it once per
//! wakeup and pass the value in.

#![allow(clippy::disallowed_methods)] // the one reader of the wall clock

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before it). Lease expiry is wall-clock
/// time because leases outlive a restart.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since the Unix epoch (0 before it): a write time that another process compares
/// with its own clock (the etcd simulation's propagation latency).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
