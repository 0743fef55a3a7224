//! A table netnode owns whose data lives in sets, maps and named counters: rendered as `nft -f`
//! text, read back from `nft -j -p list table`, and compared so that a change of data is one
//! transaction of element (and counter) updates, and only a change of structure (chains,
//! rules, set declarations: hashed into a marker comment) replaces the table. The firewall's
//! two tables are made of it; their structure is fixed, so every change of instances, groups
//! and rules is element updates.
//!
//! Elements are compared as text in nft's own canonical form (`nft -j -p` prints protocols as
//! numbers, a one-value range as the value, an address range that is a prefix as the prefix):
//! the builders write exactly that form, so what was applied reads back equal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// What the structure marker comment starts with.
pub const MARKER_PREFIX: &str = "netnode ";

/// A set or map with its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// Its name.
    pub name: String,
    /// `set` or `map`.
    pub kind: &'static str,
    /// The declaration inside the braces (`type ...; flags ...;`).
    pub decl: String,
    /// The fields of an element: the key's, then the value's.
    pub fields: Vec<Field>,
    /// Declared with `flags interval` (an element's key has an end).
    pub interval: bool,
    /// Elements, as nft prints them (`a . b` for a concatenation, `k : v` for a map).
    pub elements: BTreeSet<String>,
}

/// What one field of an element holds: how nft writes it, and how the kernel stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An interface name (quoted; 16 bytes, zero-padded).
    Ifname,
    /// A MAC address (6 bytes).
    Ether,
    /// An IPv4 address, range or prefix.
    Ipv4,
    /// An IPv6 address, range or prefix.
    Ipv6,
    /// An IP protocol number or range (1 byte).
    Proto,
    /// A port or range (2 bytes, big-endian).
    Port,
    /// A named counter (quoted; a map's value).
    Counter,
    /// Anything else nft reads as written (not sent over netlink).
    Other,
}

/// Element changes of one set, as the kernel takes them: each element's key (and, in an
/// interval set, its end), every field padded to four bytes as in a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementBatch {
    /// The set.
    pub set: String,
    /// Interval set: keys have ends.
    pub interval: bool,
    /// (key, end) to delete.
    pub delete: Vec<(Vec<u8>, Vec<u8>)>,
    /// (key, end) to add.
    pub add: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A chain with its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// Its name.
    pub name: String,
    /// `type ... hook ... priority ...; policy ...;` for a base chain.
    pub hook: Option<String>,
    /// Its rules.
    pub rules: Vec<String>,
}

/// A table as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Family and name, as `nft` commands write them (`bridge netnode`).
    pub table: &'static str,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, SetSpec>,
    /// Named counters.
    pub counters: BTreeSet<String>,
    /// Chains, in order.
    pub chains: Vec<ChainSpec>,
    /// The structure hash.
    pub marker: String,
}

/// A table as `nft -j -p list table` shows it, reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableState {
    /// The structure hash from the marker comment (none: not netnode's, or tampered with).
    pub marker: Option<String>,
    /// Rules per chain.
    pub chains: BTreeMap<String, usize>,
    /// Elements per set or map.
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// Named counters.
    pub counters: BTreeSet<String>,
}

/// The element and counter changes between two tables of one structure, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Counters to add (before the elements naming them).
    pub add_counters: Vec<String>,
    /// Elements to delete, per set.
    pub delete: BTreeMap<String, Vec<String>>,
    /// Elements to add, per set.
    pub add: BTreeMap<String, Vec<String>>,
    /// Counters to delete (after the elements naming them).
    pub delete_counters: Vec<String>,
}

impl Changes {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many elements and counters change.
    pub fn len(&self) -> usize {
        self.add_counters.len()
            + self.delete_counters.len()
            + self.delete.values().map(Vec::len).sum::<usize>()
            + self.add.values().map(Vec::len).sum::<usize>()
    }
}

impl TableSpec {
    /// A table from its parts; the marker hashes its chains and set declarations and is
    /// written into the first chain's last rule.
    pub fn new(
        table: &'static str,
        sets: Vec<SetSpec>,
        counters: BTreeSet<String>,
        mut chains: Vec<ChainSpec>,
    ) -> TableSpec {
        let mut structure = String::from(table);
        for s in &sets {
            let _ = writeln!(structure, "{} {} {}", s.kind, s.name, s.decl);
        }
        for c in &chains {
            let _ = writeln!(structure, "{} {:?} {:?}", c.name, c.hook, c.rules);
        }
        let digest = Sha256::digest(structure.as_bytes());
        let marker: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        if let Some(rule) = chains.first_mut().and_then(|c| c.rules.last_mut()) {
            let _ = write!(rule, " comment \"{MARKER_PREFIX}{marker}\"");
        }
        TableSpec {
            table,
            sets: sets.into_iter().map(|s| (s.name.clone(), s)).collect(),
            counters,
            chains,
            marker,
        }
    }

    /// What `nft -j -p list table` will show once this is applied.
    pub fn state(&self) -> TableState {
        TableState {
            marker: Some(self.marker.clone()),
            chains: self
                .chains
                .iter()
                .map(|c| (c.name.clone(), c.rules.len()))
                .collect(),
            sets: self
                .sets
                .values()
                .map(|s| (s.name.clone(), s.elements.clone()))
                .collect(),
            counters: self.counters.clone(),
        }
    }

    /// Whether `observed` has this structure (so element updates bring it here).
    pub fn same_structure(&self, observed: &TableState) -> bool {
        observed.marker.as_deref() == Some(self.marker.as_str())
            && observed.chains.len() == self.chains.len()
            && self
                .chains
                .iter()
                .all(|c| observed.chains.get(&c.name) == Some(&c.rules.len()))
            && observed.sets.keys().eq(self.sets.keys())
    }

    /// One transaction that replaces the table whole (creating it first, so the delete never
    /// fails), touching no other table.
    pub fn replace_script(&self) -> String {
        let t = self.table;
        let mut s = format!("table {t} {{}}\ndelete table {t}\ntable {t} {{\n");
        s.push_str("\tcomment \"managed by netnode: changes are overwritten\"\n");
        for c in &self.counters {
            let _ = writeln!(s, "\tcounter {c} {{}}");
        }
        for set in self.sets.values() {
            let _ = writeln!(s, "\t{} {} {{\n\t\t{}", set.kind, set.name, set.decl);
            if !set.elements.is_empty() {
                let elems: Vec<String> = set.elements.iter().map(|e| set.text(e)).collect();
                let _ = writeln!(s, "\t\telements = {{ {} }}", elems.join(",\n\t\t\t"));
            }
            s.push_str("\t}\n");
        }
        for c in &self.chains {
            let _ = writeln!(s, "\tchain {} {{", c.name);
            if let Some(h) = &c.hook {
                let _ = writeln!(s, "\t\t{h}");
            }
            for r in &c.rules {
                let _ = writeln!(s, "\t\t{r}");
            }
            s.push_str("\t}\n");
        }
        s.push_str("}\n");
        s
    }

    /// The element and counter changes that bring `observed` (same structure) here.
    pub fn changes(&self, observed: &TableState) -> Changes {
        let mut c = Changes::default();
        let empty = BTreeSet::new();
        for (name, set) in &self.sets {
            let have = observed.sets.get(name).unwrap_or(&empty);
            let delete: Vec<String> = have.difference(&set.elements).cloned().collect();
            let add: Vec<String> = set.elements.difference(have).cloned().collect();
            if !delete.is_empty() {
                c.delete.insert(name.clone(), delete);
            }
            if !add.is_empty() {
                c.add.insert(name.clone(), add);
            }
        }
        c.add_counters = self
            .counters
            .difference(&observed.counters)
            .cloned()
            .collect();
        c.delete_counters = observed
            .counters
            .difference(&self.counters)
            .cloned()
            .collect();
        c
    }

    /// The changes as one `nft -f` transaction.
    pub fn update_script(&self, c: &Changes) -> String {
        let t = self.table;
        let mut s = String::new();
        for name in &c.add_counters {
            let _ = writeln!(s, "add counter {t} {name}");
        }
        for (name, elems) in &c.delete {
            if let Some(set) = self.sets.get(name) {
                // A map's element is deleted by its key.
                let keys: Vec<String> = elems
                    .iter()
                    .map(|e| set.text(e.split(" : ").next().unwrap_or(e)))
                    .collect();
                let _ = writeln!(s, "delete element {t} {name} {{ {} }}", keys.join(", "));
            }
        }
        for (name, elems) in &c.add {
            if let Some(set) = self.sets.get(name) {
                let texts: Vec<String> = elems.iter().map(|e| set.text(e)).collect();
                let _ = writeln!(s, "add element {t} {name} {{ {} }}", texts.join(", "));
            }
        }
        for name in &c.delete_counters {
            let _ = writeln!(s, "delete counter {t} {name}");
        }
        s
    }

    /// The script that removes the table (and nothing else).
    pub fn delete_script(table: &str) -> String {
        format!("delete table {table}\n")
    }
}

impl SetSpec {
    /// An element as nft syntax: the fields the declaration names as strings quoted.
    pub fn text(&self, element: &str) -> String {
        let mut out = String::new();
        let mut field = 0;
        for (i, part) in element.split(" : ").enumerate() {
            if i > 0 {
                out.push_str(" : ");
            }
            for (j, f) in part.split(" . ").enumerate() {
                if j > 0 {
                    out.push_str(" . ");
                }
                if matches!(self.fields.get(field), Some(Field::Ifname | Field::Counter)) {
                    let _ = write!(out, "\"{f}\"");
                } else {
                    out.push_str(f);
                }
                field += 1;
            }
        }
        out
    }
}

impl SetSpec {
    /// An element's key and end as the kernel stores them; `None` for what only nft writes
    /// (map values, names of objects, raw payloads).
    pub fn encode(&self, element: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.kind != "set" {
            return None;
        }
        let parts: Vec<&str> = element.split(" . ").collect();
        if parts.len() != self.fields.len() {
            return None;
        }
        let (mut key, mut end) = (Vec::new(), Vec::new());
        let concat = self.fields.len() > 1;
        for (field, text) in self.fields.iter().zip(parts) {
            let (lo, hi) = encode_field(*field, text)?;
            for (out, v) in [(&mut key, lo), (&mut end, hi)] {
                // In a concatenation every field fills whole 32-bit registers.
                let padded = if concat {
                    v.len().div_ceil(4) * 4
                } else {
                    v.len()
                };
                out.extend_from_slice(&v);
                out.resize(out.len() + padded - v.len(), 0);
            }
        }
        Some((key, end))
    }
}

/// One field's first and last value, in the kernel's byte order.
fn encode_field(field: Field, text: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    fn range<T: std::str::FromStr>(text: &str) -> Option<(T, T)> {
        match text.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let v: T = text.parse().ok()?;
                let w: T = text.parse().ok()?;
                Some((v, w))
            }
        }
    }
    match field {
        Field::Ipv4 => {
            let (lo, hi) = match text.parse::<ipnetwork::Ipv4Network>() {
                Ok(n) if text.contains('/') => (n.network(), n.broadcast()),
                _ => range::<std::net::Ipv4Addr>(text)?,
            };
            Some((lo.octets().to_vec(), hi.octets().to_vec()))
        }
        Field::Ipv6 => {
            let (lo, hi) = match text.parse::<ipnetwork::Ipv6Network>() {
                Ok(n) if text.contains('/') => {
                    let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
                    let lo = u128::from(n.network());
                    (lo.into(), std::net::Ipv6Addr::from(lo | host))
                }
                _ => range::<std::net::Ipv6Addr>(text)?,
            };
            Some((lo.octets().to_vec(), hi.octets().to_vec()))
        }
        Field::Proto => {
            let (lo, hi) = range::<u8>(text)?;
            Some((vec![lo], vec![hi]))
        }
        Field::Port => {
            let (lo, hi) = range::<u16>(text)?;
            Some((lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec()))
        }
        Field::Ifname => {
            let mut name = text.as_bytes().to_vec();
            if name.len() >= 16 {
                return None;
            }
            name.resize(16, 0);
            Some((name.clone(), name))
        }
        Field::Ether => {
            let mac: crate::table::MacAddr = text.parse().ok()?;
            Some((mac.0.to_vec(), mac.0.to_vec()))
        }
        Field::Counter | Field::Other => None,
    }
}

impl TableSpec {
    /// The same changes as netlink element batches, when every element can be encoded and no
    /// counter changes (else the `nft` script applies them).
    pub fn element_batches(&self, c: &Changes) -> Option<Vec<ElementBatch>> {
        // A large change is one `nft` process anyway (and would not fit one message).
        if !c.add_counters.is_empty() || !c.delete_counters.is_empty() || c.len() > 1000 {
            return None;
        }
        let mut out: BTreeMap<&str, ElementBatch> = BTreeMap::new();
        for (op, list) in [(false, &c.delete), (true, &c.add)] {
            for (name, elems) in list {
                let set = self.sets.get(name)?;
                let batch = out.entry(name).or_insert_with(|| ElementBatch {
                    set: name.clone(),
                    interval: set.interval,
                    delete: Vec::new(),
                    add: Vec::new(),
                });
                for e in elems {
                    let encoded = set.encode(e)?;
                    if op {
                        batch.add.push(encoded);
                    } else {
                        batch.delete.push(encoded);
                    }
                }
            }
        }
        Some(out.into_values().collect())
    }
}

/// Reads `nft -j -p list table` output. Anything netnode would not have written (an element
/// it cannot read, a second marker) clears the marker, so the planner replaces the table.
pub fn parse_json(text: &str) -> Result<TableState, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("nft -j output: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or("nft -j output: no \"nftables\" array")?;
    let mut state = TableState::default();
    let mut foreign = false;
    for item in items {
        if let Some(chain) = item.get("chain") {
            if let Some(name) = chain.get("name").and_then(|n| n.as_str()) {
                state.chains.entry(name.to_string()).or_insert(0);
            }
        } else if let Some(rule) = item.get("rule") {
            if let Some(chain) = rule.get("chain").and_then(|n| n.as_str()) {
                *state.chains.entry(chain.to_string()).or_insert(0) += 1;
            }
            if let Some(m) = rule
                .get("comment")
                .and_then(|c| c.as_str())
                .and_then(|c| c.strip_prefix(MARKER_PREFIX))
            {
                match &state.marker {
                    Some(seen) if seen != m => foreign = true,
                    _ => state.marker = Some(m.to_string()),
                }
            }
        } else if let Some(counter) = item.get("counter") {
            if let Some(name) = counter.get("name").and_then(|n| n.as_str()) {
                state.counters.insert(name.to_string());
            }
        } else if let Some(set) = item.get("set").or_else(|| item.get("map")) {
            let Some(name) = set.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let mut elems = BTreeSet::new();
            for e in set
                .get("elem")
                .and_then(|e| e.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                match element(e) {
                    Some(text) => {
                        elems.insert(text);
                    }
                    None => foreign = true,
                }
            }
            state.sets.insert(name.to_string(), elems);
        }
    }
    if foreign {
        state.marker = None;
    }
    Ok(state)
}

/// One element of `nft -j`: a value, `{"elem": {"val": ...}}` (with a counter or comment), or a
/// map's `[key, value]`.
fn element(e: &serde_json::Value) -> Option<String> {
    if let Some(pair) = e.as_array() {
        return match pair.as_slice() {
            [k, v] => Some(format!("{} : {}", element(k)?, value(v)?)),
            _ => None,
        };
    }
    if let Some(inner) = e.get("elem").and_then(|x| x.get("val")) {
        return element(inner);
    }
    value(e)
}

fn value(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            if let Some(parts) = o.get("concat").and_then(|c| c.as_array()) {
                let parts: Option<Vec<String>> = parts.iter().map(value).collect();
                return Some(parts?.join(" . "));
            }
            if let Some([lo, hi]) = o.get("range").and_then(|r| r.as_array()).map(Vec::as_slice) {
                return Some(format!("{}-{}", value(lo)?, value(hi)?));
            }
            if let Some(p) = o.get("prefix") {
                let addr = p.get("addr").and_then(|a| a.as_str())?;
                let len = p.get("len").and_then(|l| l.as_u64())?;
                return Some(format!("{addr}/{len}"));
            }
            for verdict in ["jump", "goto"] {
                if let Some(target) = o
                    .get(verdict)
                    .and_then(|j| j.get("target"))
                    .and_then(|t| t.as_str())
                {
                    return Some(format!("{verdict} {target}"));
                }
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(elements: &[&str]) -> TableSpec {
        TableSpec::new(
            "inet t",
            vec![
                SetSpec {
                    name: "ports".into(),
                    kind: "set",
                    decl: "type ifname . ipv4_addr;".into(),
                    fields: vec![Field::Ifname, Field::Ipv4],
                    interval: false,
                    elements: elements.iter().map(|e| e.to_string()).collect(),
                },
                SetSpec {
                    name: "to".into(),
                    kind: "map",
                    decl: "type ipv4_addr : verdict;".into(),
                    fields: vec![Field::Ipv4, Field::Other],
                    interval: false,
                    elements: ["198.18.0.3 : jump g".to_string()].into(),
                },
            ],
            ["c1".to_string()].into(),
            vec![
                ChainSpec {
                    name: "forward".into(),
                    hook: Some("type filter hook forward priority 0; policy accept;".into()),
                    rules: vec!["ip daddr vmap @to".into()],
                },
                ChainSpec {
                    name: "g".into(),
                    hook: None,
                    rules: vec!["accept".into()],
                },
            ],
        )
    }

    #[test]
    fn data_changes_are_element_updates() {
        let a = spec(&["tap1 . 198.18.0.3"]);
        let b = spec(&["tap1 . 198.18.0.3", "tap.2 . 198.18.0.4"]);
        assert_eq!(a.marker, b.marker);
        assert!(b.same_structure(&a.state()));
        let c = b.changes(&a.state());
        assert_eq!(c.len(), 1);
        assert_eq!(
            b.update_script(&c),
            "add element inet t ports { \"tap.2\" . 198.18.0.4 }\n"
        );
        let back = a.changes(&b.state());
        assert_eq!(
            a.update_script(&back),
            "delete element inet t ports { \"tap.2\" . 198.18.0.4 }\n"
        );
        assert!(b.changes(&b.state()).is_empty());
        let text = b.replace_script();
        assert!(text.contains("counter c1 {}"), "{text}");
        assert!(
            text.contains("ip daddr vmap @to comment \"netnode "),
            "{text}"
        );
    }

    #[test]
    fn elements_encode_as_the_kernel_stores_them() {
        let set = SetSpec {
            name: "in4".into(),
            kind: "set",
            decl: String::new(),
            fields: vec![Field::Ipv4, Field::Proto, Field::Port, Field::Ipv4],
            interval: true,
            elements: BTreeSet::new(),
        };
        let (key, end) = set
            .encode("198.18.0.3 . 6 . 22-23 . 198.19.0.0/16")
            .unwrap();
        assert_eq!(key, [198, 18, 0, 3, 6, 0, 0, 0, 0, 22, 0, 0, 198, 19, 0, 0]);
        assert_eq!(
            end,
            [198, 18, 0, 3, 6, 0, 0, 0, 0, 23, 0, 0, 198, 19, 255, 255]
        );
        let (_, end) = set
            .encode("198.18.0.3 . 0-255 . 0-65535 . 0.0.0.0/0")
            .unwrap();
        assert_eq!(end[4..], [255, 0, 0, 0, 255, 255, 0, 0, 255, 255, 255, 255]);
        assert!(set.encode("198.18.0.3 . 6").is_none());
        assert!(set.encode("198.18.0.3 . tcp . 22 . 0.0.0.0/0").is_none());
        let one = SetSpec {
            fields: vec![Field::Ifname],
            interval: false,
            ..set
        };
        assert_eq!(one.encode("tap1").unwrap().0.len(), 16);
    }

    #[test]
    fn reads_back_what_nft_lists() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "t", "handle": 3}},
          {"counter": {"family": "inet", "name": "c1", "table": "t", "packets": 0, "bytes": 0}},
          {"set": {"family": "inet", "name": "in4", "table": "t", "type": ["inet_proto", "inet_service", "ipv4_addr"], "flags": ["interval"],
            "elem": [{"concat": [6, 22, {"prefix": {"addr": "198.18.0.0", "len": 24}}]},
                     {"concat": [{"range": [0, 255]}, {"range": [0, 65535]}, "198.18.0.5"]},
                     {"elem": {"val": {"concat": ["tap1", "fa:16:3e:00:00:01"]}, "counter": {"packets": 1, "bytes": 2}}}]}},
          {"map": {"family": "inet", "name": "to", "table": "t", "type": "ipv4_addr", "map": "verdict",
            "elem": [["198.18.0.3", {"jump": {"target": "g"}}], ["198.18.0.4", "c1"]]}},
          {"chain": {"family": "inet", "table": "t", "name": "forward", "handle": 2}},
          {"rule": {"family": "inet", "table": "t", "chain": "forward", "handle": 7, "expr": [], "comment": "netnode 0011"}}]}"#;
        let s = parse_json(json).unwrap();
        assert_eq!(s.marker.as_deref(), Some("0011"));
        assert_eq!(s.chains["forward"], 1);
        assert!(s.counters.contains("c1"));
        let in4: Vec<&str> = s.sets["in4"].iter().map(String::as_str).collect();
        assert_eq!(
            in4,
            [
                "0-255 . 0-65535 . 198.18.0.5",
                "6 . 22 . 198.18.0.0/24",
                "tap1 . fa:16:3e:00:00:01"
            ]
        );
        assert!(s.sets["to"].contains("198.18.0.3 : jump g"));
        assert!(s.sets["to"].contains("198.18.0.4 : c1"));
        let odd = json.replace(r#""198.18.0.5""#, r#"{"map": 1}"#);
        assert_eq!(parse_json(&odd).unwrap().marker, None);
        assert!(parse_json("{").is_err());
    }
}
