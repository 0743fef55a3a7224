//! What an operator meets when things go wrong around the daemon (root, namespaces): a second
//! copy started by mistake, a bridge another process already serves, a full disk under the
//! state directory, and the log lines that say who got which address.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{can_run, counter, netnode, own_client, serve, LEASE};
use netnode::lab::clients::{ClientKind, ClientRun};
use netnode::lab::Instance;

/// `netnode serve` on `config` in the lab's server namespace, in the foreground, to its end.
fn serve_once(s: &common::Served, config: &Path) -> std::process::Output {
    s.lab
        .server
        .command(netnode())
        .args(["serve", "--config", &config.display().to_string()])
        .output()
        .unwrap()
}

/// One DORA with netnode's own client, one attempt: whether it got an ACK.
fn dora(inst: &Instance) -> bool {
    let out = own_client(inst, &["--attempts", "1", "--timeout", "1"]);
    String::from_utf8_lossy(&out.stdout).contains("kind=ACK")
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_and_the_first_keeps_its_leases() {
    if !can_run("twice", &[ClientKind::Dhclient]) {
        return;
    }
    let mut s = serve("twice", 1, 1, LEASE);
    let first = s.daemon.pid().unwrap();
    let run = ClientRun::new(&s.lab.instances[0], ClientKind::Dhclient, &s.lab.dir).unwrap();
    run.obtain().unwrap();
    s.wait_lease_file(|t| t.lines().count() == 1);
    let journal = s.lab.dir.join("state/leases.journal");
    let before = fs::read(&journal).unwrap();
    let out = serve_once(&s, &s.config.clone());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second daemon must not run: {err}");
    assert!(
        err.contains(&format!("another netnode (pid {first})")),
        "the refusal names the holder: {err}"
    );
    assert_eq!(
        fs::read(&journal).unwrap(),
        before,
        "the refused daemon never touched the journal"
    );
    // The first daemon serves on: a release ends the lease, and it stays ended across a restart
    // (two daemons on one journal once brought a released lease back).
    run.release().unwrap();
    s.wait_lease_file(|t| t.trim().is_empty());
    s.restart(false, "netnode-2.log", 0);
}

#[test]
fn a_bridge_another_process_serves_is_refused_at_start() {
    if !can_run("busybr", &[]) {
        return;
    }
    let s = serve("busybr", 1, 1, LEASE);
    // The same bridge, another state directory: the lock does not stop it, port 67 does.
    let other = s.lab.dir.join("other.toml");
    fs::write(
        &other,
        fs::read_to_string(&s.config)
            .unwrap()
            .replace("dir = \"state\"", "dir = \"state-other\"")
            .replace("lease_file = \"state/dnsmasq.leases\"", ""),
    )
    .unwrap();
    let out = serve_once(&s, &other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("failed to create listening socket on br100, port 67")
            && err.contains("in use"),
        "{err}"
    );
    assert!(dora(&s.lab.instances[0]), "the first daemon still serves");
}

/// A tmpfs mounted on a directory for the life of the guard (a small disk to fill).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills it: writes a file until the disk is full.
    fn fill(&self) {
        let mut f = fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Retries `f` for up to `limit`; whether it ever held.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

#[test]
fn a_full_disk_withholds_acks_loudly_and_a_restart_on_it_still_serves() {
    if !can_run("fulldisk", &[]) {
        return;
    }
    let mut s = serve("fulldisk", 2, 2, LEASE);
    s.daemon.stop().unwrap();
    let state = s.lab.dir.join("state");
    fs::remove_dir_all(&state).unwrap();
    let disk = Tmpfs::mount(&state, "2m");
    // 1. A start on a disk already full: no journal can be created. netnode starts anyway,
    //    promises no lease (no ACK), says so, and leaves no temporary file behind.
    disk.fill();
    s.daemon = common::start(&s.lab, &s.config, "netnode-full.log");
    assert!(
        !dora(&s.lab.instances[0]),
        "no ACK while no lease can be made durable"
    );
    let stats = s.stats();
    assert!(counter(&stats, "acks_withheld") >= 1, "{stats}");
    assert!(counter(&stats, "journal_failures") >= 1, "{stats}");
    s.daemon_wait("LEASES CANNOT BE MADE DURABLE");
    let left: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    // 2. Space comes back: netnode recovers by itself.
    disk.free();
    assert!(
        eventually(Duration::from_secs(10), || dora(&s.lab.instances[0])),
        "an ACK once space is back:\n{}",
        s.daemon.log_text()
    );
    s.daemon_wait("the lease journal takes writes again");
    // 3. Full again, and a restart on the full disk: it starts (the journal is kept and
    //    written in place), holds the lease it made durable, and still grants into the room
    //    the journal keeps ahead of its records.
    disk.fill();
    s.restart(false, "netnode-restart.log", 1);
    s.daemon_wait("writing on in place");
    assert!(
        dora(&s.lab.instances[0]),
        "the held lease renews:\n{}",
        s.daemon.log_text()
    );
    assert!(
        dora(&s.lab.instances[1]),
        "a new lease fits in the journal's room"
    );
}

#[test]
fn grants_and_refusals_are_logged_with_bridge_mac_address_and_hostname() {
    if !can_run("logs", &[]) {
        return;
    }
    let s = serve("logs", 1, 1, LEASE);
    let inst = &s.lab.instances[0];
    assert!(dora(inst));
    s.daemon_wait("DHCPACK: lease granted");
    let log = s.daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("DHCPACK"))
        .unwrap_or_default()
        .to_string();
    for part in [
        "bridge=\"br100\"".to_string(),
        format!("mac={}", inst.mac),
        format!("ip={}", s.lab.instance_ip(1)),
        "hostname=\"vm-1\"".to_string(),
    ] {
        assert!(line.contains(&part), "{part} in {line}");
    }
    // An address that is not its own: a NAK, logged with what it asked for.
    let out = own_client(inst, &["--request", "198.18.0.99", "--attempts", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind=NAK"));
    s.daemon_wait("DHCPNAK");
    let log = s.daemon.log_text();
    let nak = log
        .lines()
        .find(|l| l.contains("DHCPNAK"))
        .unwrap_or_default();
    assert!(
        nak.contains(&format!("mac={}", inst.mac)) && nak.contains("ip=198.18.0.99"),
        "{nak}"
    );
}
