//! The router advertisement engine of one bridge: the schedule and the packets, pure.
//!
//! Time is a `Duration` since any fixed monotonic origin the shell chooses; randomness comes
//! from a seeded generator. The shell asks [`Advertiser::poll_timeout`] when to wake, calls
//! [`Advertiser::handle_timeout`] then, and [`Advertiser::handle_icmp`] for each received
//! ICMPv6 message, sending what they return.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::Ipv6Network;

use super::wire::{self, NdpError, PrefixInfo, RouterAdvertisement};
use crate::stats::{add_arrays, Counters, Report};
use crate::table::ra::RaParams;
use crate::table::MacAddr;

/// RFC 4861 10: the first advertisements are at most this far apart.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// RFC 4861 10: how many advertisements count as initial.
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u8 = 3;
/// RFC 4861 10: the least time between multicast advertisements.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// RFC 4861 10: the largest random delay before answering a solicitation.
pub const MAX_RA_DELAY_TIME: Duration = Duration::from_millis(500);
/// Unicast answers to solicitations allowed per second; beyond that they are folded into the
/// next multicast advertisement, so a flood of RSs cannot make netnode a traffic amplifier.
pub const UNICAST_REPLIES_PER_SECOND: u32 = 100;

/// What one bridge advertises.
#[derive(Debug, Clone, PartialEq)]
pub struct RaSpec {
    /// The parameters (from the bridge's first network with a prefix).
    pub params: Arc<RaParams>,
    /// Prefixes of every network on the bridge.
    pub prefixes: Vec<Ipv6Network>,
    /// The bridge's MAC (source link-layer address option).
    pub mac: MacAddr,
    /// The bridge's link-local address: RAs from it are our own.
    pub link_local: Ipv6Addr,
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// To all-nodes (ff02::1).
    Multicast(Vec<u8>),
    /// To one soliciting host.
    Unicast {
        /// Its address.
        to: Ipv6Addr,
        /// The RA.
        payload: Vec<u8>,
    },
}

/// Why a received message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Hop limit is not 255: it did not come from the link.
    BadHopLimit,
    /// An RS from :: carrying a source link-layer address (RFC 4861 6.1.1).
    UnspecifiedWithLladdr,
    /// An RA from a source that is not link-local (RFC 4861 6.1.2).
    NotLinkLocal,
    /// Malformed.
    Malformed(NdpError),
    /// Neither RS nor RA.
    OtherType,
}

impl DropReason {
    /// The counter this drop is counted under.
    pub fn kind(self) -> DropKind {
        match self {
            DropReason::BadHopLimit => DropKind::BadHopLimit,
            DropReason::Malformed(NdpError::BadCode) => DropKind::BadCode,
            DropReason::Malformed(_) => DropKind::Malformed,
            DropReason::UnspecifiedWithLladdr => DropKind::UnspecifiedWithLladdr,
            DropReason::NotLinkLocal => DropKind::NotLinkLocal,
            DropReason::OtherType => DropKind::OtherType,
        }
    }

    /// Short stable name for counters and logs.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }
}

crate::counter_enum! {
    /// The drop counters, one per [`DropReason`] (a bad ICMP code apart from other damage).
    pub enum DropKind {
        /// Hop limit not 255.
        BadHopLimit => "bad_hop_limit",
        /// ICMP code not 0.
        BadCode => "bad_code",
        /// Otherwise malformed.
        Malformed => "malformed",
        /// RS from :: with a link-layer address.
        UnspecifiedWithLladdr => "unspecified_with_lladdr",
        /// RA from a non-link-local source.
        NotLinkLocal => "not_link_local",
        /// Neither RS nor RA.
        OtherType => "other_type",
    }
}

/// What a received message led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Answer at once with this unicast RA.
    Reply(Output),
    /// A multicast RA was (re)scheduled; poll the timeout again.
    Scheduled,
    /// Another router's RA, with what disagrees with ours (RFC 4861 6.2.7).
    OtherRouter {
        /// The other router.
        from: Ipv6Addr,
        /// Human-readable inconsistencies; empty when it agrees.
        inconsistencies: Vec<String>,
    },
    /// Our own RA looped back.
    Own,
    /// Dropped and counted.
    Drop(DropReason),
}

/// Counters of one advertiser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Multicast RAs sent (periodic and solicited).
    pub multicast: u64,
    /// Unicast RAs sent in answer to solicitations.
    pub unicast: u64,
    /// RAs sent in answer to solicitations: every unicast one, and a multicast one brought
    /// forward by a solicitation (the rest of `multicast` is unsolicited).
    pub solicited: u64,
    /// Valid RSs received.
    pub solicitations: u64,
    /// RAs from other routers.
    pub other_routers: u64,
    /// Inconsistencies found in other routers' RAs.
    pub inconsistencies: u64,
    /// Drops by reason.
    pub drops: [u64; DropKind::COUNT],
}

impl Stats {
    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r.kind() as usize]
    }
}

impl Counters for Stats {
    fn add(&mut self, o: &Stats) {
        self.multicast += o.multicast;
        self.unicast += o.unicast;
        self.solicited += o.solicited;
        self.solicitations += o.solicitations;
        self.other_routers += o.other_routers;
        self.inconsistencies += o.inconsistencies;
        add_arrays(&mut self.drops, &o.drops);
    }

    fn report(&self, bridge: Option<&Arc<str>>, out: &mut Report) {
        out.push("ra_multicast", None, bridge, self.multicast);
        out.push("ra_unicast", None, bridge, self.unicast);
        out.push("ra_sent", Some("solicited"), bridge, self.solicited);
        let unsolicited = (self.multicast + self.unicast).saturating_sub(self.solicited);
        out.push("ra_sent", Some("unsolicited"), bridge, unsolicited);
        out.push("rs", None, bridge, self.solicitations);
        out.push("other_routers", None, bridge, self.other_routers);
        out.push("inconsistencies", None, bridge, self.inconsistencies);
        for d in DropKind::ALL {
            out.push("ra_drop", Some(d.name()), bridge, self.drops[*d as usize]);
        }
    }
}

/// The advertiser of one bridge.
#[derive(Debug)]
pub struct Advertiser {
    spec: RaSpec,
    rng: fastrand::Rng,
    initial_left: u8,
    next_multicast: Duration,
    last_multicast: Option<Duration>,
    /// A solicitation brought the next multicast RA forward: it counts as solicited.
    solicited_due: bool,
    unicast_window: (Duration, u32),
    stats: Stats,
}

impl Advertiser {
    /// Starts advertising at `now`: the first RA is due at once.
    pub fn new(spec: RaSpec, now: Duration, seed: u64) -> Advertiser {
        Advertiser {
            spec,
            rng: fastrand::Rng::with_seed(seed),
            initial_left: MAX_INITIAL_RTR_ADVERTISEMENTS,
            next_multicast: now,
            last_multicast: None,
            solicited_due: false,
            unicast_window: (now, 0),
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What this advertiser advertises.
    pub fn spec(&self) -> &RaSpec {
        &self.spec
    }

    /// When the next multicast RA is due.
    pub fn poll_timeout(&self) -> Duration {
        self.next_multicast
    }

    /// Sends the multicast RA if it is due, and schedules the next one.
    pub fn handle_timeout(&mut self, now: Duration) -> Option<Output> {
        if now < self.next_multicast {
            return None;
        }
        let payload = self
            .advertisement(self.spec.params.default_lifetime, &[])
            .emit();
        self.last_multicast = Some(now);
        self.stats.multicast += 1;
        if std::mem::take(&mut self.solicited_due) {
            self.stats.solicited += 1;
        }
        let mut interval =
            self.random_between(self.spec.params.min_interval, self.spec.params.max_interval);
        if self.initial_left > 0 {
            self.initial_left -= 1;
            interval = interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next_multicast = now + interval;
        Some(Output::Multicast(payload))
    }

    /// Handles one received ICMPv6 message from `src` with IPv6 hop limit `hop_limit`.
    pub fn handle_icmp(
        &mut self,
        now: Duration,
        src: Ipv6Addr,
        hop_limit: u8,
        bytes: &[u8],
    ) -> Received {
        let outcome = match bytes.first() {
            Some(&wire::ROUTER_SOLICITATION) => self.solicitation(now, src, hop_limit, bytes),
            Some(&wire::ROUTER_ADVERTISEMENT) => self.other_advertisement(src, hop_limit, bytes),
            _ => Received::Drop(DropReason::OtherType),
        };
        if let Received::Drop(r) = outcome {
            self.stats.drops[r.kind() as usize] += 1;
        }
        outcome
    }

    fn solicitation(
        &mut self,
        now: Duration,
        src: Ipv6Addr,
        hop_limit: u8,
        bytes: &[u8],
    ) -> Received {
        if hop_limit != 255 {
            return Received::Drop(DropReason::BadHopLimit);
        }
        let rs = match wire::parse_rs(bytes) {
            Ok(rs) => rs,
            Err(e) => return Received::Drop(DropReason::Malformed(e)),
        };
        if src.is_unspecified() && rs.source_lladdr.is_some() {
            return Received::Drop(DropReason::UnspecifiedWithLladdr);
        }
        self.stats.solicitations += 1;
        if !src.is_unspecified() && self.unicast_allowed(now) {
            // RFC 7772: answer a host that has an address by unicast, at once.
            self.stats.unicast += 1;
            self.stats.solicited += 1;
            let payload = self
                .advertisement(self.spec.params.default_lifetime, &[])
                .emit();
            return Received::Reply(Output::Unicast { to: src, payload });
        }
        // RFC 4861 6.2.6: a multicast answer after a random delay, and never sooner than
        // MIN_DELAY_BETWEEN_RAS after the previous multicast RA.
        let jitter = self.random_between(Duration::ZERO, MAX_RA_DELAY_TIME);
        let mut due = now + jitter;
        if let Some(last) = self.last_multicast {
            due = due.max(last + MIN_DELAY_BETWEEN_RAS + jitter);
        }
        // Counted as solicited only when this solicitation brought the next RA forward.
        if due < self.next_multicast {
            self.next_multicast = due;
            self.solicited_due = true;
        }
        Received::Scheduled
    }

    fn unicast_allowed(&mut self, now: Duration) -> bool {
        let (start, count) = &mut self.unicast_window;
        if now.saturating_sub(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= UNICAST_REPLIES_PER_SECOND
    }

    /// RFC 4861 6.2.7: compare another router's RA with ours and report what differs.
    fn other_advertisement(&mut self, src: Ipv6Addr, hop_limit: u8, bytes: &[u8]) -> Received {
        if src == self.spec.link_local {
            return Received::Own;
        }
        if hop_limit != 255 {
            return Received::Drop(DropReason::BadHopLimit);
        }
        if !src.is_unicast_link_local() {
            return Received::Drop(DropReason::NotLinkLocal);
        }
        let theirs = match wire::parse_ra(bytes) {
            Ok(ra) => ra,
            Err(e) => return Received::Drop(DropReason::Malformed(e)),
        };
        let ours = self.advertisement(self.spec.params.default_lifetime, &[]);
        let mut diff = Vec::new();
        let mut check = |what: &str, a: u64, b: u64, both_set: bool| {
            if both_set && a != b {
                diff.push(format!("{what}: theirs {b}, ours {a}"));
            }
        };
        check(
            "cur hop limit",
            ours.cur_hop_limit.into(),
            theirs.cur_hop_limit.into(),
            ours.cur_hop_limit != 0 && theirs.cur_hop_limit != 0,
        );
        check(
            "managed flag",
            ours.managed.into(),
            theirs.managed.into(),
            true,
        );
        check(
            "other-config flag",
            ours.other_config.into(),
            theirs.other_config.into(),
            true,
        );
        check(
            "reachable time",
            ours.reachable_time.into(),
            theirs.reachable_time.into(),
            ours.reachable_time != 0 && theirs.reachable_time != 0,
        );
        check(
            "retransmit timer",
            ours.retrans_timer.into(),
            theirs.retrans_timer.into(),
            ours.retrans_timer != 0 && theirs.retrans_timer != 0,
        );
        if let (Some(a), Some(b)) = (ours.mtu, theirs.mtu) {
            check("MTU", a.into(), b.into(), true);
        }
        for p in &theirs.prefixes {
            if let Some(q) = ours
                .prefixes
                .iter()
                .find(|q| q.prefix == p.prefix && q.len == p.len)
            {
                check(
                    &format!("{}/{} valid lifetime", p.prefix, p.len),
                    q.valid.into(),
                    p.valid.into(),
                    true,
                );
                check(
                    &format!("{}/{} preferred lifetime", p.prefix, p.len),
                    q.preferred.into(),
                    p.preferred.into(),
                    true,
                );
            }
        }
        self.stats.other_routers += 1;
        self.stats.inconsistencies += diff.len() as u64;
        Received::OtherRouter {
            from: src,
            inconsistencies: diff,
        }
    }

    /// Takes a new spec (a reload) at `now`. Returns an RA to send now when prefixes went away:
    /// it carries them with zero lifetimes. Any change is announced soon after.
    pub fn update(&mut self, spec: RaSpec, now: Duration) -> Option<Output> {
        let removed: Vec<Ipv6Network> = self
            .spec
            .prefixes
            .iter()
            .filter(|p| !spec.prefixes.contains(p))
            .copied()
            .collect();
        let changed = spec != self.spec;
        self.spec = spec;
        if !removed.is_empty() {
            let lifetime = if self.spec.prefixes.is_empty() {
                0
            } else {
                self.spec.params.default_lifetime
            };
            self.stats.multicast += 1;
            self.last_multicast = Some(now);
            let withdrawal = self.advertisement(lifetime, &removed).emit();
            if changed {
                self.announce_soon(now);
            }
            return Some(Output::Multicast(withdrawal));
        }
        if changed {
            self.announce_soon(now);
        }
        None
    }

    /// New information goes out soon, as after a start (RFC 4861 6.2.4): the initial burst
    /// again, its first RA as soon as the 3 s minimum gap allows.
    fn announce_soon(&mut self, now: Duration) {
        self.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS;
        let jitter = self.random_between(Duration::ZERO, MAX_RA_DELAY_TIME);
        let earliest = match self.last_multicast {
            Some(last) => now.max(last + MIN_DELAY_BETWEEN_RAS),
            None => now,
        };
        self.next_multicast = self.next_multicast.min(earliest + jitter);
    }

    /// The last RA when netnode stops: router lifetime 0, so hosts drop their default route.
    pub fn shutdown(&mut self) -> Output {
        self.stats.multicast += 1;
        Output::Multicast(self.advertisement(0, &[]).emit())
    }

    /// The last RA when the bridge leaves the table: router lifetime 0 and every prefix with
    /// zero lifetimes.
    pub fn retire(&mut self) -> Output {
        let all = std::mem::take(&mut self.spec.prefixes);
        self.stats.multicast += 1;
        Output::Multicast(self.advertisement(0, &all).emit())
    }

    /// The RA as configured, with `router_lifetime`, plus `withdrawn` prefixes at lifetime 0.
    pub fn advertisement(
        &self,
        router_lifetime: u16,
        withdrawn: &[Ipv6Network],
    ) -> RouterAdvertisement {
        let p = &self.spec.params;
        let prefix = |net: &Ipv6Network, valid: u32, preferred: u32| PrefixInfo {
            prefix: net.network(),
            len: net.prefix(),
            on_link: p.on_link,
            autonomous: p.autonomous,
            valid,
            preferred,
        };
        let mut prefixes: Vec<PrefixInfo> = self
            .spec
            .prefixes
            .iter()
            .map(|n| prefix(n, p.valid_lifetime, p.preferred_lifetime))
            .collect();
        prefixes.extend(withdrawn.iter().map(|n| prefix(n, 0, 0)));
        RouterAdvertisement {
            cur_hop_limit: p.cur_hop_limit,
            managed: p.managed,
            other_config: p.other_config,
            router_lifetime,
            reachable_time: p.reachable_time,
            retrans_timer: p.retrans_timer,
            source_lladdr: p.source_lladdr.then_some(self.spec.mac),
            mtu: (p.link_mtu != 0).then_some(p.link_mtu),
            prefixes,
            rdnss: (!p.rdnss.is_empty()).then(|| (p.rdnss_lifetime, p.rdnss.clone())),
            dnssl: (!p.dnssl.is_empty()).then(|| (p.dnssl_lifetime, p.dnssl.clone())),
        }
    }

    fn random_between(&mut self, low: Duration, high: Duration) -> Duration {
        let (lo, hi) = (low.as_millis() as u64, high.as_millis() as u64);
        Duration::from_millis(if hi > lo { self.rng.u64(lo..=hi) } else { lo })
    }
}
