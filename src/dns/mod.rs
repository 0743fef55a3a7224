//! DNS for instances, as dnsmasq served it: instance names answered from the table with
//! authority, everything else forwarded to upstream servers and cached. The wire view
//! ([`wire`]), the local names ([`zone`]), the cache ([`cache`]) and the engine ([`engine`]) are
//! pure; the listener ([`listener`]) and the service ([`service`]) are the IO shell.

pub mod cache;
pub mod engine;
pub mod listener;
pub mod service;
pub mod stats;
pub mod wire;
pub mod zone;

#[cfg(test)]
mod scenarios;

pub use engine::{Decision, Engine, RxMeta, Waiter};
pub use stats::Stats;
pub use zone::Zone;
