//! Building reply packets with dhcproto's owned `Message`, wrapped for what it does not do:
//! choosing options by the parameter request list, fitting the client's maximum message size,
//! echoing option 82 byte for byte, and padding to the 300-byte BOOTP minimum.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
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

/// Encodes the reply; `None` only if dhcproto refuses to encode it (counted by the caller).
pub fn encode(spec: &ReplySpec<'_>) -> Option<Vec<u8>> {
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

    let mut out = Vec::with_capacity(MIN_REPLY_LEN);
    msg.encode(&mut Encoder::new(&mut out)).ok()?;
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
