//! A throwaway test network in Linux network namespaces: a server namespace with a bridge,
//! and instance namespaces each plugged into it by a veth pair. Used by `netnode demo` and the
//! integration tests. Everything is created with unique names and removed in `Drop`, also when
//! a test fails, so labs can run in parallel and leave nothing behind.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::table::MacAddr;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether this process runs as root (namespaces need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a command and fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> io::Result<Output> {
    run(Command::new("ip").args(args))
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// A network namespace, deleted on drop (after ending the processes left inside it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn add(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes in a namespace this guard created: ours.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// One instance: its namespace, interface and MAC.
#[derive(Debug)]
pub struct Instance {
    /// The instance's namespace.
    pub ns: Netns,
    /// Its interface inside the namespace (`eth0`).
    pub iface: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// The server-side end of its veth pair, a port of the bridge.
    pub port: String,
}

/// A server namespace with a bridge, and instances on it.
#[derive(Debug)]
pub struct Lab {
    /// Instances (dropped before the server namespace).
    pub instances: Vec<Instance>,
    /// The server's namespace.
    pub server: Netns,
    /// The bridge inside the server namespace.
    pub bridge: String,
    /// The server's address on the bridge.
    pub server_ip: Ipv4Addr,
    /// Prefix length of the lab network.
    pub prefix: u8,
    /// A scratch directory removed with the lab.
    pub dir: PathBuf,
    tag: String,
}

impl Lab {
    /// Builds a lab named after `label` (letters only, short) with `instances` instance
    /// namespaces. The bridge gets `server_ip/prefix`; instance `i` (from 1) gets MAC
    /// `fa:16:3e:<tag>:00:<i>`.
    pub fn build(
        label: &str,
        instances: usize,
        server_ip: Ipv4Addr,
        prefix: u8,
    ) -> io::Result<Lab> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let dir = std::env::temp_dir().join(format!("netnode-{label}-{tag}"));
        fs::create_dir_all(&dir)?;
        let server = Netns::add(&format!("nn-{label}-srv-{tag}"))?;
        let bridge = "br100".to_string();
        server.ip(&["link", "add", &bridge, "type", "bridge"])?;
        server.ip(&[
            "addr",
            "add",
            &format!("{server_ip}/{prefix}"),
            "dev",
            &bridge,
        ])?;
        server.ip(&["link", "set", &bridge, "up"])?;
        let mut lab = Lab {
            instances: Vec::new(),
            server,
            bridge,
            server_ip,
            prefix,
            dir,
            tag,
        };
        for _ in 0..instances {
            lab.add_instance()?;
        }
        Ok(lab)
    }

    /// Adds one more instance namespace, plugged into the bridge.
    pub fn add_instance(&mut self) -> io::Result<&Instance> {
        let i = self.instances.len() + 1;
        let ns = Netns::add(&format!(
            "{}-i{i}",
            self.server.name().replace("-srv-", "-")
        ))?;
        let (port, peer) = (format!("nv{}s{i}", self.tag), format!("nv{}c{i}", self.tag));
        ip(&["link", "add", &port, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &port, "netns", self.server.name()])?;
        ip(&["link", "set", &peer, "netns", ns.name()])?;
        self.server
            .ip(&["link", "set", &port, "master", &self.bridge])?;
        self.server.ip(&["link", "set", &port, "up"])?;
        let mac = MacAddr([
            0xfa,
            0x16,
            0x3e,
            (self.tag_number() % 256) as u8,
            (i >> 8) as u8,
            i as u8,
        ]);
        ns.ip(&["link", "set", &peer, "name", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "address", &mac.to_string()])?;
        // The kernel as a SLAAC client: accept RAs, form EUI-64 addresses.
        run(ns.command("sysctl").args([
            "-q",
            "-w",
            "net.ipv6.conf.eth0.accept_ra=2",
            "net.ipv6.conf.eth0.addr_gen_mode=0",
        ]))?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        self.instances.push(Instance {
            ns,
            iface: "eth0".into(),
            mac,
            port,
        });
        Ok(self.instances.last().expect("just pushed"))
    }

    /// Renames instance `i`'s (from 0) bridge port, as a hypervisor names the device it plugs
    /// a VIF into (`tap...`): the firewall knows ports by name.
    pub fn rename_port(&mut self, i: usize, name: &str) -> io::Result<()> {
        let Some(inst) = self.instances.get_mut(i) else {
            return Err(io::Error::other(format!("no instance {i}")));
        };
        self.server.ip(&["link", "set", &inst.port, "down"])?;
        self.server.ip(&["link", "set", &inst.port, "name", name])?;
        self.server.ip(&["link", "set", name, "up"])?;
        inst.port = name.to_string();
        Ok(())
    }

    fn tag_number(&self) -> u32 {
        self.tag.parse().unwrap_or(0)
    }

    /// The address instance `i` (from 1) is given in the lab's bindings.
    pub fn instance_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.server_ip) + 8 + i as u32)
    }

    /// The usable (not tentative) IPv6 addresses of an instance's interface in a scope
    /// (`global`: the kernel-formed SLAAC addresses; `link`: its link-local address).
    pub fn ipv6_addresses(inst: &Instance, scope: &str) -> Vec<std::net::Ipv6Addr> {
        let out = inst
            .ns
            .ip(&[
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                &inst.iface,
                "scope",
                scope,
            ])
            .map(|o| o.stdout)
            .unwrap_or_default();
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.contains("tentative"))
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet6").nth(1))
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect()
    }

    /// The kernel-formed global (SLAAC) IPv6 addresses of an instance's interface.
    pub fn slaac_addresses(inst: &Instance) -> Vec<std::net::Ipv6Addr> {
        Lab::ipv6_addresses(inst, "global")
    }

    /// An instance's link-local address once duplicate address detection has finished (waits
    /// up to 5 s).
    pub fn link_local(inst: &Instance) -> Option<std::net::Ipv6Addr> {
        for _ in 0..50 {
            if let Some(a) = Lab::ipv6_addresses(inst, "link").first() {
                return Some(*a);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The netmask of the lab network.
    pub fn netmask(&self) -> Ipv4Addr {
        self.network().mask()
    }

    fn network(&self) -> Ipv4Network {
        Ipv4Network::new(self.server_ip, self.prefix)
            .and_then(|n| Ipv4Network::new(n.network(), n.prefix()))
            .unwrap_or_else(|_| Ipv4Network::from(self.server_ip))
    }

    /// The network address and prefix, `a.b.c.d/len`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network().network(), self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.instances.clear();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A netnode (or other server) process started inside a namespace, with its log in a file.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Daemon {
    /// Takes charge of a process already started (outside any namespace), logging to `log`.
    pub fn adopt(child: Child, log: &Path) -> Daemon {
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Starts `program args...` in `ns`, logging to `log`.
    pub fn start(ns: &Netns, program: &Path, args: &[&str], log: &Path) -> io::Result<Daemon> {
        Daemon::start_with_env(ns, program, args, &[], log)
    }

    /// Like [`Daemon::start`], with more environment variables (systemd's NOTIFY_SOCKET, say).
    pub fn start_with_env(
        ns: &Netns,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> io::Result<Daemon> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = ns
            .command(program)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// Its pid (`ip netns exec` execs the program, so this is the program's own pid).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times; the error carries the log.
    pub fn wait_for_log(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().matches(needle).count() >= count {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "daemon exited ({status}) before logging {needle:?}:\n{}",
                    self.log_text()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "timed out waiting for {needle:?} in the log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> io::Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(10))
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("not running"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL, as a crash would end it.
    pub fn kill9(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub mod clients;
pub mod etcd;
