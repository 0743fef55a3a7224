//! DHCPv4 with real clients in network namespaces (root). Each test builds its own uniquely
//! named lab and removes it in Drop, also when it fails.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::{can_run, counter, host_line, serve, LEASE};
use netnode::lab::clients::{Acquired, ClientKind, ClientRun};

fn expect_binding(got: &Acquired, ip: Ipv4Addr, hostname: &str, lease: u32) {
    assert_eq!(got.ip, Some(ip), "{got:?}");
    assert_eq!(got.mask, Some(Ipv4Addr::new(255, 255, 255, 0)), "{got:?}");
    assert_eq!(got.router, Some(Ipv4Addr::new(198, 18, 0, 1)), "{got:?}");
    assert_eq!(got.hostname.as_deref(), Some(hostname), "{got:?}");
    assert_eq!(got.domain.as_deref(), Some("novalocal"), "{got:?}");
    assert_eq!(got.lease_time, Some(lease), "{got:?}");
}

fn real_client_gets_exactly_its_binding(kind: ClientKind, label: &str) {
    if !can_run(label, &[kind]) {
        return;
    }
    let mut s = serve(label, 2, 2, LEASE);
    for i in 1..=2 {
        let run = ClientRun::new(&s.lab.instances[i - 1], kind, &s.lab.dir).unwrap();
        run.obtain()
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", s.daemon.log_text()));
        let got = run.acquired().expect("the hook saw an address");
        expect_binding(&got, s.lab.instance_ip(i), &format!("vm-{i}"), 120);
        // The client really configured it.
        let addrs = s.lab.instances[i - 1]
            .ns
            .ip(&["-4", "addr", "show", "eth0"])
            .unwrap();
        assert!(String::from_utf8_lossy(&addrs.stdout)
            .contains(&format!("{}/24", s.lab.instance_ip(i))));
    }
    let stats = s.stats();
    assert_eq!(counter(&stats, "ack"), 2, "{stats}");
    s.wait_lease_file(|t| t.lines().count() == 2);
}

#[test]
fn dhclient_gets_exactly_its_binding() {
    real_client_gets_exactly_its_binding(ClientKind::Dhclient, "dhcli");
}

#[test]
fn udhcpc_gets_exactly_its_binding() {
    real_client_gets_exactly_its_binding(ClientKind::Udhcpc, "udhcp");
}

#[test]
fn an_unknown_mac_gets_nothing() {
    if !can_run("unknown", &[ClientKind::Udhcpc]) {
        return;
    }
    let mut s = serve("unknown", 2, 1, LEASE);
    let run = ClientRun::new(&s.lab.instances[1], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    assert!(
        run.obtain().is_err(),
        "a MAC with no binding must get no lease"
    );
    assert!(run.acquired().is_none());
    let stats = s.stats();
    assert!(counter(&stats, "drop.unknown_client") >= 1, "{stats}");
    assert_eq!(counter(&stats, "offer"), 0, "{stats}");
    assert!(s.daemon.log_text().contains("no binding for client"));
}

#[test]
fn a_renew_keeps_the_address_and_extends_the_lease() {
    if !can_run("renew", &[ClientKind::Dhclient]) {
        return;
    }
    // 8 s leases: dhclient renews at T1 = 4 s, by unicast from its address.
    let mut s = serve("renew", 1, 1, "8s");
    let run = ClientRun::new(&s.lab.instances[0], ClientKind::Dhclient, &s.lab.dir).unwrap();
    run.obtain().unwrap();
    let ip = s.lab.instance_ip(1);
    let first = s.wait_lease_file(|t| t.contains(&ip.to_string()));
    assert!(
        run.wait_for_event("RENEW", 1, Duration::from_secs(15)),
        "no renewal; events: {:?}",
        run.events()
    );
    let renewed = run
        .events()
        .into_iter()
        .rev()
        .find(|e| e.reason == "RENEW")
        .unwrap()
        .acquired();
    assert_eq!(renewed.ip, Some(ip));
    let expiry = |text: &str| {
        text.split_whitespace()
            .next()
            .and_then(|e| e.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let later = s.wait_lease_file(|t| expiry(t) > expiry(&first));
    assert!(later.contains(&ip.to_string()));
    let stats = s.stats();
    assert!(counter(&stats, "ack") >= 2, "{stats}");
    assert_eq!(counter(&stats, "nak"), 0, "{stats}");
}

#[test]
fn a_release_ends_the_lease() {
    if !can_run("release", &[ClientKind::Dhclient]) {
        return;
    }
    let mut s = serve("release", 1, 1, LEASE);
    let run = ClientRun::new(&s.lab.instances[0], ClientKind::Dhclient, &s.lab.dir).unwrap();
    run.obtain().unwrap();
    let mac = s.lab.instances[0].mac.to_string();
    s.wait_lease_file(|t| t.contains(&mac));
    run.release().unwrap();
    s.wait_lease_file(|t| !t.contains(&mac));
    let stats = s.stats();
    assert_eq!(counter(&stats, "release"), 1, "{stats}");
    assert_eq!(counter(&stats, "leases_ended"), 1, "{stats}");
    assert!(s.daemon.log_text().contains("lease released"));
}

#[test]
fn a_host_added_to_the_hosts_file_is_served_after_sighup() {
    if !can_run("sighup", &[ClientKind::Udhcpc]) {
        return;
    }
    let mut s = serve("sighup", 2, 1, LEASE);
    let second = ClientRun::new(&s.lab.instances[1], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    assert!(second.obtain().is_err(), "not bound yet");
    let text = format!(
        "{}\n{}",
        fs::read_to_string(&s.hosts).unwrap(),
        host_line(&s.lab, 2)
    );
    fs::write(&s.hosts, text).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log("table reloaded (SIGHUP)", 1, Duration::from_secs(5))
        .unwrap();
    second.obtain().unwrap();
    assert_eq!(second.acquired().unwrap().ip, Some(s.lab.instance_ip(2)));
    assert!(s.daemon.log_text().contains("bindings=2"));
}

#[test]
fn a_changed_hosts_file_is_reloaded_without_a_signal_and_a_bad_config_keeps_the_last_table() {
    if !can_run("watch", &[ClientKind::Udhcpc]) {
        return;
    }
    let mut s = serve("watch", 2, 1, LEASE);
    // A broken config: reported, and the last good table keeps serving.
    let good = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        good.replace("cidr =", "cidr = \"nonsense\"\nbogus ="),
    )
    .unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log(
            "still serving the last good table",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    let first = ClientRun::new(&s.lab.instances[0], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    first.obtain().unwrap();
    fs::write(&s.config, &good).unwrap();
    // A bad line is reported with file and line; the good lines load.
    let text = format!(
        "{}\nnot-a-mac,??,1.2.3\n{}",
        fs::read_to_string(&s.hosts).unwrap(),
        host_line(&s.lab, 2)
    );
    fs::write(&s.hosts, text).unwrap();
    s.daemon
        .wait_for_log(
            "table reloaded (a source file changed)",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(
        s.daemon.log_text().contains("nova-br100.conf:2:"),
        "{}",
        s.daemon.log_text()
    );
    let second = ClientRun::new(&s.lab.instances[1], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    second.obtain().unwrap();
    assert_eq!(second.acquired().unwrap().ip, Some(s.lab.instance_ip(2)));
}

#[test]
fn a_request_for_a_wrong_address_is_naked() {
    if !can_run("nak", &[ClientKind::Dhclient]) {
        return;
    }
    let mut s = serve("nak", 2, 2, LEASE);
    // netnode's own client sends exactly one INIT-REBOOT REQUEST for someone else's address.
    let inst = &s.lab.instances[1];
    let wrong = s.lab.instance_ip(1).to_string();
    let out = inst
        .ns
        .command(common::netnode())
        .args(["client", "--iface", "eth0", "--request", &wrong])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kind=NAK"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ip=0.0.0.0"),
        "a NAK carries no address: {text}"
    );
    // dhclient with a stale lease for a wrong address: INIT-REBOOT, NAK, then DORA.
    let run = ClientRun::new(&s.lab.instances[0], ClientKind::Dhclient, &s.lab.dir).unwrap();
    fs::write(
        run.path("leases"),
        "lease {\n  interface \"eth0\";\n  fixed-address 198.18.0.99;\n  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 198.18.0.1;\n  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n",
    )
    .unwrap();
    run.obtain().unwrap();
    assert_eq!(run.acquired().unwrap().ip, Some(s.lab.instance_ip(1)));
    let stats = s.stats();
    assert!(counter(&stats, "nak") >= 2, "{stats}");
}

#[test]
fn a_relayed_request_is_answered_to_the_relay() {
    if !can_run("relay", &[]) {
        return;
    }
    let s = serve("relay", 2, 1, LEASE);
    // Instance 2 plays the relay agent at 198.18.0.2, relaying for instance 1's MAC.
    let relay = &s.lab.instances[1];
    relay
        .ns
        .ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"])
        .unwrap();
    let mac = s.lab.instances[0].mac.to_string();
    let args = [
        "client",
        "--iface",
        "eth0",
        "--mac",
        &mac,
        "--relay",
        "198.18.0.2",
        "--server",
        "198.18.0.1",
    ];
    let text = s.run_in(relay, common::netnode(), &args);
    assert!(text.contains("kind=ACK"), "{text}");
    assert!(
        text.contains(&format!("ip={}", s.lab.instance_ip(1))),
        "{text}"
    );
    s.wait_lease_file(|t| t.contains(&mac));
}

#[test]
fn a_restart_and_a_crash_keep_the_leases() {
    if !can_run("restart", &[ClientKind::Udhcpc]) {
        return;
    }
    let mut s = serve("restart", 2, 2, LEASE);
    let first = ClientRun::new(&s.lab.instances[0], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    first.obtain().unwrap();
    // A clean stop, then a start: the lease is replayed from the journal.
    s.restart(false, "netnode2.log", 1);
    let mac1 = s.lab.instances[0].mac.to_string();
    s.wait_lease_file(|t| t.contains(&mac1));
    // A crash right after the ACK (SIGKILL: nothing flushed at exit): the ACKed lease survives.
    let second = ClientRun::new(&s.lab.instances[1], ClientKind::Udhcpc, &s.lab.dir).unwrap();
    second.obtain().unwrap();
    s.restart(true, "netnode3.log", 2);
    let mac2 = s.lab.instances[1].mac.to_string();
    s.wait_lease_file(|t| t.contains(&mac1) && t.contains(&mac2));
}

#[test]
fn the_demo_runs_and_cleans_up() {
    if !can_run("demo", &[]) {
        return;
    }
    let before = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let out = std::process::Command::new(common::netnode())
        .args(["demo", "--instances", "2", "--client", "netnode"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The manager allocated from the bottom of the range and the floating IP was reached.
    assert!(text.contains("vmnet=198.18.0.2, 198.19.26.170"), "{text}");
    assert!(
        text.contains("198.18.0.2") && text.contains("198.18.0.3") && text.contains("vm-2"),
        "{text}"
    );
    assert!(
        text.contains("reached from outside (ping from out0: yes)") || !netnode::lab::have("ping"),
        "{text}"
    );
    let after = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let demo_left: Vec<&str> = after
        .lines()
        .filter(|l| {
            l.starts_with("nn-demo-") && !before.contains(l.split_whitespace().next().unwrap_or(""))
        })
        .collect();
    assert!(
        demo_left.is_empty(),
        "the demo left namespaces: {demo_left:?}"
    );
}

#[test]
fn a_sighup_storm_drops_no_request() {
    if !can_run("hupstorm", &[]) {
        return;
    }
    let s = serve("hupstorm", 1, 1, LEASE);
    let pid = s.daemon.pid().unwrap();
    let sent =
        common::dora_under_hup_storm(&s.lab.instances[0], pid, 20, Duration::from_secs(2), || {
            s.daemon.log_text()
        });
    assert!(sent > 100, "the storm sent {sent} signals");
    assert!(
        s.daemon
            .log_text()
            .matches("table reloaded (SIGHUP)")
            .count()
            > 5
    );
}

#[test]
fn a_bridge_that_appears_later_is_served_without_a_restart() {
    if !can_run("latebr", &[]) {
        return;
    }
    let mut s = serve("latebr", 2, 1, LEASE);
    // Add a second network on a bridge that does not exist yet.
    let inst = &s.lab.instances[1];
    fs::write(
        s.lab.dir.join("late.conf"),
        format!("{},late-1,198.19.7.10", inst.mac),
    )
    .unwrap();
    let mut config = fs::read_to_string(&s.config).unwrap();
    let state_at = config.find("[state]").unwrap();
    config.insert_str(state_at, "[[network]]\nname = \"late\"\nbridge = \"br7\"\ncidr = \"198.19.7.0/24\"\ngateway = \"198.19.7.1\"\nhosts_file = \"late.conf\"\n");
    fs::write(&s.config, config).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon
        .wait_for_log(
            "the bridge does not exist; DHCP serves it once it appears",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    // Move instance 2 onto the new bridge once it exists.
    let srv = &s.lab.server;
    srv.ip(&["link", "add", "br7", "type", "bridge"]).unwrap();
    srv.ip(&["addr", "add", "198.19.7.1/24", "dev", "br7"])
        .unwrap();
    srv.ip(&["link", "set", "br7", "up"]).unwrap();
    srv.ip(&["link", "set", &inst.port, "master", "br7"])
        .unwrap();
    s.daemon
        .wait_for_log("dhcp listening", 2, Duration::from_secs(5))
        .unwrap();
    let out = inst
        .ns
        .command(common::netnode())
        .args(["client", "--iface", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kind=ACK")
            && text.contains("ip=198.19.7.10")
            && text.contains("hostname=late-1"),
        "{text}\n{}",
        s.daemon.log_text()
    );
}

#[test]
fn a_bridge_deleted_and_created_again_is_served_again() {
    // nova's VLAN manager tears a project's network down and sets it up again; ifdown/ifup does
    // the same. The daemon keeps running and must follow the new interface.
    if !can_run("recreate", &[ClientKind::Dhclient]) {
        return;
    }
    let mut s = serve("recreate", 1, 1, LEASE);
    let inst = &s.lab.instances[0];
    let first = ClientRun::new(inst, ClientKind::Dhclient, &s.lab.dir).unwrap();
    first.obtain().unwrap();
    first.release().unwrap();
    let srv = &s.lab.server;
    srv.ip(&["link", "del", "br100"]).unwrap();
    s.daemon
        .wait_for_log("the bridge went away", 1, Duration::from_secs(5))
        .unwrap();
    srv.ip(&["link", "add", "br100", "type", "bridge"]).unwrap();
    srv.ip(&["addr", "add", "198.18.0.1/24", "dev", "br100"])
        .unwrap();
    srv.ip(&["link", "set", "br100", "up"]).unwrap();
    srv.ip(&["link", "set", &inst.port, "master", "br100"])
        .unwrap();
    s.daemon
        .wait_for_log("dhcp listening", 2, Duration::from_secs(5))
        .unwrap();
    let again = ClientRun::new(inst, ClientKind::Dhclient, &s.lab.dir.join("again")).unwrap();
    again
        .obtain()
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", s.daemon.log_text()));
    let got = again.acquired().expect("the hook saw an address");
    expect_binding(&got, s.lab.instance_ip(1), "vm-1", 120);
}

/// Runs `netnode bench` from the instance's namespace as relay 198.18.0.250; returns its
/// report line (panics, with `log`, if it fails).
fn load_run(s: &common::Served, hosts: &std::path::Path, extra: &[&str], log: &str) -> String {
    let inst = &s.lab.instances[0];
    let hosts = hosts.display().to_string();
    let mut args = vec![
        "bench",
        "--iface",
        "eth0",
        "--server",
        "198.18.0.1",
        "--relay",
        "198.18.0.250",
        "--hosts-file",
        &hosts,
        "--seconds",
        "1",
        "--rate",
        "400",
        "--timeout-ms",
        "500",
    ];
    args.extend_from_slice(extra);
    let out = inst
        .ns
        .command(common::netnode())
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn the_load_generator_runs_dora_and_full_cycles_against_netnode_and_the_null_responder() {
    if !can_run("loadgen", &[]) {
        return;
    }
    let mut s = serve("loadgen", 1, 0, LEASE);
    // 200 clients of the generator's own, in the table and in its hosts file.
    let lines: Vec<String> = (0..200)
        .map(|i| format!("fa:16:3e:77:00:{i:02x},load-{i},198.18.0.{}", 20 + i))
        .collect();
    let load_hosts = s.lab.dir.join("load-hosts");
    fs::write(&load_hosts, lines.join("\n")).unwrap();
    fs::write(&s.hosts, lines.join("\n")).unwrap();
    s.daemon.signal(libc::SIGHUP);
    s.daemon_wait("table reloaded (SIGHUP)");
    let inst = &s.lab.instances[0];
    inst.ns
        .ip(&["addr", "add", "198.18.0.250/24", "dev", "eth0"])
        .unwrap();

    let dora = load_run(&s, &load_hosts, &[], &s.daemon.log_text());
    assert!(dora.contains(" dropped=0 "), "{dora}");
    assert!(counter(&dora, "completed") >= 300, "{dora}");
    let full = load_run(&s, &load_hosts, &["--full-cycle"], &s.daemon.log_text());
    assert!(full.contains(" dropped=0 "), "{full}");
    let cycles = counter(&full, "completed");
    let stats = s.stats();
    assert!(cycles >= 300, "{full}");
    assert!(
        counter(&stats, "release") >= cycles,
        "every full cycle ends with a RELEASE: {stats}"
    );
    assert!(
        counter(&stats, "ack") >= counter(&dora, "completed") + 2 * cycles,
        "{stats}"
    );

    // The null responder, on the same bridge once netnode has stopped.
    s.daemon.stop().unwrap();
    let mut null = netnode::lab::Daemon::start(
        &s.lab.server,
        &common::netnode(),
        &[
            "bench",
            "--null",
            "--iface",
            "br100",
            "--server",
            "198.18.0.1",
        ],
        &s.lab.dir.join("null.log"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let line = load_run(&s, &load_hosts, &["--full-cycle"], "(null responder)");
    null.stop().unwrap();
    assert!(
        line.contains(" dropped=0 ") && counter(&line, "completed") >= 300,
        "{line}"
    );
}
