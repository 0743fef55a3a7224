//! The manager with the daemon serving it, in network namespaces: `server create` answered by
//! real clients within a second, `server delete` ending the lease, multinic with one default
//! route, a floating IP associated through the CLI reached from outside, and nova's files
//! exported for Debian's dnsmasq giving the same answer as netnode.

#![allow(clippy::disallowed_methods)] // a test reads the clock

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cloud::{eventually, Cloud};
use common::{can_run_with, ping};
use netnode::lab::clients::{ClientKind, ClientRun};
use netnode::lab::{self, Daemon, Netns};

/// udhcpc on one interface with one DISCOVER (no retry): the address and router it got.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    echo "ip=$ip router=$router" > "@OUT@.$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    ;;
  deconfig) ip -4 addr flush dev "$interface" ;;
esac
exit 0
"#;

fn udhcpc(dir: &Path, ns: &Netns, iface: &str, tries: &str) -> Option<String> {
    let script = dir.join("udhcpc.sh");
    let out = dir.join("udhcpc-out");
    fs::write(
        &script,
        UDHCPC_SCRIPT.replace("@OUT@", &out.display().to_string()),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let result = out.with_extension(iface);
    let _ = fs::remove_file(&result);
    ns.command("udhcpc")
        .args([
            "-i", iface, "-n", "-q", "-f", "-t", tries, "-T", "1", "-A", "1", "-s",
        ])
        .arg(&script)
        .output()
        .unwrap();
    fs::read_to_string(format!("{}.{iface}", out.display())).ok()
}

fn can_run(test: &str, programs: &[(&str, &str)]) -> bool {
    let mut all = vec![("udhcpc", "udhcpc")];
    all.extend_from_slice(programs);
    can_run_with(test, &[ClientKind::Dhclient, ClientKind::Dhcpcd], &all)
}

#[test]
fn real_clients_get_what_the_manager_allocated_within_a_second_and_delete_ends_the_lease() {
    if !can_run("manager: real clients", &[]) {
        return;
    }
    let mut c = Cloud::build("mgr", 3, "");
    c.vmnet();
    c.start();
    // Three real clients, each asked for exactly 1 s after its server's create returned: the
    // daemon served the create by then (one DISCOVER, no retry).
    let kinds = [ClientKind::Dhclient, ClientKind::Udhcpc, ClientKind::Dhcpcd];
    let mut ips = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let name = format!("vm-{}", i + 1);
        let created = Instant::now();
        let s = c.create(&name, i, &["eth0"], &[]);
        let ip = s["addresses"][0]["address"].as_str().unwrap().to_string();
        if kind == ClientKind::Udhcpc {
            std::thread::sleep(Duration::from_secs(1).saturating_sub(created.elapsed()));
            let got =
                udhcpc(&c.lab.dir, &c.lab.instances[i].ns, "eth0", "1").unwrap_or_else(|| {
                    panic!("one DISCOVER 1 s after the create got nothing\n{}", c.log())
                });
            assert!(got.contains(&format!("ip={ip} ")), "{got}");
        } else {
            let run = ClientRun::new(&c.lab.instances[i], kind, &c.lab.dir).unwrap();
            let out = run
                .obtain()
                .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", c.log()));
            let got = match kind {
                // dhcpcd in test mode prints what it got instead of running a hook.
                ClientKind::Dhcpcd => netnode::lab::clients::parse_dhcpcd_output(
                    &String::from_utf8_lossy(&out.stdout),
                )
                .acquired(),
                _ => run.acquired().expect("the hook saw an address"),
            };
            assert_eq!(got.ip, Some(ip.parse().unwrap()), "{kind:?}");
            if kind == ClientKind::Dhclient {
                // dhcpcd with no config asks for no host name.
                assert_eq!(got.hostname.as_deref(), Some(name.as_str()));
                assert_eq!(got.domain.as_deref(), Some("novalocal"));
            }
        }
        ips.push(ip);
    }
    assert!(
        c.log()
            .contains("table reloaded (the manager's database changed)"),
        "{}",
        c.log()
    );
    // nova-dhcpbridge's flags: every lease marked leased (dhcpcd's test mode takes no lease).
    for ip in &ips[..2] {
        let log = c.log();
        eventually(
            &format!("leased flag of {ip}\n{log}"),
            Duration::from_secs(3),
            || c.leased(ip),
        );
    }
    // server delete ends the lease (force_dhcp_release): gone from the lease file and the
    // flags at once, and the client's next request is refused.
    let lease_file = c.lab.dir.join("state/dnsmasq.leases");
    let holds = |ip: &str| {
        fs::read_to_string(&lease_file)
            .unwrap_or_default()
            .contains(&format!(" {ip} "))
    };
    eventually(
        "the lease file has the lease",
        Duration::from_secs(3),
        || holds(&ips[1]),
    );
    c.ok(&["server", "delete", "vm-2"]);
    eventually("the daemon ended the lease", Duration::from_secs(2), || {
        c.log().contains("leases ended")
    });
    eventually("the lease file lost it", Duration::from_secs(3), || {
        !holds(&ips[1])
    });
    assert!(!c.leased(&ips[1]));
    assert!(
        udhcpc(&c.lab.dir, &c.lab.instances[1].ns, "eth0", "2").is_none(),
        "a deleted server gets no lease"
    );
    // The others keep theirs.
    let leases = fs::read_to_string(&lease_file).unwrap();
    assert!(leases.contains(&format!(" {} ", ips[0])), "{leases}");
    assert!(c.leased(&ips[0]));
}

#[test]
fn multinic_two_networks_two_leases_one_default_route() {
    if !can_run("manager: multinic", &[]) {
        return;
    }
    let mut c = Cloud::build("mnic", 1, "use_single_default_gateway = true");
    // A second bridge and a second interface for the instance.
    let srv = &c.lab.server;
    srv.ip(&["link", "add", "br101", "type", "bridge"]).unwrap();
    srv.ip(&["addr", "add", "198.18.2.1/24", "dev", "br101"])
        .unwrap();
    srv.ip(&["link", "set", "br101", "up"]).unwrap();
    let vm = &c.lab.instances[0].ns;
    let tag = std::process::id() % 100_000;
    let (port, peer) = (format!("nm{tag}s"), format!("nm{tag}c"));
    lab::ip(&["link", "add", &port, "type", "veth", "peer", "name", &peer]).unwrap();
    lab::ip(&["link", "set", &port, "netns", srv.name()]).unwrap();
    lab::ip(&["link", "set", &peer, "netns", vm.name()]).unwrap();
    srv.ip(&["link", "set", &port, "master", "br101", "up"])
        .unwrap();
    vm.ip(&["link", "set", &peer, "name", "eth1"]).unwrap();
    vm.ip(&["link", "set", "eth1", "up"]).unwrap();
    c.ok(&[
        "network-create",
        "private",
        "--fixed-range-v4",
        "198.18.0.0/24",
        "--bridge",
        "br100",
    ]);
    c.ok(&[
        "network-create",
        "network2",
        "--fixed-range-v4",
        "198.18.2.0/24",
        "--bridge",
        "br101",
    ]);
    c.start();
    let s = c.create("multi", 0, &["eth0", "eth1"], &[]);
    let a0 = s["addresses"][0]["address"].as_str().unwrap();
    let a1 = s["addresses"][1]["address"].as_str().unwrap();
    let dir = &c.lab.dir;
    let vm = &c.lab.instances[0].ns;
    let l0 =
        udhcpc(dir, vm, "eth0", "3").unwrap_or_else(|| panic!("no lease on eth0\n{}", c.log()));
    let l1 =
        udhcpc(dir, vm, "eth1", "3").unwrap_or_else(|| panic!("no lease on eth1\n{}", c.log()));
    assert_eq!(l0.trim(), format!("ip={a0} router=198.18.0.1"));
    assert_eq!(
        l1.trim(),
        format!("ip={a1} router="),
        "no router for the second NIC"
    );
    let routes =
        String::from_utf8_lossy(&vm.ip(&["route", "show", "default"]).unwrap().stdout).to_string();
    assert_eq!(routes.lines().count(), 1, "{routes}");
    assert!(routes.contains("dev eth0"), "{routes}");
    let list = c.ok(&["server", "list"]);
    assert!(
        list.contains(&format!("private={a0}; network2={a1}")),
        "{list}"
    );
}

#[test]
fn a_floating_ip_associated_through_the_cli_is_reached_from_outside() {
    if !can_run(
        "manager: floating IP",
        &[("nft", "nftables"), ("ping", "iputils-ping")],
    ) {
        return;
    }
    let mut c = Cloud::build("mfip", 1, "");
    // The public side: pub0 in the node, out0 in an outside namespace.
    let tag = std::process::id() % 100_000;
    let out = Netns::add(&format!("nn-mfip-out-{tag}")).unwrap();
    let (a, b) = (format!("nf{tag}p"), format!("nf{tag}o"));
    lab::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]).unwrap();
    lab::ip(&["link", "set", &a, "netns", c.lab.server.name()]).unwrap();
    lab::ip(&["link", "set", &b, "netns", out.name()]).unwrap();
    c.lab
        .server
        .ip(&["link", "set", &a, "name", "pub0"])
        .unwrap();
    c.lab
        .server
        .ip(&["addr", "add", "198.19.0.1/16", "dev", "pub0"])
        .unwrap();
    c.lab.server.ip(&["link", "set", "pub0", "up"]).unwrap();
    out.ip(&["link", "set", &b, "name", "out0"]).unwrap();
    out.ip(&["addr", "add", "198.19.0.2/16", "dev", "out0"])
        .unwrap();
    out.ip(&["link", "set", "out0", "up"]).unwrap();
    let text = fs::read_to_string(&c.config).unwrap();
    fs::write(
        &c.config,
        format!("{text}[control]\nenabled = true\n[nat]\npublic_interface = \"pub0\"\n"),
    )
    .unwrap();
    c.vmnet();
    c.ok(&[
        "floating",
        "create",
        "--pool",
        "nova",
        "--ip_range",
        "198.19.26.170/31",
    ]);
    c.start();
    let s = c.create("vm-1", 0, &["eth0"], &[]);
    let fixed = s["addresses"][0]["address"].as_str().unwrap().to_string();
    let vm = &c.lab.instances[0].ns;
    let got = udhcpc(&c.lab.dir, vm, "eth0", "3").expect("a lease");
    assert!(got.contains(&fixed), "{got}");
    assert!(!ping(&out, "198.19.26.170"), "not associated yet");
    // The default group admits nothing until the seed's rule lets ping in.
    c.ok(&[
        "secgroup",
        "rule",
        "create",
        "--protocol",
        "icmp",
        "default",
    ]);
    let f = c.json(&["floating", "allocate", "--project", "demo"]);
    assert_eq!(f["address"], "198.19.26.170");
    c.ok(&["floating", "associate", "198.19.26.170", "--server", "vm-1"]);
    eventually(
        "the floating IP answers from outside",
        Duration::from_secs(5),
        || ping(&out, "198.19.26.170"),
    );
    let listed = c.ok(&["server", "list"]);
    assert!(
        listed.contains(&format!("vmnet={fixed}, 198.19.26.170")),
        "{listed}"
    );
    // The rule that refuses: an associated floating IP is not deallocated.
    let refused = c.cli(&["floating", "deallocate", "198.19.26.170"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disassociate it first"));
    c.ok(&["floating", "disassociate", "198.19.26.170"]);
    eventually(
        "the floating IP stops answering",
        Duration::from_secs(5),
        || !ping(&out, "198.19.26.170"),
    );
    c.ok(&["floating", "deallocate", "198.19.26.170"]);
}

#[test]
fn nova_files_exported_drive_debian_dnsmasq_to_the_same_answer() {
    if !can_run("manager: export nova", &[("dnsmasq", "dnsmasq")]) {
        return;
    }
    let mut c = Cloud::build("mexp", 1, "");
    c.vmnet();
    let s = c.create("vm-1", 0, &["eth0"], &[]);
    let fixed = s["addresses"][0]["address"].as_str().unwrap().to_string();
    let files = c.lab.dir.join("nova");
    let written = c.ok(&[
        "export",
        "nova",
        "--network",
        "vmnet",
        "--dir",
        files.to_str().unwrap(),
    ]);
    assert!(written.contains("nova-br100.conf"), "{written}");
    let hosts = fs::read_to_string(files.join("nova-br100.conf")).unwrap();
    assert_eq!(
        hosts,
        format!(
            "{},vm-1.novalocal,{fixed}",
            s["addresses"][0]["mac"].as_str().unwrap()
        )
    );
    // Debian's dnsmasq with nova's command line on those files.
    let p = |n: &str| files.join(n).display().to_string();
    let mut dnsmasq = Daemon::start(
        &c.lab.server,
        Path::new("dnsmasq"),
        &[
            "--no-daemon",
            "--conf-file=",
            "--bind-interfaces",
            "--interface=br100",
            "--except-interface=lo",
            "--port=0",
            "--no-hosts",
            &format!("--pid-file={}", p("dnsmasq.pid")),
            &format!("--dhcp-leasefile={}", p("dnsmasq.leases")),
            "--dhcp-range=set:vmnet,198.18.0.2,static,255.255.255.0,120s",
            "--dhcp-lease-max=256",
            &format!("--dhcp-hostsfile={}", p("nova-br100.conf")),
            &format!("--dhcp-optsfile={}", p("nova-br100.opts")),
            &format!("--addn-hosts={}", p("nova-br100.hosts")),
            "--domain=novalocal",
        ],
        &c.lab.dir.join("dnsmasq.log"),
    )
    .unwrap();
    let vm = &c.lab.instances[0].ns;
    let from_dnsmasq = udhcpc(&c.lab.dir, vm, "eth0", "5");
    let _ = dnsmasq.stop();
    let from_dnsmasq = from_dnsmasq.unwrap_or_else(|| {
        panic!(
            "dnsmasq gave nothing: {}",
            fs::read_to_string(c.lab.dir.join("dnsmasq.log")).unwrap_or_default()
        )
    });
    vm.ip(&["-4", "addr", "flush", "dev", "eth0"]).unwrap();
    c.start();
    let vm = &c.lab.instances[0].ns;
    let from_netnode = udhcpc(&c.lab.dir, vm, "eth0", "5").expect("netnode answers");
    assert_eq!(from_dnsmasq, from_netnode);
    assert_eq!(from_netnode.trim(), format!("ip={fixed} router=198.18.0.1"));
}

#[test]
fn the_daemon_follows_the_database_through_restarts_a_deleted_file_and_a_restore() {
    if !can_run("manager: restarts", &[]) {
        return;
    }
    let mut c = Cloud::build("mops", 3, "");
    c.vmnet();
    // Created while no daemon runs: served once it starts.
    let s1 = c.create("vm-1", 0, &["eth0"], &[]);
    c.start();
    let ip1 = s1["addresses"][0]["address"].as_str().unwrap().to_string();
    let got = udhcpc(&c.lab.dir, &c.lab.instances[0].ns, "eth0", "3").expect("served");
    assert!(got.contains(&ip1), "{got}");
    // A second daemon on the same state directory is refused; the first keeps serving.
    let second = c
        .lab
        .server
        .command(common::netnode())
        .args(["serve", "--config", c.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second daemon started");
    // Killed (no clean stop) and started again: the lease and the bindings are all there.
    c.daemon.as_mut().unwrap().kill9().unwrap();
    c.daemon = None;
    let s2 = c.create("vm-2", 1, &["eth0"], &[]);
    c.start();
    let ip2 = s2["addresses"][0]["address"].as_str().unwrap().to_string();
    let got =
        udhcpc(&c.lab.dir, &c.lab.instances[1].ns, "eth0", "3").expect("served after a crash");
    assert!(got.contains(&ip2), "{got}");
    assert!(c.leased(&ip1), "the first lease survived the crash");
    // The database file deleted under the daemon: a missing database is not an empty one, so
    // everything is still served.
    let db = c.lab.dir.join("state/manager.db");
    let backup = c.lab.dir.join("manager.backup.db");
    c.ok(&["fixed", "list"]); // a checkpointed, quiet database
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(".backup {}", backup.display()))
        .output();
    let have_sqlite3 = out.as_ref().is_ok_and(|o| o.status.success());
    if !have_sqlite3 {
        fs::copy(&db, &backup).unwrap();
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = udhcpc(&c.lab.dir, &c.lab.instances[0].ns, "eth0", "3").expect("still served");
    assert!(got.contains(&ip1), "{got}");
    eventually("the daemon saw the file go", Duration::from_secs(2), || {
        c.log().contains("database file is gone")
    });
    // A SIGHUP meanwhile is refused, not read as an empty database (which would end every
    // lease and unplumb every network).
    c.daemon.as_ref().unwrap().signal(libc::SIGHUP);
    eventually("the SIGHUP refused", Duration::from_secs(3), || {
        c.log()
            .contains("reload refused (SIGHUP): the manager's database is gone")
    });
    assert!(!c.log().contains("leases ended"), "{}", c.log());
    let got = udhcpc(&c.lab.dir, &c.lab.instances[1].ns, "eth0", "3").expect("still served");
    assert!(got.contains(&ip2), "{got}");
    // Restored (a new file in its place): read, and served within a second.
    fs::copy(&backup, &db).unwrap();
    eventually(
        "the restored database is read",
        Duration::from_secs(3),
        || c.log().contains("database file was replaced"),
    );
    let s3 = c.create("vm-3", 2, &["eth0"], &[]);
    let ip3 = s3["addresses"][0]["address"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let got = udhcpc(&c.lab.dir, &c.lab.instances[2].ns, "eth0", "1").expect("served");
    assert!(got.contains(&ip3), "{got}");
}
