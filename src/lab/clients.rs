//! Real DHCP clients (ISC dhclient, busybox udhcpc, dhcpcd) run inside lab namespaces, each
//! with a small hook script that records what it was given and configures the address, so
//! nothing touches the host's /etc/resolv.conf.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{have, Instance};

/// A DHCP client program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// ISC dhclient (package isc-dhcp-client).
    Dhclient,
    /// busybox udhcpc (package udhcpc).
    Udhcpc,
    /// dhcpcd (package dhcpcd-base).
    Dhcpcd,
}

impl ClientKind {
    /// The program name.
    pub fn program(self) -> &'static str {
        match self {
            ClientKind::Dhclient => "dhclient",
            ClientKind::Udhcpc => "udhcpc",
            ClientKind::Dhcpcd => "dhcpcd",
        }
    }

    /// The Debian package that provides it.
    pub fn package(self) -> &'static str {
        match self {
            ClientKind::Dhclient => "isc-dhcp-client",
            ClientKind::Udhcpc => "udhcpc",
            ClientKind::Dhcpcd => "dhcpcd-base",
        }
    }

    /// Whether it is installed.
    pub fn installed(self) -> bool {
        have(self.program())
    }
}

/// One event a client's hook script saw (`reason` and the variables it was given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientEvent {
    /// dhclient's `reason` (BOUND, RENEW, ...) or udhcpc's first argument (bound, renew, ...).
    pub reason: String,
    /// The variables, by name.
    pub vars: BTreeMap<String, String>,
}

/// What a client ended up with, normalised across clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acquired {
    /// Address.
    pub ip: Option<Ipv4Addr>,
    /// Netmask.
    pub mask: Option<Ipv4Addr>,
    /// Default router.
    pub router: Option<Ipv4Addr>,
    /// Host name.
    pub hostname: Option<String>,
    /// Domain name.
    pub domain: Option<String>,
    /// Lease time in seconds.
    pub lease_time: Option<u32>,
}

impl ClientEvent {
    fn var(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| self.vars.get(*n))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Normalises dhclient's `new_*` and udhcpc's names.
    pub fn acquired(&self) -> Acquired {
        let ip = |names: &[&str]| {
            self.var(names)
                .and_then(|v| v.split_whitespace().next().and_then(|a| a.parse().ok()))
        };
        Acquired {
            ip: ip(&["new_ip_address", "ip"]),
            mask: ip(&["new_subnet_mask", "subnet"]),
            router: ip(&["new_routers", "router"]),
            hostname: self.var(&["new_host_name", "hostname"]),
            domain: self.var(&["new_domain_name", "domain"]),
            lease_time: self
                .var(&["new_dhcp_lease_time", "lease"])
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// A client set up for one instance: its files live in `dir`.
#[derive(Debug)]
pub struct ClientRun<'a> {
    /// The instance.
    pub instance: &'a Instance,
    /// Which client.
    pub kind: ClientKind,
    /// Scratch directory for lease, pid, script and event files.
    pub dir: PathBuf,
}

const HOOK: &str = r#"#!/bin/sh
# Written by netnode's lab: record the event, then configure the interface like a real hook.
# The event is appended in one write, so a reader never sees its header without its variables.
reason="${reason:-$1}"
event="$(echo "--- $reason"; env | grep -E '^(new_|old_|interface=|ip=|subnet=|router=|hostname=|domain=|lease=|dns=|serverid=|mask=)' | sort)"
printf '%s\n' "$event" >> "@EVENTS@"
iface="${interface:-eth0}"
case "$reason" in
  PREINIT) ip link set "$iface" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$iface" ;;
  bound|renew) ip addr replace "$ip/$subnet" dev "$iface" ;;
  RELEASE|EXPIRE|STOP|FAIL|deconfig) ip -4 addr flush dev "$iface" ;;
esac
exit 0
"#;

impl<'a> ClientRun<'a> {
    /// Prepares files for `kind` on `instance` under `dir`.
    pub fn new(instance: &'a Instance, kind: ClientKind, dir: &Path) -> io::Result<ClientRun<'a>> {
        let dir = dir.join(format!("{}-{}", kind.program(), instance.ns.name()));
        fs::create_dir_all(&dir)?;
        let run = ClientRun {
            instance,
            kind,
            dir,
        };
        let script = run.path("hook.sh");
        fs::write(
            &script,
            HOOK.replace("@EVENTS@", &run.path("events").display().to_string()),
        )?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        Ok(run)
    }

    /// A file in the client's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self) -> Command {
        let mut c = self.instance.ns.command("timeout");
        c.arg("60").arg(self.kind.program());
        c
    }

    /// Runs the client with its output in files, not pipes: dhcpcd leaves privilege-separation
    /// helpers behind that would hold a pipe open. Helpers still running in the instance's
    /// namespace afterwards (ours: nothing else runs there) are ended, except a dhclient that
    /// stays to renew.
    fn output(&self, mut cmd: Command) -> io::Result<Output> {
        let (out_path, err_path) = (self.path("stdout"), self.path("stderr"));
        let status = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(&err_path)?)
            .status()?;
        if self.kind == ClientKind::Dhcpcd {
            self.end_helpers();
        }
        Ok(Output {
            status,
            stdout: fs::read(&out_path)?,
            stderr: fs::read(&err_path)?,
        })
    }

    fn end_helpers(&self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", self.instance.ns.name()])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Runs the client once to get a lease. dhclient stays running afterwards (it renews);
    /// udhcpc and dhcpcd exit. Err when the client got nothing.
    pub fn obtain(&self) -> io::Result<Output> {
        let s = |p: &str| self.path(p).display().to_string();
        let mut cmd = self.command();
        match self.kind {
            ClientKind::Dhclient => {
                cmd.args([
                    "-v",
                    "-1",
                    "-lf",
                    &s("leases"),
                    "-pf",
                    &s("pid"),
                    "-sf",
                    &s("hook.sh"),
                    &self.instance.iface,
                ]);
            }
            ClientKind::Udhcpc => {
                cmd.args([
                    "-i",
                    &self.instance.iface,
                    "-n",
                    "-q",
                    "-f",
                    "-t",
                    "3",
                    "-T",
                    "2",
                    "-s",
                    &s("hook.sh"),
                ]);
            }
            ClientKind::Dhcpcd => {
                cmd.args([
                    "-4",
                    "-1",
                    "-T",
                    "-t",
                    "15",
                    "--config",
                    "/dev/null",
                    &self.instance.iface,
                ]);
            }
        }
        let out = self.output(cmd)?;
        let got_lease = match self.kind {
            ClientKind::Dhcpcd => String::from_utf8_lossy(&out.stdout).contains("new_ip_address="),
            _ => out.status.success(),
        };
        if !got_lease {
            return Err(io::Error::other(format!(
                "{} got no lease ({}):\n{}{}",
                self.kind.program(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }

    /// Every event the hook saw so far (for dhcpcd's test mode: its printed variables).
    pub fn events(&self) -> Vec<ClientEvent> {
        let text = fs::read_to_string(self.path("events")).unwrap_or_default();
        parse_events(&text)
    }

    /// The last event that carried an address.
    pub fn acquired(&self) -> Option<Acquired> {
        self.events()
            .iter()
            .rev()
            .map(ClientEvent::acquired)
            .find(|a| a.ip.is_some())
    }

    /// dhclient: releases the lease (`dhclient -r`), which also ends the running dhclient.
    pub fn release(&self) -> io::Result<Output> {
        let s = |p: &str| self.path(p).display().to_string();
        let mut cmd = self.command();
        cmd.args([
            "-v",
            "-r",
            "-lf",
            &s("leases"),
            "-pf",
            &s("pid"),
            "-sf",
            &s("hook.sh"),
            &self.instance.iface,
        ]);
        self.output(cmd)
    }

    /// Waits until the hook has seen an event with this reason `count` times.
    pub fn wait_for_event(&self, reason: &str, count: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.events().iter().filter(|e| e.reason == reason).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// Parses dhcpcd's `-T` output (`new_ip_address=...` lines) into one event.
pub fn parse_dhcpcd_output(stdout: &str) -> ClientEvent {
    let mut event = ClientEvent {
        reason: "TEST".into(),
        vars: BTreeMap::new(),
    };
    for line in stdout.lines() {
        if let Some((k, v)) = line.trim().split_once('=') {
            event
                .vars
                .insert(k.to_string(), v.trim_matches('\'').to_string());
        }
    }
    event
}

fn parse_events(text: &str) -> Vec<ClientEvent> {
    let mut events: Vec<ClientEvent> = Vec::new();
    for line in text.lines() {
        if let Some(reason) = line.strip_prefix("--- ") {
            events.push(ClientEvent {
                reason: reason.trim().to_string(),
                vars: BTreeMap::new(),
            });
        } else if let (Some(event), Some((k, v))) = (events.last_mut(), line.split_once('=')) {
            event.vars.insert(k.to_string(), v.to_string());
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hook_events_of_both_clients() {
        let text = "--- PREINIT\ninterface=eth0\n--- BOUND\nnew_ip_address=198.18.0.10\nnew_subnet_mask=255.255.255.0\nnew_routers=198.18.0.1\nnew_host_name=vm-1\nnew_domain_name=novalocal\nnew_dhcp_lease_time=120\n--- bound\nip=198.18.0.11\nsubnet=255.255.255.0\nrouter=198.18.0.1 \nlease=60\n";
        let events = parse_events(text);
        assert_eq!(events.len(), 3);
        let a = events[1].acquired();
        assert_eq!(a.ip, Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(a.hostname.as_deref(), Some("vm-1"));
        assert_eq!(a.lease_time, Some(120));
        let b = events[2].acquired();
        assert_eq!(b.router, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(b.lease_time, Some(60));
        let d = parse_dhcpcd_output("new_ip_address='198.18.0.12'\nnew_routers=198.18.0.1\n");
        assert_eq!(d.acquired().ip, Some(Ipv4Addr::new(198, 18, 0, 12)));
    }
}
