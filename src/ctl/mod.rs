//! The control socket (`<state dir>/netnode.sock`) and its client, `netnode ctl`: Kea-style
//! JSON commands (status, leases, lease-release, reload, stats) to the running daemon.

pub mod client;
pub mod protocol;
pub mod server;
