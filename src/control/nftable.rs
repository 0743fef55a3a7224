//! A table netnode owns whose data lives in sets, maps and named counters: rendered as `nft -f`
//! text, read back from `nft -j -p list table`, and compared so that a change is one
//! transaction of element updates, with whole sets and chains added or deleted around them.
//! Only a change to a base chain (one on a hook), or a chain whose rules are not what its name
//! promises, replaces the table. The firewall's two tables are made of it.
//!
//! The contract that makes this safe: a set's name fixes its declaration, and a regular
//! (non-base) chain's name fixes its rules (the firewall names them by a hash of their rules),
//! so a set or chain that exists under the right name is the right one.
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
    /// Which fields of an element (the key's, then the value's) nft wants quoted (interface
    /// and object names).
    pub quoted: Vec<bool>,
    /// Elements, as nft prints them (`a . b` for a concatenation, `k : v` for a map).
    pub elements: BTreeSet<String>,
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
    /// Which of them are maps.
    pub maps: BTreeSet<String>,
    /// Named counters.
    pub counters: BTreeSet<String>,
}

/// The changes between two tables of one structure, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Sets and maps to add, with their elements.
    pub add_sets: Vec<String>,
    /// Chains to add, with their rules.
    pub add_chains: Vec<String>,
    /// Counters to add (before the elements naming them).
    pub add_counters: Vec<String>,
    /// Elements to delete, per set.
    pub delete: BTreeMap<String, Vec<String>>,
    /// Elements to add, per set.
    pub add: BTreeMap<String, Vec<String>>,
    /// Chains to delete (after the elements jumping to them).
    pub delete_chains: Vec<String>,
    /// Sets and maps to delete (after the chains naming them), with their kind.
    pub delete_sets: Vec<(String, &'static str)>,
    /// Counters to delete (after the elements naming them).
    pub delete_counters: Vec<String>,
}

impl Changes {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many sets, chains, elements and counters change.
    pub fn len(&self) -> usize {
        self.add_sets.len()
            + self.add_chains.len()
            + self.delete_chains.len()
            + self.delete_sets.len()
            + self.add_counters.len()
            + self.delete_counters.len()
            + self.delete.values().map(Vec::len).sum::<usize>()
            + self.add.values().map(Vec::len).sum::<usize>()
    }
}

impl TableSpec {
    /// A table from its parts; the marker hashes the base chains (the first chain must be one:
    /// it carries the marker in its last rule's comment).
    pub fn new(
        table: &'static str,
        sets: Vec<SetSpec>,
        counters: BTreeSet<String>,
        mut chains: Vec<ChainSpec>,
    ) -> TableSpec {
        let mut structure = String::from(table);
        for c in chains.iter().filter(|c| c.hook.is_some()) {
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
            maps: self
                .sets
                .values()
                .filter(|s| s.kind == "map")
                .map(|s| s.name.clone())
                .collect(),
            counters: self.counters.clone(),
        }
    }

    /// Whether [`TableSpec::changes`] can bring `observed` here: the same base chains, and
    /// every chain both have holding as many rules as its name promises.
    pub fn same_structure(&self, observed: &TableState) -> bool {
        observed.marker.as_deref() == Some(self.marker.as_str())
            && self.chains.iter().all(|c| {
                observed
                    .chains
                    .get(&c.name)
                    .is_none_or(|&n| n == c.rules.len())
            })
            && self
                .chains
                .iter()
                .filter(|c| c.hook.is_some())
                .all(|c| observed.chains.contains_key(&c.name))
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

    /// The changes that bring `observed` (same structure) here.
    pub fn changes(&self, observed: &TableState) -> Changes {
        let mut c = Changes::default();
        for (name, set) in &self.sets {
            let Some(have) = observed.sets.get(name) else {
                c.add_sets.push(name.clone());
                continue;
            };
            let delete: Vec<String> = have.difference(&set.elements).cloned().collect();
            let add: Vec<String> = set.elements.difference(have).cloned().collect();
            if !delete.is_empty() {
                c.delete.insert(name.clone(), delete);
            }
            if !add.is_empty() {
                c.add.insert(name.clone(), add);
            }
        }
        c.delete_sets = observed
            .sets
            .keys()
            .filter(|n| !self.sets.contains_key(*n))
            .map(|n| {
                let kind = if observed.maps.contains(n) {
                    "map"
                } else {
                    "set"
                };
                (n.clone(), kind)
            })
            .collect();
        c.add_chains = self
            .chains
            .iter()
            .filter(|ch| !observed.chains.contains_key(&ch.name))
            .map(|ch| ch.name.clone())
            .collect();
        c.delete_chains = observed
            .chains
            .keys()
            .filter(|n| !self.chains.iter().any(|ch| ch.name == **n))
            .cloned()
            .collect();
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
        for set in c.add_sets.iter().filter_map(|n| self.sets.get(n)) {
            let _ = write!(s, "add {} {t} {} {{ {}", set.kind, set.name, set.decl);
            if !set.elements.is_empty() {
                let elems: Vec<String> = set.elements.iter().map(|e| set.text(e)).collect();
                let _ = write!(s, " elements = {{ {} }}", elems.join(", "));
            }
            s.push_str(" }\n");
        }
        for ch in self
            .chains
            .iter()
            .filter(|ch| c.add_chains.contains(&ch.name))
        {
            let _ = writeln!(s, "add chain {t} {}", ch.name);
            for r in &ch.rules {
                let _ = writeln!(s, "add rule {t} {} {r}", ch.name);
            }
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
        for name in &c.delete_chains {
            let _ = writeln!(s, "delete chain {t} {name}");
        }
        for (name, kind) in &c.delete_sets {
            let _ = writeln!(s, "delete {kind} {t} {name}");
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
                if self.quoted.get(field).copied().unwrap_or(false) {
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
            if item.get("map").is_some() {
                state.maps.insert(name.to_string());
            }
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
                    quoted: vec![true, false],
                    elements: elements.iter().map(|e| e.to_string()).collect(),
                },
                SetSpec {
                    name: "to".into(),
                    kind: "map",
                    decl: "type ipv4_addr : verdict;".into(),
                    quoted: vec![false, false],
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
