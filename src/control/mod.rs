//! The control module: bridges, VLANs, addresses and NAT for the networks of the table, as
//! nova-network's linux_net set them up, in netnode's own nftables table.
//!
//! Declarative: [`state::Desired`] comes from the table, [`state::Observed`] from the kernel
//! ([`kernel`]), and the pure [`plan::plan`] lists the [`plan::Op`]s between them; applying the
//! same desired state twice does nothing the second time. netnode changes only what it made
//! (links with its alias, addresses with its protocol, its table) and never flushes a ruleset.

pub mod conntrack;
pub mod firewall;
#[cfg(test)]
mod firewall_scenarios;
pub mod garp;
pub mod isolate;
pub mod kernel;
pub mod netfilter;
pub mod nft;
pub mod nftable;
pub mod plan;
pub mod run;
#[cfg(test)]
mod scenarios;
pub mod service;
pub mod state;

pub use plan::{plan, simulate, teardown, LinkChange, Op, Plan};
pub use state::{Desired, Observed};
