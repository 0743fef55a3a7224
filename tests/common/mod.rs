//! Shared harness of the namespace tests: a lab with netnode serving it, and the rule that a
//! test which cannot run says so loudly, and fails under `NETNODE_REQUIRE_NETNS=1` (CI).

#![allow(dead_code)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netnode::lab::clients::ClientKind;
use netnode::lab::{self, Daemon, Lab};

pub mod cloud;

/// Whether a missing privilege or package must fail the test rather than skip it.
pub fn required() -> bool {
    std::env::var("NETNODE_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// Skips (loudly) or fails when the test cannot run here.
pub fn can_run(test: &str, clients: &[ClientKind]) -> bool {
    can_run_with(test, clients, &[])
}

/// The Python with Debian's scapy (a pyenv `python3` earlier on PATH may lack it).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Like [`can_run`], also needing `(program, package)` pairs; `scapy` means Debian's python3-scapy.
pub fn can_run_with(test: &str, clients: &[ClientKind], programs: &[(&str, &str)]) -> bool {
    let mut missing = Vec::new();
    for (program, package) in programs {
        let present = if *program == "scapy" {
            std::process::Command::new(SYSTEM_PYTHON)
                .args(["-c", "import scapy.all"])
                .output()
                .is_ok_and(|o| o.status.success())
        } else {
            lab::have(program)
        };
        if !present {
            missing.push(format!("{program} (package {package})"));
        }
    }
    if !lab::is_root() {
        missing.push("root (network namespaces)".to_string());
    }
    if !lab::have("ip") {
        missing.push("the ip command (package iproute2)".to_string());
    }
    for c in clients {
        if !c.installed() {
            missing.push(format!("{} (package {})", c.program(), c.package()));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: cannot run without {}", missing.join(", "));
    if required() {
        panic!("{msg} (NETNODE_REQUIRE_NETNS=1: this is a failure, not a skip)");
    }
    eprintln!("\n!!! SKIPPED {msg}\n!!! set NETNODE_REQUIRE_NETNS=1 to make this a failure; scripts/test installs everything\n");
    false
}

/// One ping from `ns` with a second's wait: whether it was answered.
pub fn ping(ns: &netnode::lab::Netns, host: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "1", host])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The netnode binary under test.
pub fn netnode() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netnode"))
}

/// A lab served by netnode.
pub struct Served {
    /// The daemon (dropped first: it is killed before the lab goes).
    pub daemon: Daemon,
    /// The namespaces.
    pub lab: Lab,
    /// The config file.
    pub config: PathBuf,
    /// The hosts file.
    pub hosts: PathBuf,
    /// The dnsmasq-format lease file netnode keeps.
    pub lease_file: PathBuf,
}

/// The lease time the lab's network hands out unless a test says otherwise.
pub const LEASE: &str = "120s";

/// Builds a lab with `instances` instances and starts netnode with bindings for the first
/// `bound` of them (`vm-<i>.novalocal` at `lab.instance_ip(i)`), lease time `lease`.
pub fn serve(label: &str, instances: usize, bound: usize, lease: &str) -> Served {
    serve_with(label, instances, bound, lease, "")
}

/// Like [`serve`], with `extra` TOML appended to the network (keys, then sub-tables such as
/// `[network.ra]`).
pub fn serve_with(label: &str, instances: usize, bound: usize, lease: &str, extra: &str) -> Served {
    let lab =
        Lab::build(label, instances, Ipv4Addr::new(198, 18, 0, 1), 24).expect("building the lab");
    let hosts = lab.dir.join("nova-br100.conf");
    let lines: Vec<String> = (1..=bound).map(|i| host_line(&lab, i)).collect();
    fs::write(&hosts, lines.join("\n")).unwrap();
    fs::write(
        lab.dir.join("nova-br100.opts"),
        format!("3,{}", lab.server_ip),
    )
    .unwrap();
    let config = lab.dir.join("netnode.toml");
    fs::write(
        &config,
        format!(
            "[[network]]\nname = \"vmnet\"\nbridge = \"br100\"\ncidr = \"{}\"\ngateway = \"{}\"\nlease_time = \"{lease}\"\nmin_lease_time = \"2s\"\ndomain = \"novalocal\"\nhosts_file = \"nova-br100.conf\"\nopts_file = \"nova-br100.opts\"\n{extra}\n[state]\ndir = \"state\"\nlease_file = \"state/dnsmasq.leases\"\n",
            lab.cidr(),
            lab.server_ip
        ),
    )
    .unwrap();
    let lease_file = lab.dir.join("state/dnsmasq.leases");
    let daemon = start(&lab, &config, "netnode.log");
    Served {
        daemon,
        lab,
        config,
        hosts,
        lease_file,
    }
}

/// The hosts-file line nova would write for instance `i`.
pub fn host_line(lab: &Lab, i: usize) -> String {
    format!(
        "{},vm-{i}.novalocal,{}",
        lab.instances[i - 1].mac,
        lab.instance_ip(i)
    )
}

/// Starts netnode on the lab's config and waits until it listens.
pub fn start(lab: &Lab, config: &Path, log: &str) -> Daemon {
    let config = config.display().to_string();
    let mut d = Daemon::start(
        &lab.server,
        &netnode(),
        &["serve", "--config", &config],
        &lab.dir.join(log),
    )
    .expect("starting netnode");
    d.wait_for_log("dhcp listening", 1, Duration::from_secs(10))
        .expect("netnode listening");
    d
}

impl Served {
    /// Asks the daemon for its counters (SIGUSR1) and returns the stats line it logs.
    pub fn stats(&mut self) -> String {
        const LINE: &str = "netnode::server: stats ";
        let before = self.daemon.log_text().matches(LINE).count();
        self.daemon.signal(libc::SIGUSR1);
        self.daemon
            .wait_for_log(LINE, before + 1, Duration::from_secs(5))
            .expect("stats line");
        self.daemon
            .log_text()
            .lines()
            .rev()
            .find(|l| l.contains(LINE))
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (up to 10 s) until the daemon's log contains `needle`; panics with the log if not.
    pub fn daemon_wait(&self, needle: &str) {
        for _ in 0..100 {
            if self.daemon.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "netnode never logged {needle:?}:\n{}",
            self.daemon.log_text()
        );
    }

    /// Runs `program args` in an instance's namespace; panics, with its output and the
    /// daemon's log, unless it succeeds. Returns its stdout.
    pub fn run_in(
        &self,
        inst: &netnode::lab::Instance,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) -> String {
        let out = inst
            .ns
            .command(program)
            .args(args)
            .output()
            .expect("running a command in the namespace");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}\nnetnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.daemon.log_text()
        );
        stdout
    }

    /// Stops netnode (cleanly, or with SIGKILL as a crash would), starts it again on the same
    /// config and state, and checks that it replayed `active` leases from the journal.
    pub fn restart(&mut self, crash: bool, log: &str, active: usize) {
        if crash {
            self.daemon.kill9().unwrap();
        } else {
            self.daemon.stop().unwrap();
        }
        fs::remove_file(&self.lease_file).ok();
        self.daemon = start(&self.lab, &self.config, log);
        let text = self.daemon.log_text();
        assert!(text.contains(&format!("active={active}")), "{text}");
    }

    /// Waits until the lease file satisfies `pred`, returning its text.
    pub fn wait_lease_file(&self, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..50 {
            let text = fs::read_to_string(&self.lease_file).unwrap_or_default();
            if pred(&text) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "lease file never matched; it holds:\n{}\nlog:\n{}",
            fs::read_to_string(&self.lease_file).unwrap_or_default(),
            self.daemon.log_text()
        );
    }
}

/// Reads a counter such as `ack=3` out of a stats line. Every counter is in the line, zeros
/// included, so a name that is not there is a mistake in the test: it panics.
pub fn counter(stats: &str, name: &str) -> u64 {
    stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no counter {name:?} in {stats:?}"))
}

/// Runs netnode's own DHCP client in an instance (`client --iface eth0` and `args`).
pub fn own_client(inst: &netnode::lab::Instance, args: &[&str]) -> std::process::Output {
    inst.ns
        .command(netnode())
        .args(["client", "--iface", "eth0"])
        .args(args)
        .output()
        .unwrap()
}

/// Sends SIGHUP to `pid` every 10 ms while the instance runs single-attempt DORA exchanges with
/// netnode's own client (paced under the per-client rate limit), for at least `rounds` rounds
/// and `at_least`. Panics, with `log()`, on the first exchange that gets no answer. Returns how
/// many signals were sent.
pub fn dora_under_hup_storm(
    inst: &netnode::lab::Instance,
    pid: i32,
    rounds: u32,
    at_least: Duration,
    log: impl Fn() -> String,
) -> u32 {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: kill has no memory preconditions; the pid is the test's own daemon.
                unsafe { libc::kill(pid, libc::SIGHUP) };
                sent += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    let started = std::time::Instant::now();
    let mut round = 0;
    while round < rounds || started.elapsed() < at_least {
        round += 1;
        // 16 requests a second per MAC are answered; two per exchange stay well under.
        std::thread::sleep(Duration::from_millis(200));
        let out = own_client(inst, &["--attempts", "1", "--timeout", "2"]);
        if !out.status.success() {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "round {round}: no answer: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    storm.join().unwrap()
}

/// rdisc6 on an instance's interface, retried while its link-local address is not ready:
/// everything it printed of the first RA it got.
pub fn rdisc6(inst: &netnode::lab::Instance) -> String {
    let mut last = String::new();
    for _ in 0..30 {
        match lab::run(
            inst.ns
                .command("rdisc6")
                .args(["-1", "-w", "1500", "-r", "3", &inst.iface]),
        ) {
            Ok(out) => return String::from_utf8_lossy(&out.stdout).to_string(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("rdisc6 never got an answer: {last}");
}
