//! netnode's own DHCPv4 client: a DORA exchange on one interface (or as a relay agent), used by
//! `netnode client`, by the demo where no client package is installed, and by tests that must
//! craft exactly one kind of request (an INIT-REBOOT for a wrong address, a relayed DISCOVER).
//! Replies are decoded with dhcproto's owned decoder; the server is still untrusted here.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::{Decodable, Decoder};
use socket2::{Domain, Protocol, Socket, Type};

use super::wire::RequestBuilder;
use crate::table::MacAddr;

/// How the client reaches servers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Interface to send on.
    pub iface: String,
    /// Hardware address to use in chaddr.
    pub mac: MacAddr,
    /// Act as a relay agent with this giaddr, sending by unicast to `server`.
    pub relay: Option<Ipv4Addr>,
    /// Server to unicast to (relay mode); broadcast otherwise.
    pub server: Option<Ipv4Addr>,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// How many times to send each request.
    pub attempts: u32,
}

/// What a server gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// OFFER, ACK or NAK.
    pub kind: Option<MessageType>,
    /// yiaddr.
    pub ip: Ipv4Addr,
    /// Option 54.
    pub server: Option<Ipv4Addr>,
    /// Option 1.
    pub mask: Option<Ipv4Addr>,
    /// Option 3 (first router).
    pub router: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 15.
    pub domain: Option<String>,
    /// Option 51.
    pub lease_time: Option<u32>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Option 28.
    pub broadcast: Option<Ipv4Addr>,
    /// Where the reply was received from.
    pub from: Option<SocketAddr>,
}

impl Offer {
    fn from_message(m: &Message, from: SocketAddr) -> Offer {
        let mut o = Offer {
            kind: None,
            ip: m.yiaddr(),
            server: None,
            mask: None,
            router: None,
            dns: Vec::new(),
            hostname: None,
            domain: None,
            lease_time: None,
            mtu: None,
            broadcast: None,
            from: Some(from),
        };
        for (_, opt) in m.opts().iter() {
            match opt {
                DhcpOption::MessageType(t) => o.kind = Some(*t),
                DhcpOption::ServerIdentifier(s) => o.server = Some(*s),
                DhcpOption::SubnetMask(s) => o.mask = Some(*s),
                DhcpOption::Router(r) => o.router = r.first().copied(),
                DhcpOption::DomainNameServer(d) => o.dns = d.clone(),
                DhcpOption::Hostname(h) => o.hostname = Some(h.clone()),
                DhcpOption::DomainName(d) => o.domain = Some(d.clone()),
                DhcpOption::AddressLeaseTime(t) => o.lease_time = Some(*t),
                DhcpOption::InterfaceMtu(m) => o.mtu = Some(*m),
                DhcpOption::BroadcastAddr(b) => o.broadcast = Some(*b),
                _ => {}
            }
        }
        o
    }

    /// `key=value` lines, as `netnode client` prints them.
    pub fn to_lines(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        format!(
            "kind={}\nip={}\nmask={}\nrouter={}\ndns={}\nhostname={}\ndomain={}\nlease_time={}\nserver={}\n",
            opt(self.kind.map(|k| format!("{k:?}").to_uppercase())),
            self.ip,
            opt(self.mask.map(|m| m.to_string())),
            opt(self.router.map(|r| r.to_string())),
            self.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
            opt(self.hostname.clone()),
            opt(self.domain.clone()),
            opt(self.lease_time.map(|t| t.to_string())),
            opt(self.server.map(|s| s.to_string())),
        )
    }
}

/// A DHCP client bound to one interface.
pub struct Client {
    cfg: ClientConfig,
    socket: UdpSocket,
    xid: u32,
}

impl Client {
    /// Binds port 68 (or 67 at the relay address, in relay mode) on the interface.
    pub fn new(cfg: ClientConfig) -> io::Result<Client> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        socket.bind_device(Some(cfg.iface.as_bytes()))?;
        let local = match cfg.relay {
            Some(giaddr) => SocketAddr::from((giaddr, 67)),
            None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)),
        };
        socket.bind(&local.into())?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let xid = std::process::id().rotate_left(16)
            ^ u32::from_be_bytes([cfg.mac.0[2], cfg.mac.0[3], cfg.mac.0[4], cfg.mac.0[5]]);
        Ok(Client { cfg, socket, xid })
    }

    fn request(&self, kind: MessageType) -> RequestBuilder {
        let b = RequestBuilder::new(kind, self.cfg.mac, self.xid)
            .option(55, &[1, 3, 6, 12, 15, 26, 28, 51, 54]);
        match self.cfg.relay {
            Some(giaddr) => b.relayed_by(giaddr),
            None => b.broadcast(),
        }
    }

    fn destination(&self) -> SocketAddr {
        match (self.cfg.relay, self.cfg.server) {
            (Some(_), Some(server)) | (None, Some(server)) => SocketAddr::from((server, 67)),
            _ => SocketAddr::from((Ipv4Addr::BROADCAST, 67)),
        }
    }

    /// Sends `packet` and waits for a reply of one of the `wanted` kinds to this transaction.
    pub fn exchange(&self, packet: &[u8], wanted: &[MessageType]) -> io::Result<Offer> {
        let mut buf = [0u8; 1500];
        for _ in 0..self.cfg.attempts.max(1) {
            self.socket.send_to(packet, self.destination())?;
            let deadline = Instant::now() + self.cfg.timeout;
            while Instant::now() < deadline {
                let (n, from) = match self.socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if super::batch::nothing_received(&e) => continue,
                    Err(e) => return Err(e),
                };
                let Ok(msg) = Message::decode(&mut Decoder::new(buf.get(..n).unwrap_or(&[])))
                else {
                    continue;
                };
                if msg.xid() != self.xid || msg.chaddr().get(..6) != Some(&self.cfg.mac.0[..]) {
                    continue;
                }
                let offer = Offer::from_message(&msg, from);
                if offer.kind.is_some_and(|k| wanted.contains(&k)) {
                    return Ok(offer);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from any DHCP server",
        ))
    }

    /// DISCOVER, OFFER, REQUEST, ACK. Returns the ACK (or the NAK, as an `Offer` of kind NAK).
    pub fn acquire(&self) -> io::Result<Offer> {
        let offer = self.exchange(
            &self.request(MessageType::Discover).build(),
            &[MessageType::Offer],
        )?;
        let server = offer
            .server
            .ok_or_else(|| io::Error::other("offer without a server identifier"))?;
        let req = self
            .request(MessageType::Request)
            .option(50, &offer.ip.octets())
            .option(54, &server.octets())
            .build();
        self.exchange(&req, &[MessageType::Ack, MessageType::Nak])
    }

    /// An INIT-REBOOT REQUEST for `ip` (no server identifier): ACK if it is ours, else NAK.
    pub fn reboot(&self, ip: Ipv4Addr) -> io::Result<Offer> {
        let req = self
            .request(MessageType::Request)
            .option(50, &ip.octets())
            .build();
        self.exchange(&req, &[MessageType::Ack, MessageType::Nak])
    }

    /// A DHCPRELEASE of `ip` to `server` (no reply is expected).
    pub fn release(&self, ip: Ipv4Addr, server: Ipv4Addr) -> io::Result<()> {
        let req = RequestBuilder::new(MessageType::Release, self.cfg.mac, self.xid)
            .ciaddr(ip)
            .option(54, &server.octets())
            .build();
        self.socket.send_to(&req, self.destination())?;
        Ok(())
    }
}

/// Reads an interface's MAC from sysfs.
pub fn interface_mac(iface: &str) -> io::Result<MacAddr> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{iface}: {e}")))
}
