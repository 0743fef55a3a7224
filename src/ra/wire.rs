//! Router Solicitation and Router Advertisement messages (RFC 4861 4.1, 4.2, 4.6; RFC 8106).
//!
//! A checked view with a bounded option walker, deliberately hand-written: pnet's NDP option
//! iterator computes `length * 8` in `u8`, which overflows (a panic in debug builds, a wrong
//! length in release) for any option length of 32 or more, and accepts length 0, which RFC 4861
//! says must make the whole message be dropped. pnet's packet types still read the fixed headers
//! in the tests, as an independent check of what `emit` writes.

use std::net::Ipv6Addr;

use crate::table::MacAddr;

/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_PREFIX: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;
const RS_HEADER: usize = 8;
const RA_HEADER: usize = 16;

/// Why an ICMPv6 message is not a valid RS or RA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpError {
    /// Shorter than its fixed header.
    Truncated,
    /// Not the expected ICMPv6 type.
    WrongType,
    /// ICMP code is not 0.
    BadCode,
    /// An option has length 0 or runs past the end.
    BadOptionLen,
}

/// A received Router Solicitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSolicitation {
    /// The source link-layer address option, if present.
    pub source_lladdr: Option<MacAddr>,
}

/// One prefix information option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The prefix (host bits zero).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub len: u8,
    /// L flag.
    pub on_link: bool,
    /// A flag (SLAAC).
    pub autonomous: bool,
    /// Valid lifetime, seconds.
    pub valid: u32,
    /// Preferred lifetime, seconds.
    pub preferred: u32,
}

/// A Router Advertisement's contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterAdvertisement {
    /// Cur Hop Limit (0: unspecified).
    pub cur_hop_limit: u8,
    /// M flag.
    pub managed: bool,
    /// O flag.
    pub other_config: bool,
    /// Router lifetime, seconds (0: not a default router).
    pub router_lifetime: u16,
    /// Reachable time, milliseconds (0: unspecified).
    pub reachable_time: u32,
    /// Retransmit timer, milliseconds (0: unspecified).
    pub retrans_timer: u32,
    /// Source link-layer address option.
    pub source_lladdr: Option<MacAddr>,
    /// MTU option.
    pub mtu: Option<u32>,
    /// Prefix information options.
    pub prefixes: Vec<PrefixInfo>,
    /// RDNSS option: lifetime and servers (RFC 8106).
    pub rdnss: Option<(u32, Vec<Ipv6Addr>)>,
    /// DNSSL option: lifetime and domains (RFC 8106).
    pub dnssl: Option<(u32, Vec<String>)>,
}

/// Walks NDP options: `(type, body)` where body excludes the 2-byte type/length header.
fn walk(mut rest: &[u8], mut visit: impl FnMut(u8, &[u8])) -> Result<(), NdpError> {
    while !rest.is_empty() {
        let kind = *rest.first().ok_or(NdpError::BadOptionLen)?;
        let units = usize::from(*rest.get(1).ok_or(NdpError::BadOptionLen)?);
        if units == 0 {
            return Err(NdpError::BadOptionLen);
        }
        let option = rest.get(..units * 8).ok_or(NdpError::BadOptionLen)?;
        visit(kind, option.get(2..).unwrap_or(&[]));
        rest = rest.get(units * 8..).unwrap_or(&[]);
    }
    Ok(())
}

fn header(bytes: &[u8], kind: u8, len: usize) -> Result<(), NdpError> {
    if bytes.len() < len {
        return Err(NdpError::Truncated);
    }
    if bytes.first() != Some(&kind) {
        return Err(NdpError::WrongType);
    }
    if bytes.get(1) != Some(&0) {
        return Err(NdpError::BadCode);
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn addr(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    b.get(at..at + 16)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map(Ipv6Addr::from)
}

/// Parses an ICMPv6 Router Solicitation (the ICMPv6 message, from its type byte).
pub fn parse_rs(bytes: &[u8]) -> Result<RouterSolicitation, NdpError> {
    header(bytes, ROUTER_SOLICITATION, RS_HEADER)?;
    let mut rs = RouterSolicitation {
        source_lladdr: None,
    };
    walk(bytes.get(RS_HEADER..).unwrap_or(&[]), |kind, body| {
        if kind == OPT_SOURCE_LLADDR {
            rs.source_lladdr = MacAddr::from_slice(body);
        }
    })?;
    Ok(rs)
}

/// Parses an ICMPv6 Router Advertisement (the ICMPv6 message, from its type byte).
pub fn parse_ra(bytes: &[u8]) -> Result<RouterAdvertisement, NdpError> {
    header(bytes, ROUTER_ADVERTISEMENT, RA_HEADER)?;
    let flags = bytes.get(5).copied().unwrap_or(0);
    let mut ra = RouterAdvertisement {
        cur_hop_limit: bytes.get(4).copied().unwrap_or(0),
        managed: flags & 0x80 != 0,
        other_config: flags & 0x40 != 0,
        router_lifetime: bytes
            .get(6..8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_be_bytes),
        reachable_time: be32(bytes, 8),
        retrans_timer: be32(bytes, 12),
        ..RouterAdvertisement::default()
    };
    walk(
        bytes.get(RA_HEADER..).unwrap_or(&[]),
        |kind, body| match kind {
            OPT_SOURCE_LLADDR => ra.source_lladdr = MacAddr::from_slice(body),
            OPT_MTU => ra.mtu = Some(be32(body, 2)),
            OPT_PREFIX if body.len() >= 30 => {
                let f = body.get(1).copied().unwrap_or(0);
                if let Some(prefix) = addr(body, 14) {
                    ra.prefixes.push(PrefixInfo {
                        prefix,
                        len: body.first().copied().unwrap_or(0),
                        on_link: f & 0x80 != 0,
                        autonomous: f & 0x40 != 0,
                        valid: be32(body, 2),
                        preferred: be32(body, 6),
                    });
                }
            }
            OPT_RDNSS => {
                let servers = (0..).map_while(|i| addr(body, 6 + 16 * i)).collect();
                ra.rdnss = Some((be32(body, 2), servers));
            }
            OPT_DNSSL => {
                ra.dnssl = Some((be32(body, 2), decode_names(body.get(6..).unwrap_or(&[]))))
            }
            _ => {}
        },
    )?;
    Ok(ra)
}

/// Decodes RFC 1035 names (no compression) until the padding; stops at anything malformed.
fn decode_names(mut b: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len == 0 {
            if labels.is_empty() {
                break; // padding
            }
            names.push(labels.join("."));
            labels.clear();
            b = rest;
            continue;
        }
        let Some(label) = rest.get(..usize::from(len)).filter(|_| len < 64) else {
            break;
        };
        labels.push(String::from_utf8_lossy(label).into_owned());
        b = rest.get(usize::from(len)..).unwrap_or(&[]);
    }
    names
}

fn pad8(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(8) {
        out.push(0);
    }
    let units = ((out.len() - start) / 8) as u8;
    out[start + 1] = units;
}

impl RouterAdvertisement {
    /// Encodes the message (checksum 0: the kernel fills it in on raw ICMPv6 sockets).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[ROUTER_ADVERTISEMENT, 0, 0, 0, self.cur_hop_limit]);
        out.push(if self.managed { 0x80 } else { 0 } | if self.other_config { 0x40 } else { 0 });
        out.extend_from_slice(&self.router_lifetime.to_be_bytes());
        out.extend_from_slice(&self.reachable_time.to_be_bytes());
        out.extend_from_slice(&self.retrans_timer.to_be_bytes());
        for p in &self.prefixes {
            out.extend_from_slice(&[OPT_PREFIX, 4, p.len]);
            out.push(if p.on_link { 0x80 } else { 0 } | if p.autonomous { 0x40 } else { 0 });
            out.extend_from_slice(&p.valid.to_be_bytes());
            out.extend_from_slice(&p.preferred.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&p.prefix.octets());
        }
        if let Some((lifetime, servers)) = self.rdnss.as_ref().filter(|(_, s)| !s.is_empty()) {
            let start = out.len();
            out.extend_from_slice(&[OPT_RDNSS, 0, 0, 0]);
            out.extend_from_slice(&lifetime.to_be_bytes());
            for s in servers {
                out.extend_from_slice(&s.octets());
            }
            pad8(&mut out, start);
        }
        if let Some((lifetime, domains)) = self.dnssl.as_ref().filter(|(_, d)| !d.is_empty()) {
            let start = out.len();
            out.extend_from_slice(&[OPT_DNSSL, 0, 0, 0]);
            out.extend_from_slice(&lifetime.to_be_bytes());
            for d in domains {
                for label in d.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
                    let label = &label.as_bytes()[..label.len().min(63)];
                    out.push(label.len() as u8);
                    out.extend_from_slice(label);
                }
                out.push(0);
            }
            pad8(&mut out, start);
        }
        // radvd's order: prefixes, RDNSS, DNSSL, MTU, source link-layer address.
        if let Some(mtu) = self.mtu {
            out.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
            out.extend_from_slice(&mtu.to_be_bytes());
        }
        if let Some(mac) = self.source_lladdr {
            out.extend_from_slice(&[OPT_SOURCE_LLADDR, 1]);
            out.extend_from_slice(&mac.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmpv6::ndp::{RouterAdvertPacket, RouterSolicitPacket};
    use pnet_packet::Packet;

    fn sample() -> RouterAdvertisement {
        RouterAdvertisement {
            cur_hop_limit: 64,
            managed: false,
            other_config: true,
            router_lifetime: 30,
            reachable_time: 1000,
            retrans_timer: 500,
            source_lladdr: Some(MacAddr([0xfa, 0x16, 0x3e, 0, 0, 0xaa])),
            mtu: Some(1450),
            prefixes: vec![PrefixInfo {
                prefix: "fd00:1::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: true,
                valid: 86400,
                preferred: 14400,
            }],
            rdnss: Some((30, vec!["fd00:1::53".parse().unwrap()])),
            dnssl: Some((30, vec!["novalocal".into(), "example.org".into()])),
        }
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let ra = sample();
        let bytes = ra.emit();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(parse_ra(&bytes), Ok(ra));
    }

    #[test]
    fn pnet_reads_the_same_header_and_option_layout() {
        let bytes = sample().emit();
        let p = RouterAdvertPacket::new(&bytes).unwrap();
        assert_eq!(p.get_hop_limit(), 64);
        assert_eq!(p.get_flags(), 0x40);
        assert_eq!(p.get_lifetime(), 30);
        assert_eq!(p.get_reachable_time(), 1000);
        assert_eq!(p.get_retrans_time(), 500);
        let kinds: Vec<u8> = p.get_options().iter().map(|o| o.option_type.0).collect();
        assert_eq!(kinds, [3, 25, 31, 5, 1]);
        assert_eq!(p.payload().len(), 0);
    }

    #[test]
    fn parses_a_kernel_router_solicitation() {
        // As Linux sends it: type 133, code 0, checksum, reserved, source link-layer option.
        let rs = [
            133, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 1, 0xfa, 0x16, 0x3e, 0, 0, 1,
        ];
        assert_eq!(
            parse_rs(&rs).unwrap().source_lladdr,
            Some(MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]))
        );
        assert_eq!(parse_rs(&rs[..8]).unwrap().source_lladdr, None);
        assert!(RouterSolicitPacket::new(&rs).is_some());
    }

    #[test]
    fn rejects_malformed_messages() {
        assert_eq!(parse_rs(&[133, 0, 0, 0]), Err(NdpError::Truncated));
        assert_eq!(
            parse_rs(&[134, 0, 0, 0, 0, 0, 0, 0]),
            Err(NdpError::WrongType)
        );
        assert_eq!(
            parse_rs(&[133, 1, 0, 0, 0, 0, 0, 0]),
            Err(NdpError::BadCode)
        );
        assert_eq!(
            parse_rs(&[133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            Err(NdpError::BadOptionLen),
            "length 0"
        );
        assert_eq!(
            parse_rs(&[133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0]),
            Err(NdpError::BadOptionLen),
            "runs past the end"
        );
        assert_eq!(
            parse_rs(&[133, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(NdpError::BadOptionLen),
            "half an option header"
        );
    }

    #[test]
    fn a_long_option_is_fine_here_where_pnet_overflows() {
        // One option of length 32 units (256 bytes).
        let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 14, 32];
        rs.resize(8 + 256, 0);
        assert!(parse_rs(&rs).is_ok());
        let pnet = std::panic::catch_unwind(|| {
            RouterSolicitPacket::new(&rs).map(|p| p.get_options().len())
        });
        if cfg!(debug_assertions) {
            assert!(
                pnet.is_err(),
                "pnet's u8 length arithmetic overflows on this option"
            );
        }
    }

    #[test]
    fn malformed_dnssl_names_stop_cleanly() {
        assert_eq!(decode_names(&[3, b'a', b'b', b'c', 0, 0, 0]), ["abc"]);
        assert_eq!(decode_names(&[200, b'a']), Vec::<String>::new());
        assert_eq!(decode_names(&[]), Vec::<String>::new());
    }
}
