//! Counters of the DNS engine.

use std::sync::Arc;

use super::wire::WireError;
use crate::stats::{add_arrays, Counters, Report};

crate::counter_enum! {
    /// How a query was answered (or not).
    pub enum Outcome {
        /// From netnode's own names (instances, hosts files).
        Local => "local",
        /// NXDOMAIN or NODATA with authority, from a zone netnode answers for.
        Authority => "authority",
        /// From the cache.
        CacheHit => "cache_hit",
        /// Sent upstream.
        Forwarded => "forwarded",
        /// Joined an identical query already upstream.
        Merged => "merged",
        /// A single label, answered NXDOMAIN rather than forwarded.
        DomainNeeded => "domain_needed",
        /// REFUSED: nothing to forward to, a zone transfer, another class.
        Refused => "refused",
        /// SERVFAIL: no upstream answered in time.
        ServFail => "servfail",
        /// FORMERR or NOTIMP to a query that could not be read.
        FormErr => "formerr",
        /// Over UDP, too large: answered with TC set.
        Truncated => "truncated",
        /// EDNS version above 0: BADVERS.
        BadVersion => "badvers",
        /// ANY of a name not netnode's: the synthesized HINFO of RFC 8482.
        MinimalAny => "minimal_any",
    }
}

crate::counter_enum! {
    /// Why a query or an upstream reply was dropped without an answer.
    pub enum DropKind {
        /// Not even a header.
        Truncated => "truncated",
        /// A response sent to the server.
        NotQuery => "not_query",
        /// The client sent more than its share this second.
        RateLimited => "rate_limited",
        /// The client is not on any network's subnet (dnsmasq's `--local-service`).
        NotLocal => "not_local",
        /// Too many queries already upstream.
        TooManyForwards => "too_many_forwards",
        /// An upstream reply from the wrong address, id or question.
        SpoofedReply => "spoofed_reply",
        /// An upstream reply for a query already answered or given up.
        LateReply => "late_reply",
        /// An upstream reply that does not decode.
        BadReply => "bad_reply",
    }
}

/// Why a query was dropped: counted under a [`DropKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Unreadable in a way that gets no answer at all.
    Malformed(WireError),
    /// The client is over its rate.
    RateLimited,
    /// The client is not on a served subnet.
    NotLocal,
    /// The forward table is full.
    TooManyForwards,
}

impl DropReason {
    /// The counter it is counted under.
    pub fn kind(self) -> DropKind {
        match self {
            DropReason::Malformed(WireError::NotQuery) => DropKind::NotQuery,
            DropReason::Malformed(_) => DropKind::Truncated,
            DropReason::RateLimited => DropKind::RateLimited,
            DropReason::NotLocal => DropKind::NotLocal,
            DropReason::TooManyForwards => DropKind::TooManyForwards,
        }
    }
}

/// Counters of one DNS engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries received (UDP and TCP).
    pub queries: u64,
    /// Queries over TCP.
    pub tcp: u64,
    /// Outcomes.
    pub outcomes: [u64; Outcome::COUNT],
    /// Drops.
    pub drops: [u64; DropKind::COUNT],
    /// Upstream queries that timed out.
    pub upstream_timeouts: u64,
    /// TCP connections closed at once: as many as allowed were open.
    pub tcp_refused: u64,
    /// TCP connections closed after a while with no query.
    pub tcp_idle_closed: u64,
    /// The outcome counted last (what `--log-queries` says about a query).
    pub last: Option<Outcome>,
}

impl Stats {
    /// Counts an outcome.
    pub fn count(&mut self, o: Outcome) {
        self.outcomes[o as usize] += 1;
        self.last = Some(o);
    }

    /// Counts a drop.
    pub fn drop(&mut self, d: DropKind) {
        self.drops[d as usize] += 1;
    }

    /// One outcome's count.
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }

    /// One drop's count.
    pub fn dropped(&self, d: DropKind) -> u64 {
        self.drops[d as usize]
    }
}

impl Counters for Stats {
    fn add(&mut self, o: &Stats) {
        self.queries += o.queries;
        self.tcp += o.tcp;
        add_arrays(&mut self.outcomes, &o.outcomes);
        add_arrays(&mut self.drops, &o.drops);
        self.upstream_timeouts += o.upstream_timeouts;
        self.tcp_refused += o.tcp_refused;
        self.tcp_idle_closed += o.tcp_idle_closed;
    }

    fn report(&self, bridge: Option<&Arc<str>>, out: &mut Report) {
        out.push("dns_queries", None, bridge, self.queries);
        out.push("dns_tcp", None, bridge, self.tcp);
        for o in Outcome::ALL {
            out.push("dns", Some(o.name()), bridge, self.outcomes[*o as usize]);
        }
        for d in DropKind::ALL {
            out.push("dns_drop", Some(d.name()), bridge, self.drops[*d as usize]);
        }
        out.push(
            "dns_upstream_timeouts",
            None,
            bridge,
            self.upstream_timeouts,
        );
        out.push("dns_tcp_refused", None, bridge, self.tcp_refused);
        out.push("dns_tcp_idle_closed", None, bridge, self.tcp_idle_closed);
    }
}
