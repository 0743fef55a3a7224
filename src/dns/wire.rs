//! DNS messages as netnode's DNS engine reads and writes them: a checked view of a query (the
//! header, one question, an optional EDNS OPT record), answers written straight into a buffer,
//! and a walk over an upstream reply that finds what the cache needs (its records' TTL fields,
//! the SOA minimum of a negative answer, an OPT record to leave out).
//!
//! Queries are read here rather than through hickory-proto's `Message` on purpose: a query is a
//! header and one name, and the hot path answers it without allocating. The rules are strict: a
//! query's name carries no compression pointer (nothing precedes it to point at), labels are at
//! most 63 bytes and names 255, and every count must match what follows. Upstream replies are
//! also decoded by hickory-proto before they are cached (see the engine); this walk only finds
//! offsets, bounds-checked, and follows compression pointers never more than 128 times.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest name on the wire (RFC 1035 3.1).
pub const MAX_NAME: usize = 255;
/// Largest label.
pub const MAX_LABEL: usize = 63;
/// A UDP reply without EDNS is at most this long (RFC 1035 4.2.1).
pub const PLAIN_UDP: usize = 512;
/// The payload size netnode announces and answers within at most, over UDP (the DNS flag day
/// 2020 value: no IP fragmentation on common paths).
pub const EDNS_UDP: u16 = 1232;

/// Record types netnode answers itself.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Pointer (reverse).
    pub const PTR: u16 = 12;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// EDNS pseudo-record.
    pub const OPT: u16 = 41;
    /// Zone transfer (refused).
    pub const AXFR: u16 = 252;
    /// Everything: what netnode's own names have, else the synthesized HINFO (RFC 8482).
    pub const ANY: u16 = 255;
    /// Host information: the synthesized answer to ANY (RFC 8482).
    pub const HINFO: u16 = 13;
}

/// Classes.
pub mod class {
    /// Internet.
    pub const IN: u16 = 1;
    /// Any class.
    pub const ANY: u16 = 255;
}

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query could not be read.
    pub const FORMERR: u8 = 1;
    /// The server failed (no upstream answered).
    pub const SERVFAIL: u8 = 2;
    /// No such name.
    pub const NXDOMAIN: u8 = 3;
    /// Not implemented (an opcode other than QUERY).
    pub const NOTIMP: u8 = 4;
    /// Refused (nothing to forward to, a zone transfer, a class other than IN).
    pub const REFUSED: u8 = 5;
}

/// Why bytes are not a query netnode can answer. A small `Copy` enum so it can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than a header, or a section runs past the end.
    Truncated,
    /// The QR bit says it is a response.
    NotQuery,
    /// Not exactly one question.
    QuestionCount,
    /// A compression pointer, a label type other than a plain label, a label over 63 bytes or a
    /// name over 255.
    BadName,
    /// Records in the answer or authority section, or an additional record that is not one
    /// well-formed OPT.
    BadSections,
}

/// The header flags netnode reads and writes.
pub mod flags {
    /// This is a response.
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Checking disabled (passed on to upstreams).
    pub const CD: u16 = 0x0010;
    /// The opcode's bits (0 is a standard query).
    pub const OPCODE: u16 = 0x7800;
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The opcode field of a message's flags.
pub fn opcode(flags: u16) -> u8 {
    ((flags >> 11) & 0xf) as u8
}

/// A query, read: what the engine needs, borrowing the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// Transaction id.
    pub id: u16,
    /// Flags as sent.
    pub flags: u16,
    /// The question's name on the wire (labels and the final zero), as the client wrote it.
    pub qname: &'a [u8],
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// The whole question section (name, type, class): copied into the answer, keeping the
    /// client's letter case.
    pub question: &'a [u8],
    /// The EDNS payload size the client announced (`None`: no OPT record).
    pub edns: Option<u16>,
    /// The EDNS DO bit.
    pub dnssec_ok: bool,
    /// The EDNS version asked for (0 without EDNS).
    pub edns_version: u8,
}

impl Query<'_> {
    /// The most a UDP answer to this query may hold.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(size) => usize::from(size.clamp(PLAIN_UDP as u16, EDNS_UDP)),
            None => PLAIN_UDP,
        }
    }
}

/// What a header says before anything else is read: enough to answer FORMERR or NOTIMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Transaction id.
    pub id: u16,
    /// Flags.
    pub flags: u16,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

/// Reads a header.
pub fn header(bytes: &[u8]) -> Option<Header> {
    Some(Header {
        id: u16_at(bytes, 0)?,
        flags: u16_at(bytes, 2)?,
        qdcount: u16_at(bytes, 4)?,
        ancount: u16_at(bytes, 6)?,
        nscount: u16_at(bytes, 8)?,
        arcount: u16_at(bytes, 10)?,
    })
}

/// Reads a name without compression starting at `at`; returns its end (after the zero byte).
fn plain_name(bytes: &[u8], at: usize) -> Result<usize, WireError> {
    let mut pos = at;
    loop {
        let len = usize::from(*bytes.get(pos).ok_or(WireError::Truncated)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len > MAX_LABEL {
            return Err(WireError::BadName);
        }
        pos += 1 + len;
        if pos > bytes.len() {
            return Err(WireError::Truncated);
        }
        if pos - at > MAX_NAME {
            return Err(WireError::BadName);
        }
    }
    if pos - at > MAX_NAME {
        return Err(WireError::BadName);
    }
    Ok(pos)
}

/// Parses a query. Any response bit, section count or name that is not as a query's is an error.
pub fn parse_query(bytes: &[u8]) -> Result<Query<'_>, WireError> {
    let h = header(bytes).ok_or(WireError::Truncated)?;
    if h.flags & flags::QR != 0 {
        return Err(WireError::NotQuery);
    }
    if h.qdcount != 1 {
        return Err(WireError::QuestionCount);
    }
    if h.ancount != 0 || h.nscount != 0 || h.arcount > 1 {
        return Err(WireError::BadSections);
    }
    let name_end = plain_name(bytes, HEADER_LEN)?;
    let qtype = u16_at(bytes, name_end).ok_or(WireError::Truncated)?;
    let qclass = u16_at(bytes, name_end + 2).ok_or(WireError::Truncated)?;
    let question_end = name_end + 4;
    let (mut edns, mut dnssec_ok, mut edns_version) = (None, false, 0);
    if h.arcount == 1 {
        // One OPT record with the root name: 0, type 41, class = payload size, TTL = extended
        // rcode, version, DO and flags, then RDLENGTH and its options.
        let at = question_end;
        if bytes.get(at) != Some(&0) || u16_at(bytes, at + 1) != Some(rtype::OPT) {
            return Err(WireError::BadSections);
        }
        let size = u16_at(bytes, at + 3).ok_or(WireError::Truncated)?;
        let ttl = u32_at(bytes, at + 5).ok_or(WireError::Truncated)?;
        let rdlen = usize::from(u16_at(bytes, at + 9).ok_or(WireError::Truncated)?);
        if at + 11 + rdlen != bytes.len() {
            return Err(WireError::BadSections);
        }
        edns = Some(size);
        dnssec_ok = ttl & 0x8000 != 0;
        edns_version = (ttl >> 16) as u8;
    } else if question_end != bytes.len() {
        return Err(WireError::BadSections);
    }
    Ok(Query {
        id: h.id,
        flags: h.flags,
        qname: bytes
            .get(HEADER_LEN..name_end)
            .ok_or(WireError::Truncated)?,
        qtype,
        qclass,
        question: bytes
            .get(HEADER_LEN..question_end)
            .ok_or(WireError::Truncated)?,
        edns,
        dnssec_ok,
        edns_version,
    })
}

/// A wire-format name (no compression) in lower case: the key names are looked up by.
pub fn lowercase(qname: &[u8]) -> Vec<u8> {
    qname.to_ascii_lowercase()
}

pub use crate::table::dns::encode_name;

/// A wire-format name as dotted text (`vm-1.novalocal`; the root is ``), for logs.
pub fn name_text(qname: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while let Some(&len) = qname.get(pos) {
        if len == 0 {
            break;
        }
        let label = qname
            .get(pos + 1..pos + 1 + usize::from(len))
            .unwrap_or(&[]);
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(
            label
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }),
        );
        pos += 1 + usize::from(len);
    }
    out
}

/// The labels of a wire-format name, first to last.
pub fn labels(qname: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*qname.get(pos)?);
        if len == 0 {
            return None;
        }
        let label = qname.get(pos + 1..pos + 1 + len)?;
        pos += 1 + len;
        Some(label)
    })
}

/// Whether `name` is `zone` or inside it (both wire format, lower case).
pub fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    if zone == [0] {
        return true;
    }
    if name.len() < zone.len() || !name.ends_with(zone) {
        return false;
    }
    // The suffix must start at a label boundary of `name`.
    let start = name.len() - zone.len();
    let mut pos = 0;
    while pos < start {
        pos += 1 + usize::from(name.get(pos).copied().unwrap_or(0));
    }
    pos == start
}

/// Writes a reply into `out`: the query's id and question (the client's case), the given flags
/// and rcode, and records appended later with [`Answer`]. RD and CD are copied from the query.
pub struct Answer<'o> {
    out: &'o mut Vec<u8>,
    counts: [u16; 3],
}

/// A section records go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answers.
    Answer = 0,
    /// Authority (SOA of a negative answer, NS).
    Authority = 1,
    /// Additional.
    Additional = 2,
}

/// Offset of the question name in every message: records name it with a pointer to here.
const QNAME_POINTER: [u8; 2] = [0xc0, HEADER_LEN as u8];

impl<'o> Answer<'o> {
    /// Starts a reply to `q`.
    pub fn new(out: &'o mut Vec<u8>, q: &Query<'_>, extra_flags: u16, rcode: u8) -> Answer<'o> {
        out.clear();
        let flags = flags::QR
            | flags::RA
            | extra_flags
            | (q.flags & (flags::RD | flags::CD))
            | u16::from(rcode & 0xf);
        out.extend_from_slice(&q.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(q.question);
        Answer {
            out,
            counts: [0; 3],
        }
    }

    /// A record whose owner is the question's name.
    pub fn record(&mut self, section: Section, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.record_named(section, &QNAME_POINTER, rtype, ttl, rdata);
    }

    /// A record with its own owner name (wire format).
    pub fn record_named(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) {
        self.out.extend_from_slice(owner);
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&class::IN.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out
            .extend_from_slice(&(rdata.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        self.out.extend_from_slice(rdata);
        self.counts[section as usize] += 1;
    }

    /// An EDNS OPT record announcing netnode's payload size (when the query had one).
    pub fn opt(&mut self) {
        self.opt_with_rcode(0);
    }

    /// An OPT record carrying the upper 8 bits of a 12-bit rcode (BADVERS is 16: 1 here, 0 in
    /// the header), version 0.
    pub fn opt_with_rcode(&mut self, upper: u8) {
        self.out.push(0);
        self.out.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.out.extend_from_slice(&EDNS_UDP.to_be_bytes());
        self.out.extend_from_slice(&[upper, 0, 0, 0, 0, 0]);
        self.counts[Section::Additional as usize] += 1;
    }

    /// Writes the counts and returns the message.
    pub fn finish(self) -> &'o [u8] {
        for (i, n) in self.counts.iter().enumerate() {
            if let Some(slot) = self.out.get_mut(6 + 2 * i..8 + 2 * i) {
                slot.copy_from_slice(&n.to_be_bytes());
            }
        }
        self.out
    }
}

/// An A record's data.
pub fn a(ip: Ipv4Addr) -> [u8; 4] {
    ip.octets()
}

/// An AAAA record's data.
pub fn aaaa(ip: Ipv6Addr) -> [u8; 16] {
    ip.octets()
}

/// SOA data for a zone netnode is authoritative for: `ns` and `hostmaster` names, a serial, and
/// `minimum` (the negative-caching TTL, RFC 2308).
pub fn soa_rdata(mname: &[u8], rname: &[u8], serial: u32, minimum: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(mname.len() + rname.len() + 20);
    out.extend_from_slice(mname);
    out.extend_from_slice(rname);
    for v in [serial, 1200, 180, 1_209_600, minimum] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The reverse name of an address (`10.0.18.198.in-addr.arpa`, nibbles under `ip6.arpa`) in
/// wire format.
pub fn reverse_name(ip: std::net::IpAddr) -> Vec<u8> {
    let text = match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    };
    encode_name(&text).unwrap_or_else(|| vec![0])
}

/// The address a reverse name asks about, if it is a whole one.
pub fn reverse_address(qname_lower: &[u8]) -> Option<std::net::IpAddr> {
    let labels: Vec<&[u8]> = labels(qname_lower).collect();
    let text = |l: &[u8]| std::str::from_utf8(l).ok().map(str::to_string);
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if *in_addr == b"in-addr" && *arpa == b"arpa" => {
            let octet = |l: &[u8]| text(l)?.parse::<u8>().ok();
            Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?).into())
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && *ip6 == b"ip6" && *arpa == b"arpa" => {
            let mut value: u128 = 0;
            for n in nibbles.iter().rev() {
                if n.len() != 1 {
                    return None;
                }
                let digit = u8::from_str_radix(&text(n)?, 16).ok()?;
                value = (value << 4) | u128::from(digit);
            }
            Some(Ipv6Addr::from(value).into())
        }
        _ => None,
    }
}

/// What the cache needs from an upstream reply, found by walking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyFacts {
    /// Its header.
    pub header: Header,
    /// Offsets of every TTL field (answer, authority, additional other than OPT).
    pub ttl_offsets: Vec<usize>,
    /// The lowest of those TTLs.
    pub min_ttl: Option<u32>,
    /// For a negative answer: the SOA's minimum (or its TTL, if lower).
    pub soa_minimum: Option<u32>,
    /// Where the OPT record starts, when it is the last record (it is left out of what is cached).
    pub opt_at: Option<usize>,
    /// Where the question section ends.
    pub question_end: usize,
}

/// Skips a possibly compressed name at `at`; returns where it ends. Pointers are followed only
/// to check they stay inside the message, at most 128 of them.
fn skip_name(bytes: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    for _ in 0..128 {
        let len = *bytes.get(pos)?;
        match len {
            0 => return Some(end.unwrap_or(pos + 1)),
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(u16::from_be_bytes([l & 0x3f, *bytes.get(pos + 1)?]));
                end.get_or_insert(pos + 2);
                if target >= bytes.len() {
                    return None;
                }
                pos = target;
            }
            l if l & 0xc0 == 0 => {
                pos += 1 + usize::from(l);
                if pos > bytes.len() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    None
}

/// Walks an upstream reply. `None` when it does not hold together.
pub fn reply_facts(bytes: &[u8]) -> Option<ReplyFacts> {
    let header = header(bytes)?;
    let mut pos = HEADER_LEN;
    for _ in 0..header.qdcount {
        pos = skip_name(bytes, pos)? + 4;
    }
    if pos > bytes.len() {
        return None;
    }
    let question_end = pos;
    let mut facts = ReplyFacts {
        header,
        ttl_offsets: Vec::new(),
        min_ttl: None,
        soa_minimum: None,
        opt_at: None,
        question_end,
    };
    let total =
        usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
    for i in 0..total {
        let start = pos;
        let name_end = skip_name(bytes, pos)?;
        let rtype = u16_at(bytes, name_end)?;
        let ttl_at = name_end + 4;
        let ttl = u32_at(bytes, ttl_at)?;
        let rdlen = usize::from(u16_at(bytes, name_end + 8)?);
        let rdata_at = name_end + 10;
        pos = rdata_at + rdlen;
        if pos > bytes.len() {
            return None;
        }
        if rtype == rtype::OPT {
            if i + 1 == total {
                facts.opt_at = Some(start);
            }
            continue;
        }
        facts.ttl_offsets.push(ttl_at);
        facts.min_ttl = Some(facts.min_ttl.map_or(ttl, |m| m.min(ttl)));
        let in_authority = i >= usize::from(header.ancount)
            && i < usize::from(header.ancount) + usize::from(header.nscount);
        if rtype == rtype::SOA && in_authority {
            // The minimum is the last field of the SOA data, after two names and four numbers.
            let names_end = skip_name(bytes, skip_name(bytes, rdata_at)?)?;
            let minimum = u32_at(bytes, names_end + 16)?;
            facts.soa_minimum = Some(minimum.min(ttl));
        }
    }
    (pos == bytes.len()).then_some(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&class::IN.to_be_bytes());
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn reads_a_query_with_and_without_edns() {
        let bytes = query("VM-1.NovaLocal", rtype::A, false);
        let q = parse_query(&bytes).unwrap();
        assert_eq!(
            (q.id, q.qtype, q.qclass, q.edns),
            (0x1234, rtype::A, class::IN, None)
        );
        assert_eq!(name_text(q.qname), "VM-1.NovaLocal");
        assert_eq!(lowercase(q.qname), encode_name("vm-1.novalocal").unwrap());
        assert_eq!(q.udp_limit(), 512);
        let bytes = query("vm-1", rtype::AAAA, true);
        let q = parse_query(&bytes).unwrap();
        assert_eq!((q.edns, q.dnssec_ok), (Some(4096), true));
        assert_eq!(q.udp_limit(), usize::from(EDNS_UDP));
    }

    #[test]
    fn refuses_what_a_query_cannot_be() {
        let good = query("a.b", rtype::A, false);
        assert_eq!(parse_query(&good[..11]), Err(WireError::Truncated));
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(WireError::NotQuery));
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(WireError::QuestionCount));
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), Err(WireError::BadName));
        let mut long_label = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64];
        long_label.extend([b'a'; 64]);
        long_label.extend([0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&long_label), Err(WireError::BadName));
        let mut long_name = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            long_name.push(60);
            long_name.extend([b'a'; 60]);
        }
        long_name.extend([0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&long_name), Err(WireError::BadName));
        let mut trailing = good.clone();
        trailing.push(7);
        assert_eq!(parse_query(&trailing), Err(WireError::BadSections));
        let mut answers = good;
        answers[7] = 1;
        assert_eq!(parse_query(&answers), Err(WireError::BadSections));
    }

    #[test]
    fn answers_keep_the_question_as_asked() {
        let bytes = query("Vm-1.novalocal", rtype::A, true);
        let q = parse_query(&bytes).unwrap();
        let mut out = Vec::new();
        let mut a = Answer::new(&mut out, &q, flags::AA, rcode::NOERROR);
        a.record(
            Section::Answer,
            rtype::A,
            0,
            &super::a(Ipv4Addr::new(198, 18, 0, 10)),
        );
        a.opt();
        let reply = a.finish().to_vec();
        let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_string(), "Vm-1.novalocal.");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 0);
        assert!(m.edns.is_some());
        let facts = reply_facts(&reply).unwrap();
        assert_eq!(facts.ttl_offsets.len(), 1);
        assert_eq!(facts.opt_at, Some(reply.len() - 11));
    }

    #[test]
    fn zones_and_reverse_names() {
        let n = |t: &str| encode_name(t).unwrap();
        assert!(in_zone(&n("vm-1.novalocal"), &n("novalocal")));
        assert!(in_zone(&n("novalocal"), &n("novalocal")));
        assert!(!in_zone(&n("vm-1.xnovalocal"), &n("novalocal")));
        assert!(in_zone(&n("x"), &[0]));
        let v4: std::net::IpAddr = "198.18.0.10".parse().unwrap();
        assert_eq!(reverse_name(v4), n("10.0.18.198.in-addr.arpa"));
        assert_eq!(reverse_address(&reverse_name(v4)), Some(v4));
        let v6: std::net::IpAddr = "fd00:1::f816:3eff:fe00:1".parse().unwrap();
        assert_eq!(reverse_address(&reverse_name(v6)), Some(v6));
        assert_eq!(reverse_address(&n("0.18.198.in-addr.arpa")), None);
        assert_eq!(encode_name("a..b"), None);
        assert_eq!(encode_name(""), Some(vec![0]));
    }

    #[test]
    fn a_compression_loop_in_a_reply_is_refused() {
        let mut reply = query("a.b", rtype::A, false);
        reply[2] |= 0x80;
        reply[7] = 1; // one answer
        let at = reply.len() as u8;
        reply.extend_from_slice(&[0xc0, at]); // points at itself
        reply.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]);
        assert_eq!(reply_facts(&reply), None);
    }
}
