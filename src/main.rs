//! The `netnode` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use netnode::demo::{self, ClientChoice, DemoOptions};
use netnode::dhcp::client::{self, Client, ClientConfig};
use netnode::table::ipv6::{self, Backend};
use netnode::table::MacAddr;

/// netnode: the data plane of a cloud network node. On every bridge: DHCPv4 from a MAC-to-IP
/// table, IPv6 router advertisements and instance metadata; also in place of nova's dnsmasq,
/// radvd and dhcp_release.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format: `text`, `json` (one object per line), `journald` (structured fields, for
    /// systemd's journal), or `auto`: journald when stderr is the journal, else text.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// journald when stderr is the journal (systemd sets JOURNAL_STREAM), else text.
    Auto,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Native journald entries with structured fields.
    Journald,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon on a TOML config.
    #[command(long_about = SERVE_HELP)]
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load a config and its files, print what would be served and every problem, then exit.
    #[command(long_about = CHECK_HELP)]
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The node's bridges, VLANs, addresses and NAT from a config: show the plan, apply it, or
    /// remove everything netnode made.
    #[command(long_about = NET_HELP)]
    Net {
        /// What to do.
        #[command(subcommand)]
        action: NetAction,
    },
    /// Ask the running daemon over its control socket (status, leases, lease-release, reload,
    /// stats).
    #[command(long_about = CTL_HELP)]
    Ctl {
        /// The control socket (default: `netnode.sock` in the config's state directory, or in
        /// /var/lib/netnode).
        #[arg(long, conflicts_with = "config")]
        socket: Option<PathBuf>,
        /// The daemon's TOML config, to find its state directory.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the daemon's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        /// The command.
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Print shell completions for netnode (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print netnode's man page (roff), generated from this command line.
    #[command(hide = true)]
    Manpage,
    /// The manager's commands (networks, servers, fixed and floating IPs).
    #[command(flatten)]
    Manager(netnode::manager::cli::ManagerCommand),
    /// Run as dnsmasq, with nova's or neutron's command line (also when called as `dnsmasq`).
    #[command(disable_help_flag = true)]
    Dnsmasq {
        /// dnsmasq's arguments (`netnode dnsmasq --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run as radvd on a radvd.conf (also when called as `radvd`).
    #[command(disable_help_flag = true)]
    Radvd {
        /// radvd's arguments (`netnode radvd --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Release a lease as dnsmasq's dhcp_release does (also when called as `dhcp_release`).
    #[command(name = "dhcp_release", disable_help_flag = true)]
    DhcpRelease {
        /// `<interface> <address> <MAC> [<client_id>]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a throwaway lab in network namespaces, serve it, and show what real clients got.
    Demo {
        /// Number of instance namespaces.
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// Which DHCP client to run in the instances.
        #[arg(long, value_enum, default_value_t = ClientChoice::Auto)]
        client: ClientChoice,
        /// Keep serving after the table is printed, until Ctrl-C.
        #[arg(long)]
        hold: bool,
    },
    /// Print the IPv6 address an instance forms (or is given) in a prefix, as nova computes it.
    Ipv6Address {
        /// The prefix, e.g. `fd00:1::/64` (or just `fd00:1::`, taken as /64).
        #[arg(long)]
        prefix: String,
        /// The instance's MAC.
        #[arg(long)]
        mac: MacAddr,
        /// nova's ipv6_backend.
        #[arg(long, value_enum, default_value_t = Backend::Rfc2462)]
        backend: Backend,
        /// The project id (account_identifier only).
        #[arg(long)]
        project: Option<String>,
    },
    /// A boot storm: create instances (through the manager, or nova's hosts file and SIGHUP)
    /// while a relay agent DHCPs each at once; prints creates/s and create-to-ACK latency.
    Storm {
        /// Instances to create.
        #[arg(long, default_value_t = 1000)]
        instances: u32,
        /// Creates per second (0: as fast as they go).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// The manager's database (manager mode).
        #[arg(long)]
        database: Option<PathBuf>,
        /// Servers per transaction (manager mode).
        #[arg(long, default_value_t = 1)]
        batch: u32,
        /// nova's way: the hosts file to rewrite per instance...
        #[arg(long, requires = "hup_pid")]
        hosts_file: Option<PathBuf>,
        /// ...and the server to SIGHUP after each write.
        #[arg(long)]
        hup_pid: Option<i32>,
        /// nova's way: the network the addresses come from (from its .10).
        #[arg(long, default_value = "198.18.0.0")]
        network: std::net::Ipv4Addr,
        /// Interface the relay agent sends on.
        #[arg(long)]
        iface: String,
        /// The relay agent's address.
        #[arg(long)]
        relay: std::net::Ipv4Addr,
        /// The DHCP server.
        #[arg(long)]
        server: std::net::Ipv4Addr,
        /// Milliseconds before a DISCOVER or REQUEST is sent again.
        #[arg(long, default_value_t = 100)]
        retry_ms: u64,
        /// Seconds after which an instance not ACKed counts as lost.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// The multi-host simulation: many hosts' etcd feeds in one process against a local etcd
    /// it starts; prints cold start, propagation latency, stray events, relists and memory
    /// as JSON.
    SimEtcd {
        /// Simulated hosts.
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        /// Ports (instances) per host.
        #[arg(long, default_value_t = 100)]
        ports: usize,
        /// Writes per second in the stream.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Seconds of the stream.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Connections the hosts share (0: one per host).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Where etcd keeps its data (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Fetch a URL with a plain HTTP/1.0 GET and print the body (exit 1 unless 200).
    HttpGet {
        /// `http://host[:port]/path`.
        url: String,
    },
    /// A minimal hyper server that answers every request with a fixed 200 (the reference the
    /// metadata benchmark compares against).
    HttpNull {
        /// Listen address.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// DHCP load generator (relay agents, DORA per MAC of a hosts file), or with --null a
    /// responder with no logic; prints achieved DORA/s, drops and latency percentiles.
    Bench {
        /// Interface to send on (load) or serve (null).
        #[arg(long)]
        iface: String,
        /// The server's address.
        #[arg(long)]
        server: std::net::Ipv4Addr,
        /// Relay addresses on the interface, one load thread each.
        #[arg(long = "relay")]
        relays: Vec<std::net::Ipv4Addr>,
        /// dnsmasq-format hosts file whose MACs the clients use.
        #[arg(long)]
        hosts_file: Option<PathBuf>,
        /// Exchanges started per second (0: as fast as the window allows).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Exchanges in flight per thread.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Milliseconds after which an exchange counts as dropped.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Each client renews and releases after its DORA (a full cycle is one exchange).
        #[arg(long)]
        full_cycle: bool,
        /// Answer instead: the null responder.
        #[arg(long)]
        null: bool,
    },
    /// netnode's own DHCP client: one DORA exchange on an interface; prints what it got.
    Client {
        /// Interface to use.
        #[arg(long)]
        iface: String,
        /// Hardware address to send (default: the interface's).
        #[arg(long)]
        mac: Option<MacAddr>,
        /// Act as a relay agent with this giaddr (sends from <relay>:67 by unicast to --server).
        #[arg(long, requires = "server")]
        relay: Option<std::net::Ipv4Addr>,
        /// Server address for unicast.
        #[arg(long)]
        server: Option<std::net::Ipv4Addr>,
        /// Send an INIT-REBOOT REQUEST for this address instead of a DISCOVER.
        #[arg(long)]
        request: Option<std::net::Ipv4Addr>,
        /// Put the address on the interface (`ip addr replace`) after an ACK.
        #[arg(long)]
        configure: bool,
        /// Seconds to wait for each reply (fractions allowed, e.g. 0.05).
        #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
        timeout: f64,
        /// How many times to send each request before giving up.
        #[arg(long, default_value_t = 3)]
        attempts: u32,
    },
}

/// `netnode ctl` commands.
#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Version, uptime, services per bridge, the last reload and its problems.
    Status,
    /// Leases held.
    Leases {
        /// Only this network's.
        #[arg(long)]
        network: Option<String>,
        /// Only this client's.
        #[arg(long)]
        mac: Option<MacAddr>,
    },
    /// End a lease now (journaled, as the client's RELEASE would; the dhcp-script hears `del`).
    LeaseRelease {
        /// The leased address.
        ip: std::net::Ipv4Addr,
    },
    /// Reload the table as SIGHUP does, and say how it went.
    Reload,
    /// Every counter, per bridge or network.
    Stats,
}

/// `ctl --help`.
const CTL_HELP: &str = "Ask the running daemon over its control socket, `netnode.sock` in its state directory (mode 0600: root and the daemon's user only). One JSON command per connection, Kea's shape: {\"command\": \"leases\", \"arguments\": {\"network\": \"net1\"}}, answered with {\"result\": 0, \"text\": ..., \"arguments\": ...} (result 1: an error). `--json` prints that answer.

Exit status: 0 when the daemon did it; 1 when it refused or could not be reached.";

/// `netnode net` actions.
#[derive(Subcommand, Debug)]
enum NetAction {
    /// Print what `apply` would change, changing nothing.
    Plan {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make the kernel match the config (a second apply does nothing).
    Apply {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Remove every link, address and rule netnode made, and nothing else.
    Teardown {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `net --help`.
const NET_HELP: &str = "The control module by hand: the bridges of the config's networks (created if missing, forward delay 0, STP off, up, the gateway as first address), their uplinks (bridge_interface, or vlan + vlan_interface), forwarding sysctls, floating IPs' /32 addresses, and netnode's nftables table `inet netnode` (metadata DNAT, SNAT, floating IPs, hairpin), as nova-network's linux_net set them up.

`plan` prints the operations as the commands an operator would type; `apply` runs them (exit 1 if any failed); `teardown` removes what netnode made (links with the alias `netnode`, addresses with protocol 0x4e, its table) and moves a flat interface's addresses back. Never touches another table, link or address. `netnode serve` does the same at start and after each reload when [control] enabled = true.";

/// `serve --help`.
const SERVE_HELP: &str = "Run the daemon on a TOML config: DHCP, router advertisements and metadata on every bridge the config names (a bridge that does not exist yet is served once it appears).

Logs go to stderr, at info level: one line per lease granted (DHCPACK) or refused (DHCPNAK) with the bridge, MAC, address and hostname, and every dropped packet's reason, each kind at most once a second. RUST_LOG sets the level and per-module filters, e.g. RUST_LOG=debug, or RUST_LOG=info,netnode::dhcp=debug for every OFFER. Under systemd, stderr goes to the journal.

Signals: SIGHUP reloads the config and every file it names (an edit of one reloads too); SIGUSR1 logs every counter; SIGTERM and SIGINT stop (a final router advertisement, the lease file written).

A second daemon on the same state directory is refused (exit 1), as is a bridge another process already serves DHCP on.";

/// `check --help`.
const CHECK_HELP: &str = "Load a config and every file it names, print each network (addresses, bindings, IPv6 prefix and router advertisement settings, metadata instances, DNS servers handed out), warn about bridges that do not exist yet, and list every problem with its file, line and reason.

Exit status: 0 when everything loads; 1 when the config cannot be loaded at all (the error names the file, and the network and key that refer to it); 2 when a line was skipped or an instance cannot be identified (the rest would be served).";

/// Commands for developers and benchmarks, listed apart in `--help`.
const TOOLS: &[&str] = &[
    "bench",
    "client",
    "http-get",
    "http-null",
    "sim-etcd",
    "storm",
];

/// The top-level help, with operator commands first and the tools under their own heading.
/// The manager's commands, listed apart in the help.
const MANAGER: &[&str] = &[
    "network-create",
    "network-list",
    "network-show",
    "network-delete",
    "network-associate",
    "network-disassociate",
    "fixed",
    "floating",
    "project",
    "server",
    "secgroup",
    "export",
    "nodes",
];

/// Commands about running netnode, listed apart in the help.
const OPERATIONS: &[&str] = &["ctl", "completions"];

fn grouped_help(cmd: clap::Command) -> clap::Command {
    let width = cmd
        .get_subcommands()
        .map(|c| c.get_name().len())
        .max()
        .unwrap_or(0);
    let (mut operator, mut manager, mut tools, mut operations) =
        (String::new(), String::new(), String::new(), String::new());
    for c in cmd.get_subcommands() {
        let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
        let line = format!("  {:<width$}  {about}\n", c.get_name());
        if TOOLS.contains(&c.get_name()) {
            tools.push_str(&line);
        } else if MANAGER.contains(&c.get_name()) {
            manager.push_str(&line);
        } else if OPERATIONS.contains(&c.get_name()) {
            operations.push_str(&line);
        } else if c.is_hide_set() {
        } else {
            operator.push_str(&line);
        }
    }
    operator.push_str(&format!(
        "  {:<width$}  Print this message or the help of the given command\n",
        "help"
    ));
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\nCommands:\n{operator}\nOperations (a running daemon, shells):\n{operations}\nManager (nova-network's commands, on netnode's database):\n{manager}\nTools (developers, benchmarks):\n{tools}\nOptions:\n{{options}}{{after-help}}"
    ))
    .mut_subcommand("dnsmasq", |c| {
        c.long_about(netnode::compat::dnsmasq::usage())
    })
    .mut_subcommand("radvd", |c| {
        c.long_about(netnode::compat::entry::RADVD_USAGE)
    })
    .mut_subcommand("dhcp_release", |c| {
        c.long_about(netnode::compat::release::USAGE)
    })
}

/// An error and its causes, each cause once (a message that already says its cause is not
/// followed by it again).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// A positive, finite number of seconds.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 3600"
        )),
    }
}

/// The drop-in programs, by argv[0] or as the first argument.
fn drop_in() -> Option<i32> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = |a: &str| {
        std::path::Path::new(a)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
    };
    let (name, rest) = match program(args.first()?.as_str()).as_deref() {
        Some(n @ ("dnsmasq" | "radvd" | "dhcp_release")) => {
            (n.to_string(), args.get(1..)?.to_vec())
        }
        _ => match args.get(1).map(String::as_str) {
            Some(n @ ("dnsmasq" | "radvd" | "dhcp_release")) => {
                (n.to_string(), args.get(2..)?.to_vec())
            }
            _ => return None,
        },
    };
    Some(match name.as_str() {
        "dnsmasq" => netnode::compat::entry::dnsmasq(&rest),
        "radvd" => netnode::compat::entry::radvd(&rest),
        _ => netnode::compat::entry::dhcp_release(&rest),
    })
}

/// Writes to stdout; a reader that went away (`netnode net plan | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn exit(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

fn main() -> ExitCode {
    if let Some(status) = drop_in() {
        return exit(status);
    }
    let matches = grouped_help(<Cli as clap::CommandFactory>::command()).get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netnode: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Whether stderr is the journal: systemd sets JOURNAL_STREAM to its `device:inode`.
fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    expected.to_string_lossy() == format!("{}:{}", meta.st_dev, meta.st_ino)
}

/// Logs at RUST_LOG's filter (default `info`) in the chosen format.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter);
    let journald = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => stderr_is_journal(),
        LogFormat::Text | LogFormat::Json => false,
    };
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                registry
                    .with(layer.with_syslog_identifier("netnode".into()))
                    .init();
                return;
            }
            Err(e) => eprintln!("netnode: cannot log to journald ({e}); logging to stderr"),
        }
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format == LogFormat::Json {
        registry.with(fmt.json().flatten_event(true)).init();
    } else {
        registry
            .with(fmt.with_ansi(
                std::env::var_os("NO_COLOR").is_none()
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ))
            .init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ctl {
            socket,
            config,
            json,
            command,
        } => {
            use netnode::ctl::protocol::Command as C;
            let command = match command {
                CtlCommand::Status => C::Status,
                CtlCommand::Leases { network, mac } => C::Leases { network, mac },
                CtlCommand::LeaseRelease { ip } => C::LeaseRelease { ip },
                CtlCommand::Reload => C::Reload,
                CtlCommand::Stats => C::Stats,
            };
            let socket = match (socket, config) {
                (Some(s), _) => s,
                (None, Some(config)) => {
                    let dir = netnode::table::build::state_dir_of(&config)?;
                    netnode::ctl::server::socket_path(&dir)
                }
                (None, None) => {
                    netnode::ctl::server::socket_path(std::path::Path::new("/var/lib/netnode"))
                }
            };
            let answer = netnode::ctl::client::send(&socket, &command)?;
            if json {
                emit(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                ));
            } else {
                emit(&netnode::ctl::client::format(&command, &answer));
            }
            if answer.result != 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "netnode", &mut out);
            emit(&String::from_utf8_lossy(&out));
        }
        Command::Manpage => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .section("8")
                .render(&mut out)?;
            emit(&String::from_utf8_lossy(&out));
        }
        Command::Serve { config } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(netnode::server::serve(&config))?;
        }
        Command::Manager(cmd) => emit(&netnode::manager::cli::run(cmd)?),
        Command::Check { config } => {
            let table = netnode::source::Source::Toml(config.clone()).load()?;
            let report = netnode::check::report(&table, &|b| netnode::netif::index(b).is_some());
            emit(&report.text);
            if report.problems > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Net { action } => {
            use netnode::control::run::{pass, Mode};
            let (mode, config) = match action {
                NetAction::Plan { config } => (Mode::Plan, config),
                NetAction::Apply { config } => (Mode::Apply, config),
                NetAction::Teardown { config } => (Mode::Teardown, config),
            };
            let table = netnode::source::Source::Toml(config.clone()).load()?;
            let desired = netnode::control::Desired::from_table(&table);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let outcome = rt.block_on(async {
                let kernel = netnode::control::kernel::Kernel::new()?;
                pass(&kernel, &desired, mode).await
            })?;
            emit(&outcome.describe(mode));
            eprintln!("netnode net: {}", outcome.timing_line());
            if !outcome.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Dnsmasq { args } => return Ok(exit(netnode::compat::entry::dnsmasq(&args))),
        Command::Radvd { args } => return Ok(exit(netnode::compat::entry::radvd(&args))),
        Command::DhcpRelease { args } => {
            return Ok(exit(netnode::compat::entry::dhcp_release(&args)))
        }
        Command::Ipv6Address {
            prefix,
            mac,
            backend,
            project,
        } => {
            let text = if prefix.contains('/') {
                prefix.clone()
            } else {
                format!("{prefix}/64")
            };
            let net: ipnetwork::Ipv6Network = text
                .parse()
                .with_context(|| format!("{prefix:?} is not an IPv6 prefix"))?;
            let addr = ipv6::instance_address(
                net.network(),
                net.prefix(),
                mac,
                backend,
                project.as_deref(),
            )?;
            emit(&format!("{addr}\n"));
        }
        Command::Storm {
            instances,
            rate,
            database,
            batch,
            hosts_file,
            hup_pid,
            network,
            iface,
            relay,
            server,
            retry_ms,
            timeout,
        } => {
            use netnode::storm::{Creator, StormConfig};
            let creator = match (database, hosts_file, hup_pid) {
                (Some(database), None, _) => Creator::Manager { database, batch },
                (None, Some(path), Some(pid)) => Creator::HostsFile { path, pid, network },
                _ => bail!(
                    "give --database (the manager) or --hosts-file with --hup-pid (nova's way)"
                ),
            };
            let report = netnode::storm::run(&StormConfig {
                creator,
                instances,
                rate,
                iface,
                relay,
                server,
                retry: Duration::from_millis(retry_ms),
                timeout: Duration::from_secs(timeout),
            })?;
            emit(&format!("{report}\n"));
        }
        Command::SimEtcd {
            hosts,
            ports,
            rate,
            seconds,
            connections,
            dir,
        } => {
            let scratch = dir.is_none();
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("netnode-sim-etcd-{}", std::process::id()))
            });
            std::fs::create_dir_all(&dir)?;
            let cfg = netnode::source::etcd::sim::SimConfig {
                hosts,
                ports,
                rate,
                seconds,
                connections,
                dir: dir.clone(),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt
                .block_on(netnode::source::etcd::sim::run(&cfg))
                .map_err(|e| anyhow::anyhow!("sim-etcd: {e}"));
            if scratch {
                std::fs::remove_dir_all(&dir).ok();
            }
            let report = report?;
            emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
        }
        Command::HttpGet { url } => {
            let (status, body) =
                netnode::metadata::client::get(&url).with_context(|| format!("GET {url}"))?;
            use std::io::Write as _;
            std::io::stdout().write_all(&body)?;
            if status != 200 {
                eprintln!("netnode: GET {url}: HTTP {status}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::HttpNull { listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(netnode::metadata::null::serve(listen))?;
        }
        Command::Bench {
            iface,
            server,
            relays,
            hosts_file,
            rate,
            seconds,
            window,
            timeout_ms,
            full_cycle,
            null,
        } => {
            if null {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                eprintln!("null responder on {iface}");
                netnode::loadgen::null_responder(&iface, server, stop)?;
                return Ok(ExitCode::SUCCESS);
            }
            let Some(hosts) = hosts_file else {
                bail!("--hosts-file is required for a load run")
            };
            let text = std::fs::read_to_string(&hosts)
                .with_context(|| format!("reading {}", hosts.display()))?;
            let (entries, _) = netnode::table::hosts::parse(&hosts.display().to_string(), &text);
            let macs: Vec<MacAddr> = entries
                .iter()
                .flat_map(|e| e.macs.iter().copied())
                .collect();
            let cfg = netnode::loadgen::LoadConfig {
                iface,
                relays,
                server,
                macs,
                rate,
                duration: Duration::from_secs(seconds),
                window,
                timeout: Duration::from_millis(timeout_ms),
                cycle: if full_cycle {
                    netnode::loadgen::Cycle::Full
                } else {
                    netnode::loadgen::Cycle::Dora
                },
            };
            emit(&format!("{}\n", netnode::loadgen::run(&cfg)?));
        }
        Command::Demo {
            instances,
            client,
            hold,
        } => demo::run(&DemoOptions {
            instances,
            client,
            hold,
        })?,
        Command::Client {
            iface,
            mac,
            relay,
            server,
            request,
            configure,
            timeout,
            attempts,
        } => {
            let mac = match mac {
                Some(m) => m,
                None => client::interface_mac(&iface)
                    .with_context(|| format!("reading the MAC of {iface}"))?,
            };
            let cfg = ClientConfig {
                iface: iface.clone(),
                mac,
                relay,
                server,
                timeout: Duration::from_secs_f64(timeout),
                attempts,
            };
            let c = Client::new(cfg)
                .with_context(|| format!("opening a DHCP client socket on {iface}"))?;
            let got = match request {
                Some(ip) => c.reboot(ip)?,
                None => c.acquire()?,
            };
            emit(&got.to_lines());
            if got.kind != Some(dhcproto::v4::MessageType::Ack) {
                return Ok(ExitCode::from(3));
            }
            if configure {
                let Some(mask) = got.mask else {
                    bail!("the ACK carried no subnet mask")
                };
                let prefix = ipnetwork::ipv4_mask_to_prefix(mask)
                    .with_context(|| format!("the ACK's subnet mask {mask} is not a netmask"))?;
                netnode::lab::ip(&[
                    "addr",
                    "replace",
                    &format!("{}/{prefix}", got.ip),
                    "dev",
                    &iface,
                ])?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
