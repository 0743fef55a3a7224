//! A lab whose table comes from the manager's database: the manager's commands run as an
//! operator runs them (`NETNODE_CONFIG`), the daemon serving the same config.

#![allow(clippy::disallowed_methods)] // a test reads the clock

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use netnode::lab::{Daemon, Lab};
use serde_json::Value;

/// A lab whose table comes from the manager's database.
pub struct Cloud {
    /// The daemon, once started.
    pub daemon: Option<Daemon>,
    /// The namespaces.
    pub lab: Lab,
    /// The config file.
    pub config: PathBuf,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.daemon.take();
    }
}

impl Cloud {
    /// A lab (bridge br100 at 198.18.0.1/24 in the server namespace) and a config with
    /// `[manager]` and `extra`; the daemon is not started.
    pub fn build(label: &str, instances: usize, extra: &str) -> Cloud {
        let lab = Lab::build(label, instances, Ipv4Addr::new(198, 18, 0, 1), 24)
            .expect("building the lab");
        let config = lab.dir.join("netnode.toml");
        fs::write(
            &config,
            format!(
                "[state]\ndir = \"state\"\nlease_file = \"state/dnsmasq.leases\"\n[manager]\n{extra}\n"
            ),
        )
        .unwrap();
        Cloud {
            daemon: None,
            lab,
            config,
        }
    }

    /// `network-create vmnet` on the lab's bridge.
    pub fn vmnet(&self) {
        self.vmnet_with(&[]);
    }

    /// The same with more flags.
    pub fn vmnet_with(&self, extra: &[&str]) {
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

    /// Runs a manager command.
    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(super::netnode())
            .args(args)
            .env("NETNODE_CONFIG", &self.config)
            .env_remove("NETNODE_DATABASE")
            .output()
            .unwrap()
    }

    /// Runs a manager command that must succeed; returns its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "netnode {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The same with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    pub fn start(&mut self) {
        let mut d = Daemon::start(
            &self.lab.server,
            &super::netnode(),
            &["serve", "--config", self.config.to_str().unwrap()],
            &self.lab.dir.join("netnode.log"),
        )
        .unwrap();
        d.wait_for_log("dhcp listening", 1, Duration::from_secs(10))
            .expect("netnode listening");
        self.daemon = Some(d);
    }

    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default()
    }

    /// Creates a server; gives instance `i`'s interfaces its MACs, as nova-compute plugs a VIF.
    pub fn create(&self, name: &str, i: usize, ifaces: &[&str], extra: &[&str]) -> Value {
        let mut args = vec!["server", "create", name, "--project", "demo"];
        args.extend_from_slice(extra);
        let s = self.json(&args);
        let s = s[0].clone();
        let ns = &self.lab.instances[i].ns;
        for (n, iface) in ifaces.iter().enumerate() {
            let mac = s["addresses"][n]["mac"].as_str().unwrap();
            ns.ip(&["link", "set", iface, "down"]).unwrap();
            ns.ip(&["link", "set", iface, "address", mac]).unwrap();
            ns.ip(&["link", "set", iface, "up"]).unwrap();
        }
        s
    }

    /// Whether the manager has `ip` as leased.
    pub fn leased(&self, ip: &str) -> bool {
        self.json(&["fixed", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == ip && r["leased"] == true)
    }
}

/// Waits until `f` holds, failing the test after `timeout`.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
