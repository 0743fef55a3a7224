//! The DHCPv4 engine: bytes and a table snapshot in, a [`Decision`] out. No sockets, no clock:
//! the shell passes the wall-clock time (lease expiry outlives restarts, so it is wall time).
//!
//! Static mode: only clients with a binding are answered, and only with their own address.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use super::lease::{Lease, LeaseChange};
use super::reply::{self, ReplySpec};
use super::stats::{DropReason, Stats};
use super::wire::{self, Request};
use crate::table::{Binding, MacAddr, Network, Table};

/// Where a packet came from.
#[derive(Debug, Clone, Copy)]
pub struct RxMeta<'a> {
    /// The bridge the listener is bound to.
    pub bridge: &'a str,
}

/// Where a reply goes (RFC 2131 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at giaddr, port 67.
    Relay(Ipv4Addr),
    /// To the client's own address (ciaddr), port 68.
    Client(Ipv4Addr),
    /// To a client with no address yet, by unicast to its hardware address, port 68.
    Hardware {
        /// The address being given to it.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// To 255.255.255.255, port 68.
    Broadcast,
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub to: Destination,
    /// The encoded DHCP message.
    pub payload: Vec<u8>,
}

/// What the shell must do with one request. Order matters: a lease change is made durable
/// before the reply that announces it is sent.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send a reply, after recording the lease change if there is one.
    Reply {
        /// The reply's message type (OFFER, ACK, NAK).
        kind: MessageType,
        /// The packet.
        transmit: Transmit,
        /// A lease granted by this reply (ACK only).
        lease: Option<LeaseChange>,
    },
    /// Record a lease change and send nothing (RELEASE, DECLINE).
    Record(LeaseChange),
    /// Send nothing; counted under the reason.
    Drop(DropReason),
}

/// Requests one client (MAC) may have answered per second; the rest are dropped and counted,
/// so a flood from one guest costs a counter, not a reply, a journal write and a log line each.
pub const PER_CLIENT_PER_SECOND: u32 = 16;
/// Most clients tracked per second; beyond that new clients are not limited (the table of
/// counters stays bounded whatever the flood).
const TRACKED_CLIENTS: usize = 65_536;

/// The DHCP engine of one listener, owning its counters.
#[derive(Debug, Default)]
pub struct Engine {
    stats: Stats,
    /// The second `recent` counts for, and requests per client in it.
    second: u64,
    recent: HashMap<MacAddr, u32>,
}

impl Engine {
    /// A fresh engine with zeroed counters.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts a datagram the shell dropped before the engine saw it (one cut short by the
    /// receive buffer), so that every drop shows in the same counters.
    pub fn count_shell_drop(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
    }

    /// Decides what to do with one received UDP payload at wall-clock time `now` (unix seconds).
    pub fn handle(&mut self, table: &Table, rx: RxMeta<'_>, packet: &[u8], now: u64) -> Decision {
        self.handle_with_leases(table, rx, packet, now, &NoLeases)
    }

    /// Like [`Engine::handle`], also consulting the current leases: a RELEASE or DECLINE from
    /// the holder of a lease ends it even when its binding has left the table (nova removes the
    /// host from the hosts file and HUPs before it runs dhcp_release).
    pub fn handle_with_leases(
        &mut self,
        table: &Table,
        rx: RxMeta<'_>,
        packet: &[u8],
        now: u64,
        leases: &dyn LeaseView,
    ) -> Decision {
        self.stats.received += 1;
        let decision = match wire::parse(packet) {
            Ok(req) if !self.admit(req.chaddr, now) => Decision::Drop(DropReason::RateLimited),
            Ok(req) => {
                self.stats.count_message(req.message_type);
                if req.repeated_options > 0 {
                    self.stats.repeated_options += 1;
                }
                decide(table, rx, &req, now, leases)
            }
            Err(e) => Decision::Drop(DropReason::Malformed(e)),
        };
        match &decision {
            Decision::Reply { kind, .. } => self.stats.count_message(*kind),
            Decision::Record(change) => self.stats.count_record(change),
            Decision::Drop(reason) => self.stats.count_drop(*reason),
        }
        decision
    }
}

impl Engine {
    /// Counts a request against its client's allowance for the second `now`.
    fn admit(&mut self, mac: MacAddr, now: u64) -> bool {
        if now != self.second {
            self.second = now;
            self.recent.clear();
        }
        if self.recent.len() >= TRACKED_CLIENTS && !self.recent.contains_key(&mac) {
            return true;
        }
        let count = self.recent.entry(mac).or_insert(0);
        *count += 1;
        *count <= PER_CLIENT_PER_SECOND
    }
}

/// What the engine may ask of the lease state (the shell's store, or nothing).
pub trait LeaseView {
    /// The MAC holding an active lease on `ip`, if any.
    fn holder(&self, ip: Ipv4Addr) -> Option<MacAddr>;
}

/// No lease state: bindings alone decide.
pub struct NoLeases;

impl LeaseView for NoLeases {
    fn holder(&self, _: Ipv4Addr) -> Option<MacAddr> {
        None
    }
}

/// A RELEASE or DECLINE whose binding is gone: it ends the lease if the sender holds it and the
/// address belongs to a network on the receiving bridge.
fn orphan_release(
    table: &Table,
    rx: RxMeta<'_>,
    req: &Request<'_>,
    leases: &dyn LeaseView,
) -> Option<Decision> {
    let (ip, decline) = match req.message_type {
        MessageType::Release => (req.ciaddr, false),
        MessageType::Decline => (req.requested_ip?, true),
        _ => return None,
    };
    let on_bridge = table
        .networks
        .iter()
        .any(|n| n.bridge == rx.bridge && n.cidr.contains(ip));
    if !on_bridge || leases.holder(ip) != Some(req.chaddr) {
        return None;
    }
    let mac = req.chaddr;
    Some(Decision::Record(if decline {
        LeaseChange::Decline { mac, ip }
    } else {
        LeaseChange::Release { mac, ip }
    }))
}

fn decide(
    table: &Table,
    rx: RxMeta<'_>,
    req: &Request<'_>,
    now: u64,
    leases: &dyn LeaseView,
) -> Decision {
    let (network, binding) = match find_binding(table, rx, req) {
        Ok(found) => found,
        Err(reason) => {
            return orphan_release(table, rx, req, leases).unwrap_or(Decision::Drop(reason))
        }
    };
    if binding.ignore {
        return Decision::Drop(DropReason::IgnoredClient);
    }
    let ctx = Context {
        network,
        binding,
        req,
        now,
    };
    match req.message_type {
        MessageType::Discover => ctx.reply(MessageType::Offer),
        MessageType::Request => ctx.request(),
        MessageType::Release => ctx.release(),
        MessageType::Decline => ctx.decline(),
        MessageType::Inform => ctx.reply(MessageType::Ack),
        _ => Decision::Drop(DropReason::UnexpectedMessageType),
    }
}

/// Relayed requests belong to the receiving bridge's network holding giaddr; others to any
/// network on the receiving bridge.
fn find_binding<'t>(
    table: &'t Table,
    rx: RxMeta<'_>,
    req: &Request<'_>,
) -> Result<(&'t Network, &'t Binding), DropReason> {
    let lookup = |n: &'t Network| {
        n.binding(req.chaddr, req.client_id.as_deref())
            .map(|b| (n, b))
    };
    if !req.giaddr.is_unspecified() {
        // Only networks on the bridge the request came in on: a guest on one bridge must not
        // reach (or release) bindings of another bridge by writing its giaddr.
        let network = table
            .networks
            .iter()
            .find(|n| n.bridge == rx.bridge && n.cidr.contains(req.giaddr))
            .ok_or(DropReason::NoNetwork)?;
        return lookup(network).ok_or(DropReason::UnknownClient);
    }
    let mut networks = table
        .networks
        .iter()
        .filter(|n| n.bridge == rx.bridge)
        .peekable();
    if networks.peek().is_none() {
        return Err(DropReason::NoNetwork);
    }
    networks.find_map(lookup).ok_or(DropReason::UnknownClient)
}

struct Context<'a> {
    network: &'a Network,
    binding: &'a Binding,
    req: &'a Request<'a>,
    now: u64,
}

impl Context<'_> {
    /// RFC 2131 section 4.3.2: which state the client is in decides what must match.
    fn request(&self) -> Decision {
        let req = self.req;
        let ours = self.binding.ip;
        let wanted = match (req.server_id, req.requested_ip) {
            (Some(server), _) if server != self.network.server => {
                return Decision::Drop(DropReason::OtherServer)
            }
            // SELECTING: it chose our offer.
            (Some(_), Some(ip)) => ip,
            (Some(_), None) => return Decision::Drop(DropReason::BadRequest),
            // INIT-REBOOT: it wants to keep an address it had.
            (None, Some(ip)) => ip,
            // RENEWING (unicast) or REBINDING (broadcast).
            (None, None) if !req.ciaddr.is_unspecified() => req.ciaddr,
            (None, None) => return Decision::Drop(DropReason::BadRequest),
        };
        if wanted == ours {
            self.reply(MessageType::Ack)
        } else {
            self.nak()
        }
    }

    fn release(&self) -> Decision {
        if self.req.server_id.is_some_and(|s| s != self.network.server) {
            return Decision::Drop(DropReason::OtherServer);
        }
        if self.req.ciaddr != self.binding.ip {
            return Decision::Drop(DropReason::NotItsAddress);
        }
        Decision::Record(LeaseChange::Release {
            mac: self.req.chaddr,
            ip: self.binding.ip,
        })
    }

    fn decline(&self) -> Decision {
        if self.req.server_id.is_some_and(|s| s != self.network.server) {
            return Decision::Drop(DropReason::OtherServer);
        }
        if self.req.requested_ip != Some(self.binding.ip) {
            return Decision::Drop(DropReason::NotItsAddress);
        }
        Decision::Record(LeaseChange::Decline {
            mac: self.req.chaddr,
            ip: self.binding.ip,
        })
    }

    fn lease_seconds(&self) -> u32 {
        self.binding
            .lease_time
            .unwrap_or(self.network.lease_time)
            .wire()
    }

    /// An OFFER, an ACK to a REQUEST, or an ACK to an INFORM (no address, no lease).
    fn reply(&self, kind: MessageType) -> Decision {
        let inform = self.req.message_type == MessageType::Inform;
        let (yiaddr, lease) = if inform {
            (Ipv4Addr::UNSPECIFIED, None)
        } else {
            (self.binding.ip, Some(self.lease_seconds()))
        };
        let mut options: Vec<(u8, &[u8])> = Vec::with_capacity(self.binding.options.0.len() + 2);
        options.extend(self.binding.options.0.iter().map(|(c, v)| (*c, &**v)));
        if let Some(host) = &self.binding.hostname {
            options.push((12, host.as_bytes()));
        }
        if self.binding.options.get(15).is_none() {
            if let Some(domain) = &self.binding.name_domain {
                options.push((15, domain.as_bytes()));
            }
        }
        let spec = ReplySpec {
            kind,
            request: self.req,
            yiaddr,
            server: self.network.server,
            lease,
            options: &options,
            message: None,
        };
        let Some(payload) = reply::encode(&spec) else {
            return Decision::Drop(DropReason::EncodeFailed);
        };
        let lease = (kind == MessageType::Ack && !inform).then(|| {
            LeaseChange::Grant(Lease {
                mac: self.req.chaddr,
                ip: self.binding.ip,
                expires: self
                    .binding
                    .lease_time
                    .unwrap_or(self.network.lease_time)
                    .expiry(self.now),
                hostname: self.binding.hostname.as_deref().map(str::to_string),
                client_id: self.req.client_id.as_deref().map(<[u8]>::to_vec),
            })
        });
        Decision::Reply {
            kind,
            transmit: Transmit {
                to: self.destination(kind, yiaddr),
                payload,
            },
            lease,
        }
    }

    fn nak(&self) -> Decision {
        let spec = ReplySpec {
            kind: MessageType::Nak,
            request: self.req,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            server: self.network.server,
            lease: None,
            options: &[],
            message: Some("requested address is not this client's"),
        };
        match reply::encode(&spec) {
            Some(payload) => Decision::Reply {
                kind: MessageType::Nak,
                transmit: Transmit {
                    to: self.destination(MessageType::Nak, Ipv4Addr::UNSPECIFIED),
                    payload,
                },
                lease: None,
            },
            None => Decision::Drop(DropReason::EncodeFailed),
        }
    }

    /// RFC 2131 section 4.1, in its order.
    fn destination(&self, kind: MessageType, yiaddr: Ipv4Addr) -> Destination {
        let req = self.req;
        if !req.giaddr.is_unspecified() {
            Destination::Relay(req.giaddr)
        } else if kind == MessageType::Nak {
            Destination::Broadcast
        } else if !req.ciaddr.is_unspecified() {
            Destination::Client(req.ciaddr)
        } else if req.broadcast || yiaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Hardware {
                ip: yiaddr,
                mac: req.chaddr,
            }
        }
    }
}
