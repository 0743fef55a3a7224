//! netnode's own network manager: networks, fixed IPs, virtual interfaces, instances and
//! floating IPs with nova-network's semantics, kept in SQLite (WAL) in the state directory.
//!
//! Every command is one `BEGIN IMMEDIATE` transaction: SQLite serializes writers across
//! processes, so two managers allocating at once never hand out one address twice, and a
//! refusal rolls back, changing nothing. The address rules themselves are pure ([`rules`]).
//! The daemon reads the same database as a table source ([`crate::source::manager`]) and
//! rebuilds its table when the `generation` counter moves.

pub mod cli;
pub mod etcd;
pub mod export;
pub mod fixed;
pub mod floating;
pub mod leases;
pub mod network;
pub mod rules;
pub mod schema;
pub mod secgroup;
pub mod server;

#[cfg(test)]
mod scenarios;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::Ipv6Network;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::table::config::{ConfigFile, ManagerKind};

/// How long a command waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The database's file name in the state directory.
pub const DATABASE_FILE: &str = "manager.db";

/// Why a command failed. A refusal changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// One of nova's rules forbids it.
    #[error("{0}")]
    Refused(String),
    /// What the command names does not exist.
    #[error("no {what} {name:?}")]
    NotFound {
        /// A network, server, floating IP...
        what: &'static str,
        /// As given.
        name: String,
    },
    /// An argument is invalid; the message names the flag.
    #[error("{0}")]
    Invalid(String),
    /// The database could not be opened.
    #[error("database {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("database {}: {source}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Why.
        source: schema::SchemaError,
    },
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// etcd failed or could not be reached (`[manager] backend = "etcd"`).
    #[error("{0}")]
    Etcd(String),
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, ManagerError>;

/// `[manager]` with nova's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// flat, flatdhcp or vlan.
    pub kind: ManagerKind,
    /// The database file.
    pub database: PathBuf,
    /// First VLAN id.
    pub vlan_start: u16,
    /// First VPN port.
    pub vpn_start: u16,
    /// Addresses per network when a range is split.
    pub network_size: u32,
    /// Networks per `network-create`.
    pub num_networks: u32,
    /// Where IPv6 /64s come from.
    pub fixed_range_v6: Ipv6Network,
    /// Every new network gets a /64.
    pub use_ipv6: bool,
    /// The instances' domain.
    pub dhcp_domain: String,
    /// A floating IP per new server.
    pub auto_assign_floating_ip: bool,
    /// The default pool.
    pub default_floating_pool: String,
    /// Only the first NIC gets a default route.
    pub use_single_default_gateway: bool,
    /// `server delete` ends the leases at once.
    pub force_dhcp_release: bool,
    /// Enslaved to bridges that name no interface.
    pub flat_interface: Option<String>,
    /// VLAN devices are made on it.
    pub vlan_interface: Option<String>,
    /// Floating IPs live on it.
    pub public_interface: Option<String>,
    /// Router advertisement settings of its networks.
    pub ra: crate::table::ra::RaConfig,
    /// The config has the control module (`[control]`): a bridge then has one gateway.
    pub control: bool,
    /// `[etcd]`, when the state is kept there (`[manager] backend = "etcd"`).
    pub etcd: Option<etcd::EtcdSettings>,
    /// The config's own `[[network]]`s: the daemon serves them beside the manager's, so their
    /// names, ranges and bridges are taken.
    pub config_networks: Vec<ConfigNetwork>,
}

/// One of the config's own networks, as far as the manager must keep clear of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigNetwork {
    /// Its name.
    pub name: String,
    /// Its range (none when the config's text does not parse: the daemon refuses that anyway).
    pub cidr: Option<ipnetwork::Ipv4Network>,
    /// Its bridge.
    pub bridge: String,
}

impl Settings {
    /// The settings of a config: its `[manager]` (nova's defaults when absent), the database
    /// in `[state] dir` unless `[manager] database` names one.
    pub fn from_config(config: &ConfigFile) -> Result<Settings> {
        let m = config.manager.clone().unwrap_or_default();
        let range = m.fixed_range_v6.as_deref().unwrap_or("fd00::/48");
        let fixed_range_v6: Ipv6Network = range.parse().map_err(|e| {
            ManagerError::Invalid(format!("[manager] fixed_range_v6: {range:?}: {e}"))
        })?;
        if fixed_range_v6.prefix() > 64 {
            return Err(ManagerError::Invalid(format!(
                "[manager] fixed_range_v6: {range} is longer than a /64"
            )));
        }
        let vlan_start = m.vlan_start.unwrap_or(100);
        rules::vlan_id(u32::from(vlan_start), 0)
            .map_err(|e| ManagerError::Invalid(format!("[manager] vlan_start: {e}")))?;
        let etcd = etcd::EtcdSettings::from_config(config)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
        Ok(Settings {
            etcd,
            kind: m.kind,
            database: m
                .database
                .unwrap_or_else(|| config.state.dir.join(DATABASE_FILE)),
            vlan_start,
            vpn_start: m.vpn_start.unwrap_or(1000),
            network_size: m.network_size.unwrap_or(256),
            num_networks: m.num_networks.unwrap_or(1),
            fixed_range_v6,
            use_ipv6: m.use_ipv6,
            dhcp_domain: m.dhcp_domain.unwrap_or_else(|| "novalocal".into()),
            auto_assign_floating_ip: m.auto_assign_floating_ip,
            default_floating_pool: m.default_floating_pool.unwrap_or_else(|| "nova".into()),
            use_single_default_gateway: m.use_single_default_gateway,
            force_dhcp_release: m.force_dhcp_release.unwrap_or(true),
            ra: m.ra,
            control: config.control.is_some(),
            config_networks: config
                .network
                .iter()
                .map(|n| ConfigNetwork {
                    name: n.name.clone(),
                    cidr: n.cidr.parse().ok(),
                    bridge: n.bridge.clone(),
                })
                .collect(),
            flat_interface: m.flat_interface,
            vlan_interface: m.vlan_interface,
            public_interface: m
                .public_interface
                .or_else(|| config.nat.as_ref().and_then(|n| n.public_interface.clone())),
        })
    }

    /// How a network's bridge reaches the wire, as config keys: its VLAN on `vlan_interface`
    /// (when that is set and the network names no interface of its own), else its
    /// `--bridge-interface`, else `flat_interface`, else nothing.
    pub fn uplink(&self, vlan: Option<u16>, interface: Option<&str>) -> UplinkKeys {
        match (vlan, &self.vlan_interface, interface) {
            (Some(v), Some(parent), None) => (Some(u32::from(v)), Some(parent.clone()), None),
            _ => (
                None,
                None,
                interface
                    .map(str::to_string)
                    .or_else(|| self.flat_interface.clone()),
            ),
        }
    }

    /// nova's defaults, with the database at `database`.
    pub fn with_database(database: PathBuf) -> Settings {
        let mut s = Settings::from_config(&ConfigFile::default()).unwrap_or_else(|_| {
            unreachable!("the defaults are valid") // fixed text, checked by a test
        });
        s.database = database;
        s
    }
}

/// A network's uplink as config keys: (`vlan`, `vlan_interface`, `bridge_interface`).
pub type UplinkKeys = (Option<u32>, Option<String>, Option<String>);

/// The manager: one connection to the database and the settings.
pub struct Manager {
    conn: Connection,
    /// The settings it runs with.
    pub settings: Settings,
}

/// An open write transaction and the sequence number its changes are stamped with.
pub struct Change<'c> {
    tx: Transaction<'c>,
    /// This change's place in the order of all changes (LRU reuse of fixed IPs).
    pub seq: i64,
    /// Whether it changes what the daemon serves (then `generation` moves).
    served: bool,
}

impl Change<'_> {
    /// The transaction.
    pub fn db(&self) -> &Transaction<'_> {
        &self.tx
    }

    /// Marks the change as one the daemon serves.
    pub fn served(&mut self) {
        self.served = true;
    }
}

/// Opens a connection with the manager's pragmas: WAL, full sync at commit (a command that
/// returned is on disk), foreign keys, and a long busy timeout (writers queue, they do not fail).
pub fn connect(path: &Path) -> Result<Connection> {
    let open = |source| ManagerError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            ManagerError::Invalid(format!(
                "database {}: cannot create {}: {e}",
                path.display(),
                dir.display()
            ))
        })?;
    }
    let conn = Connection::open(path).map_err(open)?;
    configure(&conn).map_err(open)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
}

impl Manager {
    /// Opens (creating if needed) the database of `settings` and brings its schema up to date.
    pub fn open(settings: Settings) -> Result<Manager> {
        let mut conn = connect(&settings.database)?;
        schema::migrate(&mut conn).map_err(|source| ManagerError::Schema {
            path: settings.database.clone(),
            source,
        })?;
        Ok(Manager { conn, settings })
    }

    /// A manager on a private in-memory database (tests, property tests).
    pub fn in_memory(settings: Settings) -> Result<Manager> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        schema::migrate(&mut conn).map_err(|source| ManagerError::Schema {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Ok(Manager { conn, settings })
    }

    /// Runs `f` in one write transaction: committed when it returns `Ok`, rolled back (nothing
    /// changed) when it returns an error.
    pub fn change<T>(&mut self, f: impl FnOnce(&mut Change<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seq: i64 = tx.query_row(
            "UPDATE meta SET value = value + 1 WHERE key = 'sequence' RETURNING value",
            [],
            |r| r.get(0),
        )?;
        let mut change = Change {
            tx,
            seq,
            served: false,
        };
        let out = f(&mut change)?;
        if change.served {
            change.tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
                [],
            )?;
        }
        change.tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on one consistent read snapshot.
    pub fn read<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }

    /// The served-state counter: it moves with every change the daemon serves.
    pub fn generation(&self) -> Result<u64> {
        generation(&self.conn)
    }
}

/// The `generation` counter of a database.
pub fn generation(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// An IPv4 address as stored.
pub fn to_db(a: Ipv4Addr) -> i64 {
    i64::from(u32::from(a))
}

/// An IPv4 address from its stored integer.
pub fn from_db(v: i64) -> Ipv4Addr {
    Ipv4Addr::from(v as u32)
}

/// Reads an optional stored address.
pub fn opt_addr(v: Option<i64>) -> Option<Ipv4Addr> {
    v.map(from_db)
}

/// Maps SQLite's "no row" to [`ManagerError::NotFound`].
pub fn found<T>(r: rusqlite::Result<T>, what: &'static str, name: &str) -> Result<T> {
    r.optional()?.ok_or_else(|| ManagerError::NotFound {
        what,
        name: name.to_string(),
    })
}

/// A random UUID (version 4), as nova gives instances and networks.
pub fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_defaults() {
        let s = Settings::with_database(PathBuf::from("/tmp/x.db"));
        assert_eq!(s.kind, ManagerKind::Flatdhcp);
        assert_eq!(
            (s.vlan_start, s.vpn_start, s.network_size),
            (100, 1000, 256)
        );
        assert_eq!(s.dhcp_domain, "novalocal");
        assert_eq!(s.default_floating_pool, "nova");
        assert!(s.force_dhcp_release && !s.auto_assign_floating_ip);
        assert_eq!(s.fixed_range_v6.to_string(), "fd00::/48");
        let c = ConfigFile::default();
        assert_eq!(
            Settings::from_config(&c).unwrap().database,
            PathBuf::from("/var/lib/netnode/manager.db")
        );
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert_ne!(u, uuid4());
    }
}
