//! The DNS engine: a query's bytes, the zone, the cache and the time in; an answer, a query to
//! forward, or nothing out. Upstream replies and upstream timeouts come back in by the token of
//! their forward, and yield the answers of every client waiting on it. No sockets, no clock:
//! the shell passes monotonic time; randomness (transaction ids) comes from a generator seeded
//! by the shell.
//!
//! The rules, in order: names netnode knows (instances, hosts files) and their PTRs are answered
//! with authority; names in a zone netnode is the authority for (the instance domains, the
//! reverse zones of the fixed ranges) that it does not know are NXDOMAIN (or NODATA) with the
//! zone's SOA, never forwarded; single labels are not forwarded (dnsmasq's `--domain-needed`);
//! the rest is answered from the cache or forwarded to the most specific `--server` that
//! covers the name, and with no upstream at all, REFUSED.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::cache::{Cache, Entry, Key};
use super::stats::{DropKind, DropReason, Outcome, Stats};
use super::wire::{self, flags, rcode, rtype, Answer, Query, Section};
use super::zone::Zone;
use crate::table::dns::DnsSettings;

/// How long an upstream has to answer before the next one is tried (or SERVFAIL sent).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);
/// Most queries upstream at once (dnsmasq's default `--dns-forward-max` is 150).
pub const MAX_FORWARDS: usize = 150;
/// Most clients waiting on one forwarded query.
pub const MAX_WAITERS: usize = 64;
/// Most clients whose rate is tracked per second; beyond, new clients are not limited (the
/// table stays bounded whatever the flood).
const TRACKED_CLIENTS: usize = 65_536;
/// The largest TCP message.
pub const TCP_LIMIT: usize = 65_535;
/// TTL of the synthesized answer to ANY (RFC 8482): it never changes.
const MINIMAL_ANY_TTL: u32 = 3600;

/// Where an answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// To a UDP client, through one of the shell's sockets.
    Udp {
        /// The socket the query came in on.
        socket: u32,
        /// The client.
        addr: SocketAddr,
    },
    /// To a TCP connection of the shell.
    Tcp {
        /// The connection.
        conn: u64,
    },
}

impl Waiter {
    fn limit(&self, q_limit: usize) -> usize {
        match self {
            Waiter::Udp { .. } => q_limit,
            Waiter::Tcp { .. } => TCP_LIMIT,
        }
    }
}

/// Where a query came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// The client's address (its IP is what the per-client rate counts).
    pub from: SocketAddr,
    /// Where its answer goes.
    pub waiter: Waiter,
}

/// A query to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Hand this back with the reply, or at the timeout.
    pub token: u64,
    /// The upstream server.
    pub server: SocketAddr,
    /// The query.
    pub query: Vec<u8>,
    /// Over TCP (the client asked over TCP), else UDP from a fresh random port.
    pub tcp: bool,
}

/// What to do with one query.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the answer written into the output buffer.
    Reply,
    /// Send this upstream and wait for [`Engine::handle_upstream`] or the timeout.
    Forward(Forward),
    /// It joined an identical query already upstream: its answer comes with that one's.
    Wait,
    /// Answer nothing; counted.
    Drop(DropReason),
}

/// An answer for a waiting client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The client.
    pub to: Waiter,
    /// The answer.
    pub bytes: Vec<u8>,
}

/// What an upstream reply or timeout led to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Answers to send.
    pub deliveries: Vec<Delivery>,
    /// The query goes to the next upstream (same token).
    pub retry: Option<Forward>,
    /// The reply was used (answered or moved on); `false`: it was not believed, or late, and
    /// the shell keeps waiting for the real one until the timeout.
    pub settled: bool,
}

/// A client waiting on a forwarded query: what its answer must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Client {
    to: Waiter,
    id: u16,
    flags: u16,
    question: Vec<u8>,
    edns: Option<u16>,
    limit: usize,
}

/// A query upstream.
#[derive(Debug)]
struct Pending {
    token: u64,
    txid: u16,
    server: SocketAddr,
    /// Servers still to try after this one.
    next: Vec<SocketAddr>,
    qname: Vec<u8>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    cd: bool,
    tcp: bool,
    waiters: Vec<Client>,
}

/// The DNS engine, shared by every bridge's socket.
#[derive(Debug)]
pub struct Engine {
    zone: Arc<Zone>,
    settings: Arc<DnsSettings>,
    cache: Cache,
    pending: HashMap<(Key, bool), Pending>,
    tokens: HashMap<u64, (Key, bool)>,
    next_token: u64,
    rng: rand::rngs::StdRng,
    /// The upstream that answered last: asked first unless `strict_order`.
    preferred: Option<SocketAddr>,
    /// The second `recent` counts for, and queries per client in it.
    second: u64,
    recent: HashMap<IpAddr, u32>,
    /// Queries a client may have answered per second (0: no limit).
    client_rate: u32,
    stats: Stats,
}

impl Engine {
    /// An engine over a zone and settings, drawing transaction ids from a generator seeded with
    /// `seed` (the shell seeds it from the OS; tests fix it).
    pub fn new(zone: Arc<Zone>, settings: Arc<DnsSettings>, seed: [u8; 32]) -> Engine {
        Engine {
            cache: Cache::new(settings.cache_size),
            client_rate: settings.client_rate,
            zone,
            settings,
            pending: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 1,
            rng: rand::rngs::StdRng::from_seed(seed),
            preferred: None,
            second: 0,
            recent: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// A new zone and settings (a reload); the cache is kept (within its new size).
    pub fn update(&mut self, zone: Arc<Zone>, settings: Arc<DnsSettings>) {
        self.cache.resize(settings.cache_size);
        self.client_rate = settings.client_rate;
        self.zone = zone;
        self.settings = settings;
    }

    /// Whether every query is to be logged (`--log-queries`).
    pub fn log_queries(&self) -> bool {
        self.settings.log_queries
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Answers kept and the bytes they take.
    pub fn cache_size(&self) -> (usize, usize) {
        (self.cache.len(), self.cache.bytes())
    }

    /// Handles one query at monotonic time `now`; a reply is written into `out`.
    pub fn handle(
        &mut self,
        rx: RxMeta,
        bytes: &[u8],
        now: Duration,
        out: &mut Vec<u8>,
    ) -> Decision {
        self.stats.queries += 1;
        self.stats.last = None;
        if matches!(rx.waiter, Waiter::Tcp { .. }) {
            self.stats.tcp += 1;
        }
        let decision = self.decide(rx, bytes, now, out);
        if let Decision::Drop(reason) = decision {
            self.stats.drop(reason.kind());
        }
        decision
    }

    fn decide(&mut self, rx: RxMeta, bytes: &[u8], now: Duration, out: &mut Vec<u8>) -> Decision {
        let Some(header) = wire::header(bytes) else {
            return Decision::Drop(DropReason::Malformed(wire::WireError::Truncated));
        };
        if header.flags & flags::QR != 0 {
            // A response sent as a query: answering it could start a loop between servers.
            return Decision::Drop(DropReason::Malformed(wire::WireError::NotQuery));
        }
        if !self.zone.serves(rx.from.ip()) {
            // An open resolver is an amplifier: only the networks' own clients are answered.
            return Decision::Drop(DropReason::NotLocal);
        }
        if !self.within_rate(rx.from.ip(), now) {
            return Decision::Drop(DropReason::RateLimited);
        }
        if wire::opcode(header.flags) != 0 {
            return self.bare(header, rcode::NOTIMP, out);
        }
        let q = match wire::parse_query(bytes) {
            Ok(q) => q,
            Err(_) => return self.bare(header, rcode::FORMERR, out),
        };
        let limit = rx.waiter.limit(q.udp_limit());
        if q.edns_version > 0 {
            // BADVERS (16): netnode speaks EDNS version 0 (RFC 6891 6.1.3).
            self.stats.count(Outcome::BadVersion);
            let mut a = Answer::new(out, &q, 0, 0);
            a.opt_with_rcode(1);
            a.finish();
            return Decision::Reply;
        }
        if q.qclass != wire::class::IN && q.qclass != wire::class::ANY || q.qtype == rtype::AXFR {
            self.stats.count(Outcome::Refused);
            return self.reply(&q, 0, rcode::REFUSED, limit, out, |_| {});
        }
        let name = wire::lowercase(q.qname);
        if let Some(d) = self.local(&q, &name, limit, out) {
            return d;
        }
        if q.qtype == rtype::ANY {
            // RFC 8482: one small synthesized record rather than everything an upstream has
            // (an ANY is the amplifier's favourite query); never forwarded.
            self.stats.count(Outcome::MinimalAny);
            return self.reply(&q, 0, rcode::NOERROR, limit, out, |a| {
                a.record(
                    Section::Answer,
                    rtype::HINFO,
                    MINIMAL_ANY_TTL,
                    b"\x07RFC8482\x00",
                );
            });
        }
        if wire::labels(&name).count() == 1 && self.settings.domain_needed {
            self.stats.count(Outcome::DomainNeeded);
            return self.reply(&q, 0, rcode::NXDOMAIN, limit, out, |_| {});
        }
        let key: Key = (name, q.qtype, q.qclass);
        if let Some(entry) = self.cache.get(&key, now) {
            let elapsed = now.saturating_sub(entry.stored).as_secs();
            serve(entry, elapsed as u32, &asker_of(&q, limit), out);
            self.stats.count(Outcome::CacheHit);
            if answer_is_truncated(out) {
                self.stats.count(Outcome::Truncated);
            }
            return Decision::Reply;
        }
        self.forward(key, &q, rx, limit, out)
    }

    /// Whether a client may have another query answered this second.
    fn within_rate(&mut self, ip: IpAddr, now: Duration) -> bool {
        if self.client_rate == 0 {
            return true;
        }
        let second = now.as_secs();
        if second != self.second {
            self.second = second;
            self.recent.clear();
        }
        if !self.recent.contains_key(&ip) && self.recent.len() >= TRACKED_CLIENTS {
            return true;
        }
        let n = self.recent.entry(ip).or_insert(0);
        *n += 1;
        *n <= self.client_rate
    }

    /// FORMERR or NOTIMP with the header only: never more than the query sent.
    fn bare(&mut self, h: wire::Header, code: u8, out: &mut Vec<u8>) -> Decision {
        self.stats.count(Outcome::FormErr);
        out.clear();
        out.extend_from_slice(&h.id.to_be_bytes());
        let f = flags::QR | (h.flags & (0xf << 11)) | (h.flags & flags::RD) | u16::from(code);
        out.extend_from_slice(&f.to_be_bytes());
        out.extend_from_slice(&[0; 8]);
        Decision::Reply
    }

    /// Writes an answer with `add` filling the records; too large for the client: TC.
    fn reply(
        &mut self,
        q: &Query<'_>,
        extra_flags: u16,
        code: u8,
        limit: usize,
        out: &mut Vec<u8>,
        add: impl FnOnce(&mut Answer<'_>),
    ) -> Decision {
        let mut a = Answer::new(out, q, extra_flags, code);
        add(&mut a);
        if q.edns.is_some() {
            a.opt();
        }
        a.finish();
        if out.len() > limit {
            let mut a = Answer::new(out, q, extra_flags | flags::TC, code);
            if q.edns.is_some() {
                a.opt();
            }
            a.finish();
            self.stats.count(Outcome::Truncated);
        }
        Decision::Reply
    }

    /// Names netnode answers itself: known names, their PTRs, and its authority zones.
    fn local(
        &mut self,
        q: &Query<'_>,
        name: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Option<Decision> {
        let zone = self.zone.clone();
        let ttl = zone.ttl;
        if let Some(addrs) = zone.lookup(name) {
            self.stats.count(Outcome::Local);
            let want_v4 = matches!(q.qtype, rtype::A | rtype::ANY);
            let want_v6 = matches!(q.qtype, rtype::AAAA | rtype::ANY);
            return Some(self.reply(q, flags::AA, rcode::NOERROR, limit, out, |a| {
                let mut any = false;
                if want_v4 {
                    for ip in &addrs.v4 {
                        a.record(Section::Answer, rtype::A, addrs.ttl, &wire::a(*ip));
                        any = true;
                    }
                }
                if want_v6 {
                    for ip in &addrs.v6 {
                        a.record(Section::Answer, rtype::AAAA, addrs.ttl, &wire::aaaa(*ip));
                        any = true;
                    }
                }
                // NODATA: the SOA tells resolvers how long to remember it (RFC 2308).
                if let Some(auth) = (!any).then(|| zone.authority(name)).flatten() {
                    a.record_named(Section::Authority, &auth.name, rtype::SOA, ttl, &auth.soa);
                }
            }));
        }
        if q.qtype == rtype::PTR || q.qtype == rtype::ANY {
            if let Some((target, ptr_ttl)) =
                wire::reverse_address(name).and_then(|ip| zone.pointer(ip))
            {
                self.stats.count(Outcome::Local);
                let target = target.to_vec();
                return Some(self.reply(q, flags::AA, rcode::NOERROR, limit, out, |a| {
                    a.record(Section::Answer, rtype::PTR, ptr_ttl, &target);
                }));
            }
        }
        let auth = zone.authority(name)?;
        self.stats.count(Outcome::Authority);
        let apex = auth.name == name;
        Some(if apex {
            self.reply(q, flags::AA, rcode::NOERROR, limit, out, |a| {
                match q.qtype {
                    rtype::SOA => a.record(Section::Answer, rtype::SOA, ttl, &auth.soa),
                    rtype::NS => a.record(Section::Answer, rtype::NS, ttl, &auth.ns),
                    rtype::ANY => {
                        a.record(Section::Answer, rtype::SOA, ttl, &auth.soa);
                        a.record(Section::Answer, rtype::NS, ttl, &auth.ns);
                    }
                    _ => a.record_named(Section::Authority, &auth.name, rtype::SOA, ttl, &auth.soa),
                }
            })
        } else {
            self.reply(q, flags::AA, rcode::NXDOMAIN, limit, out, |a| {
                a.record_named(Section::Authority, &auth.name, rtype::SOA, ttl, &auth.soa);
            })
        })
    }

    /// The upstreams for a name, in the order to try them: those of the most specific domain
    /// that covers it. `Err(())` when that domain is answered locally only (`/domain/`).
    fn upstreams_for(&self, name: &[u8]) -> Result<Vec<SocketAddr>, ()> {
        let best = self
            .settings
            .upstreams
            .iter()
            .filter(|u| wire::in_zone(name, &u.domain))
            .map(|u| u.domain.len())
            .max();
        let Some(len) = best else {
            return Ok(Vec::new());
        };
        let group: Vec<Option<SocketAddr>> = self
            .settings
            .upstreams
            .iter()
            .filter(|u| u.domain.len() == len && wire::in_zone(name, &u.domain))
            .map(|u| u.server)
            .collect();
        if group.iter().all(Option::is_none) {
            return Err(());
        }
        let mut servers: Vec<SocketAddr> = group.into_iter().flatten().collect();
        servers.dedup();
        if !self.settings.strict_order {
            if let Some(p) = self
                .preferred
                .and_then(|p| servers.iter().position(|s| *s == p))
            {
                servers.rotate_left(p);
            }
        }
        Ok(servers)
    }

    fn forward(
        &mut self,
        key: Key,
        q: &Query<'_>,
        rx: RxMeta,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Decision {
        let tcp = matches!(rx.waiter, Waiter::Tcp { .. });
        let client = client_of(q, rx.waiter, limit);
        let slot = (key, tcp);
        if let Some(p) = self.pending.get_mut(&slot) {
            if p.waiters.len() >= MAX_WAITERS {
                return Decision::Drop(DropReason::TooManyForwards);
            }
            p.waiters.push(client);
            self.stats.count(Outcome::Merged);
            return Decision::Wait;
        }
        let servers = match self.upstreams_for(&slot.0 .0) {
            Ok(s) if s.is_empty() => {
                // Nowhere to forward (neutron's default): REFUSED, as dnsmasq does.
                self.stats.count(Outcome::Refused);
                return self.reply(q, 0, rcode::REFUSED, limit, out, |_| {});
            }
            Ok(s) => s,
            Err(()) => {
                self.stats.count(Outcome::Authority);
                return self.reply(q, flags::AA, rcode::NXDOMAIN, limit, out, |_| {});
            }
        };
        if self.pending.len() >= MAX_FORWARDS {
            return Decision::Drop(DropReason::TooManyForwards);
        }
        let token = self.next_token;
        self.next_token += 1;
        let mut servers = servers.into_iter();
        let Some(server) = servers.next() else {
            return Decision::Drop(DropReason::TooManyForwards);
        };
        let mut pending = Pending {
            token,
            txid: 0,
            server,
            next: servers.collect(),
            qname: slot.0 .0.clone(),
            qtype: q.qtype,
            qclass: q.qclass,
            dnssec_ok: q.dnssec_ok,
            cd: q.flags & flags::CD != 0,
            tcp,
            waiters: vec![client],
        };
        let forward = self.upstream_query(&mut pending);
        self.tokens.insert(token, slot.clone());
        self.pending.insert(slot, pending);
        self.stats.count(Outcome::Forwarded);
        Decision::Forward(forward)
    }

    /// The query to the pending's current server, with a fresh random transaction id.
    fn upstream_query(&mut self, p: &mut Pending) -> Forward {
        p.txid = self.rng.random();
        let mut query = Vec::with_capacity(p.qname.len() + 27);
        query.extend_from_slice(&p.txid.to_be_bytes());
        let f = flags::RD | if p.cd { flags::CD } else { 0 };
        query.extend_from_slice(&f.to_be_bytes());
        query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
        query.extend_from_slice(&p.qname);
        query.extend_from_slice(&p.qtype.to_be_bytes());
        query.extend_from_slice(&p.qclass.to_be_bytes());
        // EDNS: netnode takes replies up to its own UDP size, and passes the DO bit on.
        query.extend_from_slice(&[0, 0, 41]);
        query.extend_from_slice(&wire::EDNS_UDP.to_be_bytes());
        query.extend_from_slice(&[0, 0, if p.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        Forward {
            token: p.token,
            server: p.server,
            query,
            tcp: p.tcp,
        }
    }

    /// An upstream's reply to the forward `token`, received from `from`.
    pub fn handle_upstream(
        &mut self,
        token: u64,
        from: SocketAddr,
        bytes: &[u8],
        now: Duration,
    ) -> Resolution {
        let Some(slot) = self.tokens.get(&token).cloned() else {
            self.stats.drop(DropKind::LateReply);
            return Resolution::default();
        };
        let Some(p) = self.pending.get_mut(&slot) else {
            self.stats.drop(DropKind::LateReply);
            return Resolution::default();
        };
        // Only the server asked, with the id and the question asked, is believed.
        let Ok(message) = hickory_proto::op::Message::from_vec(bytes) else {
            self.stats.drop(DropKind::BadReply);
            return Resolution::default();
        };
        let question_matches = message.queries.len() == 1
            && message.queries.first().is_some_and(|q| {
                let mut wire = Vec::new();
                let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut wire);
                hickory_proto::serialize::binary::BinEncodable::emit(q.name(), &mut enc).is_ok()
                    && wire.to_ascii_lowercase() == p.qname
                    && u16::from(q.query_type()) == p.qtype
                    && u16::from(q.query_class()) == p.qclass
            });
        if from != p.server || message.metadata.id != p.txid || !question_matches {
            self.stats.drop(DropKind::SpoofedReply);
            return Resolution::default();
        }
        // A reply is a response to a standard query: anything else (a query sent back, an
        // UPDATE) is not an answer to hand on, however well it decodes.
        let Some(facts) = wire::reply_facts(bytes)
            .filter(|f| f.header.flags & flags::QR != 0 && f.header.flags & flags::OPCODE == 0)
        else {
            self.stats.drop(DropKind::BadReply);
            return Resolution::default();
        };
        let code = (facts.header.flags & 0xf) as u8;
        if matches!(code, rcode::SERVFAIL | rcode::REFUSED | rcode::NOTIMP) && !p.next.is_empty() {
            return self.try_next(&slot);
        }
        self.preferred = Some(p.server);
        let entry = cacheable(bytes, &facts);
        let ttl = cache_ttl(&facts, code);
        let Some(p) = self.remove(&slot) else {
            return Resolution::default();
        };
        let deliveries = p
            .waiters
            .iter()
            .map(|c| {
                let mut bytes = Vec::with_capacity(entry.message.len() + 11);
                serve(&entry, 0, &c.asker(), &mut bytes);
                Delivery { to: c.to, bytes }
            })
            .collect();
        if let Some(ttl) = ttl {
            self.cache.insert(slot.0, entry, ttl, now);
        }
        Resolution {
            deliveries,
            retry: None,
            settled: true,
        }
    }

    /// The forward `token` got no answer in time: the next upstream, or SERVFAIL to everyone.
    pub fn handle_timeout(&mut self, token: u64) -> Resolution {
        let Some(slot) = self.tokens.get(&token).cloned() else {
            return Resolution::default();
        };
        self.stats.upstream_timeouts += 1;
        if self.pending.get(&slot).is_some_and(|p| !p.next.is_empty()) {
            return self.try_next(&slot);
        }
        let Some(p) = self.remove(&slot) else {
            return Resolution::default();
        };
        let deliveries = p
            .waiters
            .iter()
            .map(|c| {
                self.stats.count(Outcome::ServFail);
                Delivery {
                    to: c.to,
                    bytes: bare_reply(c, rcode::SERVFAIL),
                }
            })
            .collect();
        Resolution {
            deliveries,
            retry: None,
            settled: true,
        }
    }

    fn try_next(&mut self, slot: &(Key, bool)) -> Resolution {
        let Some(mut p) = self.pending.remove(slot) else {
            return Resolution::default();
        };
        p.server = p.next.remove(0);
        let forward = self.upstream_query(&mut p);
        self.pending.insert(slot.clone(), p);
        Resolution {
            deliveries: Vec::new(),
            retry: Some(forward),
            settled: true,
        }
    }

    fn remove(&mut self, slot: &(Key, bool)) -> Option<Pending> {
        let p = self.pending.remove(slot)?;
        self.tokens.remove(&p.token);
        Some(p)
    }

    /// Queries upstream now.
    pub fn forwards(&self) -> usize {
        self.pending.len()
    }
}

/// What an answer is shaped by: the asker's id, flags, question (its letter case), EDNS and
/// size limit.
struct Asker<'q> {
    id: u16,
    flags: u16,
    question: &'q [u8],
    edns: Option<u16>,
    limit: usize,
}

fn asker_of<'q>(q: &Query<'q>, limit: usize) -> Asker<'q> {
    Asker {
        id: q.id,
        flags: q.flags,
        question: q.question,
        edns: q.edns,
        limit,
    }
}

impl Client {
    fn asker(&self) -> Asker<'_> {
        Asker {
            id: self.id,
            flags: self.flags,
            question: &self.question,
            edns: self.edns,
            limit: self.limit,
        }
    }
}

fn client_of(q: &Query<'_>, to: Waiter, limit: usize) -> Client {
    Client {
        to,
        id: q.id,
        flags: q.flags,
        question: q.question.to_vec(),
        edns: q.edns,
        limit,
    }
}

/// The reply as kept: without its OPT record, id zeroed.
fn cacheable(bytes: &[u8], facts: &wire::ReplyFacts) -> Entry {
    let end = facts.opt_at.unwrap_or(bytes.len());
    let mut message = bytes.get(..end).unwrap_or(bytes).to_vec();
    if facts.opt_at.is_some() {
        let arcount = facts.header.arcount.saturating_sub(1);
        if let Some(slot) = message.get_mut(10..12) {
            slot.copy_from_slice(&arcount.to_be_bytes());
        }
    }
    Entry {
        message: message.into_boxed_slice(),
        ttl_offsets: facts.ttl_offsets.clone().into_boxed_slice(),
        question_end: facts.question_end,
        stored: Duration::ZERO,
        expires: Duration::ZERO,
    }
}

/// How long a reply may be kept: positive answers their lowest TTL, negative ones their SOA
/// minimum (none without a SOA); truncated and failed replies not at all.
fn cache_ttl(facts: &wire::ReplyFacts, code: u8) -> Option<u32> {
    if facts.header.flags & flags::TC != 0 {
        return None;
    }
    match code {
        rcode::NOERROR if facts.header.ancount > 0 => facts.min_ttl,
        rcode::NOERROR | rcode::NXDOMAIN => facts.soa_minimum,
        _ => None,
    }
}

/// A kept (or just received) reply made into the answer to one client: its id, its question's
/// letter case, its RD and CD, netnode's flags, TTLs counted down by `elapsed`, an OPT record
/// if it sent one; TC with no records when it does not fit.
fn serve(entry: &Entry, elapsed: u32, c: &Asker<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&entry.message);
    let upstream_flags = u16::from_be_bytes([*out.get(2).unwrap_or(&0), *out.get(3).unwrap_or(&0)]);
    // Not authoritative (it was forwarded); the upstream's TC and rcode stand.
    let f = flags::QR
        | flags::RA
        | (upstream_flags & (flags::TC | 0x000f))
        | (c.flags & (flags::RD | flags::CD));
    if let Some(h) = out.get_mut(..4) {
        h[..2].copy_from_slice(&c.id.to_be_bytes());
        h[2..4].copy_from_slice(&f.to_be_bytes());
    }
    if let Some(q) = out.get_mut(wire::HEADER_LEN..entry.question_end) {
        if q.len() == c.question.len() {
            q.copy_from_slice(c.question);
        }
    }
    for &at in entry.ttl_offsets.iter() {
        if let Some(field) = out.get_mut(at..at + 4) {
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
        }
    }
    if c.edns.is_some() {
        append_opt(out);
    }
    if out.len() > c.limit {
        out.truncate(entry.question_end.min(out.len()));
        let f = f | flags::TC;
        if let Some(h) = out.get_mut(2..12) {
            h[..2].copy_from_slice(&f.to_be_bytes());
            h[2..].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        }
        if c.edns.is_some() {
            append_opt(out);
        }
    }
}

/// Appends netnode's OPT record and counts it.
fn append_opt(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&wire::EDNS_UDP.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(ar) = out.get_mut(10..12) {
        let n = u16::from_be_bytes([ar[0], ar[1]]).saturating_add(1);
        ar.copy_from_slice(&n.to_be_bytes());
    }
}

/// An answer with only the question and an rcode (SERVFAIL to waiting clients).
fn bare_reply(c: &Client, code: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + c.question.len() + 11);
    out.extend_from_slice(&c.id.to_be_bytes());
    let f = flags::QR | flags::RA | (c.flags & (flags::RD | flags::CD)) | u16::from(code);
    out.extend_from_slice(&f.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&c.question);
    if c.edns.is_some() {
        append_opt(&mut out);
    }
    out
}

fn answer_is_truncated(out: &[u8]) -> bool {
    out.get(2).is_some_and(|b| b & 0x02 != 0)
}
