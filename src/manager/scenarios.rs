//! The manager's rules, one test each, on an in-memory database; and a property test: any
//! sequence of commands keeps the invariants.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use proptest::prelude::*;

use super::network::CreateNetwork;
use super::server::ServerCreate;
use super::{Manager, ManagerError, Settings};
use crate::table::config::ManagerKind;

fn settings(kind: ManagerKind) -> Settings {
    let mut s = Settings::with_database(PathBuf::from(":memory:"));
    s.kind = kind;
    s
}

fn manager() -> Manager {
    Manager::in_memory(settings(ManagerKind::Flatdhcp)).unwrap()
}

fn net(label: &str, range: &str) -> CreateNetwork {
    CreateNetwork {
        label: Some(label.into()),
        fixed_range_v4: Some(range.into()),
        ..Default::default()
    }
}

fn server(name: &str, project: &str) -> ServerCreate {
    ServerCreate {
        name: name.into(),
        project: project.into(),
        networks: Vec::new(),
        count: 1,
        security_groups: Vec::new(),
        host: None,
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn refused<T: std::fmt::Debug>(r: super::Result<T>) -> String {
    match r {
        Err(ManagerError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Everything a refusal must leave as it was.
fn snapshot(m: &mut Manager) -> String {
    format!(
        "{:?}{:?}{:?}{:?}{}",
        m.network_list().unwrap(),
        m.server_list().unwrap(),
        m.floating_list(None).unwrap(),
        m.fixed_list(None).unwrap(),
        m.generation().unwrap()
    )
}

#[test]
fn the_seeds_network_commands_work_as_written() {
    let mut m = manager();
    let mut vmnet = net("vmnet", "198.18.0.0/16");
    vmnet.fixed_cidr = Some("198.18.20.0/24".into());
    vmnet.bridge = Some("br100".into());
    let n = m.network_create(&vmnet).unwrap();
    assert_eq!(n[0].bridge, "br100");
    // Only the fixed cidr is allocated from.
    let s = m.server_create(&server("a", "p")).unwrap();
    assert!("198.18.20.0/24"
        .parse::<ipnetwork::Ipv4Network>()
        .unwrap()
        .contains(s[0].addresses[0].address));
    let mut m = manager();
    let mut public = net("public", "198.18.1.0/24");
    public.vlan = Some(100);
    public.vpn = Some(1000);
    public.fixed_range_v6 = Some("fd00:1::/48".into());
    let n = m.network_create(&public).unwrap();
    assert_eq!(n[0].vlan, Some(100));
    assert_eq!(n[0].vpn_private_address, Some(ip("198.18.1.2")));
    assert_eq!(n[0].cidr_v6.unwrap().to_string(), "fd00:1::/64");
    assert_eq!(n[0].bridge, "br100");
    let mut first = net("first-net", "198.18.2.0/24");
    first.project_id = Some("P".into());
    assert_eq!(
        m.network_create(&first).unwrap()[0].project_id.as_deref(),
        Some("P")
    );
}

#[test]
fn network_gateway_broadcast_vpn_and_dhcp_server_are_never_allocated() {
    let mut m = manager();
    let mut n = net("small", "198.18.5.0/29");
    n.vpn = Some(1000);
    n.dhcp_server = Some(ip("198.18.5.6"));
    m.network_create(&n).unwrap();
    let mut given = Vec::new();
    while let Ok(s) = m.server_create(&server(&format!("s{}", given.len()), "p")) {
        given.push(s[0].addresses[0].address);
    }
    // .0 network, .1 gateway, .2 VPN, .6 DHCP server, .7 broadcast: .3, .4, .5 remain.
    given.sort();
    assert_eq!(
        given,
        [ip("198.18.5.3"), ip("198.18.5.4"), ip("198.18.5.5")]
    );
    let before = snapshot(&mut m);
    assert!(refused(m.server_create(&server("full", "p"))).contains("no free fixed IP"));
    assert_eq!(snapshot(&mut m), before, "a refusal changes nothing");
}

#[test]
fn freed_addresses_are_reused_last() {
    let mut m = manager();
    m.network_create(&net("n", "198.18.6.0/24")).unwrap();
    let a = m.server_create(&server("a", "p")).unwrap()[0].addresses[0].address;
    m.server_delete("a").unwrap();
    let b = m.server_create(&server("b", "p")).unwrap()[0].addresses[0].address;
    assert_ne!(a, b, "the freed address waits behind the never-used ones");
}

#[test]
fn reserve_refuses_outside_every_network_and_in_use_and_the_networks_own() {
    let mut m = manager();
    m.network_create(&net("n", "198.18.7.0/24")).unwrap();
    assert!(refused(m.fixed_reserve(ip("198.20.0.1"))).contains("198.20.0.1"));
    let s = m.server_create(&server("a", "p")).unwrap();
    let used = s[0].addresses[0].address;
    assert!(refused(m.fixed_reserve(used)).contains("in use"));
    assert!(refused(m.fixed_unreserve(ip("198.18.7.1"))).contains("gateway"));
    m.fixed_reserve(ip("198.18.7.3")).unwrap();
    let next = m.server_create(&server("b", "p")).unwrap()[0].addresses[0].address;
    assert_ne!(next, ip("198.18.7.3"));
    m.fixed_unreserve(ip("198.18.7.3")).unwrap();
}

#[test]
fn an_associated_network_is_deleted_only_after_project_scrub() {
    let mut m = manager();
    let mut n = net("first-net", "198.18.2.0/24");
    n.project_id = Some("P".into());
    m.network_create(&n).unwrap();
    let before = snapshot(&mut m);
    assert!(refused(m.network_delete("first-net")).contains("project scrub"));
    assert_eq!(snapshot(&mut m), before);
    assert_eq!(m.project_scrub("P").unwrap(), ["first-net"]);
    m.network_delete("first-net").unwrap();
    assert!(m.network_list().unwrap().is_empty());
}

#[test]
fn a_network_in_use_by_servers_is_not_deleted() {
    let mut m = manager();
    m.network_create(&net("n", "198.18.8.0/24")).unwrap();
    m.server_create(&server("a", "p")).unwrap();
    assert!(refused(m.network_delete("n")).contains("in use"));
}

#[test]
fn overlapping_ranges_labels_and_vlans_are_refused() {
    let mut m = manager();
    m.network_create(&net("a", "198.18.0.0/16")).unwrap();
    assert!(refused(m.network_create(&net("b", "198.18.1.0/24"))).contains("conflicts"));
    assert!(refused(m.network_create(&net("a", "198.19.0.0/24"))).contains("labelled"));
    let mut v = net("v1", "198.19.1.0/24");
    v.vlan = Some(200);
    m.network_create(&v).unwrap();
    let mut v2 = net("v2", "198.19.2.0/24");
    v2.vlan = Some(200);
    assert!(refused(m.network_create(&v2)).contains("VLAN 200"));
    v2.vlan = Some(4095);
    assert!(matches!(m.network_create(&v2), Err(ManagerError::Invalid(e)) if e.contains("4094")));
}

#[test]
fn the_vlan_manager_numbers_vlans_and_vpn_ports_and_gives_each_project_a_network() {
    let mut m = Manager::in_memory(settings(ManagerKind::Vlan)).unwrap();
    let mut n = net("private", "198.18.0.0/22");
    n.num_networks = Some(4);
    n.network_size = Some(256);
    let made = m.network_create(&n).unwrap();
    let vlans: Vec<_> = made.iter().map(|n| n.vlan.unwrap()).collect();
    assert_eq!(vlans, [100, 101, 102, 103]);
    assert_eq!(made[3].label, "private_4");
    assert_eq!(made[0].bridge, "br100");
    assert_eq!(made[1].vpn_public_port, Some(1001));
    assert_eq!(made[0].dhcp_start, ip("198.18.0.3"));
    let a = m.server_create(&server("a", "alpha")).unwrap();
    let b = m.server_create(&server("b", "beta")).unwrap();
    assert_ne!(a[0].addresses[0].network, b[0].addresses[0].network);
    let a2 = m.server_create(&server("a2", "alpha")).unwrap();
    assert_eq!(a[0].addresses[0].network, a2[0].addresses[0].network);
    // Named networks of another project are refused.
    let mut c = server("c", "gamma");
    c.networks = vec![a[0].addresses[0].network.clone()];
    assert!(refused(m.server_create(&c)).contains("belongs to project alpha"));
    // numbering beyond 4094 is refused.
    let mut m = Manager::in_memory(settings(ManagerKind::Vlan)).unwrap();
    let mut n = net("x", "198.18.0.0/24");
    n.vlan_start = Some(4094);
    m.network_create(&n).unwrap();
    let mut n = net("y", "198.18.1.0/24");
    n.vlan_start = Some(4095);
    assert!(m.network_create(&n).is_err());
}

#[test]
fn multinic_gives_one_interface_per_network_with_unique_openstack_macs() {
    let mut m = manager();
    m.network_create(&net("private", "198.18.1.0/24")).unwrap();
    m.network_create(&net("network2", "198.18.2.0/24")).unwrap();
    let s = m.server_create(&server("vm", "p")).unwrap();
    assert_eq!(s[0].addresses.len(), 2);
    assert!(s[0]
        .addresses
        .iter()
        .all(|n| n.mac.starts_with("fa:16:3e:")));
    assert_ne!(s[0].addresses[0].mac, s[0].addresses[1].mac);
    assert_eq!(
        s[0].networks_column(),
        format!(
            "private={}; network2={}",
            s[0].addresses[0].address, s[0].addresses[1].address
        )
    );
    let many = m
        .server_create(&ServerCreate {
            count: 200,
            ..server("many", "p")
        })
        .unwrap();
    let mut macs: Vec<_> = many
        .iter()
        .flat_map(|s| s.addresses.iter().map(|n| n.mac.clone()))
        .collect();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 400);
    assert!(refused(m.server_create(&server("vm", "p"))).contains("exists"));
}

#[test]
fn floating_ips_follow_nova() {
    let mut m = manager();
    m.network_create(&net("n", "198.18.9.0/24")).unwrap();
    assert_eq!(
        m.floating_create(Some("nova"), "198.19.26.170/31", None)
            .unwrap(),
        2
    );
    assert!(refused(m.floating_create(Some("nova"), "198.19.26.171", None)).contains("already"));
    assert!(refused(m.floating_create(None, "198.18.9.0/30", None)).contains("overlaps network"));
    let s = m.server_create(&server("vm", "p")).unwrap();
    // Not allocated: refused.
    assert!(refused(m.floating_associate(ip("198.19.26.170"), "vm", None)).contains("allocate"));
    let f = m.floating_allocate(None, "p").unwrap();
    assert_eq!(f.address, ip("198.19.26.170"));
    let f = m.floating_associate(f.address, "vm", None).unwrap();
    assert_eq!(f.fixed_ip, Some(s[0].addresses[0].address));
    let before = snapshot(&mut m);
    assert!(refused(m.floating_deallocate(f.address)).contains("associated"));
    assert!(refused(m.floating_delete("198.19.26.170/31")).contains("associated"));
    assert_eq!(snapshot(&mut m), before);
    m.floating_disassociate(f.address).unwrap();
    assert!(refused(m.floating_disassociate(f.address)).contains("not associated"));
    m.floating_deallocate(f.address).unwrap();
    assert_eq!(m.floating_delete("198.19.26.170/31").unwrap(), 2);
    // The flat manager has none.
    let mut flat = Manager::in_memory(settings(ManagerKind::Flat)).unwrap();
    assert!(refused(flat.floating_create(None, "198.19.0.1", None)).contains("flat"));
}

#[test]
fn auto_assigned_floating_ips_come_and_go_with_the_server_and_an_empty_pool_fails_the_boot() {
    let mut s = settings(ManagerKind::Flatdhcp);
    s.auto_assign_floating_ip = true;
    let mut m = Manager::in_memory(s).unwrap();
    m.network_create(&net("n", "198.18.10.0/24")).unwrap();
    m.floating_create(None, "198.19.0.9", None).unwrap();
    let a = m.server_create(&server("a", "p")).unwrap();
    assert_eq!(a[0].floating_ips, [ip("198.19.0.9")]);
    let before = snapshot(&mut m);
    let e = refused(m.server_create(&server("b", "p")));
    assert!(
        e.contains("no free address") && e.contains("auto_assign"),
        "{e}"
    );
    assert_eq!(
        snapshot(&mut m),
        before,
        "the failed boot left nothing behind"
    );
    let d = m.server_delete("a").unwrap();
    assert_eq!(d.released_floating, [ip("198.19.0.9")]);
    assert!(m.floating_list(None).unwrap()[0].project_id.is_none());
    m.server_create(&server("b", "p")).unwrap();
}

#[test]
fn lease_events_keep_the_leased_flags_and_a_leased_address_is_not_reused() {
    use super::leases::LeaseEvent;
    let mut s = settings(ManagerKind::Flatdhcp);
    s.force_dhcp_release = false;
    let mut m = Manager::in_memory(s).unwrap();
    m.network_create(&net("n", "198.18.11.0/29")).unwrap();
    let a = m.server_create(&server("a", "p")).unwrap();
    let nic = &a[0].addresses[0];
    let mac = nic.mac.parse().unwrap();
    let gen = m.generation().unwrap();
    let applied = m
        .lease_events(&[LeaseEvent {
            leased: true,
            ip: nic.address,
            mac,
        }])
        .unwrap();
    assert_eq!(applied.changed, 1);
    assert_eq!(
        m.generation().unwrap(),
        gen,
        "lease flags are not served state"
    );
    let stranger = m
        .lease_events(&[LeaseEvent {
            leased: true,
            ip: nic.address,
            mac: "fa:16:3e:00:00:01".parse().unwrap(),
        }])
        .unwrap();
    assert_eq!(stranger.strangers, 1);
    m.server_delete("a").unwrap();
    // Without force_dhcp_release the address stays leased, so it is not given out.
    let mut given = Vec::new();
    while let Ok(s) = m.server_create(&server(&format!("s{}", given.len()), "p")) {
        given.push(s[0].addresses[0].address);
    }
    assert!(!given.contains(&nic.address));
    m.lease_events(&[LeaseEvent {
        leased: false,
        ip: nic.address,
        mac,
    }])
    .unwrap();
    let next = m.server_create(&server("after", "p")).unwrap();
    assert_eq!(next[0].addresses[0].address, nic.address);
}

#[test]
fn served_state_becomes_config_sections() {
    let mut s = settings(ManagerKind::Flatdhcp);
    s.use_single_default_gateway = true;
    s.vlan_interface = Some("eth1".into());
    let mut m = Manager::in_memory(s.clone()).unwrap();
    let mut a = net("private", "198.18.1.0/24");
    a.vlan = Some(100);
    a.dns1 = Some(ip("198.18.1.1"));
    m.network_create(&a).unwrap();
    let mut b = net("network2", "198.18.2.0/24");
    b.bridge = Some("br100".into());
    assert!(refused(m.network_create(&b)).contains("carries network \"private\""));
    b.bridge = None;
    assert_eq!(
        m.network_create(&b).unwrap()[0].bridge,
        "br101",
        "a bridge of its own"
    );
    m.floating_create(None, "198.19.0.5", None).unwrap();
    let vm = m.server_create(&server("vm", "p")).unwrap();
    m.floating_allocate(None, "p").unwrap();
    m.floating_associate(ip("198.19.0.5"), "vm", None).unwrap();
    let served = m.served().unwrap();
    let nets = served.network_configs(&s);
    assert_eq!(nets[0].vlan, Some(100));
    assert_eq!(nets[0].vlan_interface.as_deref(), Some("eth1"));
    assert_eq!(nets[0].host[0].hostname.as_deref(), Some("vm"));
    assert!(
        nets[0].host[0].tags.is_empty(),
        "the first NIC keeps its default route"
    );
    assert_eq!(nets[1].host[0].tags, [super::export::NO_DEFAULT_ROUTE_TAG]);
    assert_eq!(nets[0].domain.as_deref(), Some("novalocal"));
    let inst = served.instance_configs();
    assert_eq!(
        inst[0].mac.as_deref(),
        Some(vm[0].addresses[0].mac.as_str())
    );
    assert_eq!(inst[0].macs.len(), 1);
    assert_eq!(inst[0].floating_ips, [ip("198.19.0.5")]);
    let fl = served.floating_configs();
    assert_eq!(fl[0].fixed, vm[0].addresses[0].address);
    // The whole thing builds as a table.
    let mut config = crate::table::config::ConfigFile {
        network: nets,
        instance: inst,
        ..Default::default()
    };
    config.nat = Some(crate::table::control::NatConfig {
        public_interface: Some("eth0".into()),
        ..Default::default()
    });
    config.floating = fl;
    let table = crate::table::build::from_config(&config, std::path::Path::new("test")).unwrap();
    assert_eq!(table.networks.len(), 2);
    assert_eq!(table.instances.len(), 1);
    assert_eq!(table.control.floating.len(), 1);
    let nic2 = &table.networks[1].bindings()[0];
    assert_eq!(nic2.options.get(3), None, "no router on the second NIC");
    assert!(table.networks[0].bindings()[0]
        .options
        .get(3)
        .is_some_and(|r| r.len() == 4));
    // nova's files for the same state.
    let files = served.nova_files("network2", &s).unwrap();
    let vif = vm[0].addresses[1].vif_id;
    assert_eq!(
        files.hosts,
        format!(
            "{},vm.novalocal,{},net:NW-{vif}",
            vm[0].addresses[1].mac, vm[0].addresses[1].address
        )
    );
    assert_eq!(files.opts, format!("NW-{vif},3"));
    assert_eq!(
        files.addn_hosts,
        format!("{}\tvm.novalocal\n", vm[0].addresses[1].address)
    );
}

#[test]
fn what_the_daemons_table_would_refuse_is_refused_at_create() {
    let mut s = settings(ManagerKind::Flatdhcp);
    s.control = true;
    s.flat_interface = None;
    let mut m = Manager::in_memory(s).unwrap();
    let mut bad = net("bad", "198.18.0.0/24");
    bad.bridge = Some("br 100".into());
    assert!(
        matches!(m.network_create(&bad), Err(ManagerError::Invalid(e)) if e.contains("--bridge"))
    );
    bad.bridge = Some("a-very-long-bridge-name".into());
    assert!(m.network_create(&bad).is_err());
    bad.bridge = None;
    bad.mtu = Some(20);
    assert!(matches!(m.network_create(&bad), Err(ManagerError::Invalid(e)) if e.contains("--mtu")));
    let mut a = net("a", "198.18.1.0/24");
    a.bridge = Some("br1".into());
    a.bridge_interface = Some("eth1".into());
    m.network_create(&a).unwrap();
    // With the control module, one gateway per bridge.
    let mut b = net("b", "198.18.2.0/24");
    b.bridge = Some("br1".into());
    b.bridge_interface = Some("eth1".into());
    assert!(refused(m.network_create(&b)).contains("one gateway"));
    // An uplink is one bridge's, and never a bridge.
    b.bridge = Some("br2".into());
    assert!(refused(m.network_create(&b)).contains("already the uplink"));
    b.bridge_interface = Some("br1".into());
    assert!(refused(m.network_create(&b)).contains("another bridge's uplink"));
    b.bridge_interface = Some("eth2".into());
    m.network_create(&b).unwrap();
}

#[test]
fn the_configs_own_networks_are_kept_clear_of_and_flat_networks_share_the_flat_bridge() {
    let mut s = settings(ManagerKind::Flatdhcp);
    s.config_networks = vec![super::ConfigNetwork {
        name: "own".into(),
        cidr: "198.18.9.0/24".parse().ok(),
        bridge: "br100".into(),
    }];
    let mut m = Manager::in_memory(s.clone()).unwrap();
    assert!(refused(m.network_create(&net("own", "198.19.0.0/24"))).contains("config"));
    assert!(refused(m.network_create(&net("x", "198.18.9.0/25"))).contains("config"));
    let mut on = net("x", "198.18.0.0/24");
    on.bridge = Some("br100".into());
    assert!(refused(m.network_create(&on)).contains("the config's network"));
    assert!(refused(m.floating_create(None, "198.18.9.7", None)).contains("config"));
    assert!(matches!(
        m.floating_create(None, "198.19.9.7", Some("eth 0")),
        Err(ManagerError::Invalid(e)) if e.contains("--interface")
    ));
    // Without --bridge: the first br<N> neither the config nor the database has.
    assert_eq!(
        m.network_create(&net("x", "198.18.0.0/24")).unwrap()[0].bridge,
        "br101"
    );
    // With flat_interface, the flat networks share the bridge carrying it.
    s.config_networks.clear();
    s.flat_interface = Some("eth1".into());
    let mut m = Manager::in_memory(s).unwrap();
    assert_eq!(
        m.network_create(&net("a", "198.18.0.0/24")).unwrap()[0].bridge,
        "br100"
    );
    assert_eq!(
        m.network_create(&net("b", "198.18.1.0/24")).unwrap()[0].bridge,
        "br100"
    );
}

#[test]
fn flags_that_name_one_networks_addresses_are_refused_with_a_split_and_counts_are_capped() {
    let mut m = manager();
    let mut n = net("split", "198.18.0.0/22");
    n.num_networks = Some(4);
    n.gateway = Some(ip("198.18.0.1"));
    assert!(
        matches!(m.network_create(&n), Err(ManagerError::Invalid(e)) if e.contains("--gateway"))
    );
    n.gateway = None;
    n.num_networks = Some(5000);
    assert!(m.network_create(&n).is_err());
    n.num_networks = Some(4);
    m.network_create(&n).unwrap();
    let big = ServerCreate {
        count: u32::MAX,
        ..server("big", "p")
    };
    assert!(
        matches!(m.server_create(&big), Err(ManagerError::Invalid(e)) if e.contains("--count"))
    );
}

#[test]
fn unreserve_keeps_what_fixed_cidr_leaves_out() {
    let mut m = manager();
    let mut n = net("vmnet", "198.18.0.0/16");
    n.fixed_cidr = Some("198.18.20.0/24".into());
    m.network_create(&n).unwrap();
    assert!(refused(m.fixed_unreserve(ip("198.18.30.5"))).contains("--fixed-cidr"));
    m.fixed_reserve(ip("198.18.20.5")).unwrap();
    m.fixed_unreserve(ip("198.18.20.5")).unwrap();
}

#[test]
fn reconciling_makes_the_leased_flags_the_leases_held() {
    use super::leases::LeaseEvent;
    let mut m = manager();
    m.network_create(&net("n", "198.18.11.0/24")).unwrap();
    let a = m.server_create(&server("a", "p")).unwrap();
    let b = m.server_create(&server("b", "p")).unwrap();
    let ev = |s: &Vec<super::server::ServerRow>| LeaseEvent {
        leased: true,
        ip: s[0].addresses[0].address,
        mac: s[0].addresses[0].mac.parse().unwrap(),
    };
    m.lease_events(&[ev(&a)]).unwrap();
    // The store holds b's lease only: a's flag was stale, b's event was lost.
    m.reconcile_leases(&[ev(&b)]).unwrap();
    let leased: Vec<_> = m
        .fixed_list(None)
        .unwrap()
        .into_iter()
        .filter(|f| f.leased)
        .map(|f| f.address)
        .collect();
    assert_eq!(leased, [b[0].addresses[0].address]);
}

#[test]
fn what_runs_per_reload_per_create_and_per_delete_uses_an_index() {
    let mut m = manager();
    m.network_create(&net("n", "198.18.0.0/20")).unwrap();
    let plan = |m: &Manager, sql: &str| -> String {
        let mut st = m
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let params = rusqlite::params_from_iter(std::iter::repeat_n(1, st.parameter_count()));
        let rows = st
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("; ")
    };
    for sql in [
        super::export::BINDINGS_SQL.to_string(),
        super::fixed::FREE_SQL.to_string(),
        format!(
            "{} WHERE f.instance_id = ?1 ORDER BY v.position",
            super::server::NICS
        ),
        format!("{} WHERE x.instance_id = ?1", super::server::FIPS),
        "SELECT 1 FROM fixed_ips WHERE vif_id = ?1".to_string(),
        "SELECT 1 FROM vifs WHERE network_id = ?1".to_string(),
    ] {
        let p = plan(&m, &sql);
        assert!(
            !p.contains("SCAN f ") && !p.contains("SCAN fixed_ips") && !p.contains("SCAN vifs"),
            "{sql}: {p}"
        );
    }
    // The floating IPs a reload reads: only the associated ones, by their index.
    let p = plan(&m, super::export::FLOATING_SQL);
    assert!(p.contains("floating_ips_associated"), "{p}");
}

#[test]
fn every_change_the_daemon_serves_moves_the_generation() {
    let mut m = manager();
    let mut g = m.generation().unwrap();
    let mut moved = |m: &mut Manager| {
        let now = m.generation().unwrap();
        let changed = now != g;
        g = now;
        changed
    };
    m.network_create(&net("n", "198.18.12.0/24")).unwrap();
    assert!(moved(&mut m));
    m.floating_create(None, "198.19.1.1", None).unwrap();
    assert!(!moved(&mut m), "a pool serves nothing until associated");
    m.server_create(&server("a", "p")).unwrap();
    assert!(moved(&mut m));
    m.floating_allocate(None, "p").unwrap();
    assert!(!moved(&mut m));
    m.floating_associate(ip("198.19.1.1"), "a", None).unwrap();
    assert!(moved(&mut m));
    m.floating_disassociate(ip("198.19.1.1")).unwrap();
    assert!(moved(&mut m));
    m.server_delete("a").unwrap();
    assert!(moved(&mut m));
    let _ = m.server_create(&server("a", "nobody-has-this")); // allowed: flat kinds share
    assert!(moved(&mut m));
    let _ = m.network_delete("n");
    assert!(!moved(&mut m), "refused: a server uses it");
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Delete(u8),
    Reserve(u8),
    Unreserve(u8),
    Allocate(u8),
    Associate(u8, u8),
    Disassociate(u8),
    Deallocate(u8),
    Scrub(u8),
    NetAssociate(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, 0u8..3).prop_map(|(s, p)| Op::Create(s, p)),
        (0u8..12).prop_map(Op::Delete),
        any::<u8>().prop_map(Op::Reserve),
        any::<u8>().prop_map(Op::Unreserve),
        (0u8..3).prop_map(Op::Allocate),
        (0u8..8, 0u8..12).prop_map(|(f, s)| Op::Associate(f, s)),
        (0u8..8).prop_map(Op::Disassociate),
        (0u8..8).prop_map(Op::Deallocate),
        (0u8..3).prop_map(Op::Scrub),
        (0u8..2, 0u8..3).prop_map(|(n, p)| Op::NetAssociate(n, p)),
    ]
}

/// No address twice, reserved never allocated, every floating IP in exactly one state, every
/// server with one interface per network and unique MACs.
fn check_invariants(m: &mut Manager) {
    let fixed = m.fixed_list(None).unwrap();
    for f in &fixed {
        assert!(
            !(f.reserved && f.allocated),
            "{} reserved and allocated",
            f.address
        );
        assert_eq!(f.allocated, f.server.is_some(), "{}", f.address);
    }
    let servers = m.server_list().unwrap();
    let mut addrs: Vec<Ipv4Addr> = servers
        .iter()
        .flat_map(|s| s.addresses.iter().map(|n| n.address))
        .collect();
    let n = addrs.len();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "an address given twice");
    let mut macs: Vec<String> = servers
        .iter()
        .flat_map(|s| s.addresses.iter().map(|n| n.mac.clone()))
        .collect();
    let n = macs.len();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), n, "a MAC given twice");
    for f in m.floating_list(None).unwrap() {
        // free: no project, no fixed; allocated: project, no fixed; associated: both.
        assert!(f.project_id.is_some() || f.fixed_ip.is_none(), "{f:?}");
        if let Some(x) = f.fixed_ip {
            assert!(addrs.contains(&x), "{f:?} leads to a free address");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_commands_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut m = manager();
        m.network_create(&net("a", "198.18.0.0/28")).unwrap();
        m.network_create(&net("b", "198.18.1.0/29")).unwrap();
        m.floating_create(None, "198.19.0.0/29", None).unwrap();
        let projects = ["p0", "p1", "p2"];
        let floating = |i: u8| Ipv4Addr::new(198, 19, 0, i % 8);
        for o in ops {
            let before = snapshot(&mut m);
            let result: super::Result<()> = match o {
                Op::Create(s, p) => m.server_create(&server(&format!("s{s}"), projects[p as usize])).map(drop),
                Op::Delete(s) => m.server_delete(&format!("s{s}")).map(drop),
                Op::Reserve(a) => m.fixed_reserve(Ipv4Addr::new(198, 18, a % 2, a % 16)),
                Op::Unreserve(a) => m.fixed_unreserve(Ipv4Addr::new(198, 18, a % 2, a % 16)),
                Op::Allocate(p) => m.floating_allocate(None, projects[p as usize]).map(drop),
                Op::Associate(f, s) => m.floating_associate(floating(f), &format!("s{s}"), None).map(drop),
                Op::Disassociate(f) => m.floating_disassociate(floating(f)).map(drop),
                Op::Deallocate(f) => m.floating_deallocate(floating(f)).map(drop),
                Op::Scrub(p) => m.project_scrub(projects[p as usize]).map(drop),
                Op::NetAssociate(n, p) => m.network_associate(["a", "b"][n as usize], projects[p as usize]).map(drop),
            };
            if let Err(e) = &result {
                prop_assert!(matches!(e, ManagerError::Refused(_) | ManagerError::NotFound { .. }), "{e}");
                prop_assert_eq!(&snapshot(&mut m), &before, "a refusal changed something: {}", e);
            }
            check_invariants(&mut m);
        }
    }
}

fn rule(protocol: &str, port: Option<&str>) -> crate::table::firewall::RuleConfig {
    crate::table::firewall::RuleConfig {
        protocol: Some(protocol.into()),
        dst_port: port.map(Into::into),
        ..Default::default()
    }
}

fn invalid<T: std::fmt::Debug>(r: super::Result<T>) -> String {
    match r {
        Err(ManagerError::Invalid(m)) => m,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn security_groups_follow_openstack() {
    use super::secgroup::RuleCreate;
    let mut m = manager();
    m.network_create(&net("private", "198.18.1.0/24")).unwrap();
    // No default group before the project's first server, and no guessing of projects.
    let seed = |m: &mut Manager, protocol: &str, port: Option<&str>| {
        m.rule_create(&RuleCreate {
            group: "default".into(),
            project: None,
            rule: rule(protocol, port),
        })
    };
    assert!(matches!(
        seed(&mut m, "icmp", None),
        Err(ManagerError::NotFound { .. })
    ));
    let vm = m.server_create(&server("vm-1", "p")).unwrap();
    assert_eq!(vm[0].security_groups, ["default"]);
    assert_eq!(vm[0].addresses[0].port.len(), 15, "tap and twelve digits");
    // The default group allows all egress (two rules) and no ingress; the seed's two rules.
    assert_eq!(m.rule_list(Some("default"), None).unwrap().len(), 2);
    let (icmp, warning) = seed(&mut m, "icmp", None).unwrap();
    assert!(warning.is_none());
    let (ssh, _) = seed(&mut m, "tcp", Some("22:22")).unwrap();
    assert_eq!(
        ssh.spec.describe(),
        "--ingress IPv4 --protocol tcp --dst-port 22:22"
    );
    assert!(refused(seed(&mut m, "tcp", Some("22:22"))).contains("already has this rule"));
    // Bad input: a clear error naming the rule, and nothing changes.
    let before = format!(
        "{:?}{}",
        m.rule_list(None, None).unwrap(),
        m.generation().unwrap()
    );
    for (protocol, port, want) in [
        ("tcp", Some("30:20"), "reversed"),
        ("tcp", Some("1:65536"), "65536 is not a port"),
        ("bogus", None, "protocol \"bogus\""),
    ] {
        let e = invalid(seed(&mut m, protocol, port));
        assert!(
            e.contains("rule for group \"default\"") && e.contains(want),
            "{e}"
        );
    }
    let mut r = rule("tcp", None);
    r.remote_group = Some("ghost".into());
    let e = invalid(m.rule_create(&RuleCreate {
        group: "default".into(),
        project: None,
        rule: r,
    }));
    assert!(e.contains("remote-group \"ghost\": no such group"), "{e}");
    let after = format!(
        "{:?}{}",
        m.rule_list(None, None).unwrap(),
        m.generation().unwrap()
    );
    assert_eq!(before, after, "a refusal changed something");
    // Host bits are normalized with a warning.
    let mut r = rule("udp", Some("53"));
    r.remote_ip = Some("198.19.7.7/16".into());
    let (row, warning) = m
        .rule_create(&RuleCreate {
            group: "default".into(),
            project: Some("p".into()),
            rule: r,
        })
        .unwrap();
    assert!(warning.unwrap().contains("using 198.19.0.0/16"));
    assert_eq!(
        row.spec.describe(),
        "--ingress IPv4 --protocol udp --dst-port 53:53 --remote-ip 198.19.0.0/16"
    );
    // Groups: a server in a named group; a group in use, named by a rule, or a default one
    // is not deleted.
    m.secgroup_create("web", "p", "").unwrap();
    m.secgroup_create("bastion", "p", "").unwrap();
    assert!(refused(m.secgroup_create("web", "p", "")).contains("already has"));
    let mut r = rule("tcp", Some("22"));
    r.remote_group = Some("bastion".into());
    m.rule_create(&RuleCreate {
        group: "web".into(),
        project: None,
        rule: r,
    })
    .unwrap();
    let mut req = server("vm-2", "p");
    req.security_groups = vec!["web".into()];
    assert_eq!(m.server_create(&req).unwrap()[0].security_groups, ["web"]);
    req.name = "vm-3".into();
    req.security_groups = vec!["nosuch".into()];
    assert!(matches!(
        m.server_create(&req),
        Err(ManagerError::NotFound { .. })
    ));
    assert!(refused(m.secgroup_delete("web", None)).contains("1 server(s)"));
    assert!(refused(m.secgroup_delete("bastion", None)).contains("remote group of rules in web"));
    assert!(refused(m.secgroup_delete("default", None)).contains("cannot be deleted"));
    // What the daemon gets: groups with their rules, servers with ports and groups.
    let served = m.served().unwrap();
    let web = served
        .security_groups
        .iter()
        .find(|g| g.name == "web")
        .unwrap();
    assert_eq!(web.rule.len(), 3, "two egress rules and SSH from bastion");
    assert!(web
        .rule
        .iter()
        .any(|r| r.remote_group.as_deref() == Some("bastion")));
    let configs = served.instance_configs();
    assert_eq!(
        configs[1].security_groups.as_deref(),
        Some(&["web".to_string()][..])
    );
    assert!(configs[0].ports[0].starts_with("tapfa163e"));
    // Rule delete, then the group's own delete once free.
    m.rule_delete(icmp.id).unwrap();
    assert!(matches!(
        m.rule_delete(icmp.id),
        Err(ManagerError::NotFound { .. })
    ));
    m.server_delete("vm-2").unwrap();
    m.secgroup_delete("web", Some("p")).unwrap();
    m.secgroup_delete("bastion", Some("p")).unwrap();
    assert_eq!(m.secgroup_list(Some("p")).unwrap().len(), 1);
}

#[test]
fn migration_three_puts_existing_servers_in_their_default_group() {
    let mut c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
    for sql in &super::schema::MIGRATIONS[..2] {
        c.execute_batch(sql).unwrap();
    }
    c.execute_batch(
        "PRAGMA user_version = 2;
         INSERT INTO instances (uuid, name, hostname, project_id, created) VALUES ('u', 'vm', 'vm', 'p', 1);",
    )
    .unwrap();
    super::schema::migrate(&mut c).unwrap();
    let groups: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM instance_security_groups s JOIN security_groups g ON g.id = s.group_id \
             WHERE g.name = 'default' AND g.project_id = 'p'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(groups, 1);
    let egress: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM security_group_rules WHERE direction = 'egress'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(egress, 2);
}
