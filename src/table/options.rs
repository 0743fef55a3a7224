//! DHCP option names and value encodings, as dnsmasq's `--dhcp-option` and opts files
//! write them (`3,198.18.0.1`, `option:ntp-server,198.18.0.1`, `option:domain-search,a.b,c.d`).

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// The option codes netnode sets from a network's own settings (RFC 2132, RFC 3442).
pub mod code {
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Default routers.
    pub const ROUTER: u8 = 3;
    /// DNS servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const INTERFACE_MTU: u8 = 26;
    /// Broadcast address.
    pub const BROADCAST: u8 = 28;
    /// Classless static routes.
    pub const CLASSLESS_ROUTES: u8 = 121;
}

/// How an option's value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One or more IPv4 addresses.
    Addrs,
    /// Exactly one IPv4 address.
    Addr,
    /// An 8-bit integer (also booleans).
    U8,
    /// A 16-bit integer.
    U16,
    /// A 32-bit integer.
    U32,
    /// Text, written as is.
    Text,
    /// RFC 1035 encoded domain names (option 119).
    Domains,
    /// RFC 3442 classless routes: `dest/prefix,gateway` pairs (option 121).
    Classless,
    /// Pairs of addresses (option 33 static routes, option 21 policy filter).
    AddrPairs,
    /// Unknown to netnode: guessed from the value, as dnsmasq does.
    Guess,
}

/// dnsmasq's option names (`dnsmasq --help dhcp`), with their codes and encodings.
const NAMES: &[(&str, u8, Kind)] = &[
    ("netmask", 1, Kind::Addr),
    ("time-offset", 2, Kind::U32),
    ("router", 3, Kind::Addrs),
    ("dns-server", 6, Kind::Addrs),
    ("log-server", 7, Kind::Addrs),
    ("lpr-server", 9, Kind::Addrs),
    ("hostname", 12, Kind::Text),
    ("boot-file-size", 13, Kind::U16),
    ("domain-name", 15, Kind::Text),
    ("swap-server", 16, Kind::Addr),
    ("root-path", 17, Kind::Text),
    ("extension-path", 18, Kind::Text),
    ("ip-forward-enable", 19, Kind::U8),
    ("non-local-source-routing", 20, Kind::U8),
    ("policy-filter", 21, Kind::AddrPairs),
    ("max-datagram-reassembly", 22, Kind::U16),
    ("default-ttl", 23, Kind::U8),
    ("mtu", 26, Kind::U16),
    ("all-subnets-local", 27, Kind::U8),
    ("broadcast", 28, Kind::Addr),
    ("router-discovery", 31, Kind::U8),
    ("router-solicitation", 32, Kind::Addr),
    ("static-route", 33, Kind::AddrPairs),
    ("trailer-encapsulation", 34, Kind::U8),
    ("arp-timeout", 35, Kind::U32),
    ("ethernet-encap", 36, Kind::U8),
    ("tcp-ttl", 37, Kind::U8),
    ("tcp-keepalive", 38, Kind::U32),
    ("nis-domain", 40, Kind::Text),
    ("nis-server", 41, Kind::Addrs),
    ("ntp-server", 42, Kind::Addrs),
    ("netbios-ns", 44, Kind::Addrs),
    ("netbios-dd", 45, Kind::Addrs),
    ("netbios-nodetype", 46, Kind::U8),
    ("netbios-scope", 47, Kind::Text),
    ("x-windows-fs", 48, Kind::Addrs),
    ("x-windows-dm", 49, Kind::Addrs),
    ("lease-time", 51, Kind::U32),
    ("message", 56, Kind::Text),
    ("max-message-size", 57, Kind::U16),
    ("T1", 58, Kind::U32),
    ("T2", 59, Kind::U32),
    ("vendor-class", 60, Kind::Text),
    ("nis+-domain", 64, Kind::Text),
    ("nis+-server", 65, Kind::Addrs),
    ("tftp-server", 66, Kind::Text),
    ("bootfile-name", 67, Kind::Text),
    ("mobile-ip-home", 68, Kind::Addrs),
    ("smtp-server", 69, Kind::Addrs),
    ("pop3-server", 70, Kind::Addrs),
    ("nntp-server", 71, Kind::Addrs),
    ("irc-server", 74, Kind::Addrs),
    ("user-class", 77, Kind::Text),
    ("posix-timezone", 100, Kind::Text),
    ("tzdb-timezone", 101, Kind::Text),
    ("domain-search", 119, Kind::Domains),
    ("sip-server", 120, Kind::Addrs),
    ("classless-static-route", 121, Kind::Classless),
    ("tftp-server-address", 150, Kind::Addrs),
];

/// Options a config may not set: the server computes them per request.
pub const RESERVED: &[u8] = &[0, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82, 255];

/// Looks up a dnsmasq option name (`ntp-server`) and returns its code and encoding.
pub fn by_name(name: &str) -> Option<(u8, Kind)> {
    NAMES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, code, kind)| (code, kind))
}

/// The encoding of a numeric option code.
pub fn kind_of(code: u8) -> Kind {
    NAMES
        .iter()
        .find(|(_, c, _)| *c == code)
        .map_or(Kind::Guess, |&(_, _, kind)| kind)
}

/// Encodes the comma-separated `values` of an option of the given kind.
pub fn encode(kind: Kind, values: &[&str]) -> Result<Vec<u8>, String> {
    let joined = || values.join(",");
    match kind {
        Kind::Addrs => addrs(values),
        Kind::Addr => match values {
            [one] => addrs(&[one]),
            _ => Err(format!("want exactly one IPv4 address, got {:?}", joined())),
        },
        Kind::AddrPairs if values.len().is_multiple_of(2) => addrs(values),
        Kind::AddrPairs => Err("want pairs of IPv4 addresses".into()),
        Kind::U8 => integer(values, 1),
        Kind::U16 => integer(values, 2),
        Kind::U32 => integer(values, 4),
        Kind::Text => Ok(joined().into_bytes()),
        Kind::Domains => domains(values),
        Kind::Classless => classless(values),
        Kind::Guess => Ok(guess(values)),
    }
}

fn addrs(values: &[&str]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        let ip: Ipv4Addr = v
            .trim()
            .parse()
            .map_err(|_| format!("{v:?} is not an IPv4 address"))?;
        out.extend_from_slice(&ip.octets());
    }
    if out.is_empty() {
        return Err("want at least one IPv4 address".into());
    }
    Ok(out)
}

fn integer(values: &[&str], width: usize) -> Result<Vec<u8>, String> {
    let [one] = values else {
        return Err("want exactly one integer".into());
    };
    let one = one.trim();
    let value: u64 = match one {
        "true" | "on" | "yes" => 1,
        "false" | "off" | "no" => 0,
        _ => one
            .parse()
            .map_err(|_| format!("{one:?} is not an integer"))?,
    };
    let max = if width == 4 {
        u64::from(u32::MAX)
    } else {
        (1u64 << (8 * width)) - 1
    };
    if value > max {
        return Err(format!("{value} does not fit in {width} byte(s)"));
    }
    Ok(value.to_be_bytes()[8 - width..].to_vec())
}

/// RFC 1035 name encoding without compression.
fn domains(values: &[&str]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for name in values {
        for label in name.trim().trim_end_matches('.').split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("{name:?} is not a domain name"));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    Ok(out)
}

/// RFC 3442: each route is prefix length, the significant octets of the destination, gateway.
fn classless(values: &[&str]) -> Result<Vec<u8>, String> {
    if !values.len().is_multiple_of(2) || values.is_empty() {
        return Err("want destination/prefix,gateway pairs".into());
    }
    let mut routes = Vec::new();
    for pair in values.chunks(2) {
        let (dest, gw) = (pair[0].trim(), pair[1].trim());
        let dest: Ipv4Network = dest
            .parse()
            .map_err(|_| format!("{dest:?} is not a destination/prefix"))?;
        let gw: Ipv4Addr = gw
            .parse()
            .map_err(|_| format!("{gw:?} is not an IPv4 address"))?;
        routes.push((dest, gw));
    }
    Ok(encode_classless(&routes))
}

/// Encodes classless static routes (RFC 3442) from destination networks and gateways.
pub fn encode_classless(routes: &[(Ipv4Network, Ipv4Addr)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dest, gw) in routes {
        let width = usize::from(dest.prefix()).div_ceil(8);
        out.push(dest.prefix());
        out.extend_from_slice(&dest.network().octets()[..width]);
        out.extend_from_slice(&gw.octets());
    }
    out
}

/// dnsmasq's guess for options it has no type for: addresses, then hex bytes, then an
/// integer in the smallest width, then text.
fn guess(values: &[&str]) -> Vec<u8> {
    if let Ok(bytes) = addrs(values) {
        return bytes;
    }
    let joined = values.join(",");
    if let Some(bytes) = hex_bytes(&joined) {
        return bytes;
    }
    if let Ok(n) = joined.parse::<u32>() {
        return match n {
            0..=0xff => vec![n as u8],
            0x100..=0xffff => (n as u16).to_be_bytes().to_vec(),
            _ => n.to_be_bytes().to_vec(),
        };
    }
    joined.into_bytes()
}

/// `01:02:ff` style bytes (at least two octets, so a plain number is not taken for one).
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.contains(':') {
        return None;
    }
    text.split(':')
        .map(|b| {
            if b.is_empty() || b.len() > 2 {
                None
            } else {
                u8::from_str_radix(b, 16).ok()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve() {
        assert_eq!(by_name("router"), Some((3, Kind::Addrs)));
        assert_eq!(
            by_name("classless-static-route"),
            Some((121, Kind::Classless))
        );
        assert_eq!(by_name("no-such"), None);
        assert_eq!(kind_of(26), Kind::U16);
        assert_eq!(kind_of(224), Kind::Guess);
    }

    #[test]
    fn encodes_each_kind() {
        assert_eq!(
            encode(Kind::Addrs, &["198.18.0.1", "198.18.0.2"]).unwrap(),
            [198, 18, 0, 1, 198, 18, 0, 2]
        );
        assert!(encode(Kind::Addr, &["198.18.0.1", "198.18.0.2"]).is_err());
        assert_eq!(encode(Kind::U16, &["1450"]).unwrap(), [0x05, 0xaa]);
        assert!(encode(Kind::U8, &["256"]).is_err());
        assert_eq!(encode(Kind::U32, &["4294967295"]).unwrap(), [0xff; 4]);
        assert_eq!(encode(Kind::Text, &["a", "b"]).unwrap(), b"a,b");
        assert_eq!(
            encode(Kind::Domains, &["ab.c", "d."]).unwrap(),
            b"\x02ab\x01c\x00\x01d\x00"
        );
        assert!(encode(Kind::Addrs, &["web"]).is_err());
    }

    #[test]
    fn classless_routes_follow_rfc3442() {
        // RFC 3442 examples: 0/0 via gw is 0 + gw; 10.17.0.0/16 is 16,10,17 + gw.
        let got = encode(
            Kind::Classless,
            &["0.0.0.0/0", "198.18.0.1", "10.17.0.0/16", "198.18.0.2"],
        )
        .unwrap();
        assert_eq!(got, [0, 198, 18, 0, 1, 16, 10, 17, 198, 18, 0, 2]);
        assert!(encode(Kind::Classless, &["10.0.0.0/8"]).is_err());
    }

    #[test]
    fn guesses_like_dnsmasq() {
        assert_eq!(
            encode(Kind::Guess, &["198.18.0.9"]).unwrap(),
            [198, 18, 0, 9]
        );
        assert_eq!(encode(Kind::Guess, &["01:02:ff"]).unwrap(), [1, 2, 0xff]);
        assert_eq!(encode(Kind::Guess, &["7"]).unwrap(), [7]);
        assert_eq!(encode(Kind::Guess, &["1500"]).unwrap(), [0x05, 0xdc]);
        assert_eq!(encode(Kind::Guess, &["hello"]).unwrap(), b"hello");
    }
}
