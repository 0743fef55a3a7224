//! Multi-host on etcd, with real etcd members (started by the test on ports it picks, never
//! 2379) in a namespace of their own, and netnode "hosts" each in its own namespace with its
//! own bridge and instances, reaching the cluster over a management veth. The manager's
//! commands run as an operator runs them; DHCP is checked with netnode's own client.

#![allow(clippy::disallowed_methods)] // tests read the clock

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::cloud::eventually;
use common::{can_run_with, netnode, own_client};
use netnode::lab::etcd::{Cluster, Tls};
use netnode::lab::{Daemon, Lab};
use serde_json::Value;

const ETCD: (&str, &str) = ("etcd", "etcd-server");
const ETCDCTL: (&str, &str) = ("etcdctl", "etcd-client");

/// One netnode host: its namespaces, config and daemon.
struct Host {
    name: String,
    lab: Lab,
    config: PathBuf,
    daemon: Option<Daemon>,
}

/// A cluster and the hosts using it.
struct Site {
    // Hosts first: their daemons stop before the cluster does.
    hosts: Vec<Host>,
    cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl Site {
    /// `members` etcd members and one host per entry of `hosts` (name, instances); with
    /// `linked`, the hosts' bridges are joined by a veth pair (`phys0` in each: the "physical"
    /// network of a multi-host deployment, which the control module enslaves).
    fn build(label: &str, members: usize, hosts: &[(&str, usize)], linked: bool) -> Site {
        Site::build_with(label, members, hosts, linked, None, "")
    }

    /// The same with TLS on the members and more `[etcd]` keys in the hosts' configs.
    fn build_with(
        label: &str,
        members: usize,
        hosts: &[(&str, usize)],
        linked: bool,
        tls: Option<Tls>,
        etcd_keys: &str,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{}{}", std::process::id() % 100_000, label);
        let mut cluster = Cluster::start_in_namespace_with(
            dir.path(),
            members,
            &format!("nn-{label}-etcd-{}", std::process::id() % 100_000),
            tls,
        )
        .expect("starting etcd");
        let endpoints: Vec<String> = cluster
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        let mut out = Vec::new();
        for (i, (name, instances)) in hosts.iter().enumerate() {
            let lab = Lab::build(
                &format!("{label}{i}"),
                *instances,
                Ipv4Addr::new(198, 18, 0, 1),
                24,
            )
            .expect("building a host");
            cluster.attach(&lab.server).expect("attaching a host");
            let config = lab.dir.join("netnode.toml");
            let control = if linked {
                "[control]\nenabled = true\n"
            } else {
                ""
            };
            fs::write(
                &config,
                format!(
                    "[state]\ndir = \"state\"\n[manager]\nbackend = \"etcd\"\n[etcd]\nendpoints = [{}]\nprefix = \"/nn-{tag}\"\nhost = \"{name}\"\n{etcd_keys}\n{control}",
                    endpoints.join(", ")
                ),
            )
            .unwrap();
            out.push(Host {
                name: name.to_string(),
                lab,
                config,
                daemon: None,
            });
        }
        if linked && out.len() == 2 {
            let (a, b) = (format!("nnp{tag}a"), format!("nnp{tag}b"));
            let (a, b) = (&a[..a.len().min(15)], &b[..b.len().min(15)]);
            netnode::lab::ip(&["link", "add", a, "type", "veth", "peer", "name", b]).unwrap();
            netnode::lab::ip(&["link", "set", a, "netns", out[0].lab.server.name()]).unwrap();
            netnode::lab::ip(&["link", "set", b, "netns", out[1].lab.server.name()]).unwrap();
            out[0]
                .lab
                .server
                .ip(&["link", "set", a, "name", "phys0"])
                .unwrap();
            out[1]
                .lab
                .server
                .ip(&["link", "set", b, "name", "phys0"])
                .unwrap();
            for h in &out {
                h.lab.server.ip(&["link", "set", "phys0", "up"]).unwrap();
            }
        }
        Site {
            hosts: out,
            cluster,
            _dir: dir,
        }
    }

    /// Runs a manager command as an operator on the cluster's side (the management network:
    /// it works while a host is cut off), with host 0's config.
    fn cli(&self, args: &[&str]) -> Output {
        self.cluster
            .ns
            .as_ref()
            .unwrap()
            .command(netnode())
            .args(args)
            .env("NETNODE_CONFIG", &self.hosts[0].config)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "netnode {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn vmnet(&self, extra: &[&str]) {
        let mut args = vec![
            "network-create",
            "vmnet",
            "--fixed-range-v4",
            "198.18.0.0/24",
            "--bridge",
            "br100",
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    fn start(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        let log = host.lab.dir.join("netnode.log");
        let before = fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("dhcp listening")
            .count();
        let mut d = Daemon::start(
            &host.lab.server,
            &netnode(),
            &["serve", "--config", host.config.to_str().unwrap()],
            &log,
        )
        .unwrap();
        d.wait_for_log("dhcp listening", before + 1, Duration::from_secs(15))
            .expect("netnode listening");
        host.daemon = Some(d);
    }

    fn log(&self, h: usize) -> String {
        self.hosts[h]
            .daemon
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default()
    }

    /// Creates server `name` on host `on` and gives instance `i` of that host its MAC, as
    /// nova-compute plugs a VIF. Returns the server as `--json` shows it.
    fn create(&self, name: &str, on: usize, i: usize) -> Value {
        let host = self.hosts[on].name.clone();
        let s = self.json(&["server", "create", name, "--project", "p", "--host", &host]);
        let s = s[0].clone();
        let mac = s["addresses"][0]["mac"].as_str().unwrap();
        let ns = &self.hosts[on].lab.instances[i].ns;
        ns.ip(&["link", "set", "eth0", "down"]).unwrap();
        ns.ip(&["link", "set", "eth0", "address", mac]).unwrap();
        ns.ip(&["link", "set", "eth0", "up"]).unwrap();
        s
    }

    /// One DORA from instance `i` of host `h` (a second per reply, `attempts` tries): the
    /// address it got, if any.
    fn dora(&self, h: usize, i: usize, attempts: &str) -> Option<String> {
        let out = own_client(
            &self.hosts[h].lab.instances[i],
            &["--timeout", "1", "--attempts", attempts],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success().then(|| {
            text.lines()
                .find_map(|l| l.strip_prefix("ip="))
                .unwrap_or_default()
                .to_string()
        })
    }

    /// The daemon's `ctl status --json`.
    fn status(&self, h: usize) -> Value {
        let out = self.hosts[h]
            .lab
            .server
            .command(netnode())
            .args(["ctl", "--json", "--config"])
            .arg(&self.hosts[h].config)
            .arg("status")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// A counter of the daemon's stats line (SIGUSR1).
    fn counter(&mut self, h: usize, name: &str) -> u64 {
        const LINE: &str = "netnode::server: stats ";
        let d = self.hosts[h].daemon.as_mut().unwrap();
        let before = d.log_text().matches(LINE).count();
        d.signal(libc::SIGUSR1);
        d.wait_for_log(LINE, before + 1, Duration::from_secs(5))
            .unwrap();
        let text = d.log_text();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains(LINE))
            .unwrap_or_default();
        common::counter(line, name)
    }
}

fn bindings(status: &Value) -> u64 {
    status["arguments"]["bindings"].as_u64().unwrap_or(u64::MAX)
}

fn ready() -> bool {
    can_run_with("etcd namespaces", &[], &[ETCD, ETCDCTL])
}

/// Test 2 (and the isolation): a server created for host A is served by A within a second,
/// never by B (B's DHCP sees nothing: the isolation rules keep DHCP off the shared wire), and
/// deleting it ends it on A. Each host lists in `netnode nodes`.
#[test]
fn each_host_serves_its_own_instances_and_no_other() {
    if !ready() {
        return;
    }
    let mut site = Site::build("eh", 1, &[("hosta", 2), ("hostb", 1)], true);
    site.vmnet(&["--bridge-interface", "phys0"]);
    site.start(0);
    site.start(1);
    // Both nodes are live.
    let nodes = site.json(&["nodes"]);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["host"].as_str())
        .collect();
    assert_eq!(names, ["hosta", "hostb"], "{nodes}");
    // The control module put the isolation table on both hosts.
    for h in &site.hosts {
        let out = h
            .lab
            .server
            .command("nft")
            .args(["list", "table", "bridge", "netnode_isolate"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("phys0") && text.contains("198.18.0.1"),
            "{text}"
        );
    }
    let created = Instant::now();
    let s = site.create("vm-a1", 0, 0);
    let ip = s["addresses"][0]["address"].as_str().unwrap().to_string();
    // Served by A within a second of the command's return.
    eventually(
        "host A's table has the server",
        Duration::from_secs(1),
        || bindings(&site.status(0)) == 1,
    );
    let took = created.elapsed();
    assert_eq!(
        site.dora(0, 0, "3").as_deref(),
        Some(ip.as_str()),
        "{}",
        site.log(0)
    );
    assert_eq!(bindings(&site.status(1)), 0, "B has no binding of A's");
    // B never saw A's DHCP traffic, and answered nothing.
    assert_eq!(site.counter(1, "received"), 0, "{}", site.log(1));
    assert!(site.counter(0, "ack") >= 1);
    // A server of B: B serves it, A does not (A's other instance, given B's server's MAC,
    // gets nothing: A does not know it, and B's answer cannot cross).
    let b = site.create("vm-b1", 1, 0);
    let bip = b["addresses"][0]["address"].as_str().unwrap().to_string();
    eventually(
        "host B's table has its server",
        Duration::from_secs(2),
        || bindings(&site.status(1)) == 1,
    );
    assert_eq!(
        site.dora(1, 0, "3").as_deref(),
        Some(bip.as_str()),
        "{}",
        site.log(1)
    );
    let bmac = b["addresses"][0]["mac"].as_str().unwrap();
    let ns = &site.hosts[0].lab.instances[1].ns;
    ns.ip(&["link", "set", "eth0", "address", bmac]).unwrap();
    assert_eq!(site.dora(0, 1, "1"), None, "A answered B's server");
    // A floating IP of A's server is NATed by A, the host its port is on, and by no other.
    site.ok(&[
        "floating",
        "create",
        "--ip-range",
        "198.19.7.0/30",
        "--interface",
        "phys0",
    ]);
    let f = site.json(&["floating", "allocate", "--project", "p"]);
    let fip = f["address"].as_str().unwrap().to_string();
    site.ok(&["floating", "associate", &fip, "--server", "vm-a1"]);
    let dnat = |h: usize| {
        let out = site.hosts[h]
            .lab
            .server
            .command("nft")
            .args(["list", "map", "inet", "netnode", "floating_dnat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually(
        "host A NATs the floating IP",
        Duration::from_secs(5),
        || dnat(0).contains(&format!("{fip} : {ip}")),
    );
    assert!(
        !dnat(1).contains(&fip),
        "host B NATs A's floating IP: {}",
        dnat(1)
    );
    let listed = site.json(&["server", "show", "vm-a1"]);
    assert_eq!(
        listed["floating_ips"][0].as_str(),
        Some(fip.as_str()),
        "{listed}"
    );
    // Deleting it ends it on A (and its floating IP is disassociated).
    site.ok(&["server", "delete", "vm-a1"]);
    eventually("host A dropped the server", Duration::from_secs(2), || {
        bindings(&site.status(0)) == 0
    });
    assert_eq!(
        site.dora(0, 0, "1"),
        None,
        "A still answers a deleted server"
    );
    let f = site.json(&["floating", "list"]);
    assert!(
        f.as_array()
            .unwrap()
            .iter()
            .all(|r| r["fixed_ip"].is_null()),
        "{f}"
    );
    eventually(
        "host A dropped the floating IP's NAT",
        Duration::from_secs(5),
        || !dnat(0).contains(&fip),
    );
    eprintln!("create to served: {took:?}");
}

/// Tests 1 and 3: a 3-member cluster; the leader is killed in the middle of a stream of
/// server creations; the node resyncs and serves every server, none lost or doubled.
#[test]
fn the_leader_dies_during_writes_and_nothing_is_lost() {
    if !ready() {
        return;
    }
    let mut site = Site::build("ld", 3, &[("hosta", 1)], false);
    site.vmnet(&[]);
    site.start(0);
    const SERVERS: usize = 30;
    let mut killed = None;
    for i in 0..SERVERS {
        if i == SERVERS / 3 {
            let leader = site.cluster.leader().unwrap();
            site.cluster.kill(leader).unwrap();
            killed = Some(leader);
        }
        let name = format!("vm-{i}");
        // A write cut by the election may have landed: the same name again says so.
        let mut done = false;
        for _ in 0..40 {
            let out = site.cli(&[
                "server",
                "create",
                &name,
                "--project",
                "p",
                "--host",
                "hosta",
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || err.contains("is taken") {
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(done, "server {name} could not be created");
        if i == 2 * SERVERS / 3 {
            // The member comes back on its data and catches up.
            site.cluster.start_member(killed.unwrap()).unwrap();
        }
    }
    let listed = site.json(&["server", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), SERVERS, "{listed}");
    let mut addresses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["addresses"][0]["address"].as_str())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), SERVERS, "an address was handed out twice");
    eventually(
        "the node serves every server",
        Duration::from_secs(20),
        || bindings(&site.status(0)) == SERVERS as u64,
    );
    let status = site.status(0);
    assert!(site.counter(0, "etcd_lists") >= 1, "{status}");
}

/// Tests 4 and 5: compaction past a stopped node's revision (it restarts, lists, and serves
/// exactly the current set, not its stale saved view); compaction while a node is cut off
/// (its resumed watch is cancelled, it lists again); etcd entirely down (the node keeps
/// serving its last view and its leases, and catches up when etcd returns).
#[test]
fn compaction_and_outages_leave_the_node_serving_the_current_set() {
    if !ready() {
        return;
    }
    let mut site = Site::build("co", 1, &[("hosta", 3)], false);
    site.vmnet(&[]);
    site.start(0);
    let a = site.create("vm-a", 0, 0);
    let b = site.create("vm-b", 0, 1);
    eventually("two servers served", Duration::from_secs(2), || {
        bindings(&site.status(0)) == 2
    });
    let aip = a["addresses"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(site.dora(0, 0, "3").as_deref(), Some(aip.as_str()));
    // 4: stopped; one server goes, one comes; the history is compacted.
    site.hosts[0].daemon.as_mut().unwrap().stop().unwrap();
    site.ok(&["server", "delete", "vm-b"]);
    let c = site.create("vm-c", 0, 2);
    site.cluster.compact().unwrap();
    site.start(0);
    eventually(
        "the current set after a restart",
        Duration::from_secs(5),
        || bindings(&site.status(0)) == 2,
    );
    let cip = c["addresses"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        site.dora(0, 2, "3").as_deref(),
        Some(cip.as_str()),
        "{}",
        site.log(0)
    );
    let _ = b;
    assert_eq!(site.dora(0, 1, "1"), None, "a deleted server is served");
    // Compaction while the node is cut off: its watch resumes from a compacted revision and
    // is cancelled; it lists at once.
    site.hosts[0]
        .lab
        .server
        .ip(&["link", "set", "mgmt0", "down"])
        .unwrap();
    site.hosts[0]
        .daemon
        .as_mut()
        .unwrap()
        .wait_for_log("etcd: lost", 1, Duration::from_secs(30))
        .unwrap();
    let d = site.create("vm-d", 0, 1);
    site.ok(&["server", "delete", "vm-c"]);
    site.cluster.compact().unwrap();
    let compactions = site.counter(0, "etcd_compactions");
    assert_eq!(site.counter(0, "etcd_connected"), 0);
    site.hosts[0]
        .lab
        .server
        .ip(&["link", "set", "mgmt0", "up"])
        .unwrap();
    eventually(
        "the node relisted after its revision was compacted",
        Duration::from_secs(40),
        || bindings(&site.status(0)) == 2 && site.log(0).matches("etcd: listed").count() >= 3,
    );
    assert_eq!(
        site.counter(0, "etcd_compactions"),
        compactions + 1,
        "{}",
        site.log(0)
    );
    let dip = d["addresses"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        site.dora(0, 1, "3").as_deref(),
        Some(dip.as_str()),
        "{}",
        site.log(0)
    );
    assert_eq!(
        site.dora(0, 2, "1"),
        None,
        "a server deleted while cut off is served"
    );
    // 5: etcd entirely down. The node keeps serving its last view and its leases.
    site.cluster.kill(0).unwrap();
    site.hosts[0]
        .daemon
        .as_mut()
        .unwrap()
        .wait_for_log("etcd: lost", 2, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        site.dora(0, 0, "3").as_deref(),
        Some(aip.as_str()),
        "{}",
        site.log(0)
    );
    assert_eq!(site.counter(0, "etcd_connected"), 0);
    // A restart while etcd is down serves the saved view.
    site.hosts[0].daemon.as_mut().unwrap().stop().unwrap();
    site.start(0);
    assert_eq!(bindings(&site.status(0)), 2, "{}", site.log(0));
    assert_eq!(
        site.dora(0, 1, "3").as_deref(),
        Some(dip.as_str()),
        "{}",
        site.log(0)
    );
    // etcd returns; the node catches up with what is written next.
    site.cluster.start_member(0).unwrap();
    site.cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let e = site.create("vm-e", 0, 2);
    eventually("the node caught up", Duration::from_secs(30), || {
        bindings(&site.status(0)) == 3
    });
    let eip = e["addresses"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        site.dora(0, 2, "3").as_deref(),
        Some(eip.as_str()),
        "{}",
        site.log(0)
    );
}

/// Test 6: two managers allocating at once from one small network never hand out one
/// address twice; when the network runs out, the rest are refused.
#[test]
fn two_managers_never_hand_out_one_address() {
    if !ready() {
        return;
    }
    let site = Site::build("tm", 1, &[("hosta", 0)], false);
    // 198.18.0.0/27: 29 addresses a server may get.
    site.ok(&[
        "network-create",
        "small",
        "--fixed-range-v4",
        "198.18.0.0/27",
        "--bridge",
        "br100",
    ]);
    let run = |tag: &'static str| {
        let ns = site.cluster.ns.as_ref().unwrap().name().to_string();
        let config = site.hosts[0].config.clone();
        std::thread::spawn(move || {
            let mut made = 0;
            let mut refused = 0;
            for i in 0..20 {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(netnode())
                    .args(["server", "create", &format!("{tag}-{i}"), "--project", "p"])
                    .env("NETNODE_CONFIG", &config)
                    .output()
                    .unwrap();
                let err = String::from_utf8_lossy(&out.stderr).to_string();
                if out.status.success() {
                    made += 1;
                } else if err.contains("no free fixed IP") {
                    refused += 1;
                } else {
                    panic!("server create {tag}-{i}: {err}");
                }
            }
            (made, refused)
        })
    };
    let (a, b) = (run("one"), run("two"));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a.0 + b.0, 29, "every address handed out once: {a:?} {b:?}");
    assert_eq!(a.1 + b.1, 11);
    let listed = site.json(&["server", "list"]);
    let mut addresses: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["addresses"][0]["address"].as_str().map(String::from))
        .collect();
    assert_eq!(addresses.len(), 29);
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 29, "an address was handed out twice");
    // One address key per server, no more.
    let keys = site
        .cluster
        .etcdctl(&["get", "--prefix", "--keys-only", "/"])
        .unwrap();
    assert_eq!(
        keys.lines()
            .filter(|l| l.contains("/addresses/small/"))
            .count(),
        29,
        "{keys}"
    );
}

/// Makes a CA, a certificate for the members (198.18.250.1) and a client certificate (CN
/// `root`) with openssl, in `dir`.
fn certificates(dir: &std::path::Path) -> Tls {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=netnode-test-ca",
    ]);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:198.18.250.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "etcd"), ("client", "root")] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client: (dir.join("client.pem"), dir.join("client.key")),
    }
}

/// TLS with client certificates, and etcd's authentication with a user that may touch the
/// prefix only: the manager and the node work through both; a wrong password is refused with
/// etcd's reason.
#[test]
fn tls_and_authentication() {
    if !can_run_with("etcd tls", &[], &[ETCD, ETCDCTL, ("openssl", "openssl")]) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let tls = certificates(certs.path());
    let password = certs.path().join("password");
    fs::write(&password, "nn-secret\n").unwrap();
    let keys = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nuser = \"netnode\"\npassword_file = \"{}\"",
        tls.ca.display(),
        tls.client.0.display(),
        tls.client.1.display(),
        password.display()
    );
    let mut site = Site::build_with("ta", 1, &[("hosta", 1)], false, Some(tls), &keys);
    let prefix = format!("/nn-{}ta", std::process::id() % 100_000);
    for args in [
        vec!["user", "add", "root", "--new-user-password=root-secret"],
        vec!["user", "add", "netnode", "--new-user-password=nn-secret"],
        vec!["role", "add", "nn"],
        vec![
            "role",
            "grant-permission",
            "nn",
            "--prefix=true",
            "readwrite",
            &prefix,
        ],
        vec!["user", "grant-role", "netnode", "nn"],
        vec!["auth", "enable"],
    ] {
        site.cluster.etcdctl(&args).unwrap();
    }
    site.cluster.etcdctl_user = Some("root:root-secret".into());
    site.vmnet(&[]);
    site.start(0);
    let s = site.create("vm-t", 0, 0);
    let ip = s["addresses"][0]["address"].as_str().unwrap().to_string();
    eventually(
        "the node serves it over TLS",
        Duration::from_secs(5),
        || bindings(&site.status(0)) == 1,
    );
    assert_eq!(
        site.dora(0, 0, "3").as_deref(),
        Some(ip.as_str()),
        "{}",
        site.log(0)
    );
    let nodes = site.json(&["nodes"]);
    assert_eq!(nodes[0]["host"].as_str(), Some("hosta"), "{nodes}");
    // A wrong password: refused, with the reason.
    fs::write(&password, "wrong\n").unwrap();
    let out = site.cli(&["server", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("authentication failed"),
        "{err}"
    );
}
