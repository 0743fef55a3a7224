//! DHCPv4: the wire view, the pure engine, reply encoding, leases and the listener shell.

pub mod arp;
pub mod batch;
pub mod client;
pub mod engine;
pub mod journal;
pub mod lease;
pub mod listener;
pub mod manager_sink;
pub mod reply;
pub mod script;
pub mod send;
pub mod service;
pub mod stats;
pub mod store;
pub mod wire;
pub mod writer;

pub use engine::{Decision, Destination, Engine, RxMeta, Transmit};
pub use lease::{Lease, LeaseChange};
pub use stats::{DropKind, DropReason, Message, Stats};
pub use store::LeaseStore;

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod properties;
