//! netnode: the data plane of a cloud network node in one daemon. DHCPv4 from a MAC-to-IP
//! table, IPv6 router advertisements and instance metadata on every bridge, replacing the
//! dnsmasq and radvd processes nova-network spawned (see ARCHITECTURE.md).
//!
//! Protocol logic lives in pure engines ([`dhcp::Engine`]) that take values and return
//! decisions; sockets, clocks and signals live in thin shells ([`dhcp::listener`], [`server`]).

pub mod ask;
pub mod check;
pub mod clock;
pub mod compat;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod dhcp;
pub mod dns;
pub mod durable;
pub mod lab;
pub mod loadgen;
pub mod lock;
pub mod manager;
pub mod metadata;
pub mod metrics;
pub mod netif;
pub mod notify;
pub mod ra;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod source;
pub mod stats;
pub mod storm;
pub mod table;
pub mod timer;
