//! `netnode check`: what a table would serve, and what is wrong with it, as an operator reads it
//! before a start or a reload. Pure: the table and a way to ask whether an interface exists go
//! in, the report comes out.

use std::fmt::Write as _;

use crate::table::{ProblemKind, Table};

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The text to print.
    pub text: String,
    /// Problems (skipped lines, unidentified instances).
    pub problems: usize,
    /// Warnings that do not stop a start (a bridge that does not exist yet).
    pub warnings: usize,
}

/// Describes every network (addresses, bindings, IPv6 and router advertisements, metadata
/// instances), the metadata service, then every problem. `bridge_exists` says whether an
/// interface exists now.
pub fn report(table: &Table, bridge_exists: &dyn Fn(&str) -> bool) -> Report {
    let mut out = String::new();
    let mut warnings = 0;
    for (index, n) in table.networks.iter().enumerate() {
        let _ = writeln!(
            out,
            "network {} on {}: {} server {} gateway {} lease {} bindings {}",
            n.name,
            n.bridge,
            n.cidr,
            n.server,
            n.gateway.map_or("-".into(), |g| g.to_string()),
            n.lease_time,
            n.bindings().len()
        );
        match (&n.cidr_v6, &n.ra) {
            (Some(prefix), Some(ra)) => {
                let _ = writeln!(
                    out,
                    "  ipv6 {prefix}: router advertisements every {}-{} s, router lifetime {} s, prefix valid {} s preferred {} s, flags M={} O={}{}",
                    ra.min_interval.as_secs_f64(),
                    ra.max_interval.as_secs_f64(),
                    ra.default_lifetime,
                    ra.valid_lifetime,
                    ra.preferred_lifetime,
                    u8::from(ra.managed),
                    u8::from(ra.other_config),
                    if ra.link_mtu > 0 {
                        format!(", MTU {}", ra.link_mtu)
                    } else {
                        String::new()
                    }
                );
            }
            (Some(prefix), None) => {
                let _ = writeln!(
                    out,
                    "  ipv6 {prefix}: no router advertisements (AdvSendAdvert off)"
                );
            }
            _ => {}
        }
        let instances = table
            .instances
            .iter()
            .filter(|i| i.nics.iter().any(|nic| nic.network == index))
            .count();
        if table.metadata.is_some() {
            let _ = writeln!(out, "  metadata instances {instances}");
        }
        let dns: Vec<String> = n.dns_servers().map(|d| d.to_string()).collect();
        let _ = writeln!(
            out,
            "  dns servers handed out: {}",
            if dns.is_empty() {
                "none (no dns_servers, and netnode's DNS is off)".to_string()
            } else {
                dns.join(", ")
            }
        );
        if !bridge_exists(&n.bridge) {
            warnings += 1;
            let _ = writeln!(
                out,
                "  warning: bridge {} does not exist (yet); netnode serves it once it appears",
                n.bridge
            );
        }
    }
    for r in &table.ra_only {
        let _ = writeln!(
            out,
            "interface {} (radvd): prefixes {}",
            r.interface,
            r.prefixes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(d) = &table.dns {
        let upstreams: Vec<String> = d
            .upstreams
            .iter()
            .map(|u| {
                let domain = crate::dns::wire::name_text(&u.domain);
                match (domain.is_empty(), u.server) {
                    (true, Some(a)) => a.to_string(),
                    (false, Some(a)) => format!("{a} for {domain}"),
                    (_, None) => format!("{domain} answered locally only"),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "dns on port {} of every network's server address: {} names, upstreams {}, cache {} answers",
            d.port,
            crate::dns::Zone::build(table).len(),
            if upstreams.is_empty() {
                "none (names outside netnode's own are REFUSED)".to_string()
            } else {
                upstreams.join(", ")
            },
            d.cache_size
        );
    }
    if let Some(m) = &table.metadata {
        let _ = writeln!(
            out,
            "metadata on {}: {} instances",
            m.listen,
            table.instances.len()
        );
    }
    if let Some(m) = &table.manager {
        let _ = writeln!(
            out,
            "manager: {} (generation {}), {} servers; changes are served within a second",
            m.store,
            m.generation,
            table.instances.len()
        );
    }
    let c = &table.control;
    if c.enabled || !c.floating.is_empty() || c.public_interface.is_some() {
        let _ = writeln!(
            out,
            "control {}: {} floating IPs, SNAT {}, metadata {}; `netnode net plan` shows every change",
            if c.enabled { "on (serve applies it)" } else { "off (only `netnode net apply` applies it)" },
            c.floating.len(),
            match (&c.public_interface, c.routing_source_ip) {
                (Some(i), Some(r)) => format!("to {r} out of {i}"),
                (Some(i), None) => format!("masquerading out of {i}"),
                (None, _) => "none (no public_interface)".to_string(),
            },
            match c.metadata {
                Some(crate::table::control::MetadataTarget::Redirect(p)) => format!("redirected to port {p}"),
                Some(crate::table::control::MetadataTarget::Dnat(a, p)) => format!("DNATed to {a}:{p}"),
                None => "not forwarded".to_string(),
            }
        );
        let mut interfaces: Vec<&str> = c.public_interface.iter().map(String::as_str).collect();
        interfaces.extend(c.floating.iter().map(|f| f.interface.as_str()));
        interfaces.extend(table.networks.iter().filter_map(|n| match &n.uplink {
            Some(crate::table::control::Uplink::Flat(i)) => Some(i.as_str()),
            Some(crate::table::control::Uplink::Vlan { parent, .. }) => Some(parent.as_str()),
            None => None,
        }));
        interfaces.sort_unstable();
        interfaces.dedup();
        for i in interfaces {
            if !bridge_exists(i) {
                warnings += 1;
                let _ = writeln!(
                    out,
                    "warning: interface {i} does not exist (yet); what needs it waits for it"
                );
            }
        }
    }
    for p in &table.problems {
        let what = match p.kind {
            ProblemKind::Line => "skipped line",
            ProblemKind::Instance => "instance",
        };
        let _ = writeln!(out, "problem ({what}): {p}");
    }
    Report {
        text: out,
        problems: table.problems.len(),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{build, config::ConfigFile};
    use std::path::Path;

    fn table(text: &str) -> Table {
        build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("c.toml")).unwrap()
    }

    #[test]
    fn describes_control_and_missing_interfaces() {
        let t = table(
            "[[network]]\nname = \"n\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\n[control]\nenabled = true\n[nat]\npublic_interface = \"pub0\"\nrouting_source_ip = \"198.19.0.1\"\n[[floating]]\naddress = \"198.19.1.10\"\nfixed = \"198.18.0.10\"\n",
        );
        let r = report(&t, &|i| i == "br100");
        assert!(r.text.contains("control on (serve applies it): 1 floating IPs, SNAT to 198.19.0.1 out of pub0, metadata not forwarded"), "{}", r.text);
        assert!(
            r.text.contains("warning: interface pub0 does not exist"),
            "{}",
            r.text
        );
    }

    #[test]
    fn describes_dns() {
        let t = table(
            "[dns]\nno_resolv = true\nservers = [\"198.18.5.53\", \"/corp.example/198.18.6.53#5353\", \"/quiet/\"]\ncache_size = 50\n\
             [[network]]\nname = \"a\"\nbridge = \"br-here\"\ncidr = \"198.18.0.0/24\"\ndomain = \"novalocal\"\n[[network.host]]\nmac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\nhostname = \"vm-1\"\n",
        );
        let r = report(&t, &|_| true);
        assert!(
            r.text.contains("dns servers handed out: 198.18.0.1")
                && r.text.contains("dns on port 53 of every network's server address: 2 names, upstreams 198.18.5.53:53, 198.18.6.53:5353 for corp.example, quiet answered locally only, cache 50 answers"),
            "{}",
            r.text
        );
    }

    #[test]
    fn describes_ipv6_metadata_and_missing_bridges() {
        let t = table(
            "[[network]]\nname = \"a\"\nbridge = \"br-here\"\ncidr = \"198.18.0.0/24\"\ncidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\n[[network.host]]\nmac = \"fa:16:3e:00:00:01\"\nip = \"198.18.0.10\"\n\
             [[network]]\nname = \"b\"\nbridge = \"br-gone\"\ncidr = \"198.18.1.0/24\"\ndns_servers = [\"198.18.0.53\"]\n\
             [metadata]\n[[instance]]\nuuid = \"u1\"\nname = \"vm\"\nmac = \"fa:16:3e:00:00:01\"\n[[instance]]\nuuid = \"u2\"\nname = \"lost\"\nmac = \"fa:16:3e:00:00:99\"\n",
        );
        let r = report(&t, &|b| b == "br-here");
        assert!(
            r.text
                .contains("ipv6 fd00:1::/64: router advertisements every 3-10 s"),
            "{}",
            r.text
        );
        assert!(r.text.contains("metadata instances 1"), "{}", r.text);
        assert!(
            r.text.contains("dns servers handed out: 198.18.0.53"),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("warning: bridge br-gone does not exist"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("warning: bridge br-here"), "{}", r.text);
        assert!(r.text.contains("problem (instance): "), "{}", r.text);
        assert!(!r.text.contains("skipped line"), "{}", r.text);
        assert_eq!((r.problems, r.warnings), (1, 1));
    }
}
