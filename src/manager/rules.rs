//! nova-network's address rules, pure: which addresses of a new network are reserved, what a
//! floating range holds, how a network range is split, VLAN numbering and MACs (hostnames are
//! the table's `instance::sanitize_hostname`, so DHCP and metadata name a server alike).
//! The database code asks these and stores the answers.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::table::MacAddr;

/// The largest floating pool one `floating create` may make (nova's limit).
pub const MAX_FLOATING: u64 = 1_000_000;
/// The largest fixed range one network may have (one row per address, as nova).
pub const MAX_FIXED: u64 = 1 << 20;
/// The highest 802.1Q id.
pub const MAX_VLAN: u32 = 4094;
/// The OpenStack MAC prefix (nova's base_mac `fa:16:3e:00:00:00`).
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

/// What `network-create` was asked for, before the defaults.
#[derive(Debug, Clone)]
pub struct NetworkRequest {
    /// The network's range.
    pub cidr: Ipv4Network,
    /// Allocation is limited to it (`--fixed-cidr`).
    pub fixed_cidr: Option<Ipv4Network>,
    /// `--gateway` (default: the first host address).
    pub gateway: Option<Ipv4Addr>,
    /// `--dhcp-server` (default: the gateway).
    pub dhcp_server: Option<Ipv4Addr>,
    /// A VLAN network keeps its second address for the VPN (cloudpipe).
    pub vpn: bool,
    /// `--allowed-start` / `--allowed-end`: allocation only between them.
    pub allowed_start: Option<Ipv4Addr>,
    /// See `allowed_start`.
    pub allowed_end: Option<Ipv4Addr>,
}

impl Default for NetworkRequest {
    fn default() -> Self {
        NetworkRequest {
            cidr: Ipv4Network::from(Ipv4Addr::UNSPECIFIED),
            fixed_cidr: None,
            gateway: None,
            dhcp_server: None,
            vpn: false,
            allowed_start: None,
            allowed_end: None,
        }
    }
}

/// The addresses of a new network, as nova lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkLayout {
    /// Default router.
    pub gateway: Ipv4Addr,
    /// The DHCP server's address.
    pub dhcp_server: Ipv4Addr,
    /// The first address DHCP hands out.
    pub dhcp_start: Ipv4Addr,
    /// The broadcast address.
    pub broadcast: Ipv4Addr,
    /// The VPN's private address (VLAN networks).
    pub vpn_private: Option<Ipv4Addr>,
    /// One row per address of the range: (address, reserved).
    pub rows: Vec<(Ipv4Addr, bool)>,
}

/// Lays out a network: gateway, DHCP server and start, broadcast, VPN, and which rows are
/// reserved (network, gateway, VPN, broadcast, dhcp_server, and everything outside
/// `--fixed-cidr` and the allowed range). The error says what is wrong, naming the flag.
pub fn layout(req: &NetworkRequest) -> Result<NetworkLayout, String> {
    let cidr =
        Ipv4Network::new(req.cidr.network(), req.cidr.prefix()).map_err(|e| e.to_string())?;
    if cidr.prefix() > 30 {
        return Err(format!(
            "--fixed-range-v4: {cidr} is too small (a network needs at least a /30: network, gateway, one instance, broadcast)"
        ));
    }
    let size = 1u64 << (32 - cidr.prefix());
    if size > MAX_FIXED {
        return Err(format!(
            "--fixed-range-v4: {cidr} has {size} addresses; at most {MAX_FIXED} (a /12) per network"
        ));
    }
    let base = u32::from(cidr.network());
    let nth = |i: u32| Ipv4Addr::from(base.wrapping_add(i));
    let broadcast = cidr.broadcast();
    let inside = |flag: &str, a: Ipv4Addr| {
        if cidr.contains(a) && a != cidr.network() && a != broadcast {
            Ok(a)
        } else {
            Err(format!("{flag}: {a} is not a host address of {cidr}"))
        }
    };
    let gateway = inside("--gateway", req.gateway.unwrap_or(nth(1)))?;
    let dhcp_server = inside("--dhcp-server", req.dhcp_server.unwrap_or(gateway))?;
    let vpn_private = if req.vpn {
        if cidr.prefix() > 29 {
            return Err(format!(
                "--fixed-range-v4: {cidr} is too small for a VLAN network (gateway, VPN and instances need a /29)"
            ));
        }
        Some(nth(2))
    } else {
        None
    };
    let dhcp_start = if req.vpn {
        nth(3)
    } else {
        Ipv4Addr::from(u32::from(gateway).wrapping_add(1))
    };
    if let Some(f) = req.fixed_cidr {
        if !(cidr.contains(f.network()) && cidr.contains(f.broadcast())) {
            return Err(format!("--fixed-cidr: {f} is not inside {cidr}"));
        }
    }
    for (flag, a) in [
        ("--allowed-start", req.allowed_start),
        ("--allowed-end", req.allowed_end),
    ] {
        if let Some(a) = a {
            inside(flag, a)?;
        }
    }
    let lo = req.allowed_start.map_or(0, u32::from);
    let hi = req.allowed_end.map_or(u32::MAX, u32::from);
    if lo > hi {
        return Err("--allowed-start: after --allowed-end".into());
    }
    let mut rows = Vec::with_capacity(size as usize);
    let mut free = 0usize;
    for i in 0..size as u32 {
        let a = nth(i);
        let v = u32::from(a);
        let reserved = a == cidr.network()
            || a == broadcast
            || a == gateway
            || a == dhcp_server
            || Some(a) == vpn_private
            || req.fixed_cidr.is_some_and(|f| !f.contains(a))
            || v < lo
            || v > hi;
        if !reserved {
            free += 1;
        }
        rows.push((a, reserved));
    }
    if free == 0 {
        return Err(format!(
            "--fixed-range-v4: {cidr} leaves no address to allocate once the reserved ones are taken"
        ));
    }
    Ok(NetworkLayout {
        gateway,
        dhcp_server,
        dhcp_start,
        broadcast,
        vpn_private,
        rows,
    })
}

/// Splits `range` into `count` networks of `size` addresses (nova-manage's `--num-networks` and
/// `--network-size`); one network is the range itself.
pub fn split(range: Ipv4Network, count: u32, size: u32) -> Result<Vec<Ipv4Network>, String> {
    if count <= 1 {
        return Ok(vec![range]);
    }
    if !size.is_power_of_two() || size < 4 {
        return Err(format!(
            "--network-size: {size} is not a power of two of at least 4"
        ));
    }
    let prefix = 32 - size.trailing_zeros() as u8;
    if prefix < range.prefix() || u64::from(count) > 1u64 << (prefix - range.prefix()) {
        return Err(format!(
            "--num-networks: {count} networks of {size} addresses do not fit in {range}"
        ));
    }
    let base = u32::from(range.network());
    (0..count)
        .map(|i| {
            Ipv4Network::new(Ipv4Addr::from(base + i * size), prefix).map_err(|e| e.to_string())
        })
        .collect()
}

/// The VLAN id of the `index`th VLAN network numbered from `start`; nova's limit: ids stay
/// at or under 4094.
pub fn vlan_id(start: u32, index: u32) -> Result<u16, String> {
    let id = start.saturating_add(index);
    if start == 0 || id > MAX_VLAN {
        return Err(format!(
            "--vlan: {id} is outside 1-{MAX_VLAN} (vlan_start {start} + network {index})"
        ));
    }
    Ok(id as u16)
}

/// The addresses a floating range gives: a bare address or a /32 one, a /31 both (RFC 3021,
/// the seed's own example), 4 or more the host addresses (as nova). At most [`MAX_FLOATING`].
pub fn floating_range(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    let text = text.trim();
    let net: Ipv4Network = if text.contains('/') {
        text.parse()
            .map_err(|e| format!("--ip_range: {text:?}: {e}"))?
    } else {
        let a: Ipv4Addr = text
            .parse()
            .map_err(|e| format!("--ip_range: {text:?}: {e}"))?;
        Ipv4Network::new(a, 32).map_err(|e| e.to_string())?
    };
    let net = Ipv4Network::new(net.network(), net.prefix()).map_err(|e| e.to_string())?;
    let size = 1u64 << (32 - net.prefix());
    if size > MAX_FLOATING + 2 {
        return Err(format!(
            "--ip_range: {net} has {size} addresses; a pool takes at most {MAX_FLOATING}"
        ));
    }
    let base = u32::from(net.network());
    let all = (0..size as u32).map(|i| Ipv4Addr::from(base + i));
    Ok(match size {
        1 | 2 => all.collect(),
        _ => all.skip(1).take(size as usize - 2).collect(),
    })
}

/// A MAC in `fa:16:3e` from three random bytes.
pub fn mac(random: [u8; 3]) -> MacAddr {
    let [a, b, c] = MAC_PREFIX;
    MacAddr([a, b, c, random[0], random[1], random[2]])
}

/// The device a server's interface is plugged into: `tap` and the MAC's twelve digits (fifteen
/// characters, the most an interface name holds), so the hypervisor and the firewall agree on
/// it without asking each other.
pub fn port_device(mac: &str) -> String {
    let digits: String = mac.chars().filter(char::is_ascii_hexdigit).collect();
    format!("tap{}", digits.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    fn reserved(l: &NetworkLayout) -> Vec<Ipv4Addr> {
        l.rows.iter().filter(|r| r.1).map(|r| r.0).collect()
    }

    #[test]
    fn a_flat_network_reserves_network_gateway_and_broadcast() {
        let l = layout(&NetworkRequest {
            cidr: net("198.18.2.0/24"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.gateway, Ipv4Addr::new(198, 18, 2, 1));
        assert_eq!(l.dhcp_server, l.gateway);
        assert_eq!(l.dhcp_start, Ipv4Addr::new(198, 18, 2, 2));
        assert_eq!(
            reserved(&l),
            [
                Ipv4Addr::new(198, 18, 2, 0),
                Ipv4Addr::new(198, 18, 2, 1),
                Ipv4Addr::new(198, 18, 2, 255)
            ]
        );
        assert_eq!(l.rows.len(), 256);
    }

    #[test]
    fn a_vlan_network_keeps_the_vpn_address_and_starts_dhcp_at_3() {
        let l = layout(&NetworkRequest {
            cidr: net("198.18.1.0/24"),
            vpn: true,
            dhcp_server: Some(Ipv4Addr::new(198, 18, 1, 250)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.vpn_private, Some(Ipv4Addr::new(198, 18, 1, 2)));
        assert_eq!(l.dhcp_start, Ipv4Addr::new(198, 18, 1, 3));
        let r = reserved(&l);
        for a in [0, 1, 2, 250, 255] {
            assert!(r.contains(&Ipv4Addr::new(198, 18, 1, a)), "{a}");
        }
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn fixed_cidr_and_the_allowed_range_limit_allocation() {
        let l = layout(&NetworkRequest {
            cidr: net("198.18.0.0/16"),
            fixed_cidr: Some(net("198.18.20.0/24")),
            ..Default::default()
        })
        .unwrap();
        let free: Vec<_> = l.rows.iter().filter(|r| !r.1).map(|r| r.0).collect();
        assert_eq!(free.len(), 256);
        assert!(free.iter().all(|a| net("198.18.20.0/24").contains(*a)));
        let l = layout(&NetworkRequest {
            cidr: net("198.18.3.0/24"),
            allowed_start: Some(Ipv4Addr::new(198, 18, 3, 10)),
            allowed_end: Some(Ipv4Addr::new(198, 18, 3, 19)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.rows.iter().filter(|r| !r.1).count(), 10);
    }

    #[test]
    fn bad_layouts_name_the_flag() {
        let bad = |r: NetworkRequest| layout(&r).unwrap_err();
        assert!(bad(NetworkRequest {
            cidr: net("198.18.0.0/31"),
            ..Default::default()
        })
        .contains("too small"));
        assert!(bad(NetworkRequest {
            cidr: net("10.0.0.0/8"),
            ..Default::default()
        })
        .contains("at most"));
        assert!(bad(NetworkRequest {
            cidr: net("198.18.0.0/24"),
            gateway: Some(Ipv4Addr::new(198, 18, 1, 1)),
            ..Default::default()
        })
        .contains("--gateway"));
        assert!(bad(NetworkRequest {
            cidr: net("198.18.0.0/24"),
            fixed_cidr: Some(net("198.18.1.0/24")),
            ..Default::default()
        })
        .contains("--fixed-cidr"));
    }

    #[test]
    fn floating_ranges_as_the_seed_uses_them() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            floating_range("198.19.26.170/31").unwrap(),
            [a("198.19.26.170"), a("198.19.26.171")]
        );
        assert_eq!(floating_range("198.19.0.7").unwrap(), [a("198.19.0.7")]);
        assert_eq!(floating_range("198.19.0.7/32").unwrap(), [a("198.19.0.7")]);
        assert_eq!(
            floating_range("198.19.0.4/30").unwrap(),
            [a("198.19.0.5"), a("198.19.0.6")]
        );
        assert!(floating_range("198.16.0.0/12")
            .unwrap_err()
            .contains("at most"));
        assert_eq!(
            floating_range("198.18.0.0/13").map(|v| v.len()).ok(),
            Some(524_286)
        );
        assert!(floating_range("nonsense").is_err());
    }

    #[test]
    fn splitting_and_vlan_numbering() {
        let n = split(net("198.18.0.0/22"), 4, 256).unwrap();
        assert_eq!(n.len(), 4);
        assert_eq!(n[3], net("198.18.3.0/24"));
        assert!(split(net("198.18.0.0/24"), 2, 256).is_err());
        assert!(split(net("198.18.0.0/24"), 2, 100).is_err());
        assert_eq!(vlan_id(100, 0).unwrap(), 100);
        assert_eq!(vlan_id(4000, 94).unwrap(), 4094);
        assert!(vlan_id(4000, 95).unwrap_err().contains("4094"));
    }

    #[test]
    fn macs_are_openstacks() {
        assert_eq!(mac([1, 0xab, 0xff]).to_string(), "fa:16:3e:01:ab:ff");
    }
}
