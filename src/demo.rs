//! `netnode demo`: a throwaway lab in network namespaces, served by netnode, with a real DHCP
//! client in every instance, and a table of who got what. Everything is removed on exit and on
//! Ctrl-C.

#![allow(clippy::disallowed_methods)] // IO shell: reads the clock

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::lab::clients::{parse_dhcpcd_output, Acquired, ClientKind, ClientRun};
use crate::lab::{self, Daemon, Instance, Lab};
use crate::manager::network::CreateNetwork;
use crate::manager::secgroup::RuleCreate;
use crate::manager::server::ServerCreate;
use crate::manager::{Manager, Settings};
use crate::table::firewall::RuleConfig;
use crate::table::ipv6::{self, Backend};
use crate::table::MacAddr;

/// Why the demo did not finish (after it removed its lab).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Namespaces need root.
    #[error("the demo builds network namespaces and needs root: run it with sudo")]
    NotRoot,
    /// A program the demo needs is missing.
    #[error("{program} is not installed (Debian package {package})")]
    Missing {
        /// The program.
        program: &'static str,
        /// Its package.
        package: &'static str,
    },
    /// `--instances` out of range.
    #[error("--instances must be between 1 and 200")]
    Instances,
    /// Ctrl-C or SIGTERM.
    #[error("interrupted; the lab has been removed")]
    Interrupted,
    /// A step failed.
    #[error("{what}: {source}")]
    Step {
        /// The step.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The manager refused or failed.
    #[error("manager: {0}")]
    Manager(#[from] crate::manager::ManagerError),
    /// Some instance got no lease, no SLAAC address or no metadata, or the floating IP was
    /// not reached.
    #[error("{failed} instance(s) got no lease, {no_slaac} formed no SLAAC address, {no_metadata} read no metadata, {no_floating} floating IP not reached")]
    Incomplete {
        /// Instances without a lease.
        failed: usize,
        /// Instances without their SLAAC address.
        no_slaac: usize,
        /// Instances that read no metadata.
        no_metadata: usize,
        /// The floating IP was not reached from outside (0 or 1).
        no_floating: usize,
    },
}

/// Names the step an IO error happened in.
fn step(what: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Step { what, source }
}

/// Where instances find their metadata.
const METADATA_IP: &str = "169.254.169.254";

/// The instance's EC2 instance-id, fetched from inside it (curl, or netnode's own GET).
fn fetch_instance_id(inst: &Instance) -> std::io::Result<String> {
    let _ = inst.ns.ip(&[
        "route",
        "replace",
        &format!("{METADATA_IP}/32"),
        "dev",
        &inst.iface,
    ]);
    let url = format!("http://{METADATA_IP}/latest/meta-data/instance-id");
    let out = if lab::have("curl") {
        lab::run(inst.ns.command("curl").args(["-sf", "-m", "5", &url]))?
    } else {
        lab::run(
            inst.ns
                .command(std::env::current_exe()?)
                .args(["http-get", &url]),
        )?
    };
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The demo network's IPv6 prefix, advertised for SLAAC.
const V6_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0);

fn interrupted(flag: &AtomicBool) -> Result<(), DemoError> {
    if flag.load(Ordering::SeqCst) {
        return Err(DemoError::Interrupted);
    }
    Ok(())
}

/// Which client the demo runs in each instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientChoice {
    /// dhclient, else udhcpc, else dhcpcd, else netnode's own client.
    Auto,
    /// ISC dhclient.
    Dhclient,
    /// busybox udhcpc.
    Udhcpc,
    /// dhcpcd.
    Dhcpcd,
    /// netnode's own client.
    Netnode,
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of instance namespaces.
    pub instances: usize,
    /// Which client to run.
    pub client: ClientChoice,
    /// Keep serving until Ctrl-C after printing the table.
    pub hold: bool,
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> Result<(), DemoError> {
    if !lab::is_root() {
        return Err(DemoError::NotRoot);
    }
    if !lab::have("ip") {
        return Err(DemoError::Missing {
            program: "ip",
            package: "iproute2",
        });
    }
    if opts.instances == 0 || opts.instances > 200 {
        return Err(DemoError::Instances);
    }
    // Ctrl-C and SIGTERM only raise a flag: the lab is removed on the way out.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(step("catching Ctrl-C"))?;
    }
    let kind = match opts.client {
        ClientChoice::Auto => [ClientKind::Dhclient, ClientKind::Udhcpc, ClientKind::Dhcpcd]
            .into_iter()
            .find(|k| k.installed()),
        ClientChoice::Dhclient => Some(ClientKind::Dhclient),
        ClientChoice::Udhcpc => Some(ClientKind::Udhcpc),
        ClientChoice::Dhcpcd => Some(ClientKind::Dhcpcd),
        ClientChoice::Netnode => None,
    };
    match kind {
        Some(k) if !k.installed() => {
            return Err(DemoError::Missing {
                program: k.program(),
                package: k.package(),
            })
        }
        Some(k) => println!(
            "client: {} (a real DHCP client) in each instance",
            k.program()
        ),
        None if opts.client == ClientChoice::Auto => {
            println!("client: no DHCP client package is installed (isc-dhcp-client, udhcpc, dhcpcd-base); using netnode's own client code")
        }
        None => println!("client: netnode's own client code"),
    }

    let server_ip = Ipv4Addr::new(198, 18, 0, 1);
    println!(
        "building the lab: bridge br100 ({server_ip}/24) and {} instance namespace(s)...",
        opts.instances
    );
    let lab = Lab::build("demo", opts.instances, server_ip, 24)
        .map_err(step("building the namespace lab"))?;
    let result = serve_and_report(&lab, kind, opts, &stop);
    println!("removing the lab...");
    drop(lab);
    result
}

/// The outside of the node: `pub0` (198.19.0.1/16) in the server namespace, cabled to `out0`
/// (198.19.0.2/16) in a namespace of its own, from which floating IPs are reached.
fn outside(lab: &Lab) -> std::io::Result<lab::Netns> {
    let tag = lab
        .server
        .name()
        .rsplit('-')
        .next()
        .unwrap_or("0")
        .to_string();
    let out = lab::Netns::add(&format!("nn-demo-out-{tag}"))?;
    let (a, b) = (format!("nd{tag}p"), format!("nd{tag}o"));
    lab::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
    lab::ip(&["link", "set", &a, "netns", lab.server.name()])?;
    lab::ip(&["link", "set", &b, "netns", out.name()])?;
    lab.server.ip(&["link", "set", &a, "name", "pub0"])?;
    lab.server
        .ip(&["addr", "add", "198.19.0.1/16", "dev", "pub0"])?;
    lab.server.ip(&["link", "set", "pub0", "up"])?;
    out.ip(&["link", "set", &b, "name", "out0"])?;
    out.ip(&["addr", "add", "198.19.0.2/16", "dev", "out0"])?;
    out.ip(&["link", "set", "out0", "up"])?;
    Ok(out)
}

/// The floating IP the demo associates with vm-1.
const FLOATING: &str = "198.19.26.170";

fn serve_and_report(
    lab: &Lab,
    kind: Option<ClientKind>,
    opts: &DemoOptions,
    stop: &AtomicBool,
) -> Result<(), DemoError> {
    let out = outside(lab).map_err(step("building the outside namespace"))?;
    let config = lab.dir.join("netnode.toml");
    fs::write(
        &config,
        format!(
            "[state]\ndir = \"state\"\nlease_file = \"state/dnsmasq.leases\"\n\
             [manager]\n[manager.ra]\nprofile = \"nova\"\n\
             [metadata]\nlisten = \"{METADATA_IP}:80\"\n\
             [control]\nenabled = true\n[nat]\npublic_interface = \"pub0\"\n"
        ),
    )
    .map_err(step("writing netnode's config"))?;
    // The operator's commands, as `netnode network-create` and `netnode floating create`.
    let parsed = crate::table::build::read_config(&config)
        .map_err(|e| step("reading netnode's config")(std::io::Error::other(e)))?;
    let mut manager = Manager::open(Settings::from_config(&parsed)?)?;
    manager.network_create(&CreateNetwork {
        label: Some("vmnet".into()),
        fixed_range_v4: Some(lab.cidr()),
        fixed_range_v6: Some(format!("{V6_PREFIX}/48")),
        gateway: Some(lab.server_ip),
        bridge: Some(lab.bridge.clone()),
        ..CreateNetwork::default()
    })?;
    manager.floating_create(None, &format!("{FLOATING}/31"), None)?;
    println!(
        "manager: network vmnet {} on {}, floating pool nova {FLOATING}/31",
        lab.cidr(),
        lab.bridge
    );
    // The metadata address lives on the bridge, as the DNAT target does on a network node.
    lab.server
        .ip(&[
            "addr",
            "add",
            &format!("{METADATA_IP}/32"),
            "dev",
            &lab.bridge,
        ])
        .map_err(step("adding the metadata address"))?;
    let exe = std::env::current_exe().map_err(step("finding the netnode binary"))?;
    let config_arg = config.display().to_string();
    let mut daemon = Daemon::start(
        &lab.server,
        &exe,
        &["serve", "--config", &config_arg],
        &lab.dir.join("netnode.log"),
    )
    .map_err(step("starting netnode"))?;
    daemon
        .wait_for_log("dhcp listening", 1, Duration::from_secs(10))
        .map_err(step("starting netnode"))?;
    println!(
        "netnode is serving {} in namespace {}",
        lab.bridge,
        lab.server.name()
    );

    let mut rows = Vec::new();
    for (i, inst) in lab.instances.iter().enumerate() {
        interrupted(stop)?;
        // nova-compute's part: the server is created, its VIF's MAC goes on the instance's NIC.
        let server = manager.server_create(&ServerCreate {
            name: format!("vm-{}", i + 1),
            project: "demo".into(),
            networks: Vec::new(),
            count: 1,
            security_groups: Vec::new(),
            host: None,
        })?;
        let nic = server.first().and_then(|s| s.addresses.first());
        let mac: MacAddr = nic.and_then(|n| n.mac.parse().ok()).unwrap_or(inst.mac);
        // The hypervisor names the device it plugs the VIF into as the manager says, so the
        // firewall (anti-spoofing, the DHCP and RA guards, the default group) filters it.
        if let Some(port) = nic.map(|n| n.port.as_str()) {
            for args in [
                &["link", "set", &inst.port, "down"][..],
                &["link", "set", &inst.port, "name", port],
                &["link", "set", port, "up"],
            ] {
                lab.server
                    .ip(args)
                    .map_err(step("naming the instance's port"))?;
            }
        }
        for args in [
            &["link", "set", &inst.iface, "down"][..],
            &["link", "set", &inst.iface, "address", &mac.to_string()],
            &["link", "set", &inst.iface, "up"],
        ] {
            inst.ns
                .ip(args)
                .map_err(step("plugging the instance's interface"))?;
        }
        let got = obtain(lab, inst, kind);
        if let Ok(Acquired {
            router: Some(router),
            ..
        }) = &got
        {
            // What a client's hook does with option 3; replies to the outside go this way.
            let _ = inst
                .ns
                .ip(&["route", "replace", "default", "via", &router.to_string()]);
        }
        let instance_id = match &got {
            Ok(_) => fetch_instance_id(inst).unwrap_or_else(|e| format!("error: {e}")),
            Err(_) => "-".into(),
        };
        rows.push(Row {
            instance_id,
            index: i + 1,
            inst,
            mac,
            got,
            slaac: None,
        });
    }
    // The seed's two rules: the default group admits nothing until they are there.
    for (protocol, port) in [("icmp", None), ("tcp", Some("22:22"))] {
        manager.rule_create(&RuleCreate {
            group: "default".into(),
            project: Some("demo".into()),
            rule: RuleConfig {
                protocol: Some(protocol.into()),
                dst_port: port.map(Into::into),
                ..RuleConfig::default()
            },
        })?;
    }
    println!("security group default: ingress icmp and tcp 22 allowed (the seed's two rules)");
    // `netnode floating allocate` and `floating associate` to vm-1, then a ping from outside.
    let floating: std::net::Ipv4Addr = FLOATING.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    manager.floating_allocate(None, "demo")?;
    manager.floating_associate(floating, "vm-1", None)?;
    let mut reached = false;
    for _ in 0..50 {
        interrupted(stop)?;
        reached = lab::run(out.command("ping").args(["-c", "1", "-W", "1", FLOATING]))
            .is_ok_and(|o| o.status.success());
        if reached || !lab::have("ping") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The kernels form their SLAAC addresses from netnode's router advertisements.
    for _ in 0..80 {
        interrupted(stop)?;
        for row in rows.iter_mut().filter(|r| r.slaac.is_none()) {
            let want = ipv6::instance_address(V6_PREFIX, 64, row.mac, Backend::Rfc2462, None);
            if let Some(want) = want
                .ok()
                .filter(|w| Lab::slaac_addresses(row.inst).contains(w))
            {
                row.slaac = Some(want);
            }
        }
        if rows.iter().all(|r| r.slaac.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    interrupted(stop)?;
    println!();
    print!("{}", render(&rows, kind));
    println!("\nnetnode server list:");
    print!(
        "{}",
        crate::manager::cli::table(
            &["Name", "Networks"],
            manager
                .server_list()?
                .iter()
                .map(|s| vec![s.name.clone(), s.networks_column()])
                .collect(),
        )
    );
    let ping_note = if lab::have("ping") {
        if reached {
            "reached from outside (ping from out0: yes)"
        } else {
            "NOT reached from outside"
        }
    } else {
        "not pinged (iputils-ping is not installed)"
    };
    println!("floating IP {FLOATING} -> vm-1: {ping_note}");
    // The lease file is rewritten within a second of a change.
    let lease_file = lab.dir.join("state/dnsmasq.leases");
    let want = rows.iter().filter(|r| r.got.is_ok()).count();
    for _ in 0..30 {
        let text = fs::read_to_string(&lease_file).unwrap_or_default();
        if text.lines().count() >= want {
            println!(
                "\nnetnode's lease file ({}, dnsmasq format):\n{}",
                lease_file.display(),
                text.trim_end()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if opts.hold {
        println!(
            "\nserving until Ctrl-C (netnode log: {}; the manager's commands work meanwhile with NETNODE_CONFIG={})",
            daemon.log.display(),
            config.display()
        );
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = daemon.stop();
    // What the control module made in the namespace goes with it; the outside goes too.
    drop(out);
    let failed = rows.iter().filter(|r| r.got.is_err()).count();
    let no_slaac = rows.iter().filter(|r| r.slaac.is_none()).count();
    let no_metadata = rows
        .iter()
        .filter(|r| !r.instance_id.starts_with("i-"))
        .count();
    let no_floating = usize::from(lab::have("ping") && !reached);
    if failed > 0 || no_slaac > 0 || no_metadata > 0 || no_floating > 0 {
        eprintln!("\nnetnode log:\n{}", daemon.log_text());
        return Err(DemoError::Incomplete {
            failed,
            no_slaac,
            no_metadata,
            no_floating,
        });
    }
    Ok(())
}

fn obtain(lab: &Lab, inst: &Instance, kind: Option<ClientKind>) -> std::io::Result<Acquired> {
    let Some(kind) = kind else {
        return own_client(inst);
    };
    let run = ClientRun::new(inst, kind, &lab.dir)?;
    let out = run.obtain()?;
    match kind {
        ClientKind::Dhcpcd => {
            Ok(parse_dhcpcd_output(&String::from_utf8_lossy(&out.stdout)).acquired())
        }
        _ => run
            .acquired()
            .ok_or_else(|| std::io::Error::other("the client's hook saw no address")),
    }
}

/// netnode's own client, run inside the instance namespace through the netnode binary.
fn own_client(inst: &Instance) -> std::io::Result<Acquired> {
    let exe = std::env::current_exe()?;
    let out =
        lab::run(
            inst.ns
                .command(&exe)
                .args(["client", "--iface", &inst.iface, "--configure"]),
        )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    Ok(Acquired {
        ip: get("ip").and_then(|v| v.parse().ok()),
        mask: get("mask").and_then(|v| v.parse().ok()),
        router: get("router").and_then(|v| v.parse().ok()),
        hostname: get("hostname"),
        domain: get("domain"),
        lease_time: get("lease_time").and_then(|v| v.parse().ok()),
    })
}

/// One instance's results.
struct Row<'a> {
    /// What the metadata service told the instance its EC2 instance-id is.
    instance_id: String,
    index: usize,
    inst: &'a Instance,
    /// The MAC the manager gave its interface.
    mac: MacAddr,
    got: std::io::Result<Acquired>,
    /// The EUI-64 address netnode computes, once the kernel has formed exactly it.
    slaac: Option<Ipv6Addr>,
}

fn render(rows: &[Row<'_>], kind: Option<ClientKind>) -> String {
    let client = kind.map_or("netnode", ClientKind::program);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<18} {:<9} {:<14} {:<16} {:<13} {:<8} {:<10} {:>6}  {:<11} slaac (formed by the kernel)",
        "instance", "mac", "client", "address", "netmask", "router", "hostname", "domain", "lease", "metadata",
    );
    for row in rows {
        let i = row.index;
        let slaac = row
            .slaac
            .map_or_else(|| "not formed".to_string(), |a| a.to_string());
        match &row.got {
            Ok(a) => {
                let s = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "{:<10} {:<18} {:<9} {:<14} {:<16} {:<13} {:<8} {:<10} {:>6}  {:<11} {slaac}",
                    format!("vm-{i}"),
                    row.mac.to_string(),
                    client,
                    s(a.ip.map(|v| v.to_string())),
                    s(a.mask.map(|v| v.to_string())),
                    s(a.router.map(|v| v.to_string())),
                    s(a.hostname.clone()),
                    s(a.domain.clone()),
                    s(a.lease_time.map(|v| format!("{v}s"))),
                    row.instance_id
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{:<10} {:<18} {:<9} NO LEASE: {e}  {slaac}",
                    format!("vm-{i}"),
                    row.mac.to_string(),
                    client
                );
            }
        }
    }
    out
}

impl std::fmt::Display for ClientChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientChoice::Auto => "auto",
            ClientChoice::Dhclient => "dhclient",
            ClientChoice::Udhcpc => "udhcpc",
            ClientChoice::Dhcpcd => "dhcpcd",
            ClientChoice::Netnode => "netnode",
        })
    }
}
