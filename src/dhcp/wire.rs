//! A checked, zero-copy view of a DHCPv4 request.
//!
//! The fixed BOOTP header is read through dhcproto's borrowed `Message` once the length is
//! checked. Options are walked here rather than with dhcproto's iterator, deliberately: its
//! iterator stops silently at a truncated option (a server must count that as malformed), does
//! not read options overloaded into `sname`/`file` (option 52), and its `chaddr()` indexes past
//! the header when `hlen > 16`. The tests at the bottom pin each of those gaps.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use dhcproto::v4::{borrowed, MessageType, Opcode};

use crate::table::MacAddr;

/// Length of the fixed header plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// The magic cookie (RFC 2131 section 3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
const CHADDR: std::ops::Range<usize> = 28..44;
const OPTIONS_START: usize = 240;

/// Why bytes are not a DHCP request netnode can answer. A small `Copy` enum so it can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the 240-byte header.
    Truncated,
    /// The magic cookie is wrong.
    BadMagic,
    /// `op` is not BOOTREQUEST.
    NotRequest,
    /// `hlen` larger than the 16-byte chaddr field.
    BadHlen,
    /// Not Ethernet (`htype` 1, `hlen` 6).
    NotEthernet,
    /// An option's length runs past the end of its area.
    BadOptionLen {
        /// The option whose length is wrong.
        code: u8,
    },
    /// No option 53, or option 53 with a length other than 1 or an unknown value.
    BadMessageType,
}

/// The fields of a request that netnode's engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The DHCP message type (option 53).
    pub message_type: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// The broadcast flag.
    pub broadcast: bool,
    /// Relay hop count.
    pub hops: u8,
    /// Client address (set in BOUND, RENEWING, REBINDING, INFORM).
    pub ciaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address.
    pub chaddr: MacAddr,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61.
    pub client_id: Option<Cow<'a, [u8]>>,
    /// Option 55.
    pub parameters: Option<Cow<'a, [u8]>>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 12.
    pub hostname: Option<Cow<'a, [u8]>>,
    /// Option 82, raw, to echo back (RFC 3046).
    pub relay_info: Option<Cow<'a, [u8]>>,
    /// How many fixed-size options appeared more than once (the first is used); repeated
    /// variable-length options (12, 55, 61, 82) are joined instead, as RFC 3396 says.
    pub repeated_options: u16,
}

/// The first six bytes of `chaddr`, as a MAC, without any other check: for log lines about
/// packets that did not parse (the value may be garbage).
pub fn chaddr_mac(bytes: &[u8]) -> Option<MacAddr> {
    bytes
        .get(CHADDR.start..CHADDR.start + 6)
        .and_then(MacAddr::from_slice)
}

/// Parses a request from the bytes of one UDP payload.
pub fn parse(bytes: &[u8]) -> Result<Request<'_>, WireError> {
    let msg = borrowed::Message::new(bytes).map_err(|_| WireError::Truncated)?;
    if bytes.get(236..240) != Some(&MAGIC[..]) {
        return Err(WireError::BadMagic);
    }
    if msg.opcode() != Opcode::BootRequest {
        return Err(WireError::NotRequest);
    }
    if msg.hlen() > 16 {
        return Err(WireError::BadHlen);
    }
    if bytes.get(1) != Some(&1) || msg.hlen() != 6 {
        return Err(WireError::NotEthernet);
    }
    let chaddr = bytes
        .get(CHADDR)
        .and_then(MacAddr::from_slice)
        .ok_or(WireError::Truncated)?;
    let mut req = Request {
        message_type: MessageType::Unknown(0),
        xid: msg.xid(),
        secs: msg.secs(),
        broadcast: msg.flags().broadcast(),
        hops: msg.hops(),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        chaddr,
        requested_ip: None,
        server_id: None,
        client_id: None,
        parameters: None,
        max_message_size: None,
        hostname: None,
        relay_info: None,
        repeated_options: 0,
    };
    let mut seen = [false; 256];
    let mut message_type = None;
    let mut overload = 0u8;
    let area = bytes.get(OPTIONS_START..).unwrap_or(&[]);
    walk(area, |code, data| {
        if code == 52 {
            overload = data.first().copied().unwrap_or(0);
        }
        take(&mut req, &mut seen, &mut message_type, code, data)
    })?;
    // Option overload (RFC 2132 9.3): `file` first, then `sname`.
    for (bit, range) in [(1u8, FILE), (2u8, SNAME)] {
        if overload & bit != 0 {
            let area = bytes.get(range).unwrap_or(&[]);
            walk(area, |code, data| {
                take(&mut req, &mut seen, &mut message_type, code, data)
            })?;
        }
    }
    req.message_type = match message_type {
        Some(&[t @ 1..=8]) => MessageType::from(t),
        _ => return Err(WireError::BadMessageType),
    };
    Ok(req)
}

/// Records one option into the request. Variable-length options that appear again are joined
/// (RFC 3396 long options); for the others the first occurrence wins and repeats are counted.
fn take<'a>(
    req: &mut Request<'a>,
    seen: &mut [bool; 256],
    message_type: &mut Option<&'a [u8]>,
    code: u8,
    data: &'a [u8],
) {
    let joined = match code {
        12 => Some(&mut req.hostname),
        55 => Some(&mut req.parameters),
        61 => Some(&mut req.client_id),
        82 => Some(&mut req.relay_info),
        _ => None,
    };
    if let Some(field) = joined {
        match field {
            Some(value) => value.to_mut().extend_from_slice(data),
            None => *field = Some(Cow::Borrowed(data)),
        }
        return;
    }
    let slot = &mut seen[usize::from(code)];
    if *slot {
        req.repeated_options = req.repeated_options.saturating_add(1);
        return;
    }
    *slot = true;
    let addr = || <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from);
    match code {
        50 => req.requested_ip = addr(),
        53 => *message_type = Some(data),
        54 => req.server_id = addr(),
        57 => req.max_message_size = <[u8; 2]>::try_from(data).ok().map(u16::from_be_bytes),
        _ => {}
    }
}

/// The message type (option 53) of any DHCP packet, request or reply, without a full parse
/// (the load generator and the null responder read only this).
pub fn message_type_of(packet: &[u8]) -> Option<u8> {
    if packet.get(236..240) != Some(&MAGIC[..]) {
        return None;
    }
    let mut found = None;
    walk(packet.get(OPTIONS_START..)?, |code, data| {
        if code == 53 && found.is_none() {
            found = data.first().copied();
        }
    })
    .ok()?;
    found
}

/// Walks a TLV option area, stopping at End; a length running past the area is an error.
fn walk<'a>(area: &'a [u8], mut visit: impl FnMut(u8, &'a [u8])) -> Result<(), WireError> {
    let mut rest = area;
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            0 => rest = tail,
            255 => return Ok(()),
            _ => {
                let (&len, tail) = tail.split_first().ok_or(WireError::BadOptionLen { code })?;
                let len = usize::from(len);
                let data = tail.get(..len).ok_or(WireError::BadOptionLen { code })?;
                visit(code, data);
                rest = tail.get(len..).unwrap_or(&[]);
            }
        }
    }
    // No End option: tolerated, as most servers do, when every option was whole.
    Ok(())
}

/// A minimal request builder, for tests, benches, the load generator and netnode's own client.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    bytes: Vec<u8>,
}

impl RequestBuilder {
    /// A BOOTREQUEST header for `mac` with transaction id `xid` and message type `kind`.
    pub fn new(kind: MessageType, mac: MacAddr, xid: u32) -> RequestBuilder {
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes[0] = 1;
        bytes[1] = 1;
        bytes[2] = 6;
        bytes[4..8].copy_from_slice(&xid.to_be_bytes());
        bytes[28..34].copy_from_slice(&mac.0);
        bytes[236..240].copy_from_slice(&MAGIC);
        let b = RequestBuilder { bytes };
        b.option(53, &[u8::from(kind)])
    }

    /// Sets ciaddr.
    pub fn ciaddr(mut self, ip: Ipv4Addr) -> Self {
        self.bytes[12..16].copy_from_slice(&ip.octets());
        self
    }

    /// Sets giaddr and the hop count, as a relay agent does.
    pub fn relayed_by(mut self, giaddr: Ipv4Addr) -> Self {
        self.bytes[3] = 1;
        self.bytes[24..28].copy_from_slice(&giaddr.octets());
        self
    }

    /// Sets the broadcast flag.
    pub fn broadcast(mut self) -> Self {
        self.bytes[10] |= 0x80;
        self
    }

    /// Appends an option (no length checks: builders also make malformed packets for tests).
    pub fn option(mut self, code: u8, data: &[u8]) -> Self {
        self.bytes.push(code);
        self.bytes.push(data.len() as u8);
        self.bytes.extend_from_slice(data);
        self
    }

    /// The finished packet, with End.
    pub fn build(mut self) -> Vec<u8> {
        self.bytes.push(255);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> MacAddr {
        MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1])
    }

    #[test]
    fn parses_a_discover() {
        let p = RequestBuilder::new(MessageType::Discover, mac(), 7)
            .broadcast()
            .option(55, &[1, 3, 6])
            .option(57, &[2, 64])
            .option(61, &[1, 0xfa, 0x16, 0x3e, 0, 0, 1])
            .option(12, b"web")
            .build();
        let r = parse(&p).unwrap();
        assert_eq!(r.message_type, MessageType::Discover);
        assert_eq!(r.xid, 7);
        assert!(r.broadcast);
        assert_eq!(r.chaddr, mac());
        assert_eq!(r.parameters.as_deref(), Some(&[1, 3, 6][..]));
        assert_eq!(r.max_message_size, Some(576));
        assert_eq!(r.hostname.as_deref(), Some(&b"web"[..]));
    }

    #[test]
    fn rejects_malformed_headers() {
        let good = RequestBuilder::new(MessageType::Discover, mac(), 1).build();
        assert_eq!(parse(&good[..239]), Err(WireError::Truncated));
        let mut bad = good.clone();
        bad[236] = 0;
        assert_eq!(parse(&bad), Err(WireError::BadMagic));
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(parse(&bad), Err(WireError::NotRequest));
        let mut bad = good.clone();
        bad[2] = 200;
        assert_eq!(parse(&bad), Err(WireError::BadHlen));
        let mut bad = good.clone();
        bad[1] = 6;
        assert_eq!(parse(&bad), Err(WireError::NotEthernet));
        let none = RequestBuilder {
            bytes: good[..240].to_vec(),
        }
        .build();
        assert_eq!(parse(&none), Err(WireError::BadMessageType));
        let wrong = RequestBuilder {
            bytes: good[..240].to_vec(),
        }
        .option(53, &[9])
        .build();
        assert_eq!(parse(&wrong), Err(WireError::BadMessageType));
    }

    #[test]
    fn a_truncated_option_is_an_error_where_dhcproto_stops_silently() {
        let mut p = RequestBuilder::new(MessageType::Request, mac(), 1)
            .option(50, &[198, 18, 0, 10])
            .build();
        p.pop(); // drop End
        p.extend_from_slice(&[61, 40, 1, 2]); // claims 40 bytes, has 2
        assert_eq!(parse(&p), Err(WireError::BadOptionLen { code: 61 }));
        // The gap: dhcproto's borrowed iterator yields the good options and ends without a word.
        let msg = borrowed::Message::new(&p).unwrap();
        let codes: Vec<u8> = msg.opts().map(|o| u8::from(o.code())).collect();
        assert_eq!(codes, [53, 50]);
    }

    #[test]
    fn hlen_over_16_is_rejected_before_dhcproto_could_index_past_chaddr() {
        let mut p = RequestBuilder::new(MessageType::Discover, mac(), 1).build();
        p[2] = 255;
        assert_eq!(parse(&p), Err(WireError::BadHlen));
    }

    #[test]
    fn repeated_options_keep_the_first_and_are_counted() {
        let p = RequestBuilder::new(MessageType::Request, mac(), 1)
            .option(50, &[198, 18, 0, 10])
            .option(12, b"x")
            .option(50, &[198, 18, 0, 99])
            .build();
        let r = parse(&p).unwrap();
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(r.repeated_options, 1);
        // dhcproto's owned decoder keeps the later one instead.
        let owned =
            <dhcproto::v4::Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&p))
                .unwrap();
        assert_eq!(
            owned
                .opts()
                .get(dhcproto::v4::OptionCode::RequestedIpAddress),
            Some(&dhcproto::v4::DhcpOption::RequestedIpAddress(
                Ipv4Addr::new(198, 18, 0, 99)
            ))
        );
    }

    #[test]
    fn split_options_are_joined_as_rfc3396_says() {
        let p = RequestBuilder::new(MessageType::Discover, mac(), 1)
            .option(82, &[1, 3, b'a', b'b'])
            .option(55, &[1, 3])
            .option(82, &[b'c', 2, 1, 9])
            .option(55, &[6])
            .build();
        let r = parse(&p).unwrap();
        assert_eq!(
            r.relay_info.as_deref(),
            Some(&[1, 3, b'a', b'b', b'c', 2, 1, 9][..])
        );
        assert_eq!(r.parameters.as_deref(), Some(&[1, 3, 6][..]));
        assert_eq!(r.repeated_options, 0);
    }

    #[test]
    fn overloaded_options_in_file_and_sname_are_read() {
        let mut p = RequestBuilder::new(MessageType::Request, mac(), 1)
            .option(52, &[3])
            .build();
        // file: requested address; sname: server id.
        p[108..114].copy_from_slice(&[50, 4, 198, 18, 0, 10]);
        p[114] = 255;
        p[44..50].copy_from_slice(&[54, 4, 198, 18, 0, 1]);
        p[50] = 255;
        let r = parse(&p).unwrap();
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
        // dhcproto's owned decoder does not look there.
        let owned =
            <dhcproto::v4::Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&p))
                .unwrap();
        assert!(owned
            .opts()
            .get(dhcproto::v4::OptionCode::RequestedIpAddress)
            .is_none());
    }

    #[test]
    fn message_type_of_reads_only_option_53() {
        let p = RequestBuilder::new(MessageType::Request, mac(), 1)
            .option(12, b"x")
            .build();
        assert_eq!(message_type_of(&p), Some(3));
        assert_eq!(message_type_of(&p[..239]), None);
        let mut bad = p.clone();
        bad[236] = 0;
        assert_eq!(message_type_of(&bad), None);
    }

    #[test]
    fn a_zero_length_option_and_missing_end_are_tolerated() {
        let mut p = RequestBuilder::new(MessageType::Discover, mac(), 1)
            .option(12, &[])
            .build();
        p.pop();
        let r = parse(&p).unwrap();
        assert_eq!(r.hostname.as_deref(), Some(&[][..]));
    }
}
