//! Unicast to a client that has no address yet (RFC 2131 4.1, broadcast flag clear): the
//! kernel cannot ARP for an address nobody holds, so netnode writes the neighbour entry itself,
//! as dnsmasq does, then sends an ordinary UDP datagram.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use crate::table::MacAddr;

/// `ATF_COM` from <net/if_arp.h>: the entry is complete (the hardware address is known).
const ATF_COM: libc::c_int = 0x02;

/// Sets a complete ARP entry `ip -> mac` on `device`, through any AF_INET socket.
pub fn set_neighbour(
    socket: &impl AsRawFd,
    device: &str,
    ip: Ipv4Addr,
    mac: MacAddr,
) -> io::Result<()> {
    if device.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: arpreq is plain old data; all-zero is a valid value.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes); we write its fields through a
    // properly aligned pointer to the zeroed sockaddr.
    unsafe {
        let pa = &mut req.arp_pa as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*pa).sin_family = libc::AF_INET as libc::sa_family_t;
        (*pa).sin_addr.s_addr = u32::from(ip).to_be();
    }
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in req.arp_ha.sa_data.iter_mut().zip(mac.0) {
        *dst = src as libc::c_char;
    }
    req.arp_flags = ATF_COM;
    for (dst, src) in req.arp_dev.iter_mut().zip(device.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCSARP reads one arpreq, which lives for the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP as _, &req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
