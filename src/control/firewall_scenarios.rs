//! The firewall planned without a kernel: tables from TOML as the manager exports them, plans
//! checked op by op, [`simulate`] standing in for the kernel so that what a plan leaves needs
//! no further plan, and [`allows`] judging flows as the tables would.

use std::net::IpAddr;
use std::path::Path;

use super::firewall::{allows, BRIDGE_TABLE, GROUP_TABLE};
use super::plan::{plan, simulate, Op};
use super::state::{Desired, Observed};
use crate::table::{build, config::ConfigFile, Table};

/// `n` instances (vm-1 ... vm-n, ports tap1 ...) in project p; `groups[i]` are vm-(i+1)'s
/// groups; `rules` the `[[security_group]]` tables.
fn config(n: usize, groups: &[&str], rules: &str) -> String {
    let mut s = String::from(
        "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\n\
         gateway = \"198.18.0.1\"\ncidr_v6 = \"fd00:1::/64\"\n",
    );
    for i in 1..=n {
        s.push_str(&format!(
            "[[network.host]]\nmac = \"fa:16:3e:00:00:{i:02x}\"\nip = \"198.18.0.{}\"\n",
            i + 2
        ));
    }
    s.push_str("[control]\nenabled = true\n");
    s.push_str(rules);
    for i in 1..=n {
        s.push_str(&format!(
            "[[instance]]\nuuid = \"u{i}\"\nname = \"vm-{i}\"\nmac = \"fa:16:3e:00:00:{i:02x}\"\n\
             project_id = \"p\"\nports = [\"tap{i}\"]\nsecurity_groups = [{}]\n",
            groups.get(i - 1).copied().unwrap_or("\"default\"")
        ));
    }
    s
}

const DEFAULT: &str = "[[security_group]]\nname = \"default\"\nproject = \"p\"\n\
    [[security_group.rule]]\ndirection = \"egress\"\n\
    [[security_group.rule]]\ndirection = \"egress\"\nethertype = \"IPv6\"\n";

const SSH: &str = "[[security_group.rule]]\nprotocol = \"tcp\"\ndst_port = \"22:22\"\n";

fn table(text: &str) -> Table {
    build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("node.toml")).unwrap()
}

/// Why a config's table is refused.
fn refusal(text: &str) -> String {
    build::from_config(&ConfigFile::parse(text).unwrap(), Path::new("node.toml"))
        .unwrap_err()
        .to_string()
}

/// Plans from `o`, applies in the model, and checks that nothing more is planned.
fn converge(text: &str, o: &Observed) -> (Vec<Op>, Observed) {
    let d = Desired::from_table(&table(text));
    let p = plan(&d, o);
    let after = simulate(o, &p.ops);
    let again = plan(&d, &after);
    assert!(again.is_empty(), "a second plan: {:#?}", again.ops);
    (p.ops, after)
}

/// The firewall's ops: (table, script), and whether flows are judged.
fn firewall_ops(ops: &[Op]) -> (Vec<(String, String)>, bool) {
    let tables = ops
        .iter()
        .filter_map(|op| match op {
            Op::Table { table, script, .. } => Some((table.clone(), script.clone())),
            _ => None,
        })
        .collect();
    (
        tables,
        ops.iter().any(|op| matches!(op, Op::ForgetForbidden(_))),
    )
}

#[test]
fn from_nothing_both_tables_then_nothing() {
    let text = config(2, &[], &format!("{DEFAULT}{SSH}"));
    let (ops, after) = converge(&text, &Observed::default());
    let (tables, judged) = firewall_ops(&ops);
    assert_eq!(tables.len(), 2);
    let bridge = &tables.iter().find(|(t, _)| t == BRIDGE_TABLE).unwrap().1;
    for e in [
        "\"tap1\" . fa:16:3e:00:00:01",
        "\"tap2\" . fa:16:3e:00:00:02 . 198.18.0.4",
        "\"tap1\" . fa:16:3e:00:00:01 . 0.0.0.0",
        "\"tap1\" . fe80::f816:3eff:fe00:1",
        "\"tap1\" : \"spoof_tap1\"",
        "counter name iifname map @dhcp_guard drop",
        "icmpv6 type nd-router-advert counter name iifname map @ra_guard drop",
    ] {
        assert!(bridge.contains(e), "{e} not in\n{bridge}");
    }
    let groups = &tables.iter().find(|(t, _)| t == GROUP_TABLE).unwrap().1;
    for e in [
        "6 . 22 . 0.0.0.0/0",
        "0-255 . 0-65535 . ::/0",
        "ct state established,related accept",
    ] {
        assert!(groups.contains(e), "{e} not in\n{groups}");
    }
    assert!(judged, "a new group table judges the flows already open");
    assert_eq!(after.tables.len(), 2);
    // Another pass with the same state does nothing.
    let d = Desired::from_table(&table(&text));
    assert!(plan(&d, &after).is_empty());
}

#[test]
fn an_instance_or_a_rule_more_is_a_few_elements() {
    let rules = format!("{DEFAULT}{SSH}");
    let (_, before) = converge(&config(2, &[], &rules), &Observed::default());
    // A third instance in the same group: elements only, in both tables.
    let (ops, after) = converge(&config(3, &[], &rules), &before);
    let (tables, _) = firewall_ops(&ops);
    for (t, script) in &tables {
        assert!(!script.contains("delete table"), "{t} replaced:\n{script}");
        assert!(
            script.contains("tap3") || script.contains("198.18.0.5"),
            "{script}"
        );
        assert!(
            !script.contains("tap1") && !script.contains("198.18.0.3 "),
            "{script}"
        );
    }
    // A rule more: one element per instance (in its address's shard), and nothing to end.
    let more = format!("{rules}[[security_group.rule]]\nprotocol = \"icmp\"\n");
    let (ops, after) = converge(&config(3, &[], &more), &after);
    let (tables, judged) = firewall_ops(&ops);
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(tables[0].0, GROUP_TABLE);
    assert_eq!(
        tables[0].1,
        "add element inet netnode_sg in4_3 { 198.18.0.3 . 1 . 0-65535 . 0.0.0.0/0 }\n\
         add element inet netnode_sg in4_4 { 198.18.0.4 . 1 . 0-65535 . 0.0.0.0/0 }\n\
         add element inet netnode_sg in4_5 { 198.18.0.5 . 1 . 0-65535 . 0.0.0.0/0 }\n"
    );
    assert!(!judged, "a rule more takes nothing away");
    let Some(Op::Table { elements, .. }) = ops.iter().find(|o| matches!(o, Op::Table { .. }))
    else {
        unreachable!()
    };
    assert_eq!(elements.len(), 3, "sent over netlink, not through nft");
    // The rule removed again: a delete, and the flows judged (so an open ping ends).
    let (ops, _) = converge(&config(3, &[], &rules), &after);
    let (tables, judged) = firewall_ops(&ops);
    assert!(tables[0].1.starts_with("delete element"), "{tables:?}");
    assert!(judged);
}

#[test]
fn a_new_group_is_elements_too() {
    let web = "[[security_group]]\nname = \"web\"\nproject = \"p\"\n\
               [[security_group.rule]]\nprotocol = \"tcp\"\ndst_port = \"80\"\n";
    let rules = format!("{DEFAULT}{SSH}");
    let (_, before) = converge(&config(2, &[], &rules), &Observed::default());
    let (ops, after) = converge(
        &config(
            3,
            &["\"default\"", "\"default\"", "\"default\", \"web\""],
            &format!("{rules}{web}"),
        ),
        &before,
    );
    let (tables, _) = firewall_ops(&ops);
    let groups = &tables.iter().find(|(t, _)| t == GROUP_TABLE).unwrap().1;
    assert!(!groups.contains("delete table"), "{groups}");
    assert!(
        groups.contains("198.18.0.5 . 6 . 80 . 0.0.0.0/0"),
        "{groups}"
    );
    assert!(
        !groups.contains("198.18.0.3"),
        "another instance's elements moved: {groups}"
    );
    // The group goes again with its instance: its elements go.
    let (ops, _) = converge(&config(2, &[], &rules), &after);
    let (tables, _) = firewall_ops(&ops);
    let groups = &tables.iter().find(|(t, _)| t == GROUP_TABLE).unwrap().1;
    assert!(groups.starts_with("delete element"), "{groups}");
    assert!(!groups.contains("delete table"), "{groups}");
}

#[test]
fn noop_removes_both_tables_and_a_tampered_table_is_replaced() {
    let text = config(2, &[], DEFAULT);
    let (_, mut after) = converge(&text, &Observed::default());
    // Someone edits a base chain: the marker no longer matches, the table is replaced.
    if let Some(t) = after.tables.get_mut(GROUP_TABLE) {
        t.marker = None;
    }
    let (ops, after) = converge(&text, &after);
    let (tables, _) = firewall_ops(&ops);
    assert_eq!(tables.len(), 1);
    assert!(tables[0].1.contains("delete table inet netnode_sg"));
    let noop = text.replace(
        "enabled = true\n",
        "enabled = true\nfirewall_driver = \"noop\"\n",
    );
    let (ops, after) = converge(&noop, &after);
    let (tables, _) = firewall_ops(&ops);
    assert_eq!(tables.len(), 2);
    assert!(tables.iter().all(|(_, s)| s.starts_with("delete table")));
    assert!(after.tables.is_empty());
}

#[test]
fn flows_are_judged_as_the_tables_judge_first_packets() {
    let bastion = "[[security_group]]\nname = \"bastion\"\nproject = \"p\"\n\
                   [[security_group]]\nname = \"web\"\nproject = \"p\"\n\
                   [[security_group.rule]]\nprotocol = \"tcp\"\ndst_port = \"22\"\nremote_group = \"bastion\"\n\
                   [[security_group.rule]]\nprotocol = \"udp\"\ndst_port = \"1000:2000\"\nremote_ip = \"198.19.0.0/16\"\n";
    let t = table(&config(
        3,
        &["\"default\", \"bastion\"", "\"default\"", "\"web\""],
        &format!("{DEFAULT}{bastion}"),
    ));
    let s = &t.firewall;
    let ip = |x: &str| x.parse::<IpAddr>().unwrap();
    let (vm1, vm2, vm3) = (ip("198.18.0.3"), ip("198.18.0.4"), ip("198.18.0.5"));
    assert!(allows(s, 6, vm1, vm3, 22), "bastion member to web");
    assert!(!allows(s, 6, vm2, vm3, 22), "non-member to web");
    assert!(!allows(s, 6, vm1, vm3, 23), "another port");
    assert!(
        allows(s, 17, ip("198.19.7.7"), vm3, 1500),
        "remote CIDR in range"
    );
    assert!(
        !allows(s, 17, ip("198.19.7.7"), vm3, 2001),
        "out of the port range"
    );
    assert!(
        !allows(s, 17, ip("198.20.0.1"), vm3, 1500),
        "outside the CIDR"
    );
    // vm-3 is only in web, which has no egress rule: it cannot open flows out.
    assert!(!allows(s, 6, vm3, ip("198.19.0.1"), 443));
    assert!(
        allows(s, 6, vm1, ip("198.19.0.1"), 443),
        "default allows egress"
    );
    assert!(
        allows(s, 17, ip("198.18.0.1"), vm3, 68),
        "DHCP replies always"
    );
    assert!(!allows(s, 1, vm2, vm1, 0), "no ICMP rule in default");
}

#[test]
fn an_unknown_group_closes_the_instance_and_a_bad_rule_refuses_the_table() {
    let t = table(&config(1, &["\"nosuch\""], DEFAULT));
    assert!(t
        .problems
        .iter()
        .any(|p| p.reason.contains("\"nosuch\" does not exist")));
    assert!(t.firewall.ports[0].groups.is_empty());
    let bad = format!("{DEFAULT}{}", SSH.replace("22:22", "30:20"));
    let e = refusal(&config(1, &[], &bad));
    assert!(e.contains("rule 3: dst-port \"30:20\": reversed"), "{e}");
    // The config's group and the manager's of one name meet: the first is kept, with a problem.
    let t = table(&config(1, &[], &format!("{DEFAULT}{DEFAULT}")));
    assert_eq!(t.firewall.groups.len(), 1);
    assert!(t
        .problems
        .iter()
        .any(|p| p.reason.contains("already has a group of that name")));
    // A port name that would break out of nft's quotes is refused.
    let quoted = config(1, &[], DEFAULT).replace("\"tap1\"", "\"ta\\\"p\"");
    let e = refusal(&quoted);
    assert!(e.contains("only letters, digits"), "{e}");
    let bad = format!("{DEFAULT}[[security_group.rule]]\nremote_group = \"ghost\"\n");
    let e = refusal(&config(1, &[], &bad));
    assert!(e.contains("remote_group \"ghost\": no such group"), "{e}");
}
