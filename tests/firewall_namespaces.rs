//! The instance firewall with real traffic, in network namespaces: the manager's servers on a
//! bridge whose ports carry the manager's device names, the daemon applying `bridge netnode`
//! and `inet netnode_sg`, and scapy, Debian's dnsmasq and radvd, ping and TCP in the
//! instances. Addresses: 198.18.0.0/24 and fd00:16::/64.

#![allow(clippy::disallowed_methods)] // a test reads the clock

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::cloud::{eventually, Cloud};
use common::{can_run_with, ping};
use netnode::lab::clients::{ClientKind, ClientRun};
use netnode::lab::Netns;
use serde_json::Value;

/// Debian's python3 (scapy is its package; a pyenv python on PATH has no scapy).
const PYTHON: &str = "/usr/bin/python3";

/// A cloud of `n` servers in project demo on br100, each plugged into a port named as the
/// manager says, with its fixed IP set statically (DHCP is tested on its own); the daemon
/// runs with `[control]` and `control_extra`.
struct Fw {
    c: Cloud,
    servers: Vec<Value>,
}

impl Fw {
    /// `made`: groups to create first; `groups[i]`: server i's groups (none: the default).
    fn new(
        label: &str,
        n: usize,
        control_extra: &str,
        v6: bool,
        made: &[&str],
        groups: &[&[&str]],
    ) -> Fw {
        let mut c = Cloud::build(label, n, "");
        let mut text = std::fs::read_to_string(&c.config).unwrap();
        text.push_str(&format!(
            "[control]\nenabled = true\n{control_extra}\n[metadata]\nlisten = \"0.0.0.0:8775\"\n"
        ));
        std::fs::write(&c.config, text).unwrap();
        c.vmnet_with(if v6 {
            &["--fixed-range-v6", "fd00:16::/64"]
        } else {
            &[]
        });
        for name in made {
            c.ok(&["secgroup", "create", name, "--project", "demo"]);
        }
        let mut servers = Vec::new();
        for i in 0..n {
            let mut extra: Vec<&str> = Vec::new();
            for g in groups.get(i).copied().unwrap_or_default() {
                extra.extend(["--security-group", g]);
            }
            let s = c.create(&format!("vm-{}", i + 1), i, &["eth0"], &extra);
            let port = s["addresses"][0]["port"].as_str().unwrap().to_string();
            c.lab.rename_port(i, &port).unwrap();
            servers.push(s);
        }
        Fw { c, servers }
    }

    /// Gives each instance its fixed IP (as a DHCP client would) and starts the daemon.
    fn start_static(&mut self) {
        for i in 0..self.servers.len() {
            let ip = self.ip(i);
            self.ns(i)
                .ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
                .unwrap();
            self.ns(i)
                .ip(&["route", "add", "default", "via", "198.18.0.1"])
                .unwrap();
        }
        self.c.start();
    }

    fn ns(&self, i: usize) -> &Netns {
        &self.c.lab.instances[i].ns
    }

    fn ip(&self, i: usize) -> String {
        self.servers[i]["addresses"][0]["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn mac(&self, i: usize) -> String {
        self.servers[i]["addresses"][0]["mac"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn port(&self, i: usize) -> String {
        self.c.lab.instances[i].port.clone()
    }

    /// `nft` in the server namespace.
    fn nft(&self, args: &[&str]) -> String {
        let out = self
            .c
            .lab
            .server
            .command("nft")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Waits until the bridge table filters every port.
    fn wait_applied(&self) {
        eventually("the firewall tables", Duration::from_secs(10), || {
            let t = self.nft(&["list", "set", "bridge", "netnode", "ports"]);
            (0..self.servers.len()).all(|i| t.contains(&format!("\"{}\"", self.port(i))))
        });
    }

    /// `netnode net plan` in the server namespace: what a pass would still do.
    fn plan(&self) -> String {
        let out = self
            .c
            .lab
            .server
            .command(common::netnode())
            .args(["net", "plan", "--config", self.c.config.to_str().unwrap()])
            .current_dir(&self.c.lab.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// A named counter's packets.
    fn counter(&self, name: &str) -> u64 {
        let t = self.nft(&["list", "counter", "bridge", "netnode", name]);
        t.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

fn tcp(ns: &Netns, to: &str, port: u16) -> bool {
    ns.command(PYTHON)
        .args([
            "-c",
            &format!(
                "import socket; socket.create_connection(({to:?}, {port}), timeout=1).close()"
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A process ended (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP echo server on `port` (IPv4 and IPv6) in `ns`.
fn listen(ns: &Netns, port: u16) -> Proc {
    let script = format!(
        "import socket, threading\n\
         s = socket.socket(socket.AF_INET6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('::', {port})); s.listen(16)\n\
         def echo(c):\n\
         \x20   while True:\n\
         \x20       d = c.recv(100)\n\
         \x20       if not d: break\n\
         \x20       c.sendall(d)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   threading.Thread(target=echo, args=(c,), daemon=True).start()\n"
    );
    let child = ns
        .command(PYTHON)
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Proc(child)
}

/// A TCP flow that stays open: a line every 200 ms, each echoed; prints `ok` per echo and
/// `broken` when one does not come back within a second.
fn flow(ns: &Netns, to: &str, port: u16) -> (Child, std::sync::mpsc::Receiver<String>) {
    let script = format!(
        "import socket, time, sys\n\
         c = socket.create_connection(({to:?}, {port}), timeout=1)\n\
         while True:\n\
         \x20   try:\n\
         \x20       c.sendall(b'x\\n'); c.recv(10)\n\
         \x20       print('ok', flush=True)\n\
         \x20   except Exception:\n\
         \x20       print('broken', flush=True); sys.exit(0)\n\
         \x20   time.sleep(0.2)\n"
    );
    let mut child = ns
        .command(PYTHON)
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs a scapy snippet in `ns` (`sendp` on eth0).
fn scapy(ns: &Netns, code: &str) {
    let out = ns
        .command(PYTHON)
        .args([
            "-c",
            &format!("from scapy.all import *\nconf.verb = 0\n{code}\n"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tcpdump on `iface` in `ns` for up to `secs`, counting packets that match `filter`.
fn capture(ns: &Netns, iface: &str, filter: &str, secs: u32) -> Child {
    let child = ns
        .command("timeout")
        .args([&secs.to_string(), "tcpdump", "-i", iface, "-n", "-l", "-p"])
        .args(filter.split(' '))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child
}

fn captured(c: Child) -> usize {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines().filter(|l| l.contains(" IP")).count()
}

fn can_run(test: &str) -> bool {
    can_run_with(
        test,
        &[ClientKind::Udhcpc],
        &[
            ("nft", "nftables"),
            (PYTHON, "python3-scapy"),
            ("tcpdump", "tcpdump"),
            ("dnsmasq", "dnsmasq-base"),
            ("radvd", "radvd"),
            ("ping", "iputils-ping"),
        ],
    )
}

/// Test 1 and 2: spoofed MAC, IP and ARP from vm-1 reach neither vm-2 nor the gateway, its real
/// traffic does; a DHCP server and radvd in vm-1 cannot serve vm-2, which gets its lease from
/// netnode; each drop counted on vm-1's port.
#[test]
fn spoofing_and_rogue_servers_are_stopped_at_the_port() {
    if !can_run("firewall spoofing") {
        return;
    }
    let mut fw = Fw::new("fwspf", 2, "", true, &[], &[]);
    // vm-1 gets its address statically; vm-2 asks for its own by DHCP below.
    let ip1 = fw.ip(0);
    fw.ns(0)
        .ip(&["addr", "add", &format!("{ip1}/24"), "dev", "eth0"])
        .unwrap();
    // The test's UDP is let in, so only the anti-spoofing can stop a spoofed frame.
    fw.c.ok(&[
        "secgroup",
        "rule",
        "create",
        "--protocol",
        "udp",
        "--dst-port",
        "9999",
        "default",
    ]);
    fw.c.start();
    fw.wait_applied();
    let (ip2, mac1, mac2) = (fw.ip(1), fw.mac(0), fw.mac(1));
    let port1 = fw.port(0);

    // Rogue servers in vm-1 first, so vm-2's DHCP client meets them.
    let dir = fw.c.lab.dir.clone();
    let mut dnsmasq = fw
        .ns(0)
        .command("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--dhcp-range=198.18.0.200,198.18.0.210,2m",
            "--dhcp-leasefile=/dev/null",
            &format!("--pid-file={}", dir.join("rogue.pid").display()),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(
        dir.join("radvd.conf"),
        "interface eth0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 4;\n \
         prefix fd00:bad::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n",
    )
    .unwrap();
    fw.ns(0)
        .command("sysctl")
        .args(["-q", "-w", "net.ipv6.conf.all.forwarding=1"])
        .status()
        .unwrap();
    let mut radvd = fw
        .ns(0)
        .command("radvd")
        .args([
            "--nodaemon",
            "-C",
            &dir.join("radvd.conf").display().to_string(),
            "-p",
            &dir.join("radvd.pid").display().to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let vm2 = &fw.c.lab.instances[1];
    let run = ClientRun::new(vm2, ClientKind::Udhcpc, &dir).unwrap();
    let out = run.obtain().unwrap();
    let got = run.acquired().unwrap_or_else(|| {
        panic!(
            "vm-2 got no lease: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        got.ip.map(|a| a.to_string()).as_deref(),
        Some(ip2.as_str()),
        "vm-2's lease comes from netnode"
    );
    // dnsmasq never even hears vm-2's broadcast (a port receives only what is for its own
    // addresses); a forged offer, from port 67 or any other, is stopped at vm-1's port.
    let to_vm2 = capture(fw.ns(1), "eth0", "udp port 68", 3);
    scapy(
        fw.ns(0),
        &format!(
            "for sport in (67, 6767):\n\
             \x20   sendp(Ether(src='{mac1}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{ip1}', dst='255.255.255.255')/UDP(sport=sport, dport=68)/BOOTP(op=2, yiaddr='198.18.0.201', chaddr=bytes.fromhex('{}'))/DHCP(options=[('message-type', 'offer'), ('server_id', '{ip1}'), 'end']), iface='eth0')",
            mac2.replace(':', "")
        ),
    );
    assert_eq!(captured(to_vm2), 0, "a forged DHCP offer reached vm-2");
    assert!(fw.counter(&format!("dhcp_guard_{port1}")) >= 2);
    // radvd advertises every 3-4 s; vm-2 must never take its prefix.
    eventually("the RA guard counted radvd", Duration::from_secs(8), || {
        fw.counter(&format!("ra_guard_{port1}")) > 0
    });
    std::thread::sleep(Duration::from_secs(1));
    let addrs = netnode::lab::Lab::ipv6_addresses(vm2, "global");
    assert!(
        !addrs.iter().any(|a| a.segments()[..2] == [0xfd00, 0x0bad]),
        "vm-2 took radvd's prefix: {addrs:?}"
    );
    let _ = dnsmasq.kill();
    let _ = radvd.kill();
    let _ = dnsmasq.wait();
    let _ = radvd.wait();

    // vm-2 and the gateway know each other's real MACs.
    assert!(ping(fw.ns(1), "198.18.0.1"), "vm-2 reaches the gateway");
    let gw_mac = {
        let out =
            fw.c.lab
                .server
                .ip(&["-j", "link", "show", "br100"])
                .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    };
    let spoof_before = fw.counter(&format!("spoof_{port1}"));
    let to_vm2 = capture(fw.ns(1), "eth0", "udp port 9999", 4);
    let to_gw = capture(&fw.c.lab.server, "br100", "udp port 9999", 4);
    scapy(
        fw.ns(0),
        &format!(
            "sendp(Ether(src='fa:16:3e:99:99:99', dst='{mac2}')/IP(src='{ip1}', dst='{ip2}')/UDP(dport=9999)/'mac', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='{mac2}')/IP(src='198.18.0.250', dst='{ip2}')/UDP(dport=9999)/'ip', iface='eth0')\n\
             sendp(Ether(src='fa:16:3e:99:99:98', dst='{gw_mac}')/IP(src='{ip1}', dst='198.18.0.1')/UDP(dport=9999)/'mac', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='{gw_mac}')/IP(src='198.18.0.251', dst='198.18.0.1')/UDP(dport=9999)/'ip', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='{mac2}')/ARP(op=2, hwsrc='{mac1}', psrc='198.18.0.1', hwdst='{mac2}', pdst='{ip2}'), iface='eth0', count=3)\n\
             sendp(Ether(src='{mac1}', dst='{gw_mac}')/ARP(op=2, hwsrc='{mac1}', psrc='{ip2}', hwdst='{gw_mac}', pdst='198.18.0.1'), iface='eth0', count=3)"
        ),
    );
    assert_eq!(captured(to_vm2), 0, "a spoofed frame reached vm-2");
    assert_eq!(captured(to_gw), 0, "a spoofed frame reached the gateway");
    let neigh = |ns: &Netns, ip: &str| {
        String::from_utf8_lossy(&ns.ip(&["neigh", "show", ip]).unwrap().stdout).to_string()
    };
    assert!(
        !neigh(fw.ns(1), "198.18.0.1").contains(&mac1),
        "vm-2's ARP entry for the gateway was poisoned"
    );
    assert!(
        !neigh(&fw.c.lab.server, &ip2).contains(&mac1),
        "the gateway's ARP entry for vm-2 was poisoned"
    );
    assert!(
        fw.counter(&format!("spoof_{port1}")) >= spoof_before + 10,
        "each spoofed frame counted on vm-1's port"
    );
    // vm-1's real frames pass.
    let to_vm2 = capture(fw.ns(1), "eth0", "udp port 9999", 3);
    let to_gw = capture(&fw.c.lab.server, "br100", "udp port 9999", 3);
    scapy(
        fw.ns(0),
        &format!(
            "sendp(Ether(src='{mac1}', dst='{mac2}')/IP(src='{ip1}', dst='{ip2}')/UDP(dport=9999)/'real', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='{gw_mac}')/IP(src='{ip1}', dst='198.18.0.1')/UDP(dport=9999)/'real', iface='eth0')"
        ),
    );
    assert_eq!(captured(to_vm2), 1, "vm-1's real frame reaches vm-2's port");
    assert_eq!(captured(to_gw), 1, "vm-1's real frame reaches the gateway");
    // Groups judge by destination address: broadcast, and another address at vm-2's MAC,
    // must not get around them (vm-2's port takes only its own addresses).
    let to_vm2 = capture(fw.ns(1), "eth0", "udp port 9999", 3);
    scapy(
        fw.ns(0),
        &format!(
            "sendp(Ether(src='{mac1}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{ip1}', dst='255.255.255.255')/UDP(dport=9999)/'b', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{ip1}', dst='198.18.0.255')/UDP(dport=9999)/'b', iface='eth0')\n\
             sendp(Ether(src='{mac1}', dst='{mac2}')/IP(src='{ip1}', dst='198.18.0.77')/UDP(dport=9999)/'o', iface='eth0')"
        ),
    );
    assert_eq!(
        captured(to_vm2),
        0,
        "broadcast or a foreign address reached vm-2"
    );
    assert!(fw.counter(&format!("not_own_{}", fw.port(1))) >= 3);
    assert!(ping(fw.ns(0), "198.18.0.1"), "vm-1 reaches the gateway");
}

/// Test 3 and 4: nothing gets in before a rule; the seed's two rules open ping and SSH within
/// a second; deleting them closes both, the open flow included; a remote-group rule admits
/// only the group's members.
#[test]
fn security_groups_open_and_close_with_the_seeds_commands() {
    if !can_run("firewall security groups") {
        return;
    }
    let mut fw = Fw::new(
        "fwsg",
        3,
        "",
        false,
        &["bastion", "web"],
        &[&["default", "bastion"], &[], &["web"]],
    );
    fw.start_static();
    fw.wait_applied();
    let (ip2, ip3) = (fw.ip(1), fw.ip(2));
    let _l2 = listen(fw.ns(1), 22);
    let _l3 = listen(fw.ns(2), 22);
    assert!(!ping(fw.ns(0), &ip2), "ping got in with no rule");
    assert!(!tcp(fw.ns(0), &ip2, 22), "TCP 22 got in with no rule");
    assert!(ping(fw.ns(0), "198.18.0.1"), "egress is open");
    // Metadata works whatever the groups say.
    let md = fw
        .ns(0)
        .command("curl")
        .args([
            "-sf",
            "-m",
            "3",
            "http://169.254.169.254/latest/meta-data/hostname",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&md.stdout).starts_with("vm-1"),
        "metadata: {}",
        String::from_utf8_lossy(&md.stderr)
    );

    let at = Instant::now();
    fw.c.ok(&[
        "secgroup",
        "rule",
        "create",
        "--protocol",
        "icmp",
        "default",
    ]);
    fw.c.ok(&[
        "secgroup",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "22:22",
        "default",
    ]);
    eventually("ping and SSH open", Duration::from_secs(3), || {
        ping(fw.ns(0), &ip2) && tcp(fw.ns(0), &ip2, 22)
    });
    eprintln!("rules applied and effective in {:?}", at.elapsed());
    // What was applied reads back as written: nothing left to do (no table rewritten at every
    // pass).
    let plan = fw.plan();
    assert!(plan.contains("nothing to do"), "{plan}");

    let (mut open, lines) = flow(fw.ns(0), &ip2, 22);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(3)).as_deref(),
        Ok("ok"),
        "the flow works"
    );
    let rules = fw.c.json(&["secgroup", "rule", "list", "default"]);
    let id = |proto: &str| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["protocol"] == proto.parse::<u64>().unwrap() && r["direction"] == "ingress")
            .map(|r| r["id"].to_string())
            .unwrap()
    };
    let (tcp_rule, icmp_rule) = (id("6"), id("1"));
    fw.c.ok(&["secgroup", "rule", "delete", &tcp_rule]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut broken = false;
    while Instant::now() < deadline {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
            if l == "broken" {
                broken = true;
                break;
            }
        }
    }
    let _ = open.kill();
    let _ = open.wait();
    assert!(
        broken,
        "the open SSH flow kept working after its rule was deleted"
    );
    assert!(!tcp(fw.ns(0), &ip2, 22), "a new SSH flow got in");
    assert!(ping(fw.ns(0), &ip2), "ping still has its rule");
    fw.c.ok(&["secgroup", "rule", "delete", &icmp_rule]);
    eventually("ping closed", Duration::from_secs(3), || {
        !ping(fw.ns(0), &ip2)
    });

    // vm-3 (web) admits SSH only from members of bastion (vm-1), not vm-2.
    fw.c.ok(&[
        "secgroup",
        "rule",
        "create",
        "web",
        "--protocol",
        "tcp",
        "--dst-port",
        "22",
        "--remote-group",
        "bastion",
    ]);
    eventually("bastion reaches web", Duration::from_secs(3), || {
        tcp(fw.ns(0), &ip3, 22)
    });
    assert!(!tcp(fw.ns(1), &ip3, 22), "a non-member got in");
    // A member added later gets in too.
    fw.c.lab.add_instance().unwrap();
    let late = 3;
    let s =
        fw.c.create("vm-4", late, &["eth0"], &["--security-group", "bastion"]);
    let port = s["addresses"][0]["port"].as_str().unwrap().to_string();
    fw.c.lab.rename_port(late, &port).unwrap();
    let ip4 = s["addresses"][0]["address"].as_str().unwrap().to_string();
    fw.c.lab.instances[late]
        .ns
        .ip(&["addr", "add", &format!("{ip4}/24"), "dev", "eth0"])
        .unwrap();
    eventually("a new member reaches web", Duration::from_secs(3), || {
        tcp(&fw.c.lab.instances[late].ns, &ip3, 22)
    });
}

/// Test 5: the same over SLAAC addresses (ICMPv6 echo and TCP); neighbour discovery keeps
/// working throughout.
#[test]
fn ipv6_groups_over_slaac_addresses() {
    if !can_run("firewall IPv6") {
        return;
    }
    let mut fw = Fw::new("fwsix", 2, "", true, &[], &[]);
    fw.start_static();
    fw.wait_applied();
    let global = |i: usize| {
        let inst = &fw.c.lab.instances[i];
        let mut found = None;
        eventually("a SLAAC address", Duration::from_secs(15), || {
            found = netnode::lab::Lab::ipv6_addresses(inst, "global")
                .into_iter()
                .find(|a| a.segments()[..2] == [0xfd00, 0x16]);
            found.is_some()
        });
        found.unwrap().to_string()
    };
    let a2 = global(1);
    let _a1 = global(0);
    let _l = listen(fw.ns(1), 22);
    assert!(!ping(fw.ns(0), &a2), "ICMPv6 echo got in with no rule");
    assert!(!tcp(fw.ns(0), &a2, 22), "TCP got in with no rule");
    // Neighbour discovery worked all along: vm-1 resolved vm-2.
    let neigh =
        String::from_utf8_lossy(&fw.ns(0).ip(&["-6", "neigh", "show", &a2]).unwrap().stdout)
            .to_string();
    assert!(
        neigh.contains(&fw.mac(1)),
        "vm-1 did not resolve vm-2: {neigh}"
    );
    for args in [
        &["--protocol", "icmp", "--ethertype", "IPv6"][..],
        &[
            "--protocol",
            "tcp",
            "--dst-port",
            "22:22",
            "--ethertype",
            "IPv6",
        ][..],
    ] {
        let mut a = vec!["secgroup", "rule", "create", "default"];
        a.extend_from_slice(args);
        fw.c.ok(&a);
    }
    eventually("ICMPv6 echo and TCP open", Duration::from_secs(3), || {
        ping(fw.ns(0), &a2) && tcp(fw.ns(0), &a2, 22)
    });
    // IPv4 stays closed: the rules were IPv6 ones.
    assert!(!tcp(fw.ns(0), &fw.ip(1), 22), "an IPv6 rule opened IPv4");
}

/// Test 6: `firewall_driver = "noop"`: no table, everything passes, spoofing included.
#[test]
fn noop_driver_filters_nothing() {
    if !can_run("firewall noop") {
        return;
    }
    let mut fw = Fw::new("fwnoop", 2, "firewall_driver = \"noop\"", false, &[], &[]);
    fw.start_static();
    let ip2 = fw.ip(1);
    let _l = listen(fw.ns(1), 22);
    eventually("ping passes", Duration::from_secs(5), || {
        ping(fw.ns(0), &ip2)
    });
    assert!(tcp(fw.ns(0), &ip2, 22), "TCP passes");
    let tables = fw.nft(&["list", "tables"]);
    assert!(
        !tables.contains("netnode_sg") && !tables.contains("bridge netnode"),
        "{tables}"
    );
    let to_vm2 = capture(fw.ns(1), "eth0", "udp port 9999", 3);
    scapy(
        fw.ns(0),
        &format!(
            "sendp(Ether(src='fa:16:3e:99:99:99', dst='{}')/IP(src='198.18.0.250', dst='{ip2}')/UDP(dport=9999), iface='eth0')",
            fw.mac(1)
        ),
    );
    assert_eq!(captured(to_vm2), 1, "noop drops nothing");
}
