//! The instance firewall's model: security groups and their rules (`[[security_group]]`, or the
//! manager's), and each instance port (its device name, MAC, addresses and groups), validated
//! into [`FirewallSettings`]. The rule syntax is parsed here once, for the config file and the
//! manager's `secgroup rule create` alike, so both refuse the same things with the same words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::instance::Instance;
use super::{MacAddr, Network, Problem};

/// `[control] firewall_driver`: nova's option of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// netnode's nftables tables: anti-spoofing, the DHCP and RA guards, security groups.
    #[default]
    Nftables,
    /// Nothing filtered (nova's `NoopFirewallDriver`).
    Noop,
}

/// Which way a rule lets traffic through, seen from the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Toward the instance.
    Ingress,
    /// From the instance.
    Egress,
}

/// The IP version of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ethertype {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// Protocols with ports (a `--dst-port` means something only for these).
const PORTED: [u8; 4] = [6, 17, 33, 132];
/// ICMP and ICMPv6.
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Where a rule's remote side may be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum RemoteSpec {
    /// Anywhere.
    Any,
    /// A network (normalized: no host bits).
    Cidr(IpNetwork),
    /// The members of a group of the same project, by name.
    Group(String),
}

/// One rule as written: what `secgroup rule create` stores and `[[security_group.rule]]` gives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleSpec {
    /// Ingress or egress.
    pub direction: Direction,
    /// IPv4 or IPv6.
    pub ethertype: Ethertype,
    /// The IP protocol number (none: any).
    pub protocol: Option<u8>,
    /// The destination port range, inclusive (none: every port).
    pub ports: Option<(u16, u16)>,
    /// The remote side.
    pub remote: RemoteSpec,
}

/// A rule as text, before it is checked (the CLI's flags, the config's keys).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `ingress` (default) or `egress`.
    pub direction: Option<String>,
    /// `IPv4` (default) or `IPv6`.
    pub ethertype: Option<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `dccp`, `any` (default) or a number 0-255.
    pub protocol: Option<String>,
    /// `22`, `22:22` or `1000:2000` (tcp, udp, sctp and dccp only).
    pub dst_port: Option<String>,
    /// A CIDR the traffic's remote side is in.
    pub remote_ip: Option<String>,
    /// A group (same project) the remote side is a member of.
    pub remote_group: Option<String>,
}

/// One `[[security_group]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupConfig {
    /// Its name, unique in its project.
    pub name: String,
    /// Its project (default: none, matching instances without one).
    #[serde(default)]
    pub project: String,
    /// Its rules.
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

impl RuleConfig {
    /// Checks the rule; a CIDR with host bits set is normalized and the second value says so.
    pub fn parse(&self) -> Result<(RuleSpec, Option<String>), String> {
        let direction = match self.direction.as_deref().map(str::to_ascii_lowercase) {
            None => Direction::Ingress,
            Some(d) if d == "ingress" => Direction::Ingress,
            Some(d) if d == "egress" => Direction::Egress,
            Some(d) => return Err(format!("direction {d:?}: ingress or egress")),
        };
        let ethertype = match self.ethertype.as_deref().map(str::to_ascii_lowercase) {
            None => Ethertype::IPv4,
            Some(e) if e == "ipv4" => Ethertype::IPv4,
            Some(e) if e == "ipv6" => Ethertype::IPv6,
            Some(e) => return Err(format!("ethertype {e:?}: IPv4 or IPv6")),
        };
        let protocol = match self.protocol.as_deref() {
            None => None,
            Some(p) => protocol(p, ethertype)?,
        };
        let ports = match self.dst_port.as_deref() {
            None => None,
            Some(text) => {
                if !protocol.is_some_and(|p| PORTED.contains(&p)) {
                    return Err(format!(
                        "dst-port {text:?}: only tcp, udp, sctp and dccp rules have ports"
                    ));
                }
                Some(port_range(text)?)
            }
        };
        let mut warning = None;
        let remote = match (&self.remote_ip, &self.remote_group) {
            (Some(_), Some(_)) => return Err("remote-ip and remote-group: give one".into()),
            (Some(text), None) => {
                let net: IpNetwork = text
                    .trim()
                    .parse()
                    .map_err(|e| format!("remote-ip {text:?}: {e}"))?;
                let family = if net.is_ipv4() {
                    Ethertype::IPv4
                } else {
                    Ethertype::IPv6
                };
                if family != ethertype {
                    return Err(format!(
                        "remote-ip {text:?}: not an {ethertype:?} network (give --ethertype)"
                    ));
                }
                let normal = IpNetwork::new(net.network(), net.prefix())
                    .map_err(|e| format!("remote-ip {text:?}: {e}"))?;
                if normal.ip() != net.ip() {
                    warning = Some(format!("remote-ip {text}: host bits set, using {normal}"));
                }
                RemoteSpec::Cidr(normal)
            }
            (None, Some(g)) if g.trim().is_empty() => return Err("remote-group: empty name".into()),
            (None, Some(g)) => RemoteSpec::Group(g.clone()),
            (None, None) => RemoteSpec::Any,
        };
        Ok((
            RuleSpec {
                direction,
                ethertype,
                protocol,
                ports,
                remote,
            },
            warning,
        ))
    }
}

fn protocol(text: &str, ethertype: Ethertype) -> Result<Option<u8>, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number = match lower.as_str() {
        "any" => return Ok(None),
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "sctp" => 132,
        // OpenStack's reading: icmp in an IPv6 rule is ICMPv6.
        "icmp" if ethertype == Ethertype::IPv6 => ICMPV6,
        "icmp" => ICMP,
        "icmpv6" | "ipv6-icmp" => ICMPV6,
        other => other.parse::<u8>().map_err(|_| {
            format!("protocol {text:?}: tcp, udp, icmp, icmpv6, sctp, dccp, any or 0-255")
        })?,
    };
    match (number, ethertype) {
        (ICMP, Ethertype::IPv6) => Err(format!("protocol {text:?}: ICMP in an IPv6 rule")),
        (ICMPV6, Ethertype::IPv4) => Err(format!("protocol {text:?}: ICMPv6 in an IPv4 rule")),
        _ => Ok(Some(number)),
    }
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let one = |s: &str| -> Result<u16, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("dst-port {text:?}: {s:?} is not a port number"))?;
        u16::try_from(n)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("dst-port {text:?}: {n} is not a port (1-65535)"))
    };
    let (lo, hi) = match text.split_once(':') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => (one(text)?, one(text)?),
    };
    if lo > hi {
        return Err(format!("dst-port {text:?}: reversed ({lo} > {hi})"));
    }
    Ok((lo, hi))
}

impl RuleSpec {
    /// The protocol as a word where it has one.
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            None => "any".into(),
            Some(6) => "tcp".into(),
            Some(17) => "udp".into(),
            Some(33) => "dccp".into(),
            Some(132) => "sctp".into(),
            Some(ICMP) => "icmp".into(),
            Some(ICMPV6) => "icmpv6".into(),
            Some(n) => n.to_string(),
        }
    }

    /// The port range as `secgroup rule create` takes it.
    pub fn port_text(&self) -> String {
        match self.ports {
            None => "any".into(),
            Some((lo, hi)) => format!("{lo}:{hi}"),
        }
    }

    /// The rule as the flags that would create it (for messages and listings).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {:?} --protocol {}",
            match self.direction {
                Direction::Ingress => "--ingress",
                Direction::Egress => "--egress",
            },
            self.ethertype,
            self.protocol_name()
        );
        if let Some((lo, hi)) = self.ports {
            s.push_str(&format!(" --dst-port {lo}:{hi}"));
        }
        match &self.remote {
            RemoteSpec::Any => {}
            RemoteSpec::Cidr(n) => s.push_str(&format!(" --remote-ip {n}")),
            RemoteSpec::Group(g) => s.push_str(&format!(" --remote-group {g}")),
        }
        s
    }

    /// The rules every new group starts with (OpenStack's): all egress, IPv4 and IPv6.
    pub fn default_egress() -> [RuleSpec; 2] {
        [Ethertype::IPv4, Ethertype::IPv6].map(|ethertype| RuleSpec {
            direction: Direction::Egress,
            ethertype,
            protocol: None,
            ports: None,
            remote: RemoteSpec::Any,
        })
    }
}

/// A rule's remote side, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Anywhere.
    Any,
    /// A network.
    Cidr(IpNetwork),
    /// The members of the group at this index of [`FirewallSettings::groups`].
    Group(usize),
}

/// A rule with its remote group found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Ingress or egress.
    pub direction: Direction,
    /// IPv4 or IPv6.
    pub ethertype: Ethertype,
    /// IP protocol (none: any).
    pub protocol: Option<u8>,
    /// Destination ports (none: all).
    pub ports: Option<(u16, u16)>,
    /// The remote side.
    pub remote: Remote,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its project.
    pub project: String,
    /// Its name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// One instance interface as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The host-side device (a tap or veth) on the bridge.
    pub device: String,
    /// The bridge it is on.
    pub bridge: String,
    /// The instance's MAC on it.
    pub mac: MacAddr,
    /// Its fixed IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// Its IPv6 addresses: link-local (EUI-64) and SLAAC.
    pub v6: Vec<Ipv6Addr>,
    /// Its instance's groups (indexes into [`FirewallSettings::groups`]); an unknown group
    /// gives no rule, so an instance naming one is closed, not open.
    pub groups: Vec<usize>,
    /// The instance's UUID.
    pub instance: String,
}

/// The firewall of one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallSettings {
    /// The driver.
    pub driver: Driver,
    /// Groups.
    pub groups: Vec<Group>,
    /// Ports (instance interfaces whose device is known).
    pub ports: Vec<Port>,
}

impl FirewallSettings {
    /// Something to filter.
    pub fn active(&self) -> bool {
        self.driver == Driver::Nftables && !self.ports.is_empty()
    }
}

/// The link-local address a MAC gives itself (EUI-64, the kernel's default).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let iid = super::ipv6::eui64_interface_id(mac);
    Ipv6Addr::from((0xfe80_u128 << 112) | u128::from(iid))
}

/// Validates groups and joins ports with their instances' groups. A group named twice in a
/// project or a remote group that does not exist refuses the table; an instance naming a group
/// that does not exist is a problem (its ports are closed).
pub fn settings(
    driver: Driver,
    configs: &[SecurityGroupConfig],
    instances: &[Instance],
    networks: &[Network],
    origin: &str,
    problems: &mut Vec<Problem>,
) -> Result<FirewallSettings, String> {
    let mut groups: Vec<Group> = Vec::with_capacity(configs.len());
    // Which config each group came from.
    let mut kept: Vec<usize> = Vec::with_capacity(configs.len());
    let index = |groups: &[Group], project: &str, name: &str| {
        groups
            .iter()
            .position(|g| g.project == project && g.name == name)
    };
    for (i, c) in configs.iter().enumerate() {
        let label = format!("[[security_group]] {} ({:?})", i + 1, c.name);
        if c.name.trim().is_empty() {
            return Err(format!("{label}: name: empty"));
        }
        if index(&groups, &c.project, &c.name).is_some() {
            // The config's and the manager's can meet: the first (the config's) is kept.
            problems.push(Problem::instance(
                origin,
                format!(
                    "{label}: project {:?} already has a group of that name; this one is left out",
                    c.project
                ),
            ));
            continue;
        }
        groups.push(Group {
            project: c.project.clone(),
            name: c.name.clone(),
            rules: Vec::new(),
        });
        kept.push(i);
    }
    for (i, c) in configs.iter().enumerate() {
        // A left-out duplicate has no group of its own.
        let Some(at) = index(&groups, &c.project, &c.name) else {
            continue;
        };
        if kept.get(at) != Some(&i) {
            continue;
        }
        let mut rules = Vec::new();
        for (j, r) in c.rule.iter().enumerate() {
            let label = format!("[[security_group]] {} ({:?}) rule {}", i + 1, c.name, j + 1);
            let (spec, _) = r.parse().map_err(|e| format!("{label}: {e}"))?;
            let remote = match spec.remote {
                RemoteSpec::Any => Remote::Any,
                RemoteSpec::Cidr(n) => Remote::Cidr(n),
                RemoteSpec::Group(g) => {
                    Remote::Group(index(&groups, &c.project, &g).ok_or_else(|| {
                        format!(
                            "{label}: remote_group {g:?}: no such group in project {:?}",
                            c.project
                        )
                    })?)
                }
            };
            rules.push(Rule {
                direction: spec.direction,
                ethertype: spec.ethertype,
                protocol: spec.protocol,
                ports: spec.ports,
                remote,
            });
        }
        if let Some(g) = groups.get_mut(at) {
            g.rules = rules;
        }
    }
    let mut ports: Vec<Port> = Vec::new();
    // Two ports with one address would give one key two sets of rules (and nftables refuses
    // the overlap, failing the whole table): the second is left out, with a problem.
    let mut taken: std::collections::HashSet<IpAddr> = std::collections::HashSet::new();
    for inst in instances {
        if inst.nics.iter().all(|n| n.port.is_none()) {
            continue;
        }
        let mut member = Vec::new();
        for name in &inst.security_groups {
            match index(&groups, &inst.project_id, name) {
                Some(g) => member.push(g),
                None => problems.push(Problem::instance(
                    origin,
                    format!(
                        "instance {:?}: security group {name:?} does not exist in project {:?}: \
                         its ports admit only what every port admits",
                        inst.uuid, inst.project_id
                    ),
                )),
            }
        }
        member.sort_unstable();
        member.dedup();
        for nic in &inst.nics {
            let Some(device) = &nic.port else {
                continue;
            };
            super::interface_name(device)
                .map_err(|e| format!("instance {:?}: ports: {e}", inst.uuid))?;
            // It goes into nft scripts inside quotes: no quote, no wildcard.
            if !device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
            {
                return Err(format!(
                    "instance {:?}: ports: {device:?}: only letters, digits and _ . - @",
                    inst.uuid
                ));
            }
            if let Some(p) = ports.iter_mut().find(|p| p.device == *device) {
                if p.mac != nic.mac {
                    return Err(format!(
                        "instance {:?}: ports: {device:?} is another interface's port",
                        inst.uuid
                    ));
                }
                continue;
            }
            let bridge = networks
                .get(nic.network)
                .map(|n| n.bridge.clone())
                .unwrap_or_default();
            let mut v4 = vec![nic.ip];
            // A second network on the same interface (a MAC bound in two networks).
            for n in networks {
                if let Some(b) = n.bindings().iter().find(|b| b.mac == Some(nic.mac)) {
                    if !v4.contains(&b.ip) && n.bridge == bridge {
                        v4.push(b.ip);
                    }
                }
            }
            let mut v6 = vec![link_local(nic.mac)];
            v6.extend(nic.ipv6);
            let all: Vec<IpAddr> = v4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(v6.iter().map(|a| IpAddr::V6(*a)))
                .collect();
            if let Some(a) = all.iter().find(|a| taken.contains(a)) {
                problems.push(Problem::instance(
                    origin,
                    format!(
                        "instance {:?}: port {device:?}: address {a} is another port's; \
                         this port is not filtered",
                        inst.uuid
                    ),
                ));
                continue;
            }
            taken.extend(all);
            ports.push(Port {
                device: device.clone(),
                bridge,
                mac: nic.mac,
                v4,
                v6,
                groups: member.clone(),
                instance: inst.uuid.clone(),
            });
        }
    }
    Ok(FirewallSettings {
        driver,
        groups,
        ports,
    })
}

/// Whether an address is one of the family of a rule.
pub fn same_family(ethertype: Ethertype, a: IpAddr) -> bool {
    matches!(
        (ethertype, a),
        (Ethertype::IPv4, IpAddr::V4(_)) | (Ethertype::IPv6, IpAddr::V6(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, port: Option<&str>) -> RuleConfig {
        RuleConfig {
            protocol: Some(protocol.into()),
            dst_port: port.map(Into::into),
            ..RuleConfig::default()
        }
    }

    #[test]
    fn the_seeds_two_rules() {
        let (icmp, _) = rule("icmp", None).parse().unwrap();
        assert_eq!(icmp.protocol, Some(1));
        assert_eq!(icmp.ports, None);
        assert_eq!(icmp.direction, Direction::Ingress);
        let (ssh, _) = rule("tcp", Some("22:22")).parse().unwrap();
        assert_eq!((ssh.protocol, ssh.ports), (Some(6), Some((22, 22))));
        assert_eq!(
            ssh.describe(),
            "--ingress IPv4 --protocol tcp --dst-port 22:22"
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |r: RuleConfig| r.parse().unwrap_err();
        assert!(err(rule("tcp", Some("30:20"))).contains("reversed"));
        assert!(err(rule("tcp", Some("22:70000"))).contains("70000 is not a port"));
        assert!(err(rule("tcp", Some("0"))).contains("not a port"));
        assert!(err(rule("bogus", None)).contains("protocol \"bogus\""));
        assert!(err(rule("300", None)).contains("0-255"));
        assert!(err(rule("icmp", Some("8"))).contains("only tcp, udp"));
        let mut r = rule("icmpv6", None);
        assert!(err(r.clone()).contains("ICMPv6 in an IPv4 rule"));
        r.ethertype = Some("IPv6".into());
        assert_eq!(r.parse().unwrap().0.protocol, Some(58));
        let mut r = rule("tcp", None);
        r.remote_ip = Some("fd00::/8".into());
        assert!(err(r.clone()).contains("not an IPv4 network"));
        r.remote_ip = Some("198.18.0.7/24".into());
        let (spec, warning) = r.parse().unwrap();
        assert_eq!(
            spec.remote,
            RemoteSpec::Cidr("198.18.0.0/24".parse().unwrap())
        );
        assert!(warning
            .unwrap()
            .contains("host bits set, using 198.18.0.0/24"));
        r.remote_group = Some("web".into());
        assert!(err(r).contains("give one"));
    }

    #[test]
    fn link_local_is_eui64() {
        let mac: MacAddr = "fa:16:3e:00:00:01".parse().unwrap();
        assert_eq!(
            link_local(mac),
            "fe80::f816:3eff:fe00:1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
