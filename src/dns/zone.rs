//! What netnode answers itself, built from a table snapshot at each reload (off the request
//! path): every binding's name (`vm-1` and `vm-1.<domain>`, A and, on a network with an IPv6
//! prefix, AAAA of the SLAAC address), the names of the extra hosts files, their PTR records,
//! and the zones netnode is the authority for: each instance domain and the reverse zones of
//! the fixed ranges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::HashMap;
use ipnetwork::IpNetwork;
use smallvec::SmallVec;

use super::wire::{self, encode_name};
use crate::table::{ipv6, Table};

/// The addresses of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// A records (one, for nearly every name: kept inline, no pointer to follow).
    pub v4: SmallVec<[Ipv4Addr; 1]>,
    /// AAAA records.
    pub v6: SmallVec<[Ipv6Addr; 1]>,
    /// Their TTL: `dhcp_ttl` for a binding's name, `local_ttl` for a hosts file's.
    pub ttl: u32,
}

/// A zone netnode answers with authority: names in it that it does not know are NXDOMAIN, and
/// negative answers carry its SOA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The zone's name (wire format, lower case).
    pub name: Vec<u8>,
    /// Its SOA record's data.
    pub soa: Vec<u8>,
    /// Its name server's name.
    pub ns: Vec<u8>,
}

/// Everything answered locally.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    // A fast hash: the keys are netnode's own names, so a query cannot lengthen a probe.
    names: HashMap<Box<[u8]>, Addresses>,
    reverse: HashMap<IpAddr, (Vec<u8>, u32)>,
    authorities: Vec<Authority>,
    /// The fixed ranges (their reverse names are answered locally).
    ranges: Vec<IpNetwork>,
    /// TTL of local answers, and of their negative answers' SOA minimum.
    pub ttl: u32,
}

/// The SOA serial: changes whenever the names do (a hash of them), so a resolver that cached
/// the old zone sees it changed.
fn serial(names: &HashMap<Box<[u8]>, Addresses>) -> u32 {
    let mut keys: Vec<&Box<[u8]>> = names.keys().collect();
    keys.sort();
    let mut h: u32 = 2_166_136_261;
    for k in keys {
        for &b in k.iter() {
            h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
        }
    }
    h
}

impl Zone {
    /// Builds the zone of a table (empty when the table has no DNS).
    pub fn build(table: &Table) -> Zone {
        let Some(dns) = &table.dns else {
            return Zone::default();
        };
        let mut zone = Zone {
            ttl: dns.local_ttl,
            ..Zone::default()
        };
        let mut domains: Vec<String> = Vec::new();
        for n in &table.networks {
            zone.ranges.push(IpNetwork::V4(n.cidr));
            if let Some(v6) = n.cidr_v6 {
                zone.ranges.push(IpNetwork::V6(v6));
            }
            for b in n.bindings() {
                let Some(host) = &b.hostname else { continue };
                if b.ignore {
                    continue;
                }
                let domain = n
                    .domain
                    .as_deref()
                    .or(b.name_domain.as_deref())
                    .map(str::to_string);
                let v6 = match (n.cidr_v6, b.mac) {
                    (Some(p), Some(mac)) => ipv6::instance_address(
                        p.network(),
                        p.prefix(),
                        mac,
                        table.ipv6_backend,
                        None,
                    )
                    .ok(),
                    _ => None,
                };
                let fqdn = domain.as_ref().map(|d| format!("{host}.{d}"));
                // The PTR target is the fully qualified name when there is one; the bare host
                // name answers too.
                let canonical = fqdn.as_deref().unwrap_or(host);
                let addresses = std::iter::once(IpAddr::from(b.ip)).chain(v6.map(IpAddr::from));
                for ip in addresses {
                    zone.add(canonical, ip, true, dns.dhcp_ttl);
                    if fqdn.is_some() {
                        zone.add(host, ip, false, dns.dhcp_ttl);
                    }
                }
                if let Some(d) = domain {
                    if !domains.contains(&d) {
                        domains.push(d);
                    }
                }
            }
            if let Some(d) = &n.domain {
                if !domains.contains(d) {
                    domains.push(d.clone());
                }
            }
        }
        for h in &dns.hosts {
            for (i, name) in h.names.iter().enumerate() {
                zone.add(name, h.ip, i == 0, dns.local_ttl);
            }
        }
        let serial = serial(&zone.names);
        let minimum = zone.ttl;
        let authority = |name: Vec<u8>| {
            let ns = [b"\x02ns".as_slice(), &name].concat();
            let hostmaster = [b"\x0ahostmaster".as_slice(), &name].concat();
            Authority {
                soa: wire::soa_rdata(&ns, &hostmaster, serial, minimum),
                ns,
                name,
            }
        };
        for d in domains {
            if let Some(name) = encode_name(&d) {
                zone.authorities.push(authority(name));
            }
        }
        for r in zone.ranges.clone() {
            if let Some(name) = reverse_zone(r) {
                zone.authorities.push(authority(name));
            }
        }
        zone
    }

    /// A name's address (the first TTL given for a name stands: bindings come first).
    fn add(&mut self, name: &str, ip: IpAddr, reverse: bool, ttl: u32) {
        let Some(key) = encode_name(name) else { return };
        let entry = self
            .names
            .entry(key.clone().into_boxed_slice())
            .or_insert_with(|| Addresses {
                ttl,
                ..Addresses::default()
            });
        match ip {
            IpAddr::V4(a) if !entry.v4.contains(&a) => entry.v4.push(a),
            IpAddr::V6(a) if !entry.v6.contains(&a) => entry.v6.push(a),
            _ => {}
        }
        if reverse {
            self.reverse.entry(ip).or_insert((key, ttl));
        }
    }

    /// The addresses of a name (wire format, lower case).
    pub fn lookup(&self, name: &[u8]) -> Option<&Addresses> {
        self.names.get(name)
    }

    /// The name an address points back to.
    pub fn pointer(&self, ip: IpAddr) -> Option<(&[u8], u32)> {
        self.reverse
            .get(&ip)
            .map(|(name, ttl)| (name.as_slice(), *ttl))
    }

    /// The zone a name falls in, if netnode is its authority (the longest match).
    pub fn authority(&self, name: &[u8]) -> Option<&Authority> {
        self.authorities
            .iter()
            .filter(|a| wire::in_zone(name, &a.name))
            .max_by_key(|a| a.name.len())
    }

    /// Whether a client at `ip` is one netnode answers: an address of a network's range (or an
    /// IPv6 link-local one, which only reaches netnode from the bridge itself).
    pub fn serves(&self, ip: IpAddr) -> bool {
        let link_local = matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        link_local || self.ranges.iter().any(|r| r.contains(ip))
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The reverse zone of a range, on a label boundary (`18.198.in-addr.arpa` for 198.18.0.0/15
/// is too wide to be exact, so the /16 above it is not claimed: only whole octets or nibbles
/// that the range covers entirely).
fn reverse_zone(range: IpNetwork) -> Option<Vec<u8>> {
    match range {
        IpNetwork::V4(n) => {
            let octets = usize::from(n.prefix() / 8);
            if octets == 0 || n.prefix() % 8 != 0 {
                return None;
            }
            let o = n.network().octets();
            let mut text: Vec<String> =
                o.iter().take(octets).rev().map(|b| b.to_string()).collect();
            text.push("in-addr.arpa".into());
            encode_name(&text.join("."))
        }
        IpNetwork::V6(n) => {
            let nibbles = usize::from(n.prefix() / 4);
            if nibbles == 0 || n.prefix() % 4 != 0 {
                return None;
            }
            let value = u128::from(n.network());
            let mut text: Vec<String> = (0..nibbles)
                .map(|i| format!("{:x}", (value >> (124 - 4 * i)) & 0xf))
                .collect();
            text.reverse();
            text.push("ip6.arpa".into());
            encode_name(&text.join("."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{build, config::ConfigFile};
    use std::path::Path;

    fn table() -> Table {
        let text = "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ndomain = \"novalocal\"\ncidr_v6 = \"fd00:1::/64\"\n[[network.host]]\nmac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\nhostname = \"vm-1\"\n[dns]\nno_resolv = true\n";
        build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("z.toml")).unwrap()
    }

    #[test]
    fn instance_names_qualified_and_not_with_their_slaac_address_and_pointers() {
        let z = Zone::build(&table());
        let n = |t: &str| encode_name(t).unwrap();
        let want_v6: Ipv6Addr = "fd00:1::f816:3eff:fe00:1".parse().unwrap();
        for name in ["vm-1", "vm-1.novalocal"] {
            let a = z.lookup(&n(name)).unwrap();
            assert_eq!(a.v4.as_slice(), [Ipv4Addr::new(198, 18, 0, 10)]);
            assert_eq!(a.v6.as_slice(), [want_v6]);
        }
        assert_eq!(
            z.pointer("198.18.0.10".parse().unwrap()),
            Some((&n("vm-1.novalocal")[..], 0))
        );
        assert_eq!(
            z.pointer(want_v6.into()),
            Some((&n("vm-1.novalocal")[..], 0))
        );
        assert_eq!(
            z.authority(&n("nope.novalocal")).unwrap().name,
            n("novalocal")
        );
        assert_eq!(
            z.authority(&n("9.0.18.198.in-addr.arpa")).unwrap().name,
            n("0.18.198.in-addr.arpa")
        );
        assert!(z.authority(&n("example.com")).is_none());
    }

    #[test]
    fn reverse_zones_only_on_label_boundaries() {
        let z = |t: &str| reverse_zone(t.parse().unwrap()).map(|n| wire::name_text(&n));
        assert_eq!(z("198.18.0.0/24").as_deref(), Some("0.18.198.in-addr.arpa"));
        assert_eq!(z("198.18.0.0/16").as_deref(), Some("18.198.in-addr.arpa"));
        assert_eq!(z("198.18.0.0/15"), None);
        assert_eq!(
            z("fd00:1::/64").as_deref(),
            Some("0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa")
        );
    }
}
