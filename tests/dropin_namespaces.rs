//! Drop-in mode, run exactly as nova runs dnsmasq, radvd and dhcp_release (through `env`, with
//! files in a networks directory, symlinks named like the programs), in network namespaces
//! (root). Each test builds its own lab and removes it in Drop.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{can_run_with, netnode};
use netnode::lab::clients::{ClientKind, ClientRun};
use netnode::lab::Lab;
use netnode::table::ipv6::{instance_address, Backend};

/// A lab, a networks directory as nova keeps it, and the programs as symlinks.
struct Nova {
    lab: Lab,
    networks: PathBuf,
    bin: PathBuf,
}

const SCRIPT: &str = r#"#!/bin/sh
# nova-dhcpbridge's stand-in: record every call with its arguments and environment.
echo "$* | CONFIG_FILE=$CONFIG_FILE NETWORK_ID=$NETWORK_ID DNSMASQ_INTERFACE=$DNSMASQ_INTERFACE DNSMASQ_LEASE_EXPIRES=$DNSMASQ_LEASE_EXPIRES" >> "@LOG@"
if [ "$1" = init ]; then echo "0 fa:16:3e:99:99:99 198.18.0.99 old-vm *"; fi
exit 0
"#;

impl Nova {
    fn new(label: &str, instances: usize) -> Nova {
        let lab = Lab::build(label, instances, "198.18.0.1".parse().unwrap(), 24).unwrap();
        let networks = lab.dir.join("networks");
        let bin = lab.dir.join("bin");
        fs::create_dir_all(&networks).unwrap();
        fs::create_dir_all(&bin).unwrap();
        for name in ["dnsmasq", "radvd", "dhcp_release"] {
            std::os::unix::fs::symlink(netnode(), bin.join(name)).unwrap();
        }
        let script = bin.join("nova-dhcpbridge");
        fs::write(
            &script,
            SCRIPT.replace("@LOG@", &lab.dir.join("script.log").display().to_string()),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // nova writes the hosts file without a trailing newline.
        let hosts: Vec<String> = (1..instances).map(|i| host_line(&lab, i)).collect();
        fs::write(networks.join("nova-br100.conf"), hosts.join("\n")).unwrap();
        fs::write(networks.join("nova-br100.opts"), "3,198.18.0.1").unwrap();
        fs::write(
            networks.join("nova-br100.hosts"),
            "198.18.0.10\tvm-1.novalocal\n",
        )
        .unwrap();
        Nova { lab, networks, bin }
    }

    fn file(&self, name: &str) -> String {
        self.networks.join(name).display().to_string()
    }

    /// nova's dnsmasq command line for br100 (linux_net.py), with `program` as dnsmasq.
    fn dnsmasq_args(&self, script: &Path) -> Vec<String> {
        [
            "--strict-order".to_string(),
            "--bind-interfaces".into(),
            "--conf-file=".into(),
            format!("--pid-file={}", self.file("nova-br100.pid")),
            format!("--dhcp-optsfile={}", self.file("nova-br100.opts")),
            "--listen-address=198.18.0.1".into(),
            "--except-interface=lo".into(),
            "--dhcp-range=set:private,198.18.0.2,static,255.255.255.0,86400s".into(),
            "--dhcp-lease-max=256".into(),
            format!("--dhcp-hostsfile={}", self.file("nova-br100.conf")),
            format!("--dhcp-script={}", script.display()),
            "--no-hosts".into(),
            "--leasefile-ro".into(),
            "--domain=novalocal".into(),
            format!("--addn-hosts={}", self.file("nova-br100.hosts")),
        ]
        .to_vec()
    }

    /// Runs `env CONFIG_FILE=... NETWORK_ID=1 <program> args...` in the server namespace, as
    /// nova's utils.execute does; returns the exit status and output.
    fn nova_runs(&self, program: &Path, args: &[String]) -> std::process::Output {
        self.lab
            .server
            .command("env")
            .arg("CONFIG_FILE=[\"/etc/nova/nova-dhcpbridge.conf\"]")
            .arg("NETWORK_ID=1")
            .arg(format!(
                "NETNODE_LOG_FILE={}",
                self.lab.dir.join("netnode.log").display()
            ))
            .arg(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn start_dnsmasq(&self) -> i32 {
        let out = self.nova_runs(
            &self.bin.join("dnsmasq"),
            &self.dnsmasq_args(&self.bin.join("nova-dhcpbridge")),
        );
        assert!(
            out.status.success(),
            "dnsmasq exited {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.pid("nova-br100.pid")
    }

    fn pid(&self, file: &str) -> i32 {
        fs::read_to_string(self.networks.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.lab.dir.join("netnode.log")).unwrap_or_default()
    }

    fn script_log(&self) -> String {
        fs::read_to_string(self.lab.dir.join("script.log")).unwrap_or_default()
    }

    fn wait_script(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let text = self.script_log();
            if text.contains(needle) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the script never saw {needle:?}:\n{}\nnetnode log:\n{}",
            self.script_log(),
            self.log()
        );
    }

    fn release(&self, program: &Path, i: usize) -> std::process::Output {
        let inst = &self.lab.instances[i - 1];
        let args = [
            "br100".to_string(),
            self.lab.instance_ip(i).to_string(),
            inst.mac.to_string(),
        ];
        self.nova_runs(program, &args)
    }
}

fn host_line(lab: &Lab, i: usize) -> String {
    format!(
        "{},vm-{i}.novalocal,{}",
        lab.instances[i - 1].mac,
        lab.instance_ip(i)
    )
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is a daemon this test started.
    unsafe { libc::kill(pid, sig) };
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn dnsmasq_as_nova_runs_it_serves_reloads_and_calls_its_script() {
    if !can_run_with("dmnova", &[ClientKind::Udhcpc], &[]) {
        return;
    }
    let nova = Nova::new("dmnova", 3);
    let pid = nova.start_dnsmasq();
    // The daemon keeps its arguments: nova looks for nova-br100.conf before it sends HUP.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("nova-br100.conf"));
    // init ran first, with nova's environment; its lease was loaded.
    let log = nova.wait_script("init");
    assert!(
        log.contains("CONFIG_FILE=[\"/etc/nova/nova-dhcpbridge.conf\"] NETWORK_ID=1"),
        "{log}"
    );
    assert!(
        nova.log().contains("loaded leases from the dhcp-script"),
        "{}",
        nova.log()
    );
    // A real client gets its address, router and hostname.
    let run = ClientRun::new(&nova.lab.instances[0], ClientKind::Udhcpc, &nova.lab.dir).unwrap();
    run.obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", nova.log()));
    let got = run.acquired().unwrap();
    assert_eq!(got.ip, Some(nova.lab.instance_ip(1)));
    assert_eq!(got.router, Some("198.18.0.1".parse().unwrap()));
    assert_eq!(got.hostname.as_deref(), Some("vm-1"));
    let mac1 = nova.lab.instances[0].mac.to_string();
    let log = nova.wait_script(&format!("add {mac1} {} vm-1", nova.lab.instance_ip(1)));
    assert!(log.contains("DNSMASQ_INTERFACE=br100"), "{log}");
    // nova adds a host to the hosts file and sends HUP: served without a restart.
    let hosts = format!(
        "{}\n{}",
        fs::read_to_string(nova.networks.join("nova-br100.conf")).unwrap(),
        host_line(&nova.lab, 3)
    );
    fs::write(nova.networks.join("nova-br100.conf"), hosts).unwrap();
    signal(pid, libc::SIGHUP);
    let third = ClientRun::new(&nova.lab.instances[2], ClientKind::Udhcpc, &nova.lab.dir).unwrap();
    third
        .obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", nova.log()));
    assert_eq!(third.acquired().unwrap().ip, Some(nova.lab.instance_ip(3)));
    // On HUP the script hears `old` for the leases held.
    nova.wait_script(&format!("old {mac1}"));
    // An instance delete, in nova's order: the host leaves the hosts file, HUP, then
    // dhcp_release. The lease ends although its binding is gone: the script sees del.
    let hosts: Vec<String> = [2, 3].iter().map(|i| host_line(&nova.lab, *i)).collect();
    fs::write(nova.networks.join("nova-br100.conf"), hosts.join("\n")).unwrap();
    let reloads = nova.log().matches("table reloaded (SIGHUP)").count();
    signal(pid, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while nova.log().matches("table reloaded (SIGHUP)").count() <= reloads {
        assert!(Instant::now() < deadline, "no reload:\n{}", nova.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = nova.release(&nova.bin.join("dhcp_release"), 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nova.wait_script(&format!("del {mac1} {}", nova.lab.instance_ip(1)));
    // dhcp_release fails loudly where it cannot send.
    let bad = nova.nova_runs(
        &nova.bin.join("dhcp_release"),
        &["nosuchif".into(), "198.18.0.10".into(), mac1.clone()],
    );
    assert!(!bad.status.success());
    signal(pid, libc::SIGTERM);
}

#[test]
fn a_kill_9_and_a_new_start_keep_serving_and_keep_the_leases() {
    if !can_run_with("dmkill", &[ClientKind::Udhcpc], &[]) {
        return;
    }
    let nova = Nova::new("dmkill", 2);
    let pid = nova.start_dnsmasq();
    let run = ClientRun::new(&nova.lab.instances[0], ClientKind::Udhcpc, &nova.lab.dir).unwrap();
    run.obtain().unwrap();
    signal(pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid2 = nova.start_dnsmasq();
    assert_ne!(pid, pid2);
    // The journal kept the ACKed lease, and the one init reported at the first start.
    assert!(nova.log().contains("records=2 active=2"), "{}", nova.log());
    run.obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", nova.log()));
    assert_eq!(run.acquired().unwrap().ip, Some(nova.lab.instance_ip(1)));
    signal(pid2, libc::SIGTERM);
}

#[test]
fn a_hup_every_10ms_under_load_drops_no_request() {
    if !can_run_with("dmhup", &[], &[]) {
        return;
    }
    let nova = Nova::new("dmhup", 2);
    let pid = nova.start_dnsmasq();
    let sent = common::dora_under_hup_storm(
        &nova.lab.instances[0],
        pid,
        15,
        Duration::from_secs(2),
        || nova.log(),
    );
    assert!(sent > 100, "the storm sent {sent} signals");
    let reloads = nova.log().matches("table reloaded (SIGHUP)").count();
    assert!(reloads > 5, "only {reloads} reloads:\n{}", nova.log());
    assert!(alive(pid));
    signal(pid, libc::SIGTERM);
}

#[test]
fn unknown_options_and_bad_files_are_errors() {
    if !can_run_with("dmbad", &[], &[]) {
        return;
    }
    let nova = Nova::new("dmbad", 1);
    let out = nova.nova_runs(&nova.bin.join("dnsmasq"), &["--frobnicate".into()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
    let conf = nova.networks.join("bad-ra.conf");
    fs::write(&conf, "interface br100\n{\n   AdvSendAdvert maybe;\n};\n").unwrap();
    let out = nova.nova_runs(
        &nova.bin.join("radvd"),
        &["-C".into(), conf.display().to_string()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("line 3") && err.contains("AdvSendAdvert"),
        "{err}"
    );
}

#[test]
fn radvd_as_nova_runs_it_gives_slaac_and_sigterm_withdraws_the_route() {
    if !can_run_with("dmradvd", &[], &[]) {
        return;
    }
    let nova = Nova::new("dmradvd", 1);
    let conf = nova.networks.join("nova-ra-br100.conf");
    fs::write(&conf, "interface br100\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 3;\n   MaxRtrAdvInterval 10;\n   prefix fd00:1::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n};\n").unwrap();
    let args = [
        "-C".to_string(),
        conf.display().to_string(),
        "-p".into(),
        nova.file("nova-ra-br100.pid"),
    ];
    let out = nova.nova_runs(&nova.bin.join("radvd"), &args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        nova.log()
    );
    let pid = nova.pid("nova-ra-br100.pid");
    // radvd keeps no leases: no store, no state directory, no lock.
    assert!(
        !nova.log().contains("lease journal"),
        "radvd mode opened a lease store:\n{}",
        nova.log()
    );
    let inst = &nova.lab.instances[0];
    inst.ns.ip(&["link", "set", "eth0", "down"]).unwrap();
    inst.ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    let want = instance_address(
        "fd00:1::".parse().unwrap(),
        64,
        inst.mac,
        Backend::Rfc2462,
        None,
    )
    .unwrap();
    let route = || {
        String::from_utf8_lossy(
            &inst
                .ns
                .ip(&["-6", "route", "show", "default"])
                .unwrap()
                .stdout,
        )
        .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(Lab::slaac_addresses(inst).contains(&want) && route().contains("via fe80::")) {
        assert!(
            Instant::now() < deadline,
            "no SLAAC address or default route; log:\n{}",
            nova.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !route().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the default route stayed after SIGTERM; log:\n{}",
            nova.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn netnodes_dhcp_release_ends_a_lease_of_debians_dnsmasq() {
    if !can_run_with(
        "dmreal",
        &[ClientKind::Udhcpc],
        &[("dnsmasq", "dnsmasq-base")],
    ) {
        return;
    }
    let nova = Nova::new("dmreal", 2);
    // Debian's dnsmasq, run with nova's command line (DNS off: nothing else to listen for).
    let mut args = nova.dnsmasq_args(&nova.bin.join("nova-dhcpbridge"));
    args.push("--port=0".into());
    let out = nova.nova_runs(Path::new("/usr/sbin/dnsmasq"), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = nova.pid("nova-br100.pid");
    let run = ClientRun::new(&nova.lab.instances[0], ClientKind::Udhcpc, &nova.lab.dir).unwrap();
    run.obtain().unwrap();
    let mac1 = nova.lab.instances[0].mac.to_string();
    nova.wait_script(&format!("add {mac1}"));
    let out = nova.release(&nova.bin.join("dhcp_release"), 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nova.wait_script(&format!("del {mac1}"));
    signal(pid, libc::SIGTERM);
}

#[test]
fn a_second_dnsmasq_on_a_live_pid_file_is_refused_and_a_stale_one_is_replaced() {
    if !can_run_with("dmtwice", &[], &[]) {
        return;
    }
    let nova = Nova::new("dmtwice", 2);
    let first = nova.start_dnsmasq();
    // Debian's dnsmasq with --port=0 would start a second copy and orphan the first.
    let out = nova.nova_runs(
        &nova.bin.join("dnsmasq"),
        &nova.dnsmasq_args(&nova.bin.join("nova-dhcpbridge")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("already running as pid {first}")),
        "{err}"
    );
    assert!(alive(first));
    assert_eq!(
        nova.pid("nova-br100.pid"),
        first,
        "the pid file is untouched"
    );
    // A stale pid file (its daemon killed) is replaced by the next start.
    signal(first, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(first) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = nova.start_dnsmasq();
    assert_ne!(second, first);
    assert!(alive(second));
    signal(second, libc::SIGTERM);
}

/// Receives syslog datagrams on a socket of the test's own (netnode's `NETNODE_SYSLOG`).
fn syslog_lines(socket: &std::os::unix::net::UnixDatagram, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
            if lines.last().is_some_and(|l| l.contains(needle)) {
                return lines;
            }
        }
    }
    panic!("no syslog line with {needle:?}; got:\n{}", lines.join("\n"));
}

#[test]
fn dnsmasq_logs_to_syslog_as_dnsmasq_does_with_the_facility_asked() {
    if !can_run_with("dmsyslog", &[], &[]) {
        return;
    }
    let nova = Nova::new("dmsyslog", 2);
    let path = nova.lab.dir.join("syslog.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut args = nova.dnsmasq_args(&nova.bin.join("nova-dhcpbridge"));
    args.push("--log-facility=LOCAL0".into());
    // As rootwrap runs it: no NETNODE_LOG_FILE, so the command line decides.
    let out = nova
        .lab
        .server
        .command("env")
        .arg(format!("NETNODE_SYSLOG={}", path.display()))
        .arg(nova.bin.join("dnsmasq"))
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = nova.pid("nova-br100.pid");
    let lines = syslog_lines(&socket, "dhcp listening");
    // LOCAL0 (16) x 8 + informational (6) = 134, tagged as dnsmasq with the daemon's pid.
    let line = lines.iter().find(|l| l.contains("dhcp listening")).unwrap();
    assert!(line.starts_with("<134>"), "{line}");
    assert!(line.contains(&format!("dnsmasq[{pid}]:")), "{line}");
    // A grant says who got what.
    let inst = &nova.lab.instances[0];
    let got = inst
        .ns
        .command(netnode())
        .args(["client", "--iface", "eth0", "--attempts", "2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&got.stdout).contains("kind=ACK"));
    let lines = syslog_lines(&socket, "DHCPACK");
    let ack = lines.iter().find(|l| l.contains("DHCPACK")).unwrap();
    assert!(
        ack.contains(&inst.mac.to_string()) && ack.contains(&nova.lab.instance_ip(1).to_string()),
        "{ack}"
    );
    signal(pid, libc::SIGTERM);
}

/// dig from an instance: status and answer lines.
fn dig_at(
    inst: &netnode::lab::Instance,
    server: &str,
    args: &[&str],
) -> (String, String, Vec<String>) {
    let out = inst
        .ns
        .command("dig")
        .args(["+nocookie", "+time=2", "+tries=1", &format!("@{server}")])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("")
        .to_string();
    let answers = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (status, flags, answers)
}

#[test]
fn dnsmasq_as_nova_runs_it_answers_dns_and_port_0_turns_it_off() {
    if !can_run_with("dmdns", &[], &[("dig", "bind9-dnsutils")]) {
        return;
    }
    let nova = Nova::new("dmdns", 3);
    for i in 1..=3 {
        let inst = &nova.lab.instances[i - 1];
        inst.ns
            .ip(&[
                "addr",
                "add",
                &format!("{}/24", nova.lab.instance_ip(i)),
                "dev",
                "eth0",
            ])
            .unwrap();
    }
    let pid = nova.start_dnsmasq();
    let vm1 = &nova.lab.instances[0];
    let ip2 = nova.lab.instance_ip(2).to_string();
    // Instances resolve each other by the names nova wrote, before any lease.
    let (status, flags, answers) = dig_at(vm1, "198.18.0.1", &["vm-2.novalocal"]);
    assert_eq!(status, "NOERROR");
    assert!(flags.contains("aa"), "{flags}");
    assert_eq!(answers, [format!("vm-2.novalocal. 0 IN A {ip2}")]);
    let (_, _, answers) = dig_at(vm1, "198.18.0.1", &["-x", &ip2]);
    assert_eq!(answers.len(), 1);
    // A new host line and a HUP (nova's way): the new name resolves.
    let hosts = nova.networks.join("nova-br100.conf");
    let mut text = fs::read_to_string(&hosts).unwrap();
    text.push_str(&format!("\n{}", host_line(&nova.lab, 3)));
    fs::write(&hosts, text).unwrap();
    signal(pid, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, answers) = dig_at(vm1, "198.18.0.1", &["vm-3.novalocal"]);
        if status == "NOERROR" && answers.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vm-3 never resolved: {status}\n{}",
            nova.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // --port=0: DHCP only, no DNS socket at all.
    let mut args = nova.dnsmasq_args(&nova.bin.join("nova-dhcpbridge"));
    args.push("--port=0".into());
    let out = nova.nova_runs(&nova.bin.join("dnsmasq"), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = nova.pid("nova-br100.pid");
    let (status, _, _) = dig_at(vm1, "198.18.0.1", &["vm-2.novalocal"]);
    assert_eq!(status, "no answer");
    signal(pid, libc::SIGTERM);
}

#[test]
fn netnode_and_debians_dnsmasq_answer_alike() {
    if !can_run_with(
        "dmdnscmp",
        &[],
        &[("dig", "bind9-dnsutils"), ("dnsmasq", "dnsmasq-base")],
    ) {
        return;
    }
    let nova = Nova::new("dmdnscmp", 2);
    let vm = &nova.lab.instances[0];
    vm.ns
        .ip(&[
            "addr",
            "add",
            &format!("{}/24", nova.lab.instance_ip(1)),
            "dev",
            "eth0",
        ])
        .unwrap();
    nova.lab
        .server
        .ip(&["addr", "add", "198.18.0.2/24", "dev", "br100"])
        .unwrap();
    let hosts = nova.networks.join("nova-br100.hosts");
    fs::write(
        &hosts,
        "198.18.0.10\tvm-1.novalocal\n198.18.0.11\tdb.novalocal db\n",
    )
    .unwrap();
    // nova adds --no-resolv when it has DNS servers to give; here neither has any upstream.
    let mut args = nova.dnsmasq_args(&nova.bin.join("nova-dhcpbridge"));
    args.push("--no-resolv".into());
    let out = nova.nova_runs(&nova.bin.join("dnsmasq"), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = nova.pid("nova-br100.pid");
    // Debian's dnsmasq on the same files, DNS only, on the bridge's second address.
    let hosts_arg = format!("--addn-hosts={}", hosts.display());
    let reference = netnode::lab::Daemon::start(
        &nova.lab.server,
        Path::new("/usr/sbin/dnsmasq"),
        &[
            "-k",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=198.18.0.2",
            "--except-interface=lo",
            "--domain=novalocal",
            &hosts_arg,
            "--pid-file=",
        ],
        &nova.lab.dir.join("reference.log"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for q in [
        vec!["vm-1.novalocal", "A"],
        vec!["db.novalocal", "A"],
        vec!["db", "A"],
        vec!["-x", "198.18.0.11"],
        vec!["www.example.com", "A"],
    ] {
        let ours = dig_at(vm, "198.18.0.1", &q);
        let theirs = dig_at(vm, "198.18.0.2", &q);
        assert_eq!(ours, theirs, "{q:?}: netnode {ours:?}, dnsmasq {theirs:?}");
    }
    drop(reference);
    signal(pid, libc::SIGTERM);
}
