//! Router advertisements with the kernel as the SLAAC client, rdisc6, scapy and Debian's radvd,
//! in network namespaces (root). Each test builds its own lab and removes it in Drop.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use common::{can_run_with, rdisc6, serve_with, Served, LEASE, SYSTEM_PYTHON};
use netnode::lab::{self, Daemon, Instance, Lab};
use netnode::table::ipv6::{instance_address, Backend};

const NOVA_RA: &str = "cidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\n";
const RDISC6: (&str, &str) = ("rdisc6", "ndisc6");

fn prefix() -> Ipv6Addr {
    "fd00:1::".parse().unwrap()
}

/// The bridge's link-local address, read in the server namespace.
fn bridge_link_local(s: &Served) -> Ipv6Addr {
    let out = s
        .lab
        .server
        .ip(&["-6", "-o", "addr", "show", "dev", "br100", "scope", "link"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on br100: {text}"))
}

fn default_route(inst: &Instance) -> String {
    let out = inst.ns.ip(&["-6", "route", "show", "default"]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// Takes the instance's link down and up, so its kernel solicits again.
fn flap(inst: &Instance) {
    inst.ns.ip(&["link", "set", &inst.iface, "down"]).unwrap();
    inst.ns.ip(&["link", "set", &inst.iface, "up"]).unwrap();
}

fn serve_ra(label: &str, ra: &str) -> Served {
    let mut s = serve_with(label, 1, 1, LEASE, ra);
    s.daemon
        .wait_for_log("router advertisements on", 1, Duration::from_secs(10))
        .unwrap();
    s
}

#[test]
fn the_kernel_forms_exactly_the_computed_address_and_routes_via_the_bridge() {
    if !can_run_with("slaac", &[], &[]) {
        return;
    }
    let s = serve_ra("slaac", NOVA_RA);
    let inst = &s.lab.instances[0];
    flap(inst);
    let want = instance_address(prefix(), 64, inst.mac, Backend::Rfc2462, None).unwrap();
    wait_until("the SLAAC address appears", Duration::from_secs(15), || {
        Lab::slaac_addresses(inst).contains(&want)
    });
    assert_eq!(
        Lab::slaac_addresses(inst),
        [want],
        "exactly one global address, the computed one"
    );
    // The CLI prints the same address.
    let cli = std::process::Command::new(common::netnode())
        .args([
            "ipv6-address",
            "--prefix",
            "fd00:1::/64",
            "--mac",
            &inst.mac.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        want.to_string()
    );
    let ll = bridge_link_local(&s);
    wait_until(
        "a default route via the bridge",
        Duration::from_secs(5),
        || default_route(inst).contains(&format!("via {ll} dev eth0")),
    );
}

#[test]
fn rdisc6_reports_every_configured_field() {
    if !can_run_with("rdisc6", &[], &[RDISC6]) {
        return;
    }
    let ra = "cidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\nAdvManagedFlag = true\nAdvOtherConfigFlag = true\nAdvLinkMTU = 1450\nAdvReachableTime = 30000\nAdvRetransTimer = 1000\nAdvCurHopLimit = 32\nAdvDefaultLifetime = 60\nAdvValidLifetime = 7200\nAdvPreferredLifetime = 3600\nrdnss = [\"fd00:1::53\"]\ndnssl = [\"novalocal\"]\n";
    let s = serve_ra("rdisc6", ra);
    let inst = &s.lab.instances[0];
    let out = rdisc6(inst);
    let expect = [
        ("Hop limit", "32"),
        ("Stateful address conf.", "Yes"),
        ("Stateful other conf.", "Yes"),
        ("Router preference", "medium"),
        ("Router lifetime", "60"),
        ("Reachable time", "30000"),
        ("Retransmit time", "1000"),
        ("Prefix", "fd00:1::/64"),
        ("On-link", "Yes"),
        ("Autonomous address conf.", "Yes"),
        ("Valid time", "7200"),
        ("Pref. time", "3600"),
        ("MTU", "1450"),
        ("Recursive DNS server", "fd00:1::53"),
        ("DNS server lifetime", "30"),
        ("DNS search list", "novalocal"),
        ("DNS search list lifetime", "30"),
    ];
    for (field, value) in expect {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(field))
            .unwrap_or_else(|| panic!("no {field:?} in:\n{out}"));
        let shown = line
            .split_once(':')
            .map(|(_, v)| v.split_whitespace().next().unwrap_or(""))
            .unwrap_or("");
        assert_eq!(shown, value, "{field}: {line}");
    }
    let mac = inst_bridge_mac(&s);
    assert!(
        out.to_uppercase().contains(&mac.to_uppercase()),
        "source link-layer address {mac}:\n{out}"
    );
    assert!(
        out.contains(&format!("from {}", bridge_link_local(&s))),
        "{out}"
    );
}

fn inst_bridge_mac(s: &Served) -> String {
    let out = s
        .lab
        .server
        .command("cat")
        .arg("/sys/class/net/br100/address")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// rdisc6 from the instance: one solicitation, the answer printed.
/// Retries while the instance's own link-local address is still tentative (rdisc6 then fails
/// with "Cannot assign requested address").
#[test]
fn stopping_netnode_withdraws_the_default_route() {
    if !can_run_with("rastop", &[], &[]) {
        return;
    }
    let mut s = serve_ra("rastop", NOVA_RA);
    let inst = &s.lab.instances[0];
    flap(inst);
    wait_until("a default route", Duration::from_secs(15), || {
        default_route(inst).contains("via fe80::")
    });
    s.daemon.stop().unwrap();
    assert!(s
        .daemon
        .log_text()
        .contains("sent the final router advertisement (router lifetime 0)"));
    let inst = &s.lab.instances[0];
    wait_until("the default route is gone", Duration::from_secs(5), || {
        default_route(inst).is_empty()
    });
}

const RS_PROBE: &str = r#"
import sys
from scapy.all import AsyncSniffer, Ether, IPv6, ICMPv6ND_RS, ICMPv6ND_RA, sendp, get_if_hwaddr
iface, src, hlim = sys.argv[1], sys.argv[2], int(sys.argv[3])
sniffer = AsyncSniffer(iface=iface, lfilter=lambda p: p.haslayer(ICMPv6ND_RA) and p[IPv6].dst == src)
sniffer.start()
import time; time.sleep(0.3)
sendp(Ether(src=get_if_hwaddr(iface), dst="33:33:00:00:00:02") / IPv6(src=src, dst="ff02::2", hlim=hlim) / ICMPv6ND_RS(), iface=iface, verbose=False)
time.sleep(1.5)
print(len(sniffer.stop()))
"#;

#[test]
fn a_solicitation_with_hop_limit_64_gets_no_answer() {
    if !can_run_with("rshop", &[], &[("scapy", "python3-scapy")]) {
        return;
    }
    let mut s = serve_ra("rshop", NOVA_RA);
    let inst = &s.lab.instances[0];
    let probe = s.lab.dir.join("rs_probe.py");
    fs::write(&probe, RS_PROBE).unwrap();
    // The instance's own link-local address, once DAD is done.
    let ll = Lab::link_local(inst)
        .expect("a link-local address")
        .to_string();
    let unicast_answers = |hlim: &str| -> u32 {
        let out = lab::run(inst.ns.command(SYSTEM_PYTHON).arg(&probe).args([
            inst.iface.as_str(),
            ll.as_str(),
            hlim,
        ]))
        .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(99)
    };
    assert_eq!(
        unicast_answers("64"),
        0,
        "an RS with hop limit 64 must be ignored"
    );
    assert_eq!(
        unicast_answers("255"),
        1,
        "the same RS with hop limit 255 is answered at once, by unicast"
    );
    let stats = s.stats();
    assert_eq!(
        common::counter(&stats, "ra_drop.bad_hop_limit"),
        1,
        "{stats}"
    );
    assert!(common::counter(&stats, "ra_unicast") >= 1, "{stats}");
}

#[test]
fn a_bridge_whose_carrier_comes_up_later_is_served() {
    if !can_run_with("carrier", &[], &[]) {
        return;
    }
    let lab = Lab::build("carrier", 1, "198.18.0.1".parse().unwrap(), 24).unwrap();
    let inst = &lab.instances[0];
    // No carrier on the bridge: its only port down, and the bridge restarted so it has no
    // link-local address.
    lab.server.ip(&["link", "set", &inst.port, "down"]).unwrap();
    lab.server.ip(&["link", "set", "br100", "down"]).unwrap();
    lab.server.ip(&["link", "set", "br100", "up"]).unwrap();
    let config = lab.dir.join("netnode.toml");
    fs::write(
        &config,
        format!("[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"{}\"\ngateway = \"{}\"\n{NOVA_RA}[state]\ndir = \"state\"\n", lab.cidr(), lab.server_ip),
    )
    .unwrap();
    let mut daemon = common::start(&lab, &config, "netnode.log");
    daemon
        .wait_for_log(
            "waiting for the bridge and its IPv6 link-local address",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !daemon.log_text().contains("router advertisements on"),
        "no link-local yet:\n{}",
        daemon.log_text()
    );
    lab.server.ip(&["link", "set", &inst.port, "up"]).unwrap();
    daemon
        .wait_for_log("router advertisements on", 1, Duration::from_secs(10))
        .unwrap();
    let want = instance_address(prefix(), 64, inst.mac, Backend::Rfc2462, None).unwrap();
    wait_until("the SLAAC address appears", Duration::from_secs(15), || {
        Lab::slaac_addresses(inst).contains(&want)
    });
    drop(daemon);
}

#[test]
fn netnode_and_radvd_send_the_same_advertisement() {
    if !can_run_with("radvd", &[], &[RDISC6, ("radvd", "radvd")]) {
        return;
    }
    let mut s = serve_ra("radvd", NOVA_RA);
    let inst = &s.lab.instances[0];
    let ours = rdisc6(inst);
    s.daemon.stop().unwrap();
    // nova's radvd.conf for this bridge, run as nova runs it (radvd wants forwarding on).
    lab::run(
        s.lab
            .server
            .command("sysctl")
            .args(["-q", "-w", "net.ipv6.conf.all.forwarding=1"]),
    )
    .unwrap();
    let conf = s.lab.dir.join("nova-ra-br100.conf");
    fs::write(
        &conf,
        "interface br100\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 3;\n   MaxRtrAdvInterval 10;\n   prefix fd00:1::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n};\n",
    )
    .unwrap();
    let pid = s.lab.dir.join("nova-ra-br100.pid");
    let args = [
        "-n",
        "-m",
        "stderr",
        "-C",
        conf.to_str().unwrap(),
        "-p",
        pid.to_str().unwrap(),
    ];
    let _radvd = Daemon::start(
        &s.lab.server,
        std::path::Path::new("radvd"),
        &args,
        &s.lab.dir.join("radvd.log"),
    )
    .unwrap();
    let inst = &s.lab.instances[0];
    let theirs = rdisc6(inst);
    let norm = |t: &str| {
        t.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        norm(&ours),
        norm(&theirs),
        "netnode:\n{ours}\nradvd:\n{theirs}"
    );
}

#[test]
fn a_prefix_removed_at_reload_is_withdrawn() {
    if !can_run_with("rawithdraw", &[], &[]) {
        return;
    }
    let s = serve_ra("rawithdraw", NOVA_RA);
    let inst = &s.lab.instances[0];
    flap(inst);
    let want = instance_address(prefix(), 64, inst.mac, Backend::Rfc2462, None).unwrap();
    wait_until("the SLAAC address appears", Duration::from_secs(15), || {
        Lab::slaac_addresses(inst).contains(&want)
    });
    wait_until("a default route", Duration::from_secs(5), || {
        default_route(inst).contains("via fe80::")
    });
    let config = fs::read_to_string(&s.config).unwrap().replace(NOVA_RA, "");
    fs::write(&s.config, config).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon_wait("withdrew its prefixes and default route");
    // Preferred lifetime 0 deprecates the address at once (the valid lifetime is held to two
    // hours by RFC 4862's rule); router lifetime 0 removes the default route.
    wait_until("the default route is gone", Duration::from_secs(5), || {
        default_route(inst).is_empty()
    });
    let out = inst
        .ns
        .ip(&["-6", "addr", "show", "dev", &inst.iface, "scope", "global"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deprecated"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
