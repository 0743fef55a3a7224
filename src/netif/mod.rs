//! Facts about a local network interface, read from the kernel: index, MAC, link-local address,
//! IPv4 addresses; and the netlink [`monitor`] that says when they change.

pub mod monitor;

pub use monitor::LinkEvent;

use std::fs;
use std::io;
use std::net::Ipv6Addr;

use crate::table::MacAddr;

/// `IFA_F_TENTATIVE` and `IFA_F_DADFAILED` from <linux/if_addr.h>: addresses not yet usable.
const UNUSABLE: u32 = 0x40 | 0x08;
/// Link scope in /proc/net/if_inet6.
const SCOPE_LINK: u32 = 0x20;

/// The interface index, or `None` when there is no such interface.
pub fn index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|&i| i != 0)
}

/// The name of the interface with this index, or `None` when there is none (any more).
pub fn name(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|n| n.into_string().ok())
}

/// The interface's MAC address.
pub fn mac(name: &str) -> io::Result<MacAddr> {
    let text = fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))
}

/// The interface's usable (not tentative) link-local IPv6 address, if it has one yet. A fresh
/// bridge gets it only once it has carrier, and then only after duplicate address detection.
pub fn link_local(name: &str) -> Option<Ipv6Addr> {
    let text = fs::read_to_string("/proc/net/if_inet6").ok()?;
    link_local_from(&text, name)
}

/// Parses /proc/net/if_inet6: `addr ifindex plen scope flags name`, all hex but the name.
pub fn link_local_from(text: &str, name: &str) -> Option<Ipv6Addr> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, _, scope, flags, ifname] = f.as_slice() else {
            return None;
        };
        let scope = u32::from_str_radix(scope, 16).ok()?;
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *ifname != name || scope != SCOPE_LINK || flags & UNUSABLE != 0 {
            return None;
        }
        u128::from_str_radix(addr, 16).ok().map(Ipv6Addr::from)
    })
}

/// IPv4 addresses of every interface: (interface, address, prefix length).
pub fn ipv4_addresses() -> Vec<(String, std::net::Ipv4Addr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
            let mask = ifa.netmask.as_ref()?.as_sockaddr_in()?.ip();
            let prefix = ipnetwork::ipv4_mask_to_prefix(mask).ok()?;
            Some((ifa.interface_name, addr, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_if_inet6() {
        let text = "fd000001000000000000000000000001 05 40 00 80    br100\n\
                    fe80000000000000f8163efffe0000aa 05 40 20 c0    br100\n\
                    fe80000000000000f8163efffe0000bb 06 40 20 80    br200\n\
                    fe80000000000000000000000000000c 07 40 20 80       lo9\n";
        assert_eq!(
            link_local_from(text, "br100"),
            None,
            "tentative (0x40) does not count"
        );
        assert_eq!(
            link_local_from(text, "br200"),
            Some("fe80::f816:3eff:fe00:bb".parse().unwrap())
        );
        assert_eq!(link_local_from(text, "nope"), None);
        assert_eq!(link_local_from("garbage line\n", "br100"), None);
    }
}
