//! DNS for instances with real clients (dig, drill, kdig, glibc) and real upstreams (unbound, a
//! recording responder) in network namespaces (root). Each test builds its own lab and removes
//! it in Drop, also when it fails.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{can_run_with, counter, serve_with, Served, LEASE, SYSTEM_PYTHON};
use netnode::lab::{self, Daemon, Instance, Netns};

const DIG: (&str, &str) = ("dig", "bind9-dnsutils");
const DRILL: (&str, &str) = ("drill", "ldnsutils");
const KDIG: (&str, &str) = ("kdig", "knot-dnsutils");
const UNBOUND: (&str, &str) = ("unbound", "unbound");
const GETENT: (&str, &str) = ("getent", "libc-bin");

/// A lab whose network has an IPv6 prefix and `[dns]` with `dns`; every instance has its
/// address, and the bridge its IPv6 gateway address.
fn dns_lab(label: &str, instances: usize, dns: &str) -> Served {
    let s = serve_with(
        label,
        instances,
        instances,
        LEASE,
        &format!("cidr_v6 = \"fd00:1::/64\"\n[network.ra]\nprofile = \"nova\"\n[dns]\n{dns}\n"),
    );
    s.lab
        .server
        .ip(&["-6", "addr", "add", "fd00:1::1/64", "dev", "br100", "nodad"])
        .unwrap();
    for i in 1..=instances {
        let inst = &s.lab.instances[i - 1];
        inst.ns
            .ip(&[
                "addr",
                "add",
                &format!("{}/24", s.lab.instance_ip(i)),
                "dev",
                "eth0",
            ])
            .unwrap();
    }
    s.daemon_wait("dns listening");
    s
}

/// `dig` from an instance to netnode (one try, no cookies), its whole output.
fn dig(inst: &Instance, args: &[&str]) -> String {
    let out = inst
        .ns
        .command("dig")
        .args(["+nocookie", "+time=3", "+tries=1", "@198.18.0.1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The answer lines of a dig output.
fn answers(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("")
}

fn flags(out: &str) -> String {
    out.split(";; flags: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("")
        .to_string()
}

static UPSTREAMS: AtomicU32 = AtomicU32::new(0);

/// A namespace joined to the server's by a veth: the server side gets 198.18.5.1/24, the
/// upstream side `addrs` (in 198.18.5.0/24).
fn upstream_ns(s: &Served, addrs: &[&str]) -> Netns {
    let n = UPSTREAMS.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{}{n}", std::process::id() % 10_000);
    let ns = Netns::add(&format!("{}-up", s.lab.server.name())).unwrap();
    let (a, b) = (format!("dua{tag}"), format!("dub{tag}"));
    lab::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]).unwrap();
    lab::ip(&["link", "set", &a, "netns", s.lab.server.name()]).unwrap();
    lab::ip(&["link", "set", &b, "netns", ns.name()]).unwrap();
    s.lab
        .server
        .ip(&["addr", "add", "198.18.5.1/24", "dev", &a])
        .unwrap();
    s.lab.server.ip(&["link", "set", &a, "up"]).unwrap();
    for addr in addrs {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", &b])
            .unwrap();
    }
    ns.ip(&["link", "set", &b, "up"]).unwrap();
    ns
}

/// Debian's unbound on 198.18.5.53, authoritative for example.com (a static local zone with a
/// SOA whose minimum is 60 s), logging every query it gets.
fn unbound(s: &Served, ns: &Netns) -> (Daemon, std::path::PathBuf) {
    let dir = s.lab.dir.join("unbound");
    fs::create_dir_all(&dir).unwrap();
    let txt = |c: char| format!("\"{}\"", c.to_string().repeat(250));
    let conf = format!(
        "server:\n  interface: 198.18.5.53\n  port: 53\n  access-control: 198.18.0.0/15 allow\n  chroot: \"\"\n  username: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  logfile: \"{d}/unbound.log\"\n  use-syslog: no\n  log-queries: yes\n  verbosity: 1\n  do-ip6: no\n  module-config: \"iterator\"\n  local-zone: \"example.com.\" static\n  local-data: \"example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 60\"\n  local-data: \"www.example.com. 300 IN A 198.18.7.7\"\n  local-data: 'big.example.com. 300 IN TXT {} {} {}'\n",
        txt('x'),
        txt('y'),
        txt('z'),
        d = dir.display()
    );
    let path = dir.join("unbound.conf");
    fs::write(&path, conf).unwrap();
    let p = path.display().to_string();
    let d = Daemon::start(
        ns,
        Path::new("unbound"),
        &["-d", "-c", &p],
        &dir.join("stderr"),
    )
    .unwrap();
    let log = dir.join("unbound.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("start of service")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    (d, log)
}

/// How many queries for `name` reached the upstream.
fn upstream_queries(log: &Path, name: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!(" {name}. ")))
        .count()
}

#[test]
fn instances_resolve_each_other_with_authority_in_every_client() {
    if !can_run_with("dnsnames", &[], &[DIG, DRILL, KDIG]) {
        return;
    }
    let mut s = dns_lab("dnsnames", 2, "no_resolv = true\nlog_queries = true");
    let vm1 = &s.lab.instances[0];
    let vm2_ip = s.lab.instance_ip(2).to_string();
    // dig: qualified and not, A and AAAA, the client's case kept, aa and TTL 0.
    let out = dig(vm1, &["VM-2.NovaLocal", "A"]);
    assert_eq!(
        answers(&out),
        [format!("VM-2.NovaLocal. 0 IN A {vm2_ip}")],
        "{out}"
    );
    assert!(flags(&out).contains("aa"), "{out}");
    let out = dig(vm1, &["vm-2", "AAAA"]);
    assert_eq!(answers(&out).len(), 1, "{out}");
    assert!(
        answers(&out)[0].contains("IN AAAA fd00:1::f816:3eff:fe"),
        "{out}"
    );
    let out = dig(vm1, &["-x", &vm2_ip]);
    assert!(answers(&out)[0].ends_with("PTR vm-2.novalocal."), "{out}");
    // Inside the domain: NXDOMAIN for an unknown name, NODATA for another type, both with the
    // SOA; a single label: NXDOMAIN. None of it forwarded (there is no upstream at all).
    let out = dig(vm1, &["nope.novalocal"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(
        out.contains("SOA\tns.novalocal.") || out.contains("SOA ns.novalocal."),
        "{out}"
    );
    let out = dig(vm1, &["vm-2.novalocal", "MX"]);
    assert_eq!((status(&out), answers(&out).len()), ("NOERROR", 0), "{out}");
    assert_eq!(status(&dig(vm1, &["printer"])), "NXDOMAIN");
    // Outside it, with no upstream: REFUSED, as neutron's dnsmasq without servers.
    assert_eq!(status(&dig(vm1, &["www.example.com"])), "REFUSED");
    // EDNS version 1: BADVERS. ANY: the name's addresses, or RFC 8482's HINFO.
    assert_eq!(
        status(&dig(vm1, &["+edns=1", "+noednsneg", "vm-2.novalocal"])),
        "BADVERS"
    );
    assert_eq!(answers(&dig(vm1, &["vm-2.novalocal", "ANY"])).len(), 2);
    let out = dig(vm1, &["www.example.com", "ANY"]);
    assert!(
        answers(&out).len() == 1 && answers(&out)[0].contains("HINFO"),
        "{out}"
    );
    // drill and kdig read the same.
    let drill = vm1
        .ns
        .command("drill")
        .args(["vm-2.novalocal", "@198.18.0.1"])
        .output()
        .unwrap();
    let drill = String::from_utf8_lossy(&drill.stdout);
    assert!(
        drill.contains(&vm2_ip) && drill.contains("qr aa rd ra"),
        "{drill}"
    );
    let kdig = vm1
        .ns
        .command("kdig")
        .args(["+tcp", "@198.18.0.1", "vm-2.novalocal", "A"])
        .output()
        .unwrap();
    let kdig = String::from_utf8_lossy(&kdig.stdout);
    assert!(kdig.contains(&vm2_ip) && kdig.contains("TCP"), "{kdig}");
    // DHCP hands out netnode's own address as the DNS server, as dnsmasq did.
    let got = common::own_client(vm1, &[]);
    assert!(String::from_utf8_lossy(&got.stdout).contains("dns=198.18.0.1"));
    // log_queries (dnsmasq's --log-queries): a line per query and what became of it.
    let vm1_ip = s.lab.instance_ip(1).to_string();
    s.daemon_wait(&format!("query[A] VM-2.NovaLocal from {vm1_ip}: local"));
    s.daemon_wait(&format!("query[A] nope.novalocal from {vm1_ip}: authority"));
    s.daemon_wait(&format!("query[A] www.example.com from {vm1_ip}: refused"));
    let stats = s.stats();
    assert!(counter(&stats, "dns.local") >= 4, "{stats}");
    assert_eq!(counter(&stats, "dns.forwarded"), 0, "{stats}");
}

#[test]
fn glibc_resolves_a_peer_at_once() {
    if !can_run_with("dnsglibc", &[], &[GETENT, ("unshare", "util-linux")]) {
        return;
    }
    let s = dns_lab("dnsglibc", 2, "no_resolv = true");
    let resolv = s.lab.dir.join("resolv.conf");
    fs::write(&resolv, "nameserver 198.18.0.1\nsearch novalocal\n").unwrap();
    // The shell times each lookup itself (unshare and mount are not the resolver's time). Three
    // rounds: the best one says what the resolver does, whatever else this machine is doing.
    let script = format!(
        "mount --bind {} /etc/resolv.conf || exit 1
         for i in 1 2 3; do
           for name in vm-2 vm-2.novalocal; do
             t0=$(date +%s%N); getent ahosts $name || exit 1; t1=$(date +%s%N)
             echo took $name $(( (t1 - t0) / 1000 ))
           done
         done",
        resolv.display()
    );
    let out = s.lab.instances[0]
        .ns
        .command("unshare")
        .args(["-m", "sh", "-c"])
        .arg(script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&s.lab.instance_ip(2).to_string()),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dnsmasq forwarded the domain's AAAA misses and glibc waited out its 3 s timeout: the
    // issue's bar is 100 ms for a lookup.
    for name in ["vm-2", "vm-2.novalocal"] {
        let best = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("took {name} ")))
            .filter_map(|us| us.trim().parse::<u64>().ok())
            .min()
            .unwrap_or_else(|| panic!("no timing for {name}: {text}"));
        eprintln!("getent ahosts {name}: {best} us");
        assert!(
            best < 100_000,
            "getent ahosts {name} took {best} us: {text}"
        );
    }
}

#[test]
fn forwarded_names_are_cached_counted_down_and_negative_answers_remembered() {
    if !can_run_with("dnsfwd", &[], &[DIG, UNBOUND]) {
        return;
    }
    let s = dns_lab("dnsfwd", 1, "no_resolv = true\nservers = [\"198.18.5.53\"]");
    let up = upstream_ns(&s, &["198.18.5.53"]);
    let (_unbound, log) = unbound(&s, &up);
    let vm = &s.lab.instances[0];
    let out = dig(vm, &["www.example.com"]);
    assert_eq!(
        answers(&out),
        ["www.example.com. 300 IN A 198.18.7.7"],
        "{out}"
    );
    assert!(
        !flags(&out).contains("aa"),
        "a forwarded answer is not authoritative: {out}"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let out = dig(vm, &["www.example.com"]);
    let ttl: u32 = answers(&out)[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!((296..=298).contains(&ttl), "the TTL counts down: {out}");
    assert_eq!(
        upstream_queries(&log, "www.example.com"),
        1,
        "the second came from the cache"
    );
    // A negative answer is kept for the SOA minimum (60 s): asked once.
    for _ in 0..3 {
        assert_eq!(status(&dig(vm, &["gone.example.com"])), "NXDOMAIN");
    }
    assert_eq!(upstream_queries(&log, "gone.example.com"), 1);
    // Too large for UDP: TC, and dig's retry over TCP gets it whole.
    let out = dig(vm, &["+noedns", "+ignore", "big.example.com", "TXT"]);
    assert!(flags(&out).contains("tc"), "{out}");
    let out = dig(vm, &["+noedns", "+tcp", "big.example.com", "TXT"]);
    assert_eq!(answers(&out).len(), 1, "{out}");
    assert!(answers(&out)[0].contains(&"z".repeat(250)), "whole: {out}");
}

#[test]
fn servers_by_domain_and_a_dead_first_upstream_with_strict_order() {
    if !can_run_with("dnsorder", &[], &[DIG, UNBOUND]) {
        return;
    }
    let s = dns_lab(
        "dnsorder",
        1,
        "no_resolv = true\nstrict_order = true\nservers = [\"198.18.5.99\", \"198.18.5.53\", \"/corp.example/198.18.5.54\"]",
    );
    let up = upstream_ns(&s, &["198.18.5.53", "198.18.5.54"]);
    let (_unbound, _) = unbound(&s, &up);
    // A second upstream for one domain: Debian's dnsmasq with one name.
    let corp = Daemon::start(
        &up,
        Path::new("dnsmasq"),
        &[
            "-k",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=198.18.5.54",
            "--bind-interfaces",
            "--host-record=intranet.corp.example,198.18.8.8",
            "--pid-file=",
        ],
        &s.lab.dir.join("corp.log"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let vm = &s.lab.instances[0];
    let out = dig(vm, &["intranet.corp.example"]);
    assert_eq!(
        answers(&out),
        ["intranet.corp.example. 0 IN A 198.18.8.8"],
        "{out}"
    );
    // 198.18.5.99 answers nothing: after its timeout the next server in order answers.
    let out = dig(vm, &["www.example.com"]);
    assert_eq!(
        answers(&out),
        ["www.example.com. 300 IN A 198.18.7.7"],
        "{out}"
    );
    drop(corp);
}

#[test]
fn every_upstream_query_has_its_own_source_port_and_id() {
    if !can_run_with("dnsports", &[], &[DIG, ("scapy", "python3-scapy")]) {
        return;
    }
    let s = dns_lab(
        "dnsports",
        1,
        "no_resolv = true\nservers = [\"198.18.5.55\"]\nclient_rate = 0",
    );
    let up = upstream_ns(&s, &["198.18.5.55"]);
    let seen = s.lab.dir.join("ports.txt");
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('198.18.5.55', 53))\nout = open('{}', 'w')\nwhile True:\n    data, peer = s.recvfrom(4096)\n    out.write('%d %02x%02x\\n' % (peer[1], data[0], data[1])); out.flush()\n    end = 12\n    while data[end]:\n        end += data[end] + 1\n    s.sendto(data[:2] + b'\\x81\\x83' + b'\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00' + data[12:end + 5], peer)\n",
        seen.display()
    );
    let _responder = Daemon::start(
        &up,
        Path::new(common::SYSTEM_PYTHON),
        &["-c", &script],
        &s.lab.dir.join("responder.log"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let names: String = (0..1000)
        .map(|i| format!("n{i}.ports.example A\n"))
        .collect();
    let batch = s.lab.dir.join("names.txt");
    fs::write(&batch, names).unwrap();
    let vm = &s.lab.instances[0];
    let _ = dig(vm, &["-f", &batch.display().to_string()]);
    let text = fs::read_to_string(&seen).unwrap();
    let ports: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.split(' ').next()).collect();
    let ids: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    let total = text.lines().count();
    assert!(total >= 950, "{total} queries reached the upstream");
    assert!(
        ports.len() * 100 > total * 95,
        "{} distinct ports of {total}",
        ports.len()
    );
    assert!(
        ids.len() * 100 > total * 95,
        "{} distinct ids of {total}",
        ids.len()
    );
}

#[test]
fn tcp_queries_are_pipelined_answered_as_they_come_and_a_half_close_is_honoured() {
    if !can_run_with("dnstcp", &[], &[UNBOUND]) {
        return;
    }
    let mut s = dns_lab("dnstcp", 2, "no_resolv = true\nservers = [\"198.18.5.53\"]");
    let up = upstream_ns(&s, &["198.18.5.53"]);
    let (_unbound, _log) = unbound(&s, &up);
    // RFC 7766: many queries in one write; the local ones are answered at once, the forwarded
    // one when the upstream answers (after them). A client that shuts its sending side still
    // gets every answer, then the close. A zero-length message closes the connection.
    let script = r#"
import socket, struct
def q(i, name, qtype=1):
    wire = b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\x00'
    m = struct.pack('>HHHHHH', i, 0x0100, 1, 0, 0, 0) + wire + struct.pack('>HH', qtype, 1)
    return struct.pack('>H', len(m)) + m
def read_all(c):
    data = b''
    while True:
        chunk = c.recv(65536)
        if not chunk:
            return data
        data += chunk
def answers(data):
    out = []
    while len(data) >= 2:
        n = struct.unpack('>H', data[:2])[0]
        m = data[2:2 + n]
        data = data[2 + n:]
        out.append((struct.unpack('>H', m[:2])[0], m[3] & 0xf, struct.unpack('>H', m[6:8])[0]))
    return out
c = socket.create_connection(('198.18.0.1', 53), timeout=5)
c.sendall(q(1, 'www.example.com') + b''.join(q(10 + i, 'vm-%d.novalocal' % (i % 2 + 1)) for i in range(40)) + q(2, 'nothing.novalocal'))
c.shutdown(socket.SHUT_WR)
got = answers(read_all(c))
print('pipelined', [g[0] for g in got])
assert sorted(g[0] for g in got) == sorted([1, 2] + [10 + i for i in range(40)]), got
assert got[-1][0] == 1, 'the forwarded answer comes last: %r' % got
assert all(g[1] == 0 and g[2] == 1 for g in got if g[0] >= 10), got
assert [g[1] for g in got if g[0] == 2] == [3], got
c = socket.create_connection(('198.18.0.1', 53), timeout=5)
c.sendall(b'\x00\x00' + q(3, 'vm-1.novalocal'))
print('after an empty message', answers(read_all(c)))
"#;
    let out = s.lab.instances[0]
        .ns
        .command(SYSTEM_PYTHON)
        .args(["-c", script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("after an empty message []"), "{text}");
    let stats = s.stats();
    assert_eq!(counter(&stats, "dns_tcp"), 43, "{stats}");
    assert_eq!(
        counter(&stats, "dns_drop.truncated"),
        1,
        "the empty message: {stats}"
    );
}

#[test]
fn tcp_connections_are_capped_and_idle_ones_closed() {
    if !can_run_with("dnstcpcap", &[], &[]) {
        return;
    }
    let mut s = dns_lab("dnstcpcap", 1, "no_resolv = true");
    // 260 connections: 256 are served, 4 closed at once (counted); the others are closed after
    // 10 s without a query (counted).
    let script = r#"
import socket, time
conns = [socket.create_connection(('198.18.0.1', 53), timeout=5) for _ in range(260)]
time.sleep(1)
closed = 0
for c in conns:
    c.setblocking(False)
    try:
        if c.recv(1) == b'':
            closed += 1
    except BlockingIOError:
        pass
print('closed at once', closed)
for c in conns:
    c.setblocking(True)
    c.settimeout(30)
    try:
        c.recv(1)
    except OSError:
        pass
print('all closed')
"#;
    let out = s.lab.instances[0]
        .ns
        .command(SYSTEM_PYTHON)
        .args(["-c", script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("all closed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("closed at once 4"), "{text}");
    let stats = s.stats();
    assert_eq!(counter(&stats, "dns_tcp_refused"), 4, "{stats}");
    assert_eq!(counter(&stats, "dns_tcp_idle_closed"), 256, "{stats}");
}

#[test]
fn a_bridge_deleted_and_created_again_answers_dns_again() {
    if !can_run_with("dnsrecreate", &[], &[DIG]) {
        return;
    }
    let mut s = dns_lab("dnsrecreate", 1, "no_resolv = true");
    let vm = &s.lab.instances[0];
    assert_eq!(answers(&dig(vm, &["vm-1.novalocal"])).len(), 1);
    let listening = s
        .daemon
        .log_text()
        .matches("dns listening on the address")
        .count();
    let srv = &s.lab.server;
    srv.ip(&["link", "del", "br100"]).unwrap();
    s.daemon
        .wait_for_log(
            "DNS serves it again once it is back",
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    srv.ip(&["link", "add", "br100", "type", "bridge"]).unwrap();
    srv.ip(&["addr", "add", "198.18.0.1/24", "dev", "br100"])
        .unwrap();
    srv.ip(&["link", "set", "br100", "up"]).unwrap();
    srv.ip(&["link", "set", &vm.port, "master", "br100"])
        .unwrap();
    s.daemon
        .wait_for_log(
            "dns listening on the address",
            listening + 1,
            Duration::from_secs(5),
        )
        .unwrap();
    let out = dig(vm, &["vm-1.novalocal"]);
    assert_eq!(answers(&out).len(), 1, "{out}\n{}", s.daemon.log_text());
}

#[test]
fn reloads_under_load_drop_no_query() {
    if !can_run_with("dnshup", &[], &[("dnsperf", "dnsperf")]) {
        return;
    }
    // client_rate = 0: dnsperf asks from one address, faster than a guest's share.
    let mut s = dns_lab("dnshup", 2, "no_resolv = true\nclient_rate = 0");
    let data = s.lab.dir.join("queries.txt");
    fs::write(&data, "vm-1.novalocal A\nvm-2 AAAA\nnope.novalocal A\n").unwrap();
    let perf = s.lab.instances[0]
        .ns
        .command("dnsperf")
        .args(["-s", "198.18.0.1", "-l", "3", "-c", "4", "-q", "20", "-d"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A reload every 50 ms while dnsperf asks (each one swaps the zone and empties the cache).
    let reloads = s.daemon.log_text().matches("table reloaded").count();
    for _ in 0..40 {
        s.daemon.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = perf.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |what: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(what))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what:?} in {text}"))
    };
    assert!(count("Queries completed:") > 1000, "{text}");
    assert_eq!(count("Queries lost:"), 0, "{text}");
    let log = s.daemon.log_text();
    assert!(
        log.matches("table reloaded").count() > reloads + 5,
        "the reloads happened: {log}"
    );
    let stats = s.stats();
    assert_eq!(
        counter(&stats, "dns.authority"),
        count("Queries completed:") / 3,
        "{stats}"
    );
}

#[test]
fn malformed_queries_get_formerr_or_silence_and_it_keeps_answering() {
    if !can_run_with("dnsbad", &[], &[DIG, ("scapy", "python3-scapy")]) {
        return;
    }
    let mut s = dns_lab("dnsbad", 1, "no_resolv = true");
    let script = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
def q(name=b'\x04vm-1\x09novalocal\x00'):
    return struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + name + b'\x00\x01\x00\x01'
cases = [
    q()[:7],                                            # a truncated header
    q()[:16],                                           # a truncated question
    q(b'\xc0\x0c'),                                     # a pointer to itself
    q(b'\x40' + b'a' * 64 + b'\x00'),                   # a label over 63
    q((b'\x3f' + b'a' * 63) * 5 + b'\x00'),             # a name over 255
    struct.pack('>HHHHHH', 1, 0x0100, 0, 0, 0, 0),      # no question
    struct.pack('>HHHHHH', 1, 0x0100, 2, 0, 0, 0) + q()[12:] * 2,  # two
    struct.pack('>HHHHHH', 1, 0x8180, 1, 0, 0, 0) + q()[12:],      # a response
    struct.pack('>HHHHHH', 1, 0x2800, 1, 0, 0, 0) + q()[12:],      # opcode UPDATE
]
for c in cases:
    s.sendto(c, ('198.18.0.1', 53))
    try:
        reply, _ = s.recvfrom(4096)
        assert len(reply) <= max(len(c), 12 + len(c) - 12), (c, reply)
        assert reply[3] & 0xf in (1, 4), reply
        print('answered', len(c), len(reply), reply[3] & 0xf)
    except socket.timeout:
        print('silence', len(c))
"#;
    let out = s.lab.instances[0]
        .ns
        .command(SYSTEM_PYTHON)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("answered")).count(),
        7,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("silence")).count(),
        2,
        "{text}"
    );
    let out = dig(&s.lab.instances[0], &["vm-1.novalocal"]);
    assert_eq!(answers(&out).len(), 1, "still answering: {out}");
    let stats = s.stats();
    assert!(counter(&stats, "dns.formerr") >= 7, "{stats}");
    // From an address outside the network's subnet (on the bridge all the same): silence.
    let vm = &s.lab.instances[0];
    vm.ns
        .ip(&["addr", "add", "198.18.9.5/24", "dev", "eth0"])
        .unwrap();
    let out = dig(vm, &["+time=1", "-b", "198.18.9.5", "vm-1.novalocal"]);
    assert!(answers(&out).is_empty(), "{out}");
    let stats = s.stats();
    assert_eq!(counter(&stats, "dns_drop.not_local"), 1, "{stats}");
}

#[test]
fn ipv6_only_guests_learn_the_resolver_from_router_advertisements() {
    if !can_run_with("dnsv6", &[], &[DIG, ("rdisc6", "ndisc6")]) {
        return;
    }
    let s = dns_lab("dnsv6", 1, "no_resolv = true");
    let vm = &s.lab.instances[0];
    // The bridge advertises once it has its link-local address, and the instance solicits once
    // it has its own.
    s.daemon_wait("router advertisements on");
    let deadline = Instant::now() + Duration::from_secs(10);
    while netnode::lab::Lab::link_local(vm).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ra = common::rdisc6(vm);
    assert!(
        ra.contains("Recursive DNS server") && ra.contains("fd00:1::1"),
        "{ra}"
    );
    assert!(
        ra.contains("DNS search list") && ra.contains("novalocal"),
        "{ra}"
    );
    let out = vm
        .ns
        .command("dig")
        .args([
            "+nocookie",
            "+time=3",
            "+tries=1",
            "@fd00:1::1",
            "vm-1.novalocal",
            "AAAA",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(answers(&out)[0].contains("fd00:1::f816:3eff:fe"), "{out}");
}
