//! The manager's commands with hostile arguments: each line of the input is a command and its
//! arguments (labels, ranges, addresses, names as text). Any sequence gives results or clear
//! refusals, never a panic, and keeps the invariants: no address or MAC given twice, nothing
//! reserved and allocated.
#![no_main]
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use netnode::manager::network::CreateNetwork;
use netnode::manager::server::ServerCreate;
use netnode::manager::secgroup::RuleCreate;
use netnode::manager::{Manager, Settings};
use netnode::table::firewall::RuleConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut m = Manager::in_memory(Settings::with_database(PathBuf::from(":memory:")))
        .expect("an in-memory database");
    for line in text.lines().take(64) {
        let mut w = line.split(' ');
        let cmd = w.next().unwrap_or_default();
        let a = w.next().unwrap_or_default().to_string();
        let b = w.next().unwrap_or_default().to_string();
        let c = w.next().map(str::to_string);
        let _ = match cmd {
            "net" => m
                .network_create(&CreateNetwork {
                    label: Some(a),
                    fixed_range_v4: Some(b),
                    fixed_cidr: c,
                    fixed_range_v6: w.next().map(str::to_string),
                    vlan: w.next().and_then(|v| v.parse().ok()),
                    num_networks: w.next().and_then(|v| v.parse().ok()),
                    network_size: w.next().and_then(|v| v.parse().ok()),
                    ..CreateNetwork::default()
                })
                .map(drop),
            "del" => m.network_delete(&a).map(drop),
            "srv" => m
                .server_create(&ServerCreate {
                    name: a,
                    project: b,
                    networks: c.into_iter().collect(),
                    count: w.next().and_then(|v| v.parse().ok()).unwrap_or(1).min(64),
                    security_groups: w.map(str::to_string).collect(),
                    host: None,
                })
                .map(drop),
            "rm" => m.server_delete(&a).map(drop),
            "res" => match a.parse() {
                Ok(ip) => m.fixed_reserve(ip),
                Err(_) => Ok(()),
            },
            "fip" => m.floating_create(None, &a, None).map(drop),
            "fdel" => m.floating_delete(&a).map(drop),
            "alloc" => m.floating_allocate(None, &a).map(drop),
            "assoc" => match a.parse() {
                Ok(ip) => m.floating_associate(ip, &b, None).map(drop),
                Err(_) => Ok(()),
            },
            "scrub" => m.project_scrub(&a).map(drop),
            "sg" => m.secgroup_create(&a, &b, "").map(drop),
            "sgdel" => m.secgroup_delete(&a, c.as_deref()).map(drop),
            "rule" => m
                .rule_create(&RuleCreate {
                    group: a,
                    project: Some(b).filter(|p| !p.is_empty()),
                    rule: RuleConfig {
                        direction: c,
                        ethertype: w.next().map(str::to_string),
                        protocol: w.next().map(str::to_string),
                        dst_port: w.next().map(str::to_string),
                        remote_ip: w.next().map(str::to_string),
                        remote_group: w.next().map(str::to_string),
                    },
                })
                .map(drop),
            "ruledel" => m.rule_delete(a.parse().unwrap_or(0)).map(drop),
            _ => Ok(()),
        };
    }
    let servers = m.server_list().expect("listing");
    let mut addrs: Vec<_> = servers.iter().flat_map(|s| s.addresses.iter().map(|n| n.address)).collect();
    let n = addrs.len();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "an address given twice");
    // What the daemon reads always builds: every stored rule parses, every remote group exists.
    let served = m.served().expect("reading the served state");
    let mut config = netnode::table::config::ConfigFile::default();
    config.security_group = served.security_groups.clone();
    let instances = Vec::new();
    netnode::table::firewall::settings(
        Default::default(),
        &config.security_group,
        &instances,
        &[],
        "db",
        &mut Vec::new(),
    )
    .expect("the stored groups build");
    for f in m.fixed_list(None).expect("listing") {
        assert!(!(f.reserved && f.allocated), "{} reserved and allocated", f.address);
    }
});
