//! Counters owned by the DHCP engine: plain values, indexed by [`Message`] and [`DropKind`].

use std::fmt;
use std::sync::Arc;

use dhcproto::v4::MessageType;

use super::lease::LeaseChange;
use super::wire::WireError;
use crate::stats::{add_arrays, Counters, Report};

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The packet is not a well-formed DHCP request.
    Malformed(WireError),
    /// No network on this bridge, or none holding the relay's giaddr.
    NoNetwork,
    /// No binding for this MAC or client id (static mode).
    UnknownClient,
    /// The binding says `ignore`.
    IgnoredClient,
    /// The client selected, or addressed, another server.
    OtherServer,
    /// A REQUEST that fits none of RFC 2131's states.
    BadRequest,
    /// A RELEASE or DECLINE for an address that is not the client's binding.
    NotItsAddress,
    /// OFFER, ACK or NAK sent to a server.
    UnexpectedMessageType,
    /// The reply could not be encoded.
    EncodeFailed,
    /// The client sent more than its share of requests this second.
    RateLimited,
    /// The datagram was longer than the listener's receive slot and arrived cut short.
    Oversized,
}

impl DropReason {
    /// The counter this drop is counted under.
    pub fn kind(self) -> DropKind {
        match self {
            DropReason::Malformed(WireError::Truncated) => DropKind::Truncated,
            DropReason::Malformed(WireError::BadMagic) => DropKind::BadMagic,
            DropReason::Malformed(WireError::NotRequest) => DropKind::NotRequest,
            DropReason::Malformed(WireError::BadHlen) => DropKind::BadHlen,
            DropReason::Malformed(WireError::NotEthernet) => DropKind::NotEthernet,
            DropReason::Malformed(WireError::BadOptionLen { .. }) => DropKind::BadOptionLen,
            DropReason::Malformed(WireError::BadMessageType) => DropKind::BadMessageType,
            DropReason::NoNetwork => DropKind::NoNetwork,
            DropReason::UnknownClient => DropKind::UnknownClient,
            DropReason::IgnoredClient => DropKind::IgnoredClient,
            DropReason::OtherServer => DropKind::OtherServer,
            DropReason::BadRequest => DropKind::BadRequest,
            DropReason::NotItsAddress => DropKind::NotItsAddress,
            DropReason::UnexpectedMessageType => DropKind::UnexpectedMessageType,
            DropReason::EncodeFailed => DropKind::EncodeFailed,
            DropReason::RateLimited => DropKind::RateLimited,
            DropReason::Oversized => DropKind::Oversized,
        }
    }

    /// A short stable name for logs and counters.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }
}

crate::counter_enum! {
    /// The drop counters: one per [`DropReason`], the malformed ones by their wire error.
    pub enum DropKind {
        /// Shorter than the header.
        Truncated => "truncated",
        /// Wrong magic cookie.
        BadMagic => "bad_magic",
        /// Not a BOOTREQUEST.
        NotRequest => "not_request",
        /// `hlen` too large.
        BadHlen => "bad_hlen",
        /// Not Ethernet.
        NotEthernet => "not_ethernet",
        /// An option runs past its area.
        BadOptionLen => "bad_option_len",
        /// No usable option 53.
        BadMessageType => "bad_message_type",
        /// No network for the request.
        NoNetwork => "no_network",
        /// No binding (static mode).
        UnknownClient => "unknown_client",
        /// The binding says ignore.
        IgnoredClient => "ignored_client",
        /// Meant for another server.
        OtherServer => "other_server",
        /// A REQUEST in no RFC 2131 state.
        BadRequest => "bad_request",
        /// RELEASE or DECLINE of another address.
        NotItsAddress => "not_its_address",
        /// A server message sent to the server.
        UnexpectedMessageType => "unexpected_message_type",
        /// The reply could not be encoded.
        EncodeFailed => "encode_failed",
        /// Over the per-client rate.
        RateLimited => "rate_limited",
        /// Longer than the receive slot.
        Oversized => "oversized",
    }
}

crate::counter_enum! {
    /// DHCP message types, as counted: the client's kinds when received, the server's when sent.
    pub enum Message {
        /// DHCPDISCOVER received.
        Discover => "discover",
        /// DHCPREQUEST received.
        Request => "request",
        /// DHCPDECLINE received.
        Decline => "decline",
        /// DHCPRELEASE received.
        Release => "release",
        /// DHCPINFORM received.
        Inform => "inform",
        /// DHCPOFFER sent.
        Offer => "offer",
        /// DHCPACK sent.
        Ack => "ack",
        /// DHCPNAK sent.
        Nak => "nak",
    }
}

impl Message {
    /// The counted kind of a dhcproto message type (`None` for kinds netnode never counts).
    pub fn of(kind: MessageType) -> Option<Message> {
        Some(match kind {
            MessageType::Discover => Message::Discover,
            MessageType::Request => Message::Request,
            MessageType::Decline => Message::Decline,
            MessageType::Release => Message::Release,
            MessageType::Inform => Message::Inform,
            MessageType::Offer => Message::Offer,
            MessageType::Ack => Message::Ack,
            MessageType::Nak => Message::Nak,
            _ => return None,
        })
    }
}

/// Counters of one engine (one bridge). `Default + Copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub received: u64,
    /// Messages by type: requests received, replies sent.
    pub messages: [u64; Message::COUNT],
    /// Leases ended by RELEASE or DECLINE.
    pub leases_ended: u64,
    /// Requests in which some option appeared more than once.
    pub repeated_options: u64,
    /// Drops by reason.
    pub drops: [u64; DropKind::COUNT],
}

impl Stats {
    /// Counts a request received or a reply sent.
    pub(crate) fn count_message(&mut self, kind: MessageType) {
        if let Some(m) = Message::of(kind) {
            self.messages[m as usize] += 1;
        }
    }

    pub(crate) fn count_record(&mut self, _change: &LeaseChange) {
        self.leases_ended += 1;
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.kind() as usize] += 1;
    }

    /// How many messages of this type were received (client kinds) or sent (server kinds).
    pub fn messages(&self, kind: Message) -> u64 {
        self.messages[kind as usize]
    }

    /// How many requests were dropped for this reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.kind() as usize]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

impl Counters for Stats {
    fn add(&mut self, other: &Stats) {
        self.received += other.received;
        add_arrays(&mut self.messages, &other.messages);
        self.leases_ended += other.leases_ended;
        self.repeated_options += other.repeated_options;
        add_arrays(&mut self.drops, &other.drops);
    }

    fn report(&self, bridge: Option<&Arc<str>>, out: &mut Report) {
        out.push("received", None, bridge, self.received);
        for m in Message::ALL {
            out.push(m.name(), None, bridge, self.messages(*m));
        }
        out.push("leases_ended", None, bridge, self.leases_ended);
        out.push("repeated_options", None, bridge, self.repeated_options);
        for d in DropKind::ALL {
            out.push("drop", Some(d.name()), bridge, self.drops[*d as usize]);
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut report = Report::default();
        self.report(None, &mut report);
        report.fmt(f)
    }
}
