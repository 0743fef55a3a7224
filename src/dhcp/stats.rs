//! Counters owned by the DHCP engine (plain values, summed by the shell for logs).

use std::fmt;

use dhcproto::v4::MessageType;

use super::lease::LeaseChange;
use super::wire::WireError;

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
    /// A short stable name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed(WireError::Truncated) => "truncated",
            DropReason::Malformed(WireError::BadMagic) => "bad_magic",
            DropReason::Malformed(WireError::NotRequest) => "not_request",
            DropReason::Malformed(WireError::BadHlen) => "bad_hlen",
            DropReason::Malformed(WireError::NotEthernet) => "not_ethernet",
            DropReason::Malformed(WireError::BadOptionLen { .. }) => "bad_option_len",
            DropReason::Malformed(WireError::BadMessageType) => "bad_message_type",
            DropReason::NoNetwork => "no_network",
            DropReason::UnknownClient => "unknown_client",
            DropReason::IgnoredClient => "ignored_client",
            DropReason::OtherServer => "other_server",
            DropReason::BadRequest => "bad_request",
            DropReason::NotItsAddress => "not_its_address",
            DropReason::UnexpectedMessageType => "unexpected_message_type",
            DropReason::EncodeFailed => "encode_failed",
            DropReason::RateLimited => "rate_limited",
            DropReason::Oversized => "oversized",
        }
    }

    const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Malformed(WireError::Truncated),
        DropReason::Malformed(WireError::BadMagic),
        DropReason::Malformed(WireError::NotRequest),
        DropReason::Malformed(WireError::BadHlen),
        DropReason::Malformed(WireError::NotEthernet),
        DropReason::Malformed(WireError::BadOptionLen { code: 0 }),
        DropReason::Malformed(WireError::BadMessageType),
        DropReason::NoNetwork,
        DropReason::UnknownClient,
        DropReason::IgnoredClient,
        DropReason::OtherServer,
        DropReason::BadRequest,
        DropReason::NotItsAddress,
        DropReason::UnexpectedMessageType,
        DropReason::EncodeFailed,
        DropReason::RateLimited,
        DropReason::Oversized,
    ];

    fn index(self) -> usize {
        let name = self.name();
        DropReason::ALL
            .iter()
            .position(|r| r.name() == name)
            .unwrap_or(0)
    }
}

/// How many drop reasons there are.
pub const DROP_REASONS: usize = 17;

/// Counters of one engine. `Default + Copy`, added together for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub received: u64,
    /// DISCOVER, REQUEST, DECLINE, RELEASE, INFORM received.
    pub discovers: u64,
    /// REQUESTs received.
    pub requests: u64,
    /// DECLINEs received.
    pub declines: u64,
    /// RELEASEs received.
    pub releases: u64,
    /// INFORMs received.
    pub informs: u64,
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs sent.
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// Leases ended by RELEASE or DECLINE.
    pub leases_ended: u64,
    /// Requests in which some option appeared more than once.
    pub repeated_options: u64,
    /// Drops by reason, indexed like [`DropReason::ALL`].
    pub drops: [u64; DROP_REASONS],
}

impl Stats {
    pub(crate) fn count_request(&mut self, kind: MessageType) {
        match kind {
            MessageType::Discover => self.discovers += 1,
            MessageType::Request => self.requests += 1,
            MessageType::Decline => self.declines += 1,
            MessageType::Release => self.releases += 1,
            MessageType::Inform => self.informs += 1,
            _ => {}
        }
    }

    pub(crate) fn count_reply(&mut self, kind: MessageType) {
        match kind {
            MessageType::Offer => self.offers += 1,
            MessageType::Ack => self.acks += 1,
            MessageType::Nak => self.naks += 1,
            _ => {}
        }
    }

    pub(crate) fn count_record(&mut self, _change: &LeaseChange) {
        self.leases_ended += 1;
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// How many requests were dropped for this reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another engine's counters.
    pub fn add(&mut self, other: &Stats) {
        self.received += other.received;
        self.discovers += other.discovers;
        self.requests += other.requests;
        self.declines += other.declines;
        self.releases += other.releases;
        self.informs += other.informs;
        self.offers += other.offers;
        self.acks += other.acks;
        self.naks += other.naks;
        self.leases_ended += other.leases_ended;
        self.repeated_options += other.repeated_options;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} discover={} request={} decline={} release={} inform={} offer={} ack={} nak={} leases_ended={} repeated_options={}",
            self.received, self.discovers, self.requests, self.declines, self.releases, self.informs, self.offers, self.acks, self.naks, self.leases_ended, self.repeated_options
        )?;
        for (reason, count) in DropReason::ALL.iter().zip(self.drops) {
            if count > 0 {
                write!(f, " drop.{}={}", reason.name(), count)?;
            }
        }
        Ok(())
    }
}
