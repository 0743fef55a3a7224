//! An etcd cluster for the tests and the simulation: members started by netnode's own code
//! on ports chosen here (never the packaged service's 2379), with their own data dirs, killed
//! by pid when dropped. Optionally in a namespace of its own with a management bridge, so
//! hosts in other namespaces reach it over veth pairs (`attach`).

#![allow(clippy::disallowed_methods)] // a test harness waits with the clock

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Daemon, Netns};

/// One member.
#[derive(Debug)]
pub struct Member {
    /// `m1`, `m2`...
    pub name: String,
    /// Its client URL.
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
}

impl Member {
    /// Its pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }
}

/// TLS for the members' client URLs: the server certificate and key, and the CA that signed
/// the clients' certificates (required of every client).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA (also what etcdctl trusts).
    pub ca: PathBuf,
    /// The members' certificate (for 198.18.250.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A client certificate and key etcdctl presents.
    pub client: (PathBuf, PathBuf),
}

/// A cluster of members on one address.
#[derive(Debug)]
pub struct Cluster {
    /// The members.
    pub members: Vec<Member>,
    /// The namespace they run in (and the management bridge `brm` in it), if any.
    pub ns: Option<Netns>,
    address: Ipv4Addr,
    initial: String,
    token: String,
    attached: u8,
    tls: Option<Tls>,
    /// `user:password` etcdctl authenticates with, once authentication is on.
    pub etcdctl_user: Option<String>,
}

/// A TCP port free on loopback now (the kernel's pick).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts `size` members on 127.0.0.1 in this namespace, data under `dir`.
    pub fn start(dir: &Path, size: usize) -> io::Result<Cluster> {
        Cluster::start_at(dir, size, None, None)
    }

    /// Starts `size` members in namespace `ns_name` on 198.18.250.1 (a bridge `brm` there);
    /// hosts reach it after [`Cluster::attach`].
    pub fn start_in_namespace(dir: &Path, size: usize, ns_name: &str) -> io::Result<Cluster> {
        Cluster::start_in_namespace_with(dir, size, ns_name, None)
    }

    /// The same with TLS (https client URLs, client certificates required).
    pub fn start_in_namespace_with(
        dir: &Path,
        size: usize,
        ns_name: &str,
        tls: Option<Tls>,
    ) -> io::Result<Cluster> {
        let ns = Netns::add(ns_name)?;
        ns.ip(&["link", "add", "brm", "type", "bridge"])?;
        ns.ip(&["addr", "add", "198.18.250.1/24", "dev", "brm"])?;
        ns.ip(&["link", "set", "brm", "up"])?;
        Cluster::start_at(dir, size, Some(ns), tls)
    }

    fn start_at(
        dir: &Path,
        size: usize,
        ns: Option<Netns>,
        tls: Option<Tls>,
    ) -> io::Result<Cluster> {
        let address = if ns.is_some() {
            Ipv4Addr::new(198, 18, 250, 1)
        } else {
            Ipv4Addr::LOCALHOST
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut members = Vec::new();
        for i in 1..=size {
            let (client, peer) = (free_port()?, free_port()?);
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://{address}:{client}"),
                peer_url: format!("http://{address}:{peer}"),
                data_dir: dir.join(format!("etcd-m{i}")),
                log: dir.join(format!("etcd-m{i}.log")),
                daemon: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            ns,
            address,
            initial,
            token: format!("netnode-{}-{}", std::process::id(), free_port()?),
            attached: 0,
            tls,
            etcdctl_user: None,
        };
        for i in 0..size {
            c.start_member(i)?;
        }
        c.wait_healthy(Duration::from_secs(30))?;
        Ok(c)
    }

    /// The client URLs, comma-separated order kept.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The members' address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Starts (or restarts, on its data) member `i`. Heartbeat and election timeouts are
    /// raised: on two busy cores the defaults (100 ms / 1 s) elect leaders under load.
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        let m = &self.members[i];
        let fresh = !m.data_dir.exists();
        let mut args = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", m.client_url),
            format!("--advertise-client-urls={}", m.client_url),
            format!("--listen-peer-urls={}", m.peer_url),
            format!("--initial-advertise-peer-urls={}", m.peer_url),
            format!("--initial-cluster={}", self.initial),
            format!("--initial-cluster-token={}", self.token),
            "--heartbeat-interval=250".into(),
            "--election-timeout=2500".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        args.push(format!(
            "--initial-cluster-state={}",
            if fresh { "new" } else { "existing" }
        ));
        if let Some(t) = &self.tls {
            args.push(format!("--cert-file={}", t.cert.display()));
            args.push(format!("--key-file={}", t.key.display()));
            args.push(format!("--trusted-ca-file={}", t.ca.display()));
            args.push("--client-cert-auth".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = match &self.ns {
            Some(ns) => Daemon::start(ns, Path::new("etcd"), &args, &m.log)?,
            None => {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&m.log)?;
                let child = Command::new("etcd")
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(out.try_clone()?)
                    .stderr(out)
                    .spawn()?;
                Daemon::adopt(child, &m.log)
            }
        };
        self.members[i].daemon = Some(daemon);
        Ok(())
    }

    /// Kills member `i` (SIGKILL, as a crash).
    pub fn kill(&mut self, i: usize) -> io::Result<()> {
        if let Some(mut d) = self.members[i].daemon.take() {
            d.kill9()?;
        }
        Ok(())
    }

    /// Whether member `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.members[i].daemon.is_some()
    }

    /// `etcdctl` against the running members (in the cluster's namespace).
    pub fn etcdctl(&self, args: &[&str]) -> io::Result<String> {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.daemon.is_some())
            .map(|m| m.client_url.clone())
            .collect();
        let mut cmd = match &self.ns {
            Some(ns) => ns.command("etcdctl"),
            None => Command::new("etcdctl"),
        };
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--command-timeout=10s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client.0.display()))
                .arg(format!("--key={}", t.client.1.display()));
        }
        if let Some(u) = &self.etcdctl_user {
            cmd.arg(format!("--user={u}"));
        }
        let out = cmd.args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.etcdctl(&["endpoint", "health"]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The index of the current leader, asked of the running members.
    pub fn leader(&self) -> io::Result<usize> {
        let text = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        let rows = v.as_array().cloned().unwrap_or_default();
        let leader = rows
            .iter()
            .find_map(|r| r["Status"]["leader"].as_u64())
            .ok_or_else(|| io::Error::other(format!("no leader in {text}")))?;
        rows.iter()
            .find(|r| r["Status"]["header"]["member_id"].as_u64() == Some(leader))
            .and_then(|r| r["Endpoint"].as_str())
            .and_then(|e| self.members.iter().position(|m| m.client_url == e))
            .ok_or_else(|| io::Error::other(format!("the leader is not a running member: {text}")))
    }

    /// The current revision.
    pub fn revision(&self) -> io::Result<i64> {
        let text = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        v.as_array()
            .and_then(|rows| {
                rows.iter()
                    .filter_map(|r| r["Status"]["header"]["revision"].as_i64())
                    .max()
            })
            .ok_or_else(|| io::Error::other(format!("no revision in {text}")))
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> io::Result<i64> {
        let rev = self.revision()?;
        self.etcdctl(&["compaction", "--physical", &rev.to_string()])?;
        Ok(rev)
    }

    /// Connects namespace `ns` to the management bridge: a veth `mgmt0` in it with the next
    /// address of 198.18.250.0/24, returned.
    pub fn attach(&mut self, ns: &Netns) -> io::Result<Ipv4Addr> {
        let Some(own) = &self.ns else {
            return Err(io::Error::other("the cluster runs in no namespace"));
        };
        self.attached += 1;
        let address = Ipv4Addr::new(198, 18, 250, 10 + self.attached);
        let (near, far) = (
            format!("nnm{}a{}", std::process::id() % 10_000, self.attached),
            format!("nnm{}b{}", std::process::id() % 10_000, self.attached),
        );
        super::ip(&["link", "add", &near, "type", "veth", "peer", "name", &far])?;
        super::ip(&["link", "set", &near, "netns", own.name()])?;
        super::ip(&["link", "set", &far, "netns", ns.name()])?;
        own.ip(&["link", "set", &near, "master", "brm"])?;
        own.ip(&["link", "set", &near, "up"])?;
        ns.ip(&["link", "set", &far, "name", "mgmt0"])?;
        ns.ip(&["addr", "add", &format!("{address}/24"), "dev", "mgmt0"])?;
        ns.ip(&["link", "set", "mgmt0", "up"])?;
        Ok(address)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut d) = m.daemon.take() {
                let _ = d.kill9();
            }
        }
    }
}
