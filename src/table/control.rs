//! What the control module makes of the node: the `[control]` and `[nat]` tables, the
//! `[[floating]]` list and each network's uplink (`bridge_interface`, or `vlan` +
//! `vlan_interface`), validated into [`ControlSettings`]. Errors name the key.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use serde::Deserialize;

pub use super::interface_name;
use super::Network;

/// nova's `send_arp_for_ha_count`.
pub const DEFAULT_GARP_COUNT: u32 = 3;
/// nova's `metadata_port`.
pub const DEFAULT_METADATA_PORT: u16 = 8775;
/// The address instances ask for metadata.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// `[control]`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `netnode serve` applies the desired state at start and after every reload (default false;
    /// `netnode net apply` works either way).
    #[serde(default)]
    pub enabled: bool,
    /// Set `net.ipv4.ip_forward` (and IPv6 forwarding when a network has an IPv6 prefix);
    /// default true, as nova.
    pub ip_forward: Option<bool>,
    /// Send gratuitous ARPs for a floating IP when it is associated (nova's send_arp_for_ha).
    #[serde(default)]
    pub send_arp_for_ha: bool,
    /// How many (default 3).
    pub send_arp_for_ha_count: Option<u32>,
    /// The instance firewall: `nftables` (default) or `noop` (nova's NoopFirewallDriver).
    #[serde(default)]
    pub firewall_driver: super::firewall::Driver,
}

/// `[nat]`: nova's linux_net options.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatConfig {
    /// The interface toward the outside: SNAT out of it, floating IPs on it.
    pub public_interface: Option<String>,
    /// The source address of fixed ranges going out (default: masquerade, the interface's own).
    pub routing_source_ip: Option<Ipv4Addr>,
    /// Destinations reached with the fixed address, never SNATed.
    #[serde(default)]
    pub dmz_cidr: Vec<String>,
    /// Where 169.254.169.254:80 goes (default: netnode's own metadata listener).
    pub metadata_host: Option<Ipv4Addr>,
    /// Its port (default: the listener's, else 8775).
    pub metadata_port: Option<u16>,
}

/// One `[[floating]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloatingConfig {
    /// The public address.
    pub address: Ipv4Addr,
    /// The fixed address it leads to.
    pub fixed: Ipv4Addr,
    /// The interface it lives on (default `[nat] public_interface`).
    pub interface: Option<String>,
}

/// How a network's bridge reaches the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uplink {
    /// An interface enslaved as it is (nova's flat_interface / `bridge_interface`).
    Flat(String),
    /// `vlan<id>` made on `parent` and enslaved (VlanManager).
    Vlan {
        /// The 802.1Q id, 1-4094.
        id: u16,
        /// The interface the VLAN device is made on.
        parent: String,
    },
}

impl Uplink {
    /// The interface enslaved to the bridge.
    pub fn port(&self) -> String {
        match self {
            Uplink::Flat(i) => i.clone(),
            Uplink::Vlan { id, .. } => format!("vlan{id}"),
        }
    }
}

/// Where metadata requests to 169.254.169.254:80 go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataTarget {
    /// To this port of the address they arrived on (nova's REDIRECT for a local host).
    Redirect(u16),
    /// To another address and port.
    Dnat(Ipv4Addr, u16),
}

/// One floating IP, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingIp {
    /// The public address.
    pub address: Ipv4Addr,
    /// The fixed address it leads to.
    pub fixed: Ipv4Addr,
    /// The interface its /32 lives on.
    pub interface: String,
}

/// The node-wide control settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlSettings {
    /// `netnode serve` applies them.
    pub enabled: bool,
    /// Forwarding sysctls are set.
    pub ip_forward: bool,
    /// Gratuitous ARPs per associated floating IP (0: none).
    pub garp_count: u32,
    /// The outside interface, if any.
    pub public_interface: Option<String>,
    /// The SNAT source (none: masquerade).
    pub routing_source_ip: Option<Ipv4Addr>,
    /// Never SNATed destinations.
    pub dmz: Vec<Ipv4Network>,
    /// The metadata DNAT (none: no metadata service and no `metadata_host`).
    pub metadata: Option<MetadataTarget>,
    /// Floating IPs, in config order.
    pub floating: Vec<FloatingIp>,
}

/// Validates the control keys against the built networks; `metadata` is where netnode's own
/// metadata listener listens, if it runs.
pub fn settings(
    control: Option<&ControlConfig>,
    nat: Option<&NatConfig>,
    floating: &[FloatingConfig],
    networks: &[Network],
    metadata: Option<std::net::SocketAddr>,
) -> Result<ControlSettings, String> {
    let control = control.cloned().unwrap_or_default();
    let nat = nat.cloned().unwrap_or_default();
    if let Some(i) = &nat.public_interface {
        interface_name(i).map_err(|m| format!("[nat] public_interface: {m}"))?;
    }
    let mut dmz = Vec::new();
    for text in &nat.dmz_cidr {
        let net: Ipv4Network = text
            .parse()
            .map_err(|e| format!("[nat] dmz_cidr: {text:?}: {e}"))?;
        dmz.push(Ipv4Network::new(net.network(), net.prefix()).map_err(|e| e.to_string())?);
    }
    let metadata = match (nat.metadata_host, metadata) {
        (Some(host), m) => {
            let port = nat
                .metadata_port
                .or(m.map(|m| m.port()))
                .unwrap_or(DEFAULT_METADATA_PORT);
            Some(if host.is_loopback() {
                MetadataTarget::Redirect(port)
            } else {
                MetadataTarget::Dnat(host, port)
            })
        }
        (None, Some(m)) => {
            let port = nat.metadata_port.unwrap_or(m.port());
            Some(match m.ip() {
                IpAddr::V4(a) if !a.is_unspecified() && !a.is_loopback() => {
                    MetadataTarget::Dnat(a, port)
                }
                _ => MetadataTarget::Redirect(port),
            })
        }
        (None, None) => None,
    };
    let mut fips: Vec<FloatingIp> = Vec::new();
    for (i, f) in floating.iter().enumerate() {
        let label = format!("[[floating]] {} ({})", i + 1, f.address);
        if let Some(n) = networks.iter().find(|n| n.cidr.contains(f.address)) {
            return Err(format!(
                "{label}: address: inside the fixed range {} of network {:?}",
                n.cidr, n.name
            ));
        }
        if !networks.iter().any(|n| n.cidr.contains(f.fixed)) {
            return Err(format!(
                "{label}: fixed: {} is in no network's cidr",
                f.fixed
            ));
        }
        if fips.iter().any(|o| o.address == f.address) {
            return Err(format!("{label}: address: listed twice"));
        }
        if fips.iter().any(|o| o.fixed == f.fixed) {
            return Err(format!(
                "{label}: fixed: {} already has a floating IP",
                f.fixed
            ));
        }
        let interface = match f.interface.as_ref().or(nat.public_interface.as_ref()) {
            Some(i) => {
                interface_name(i).map_err(|m| format!("{label}: interface: {m}"))?;
                i.clone()
            }
            None => {
                return Err(format!(
                    "{label}: interface: none given and no [nat] public_interface"
                ))
            }
        };
        fips.push(FloatingIp {
            address: f.address,
            fixed: f.fixed,
            interface,
        });
    }
    Ok(ControlSettings {
        enabled: control.enabled,
        ip_forward: control.ip_forward.unwrap_or(true),
        garp_count: if control.send_arp_for_ha {
            control.send_arp_for_ha_count.unwrap_or(DEFAULT_GARP_COUNT)
        } else {
            0
        },
        public_interface: nat.public_interface,
        routing_source_ip: nat.routing_source_ip,
        dmz,
        metadata,
        floating: fips,
    })
}

/// A network's uplink from its keys; errors name the key.
pub fn uplink(
    bridge_interface: Option<&str>,
    vlan: Option<u32>,
    vlan_interface: Option<&str>,
) -> Result<Option<Uplink>, String> {
    match (bridge_interface, vlan, vlan_interface) {
        (None, None, None) => Ok(None),
        (Some(i), None, None) => {
            interface_name(i).map_err(|m| format!("bridge_interface: {m}"))?;
            Ok(Some(Uplink::Flat(i.to_string())))
        }
        (None, Some(id), Some(parent)) => {
            if !(1..=4094).contains(&id) {
                return Err(format!("vlan: {id} is outside 1-4094"));
            }
            interface_name(parent).map_err(|m| format!("vlan_interface: {m}"))?;
            Ok(Some(Uplink::Vlan {
                id: id as u16,
                parent: parent.to_string(),
            }))
        }
        (None, Some(_), None) => Err("vlan: needs vlan_interface".into()),
        (None, None, Some(_)) => Err("vlan_interface: needs vlan".into()),
        (Some(_), _, _) => Err("bridge_interface: not with vlan or vlan_interface".into()),
    }
}

/// No uplink may be a bridge of the config or another bridge's uplink, and networks sharing a
/// bridge share its uplink.
pub fn check_uplinks(networks: &[Network]) -> Result<(), String> {
    for a in networks {
        let names = match &a.uplink {
            Some(Uplink::Flat(p)) => vec![("bridge_interface", p.clone())],
            Some(u @ Uplink::Vlan { parent, .. }) => {
                vec![("vlan_interface", parent.clone()), ("vlan", u.port())]
            }
            None => continue,
        };
        for (key, name) in names {
            if let Some(b) = networks.iter().find(|b| b.bridge == name) {
                return Err(format!(
                    "network {:?}: {key}: {name} is the bridge of network {:?}",
                    a.name, b.name
                ));
            }
        }
    }
    for (i, a) in networks.iter().enumerate() {
        let port = a.uplink.as_ref().map(Uplink::port);
        for b in &networks[..i] {
            let other = b.uplink.as_ref().map(Uplink::port);
            if b.bridge != a.bridge && port.is_some() && other == port {
                return Err(format!(
                    "network {:?}: {} is already the uplink of bridge {} (network {:?})",
                    a.name,
                    port.unwrap_or_default(),
                    b.bridge,
                    b.name
                ));
            }
            if a.bridge == b.bridge && a.uplink != b.uplink {
                return Err(format!(
                    "network {:?}: bridge {}: network {:?} on the same bridge has another uplink",
                    a.name, a.bridge, b.name
                ));
            }
        }
    }
    Ok(())
}

/// With the control module configured, networks sharing a bridge must agree on its gateway
/// (the bridge's first address). Without it, several subnets with their own routers on one
/// bridge are fine for DHCP (dnsmasq serves several ranges on one interface too).
pub fn check_gateways(networks: &[Network]) -> Result<(), String> {
    for (i, a) in networks.iter().enumerate() {
        for b in &networks[..i] {
            // A network without a gateway (one reached through a relay) says nothing about
            // the bridge's first address.
            let both = a.gateway.is_some() && b.gateway.is_some();
            if a.bridge == b.bridge && both && a.gateway != b.gateway {
                return Err(format!(
                    "network {:?}: gateway: {} differs from network {:?}'s {} on the same bridge {}",
                    a.name,
                    show(a.gateway),
                    b.name,
                    show(b.gateway),
                    a.bridge
                ));
            }
        }
    }
    Ok(())
}

fn show(g: Option<Ipv4Addr>) -> String {
    g.map(|g| g.to_string()).unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_and_their_errors_name_the_key() {
        assert_eq!(uplink(None, None, None), Ok(None));
        assert_eq!(
            uplink(Some("eth1"), None, None),
            Ok(Some(Uplink::Flat("eth1".into())))
        );
        let vlan = uplink(None, Some(100), Some("eth1")).unwrap().unwrap();
        assert_eq!(vlan.port(), "vlan100");
        assert!(uplink(None, Some(0), Some("eth1"))
            .unwrap_err()
            .starts_with("vlan: 0 is outside 1-4094"));
        assert!(uplink(None, Some(4095), Some("eth1"))
            .unwrap_err()
            .starts_with("vlan:"));
        assert!(uplink(None, Some(5), None)
            .unwrap_err()
            .starts_with("vlan:"));
        assert!(uplink(Some("a"), Some(5), Some("b"))
            .unwrap_err()
            .starts_with("bridge_interface:"));
        assert!(uplink(Some("sixteen-bytes-xx"), None, None)
            .unwrap_err()
            .starts_with("bridge_interface:"));
    }
}
