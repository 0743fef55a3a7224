//! Building reply packets: choosing options by the parameter request list, fitting the client's
//! maximum message size, echoing option 82 byte for byte, padding to the 300-byte BOOTP
//! minimum, and encoding with no allocation but the packet's own. The encoding is the one
//! dhcproto's owned `Message` produces; the tests keep that encoder as the reference.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
#[cfg(test)]
use dhcproto::v4::{DhcpOption, Flags, HType, Message, Opcode, OptionCode, UnknownOption};
#[cfg(test)]
use dhcproto::{Encodable, Encoder};

use super::wire::Request;

/// Replies are padded to this size (RFC 1542 section 3.2.1: some relays and clients drop less).
pub const MIN_REPLY_LEN: usize = 300;
/// The size every client must accept (RFC 2131: 576-byte IP datagrams) less IP and UDP headers.
const DEFAULT_MAX_PAYLOAD: usize = 576 - 28;
/// Never build more than an Ethernet frame can carry without fragmenting.
const CEILING_PAYLOAD: usize = 1500 - 28;

/// What goes into one reply.
#[derive(Debug)]
pub struct ReplySpec<'a> {
    /// OFFER, ACK or NAK.
    pub kind: MessageType,
    /// The request being answered.
    pub request: &'a Request<'a>,
    /// The address offered or acknowledged (0 for NAK and INFORM).
    pub yiaddr: Ipv4Addr,
    /// Server identifier.
    pub server: Ipv4Addr,
    /// Lease time, T1 and T2 when this reply grants a lease.
    pub lease: Option<u32>,
    /// Client options, sorted by code (subnet mask, router, ...).
    pub options: &'a [(u8, &'a [u8])],
    /// Text for option 56 (NAK reasons).
    pub message: Option<&'a str>,
}

/// Options sent whether requested or not.
const ALWAYS: &[u8] = &[1];

/// The options chosen for one reply: at most one value per code (a later choice replaces an
/// earlier one, as in dhcproto's option map), written out in code order. A reply carries a
/// dozen or so options, so the values sit in a short list; a 512-byte index finds a code's
/// slot and a 256-bit set walks the codes in order, so neither choosing nor writing searches
/// or sorts.
struct Chosen<'a> {
    values: Vec<&'a [u8]>,
    /// 1 + the slot in `values` of each code chosen; 0 for none.
    slot: [u16; 256],
    present: [u64; 4],
}

impl<'a> Chosen<'a> {
    fn new() -> Self {
        Chosen {
            values: Vec::with_capacity(24),
            slot: [0; 256],
            present: [0; 4],
        }
    }

    /// Chooses `code` if it fits in what is left of the message; false if it does not.
    fn choose(&mut self, budget: &mut usize, code: u8, data: &'a [u8]) -> bool {
        let need = encoded_len(data.len());
        if need > *budget {
            return false;
        }
        *budget -= need;
        let c = usize::from(code);
        match self.slot[c] {
            0 => {
                self.values.push(data);
                // One value per code: at most 256, so the slot fits.
                self.slot[c] = self.values.len() as u16;
                self.present[c / 64] |= 1 << (c % 64);
            }
            n => {
                if let Some(v) = self.values.get_mut(usize::from(n) - 1) {
                    *v = data;
                }
            }
        }
        true
    }

    fn get(&self, code: u8) -> Option<&'a [u8]> {
        match self.slot[usize::from(code)] {
            0 => None,
            n => self.values.get(usize::from(n) - 1).copied(),
        }
    }

    /// The chosen codes in ascending order.
    fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        self.present.iter().enumerate().flat_map(|(word, &bits)| {
            let mut bits = bits;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some((word as u32 * 64 + bit) as u8)
            })
        })
    }
}

/// The address a reply gives (`yiaddr`), read back from its bytes (for log lines).
pub fn yiaddr(reply: &[u8]) -> Option<std::net::Ipv4Addr> {
    let b: [u8; 4] = reply.get(16..20)?.try_into().ok()?;
    Some(std::net::Ipv4Addr::from(b))
}

/// Encodes the reply straight into one buffer, allocating nothing else. The layout is exactly
/// what dhcproto's owned `Message` encodes (options by code, 82 last, then End; long options
/// split per RFC 3396; empty ones left out), which a property test pins byte for byte; its
/// map and per-option allocations were the largest user-space cost per packet under load.
/// `None` if the reply cannot be encoded (never, today; counted by the caller).
pub fn encode(spec: &ReplySpec<'_>) -> Option<Vec<u8>> {
    let req = spec.request;
    let kind = [u8::from(spec.kind)];
    let server = spec.server.octets();
    let lease = spec.lease.map(|l| {
        (
            l.to_be_bytes(),
            (l / 2).to_be_bytes(),
            (l / 8 * 7).to_be_bytes(),
            l != u32::MAX,
        )
    });
    let max_payload = req
        .max_message_size
        .map_or(DEFAULT_MAX_PAYLOAD, |m| usize::from(m).saturating_sub(28))
        .clamp(DEFAULT_MAX_PAYLOAD, CEILING_PAYLOAD);
    // Header, cookie and End, then the options that must go, then the chosen ones while they fit.
    let mut budget = max_payload.saturating_sub(super::wire::HEADER_LEN + 1);
    let mut chosen = Chosen::new();
    let c = &mut chosen;
    c.choose(&mut budget, 53, &kind);
    c.choose(&mut budget, 54, &server);
    if let Some(relay) = req.relay_info.as_deref() {
        c.choose(&mut budget, 82, relay);
    }
    if let Some(text) = spec.message {
        c.choose(&mut budget, 56, text.as_bytes());
    }
    if spec.kind != MessageType::Nak {
        if let Some((time, t1, t2, finite)) = &lease {
            c.choose(&mut budget, 51, time);
            if *finite {
                c.choose(&mut budget, 58, t1);
                c.choose(&mut budget, 59, t2);
            }
        }
        // Every code offered is wanted: the client asked for it, or it always goes (ALWAYS),
        // or the client sent no list at all.
        let mut sent = [false; 256];
        let mut offer = |code: u8| {
            if std::mem::replace(&mut sent[usize::from(code)], true) {
                return;
            }
            if let Some((_, data)) = spec.options.iter().find(|(oc, _)| *oc == code) {
                c.choose(&mut budget, code, data);
            }
        };
        // In the order the client asked (earlier means more important to it), then the rest.
        match req.parameters.as_deref() {
            Some(prl) => {
                for &code in ALWAYS.iter().chain(prl) {
                    offer(code);
                }
            }
            None => {
                for &(code, _) in spec.options {
                    offer(code);
                }
            }
        }
    }

    let mut out = Vec::with_capacity(MIN_REPLY_LEN.max(max_payload));
    out.extend_from_slice(&[2, 1, 6, 0]); // BOOTREPLY, Ethernet, hlen 6, hops 0
    out.extend_from_slice(&req.xid.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // secs
    let broadcast =
        req.broadcast || (spec.kind == MessageType::Nak && !req.giaddr.is_unspecified());
    out.extend_from_slice(&(if broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
    let ciaddr = if spec.kind == MessageType::Ack {
        req.ciaddr
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    out.extend_from_slice(&ciaddr.octets());
    out.extend_from_slice(&spec.yiaddr.octets());
    out.extend_from_slice(&[0; 4]); // siaddr
    out.extend_from_slice(&req.giaddr.octets());
    out.extend_from_slice(&req.chaddr.0);
    out.resize(out.len() + 10 + 64 + 128, 0); // rest of chaddr, sname, fname
    out.extend_from_slice(&super::wire::MAGIC);
    // By code, relay information last (RFC 3046 section 2.1), as dhcproto orders them.
    let codes = chosen.codes().filter(|&code| code != 82).chain(Some(82));
    for (code, data) in codes.filter_map(|code| Some((code, chosen.get(code)?))) {
        for piece in data.chunks(255) {
            out.push(code);
            out.push(piece.len() as u8);
            out.extend_from_slice(piece);
        }
    }
    out.push(255);
    if out.len() < MIN_REPLY_LEN {
        out.resize(MIN_REPLY_LEN, 0);
    }
    Some(out)
}

/// The reference encoder: the same reply through dhcproto's owned `Message`.
#[cfg(test)]
pub(crate) fn encode_with_dhcproto(spec: &ReplySpec<'_>) -> Option<Vec<u8>> {
    let req = spec.request;
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(req.xid)
        .set_chaddr(&req.chaddr.0)
        .set_giaddr(req.giaddr)
        .set_yiaddr(spec.yiaddr)
        .set_sname(&[])
        .set_fname(&[]);
    let mut flags = Flags::default();
    if req.broadcast || (spec.kind == MessageType::Nak && !req.giaddr.is_unspecified()) {
        flags = flags.set_broadcast();
    }
    msg.set_flags(flags);
    if matches!(spec.kind, MessageType::Ack) && !req.ciaddr.is_unspecified() {
        msg.set_ciaddr(req.ciaddr);
    }

    let max_payload = req
        .max_message_size
        .map_or(DEFAULT_MAX_PAYLOAD, |m| usize::from(m).saturating_sub(28))
        .clamp(DEFAULT_MAX_PAYLOAD, CEILING_PAYLOAD);
    // Header, cookie and End, then the options that must go, then the chosen ones while they fit.
    let mut budget = max_payload.saturating_sub(super::wire::HEADER_LEN + 1);
    let opts = msg.opts_mut();
    let mut put = |code: u8, data: &[u8], budget: &mut usize| -> bool {
        let need = encoded_len(data.len());
        if need > *budget {
            return false;
        }
        *budget -= need;
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(code),
            data.to_vec(),
        )));
        true
    };
    put(53, &[u8::from(spec.kind)], &mut budget);
    put(54, &spec.server.octets(), &mut budget);
    if let Some(relay) = req.relay_info.as_deref() {
        put(82, relay, &mut budget);
    }
    if let Some(text) = spec.message {
        put(56, text.as_bytes(), &mut budget);
    }
    if spec.kind != MessageType::Nak {
        if let Some(lease) = spec.lease {
            put(51, &lease.to_be_bytes(), &mut budget);
            if lease != u32::MAX {
                put(58, &(lease / 2).to_be_bytes(), &mut budget);
                put(59, &(lease / 8 * 7).to_be_bytes(), &mut budget);
            }
        }
        let wanted = |code: u8| {
            req.parameters.as_deref().is_none_or(|p| p.contains(&code)) || ALWAYS.contains(&code)
        };
        // In the order the client asked (earlier means more important to it), then the rest.
        let order: Vec<u8> = match req.parameters.as_deref() {
            Some(prl) => ALWAYS.iter().chain(prl.iter()).copied().collect(),
            None => spec.options.iter().map(|(c, _)| *c).collect(),
        };
        let mut sent = [false; 256];
        for code in order {
            if sent[usize::from(code)] || !wanted(code) {
                continue;
            }
            sent[usize::from(code)] = true;
            if let Some((_, data)) = spec.options.iter().find(|(c, _)| *c == code) {
                put(code, data, &mut budget);
            }
        }
    }

    // dhcproto 0.15 writes an option 82 held as an unknown option twice (in code order, and
    // again last as relay information), so the reference writes it last by hand.
    let relay = msg.opts_mut().remove(OptionCode::from(82));
    let mut out = Vec::with_capacity(MIN_REPLY_LEN);
    msg.encode(&mut Encoder::new(&mut out)).ok()?;
    if let Some(DhcpOption::Unknown(relay)) = relay {
        out.pop(); // End
        for piece in relay.data().chunks(255) {
            out.extend_from_slice(&[82, piece.len() as u8]);
            out.extend_from_slice(piece);
        }
        out.push(255);
    }
    if out.len() < MIN_REPLY_LEN {
        out.resize(MIN_REPLY_LEN, 0);
    }
    Some(out)
}

/// Bytes an option takes on the wire, split into 255-byte pieces (RFC 3396) when long.
fn encoded_len(len: usize) -> usize {
    let pieces = len.div_ceil(255).max(1);
    len + 2 * pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::wire::{self, RequestBuilder};
    use crate::table::MacAddr;

    const MAC: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn offer(packet: &[u8], options: &[(u8, &[u8])]) -> Message {
        let req = wire::parse(packet).unwrap();
        let spec = ReplySpec {
            kind: MessageType::Offer,
            request: &req,
            yiaddr: Ipv4Addr::new(198, 18, 0, 10),
            server: SERVER,
            lease: Some(120),
            options,
            message: None,
        };
        let bytes = encode(&spec).unwrap();
        assert!(bytes.len() >= MIN_REPLY_LEN);
        <Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap()
    }

    fn has(m: &Message, code: u8) -> bool {
        m.opts().get(OptionCode::from(code)).is_some()
    }

    #[test]
    fn honours_the_parameter_request_list() {
        let p = RequestBuilder::new(MessageType::Discover, MAC, 9)
            .option(55, &[3, 12])
            .build();
        let opts: &[(u8, &[u8])] = &[
            (1, &[255, 255, 255, 0]),
            (3, &[198, 18, 0, 1]),
            (12, b"web"),
            (42, &[198, 18, 0, 5]),
        ];
        let m = offer(&p, opts);
        assert!(has(&m, 1) && has(&m, 3) && has(&m, 12));
        assert!(!has(&m, 42), "not requested");
        assert!(has(&m, 51) && has(&m, 58) && has(&m, 59) && has(&m, 54));
        assert_eq!(m.xid(), 9);
        assert_eq!(m.chaddr(), &MAC.0);
        // Without a list, everything configured goes.
        let p = RequestBuilder::new(MessageType::Discover, MAC, 9).build();
        assert!(has(&offer(&p, opts), 42));
    }

    #[test]
    fn echoes_relay_information_last_and_byte_for_byte() {
        let relay = [1, 3, b'e', b't', b'h', 9, 2, 0xaa, 0xbb];
        let p = RequestBuilder::new(MessageType::Discover, MAC, 1)
            .relayed_by(Ipv4Addr::new(198, 18, 0, 2))
            .option(82, &relay)
            .build();
        let req = wire::parse(&p).unwrap();
        let spec = ReplySpec {
            kind: MessageType::Offer,
            request: &req,
            yiaddr: Ipv4Addr::new(198, 18, 0, 10),
            server: SERVER,
            lease: Some(60),
            options: &[(1, &[255, 255, 255, 0])],
            message: None,
        };
        let bytes = encode(&spec).unwrap();
        let needle = [&[82u8, relay.len() as u8][..], &relay[..], &[255]].concat();
        assert!(
            bytes.windows(needle.len()).any(|w| w == needle),
            "82 is echoed verbatim and precedes End"
        );
        let opts = &bytes[wire::HEADER_LEN..];
        assert_eq!(
            opts.windows(2)
                .filter(|w| w == &[82, relay.len() as u8])
                .count(),
            1,
            "82 is echoed once (dhcproto 0.15 wrote it twice)"
        );
        assert_eq!(&bytes[24..28], &[198, 18, 0, 2], "giaddr copied");
    }

    #[test]
    fn fits_the_maximum_message_size() {
        let big = vec![b'x'; 400];
        let opts: &[(u8, &[u8])] = &[(1, &[255, 255, 255, 0]), (3, &[198, 18, 0, 1]), (67, &big)];
        let p = RequestBuilder::new(MessageType::Discover, MAC, 1)
            .option(57, &576u16.to_be_bytes())
            .build();
        let m = offer(&p, opts);
        assert!(
            has(&m, 3) && !has(&m, 67),
            "the large option is left out at 576 bytes"
        );
        let p = RequestBuilder::new(MessageType::Discover, MAC, 1)
            .option(57, &1500u16.to_be_bytes())
            .build();
        assert!(has(&offer(&p, opts), 67));
    }

    #[test]
    fn nak_carries_no_address_or_lease_and_is_broadcast_via_relay() {
        let p = RequestBuilder::new(MessageType::Request, MAC, 1)
            .relayed_by(Ipv4Addr::new(198, 18, 0, 2))
            .build();
        let req = wire::parse(&p).unwrap();
        let spec = ReplySpec {
            kind: MessageType::Nak,
            request: &req,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            server: SERVER,
            lease: Some(60),
            options: &[(1, &[255, 255, 255, 0])],
            message: Some("wrong address"),
        };
        let bytes = encode(&spec).unwrap();
        let m =
            <Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(!has(&m, 51) && !has(&m, 1));
        assert!(m.flags().broadcast());
    }

    #[test]
    fn long_options_are_split() {
        assert_eq!(encoded_len(0), 2);
        assert_eq!(encoded_len(255), 257);
        assert_eq!(encoded_len(256), 260);
    }
}
