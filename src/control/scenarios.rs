//! The planner driven without a kernel: desired states from TOML as operators write them,
//! observed states built by hand, plans checked op by op, and [`simulate`] standing in for the
//! kernel to check that a plan's result needs no further plan.

use std::path::Path;

use super::plan::{plan, simulate, teardown, LinkChange, Op};
use super::state::{Address, Desired, Link, LinkKind, Observed, Route};
use crate::table::{build, config::ConfigFile, MacAddr};

const NODE: &str = r#"
[[network]]
name = "vmnet"
bridge = "br100"
cidr = "198.18.0.0/24"
gateway = "198.18.0.1"
cidr_v6 = "fd00:1::/64"
[metadata]
[control]
enabled = true
send_arp_for_ha = true
[nat]
public_interface = "pub0"
routing_source_ip = "198.19.0.1"
dmz_cidr = ["198.19.5.0/24"]
[[floating]]
address = "198.19.1.10"
fixed = "198.18.0.10"
"#;

fn desired(text: &str) -> Desired {
    let config = ConfigFile::parse(text).unwrap();
    Desired::from_table(&build::from_config(&config, Path::new("node.toml")).unwrap())
}

fn link(name: &str, kind: LinkKind) -> Link {
    Link {
        name: name.into(),
        kind,
        master: None,
        up: true,
        mtu: 1500,
        mac: Some(MacAddr([2, 0, 0, 0, 0, name.len() as u8])),
        owned: false,
        accept_ra: Some(1),
        ra_learned: false,
    }
}

fn addr(link: &str, cidr: &str, owned: bool) -> Address {
    Address {
        link: link.into(),
        cidr: cidr.parse().unwrap(),
        owned,
    }
}

/// A host with its public interface and nothing of netnode's.
fn bare() -> Observed {
    Observed {
        links: vec![link("lo", LinkKind::Other), link("pub0", LinkKind::Other)],
        addresses: vec![addr("pub0", "198.19.0.1/16", false)],
        ..Observed::default()
    }
}

/// Plans, applies in the model, and checks that the result needs nothing more.
fn converge(d: &Desired, o: &Observed) -> Observed {
    let p = plan(d, o);
    let after = simulate(o, &p.ops);
    let again = plan(d, &after);
    assert!(again.is_empty(), "a second plan: {:#?}", again.ops);
    after
}

#[test]
fn from_nothing_the_whole_node_then_nothing() {
    let d = desired(NODE);
    let o = bare();
    let p = plan(&d, &o);
    let text: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        text[0],
        "ip link add br100 type bridge forward_delay 0 stp_state 0 && ip link set br100 alias netnode up"
    );
    assert_eq!(text[1], "ip address add 198.18.0.1/24 dev br100 proto 0x4e");
    assert_eq!(text[2], "ip address add fd00:1::1/64 dev br100 proto 0x4e");
    assert_eq!(text[3], "ip address add 198.19.1.10/32 dev pub0 proto 0x4e");
    assert_eq!(text[4], "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(text[5], "sysctl -w net.ipv6.conf.all.forwarding=1");
    assert!(
        text[6].starts_with("nft -f - <<'EOF'\ntable inet netnode {}\ndelete table inet netnode\n")
    );
    assert!(text[6].contains("redirect to :8775"), "{}", text[6]);
    assert_eq!(text[7], "arping -U -c 3 -I pub0 198.19.1.10");
    assert_eq!(text.len(), 8);
    converge(&d, &o);
}

#[test]
fn the_gateway_becomes_the_first_address() {
    let d = desired(NODE);
    let mut o = converge(&d, &bare());
    // An address of netnode's (an older gateway) is first: netnode's addresses are re-added.
    o.addresses.retain(|a| a.link != "br100");
    o.addresses.push(addr("br100", "198.18.0.200/24", true));
    o.addresses.push(addr("br100", "198.18.0.1/24", true));
    o.addresses.push(addr("br100", "fd00:1::1/64", true));
    let p = plan(&d, &o);
    let text: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        text,
        [
            "ip address delete 198.18.0.200/24 dev br100",
            "ip address delete 198.18.0.1/24 dev br100",
            "ip address add 198.18.0.1/24 dev br100 proto 0x4e",
            "ip address add 198.18.0.200/24 dev br100 proto 0x4e",
            "ip address delete 198.18.0.200/24 dev br100",
        ]
    );
    let after = converge(&d, &o);
    assert_eq!(after.global_v4("br100")[0].0.to_string(), "198.18.0.1/24");
    // Someone else's address first: never taken down (the routes through the bridge would go
    // with it); a warning says so.
    let at = o.addresses.len() - 3;
    o.addresses[at].owned = false;
    let p = plan(&d, &o);
    assert!(p.ops.is_empty(), "{:#?}", p.ops);
    assert!(
        p.warnings.iter().any(|w| w
            .contains("the gateway 198.18.0.1/24 is not its first address (198.18.0.200/24 is")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_vlan_device_on_another_parent_is_made_again_if_it_is_netnode_s() {
    let text = NODE.replace(
        "bridge = \"br100\"",
        "bridge = \"br100\"\nvlan = 100\nvlan_interface = \"eth2\"",
    );
    let d = desired(&text);
    let mut o = bare();
    o.links.push(link("eth1", LinkKind::Other));
    o.links.push(link("eth2", LinkKind::Other));
    let mut old = link(
        "vlan100",
        LinkKind::Vlan {
            parent: Some("eth1".into()),
            id: 100,
        },
    );
    old.owned = true;
    o.links.push(old.clone());
    let p = plan(&d, &o);
    let delete = p.ops.iter().position(|op| {
        *op == Op::DeleteLink {
            name: "vlan100".into(),
        }
    });
    let add = p
        .ops
        .iter()
        .position(|op| matches!(op, Op::AddVlan { parent, .. } if parent == "eth2"));
    assert!(delete.is_some() && add > delete, "{:#?}", p.ops);
    converge(&d, &o);
    // Not netnode's: left alone, with a warning.
    old.owned = false;
    let mut o2 = bare();
    o2.links.extend([link("eth2", LinkKind::Other), old]);
    let p = plan(&d, &o2);
    assert!(!p
        .ops
        .iter()
        .any(|op| matches!(op, Op::DeleteLink { .. } | Op::AddVlan { .. })));
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("vlan100 exists and is not VLAN 100 on eth2")));
}

#[test]
fn a_flat_interface_gives_the_bridge_its_mac_addresses_and_routes() {
    let d = desired(&NODE.replace("cidr_v6 = \"fd00:1::/64\"", "bridge_interface = \"eth1\""));
    let mut o = bare();
    o.links.push(link("eth1", LinkKind::Other));
    o.addresses.push(addr("eth1", "198.18.7.5/24", false));
    let route = Route {
        link: "eth1".into(),
        destination: "198.18.8.0/24".parse().unwrap(),
        gateway: Some("198.18.7.254".parse().unwrap()),
        metric: 0,
        protocol: 3, // RTPROT_BOOT: `ip route add`
    };
    o.routes.push(route.clone());
    let p = plan(&d, &o);
    let eth1_mac = o.link("eth1").unwrap().mac.unwrap();
    assert!(p.ops.contains(&Op::SetLink {
        name: "eth1".into(),
        change: LinkChange::Master("br100".into())
    }));
    assert!(p.ops.contains(&Op::SetLink {
        name: "br100".into(),
        change: LinkChange::Mac(eth1_mac)
    }));
    let pos = |op: &Op| p.ops.iter().position(|x| x == op).unwrap();
    let gw = pos(&Op::AddAddress {
        link: "br100".into(),
        cidr: "198.18.0.1/24".parse().unwrap(),
        owned: true,
    });
    let moved = pos(&Op::AddAddress {
        link: "br100".into(),
        cidr: "198.18.7.5/24".parse().unwrap(),
        owned: false,
    });
    let del = pos(&Op::DeleteRoute(route.clone()));
    let add = pos(&Op::AddRoute(Route {
        link: "br100".into(),
        ..route
    }));
    assert!(del < moved && gw < moved && moved < add, "{:#?}", p.ops);
    let after = converge(&d, &o);
    assert!(after.global_v4("eth1").is_empty());
    // Teardown gives it all back and removes what netnode made.
    let t = teardown(&d, &after);
    let gone = simulate(&after, &t.ops);
    assert_eq!(gone.global_v4("eth1")[0].0.to_string(), "198.18.7.5/24");
    assert!(gone.routes.iter().any(|r| r.link == "eth1"));
    assert!(gone.link("br100").is_none());
    assert!(gone.nft.is_none());
    assert!(gone.addresses.iter().all(|a| !a.owned));
    assert_eq!(gone.link("eth1").unwrap().master, None);
}

#[test]
fn a_vlan_network_makes_its_vlan_device_and_bridge() {
    let d = desired(&NODE.replace(
        "bridge = \"br100\"",
        "bridge = \"br100\"\nvlan = 100\nvlan_interface = \"eth1\"",
    ));
    let mut o = bare();
    o.links.push(link("eth1", LinkKind::Other));
    let p = plan(&d, &o);
    let vlan = p
        .ops
        .iter()
        .find_map(|op| match op {
            Op::AddVlan {
                name,
                parent,
                id,
                mac,
                master,
                ..
            } => Some((name.clone(), parent.clone(), *id, *mac, master.clone())),
            _ => None,
        })
        .expect("a vlan op");
    assert_eq!(
        (vlan.0.as_str(), vlan.1.as_str(), vlan.2),
        ("vlan100", "eth1", 100)
    );
    assert_eq!(vlan.3 .0[..3], [0xfa, 0x16, 0x3e]);
    assert_eq!(vlan.4, "br100");
    assert!(p.ops.contains(&Op::SetLink {
        name: "br100".into(),
        change: LinkChange::Mac(vlan.3)
    }));
    converge(&d, &o);
    // Without the parent, a warning names it and nothing is made for it.
    let p = plan(&d, &bare());
    assert!(p.warnings.iter().any(|w| w.contains("vlan_interface eth1")));
    assert!(!p.ops.iter().any(|op| matches!(op, Op::AddVlan { .. })));
}

#[test]
fn one_floating_ip_changed_is_one_element_update_and_its_flows_end() {
    let d = desired(NODE);
    let o = converge(&d, &bare());
    let moved = desired(&NODE.replace("fixed = \"198.18.0.10\"", "fixed = \"198.18.0.11\""));
    let p = plan(&moved, &o);
    assert_eq!(p.ops.len(), 2, "{:#?}", p.ops);
    let Op::Nft { script, .. } = &p.ops[0] else {
        panic!("{:?}", p.ops[0]);
    };
    assert!(!script.contains("delete table"), "{script}");
    assert!(script.contains("add element inet netnode floating_dnat { 198.19.1.10 : 198.18.0.11 }"));
    assert_eq!(
        p.ops[1],
        Op::ForgetFlows(vec![(
            "198.19.1.10".parse().unwrap(),
            "198.18.0.10".parse().unwrap()
        )])
    );
    converge(&moved, &o);
    // Disassociated: the rules, the flows and the /32 go.
    let none = desired(&NODE[..NODE.find("[[floating]]").unwrap()]);
    let p = plan(&none, &o);
    let text: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(text[0].contains("delete element inet netnode floating_dnat { 198.19.1.10 }"));
    assert!(text[1].starts_with("conntrack -D"));
    assert_eq!(text[2], "ip address delete 198.19.1.10/32 dev pub0");
    converge(&none, &o);
}

#[test]
fn foreign_things_are_never_touched_and_a_lost_table_comes_back() {
    let d = desired(NODE);
    let mut o = bare();
    o.links.push(link(
        "br9",
        LinkKind::Bridge {
            stp: true,
            forward_delay: 1500,
        },
    ));
    o.addresses.push(addr("br9", "198.18.9.1/24", false));
    let mut o = converge(&d, &o);
    let t = teardown(&d, &o);
    let gone = simulate(&o, &t.ops);
    assert_eq!(gone.link("br9"), o.link("br9"));
    assert!(gone
        .addresses
        .contains(&addr("br9", "198.18.9.1/24", false)));
    assert!(gone
        .addresses
        .contains(&addr("pub0", "198.19.0.1/16", false)));
    assert!(plan(&d, &gone)
        .ops
        .iter()
        .any(|op| matches!(op, Op::AddBridge { .. })));
    // `nft flush ruleset`: only the table is replaced.
    o.nft = None;
    let p = plan(&d, &o);
    assert_eq!(p.ops.len(), 1);
    assert!(matches!(&p.ops[0], Op::Nft { script, .. } if script.contains("delete table")));
    // Someone edited a rule of netnode's table: replaced too.
    let mut edited = converge(&d, &o);
    if let Some(n) = &mut edited.nft {
        *n.chains.get_mut("postrouting").unwrap() -= 1;
    }
    assert_eq!(plan(&d, &edited).ops.len(), 1);
    // Someone added a map to netnode's table: replaced, not patched forever.
    let mut extra = converge(&d, &o);
    if let Some(n) = &mut extra.nft {
        n.maps.insert("extra".into(), Default::default());
    }
    let p = plan(&d, &extra);
    assert!(matches!(&p.ops[..], [Op::Nft { script, .. }] if script.contains("delete table")));
}

#[test]
fn an_existing_bridge_is_set_up_not_recreated() {
    let d = desired(NODE);
    let mut o = bare();
    let mut br = link(
        "br100",
        LinkKind::Bridge {
            stp: true,
            forward_delay: 1500,
        },
    );
    br.up = false;
    o.links.push(br);
    let p = plan(&d, &o);
    assert_eq!(
        p.ops[0],
        Op::SetBridge {
            name: "br100".into()
        }
    );
    assert_eq!(
        p.ops[1],
        Op::SetLink {
            name: "br100".into(),
            change: LinkChange::Up
        }
    );
    let after = converge(&d, &o);
    // Not netnode's bridge: teardown leaves it (and its addresses netnode added go).
    let gone = simulate(&after, &teardown(&d, &after).ops);
    assert!(gone.link("br100").is_some());
    assert!(gone.addresses_of("br100").next().is_none());
}

#[test]
fn a_host_configured_by_ra_keeps_it_when_forwarding_goes_on() {
    let d = desired(NODE);
    let mut o = bare();
    o.links[1].ra_learned = true;
    let p = plan(&d, &o);
    let text: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    let ra = text
        .iter()
        .position(|t| t == "sysctl -w net.ipv6.conf.pub0.accept_ra=2")
        .unwrap();
    let fwd = text
        .iter()
        .position(|t| t == "sysctl -w net.ipv6.conf.all.forwarding=1")
        .unwrap();
    assert!(ra < fwd);
    converge(&d, &o);
}

#[test]
fn a_network_removed_takes_netnode_s_bridge_with_it() {
    let two = format!(
        "{NODE}\n[[network]]\nname = \"second\"\nbridge = \"br101\"\ncidr = \"198.18.1.0/24\"\n"
    );
    let o = converge(&desired(&two), &bare());
    assert!(o.link("br101").is_some());
    let p = plan(&desired(NODE), &o);
    // Its bridge goes, and its range leaves the NAT rules (a new table).
    assert_eq!(p.ops.len(), 2, "{:#?}", p.ops);
    assert_eq!(
        p.ops[0],
        Op::DeleteLink {
            name: "br101".into()
        }
    );
    assert!(matches!(&p.ops[1], Op::Nft { script, .. } if !script.contains("198.18.1.0/24")));
}

#[test]
fn missing_interfaces_are_warnings_naming_them() {
    let d = desired(NODE);
    let o = Observed::default();
    let p = plan(&d, &o);
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("public_interface: pub0")));
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("floating IP 198.19.1.10: interface pub0")));
    // The SNAT rule is in the table all the same.
    assert!(p.ops.iter().any(|op| matches!(op, Op::Nft { script, .. } if script.contains("oifname \"pub0\" snat ip to 198.19.0.1"))));
    converge(&d, &o);
}

#[test]
fn bad_control_keys_are_refused_naming_the_key() {
    let refused = |text: &str, key: &str| {
        let config = ConfigFile::parse(text).unwrap();
        let err = build::from_config(&config, Path::new("node.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    };
    refused(
        &NODE.replace("address = \"198.19.1.10\"", "address = \"198.18.0.99\""),
        "[[floating]] 1 (198.18.0.99): address: inside the fixed range",
    );
    refused(
        &format!(
            "{NODE}\n[[network]]\nname = \"b\"\nbridge = \"br101\"\ncidr = \"198.18.0.128/25\"\n"
        ),
        "cidr: 198.18.0.128/25 overlaps network \"vmnet\"",
    );
    refused(
        &NODE.replace("bridge = \"br100\"", "bridge = \"br100-sixteen-by\""),
        "bridge:",
    );
    refused(
        &NODE.replace(
            "bridge = \"br100\"",
            "bridge = \"br100\"\nvlan = 4095\nvlan_interface = \"eth1\"",
        ),
        "vlan: 4095 is outside 1-4094",
    );
    refused(
        &format!("{NODE}\n[[network]]\nname = \"b\"\nbridge = \"br100\"\ncidr = \"198.18.1.0/24\"\ngateway = \"198.18.1.1\"\n"),
        "gateway: 198.18.1.1 differs from network \"vmnet\"'s 198.18.0.1 on the same bridge br100",
    );
    refused(
        &NODE.replace("fixed = \"198.18.0.10\"", "fixed = \"198.17.0.10\""),
        "fixed: 198.17.0.10 is in no network's cidr",
    );
}

#[test]
fn the_vlan_device_as_netlink_sends_it() {
    let msg = super::kernel::vlan_message(
        "vlan100",
        7,
        100,
        MacAddr([0xfa, 0x16, 0x3e, 1, 2, 3]),
        Some(1400),
    );
    use rtnetlink::packet_core::Emitable;
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    let find = |needle: &[u8]| buf.windows(needle.len()).any(|w| w == needle);
    // IFLA_IFNAME "vlan100", IFLA_LINK 7, IFLA_MTU 1400, IFLA_ADDRESS, IFLA_INFO_KIND "vlan",
    // IFLA_VLAN_ID 100.
    assert!(find(b"vlan100\0"));
    assert!(find(&[8, 0, 5, 0, 7, 0, 0, 0]), "IFLA_LINK");
    assert!(find(&[8, 0, 4, 0, 0x78, 5, 0, 0]), "IFLA_MTU");
    assert!(
        find(&[10, 0, 1, 0, 0xfa, 0x16, 0x3e, 1, 2, 3]),
        "IFLA_ADDRESS"
    );
    assert!(find(b"vlan\0"), "IFLA_INFO_KIND");
    assert!(find(&[6, 0, 1, 0, 100, 0]), "IFLA_VLAN_ID");
}

// Found by the control_plan fuzz target: each of these once needed a second plan.

#[test]
fn a_floating_ip_on_a_bridge_survives_the_gateway_reorder() {
    let d = desired(&NODE.replace(
        "fixed = \"198.18.0.10\"",
        "fixed = \"198.18.0.10\"\ninterface = \"br100\"",
    ));
    let mut o = bare();
    o.links.push(link(
        "br100",
        LinkKind::Bridge {
            stp: false,
            forward_delay: 0,
        },
    ));
    o.addresses.push(addr("br100", "198.18.0.200/24", false));
    o.addresses.push(addr("br100", "198.19.1.10/32", true));
    let after = converge(&d, &o);
    assert!(after
        .addresses
        .contains(&addr("br100", "198.19.1.10/32", true)));
}

#[test]
fn a_floating_ip_on_a_vlan_device_made_in_the_same_plan() {
    let text = NODE
        .replace(
            "bridge = \"br100\"",
            "bridge = \"br100\"\nvlan = 100\nvlan_interface = \"eth1\"",
        )
        .replace(
            "fixed = \"198.18.0.10\"",
            "fixed = \"198.18.0.10\"\ninterface = \"vlan100\"",
        );
    let d = desired(&text);
    let mut o = bare();
    o.links.push(link("eth1", LinkKind::Other));
    converge(&d, &o);
}

#[test]
fn a_vlan_left_by_a_deleted_parent_frees_its_name() {
    let d = desired(NODE);
    let mut o = bare();
    let mut old = link(
        "br9",
        LinkKind::Bridge {
            stp: false,
            forward_delay: 0,
        },
    );
    old.owned = true;
    let mut v = link(
        "br100",
        LinkKind::Vlan {
            parent: Some("br9".into()),
            id: 9,
        },
    );
    v.owned = true;
    o.links.extend([old, v]);
    let p = plan(&d, &o);
    assert_eq!(p.ops[0], Op::DeleteLink { name: "br9".into() });
    assert!(matches!(&p.ops[1], Op::AddBridge { name, .. } if name == "br100"));
    converge(&d, &o);
}

#[test]
fn uplinks_that_collide_are_refused() {
    let two = |extra: &str| {
        format!("{NODE}\n[[network]]\nname = \"b\"\nbridge = \"br101\"\ncidr = \"198.18.1.0/24\"\n{extra}")
    };
    for (text, msg) in [
        (
            two("bridge_interface = \"br100\"\n"),
            "bridge_interface: br100 is the bridge of network \"vmnet\"",
        ),
        (
            two("vlan = 100\nvlan_interface = \"eth1\"\n")
                .replace("cidr_v6", "vlan = 100\nvlan_interface = \"eth1\"\ncidr_v6"),
            "vlan100 is already the uplink of bridge br100",
        ),
    ] {
        let config = ConfigFile::parse(&text).unwrap();
        let err = build::from_config(&config, Path::new("node.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(msg), "{msg}: {err}");
    }
}

#[test]
fn a_shared_dhcp_address_keeps_dhcp_and_its_arp_off_the_uplink() {
    let shared = NODE.replace(
        "cidr_v6 = \"fd00:1::/64\"",
        "bridge_interface = \"eth1\"\nshare_dhcp_address = true",
    );
    let d = desired(&shared);
    let spec = d.isolation.as_ref().expect("an isolation table");
    assert_eq!(spec.table, super::isolate::TABLE);
    assert!(spec.sets["uplinks"].elements.contains("eth1"));
    assert!(spec.sets["addresses"].elements.contains("198.18.0.1"));
    let mut o = bare();
    o.links.push(link("eth1", LinkKind::Other));
    let p = plan(&d, &o);
    assert!(p
        .ops
        .iter()
        .any(|op| matches!(op, Op::Table { table, .. } if table == super::isolate::TABLE)));
    let after = converge(&d, &o);
    // Without the shared address the table goes; without an uplink there is none to guard.
    let plain = desired(&NODE.replace("cidr_v6 = \"fd00:1::/64\"", "bridge_interface = \"eth1\""));
    assert!(plain.isolation.is_none());
    let p = plan(&plain, &after);
    assert!(p.ops.iter().any(
        |op| matches!(op, Op::Table { table, result: None, .. } if table == super::isolate::TABLE)
    ));
    assert!(
        desired(&NODE.replace("cidr_v6 = \"fd00:1::/64\"", "share_dhcp_address = true"))
            .isolation
            .is_none()
    );
}
