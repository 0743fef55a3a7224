//! The control module with real traffic (root): a network node namespace running `netnode
//! serve` with `[control] enabled`, an outside namespace on the public side (198.19.0.0/16),
//! and instance namespaces plugged into the bridge netnode creates. TCP peers are a small
//! Python echo server that first tells each client the source address it saw. Every namespace
//! is removed in Drop, also when a test fails.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{can_run_with, SYSTEM_PYTHON};
use netnode::lab::{self, Daemon, Netns};

const NFT: (&str, &str) = ("nft", "nftables");
const PYTHON: (&str, &str) = ("python3", "python3");
const TCPDUMP: (&str, &str) = ("tcpdump", "tcpdump");
const CURL: (&str, &str) = ("curl", "curl");
const PING: (&str, &str) = ("ping", "iputils-ping");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The echo server and its clients.
const PEER_PY: &str = r#"
import socket, sys, threading
role = sys.argv[1]
if role == "serve":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[2])))
    s.listen(64)
    print("ready", flush=True)
    def handle(c, peer):
        try:
            c.sendall((peer[0] + "\n").encode())
            while True:
                d = c.recv(100)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()
    while True:
        c, peer = s.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()
elif role == "ask":
    try:
        c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3)
        print(c.makefile().readline().strip())
    except OSError as e:
        print("failed: %s" % e)
elif role == "hold":
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3)
    f = c.makefile()
    print(f.readline().strip(), flush=True)
    c.settimeout(2)
    for line in sys.stdin:
        try:
            c.sendall(b"x\n")
            print("echo" if f.readline().strip() == "x" else "lost", flush=True)
        except OSError:
            print("lost", flush=True)
"#;

const PORT: &str = "7000";

/// The public side, the node, two instances.
struct Node {
    node: Netns,
    out: Netns,
    vms: Vec<Netns>,
    macs: Vec<String>,
    dir: PathBuf,
    config: PathBuf,
    daemon: Option<Daemon>,
    servers: Vec<Child>,
    tag: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.daemon.take();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn fixed(i: usize) -> String {
    format!("198.18.0.{}", 9 + i)
}

impl Node {
    /// Builds the namespaces; netnode is not started yet. `extra` ends the config.
    fn build(label: &str, vms: usize, extra: &str) -> Node {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("netnode-{label}-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("peer.py"), PEER_PY).unwrap();
        let node = Netns::add(&format!("nnc-{label}-node-{tag}")).unwrap();
        let out = Netns::add(&format!("nnc-{label}-out-{tag}")).unwrap();
        let (pubif, outif) = (format!("np{tag}"), format!("no{tag}"));
        lab::ip(&[
            "link", "add", &pubif, "type", "veth", "peer", "name", &outif,
        ])
        .unwrap();
        lab::ip(&["link", "set", &pubif, "netns", node.name()]).unwrap();
        lab::ip(&["link", "set", &outif, "netns", out.name()]).unwrap();
        node.ip(&["link", "set", &pubif, "name", "pub0"]).unwrap();
        node.ip(&["addr", "add", "198.19.0.1/16", "dev", "pub0"])
            .unwrap();
        node.ip(&["link", "set", "pub0", "up"]).unwrap();
        out.ip(&["link", "set", &outif, "name", "out0"]).unwrap();
        out.ip(&["addr", "add", "198.19.0.2/16", "dev", "out0"])
            .unwrap();
        // A DMZ host on the outside, reached with fixed addresses.
        out.ip(&["addr", "add", "198.19.5.5/24", "dev", "out0"])
            .unwrap();
        out.ip(&["link", "set", "out0", "up"]).unwrap();
        out.ip(&["route", "add", "198.18.0.0/24", "via", "198.19.0.1"])
            .unwrap();
        let mut s = Node {
            node,
            out,
            vms: Vec::new(),
            macs: Vec::new(),
            config: dir.join("node.toml"),
            dir,
            daemon: None,
            servers: Vec::new(),
            tag,
        };
        for i in 1..=vms {
            let vm = Netns::add(&format!("nnc-{label}-vm{i}-{}", s.tag)).unwrap();
            let (tap, peer) = (format!("nt{}v{i}", s.tag), format!("nc{}v{i}", s.tag));
            lab::ip(&["link", "add", &tap, "type", "veth", "peer", "name", &peer]).unwrap();
            lab::ip(&["link", "set", &tap, "netns", s.node.name()]).unwrap();
            lab::ip(&["link", "set", &peer, "netns", vm.name()]).unwrap();
            let mac = format!("fa:16:3e:00:0c:{i:02x}");
            vm.ip(&["link", "set", &peer, "name", "eth0"]).unwrap();
            vm.ip(&["link", "set", "eth0", "address", &mac]).unwrap();
            vm.ip(&["addr", "add", &format!("{}/24", fixed(i)), "dev", "eth0"])
                .unwrap();
            vm.ip(&["link", "set", "eth0", "up"]).unwrap();
            vm.ip(&["route", "add", "default", "via", "198.18.0.1"])
                .unwrap();
            s.vms.push(vm);
            s.macs.push(mac);
        }
        let hosts: String = (1..=vms)
            .map(|i| {
                format!(
                    "[[network.host]]\nmac = \"{}\"\nip = \"{}\"\nhostname = \"vm-{i}\"\n",
                    s.macs[i - 1],
                    fixed(i)
                )
            })
            .collect();
        let instances: String = (1..=vms)
            .map(|i| {
                format!(
                    "[[instance]]\nuuid = \"00000000-0000-4000-8000-00000000000{i}\"\nname = \"vm-{i}\"\nmac = \"{}\"\nid = {i}\n",
                    s.macs[i - 1]
                )
            })
            .collect();
        let config = format!(
            "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"198.18.0.0/24\"\ngateway = \"198.18.0.1\"\n{hosts}\
             {instances}[metadata]\nlisten = \"0.0.0.0:8775\"\n[state]\ndir = \"{}\"\n\
             [control]\nenabled = true\nsend_arp_for_ha = true\n\
             [nat]\npublic_interface = \"pub0\"\nrouting_source_ip = \"198.19.0.1\"\ndmz_cidr = [\"198.19.5.0/24\"]\n{extra}",
            s.dir.join("state").display()
        );
        fs::write(&s.config, config).unwrap();
        s
    }

    fn start(&mut self) {
        let starts = self.log().matches("control: first pass done").count();
        let mut d = Daemon::start(
            &self.node,
            &common::netnode(),
            &["serve", "--config", self.config.to_str().unwrap()],
            &self.dir.join("netnode.log"),
        )
        .unwrap();
        d.wait_for_log(
            "control: first pass done",
            starts + 1,
            Duration::from_secs(10),
        )
        .unwrap();
        self.daemon = Some(d);
    }

    /// Plugs the instances into the bridge netnode made, as nova's VIF driver did (hairpin on,
    /// so an instance reaches its own floating IP with bridge-nf-call-iptables at 1).
    fn plug(&self) {
        for i in 1..=self.vms.len() {
            let tap = format!("nt{}v{i}", self.tag);
            self.node
                .ip(&["link", "set", &tap, "master", "br100", "up"])
                .unwrap();
            self.node
                .ip(&["link", "set", &tap, "type", "bridge_slave", "hairpin", "on"])
                .unwrap();
        }
    }

    fn serve_peer(&mut self, ns_of: impl Fn(&Node) -> &Netns) {
        let mut child = ns_of(self)
            .command(SYSTEM_PYTHON)
            .args([self.dir.join("peer.py").to_str().unwrap(), "serve", PORT])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        self.servers.push(child);
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("started")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("netnode.log")).unwrap_or_default()
    }

    fn nft_list(&self) -> String {
        let out = self
            .node
            .command("nft")
            .args(["list", "table", "inet", "netnode"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn net(&self, action: &str) -> String {
        let out = self
            .node
            .command(common::netnode())
            .args(["net", action, "--config", self.config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "net {action}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Replaces the config's floating IPs (the daemon reloads on the edit).
    fn set_floating_unchecked(&mut self, floating: &str) {
        let text = fs::read_to_string(&self.config).unwrap();
        let kept = text.split("[[floating]]").next().unwrap_or_default();
        fs::write(&self.config, format!("{kept}{floating}")).unwrap();
    }

    /// The same, and waits for the control pass it causes.
    fn set_floating(&mut self, floating: &str) {
        let passes = self.log().matches("control: applied").count();
        self.set_floating_unchecked(floating);
        self.daemon()
            .wait_for_log("control: applied", passes + 1, Duration::from_secs(10))
            .unwrap();
    }
}

/// The source address the echo server at `host` saw for a connection from `ns`.
fn ask(s: &Node, ns: &Netns, host: &str) -> String {
    let out = ns
        .command(SYSTEM_PYTHON)
        .args([s.dir.join("peer.py").to_str().unwrap(), "ask", host, PORT])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What `ip <args>` printed in `ns`.
fn ip_out(ns: &Netns, args: &[&str]) -> String {
    ns.ip(args)
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

fn ping(ns: &Netns, host: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "2", host])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A connection kept open, asked to echo now and then.
struct Held {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    seen_as: String,
}

impl Held {
    fn open(s: &Node, ns: &Netns, host: &str) -> Held {
        let mut child = ns
            .command(SYSTEM_PYTHON)
            .args([s.dir.join("peer.py").to_str().unwrap(), "hold", host, PORT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen_as = String::new();
        stdout.read_line(&mut seen_as).unwrap();
        Held {
            child,
            stdin,
            stdout,
            seen_as: seen_as.trim().to_string(),
        }
    }

    /// Whether the peer still echoes.
    fn alive(&mut self) -> bool {
        if writeln!(self.stdin, "ping").is_err() {
            return false;
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).is_ok() && line.trim() == "echo"
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {timeout:?}");
}

fn can_run(test: &str) -> bool {
    can_run_with(test, &[], &[NFT, PYTHON, TCPDUMP, CURL, PING])
}

const FLOATING: &str = "[[floating]]\naddress = \"198.19.1.10\"\nfixed = \"198.18.0.10\"\n";

#[test]
fn floating_ips_snat_metadata_and_hairpin_with_real_traffic() {
    if can_run("floating_ips_snat_metadata_and_hairpin_with_real_traffic") {
        nat_with_real_traffic("nat", "1");
    }
}

#[test]
fn the_same_with_bridged_frames_kept_from_the_ip_hooks() {
    if can_run("the_same_with_bridged_frames_kept_from_the_ip_hooks") {
        nat_with_real_traffic("nbr", "0");
    }
}

/// Tests 1 to 5 of the issue, with `net.bridge.bridge-nf-call-iptables` at `bridge_nf` (an
/// operator may set either; the seed's troubleshooting section sets 0).
fn nat_with_real_traffic(label: &str, bridge_nf: &str) {
    let mut s = Node::build(label, 2, FLOATING);
    let set = s
        .node
        .command("sysctl")
        .args([
            "-q",
            "-w",
            &format!("net.bridge.bridge-nf-call-iptables={bridge_nf}"),
        ])
        .status()
        .unwrap();
    assert!(set.success());
    s.start();
    s.plug();
    s.serve_peer(|s| &s.vms[0]);
    s.serve_peer(|s| &s.vms[1]);
    s.serve_peer(|s| &s.out);
    // 1. From outside, the floating IP reaches vm-1, which sees the outside address.
    assert!(ping(&s.out, "198.19.1.10"), "{}", s.log());
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
    // 2. Out: vm-1 as its floating IP, vm-2 as routing_source_ip, to the DMZ as themselves.
    assert_eq!(ask(&s, &s.vms[0], "198.19.0.2"), "198.19.1.10");
    assert_eq!(ask(&s, &s.vms[1], "198.19.0.2"), "198.19.0.1");
    assert_eq!(ask(&s, &s.vms[0], "198.19.5.5"), fixed(1));
    assert_eq!(ask(&s, &s.vms[1], "198.19.5.5"), fixed(2));
    // 3. Metadata through the DNAT keeps the instance's own address, so identity holds.
    let md = s.vms[1]
        .command("curl")
        .args([
            "-s",
            "-m",
            "5",
            "http://169.254.169.254/latest/meta-data/instance-id",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&md.stdout),
        "i-00000002",
        "{}",
        s.log()
    );
    // 4. Hairpin: vm-2 reaches vm-1's floating IP; vm-1 reaches its own.
    let via_gateway = ask(&s, &s.vms[1], "198.19.1.10");
    assert_eq!(via_gateway, "198.18.0.1", "vm-2 through the floating IP");
    assert_eq!(ask(&s, &s.vms[0], "198.19.1.10"), "198.19.1.10");
    // 5. Applying again changes nothing, byte for byte.
    let before = s.nft_list();
    assert!(before.contains("198.19.1.10 : 198.18.0.10"), "{before}");
    assert!(s.net("plan").contains("nothing to do"));
    s.net("apply");
    assert_eq!(s.nft_list(), before);
    // A bad reload names the key and the last good state keeps serving.
    s.set_floating_unchecked("[[floating]]\naddress = \"198.18.0.99\"\nfixed = \"198.18.0.10\"\n");
    s.daemon()
        .wait_for_log("reload failed", 1, Duration::from_secs(5))
        .unwrap();
    assert!(
        s.log().contains(
            "[[floating]] 1 (198.18.0.99): address: inside the fixed range 198.18.0.0/24"
        ),
        "{}",
        s.log()
    );
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
    assert_eq!(s.nft_list(), before);
    // Someone deletes the bridge: it comes back with its gateway address.
    s.node.ip(&["link", "delete", "br100"]).unwrap();
    eventually("br100 recreated", Duration::from_secs(5), || {
        ip_out(&s.node, &["-4", "-o", "addr", "show", "br100"]).contains("198.18.0.1/24")
    });
    s.plug();
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
}

#[test]
fn disassociation_ends_flows_and_reassociation_announces() {
    if !can_run("disassociation_ends_flows_and_reassociation_announces") {
        return;
    }
    let mut s = Node::build("fip", 2, FLOATING);
    s.start();
    s.plug();
    s.serve_peer(|s| &s.vms[0]);
    s.serve_peer(|s| &s.vms[1]);
    let mut flow = Held::open(&s, &s.out, "198.19.1.10");
    assert_eq!(flow.seen_as, "198.19.0.2");
    assert!(flow.alive());
    // 6. Disassociated: the live flow ends and new ones fail.
    s.set_floating("");
    assert!(!flow.alive(), "the established flow survived; {}", s.log());
    assert!(ask(&s, &s.out, "198.19.1.10").starts_with("failed"));
    let addrs = s.node.ip(&["-br", "addr", "show", "pub0"]).unwrap();
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains("198.19.1.10"));
    // Reassociated to vm-2: the gratuitous ARP is seen outside, traffic reaches vm-2.
    let mut dump = s
        .out
        .command("tcpdump")
        .args([
            "-i",
            "out0",
            "-n",
            "-l",
            "-c",
            "3",
            "arp and host 198.19.1.10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.set_floating(&FLOATING.replace("198.18.0.10", "198.18.0.11"));
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = BufReader::new(dump.stdout.take().unwrap());
    while Instant::now() < deadline && !seen.contains("tell 198.19.1.10") {
        let mut l = String::new();
        if lines.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&l);
    }
    let _ = dump.kill();
    let _ = dump.wait();
    assert!(
        seen.contains("Request who-has 198.19.1.10") && seen.contains("tell 198.19.1.10"),
        "{seen}"
    );
    // 8. A restart keeps the established flows through floating IPs.
    let mut flow = Held::open(&s, &s.out, "198.19.1.10");
    assert!(flow.alive());
    s.daemon().stop().unwrap();
    s.daemon = None;
    assert!(flow.alive(), "the flow ended with the daemon");
    s.start();
    assert!(flow.alive(), "the flow ended at the restart; {}", s.log());
    let restarted = s.log();
    let after = &restarted[restarted.rfind("table loaded").unwrap_or(0)..];
    assert!(
        after.contains("first pass done") && !after.contains("control: applied"),
        "the restart changed something: {restarted}"
    );
    // Adding and removing another floating IP leaves this flow alone.
    let both = format!(
        "{}[[floating]]\naddress = \"198.19.1.11\"\nfixed = \"198.18.0.10\"\n",
        FLOATING.replace("198.18.0.10", "198.18.0.11")
    );
    s.set_floating(&both);
    assert_eq!(ask(&s, &s.out, "198.19.1.11"), "198.19.0.2");
    assert!(flow.alive(), "another floating IP's change ended this flow");
    s.set_floating(&FLOATING.replace("198.18.0.10", "198.18.0.11"));
    assert!(
        flow.alive(),
        "another floating IP's removal ended this flow"
    );
}

#[test]
fn a_flushed_ruleset_is_put_back_and_foreign_tables_are_never_touched() {
    if !can_run("a_flushed_ruleset_is_put_back_and_foreign_tables_are_never_touched") {
        return;
    }
    let mut s = Node::build("own", 1, FLOATING);
    let foreign = "table ip operator {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";
    fs::write(s.dir.join("foreign.nft"), foreign).unwrap();
    let load = s
        .node
        .command("nft")
        .args(["-f", s.dir.join("foreign.nft").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(load.success());
    let list_foreign = |s: &Node| {
        let o = s
            .node
            .command("nft")
            .args(["list", "table", "ip", "operator"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let foreign_before = list_foreign(&s);
    s.start();
    s.plug();
    s.serve_peer(|s| &s.vms[0]);
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
    assert_eq!(list_foreign(&s), foreign_before);
    // A change of structure (the DMZ) replaces the table whole: established flows go on.
    let mut flow = Held::open(&s, &s.out, "198.19.1.10");
    assert!(flow.alive());
    let text = fs::read_to_string(&s.config).unwrap();
    let passes = s.log().matches("control: applied").count();
    fs::write(&s.config, text.replace("198.19.5.0/24", "198.19.6.0/24")).unwrap();
    s.daemon()
        .wait_for_log("control: applied", passes + 1, Duration::from_secs(10))
        .unwrap();
    assert!(s.nft_list().contains("198.19.6.0/24"));
    assert!(flow.alive(), "a flow ended when the table was replaced");
    // 7. Someone flushes the whole ruleset: netnode's table comes back, traffic flows again
    // (and the flow held across it, once the table is back).
    let flushed = Instant::now();
    assert!(s
        .node
        .command("nft")
        .args(["flush", "ruleset"])
        .status()
        .unwrap()
        .success());
    eventually("netnode's table restored", Duration::from_secs(5), || {
        s.nft_list().contains("floating_dnat")
    });
    eprintln!("table restored {:?} after the flush", flushed.elapsed());
    assert!(
        flow.alive(),
        "a flow ended across the flush and the restore"
    );
    drop(flow);
    assert_eq!(ask(&s, &s.out, "198.19.1.10"), "198.19.0.2");
    assert!(s.log().contains("repair=true"), "{}", s.log());
    // Someone deletes only netnode's table: back again.
    assert!(s
        .node
        .command("nft")
        .args(["delete", "table", "inet", "netnode"])
        .status()
        .unwrap()
        .success());
    eventually("netnode's table restored", Duration::from_secs(5), || {
        s.nft_list().contains("floating_dnat")
    });
    // Someone edits netnode's table (a rule, a map): the table is replaced.
    let edit =
        |args: &[&str]| assert!(s.node.command("nft").args(args).status().unwrap().success());
    edit(&[
        "add",
        "rule",
        "inet",
        "netnode",
        "postrouting",
        "meta",
        "mark",
        "0x1234",
        "accept",
    ]);
    edit(&[
        "add",
        "map",
        "inet",
        "netnode",
        "extra",
        "{ type ipv4_addr : ipv4_addr ; }",
    ]);
    eventually(
        "netnode's table restored after an edit",
        Duration::from_secs(5),
        || {
            let t = s.nft_list();
            !t.contains("0x00001234") && !t.contains("extra") && t.contains("floating_dnat")
        },
    );
    // 5. Teardown leaves nothing of netnode's and everything else.
    assert!(s
        .node
        .command("nft")
        .args(["-f", s.dir.join("foreign.nft").to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let foreign_before = list_foreign(&s);
    s.daemon().stop().unwrap();
    s.daemon = None;
    let out = s.net("teardown");
    assert!(out.contains("delete table inet netnode"), "{out}");
    assert!(s.nft_list().is_empty());
    assert_eq!(list_foreign(&s), foreign_before);
    let links = String::from_utf8_lossy(&s.node.ip(&["-br", "link"]).unwrap().stdout).to_string();
    assert!(!links.contains("br100"), "{links}");
    let addrs = String::from_utf8_lossy(&s.node.ip(&["-br", "addr"]).unwrap().stdout).to_string();
    assert!(
        !addrs.contains("198.19.1.10") && addrs.contains("198.19.0.1/16"),
        "{addrs}"
    );
    assert!(s.net("teardown").contains("nothing"));
}

#[test]
fn a_flat_interface_moves_onto_the_bridge_and_back() {
    if !can_run("a_flat_interface_moves_onto_the_bridge_and_back") {
        return;
    }
    // The node's eth1 faces a LAN (198.19.60.0/24, and 198.19.61.0/24 behind a router there).
    let mut s = Node::build("flat", 1, "");
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            "gateway = \"198.18.0.1\"\n",
            "gateway = \"198.18.0.1\"\nbridge_interface = \"eth1\"\n",
        ),
    )
    .unwrap();
    let lan = Netns::add(&format!("nnc-flat-lan-{}", s.tag)).unwrap();
    let (a, b) = (format!("nf{}a", s.tag), format!("nf{}b", s.tag));
    lab::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]).unwrap();
    lab::ip(&["link", "set", &a, "netns", s.node.name()]).unwrap();
    lab::ip(&["link", "set", &b, "netns", lan.name()]).unwrap();
    s.node.ip(&["link", "set", &a, "name", "eth1"]).unwrap();
    s.node
        .ip(&["addr", "add", "198.19.60.1/24", "dev", "eth1"])
        .unwrap();
    s.node.ip(&["link", "set", "eth1", "up"]).unwrap();
    s.node
        .ip(&["route", "add", "198.19.61.0/24", "via", "198.19.60.254"])
        .unwrap();
    lan.ip(&["addr", "add", "198.19.60.254/24", "dev", &b])
        .unwrap();
    lan.ip(&["addr", "add", "198.19.61.1/32", "dev", "lo"])
        .unwrap();
    lan.ip(&["link", "set", &b, "up"]).unwrap();
    lan.ip(&["route", "add", "198.18.0.0/24", "via", "198.19.60.1"])
        .unwrap();
    s.start();
    s.plug();
    let br = ip_out(&s.node, &["-4", "-o", "addr", "show", "br100"]);
    let first = br.lines().next().unwrap_or_default();
    assert!(first.contains("198.18.0.1/24"), "the gateway first: {br}");
    assert!(br.contains("198.19.60.1/24"), "{br}");
    assert!(!ip_out(&s.node, &["-4", "addr", "show", "eth1"]).contains("inet "));
    assert!(ip_out(&s.node, &["route"]).contains("198.19.61.0/24 via 198.19.60.254 dev br100"));
    assert!(ip_out(&s.node, &["link", "show", "eth1"]).contains("master br100"));
    let mac = |dev: &str| {
        let t = ip_out(&s.node, &["-br", "link", "show", dev]);
        t.split_whitespace().nth(2).unwrap_or_default().to_string()
    };
    assert_eq!(mac("br100"), mac("eth1"));
    // Instances reach the LAN and beyond its router through the bridge.
    assert!(ping(&s.vms[0], "198.19.60.254"), "{}", s.log());
    assert!(ping(&s.vms[0], "198.19.61.1"));
    assert!(s.net("plan").contains("nothing to do"));
    s.daemon().stop().unwrap();
    s.daemon = None;
    s.net("teardown");
    assert!(ip_out(&s.node, &["-4", "addr", "show", "eth1"]).contains("198.19.60.1/24"));
    assert!(ip_out(&s.node, &["route"]).contains("198.19.61.0/24 via 198.19.60.254 dev eth1"));
    assert!(!ip_out(&s.node, &["-br", "link"]).contains("br100"));
}

#[test]
fn vlan_networks_where_the_kernel_has_8021q() {
    if !can_run("vlan_networks_where_the_kernel_has_8021q") {
        return;
    }
    // This kernel may have no 802.1Q: say so loudly, never silently pass.
    let probe = Netns::add(&format!("nnc-vlanprobe-{}", std::process::id() % 100_000)).unwrap();
    probe
        .ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        .unwrap();
    let made = probe.ip(&[
        "link", "add", "link", "p0", "name", "vlan5", "type", "vlan", "id", "5",
    ]);
    if made.is_err() {
        // Straight to the terminal: libtest hides a passing test's eprintln!.
        let _ = writeln!(std::io::stderr(), "\n!!! vlan_networks_where_the_kernel_has_8021q: THIS KERNEL HAS NO 802.1Q (VLAN) DEVICES: the VLAN test did not run here; the VLAN op is checked at the netlink-message level (control::scenarios::the_vlan_device_as_netlink_sends_it). Run this test on a kernel with 8021q.\n");
        return;
    }
    drop(probe);
    let mut s = Node::build("vlan", 1, "");
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            "gateway = \"198.18.0.1\"\n",
            "gateway = \"198.18.0.1\"\nvlan = 100\nvlan_interface = \"eth1\"\n",
        ),
    )
    .unwrap();
    let lan = Netns::add(&format!("nnc-vlan-lan-{}", s.tag)).unwrap();
    let (a, b) = (format!("nv{}a", s.tag), format!("nv{}b", s.tag));
    lab::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]).unwrap();
    lab::ip(&["link", "set", &a, "netns", s.node.name()]).unwrap();
    lab::ip(&["link", "set", &b, "netns", lan.name()]).unwrap();
    s.node
        .ip(&["link", "set", &a, "name", "eth1", "up"])
        .unwrap();
    lan.ip(&["link", "set", &b, "up"]).unwrap();
    lan.ip(&[
        "link", "add", "link", &b, "name", "v100", "type", "vlan", "id", "100",
    ])
    .unwrap();
    lan.ip(&["addr", "add", "198.18.0.200/24", "dev", "v100"])
        .unwrap();
    lan.ip(&["link", "set", "v100", "up"]).unwrap();
    s.start();
    s.plug();
    let show = String::from_utf8_lossy(
        &s.node
            .ip(&["-d", "link", "show", "vlan100"])
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        show.contains("vlan protocol 802.1Q id 100") && show.contains("master br100"),
        "{show}"
    );
    // Tagged frames: the instance reaches a host on VLAN 100 through the bridge.
    assert!(ping(&s.vms[0], "198.18.0.200"));
    s.daemon().stop().unwrap();
    s.daemon = None;
    s.net("teardown");
    assert!(s.node.ip(&["link", "show", "vlan100"]).is_err());
}
