//! Gratuitous ARP for a newly associated floating IP (nova's `arping -U`), so the outside
//! switch and routers learn at once which MAC holds the address.

use std::io;
use std::net::Ipv4Addr;

use pnet_datalink::{Channel, Config, NetworkInterface};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::MutablePacket;

use crate::table::MacAddr;

/// An Ethernet header and an ARP body.
const FRAME: usize = 14 + 28;

/// The announcement: an ARP request from `address` for `address`, to everyone (RFC 5227).
pub fn frame(mac: MacAddr, address: Ipv4Addr) -> [u8; FRAME] {
    let mut buf = [0u8; FRAME];
    if let Some(mut eth) = MutableEthernetPacket::new(&mut buf) {
        eth.set_destination(pnet_datalink::MacAddr::broadcast());
        eth.set_source(mac.0.into());
        eth.set_ethertype(EtherTypes::Arp);
        if let Some(mut arp) = MutableArpPacket::new(eth.payload_mut()) {
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(ArpOperations::Request);
            arp.set_sender_hw_addr(mac.0.into());
            arp.set_sender_proto_addr(address);
            arp.set_target_hw_addr(pnet_datalink::MacAddr::zero());
            arp.set_target_proto_addr(address);
        }
    }
    buf
}

/// Sends `count` announcements of `address` on `interface`.
pub fn announce(interface: &str, address: Ipv4Addr, count: u32) -> io::Result<()> {
    let iface: NetworkInterface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface"))?;
    let mac = iface
        .mac
        .map(|m| MacAddr(m.octets()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "interface has no MAC"))?;
    let Channel::Ethernet(mut tx, _rx) = pnet_datalink::channel(&iface, Config::default())? else {
        return Err(io::Error::other("not an Ethernet channel"));
    };
    let f = frame(mac, address);
    for _ in 0..count {
        if let Some(r) = tx.send_to(&f, None) {
            r?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_is_a_broadcast_request_for_itself() {
        let f = frame(MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(198, 19, 1, 10));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[198, 19, 1, 10], "sender");
        assert_eq!(&f[38..42], &[198, 19, 1, 10], "target");
    }
}
