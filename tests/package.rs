//! The Debian packages on this machine: `scripts/package` builds them (from the binary under
//! test), `dpkg -i` installs netnode (the unit enabled, the conffile, the man page, the
//! completions), `netnode --version` and `netnode check` run on the shipped config,
//! `systemd-analyze verify` accepts the unit, netnode-dnsmasq-compat diverts dnsmasq, radvd and
//! dhcp_release to netnode, and `dpkg --purge` of both leaves the machine as it was (the
//! originals back, no diversion, no file). Root only; refuses to run over an installed netnode.

#![allow(clippy::disallowed_methods)] // a test harness in real time

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::can_run_with;

const DIVERTED: [&str; 3] = [
    "/usr/sbin/dnsmasq",
    "/usr/sbin/radvd",
    "/usr/bin/dhcp_release",
];
/// What installing netnode creates (the unit's enable link included).
const INSTALLED: [&str; 8] = [
    "/usr/sbin/netnode",
    "/etc/netnode/netnode.toml",
    "/usr/lib/systemd/system/netnode.service",
    "/etc/systemd/system/multi-user.target.wants/netnode.service",
    "/usr/share/man/man8/netnode.8.gz",
    "/usr/share/bash-completion/completions/netnode",
    "/usr/share/zsh/vendor-completions/_netnode",
    "/var/lib/netnode",
];

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's bytes (following links), or none.
fn content(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

fn installed(package: &str) -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f", "${Status}", package]))
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges both packages however the test ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "netnode-dnsmasq-compat", "netnode"])
            .output();
    }
}

#[test]
fn the_packages_install_work_and_purge_without_a_trace() {
    if !can_run_with(
        "package",
        &[],
        &[
            ("dpkg-deb", "dpkg"),
            ("cargo-deb", "cargo install cargo-deb"),
            ("systemd-analyze", "systemd"),
        ],
    ) {
        return;
    }
    assert!(
        !installed("netnode") && !installed("netnode-dnsmasq-compat"),
        "netnode is installed on this machine; the package test would replace and purge it"
    );
    for p in INSTALLED {
        assert!(
            !Path::new(p).exists(),
            "{p} exists before the test; it would be purged"
        );
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let before: Vec<Option<Vec<u8>>> = DIVERTED.iter().map(|p| content(p)).collect();
    let diversions_before = ok(Command::new("dpkg-divert").arg("--list"));

    // The binary under test is target/debug/netnode: package it as it is.
    ok(Command::new(repo.join("scripts/package"))
        .env("PROFILE", "dev")
        .env("PREBUILT", "1"));
    let version = env!("CARGO_PKG_VERSION");
    let out = repo.join("target/packaging");
    let deb = out.join(format!("netnode_{version}_amd64.deb"));
    let compat = out.join(format!("netnode-dnsmasq-compat_{version}_all.deb"));
    assert!(
        deb.exists() && compat.exists(),
        "missing {deb:?} or {compat:?}"
    );

    let _purge = Purge;
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    for p in INSTALLED {
        assert!(Path::new(p).exists(), "{p} not installed");
    }
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "netnode"]));
    assert!(
        conffiles.contains("/etc/netnode/netnode.toml"),
        "{conffiles}"
    );
    let depends = ok(Command::new("dpkg-query").args(["-W", "-f", "${Depends}", "netnode"]));
    assert!(depends.contains("nftables"), "{depends}");
    assert_eq!(
        ok(Command::new("/usr/sbin/netnode").arg("--version")).trim(),
        format!("netnode {version}")
    );
    // The shipped config loads and serves nothing (exit 0: no problem).
    let check = ok(Command::new("/usr/sbin/netnode").args([
        "check",
        "--config",
        "/etc/netnode/netnode.toml",
    ]));
    assert!(
        !check.contains("bridge"),
        "the shipped config serves something: {check}"
    );
    ok(Command::new("systemd-analyze").args(["verify", "/usr/lib/systemd/system/netnode.service"]));

    ok(Command::new("dpkg").arg("-i").arg(&compat));
    let diversions = ok(Command::new("dpkg-divert").args(["--list", "netnode-dnsmasq-compat"]));
    for p in DIVERTED {
        assert!(
            diversions.contains(&format!("diversion of {p} to {p}.netnode-orig")),
            "{diversions}"
        );
        assert_eq!(
            std::fs::canonicalize(p).unwrap(),
            PathBuf::from("/usr/sbin/netnode"),
            "{p} is not netnode"
        );
    }
    for (p, was) in DIVERTED.iter().zip(&before) {
        assert_eq!(
            &content(&format!("{p}.netnode-orig")),
            was,
            "{p} was not moved aside intact"
        );
    }
    // nova's command names reach the drop-ins.
    let dnsmasq = ok(Command::new("/usr/sbin/dnsmasq").arg("--version"));
    assert!(dnsmasq.contains(&format!("netnode {version}")), "{dnsmasq}");

    ok(Command::new("dpkg").args(["--purge", "netnode-dnsmasq-compat"]));
    for (p, was) in DIVERTED.iter().zip(&before) {
        assert_eq!(&content(p), was, "{p} was not given back");
        assert!(!Path::new(&format!("{p}.netnode-orig")).exists());
    }
    ok(Command::new("dpkg").args(["--purge", "netnode"]));
    for p in INSTALLED.iter().chain(&["/etc/netnode"]) {
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
    assert!(!installed("netnode"));
    assert_eq!(
        ok(Command::new("dpkg-divert").arg("--list")),
        diversions_before
    );
}
