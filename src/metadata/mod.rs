//! Instance metadata at 169.254.169.254: the EC2 and OpenStack trees as nova serves them and
//! cloud-init reads them. The trees are rendered at reload ([`tree`]); a request is routed and
//! its instance identified by a pure function ([`request`]); the hyper shell ([`server`]) reads
//! the socket, the clock and the random source, and persists passwords ([`password`]).

pub mod client;
pub mod null;
pub mod password;
pub mod request;
pub mod server;
pub mod service;
pub mod tree;

pub use request::{answer, Outcome, Response};
pub use tree::Tree;

#[cfg(test)]
mod scenarios;
