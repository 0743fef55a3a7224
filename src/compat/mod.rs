//! Drop-in mode: netnode run as nova runs dnsmasq, radvd and dhcp_release, with their command
//! lines, files and signals.

pub mod daemon;
pub mod dnsmasq;
pub mod entry;
pub mod logging;
pub mod radvd;
pub mod release;
