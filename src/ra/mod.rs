//! IPv6 router advertisements for SLAAC on every bridge (the radvd replacement): the wire
//! format, the pure engine (schedule and packets), parameters with radvd's names, instance
//! addresses, and the raw-socket listener.

pub mod address;
pub mod engine;
pub mod listener;
pub mod params;
pub mod wire;

pub use engine::{Advertiser, Output, RaSpec, RaStats, Received};

#[cfg(test)]
mod scenarios;
