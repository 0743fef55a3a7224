//! `dhcp_release <interface> <address> <MAC> [<client_id>|*]`: forges the DHCPRELEASE the
//! client would send, from the interface, to the server's address on it, as dnsmasq's
//! dhcp_release does (nova runs it on every instance delete and raises when it fails).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::MessageType;
use ipnetwork::Ipv4Network;
use socket2::{Domain, Protocol, Socket, Type};

use crate::dhcp::wire::RequestBuilder;
use crate::table::options::hex_bytes;
use crate::table::MacAddr;

/// Parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Interface to send on.
    pub interface: String,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client's MAC.
    pub mac: MacAddr,
    /// Client identifier (hex octets), if given and not `*`.
    pub client_id: Option<Vec<u8>>,
}

/// dhcp_release's usage line.
pub const USAGE: &str = "usage: dhcp_release <interface> <address> <MAC address> [<client_id>]";

/// Why a release was not sent.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Too few or too many arguments.
    #[error("{USAGE}")]
    Usage,
    /// An argument that does not parse.
    #[error("bad {what} {value:?}")]
    Bad {
        /// Which argument.
        what: &'static str,
        /// What it was.
        value: String,
    },
    /// The interface does not exist.
    #[error("no interface {0}")]
    NoInterface(String),
    /// The interface has no address in the lease's subnet (so no server to release to).
    #[error("no IPv4 address on {interface} in the subnet of {ip}")]
    NoServer {
        /// The interface.
        interface: String,
        /// The leased address.
        ip: Ipv4Addr,
    },
    /// Sending failed.
    #[error("sending the release: {0}")]
    Send(#[from] io::Error),
}

/// Parses dhcp_release's arguments (without argv[0]).
pub fn parse(args: &[String]) -> Result<Release, ReleaseError> {
    let [interface, ip, mac, rest @ ..] = args else {
        return Err(ReleaseError::Usage);
    };
    if rest.len() > 1 {
        return Err(ReleaseError::Usage);
    }
    let bad = |what, value: &str| ReleaseError::Bad {
        what,
        value: value.to_string(),
    };
    let client_id = match rest.first().map(String::as_str) {
        None | Some("*") => None,
        Some(id) => Some(hex_bytes(id).ok_or_else(|| bad("client id", id))?),
    };
    Ok(Release {
        interface: interface.clone(),
        ip: ip.parse().map_err(|_| bad("address", ip))?,
        mac: mac.parse().map_err(|_| bad("MAC address", mac))?,
        client_id,
    })
}

/// The server address: the interface's IPv4 address whose subnet holds the leased address.
pub fn server_address(r: &Release, addresses: &[(String, Ipv4Addr, u8)]) -> Option<Ipv4Addr> {
    addresses.iter().find_map(|(name, addr, prefix)| {
        let subnet = Ipv4Network::new(*addr, *prefix).ok()?;
        (*name == r.interface && subnet.contains(r.ip)).then_some(*addr)
    })
}

/// The DHCPRELEASE packet.
pub fn packet(r: &Release, server: Ipv4Addr) -> Vec<u8> {
    let mut b = RequestBuilder::new(MessageType::Release, r.mac, std::process::id())
        .ciaddr(r.ip)
        .option(54, &server.octets());
    if let Some(id) = &r.client_id {
        b = b.option(61, id);
    }
    b.build()
}

/// Sends the release; an error says why (no such interface, no address in the lease's subnet).
pub fn send(r: &Release) -> Result<(), ReleaseError> {
    if crate::netif::index(&r.interface).is_none() {
        return Err(ReleaseError::NoInterface(r.interface.clone()));
    }
    let server = server_address(r, &crate::netif::ipv4_addresses()).ok_or_else(|| {
        ReleaseError::NoServer {
            interface: r.interface.clone(),
            ip: r.ip,
        }
    })?;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind_device(Some(r.interface.as_bytes()))?;
    socket.send_to(&packet(r, server), &SocketAddr::from((server, 67)).into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_novas_call() {
        let r = parse(&args("br100 198.18.0.10 fa:16:3e:00:00:01")).unwrap();
        assert_eq!(
            (r.interface.as_str(), r.ip, r.client_id),
            ("br100", Ipv4Addr::new(198, 18, 0, 10), None)
        );
        assert_eq!(
            parse(&args("br100 198.18.0.10 fa:16:3e:00:00:01 *"))
                .unwrap()
                .client_id,
            None
        );
        assert_eq!(
            parse(&args("br100 198.18.0.10 fa:16:3e:00:00:01 01:02"))
                .unwrap()
                .client_id,
            Some(vec![1, 2])
        );
        assert!(matches!(
            parse(&args("br100 198.18.0.10")),
            Err(ReleaseError::Usage)
        ));
        assert!(matches!(
            parse(&args("br100 nope fa:16:3e:00:00:01")),
            Err(ReleaseError::Bad {
                what: "address",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_interface_says_so() {
        let r = parse(&args("netnode-no-such-if 198.18.0.10 fa:16:3e:00:00:01")).unwrap();
        let e = send(&r).unwrap_err();
        assert!(matches!(e, ReleaseError::NoInterface(_)), "{e}");
        assert_eq!(e.to_string(), "no interface netnode-no-such-if");
    }

    #[test]
    fn finds_the_server_and_builds_the_release() {
        let r = parse(&args("br100 198.18.0.10 fa:16:3e:00:00:01")).unwrap();
        let addrs = vec![
            ("eth0".to_string(), Ipv4Addr::new(198, 18, 0, 1), 24),
            ("br100".to_string(), Ipv4Addr::new(198, 19, 0, 1), 24),
            ("br100".to_string(), Ipv4Addr::new(198, 18, 0, 1), 24),
        ];
        assert_eq!(
            server_address(&r, &addrs),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
        assert_eq!(server_address(&r, &addrs[..2]), None);
        let bytes = packet(&r, Ipv4Addr::new(198, 18, 0, 1));
        let p = crate::dhcp::wire::parse(&bytes).unwrap();
        assert_eq!(p.message_type, MessageType::Release);
        assert_eq!(
            (p.ciaddr, p.chaddr, p.server_id),
            (r.ip, r.mac, Some(Ipv4Addr::new(198, 18, 0, 1)))
        );
    }
}
