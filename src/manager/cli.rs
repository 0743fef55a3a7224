//! The manager's commands, as the seed teaches them with `netnode` in place of `nova`,
//! `nova-manage` and `openstack`: tables for people, `--json` for scripts. A refusal exits
//! non-zero with the rule that refused it, and changes nothing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::etcd::commands::EtcdManager;
use super::network::{CreateNetwork, NetworkRow};
use super::secgroup::{GroupRow, RuleCreate, RuleRow};
use super::server::ServerCreate;
use super::{Manager, ManagerError, Settings};
use crate::table::build;
use crate::table::config::ConfigFile;
use crate::table::firewall::{RemoteSpec, RuleConfig};

/// Where the config and database are, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The daemon's config: `[state] dir` holds the database, `[manager]` the settings
    /// (default /etc/netnode/netnode.toml; nova's defaults when that does not exist).
    #[arg(long, short, env = "NETNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The database, overriding the config's.
    #[arg(long, env = "NETNODE_DATABASE")]
    pub database: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The default config path.
pub const DEFAULT_CONFIG: &str = "/etc/netnode/netnode.toml";

/// The manager's commands.
#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// Create a network (nova network-create's flags).
    #[command(name = "network-create")]
    NetworkCreate {
        /// The flags.
        #[command(flatten)]
        create: Box<CreateNetwork>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// The live nodes of `[manager] backend = "etcd"`: each node's host, its ports, and the
    /// time left on its liveness lease.
    Nodes {
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List the networks.
    #[command(name = "network-list")]
    NetworkList {
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Show one network (by label, UUID, id or range).
    #[command(name = "network-show")]
    NetworkShow {
        /// The network.
        network: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Delete a network (refused while a project holds it or a server uses it).
    #[command(name = "network-delete")]
    NetworkDelete {
        /// The network.
        network: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Associate a network with a project.
    #[command(name = "network-associate")]
    NetworkAssociate {
        /// The network.
        network: String,
        /// The project.
        #[arg(long, alias = "project-id")]
        project: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Disassociate a network from its project.
    #[command(name = "network-disassociate")]
    NetworkDisassociate {
        /// The network.
        network: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Fixed IPs: reserve, unreserve, list.
    Fixed {
        /// What to do.
        #[command(subcommand)]
        action: FixedAction,
    },
    /// Floating IPs: pools and each address's life.
    Floating {
        /// What to do.
        #[command(subcommand)]
        action: FloatingAction,
    },
    /// Projects: scrub.
    Project {
        /// What to do.
        #[command(subcommand)]
        action: ProjectAction,
    },
    /// Servers: what nova-compute asked of nova-network at boot and delete.
    Server {
        /// What to do.
        #[command(subcommand)]
        action: ServerAction,
    },
    /// Security groups and their rules (the instance firewall).
    Secgroup {
        /// What to do.
        #[command(subcommand)]
        action: SecgroupAction,
    },
    /// Write the manager's state in another program's files.
    Export {
        /// Which program.
        #[command(subcommand)]
        format: ExportFormat,
    },
}

/// `fixed ...`.
#[derive(Debug, Subcommand)]
pub enum FixedAction {
    /// Never allocate this address.
    Reserve {
        /// The address.
        #[arg(long)]
        address: Ipv4Addr,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Allocate this address again.
    Unreserve {
        /// The address.
        #[arg(long)]
        address: Ipv4Addr,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List fixed IPs.
    List {
        /// Only this network's.
        #[arg(long)]
        network: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// `floating ...`.
#[derive(Debug, Subcommand)]
pub enum FloatingAction {
    /// Add a range to a pool.
    Create {
        /// The pool (default `[manager] default_floating_pool`).
        #[arg(long)]
        pool: Option<String>,
        /// An address or CIDR.
        #[arg(long = "ip_range", alias = "ip-range")]
        ip_range: String,
        /// The interface the addresses live on.
        #[arg(long)]
        interface: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List floating IPs.
    List {
        /// Only this pool's.
        #[arg(long)]
        pool: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Remove a range from its pool.
    Delete {
        /// An address or CIDR.
        ip_range: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Allocate a pool's next free address to a project.
    Allocate {
        /// The pool.
        #[arg(long)]
        pool: Option<String>,
        /// The project.
        #[arg(long, alias = "project-id")]
        project: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Point a floating IP at a server.
    Associate {
        /// The floating IP.
        address: Ipv4Addr,
        /// The server.
        #[arg(long)]
        server: String,
        /// Which of its fixed IPs (default: the first).
        #[arg(long)]
        fixed_address: Option<Ipv4Addr>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Take a floating IP off its server.
    Disassociate {
        /// The floating IP.
        address: Ipv4Addr,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Give a floating IP back to its pool.
    Deallocate {
        /// The floating IP.
        address: Ipv4Addr,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// `project ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectAction {
    /// Disassociate every network from the project.
    Scrub {
        /// The project.
        #[arg(long, alias = "project-id")]
        project: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// `server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Create a server: an interface and a fixed IP on each of its networks.
    Create {
        /// Its name.
        name: String,
        /// Its project.
        #[arg(long, alias = "project-id")]
        project: String,
        /// Its networks, in order (default: the project's); repeat for multinic.
        #[arg(long = "network", alias = "nic")]
        networks: Vec<String>,
        /// Create this many (`NAME-1`, `NAME-2`...) in one transaction.
        #[arg(long, default_value_t = 1, alias = "min-count")]
        count: u32,
        /// Its security groups; repeat for several (default: the project's `default`).
        #[arg(long = "security-group", alias = "security_group")]
        security_groups: Vec<String>,
        /// The compute host it runs on, whose node serves it (`[manager] backend = "etcd"`;
        /// default: this machine's `[etcd] host`).
        #[arg(long)]
        host: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Delete a server: its addresses and leases end.
    Delete {
        /// Its name or UUID.
        name: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List servers.
    List {
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Show one server.
    Show {
        /// Its name or UUID.
        name: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// `secgroup ...`.
#[derive(Debug, Subcommand)]
pub enum SecgroupAction {
    /// Create a group: all egress allowed, no ingress until a rule allows it.
    Create {
        /// Its name.
        name: String,
        /// Its project.
        #[arg(long, alias = "project-id")]
        project: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List groups.
    List {
        /// Only this project's.
        #[arg(long, alias = "project-id")]
        project: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Delete a group (not a default group, one with servers, or one a rule names).
    Delete {
        /// Its name.
        name: String,
        /// Its project (default: the one project with a group of that name).
        #[arg(long, alias = "project-id")]
        project: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// A group's rules.
    Rule {
        /// What to do.
        #[command(subcommand)]
        action: RuleAction,
    },
}

/// `secgroup rule ...`.
#[derive(Debug, Subcommand)]
pub enum RuleAction {
    /// Allow traffic: `--protocol icmp default`, `--protocol tcp --dst-port 22:22 default`.
    Create {
        /// The group.
        group: String,
        /// Its project (default: the one project with a group of that name).
        #[arg(long, alias = "project-id")]
        project: Option<String>,
        /// tcp, udp, icmp, icmpv6, sctp, dccp, any, or 0-255 (default any).
        #[arg(long)]
        protocol: Option<String>,
        /// A port or range: 22, 22:22, 1000:2000.
        #[arg(long = "dst-port", alias = "dst_port")]
        dst_port: Option<String>,
        /// Where the remote side is.
        #[arg(
            long = "remote-ip",
            alias = "remote_ip",
            conflicts_with = "remote_group"
        )]
        remote_ip: Option<String>,
        /// A group (same project) the remote side belongs to.
        #[arg(long = "remote-group", alias = "remote_group")]
        remote_group: Option<String>,
        /// Traffic to the servers (the default).
        #[arg(long, conflicts_with = "egress")]
        ingress: bool,
        /// Traffic from the servers.
        #[arg(long)]
        egress: bool,
        /// IPv4 (default) or IPv6.
        #[arg(long)]
        ethertype: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// List rules.
    List {
        /// Only this group's.
        group: Option<String>,
        /// Only this project's.
        #[arg(long, alias = "project-id")]
        project: Option<String>,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
    /// Delete a rule by its id.
    Delete {
        /// The rule's id (`secgroup rule list`).
        id: i64,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// `export ...`.
#[derive(Debug, Subcommand)]
pub enum ExportFormat {
    /// nova's dnsmasq files for one network: nova-<bridge>.conf (hosts), .opts, .hosts.
    Nova {
        /// The network.
        #[arg(long)]
        network: String,
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// Config, database, output.
        #[command(flatten)]
        common: Common,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The manager refused or failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] build::LoadError),
    /// A file could not be written.
    #[error(transparent)]
    File(#[from] crate::durable::FileError),
}

/// The settings a command runs with.
pub fn settings(common: &Common) -> Result<Settings, CliError> {
    let config = match &common.config {
        Some(path) => build::read_config(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => {
            build::read_config(Path::new(DEFAULT_CONFIG))?
        }
        None => ConfigFile::default(),
    };
    let mut settings = Settings::from_config(&config)?;
    if let Some(db) = &common.database {
        settings.database = db.clone();
    }
    Ok(settings)
}

fn open(common: &Common) -> Result<Manager, CliError> {
    Ok(Manager::open(sqlite_only(settings(common)?)?)?)
}

/// The settings of a command the etcd backend does not have.
fn sqlite_only(s: Settings) -> Result<Settings, CliError> {
    if s.etcd.is_some() {
        return Err(ManagerError::Invalid(
            "this command keeps its state in SQLite; [manager] backend = \"etcd\" has the network, fixed, floating, project and server commands and netnode nodes, not yet security groups or export nova".into(),
        )
        .into());
    }
    Ok(s)
}

/// For commands that only read: a database that does not exist is an error (a typo in
/// `--database` makes no new empty database).
fn open_existing(common: &Common) -> Result<Manager, CliError> {
    existing(sqlite_only(settings(common)?)?)
}

fn existing(s: Settings) -> Result<Manager, CliError> {
    if !s.database.exists() {
        return Err(ManagerError::NotFound {
            what: "manager database (no manager command has made one yet)",
            name: s.database.display().to_string(),
        }
        .into());
    }
    Ok(Manager::open(s)?)
}

/// Where a command that both backends have runs: the SQLite database, or etcd (with a
/// runtime of its own: the commands are synchronous).
enum Store {
    Sqlite(Box<Manager>),
    Etcd(Box<(tokio::runtime::Runtime, EtcdManager)>),
}

/// Opens the configured backend; `existing`: a SQLite database must already be there.
fn store(common: &Common, existing_only: bool) -> Result<Store, CliError> {
    let s = settings(common)?;
    let Some(etcd) = s.etcd.clone() else {
        return Ok(Store::Sqlite(Box::new(if existing_only {
            existing(s)?
        } else {
            Manager::open(s)?
        })));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManagerError::Etcd(format!("starting a runtime: {e}")))?;
    let m = rt.block_on(EtcdManager::connect(s, &etcd))?;
    Ok(Store::Etcd(Box::new((rt, m))))
}

/// One method of both backends.
macro_rules! both {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(fn $name(&mut self $(, $arg: $ty)*) -> Result<$ret, ManagerError> {
                match self {
                    Store::Sqlite(m) => m.$name($($arg),*),
                    Store::Etcd(e) => {
                        let (rt, m) = &mut **e;
                        rt.block_on(m.$name($($arg),*))
                    }
                }
            })*
        }
    };
}

both! {
    fn network_create(&mut self, req: &CreateNetwork) -> Vec<NetworkRow>;
    fn network_list(&mut self) -> Vec<NetworkRow>;
    fn network_show(&mut self, key: &str) -> NetworkRow;
    fn network_delete(&mut self, key: &str) -> NetworkRow;
    fn server_create(&mut self, req: &ServerCreate) -> Vec<super::server::ServerRow>;
    fn server_delete(&mut self, key: &str) -> super::server::Deleted;
    fn server_list(&mut self) -> Vec<super::server::ServerRow>;
    fn server_show(&mut self, key: &str) -> super::server::ServerRow;
    fn network_associate(&mut self, key: &str, project: &str) -> NetworkRow;
    fn network_disassociate(&mut self, key: &str) -> NetworkRow;
    fn project_scrub(&mut self, project: &str) -> Vec<String>;
    fn fixed_reserve(&mut self, address: Ipv4Addr) -> ();
    fn fixed_unreserve(&mut self, address: Ipv4Addr) -> ();
    fn fixed_list(&mut self, network: Option<&str>) -> Vec<super::fixed::FixedRow>;
    fn floating_create(&mut self, pool: Option<&str>, range: &str, interface: Option<&str>) -> usize;
    fn floating_list(&mut self, pool: Option<&str>) -> Vec<super::floating::FloatingRow>;
    fn floating_delete(&mut self, range: &str) -> usize;
    fn floating_allocate(&mut self, pool: Option<&str>, project: &str) -> super::floating::FloatingRow;
    fn floating_associate(&mut self, address: Ipv4Addr, server: &str, fixed: Option<Ipv4Addr>) -> super::floating::FloatingRow;
    fn floating_disassociate(&mut self, address: Ipv4Addr) -> super::floating::FloatingRow;
    fn floating_deallocate(&mut self, address: Ipv4Addr) -> super::floating::FloatingRow;
}

/// `netnode nodes`: the live nodes of the etcd backend.
pub fn nodes(common: &Common) -> Result<String, CliError> {
    let s = settings(common)?;
    let Some(etcd) = s.etcd.clone() else {
        return Err(ManagerError::Invalid(
            "netnode nodes lists the nodes of [manager] backend = \"etcd\"; this config keeps its state in SQLite (one node)".into(),
        )
        .into());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManagerError::Etcd(format!("starting a runtime: {e}")))?;
    let rows = rt.block_on(async { EtcdManager::connect(s, &etcd).await?.nodes().await })?;
    Ok(if common.json {
        json(&rows)
    } else {
        table(
            &["Host", "Ports", "Lease left", "Started", "PID", "Version"],
            rows.iter()
                .map(|n| {
                    vec![
                        n.host.clone(),
                        n.ports.to_string(),
                        format!("{} s", n.ttl),
                        n.started.to_string(),
                        n.pid.to_string(),
                        n.version.clone(),
                    ]
                })
                .collect(),
        )
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut text =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Runs a command; returns what to print.
pub fn run(cmd: ManagerCommand) -> Result<String, CliError> {
    use ManagerCommand as C;
    Ok(match cmd {
        C::NetworkCreate { create, common } => {
            let made = store(&common, false)?.network_create(&create)?;
            if common.json {
                json(&made)
            } else {
                networks_table(&made)
            }
        }
        C::Nodes { common } => nodes(&common)?,
        C::NetworkList { common } => {
            let all = store(&common, true)?.network_list()?;
            if common.json {
                json(&all)
            } else {
                networks_table(&all)
            }
        }
        C::NetworkShow { network, common } => {
            let n = store(&common, true)?.network_show(&network)?;
            if common.json {
                json(&n)
            } else {
                network_detail(&n)
            }
        }
        C::NetworkDelete { network, common } => {
            let n = store(&common, false)?.network_delete(&network)?;
            format!("deleted network {} ({})\n", n.label, n.cidr)
        }
        C::NetworkAssociate {
            network,
            project,
            common,
        } => {
            let n = store(&common, false)?.network_associate(&network, &project)?;
            format!("network {} is associated with project {project}\n", n.label)
        }
        C::NetworkDisassociate { network, common } => {
            let n = store(&common, false)?.network_disassociate(&network)?;
            format!("network {} is associated with no project\n", n.label)
        }
        C::Fixed { action } => fixed(action)?,
        C::Floating { action } => floating(action)?,
        C::Project {
            action: ProjectAction::Scrub { project, common },
        } => {
            let labels = store(&common, false)?.project_scrub(&project)?;
            if common.json {
                json(&labels)
            } else if labels.is_empty() {
                format!("project {project} had no network\n")
            } else {
                format!(
                    "disassociated from project {project}: {}\n",
                    labels.join(", ")
                )
            }
        }
        C::Server { action } => server(action)?,
        C::Secgroup { action } => secgroup(action)?,
        C::Export {
            format:
                ExportFormat::Nova {
                    network,
                    dir,
                    common,
                },
        } => export_nova(&network, &dir, &common)?,
    })
}

fn fixed(action: FixedAction) -> Result<String, CliError> {
    Ok(match action {
        FixedAction::Reserve { address, common } => {
            store(&common, false)?.fixed_reserve(address)?;
            format!("{address} is reserved\n")
        }
        FixedAction::Unreserve { address, common } => {
            store(&common, false)?.fixed_unreserve(address)?;
            format!("{address} is no longer reserved\n")
        }
        FixedAction::List { network, common } => {
            let rows = store(&common, true)?.fixed_list(network.as_deref())?;
            if common.json {
                json(&rows)
            } else {
                table(
                    &[
                        "network",
                        "IP address",
                        "MAC address",
                        "hostname",
                        "server",
                        "reserved",
                        "allocated",
                        "leased",
                    ],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.network.clone(),
                                r.address.to_string(),
                                opt(&r.mac),
                                opt(&r.hostname),
                                opt(&r.server),
                                r.reserved.to_string(),
                                r.allocated.to_string(),
                                r.leased.to_string(),
                            ]
                        })
                        .collect(),
                )
            }
        }
    })
}

fn floating(action: FloatingAction) -> Result<String, CliError> {
    use FloatingAction as F;
    let one = |common: &Common, r: super::floating::FloatingRow, what: &str| {
        if common.json {
            json(&r)
        } else {
            format!("floating IP {} {what}\n", r.address)
        }
    };
    Ok(match action {
        F::Create {
            pool,
            ip_range,
            interface,
            common,
        } => {
            let default_pool = settings(&common)?.default_floating_pool;
            let n = store(&common, false)?.floating_create(
                pool.as_deref(),
                &ip_range,
                interface.as_deref(),
            )?;
            let pool = pool.unwrap_or(default_pool);
            format!("{n} floating IP(s) from {ip_range} added to pool {pool}\n")
        }
        F::List { pool, common } => {
            let rows = store(&common, true)?.floating_list(pool.as_deref())?;
            if common.json {
                json(&rows)
            } else {
                table(
                    &[
                        "project",
                        "address",
                        "server",
                        "fixed IP",
                        "pool",
                        "interface",
                        "auto",
                    ],
                    rows.iter()
                        .map(|r| {
                            vec![
                                opt(&r.project_id),
                                r.address.to_string(),
                                opt(&r.server),
                                opt(&r.fixed_ip),
                                r.pool.clone(),
                                opt(&r.interface),
                                r.auto_assigned.to_string(),
                            ]
                        })
                        .collect(),
                )
            }
        }
        F::Delete { ip_range, common } => {
            let n = store(&common, false)?.floating_delete(&ip_range)?;
            format!("{n} floating IP(s) in {ip_range} deleted\n")
        }
        F::Allocate {
            pool,
            project,
            common,
        } => {
            let r = store(&common, false)?.floating_allocate(pool.as_deref(), &project)?;
            if common.json {
                json(&r)
            } else {
                format!("{}\n", r.address)
            }
        }
        F::Associate {
            address,
            server,
            fixed_address,
            common,
        } => {
            let r = store(&common, false)?.floating_associate(address, &server, fixed_address)?;
            let to = format!("is associated with {} ({server})", opt(&r.fixed_ip));
            one(&common, r, &to)
        }
        F::Disassociate { address, common } => {
            let r = store(&common, false)?.floating_disassociate(address)?;
            one(&common, r, "is disassociated")
        }
        F::Deallocate { address, common } => {
            let r = store(&common, false)?.floating_deallocate(address)?;
            one(&common, r, "is back in its pool")
        }
    })
}

fn server(action: ServerAction) -> Result<String, CliError> {
    Ok(match action {
        ServerAction::Create {
            name,
            project,
            networks,
            count,
            security_groups,
            host,
            common,
        } => {
            let made = store(&common, false)?.server_create(&ServerCreate {
                name,
                project,
                networks,
                count,
                security_groups,
                host,
            })?;
            if common.json {
                json(&made)
            } else {
                servers_table(&made)
            }
        }
        ServerAction::Delete { name, common } => {
            let d = store(&common, false)?.server_delete(&name)?;
            if common.json {
                json(&d)
            } else {
                format!(
                    "deleted server {} ({})\n",
                    d.server.name,
                    d.server.networks_column()
                )
            }
        }
        ServerAction::List { common } => {
            let all = store(&common, true)?.server_list()?;
            if common.json {
                json(&all)
            } else {
                servers_table(&all)
            }
        }
        ServerAction::Show { name, common } => {
            let s = store(&common, true)?.server_show(&name)?;
            if common.json {
                json(&s)
            } else {
                servers_table(std::slice::from_ref(&s))
            }
        }
    })
}

fn secgroup(action: SecgroupAction) -> Result<String, CliError> {
    use SecgroupAction as S;
    let groups = |common: &Common, rows: &[GroupRow]| {
        if common.json {
            json(&rows)
        } else {
            table(
                &["ID", "Project", "Name", "Description", "Rules", "Servers"],
                rows.iter()
                    .map(|g| {
                        vec![
                            g.id.to_string(),
                            g.project_id.clone(),
                            g.name.clone(),
                            g.description.clone(),
                            g.rules.to_string(),
                            g.servers.to_string(),
                        ]
                    })
                    .collect(),
            )
        }
    };
    Ok(match action {
        S::Create {
            name,
            project,
            description,
            common,
        } => {
            let g = open(&common)?.secgroup_create(&name, &project, &description)?;
            groups(&common, &[g])
        }
        S::List { project, common } => {
            let all = open_existing(&common)?.secgroup_list(project.as_deref())?;
            groups(&common, &all)
        }
        S::Delete {
            name,
            project,
            common,
        } => {
            let g = open(&common)?.secgroup_delete(&name, project.as_deref())?;
            format!(
                "deleted security group {} (project {})\n",
                g.name, g.project_id
            )
        }
        S::Rule {
            action:
                RuleAction::Create {
                    group,
                    project,
                    protocol,
                    dst_port,
                    remote_ip,
                    remote_group,
                    ingress: _,
                    egress,
                    ethertype,
                    common,
                },
        } => {
            let (row, warning) = open(&common)?.rule_create(&RuleCreate {
                group,
                project,
                rule: RuleConfig {
                    direction: Some(if egress { "egress" } else { "ingress" }.into()),
                    ethertype,
                    protocol,
                    dst_port,
                    remote_ip,
                    remote_group,
                },
            })?;
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            rules_table(&common, &[row])
        }
        S::Rule {
            action:
                RuleAction::List {
                    group,
                    project,
                    common,
                },
        } => {
            let all = open_existing(&common)?.rule_list(group.as_deref(), project.as_deref())?;
            rules_table(&common, &all)
        }
        S::Rule {
            action: RuleAction::Delete { id, common },
        } => {
            let r = open(&common)?.rule_delete(id)?;
            format!(
                "deleted rule {id} of security group {}: {}\n",
                r.group,
                r.spec.describe()
            )
        }
    })
}

fn rules_table(common: &Common, rows: &[RuleRow]) -> String {
    if common.json {
        return json(&rows);
    }
    table(
        &[
            "ID",
            "Group",
            "Project",
            "Direction",
            "Ethertype",
            "Protocol",
            "Port range",
            "Remote",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.group.clone(),
                    r.project_id.clone(),
                    format!("{:?}", r.spec.direction).to_lowercase(),
                    format!("{:?}", r.spec.ethertype),
                    r.spec.protocol_name(),
                    r.spec.port_text(),
                    match &r.spec.remote {
                        RemoteSpec::Any => "any".to_string(),
                        RemoteSpec::Cidr(n) => n.to_string(),
                        RemoteSpec::Group(g) => format!("group {g}"),
                    },
                ]
            })
            .collect(),
    )
}

fn export_nova(network: &str, dir: &Path, common: &Common) -> Result<String, CliError> {
    let mut m = open_existing(common)?;
    let label = m.network_show(network)?.label;
    let served = m.served()?;
    let files = served
        .nova_files(&label, &m.settings)
        .ok_or_else(|| ManagerError::NotFound {
            what: "network",
            name: network.to_string(),
        })?;
    std::fs::create_dir_all(dir).map_err(crate::durable::at(dir))?;
    let bridge = &files.network.bridge;
    let mut out = String::new();
    for (ext, text) in [
        ("conf", &files.hosts),
        ("opts", &files.opts),
        ("hosts", &files.addn_hosts),
    ] {
        let path = dir.join(format!("nova-{bridge}.{ext}"));
        crate::durable::write_atomically(&path, text.as_bytes())?;
        out.push_str(&format!("{}\n", path.display()));
    }
    Ok(out)
}

fn networks_table(rows: &[NetworkRow]) -> String {
    table(
        &[
            "id",
            "label",
            "cidr",
            "cidr_v6",
            "gateway",
            "dhcp server",
            "bridge",
            "vlan",
            "project",
        ],
        rows.iter()
            .map(|n| {
                vec![
                    n.id.to_string(),
                    n.label.clone(),
                    n.cidr.to_string(),
                    opt(&n.cidr_v6),
                    n.gateway.to_string(),
                    n.dhcp_server.to_string(),
                    n.bridge.clone(),
                    opt(&n.vlan),
                    opt(&n.project_id),
                ]
            })
            .collect(),
    )
}

fn network_detail(n: &NetworkRow) -> String {
    let fields: Vec<(&str, String)> = vec![
        ("id", n.id.to_string()),
        ("uuid", n.uuid.clone()),
        ("label", n.label.clone()),
        ("cidr", n.cidr.to_string()),
        ("cidr_v6", opt(&n.cidr_v6)),
        ("gateway", n.gateway.to_string()),
        ("gateway_v6", opt(&n.gateway_v6)),
        ("broadcast", n.broadcast.to_string()),
        ("dhcp_server", n.dhcp_server.to_string()),
        ("dhcp_start", n.dhcp_start.to_string()),
        ("bridge", n.bridge.clone()),
        ("bridge_interface", opt(&n.bridge_interface)),
        ("vlan", opt(&n.vlan)),
        ("vpn_public_port", opt(&n.vpn_public_port)),
        ("vpn_private_address", opt(&n.vpn_private_address)),
        ("dns1", opt(&n.dns1)),
        ("dns2", opt(&n.dns2)),
        ("mtu", opt(&n.mtu)),
        ("enable_dhcp", n.enable_dhcp.to_string()),
        ("share_address", n.share_address.to_string()),
        ("multi_host", n.multi_host.to_string()),
        ("project_id", opt(&n.project_id)),
    ];
    table(
        &["Property", "Value"],
        fields
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    )
}

fn servers_table(rows: &[super::server::ServerRow]) -> String {
    table(
        &["ID", "Name", "Project", "Networks"],
        rows.iter()
            .map(|s| {
                vec![
                    s.uuid.clone(),
                    s.name.clone(),
                    s.project_id.clone(),
                    s.networks_column(),
                ]
            })
            .collect(),
    )
}

/// A table with borders, as the nova and openstack clients print them.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone();
    out.push_str(&line(headers.to_vec()));
    out.push_str(&rule);
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out.push_str(&rule);
    out
}
