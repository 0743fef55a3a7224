//! netnode's nftables table (`inet netnode`): nova's NAT rules (metadata DNAT, SNAT of the fixed
//! ranges with its exceptions, floating IPs, hairpin) rendered as `nft -f` text, and the table
//! as `nft -j list table` reports it read back into an [`NftState`].
//!
//! Why rendered text and not the `nftables` crate's JSON: the text is what an operator reads in
//! `netnode net plan` and can feed to `nft -c -f` by hand, one `nft -f` is one atomic
//! transaction either way, and reading back needs only the maps and a rule count, which
//! serde_json gets from `nft -j` without a typed schema of every expression.
//!
//! Floating IPs live in two maps (`floating_dnat`: floating -> fixed, `floating_snat`: fixed
//! -> floating) used by one rule each, so the rules do not grow with them and changing one
//! floating IP is one element update, not a new table. Everything else (the rules) is
//! "structure": its hash is written in a rule comment, and a table whose hash or rule counts
//! differ is replaced whole (still one transaction; conntrack keeps the NAT of established
//! flows, so replacing rules ends none).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use sha2::{Digest, Sha256};

use crate::table::control::{FloatingIp, MetadataTarget, METADATA_ADDRESS};
use crate::table::Table;

/// The table's family and name, as `nft` commands write them.
pub const TABLE: &str = "inet netnode";
/// The map from floating to fixed addresses (DNAT).
pub const FLOATING_DNAT: &str = "floating_dnat";
/// The map from fixed to floating addresses (SNAT).
pub const FLOATING_SNAT: &str = "floating_snat";
/// What the marker comment starts with.
pub use super::nftable::MARKER_PREFIX;

/// Element changes of one map of netnode's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapChange {
    /// The map.
    pub map: String,
    /// Keys to remove.
    pub delete: Vec<Ipv4Addr>,
    /// Key and value pairs to add.
    pub add: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// The table as `nft -j list table inet netnode` shows it, reduced to what the planner compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftState {
    /// The structure hash from the marker comment (none: no marker, someone else's rules).
    pub marker: Option<String>,
    /// Rules per chain.
    pub chains: BTreeMap<String, usize>,
    /// Map contents.
    pub maps: BTreeMap<String, BTreeMap<Ipv4Addr, Ipv4Addr>>,
}

/// What the rules are made from: plain values, so tests and the fuzz target build them directly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatInput {
    /// The networks' IPv4 ranges.
    pub fixed: Vec<Ipv4Network>,
    /// The networks' bridges.
    pub bridges: Vec<String>,
    /// Where metadata requests go.
    pub metadata: Option<MetadataTarget>,
    /// Destinations never SNATed.
    pub dmz: Vec<Ipv4Network>,
    /// The outside interface (no SNAT rule without it).
    pub public_interface: Option<String>,
    /// The SNAT source (none: masquerade).
    pub routing_source_ip: Option<Ipv4Addr>,
    /// Floating IPs.
    pub floating: Vec<FloatingIp>,
}

/// netnode's table as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    chains: Vec<Chain>,
    maps: BTreeMap<String, BTreeMap<Ipv4Addr, Ipv4Addr>>,
    marker: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    name: &'static str,
    hook: &'static str,
    rules: Vec<String>,
}

impl Ruleset {
    /// The rules a table asks for.
    pub fn new(table: &Table) -> Ruleset {
        let mut fixed: Vec<Ipv4Network> = Vec::new();
        for n in &table.networks {
            if !fixed.contains(&n.cidr) {
                fixed.push(n.cidr);
            }
        }
        let c = &table.control;
        Ruleset::build(&NatInput {
            fixed,
            bridges: table.bridges(),
            metadata: c.metadata,
            dmz: c.dmz.clone(),
            public_interface: c.public_interface.clone(),
            routing_source_ip: c.routing_source_ip,
            floating: c.floating.clone(),
        })
    }

    /// The rules of nova's linux_net, in nova's order (reference section 5).
    pub fn build(input: &NatInput) -> Ruleset {
        let mut pre = Vec::new();
        match input.metadata {
            Some(MetadataTarget::Redirect(port)) => pre.push(format!(
                "ip daddr {METADATA_ADDRESS} tcp dport 80 redirect to :{port}"
            )),
            Some(MetadataTarget::Dnat(host, port)) => pre.push(format!(
                "ip daddr {METADATA_ADDRESS} tcp dport 80 dnat ip to {host}:{port}"
            )),
            None => {}
        }
        let mut post = Vec::new();
        for c in &input.fixed {
            // No SNAT toward the metadata host, the DMZ, or the range itself unless DNATed.
            if let Some(MetadataTarget::Dnat(host, _)) = input.metadata {
                post.push(format!("ip saddr {c} ip daddr {host} accept"));
            }
            if !input.dmz.is_empty() {
                post.push(format!("ip saddr {c} ip daddr {} accept", set(&input.dmz)));
            }
            post.push(format!(
                "ip saddr {c} ip daddr {c} ct status & dnat == 0 accept"
            ));
        }
        post.push(format!("snat ip to ip saddr map @{FLOATING_SNAT}"));
        if !input.fixed.is_empty() && !input.bridges.is_empty() {
            // Hairpin: an instance reaching another's floating IP gets the answer back through
            // the node, not straight from its neighbour on the bridge (whose source it would
            // not recognise).
            let bridges: Vec<String> = input.bridges.iter().map(|b| quote(b)).collect();
            post.push(format!(
                "ip saddr {} ct status dnat oifname {} masquerade",
                set(&input.fixed),
                set(&bridges)
            ));
        }
        if let Some(public) = &input.public_interface {
            for c in &input.fixed {
                post.push(match input.routing_source_ip {
                    Some(r) => format!("ip saddr {c} oifname {} snat ip to {r}", quote(public)),
                    None => format!("ip saddr {c} oifname {} masquerade", quote(public)),
                });
            }
        }
        let mut chains = vec![
            Chain {
                name: "prerouting",
                hook: "type nat hook prerouting priority dstnat; policy accept;",
                rules: pre,
            },
            Chain {
                name: "output",
                hook: "type nat hook output priority -100; policy accept;",
                rules: Vec::new(),
            },
            Chain {
                name: "postrouting",
                hook: "type nat hook postrouting priority srcnat; policy accept;",
                rules: post,
            },
        ];
        let mut structure = String::new();
        for c in &chains {
            let _ = writeln!(structure, "{} {} {:?}", c.name, c.hook, c.rules);
        }
        let digest = Sha256::digest(structure.as_bytes());
        let marker: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        // The floating DNAT rule carries the marker in prerouting and output.
        for c in &mut chains[..2] {
            c.rules.push(format!(
                "dnat ip to ip daddr map @{FLOATING_DNAT} comment \"{MARKER_PREFIX}{marker}\""
            ));
        }
        let mut maps = BTreeMap::new();
        maps.insert(
            FLOATING_DNAT.to_string(),
            input
                .floating
                .iter()
                .map(|f| (f.address, f.fixed))
                .collect(),
        );
        maps.insert(
            FLOATING_SNAT.to_string(),
            input
                .floating
                .iter()
                .map(|f| (f.fixed, f.address))
                .collect(),
        );
        Ruleset {
            chains,
            maps,
            marker,
        }
    }

    /// What `nft -j list table` will show once this is applied.
    pub fn state(&self) -> NftState {
        NftState {
            marker: Some(self.marker.clone()),
            chains: self
                .chains
                .iter()
                .map(|c| (c.name.to_string(), c.rules.len()))
                .collect(),
            maps: self.maps.clone(),
        }
    }

    /// One transaction that replaces netnode's table whole (creating it first, so the delete
    /// never fails), touching no other table.
    pub fn replace_script(&self) -> String {
        let mut s = format!("table {TABLE} {{}}\ndelete table {TABLE}\ntable {TABLE} {{\n");
        s.push_str("\tcomment \"managed by netnode: changes are overwritten\"\n");
        for (name, elems) in &self.maps {
            let _ = writeln!(s, "\tmap {name} {{\n\t\ttype ipv4_addr : ipv4_addr");
            if !elems.is_empty() {
                let _ = writeln!(s, "\t\telements = {{ {} }}", elements(elems.iter()));
            }
            s.push_str("\t}\n");
        }
        for c in &self.chains {
            let _ = writeln!(s, "\tchain {} {{\n\t\t{}", c.name, c.hook);
            for r in &c.rules {
                let _ = writeln!(s, "\t\t{r}");
            }
            s.push_str("\t}\n");
        }
        s.push_str("}\n");
        s
    }

    /// The element changes that bring the maps of `observed` (same structure) to these.
    pub fn map_changes(&self, observed: &NftState) -> Vec<MapChange> {
        let empty = BTreeMap::new();
        self.maps
            .iter()
            .map(|(name, want)| {
                let have = observed.maps.get(name).unwrap_or(&empty);
                MapChange {
                    map: name.clone(),
                    delete: have
                        .iter()
                        .filter(|(k, v)| want.get(k) != Some(v))
                        .map(|(k, _)| *k)
                        .collect(),
                    add: want
                        .iter()
                        .filter(|(k, v)| have.get(k) != Some(v))
                        .map(|(k, v)| (*k, *v))
                        .collect(),
                }
            })
            .filter(|c| !c.delete.is_empty() || !c.add.is_empty())
            .collect()
    }

    /// The same changes as one `nft -f` transaction.
    pub fn update_script(changes: &[MapChange]) -> String {
        let mut s = String::new();
        for c in changes {
            if !c.delete.is_empty() {
                let keys: Vec<String> = c.delete.iter().map(|k| k.to_string()).collect();
                let _ = writeln!(
                    s,
                    "delete element {TABLE} {} {{ {} }}",
                    c.map,
                    keys.join(", ")
                );
            }
            if !c.add.is_empty() {
                let _ = writeln!(
                    s,
                    "add element {TABLE} {} {{ {} }}",
                    c.map,
                    elements(c.add.iter().map(|(k, v)| (k, v)))
                );
            }
        }
        s
    }
}

/// The script that removes netnode's table (and nothing else).
pub fn delete_script() -> String {
    format!("delete table {TABLE}\n")
}

fn elements<'a>(it: impl Iterator<Item = (&'a Ipv4Addr, &'a Ipv4Addr)>) -> String {
    it.map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn set<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", items.join(", "))
}

/// An interface name as an nft string (names are checked: no quotes or spaces in them).
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// Reads `nft -j list table inet netnode` output (through the firewall tables' reader).
/// Anything netnode did not write (an element that is not an address pair, a rule without the
/// marker) simply fails to match what is desired, so the planner replaces the table.
pub fn parse_json(text: &str) -> Result<NftState, String> {
    let table = super::nftable::parse_json(text)?;
    let mut state = NftState {
        marker: table.marker,
        chains: table.chains,
        maps: BTreeMap::new(),
    };
    let mut foreign = false;
    for (name, elements) in table.sets {
        let mut pairs = BTreeMap::new();
        for e in elements {
            let pair = e
                .split_once(" : ")
                .and_then(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)));
            match pair {
                Some((k, v)) => {
                    pairs.insert(k, v);
                }
                None => foreign = true,
            }
        }
        state.maps.insert(name, pairs);
    }
    if foreign {
        state.marker = None;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NatInput {
        NatInput {
            fixed: vec!["198.18.0.0/24".parse().unwrap()],
            bridges: vec!["br100".into()],
            metadata: Some(MetadataTarget::Redirect(8775)),
            dmz: vec!["198.19.5.0/24".parse().unwrap()],
            public_interface: Some("pub0".into()),
            routing_source_ip: Some("198.19.0.1".parse().unwrap()),
            floating: vec![FloatingIp {
                address: "198.19.1.10".parse().unwrap(),
                fixed: "198.18.0.10".parse().unwrap(),
                interface: "pub0".into(),
            }],
        }
    }

    #[test]
    fn nova_rules_in_nova_order() {
        let r = Ruleset::build(&input());
        let text = r.replace_script();
        let expect = [
            "table inet netnode {}\ndelete table inet netnode\ntable inet netnode {",
            "elements = { 198.19.1.10 : 198.18.0.10 }",
            "elements = { 198.18.0.10 : 198.19.1.10 }",
            "ip daddr 169.254.169.254 tcp dport 80 redirect to :8775",
            "ip saddr 198.18.0.0/24 ip daddr { 198.19.5.0/24 } accept",
            "ip saddr 198.18.0.0/24 ip daddr 198.18.0.0/24 ct status & dnat == 0 accept",
            "snat ip to ip saddr map @floating_snat",
            "ip saddr { 198.18.0.0/24 } ct status dnat oifname { \"br100\" } masquerade",
            "ip saddr 198.18.0.0/24 oifname \"pub0\" snat ip to 198.19.0.1",
        ];
        let mut at = 0;
        for e in expect {
            let found = text[at..]
                .find(e)
                .unwrap_or_else(|| panic!("{e:?} after {at} in\n{text}"));
            at += found + e.len();
        }
        let state = r.state();
        assert_eq!(state.chains["prerouting"], 2);
        assert_eq!(state.chains["output"], 1);
        assert_eq!(state.chains["postrouting"], 5);
    }

    #[test]
    fn only_the_maps_change_with_floating_ips() {
        let a = Ruleset::build(&input());
        let mut i = input();
        i.floating[0].fixed = "198.18.0.11".parse().unwrap();
        i.floating.push(FloatingIp {
            address: "198.19.1.12".parse().unwrap(),
            fixed: "198.18.0.12".parse().unwrap(),
            interface: "pub0".into(),
        });
        let b = Ruleset::build(&i);
        assert_eq!(a.marker, b.marker);
        let script = Ruleset::update_script(&b.map_changes(&a.state()));
        assert_eq!(
            script,
            "delete element inet netnode floating_dnat { 198.19.1.10 }\n\
             add element inet netnode floating_dnat { 198.19.1.10 : 198.18.0.11, 198.19.1.12 : 198.18.0.12 }\n\
             delete element inet netnode floating_snat { 198.18.0.10 }\n\
             add element inet netnode floating_snat { 198.18.0.11 : 198.19.1.10, 198.18.0.12 : 198.19.1.12 }\n"
        );
        assert!(b.map_changes(&b.state()).is_empty());
        let mut c = input();
        c.dmz.clear();
        assert_ne!(Ruleset::build(&c).marker, a.marker);
    }

    #[test]
    fn reads_back_what_nft_lists() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "netnode", "handle": 3}},
          {"map": {"family": "inet", "name": "floating_dnat", "table": "netnode", "type": "ipv4_addr", "map": "ipv4_addr",
                   "elem": [["198.19.1.10", "198.18.0.10"]]}},
          {"map": {"family": "inet", "name": "floating_snat", "table": "netnode", "type": "ipv4_addr", "map": "ipv4_addr"}},
          {"chain": {"family": "inet", "table": "netnode", "name": "output", "handle": 2}},
          {"rule": {"family": "inet", "table": "netnode", "chain": "output", "handle": 7, "expr": [], "comment": "netnode 0011"}}]}"#;
        let s = parse_json(json).unwrap();
        assert_eq!(s.marker.as_deref(), Some("0011"));
        assert_eq!(s.chains["output"], 1);
        assert_eq!(s.maps[FLOATING_DNAT].len(), 1);
        assert!(s.maps[FLOATING_SNAT].is_empty());
        let odd = json.replace(r#"["198.19.1.10", "198.18.0.10"]"#, r#"{"prefix": 1}"#);
        assert_eq!(parse_json(&odd).unwrap().marker, None);
        assert!(parse_json("{").is_err());
        assert!(parse_json("[]").is_err());
    }
}
