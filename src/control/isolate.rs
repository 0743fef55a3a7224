//! Multi-host isolation (`bridge netnode_isolate`): when every host serves a network with the
//! same DHCP server address (nova's share_dhcp_address with multi_host), DHCP must not cross
//! the uplink, or one host's instances would be answered by every host, and the shared
//! address must not be answered for over ARP from the wire. nova did it with four ebtables
//! rules per network; here they are four fixed rules over two sets (the uplinks, the shared
//! addresses), so adding a network is two element updates.

use std::collections::BTreeSet;

use super::nftable::{ChainSpec, Field, SetSpec, TableSpec};
use crate::table::Table;

/// The table's family and name.
pub const TABLE: &str = "bridge netnode_isolate";

/// The table `table` asks for: none when no network with a shared DHCP address has an uplink
/// netnode plumbs.
pub fn build(table: &Table) -> Option<TableSpec> {
    let mut uplinks = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for n in table.networks.iter().filter(|n| n.share_dhcp_address) {
        if let Some(u) = &n.uplink {
            uplinks.insert(u.port());
            addresses.insert(n.server.to_string());
        }
    }
    spec(uplinks, addresses)
}

/// The table for these uplinks (interface names) and shared addresses (IPv4, as nft writes
/// them); none without an uplink.
pub fn spec(uplinks: BTreeSet<String>, addresses: BTreeSet<String>) -> Option<TableSpec> {
    if uplinks.is_empty() {
        return None;
    }
    let set = |name: &str, decl: &str, field: Field, elements: BTreeSet<String>| SetSpec {
        name: name.into(),
        kind: "set",
        decl: decl.into(),
        fields: vec![field],
        interval: false,
        elements,
    };
    let chain = |name: &str, rules: &[&str]| ChainSpec {
        name: name.into(),
        hook: Some(format!(
            "type filter hook {name} priority 0; policy accept;"
        )),
        rules: rules.iter().map(|r| r.to_string()).collect(),
    };
    Some(TableSpec::new(
        TABLE,
        vec![
            set("uplinks", "type ifname;", Field::Ifname, uplinks),
            set("addresses", "type ipv4_addr;", Field::Ipv4, addresses),
        ],
        BTreeSet::new(),
        vec![
            // ARP from the wire asking for the shared address: another host's instance; its
            // own host answers it.
            chain("input", &["iifname @uplinks arp daddr ip @addresses drop"]),
            // DHCP crossing the uplink, either way.
            chain(
                "forward",
                &[
                    "iifname @uplinks ether type ip udp dport 67-68 drop",
                    "oifname @uplinks ether type ip udp dport 67-68 drop",
                ],
            ),
            // This host's ARP for the shared address stays on its side.
            chain("output", &["oifname @uplinks arp saddr ip @addresses drop"]),
        ],
    ))
}
