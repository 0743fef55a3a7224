//! IPv6 router advertisements for SLAAC on every bridge (the radvd replacement): the wire
//! format, the pure engine (schedule and packets) and the raw-socket listener. The parameters
//! (radvd's names) and instance addresses are configuration, so they live in the table
//! ([`crate::table::ra`], [`crate::table::ipv6`]).

pub mod engine;
pub mod listener;
pub mod service;
pub mod wire;

pub use engine::{Advertiser, Output, RaSpec, Received, Stats};

#[cfg(test)]
mod scenarios;
