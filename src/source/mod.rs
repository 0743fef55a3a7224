//! Where the table comes from: netnode's TOML config, or a drop-in command line (dnsmasq's
//! arguments, a radvd.conf). Every source builds the same [`Table`]; [`files`] says when the
//! files it was read from change.

pub mod etcd;
pub mod files;
pub mod manager;

use std::io;
use std::path::{Path, PathBuf};

use crate::compat::{dnsmasq, radvd};
use crate::table::{build, Table};

/// Where the table comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// netnode's TOML config.
    Toml(PathBuf),
    /// A dnsmasq command line (drop-in mode): its files are re-read at each load.
    Dnsmasq(Box<dnsmasq::DnsmasqOptions>),
    /// A radvd.conf (drop-in mode): router advertisements only.
    Radvd(PathBuf),
}

/// Why a table could not be built from its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The config or a file it names.
    #[error(transparent)]
    Table(#[from] build::LoadError),
    /// The manager's database (a config with `[manager]`).
    #[error("{}: [manager]: {source}", path.display())]
    Manager {
        /// The config.
        path: PathBuf,
        /// What failed.
        source: crate::manager::ManagerError,
    },
    /// A dnsmasq command line that cannot be served.
    #[error("dnsmasq command line: {0}")]
    Dnsmasq(#[from] dnsmasq::ConfigError),
    /// The radvd.conf could not be read.
    #[error("reading {}: {source}", path.display())]
    RadvdRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The radvd.conf is invalid.
    #[error("{}: {source}", path.display())]
    Radvd {
        /// The file.
        path: PathBuf,
        /// The line and reason.
        source: radvd::ConfError,
    },
}

impl Source {
    /// Builds the table, reading every file it names (an etcd backend's state from its saved
    /// view: only the daemon follows etcd itself).
    pub fn load(&self) -> Result<Table, SourceError> {
        self.load_with(None)
    }

    /// Builds the table with the etcd feed's latest view (`[manager] backend = "etcd"`).
    pub fn load_with(&self, view: Option<&etcd::View>) -> Result<Table, SourceError> {
        match self {
            Source::Toml(path) => {
                let mut config = build::read_config(path)?;
                let (link, left_out) = match config.manager {
                    Some(_) => {
                        let (link, left_out) =
                            manager::merge(&mut config, view).map_err(|source| {
                                SourceError::Manager {
                                    path: path.clone(),
                                    source,
                                }
                            })?;
                        (Some(link), left_out)
                    }
                    None => (None, Vec::new()),
                };
                let mut table = build::from_config(&config, path)?;
                table.sources.insert(0, path.clone());
                table.manager = link;
                let origin = format!("{} [manager]", path.display());
                table.problems.extend(
                    left_out
                        .into_iter()
                        .map(|reason| crate::table::Problem::new(origin.clone(), 0, reason)),
                );
                Ok(table)
            }
            Source::Dnsmasq(opts) => {
                let config = dnsmasq::to_config(opts, &crate::netif::ipv4_addresses())?;
                Ok(build::from_config(
                    &config,
                    Path::new("dnsmasq command line"),
                )?)
            }
            Source::Radvd(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SourceError::RadvdRead {
                        path: path.clone(),
                        source,
                    })?;
                let ifaces = radvd::parse(&text).map_err(|source| SourceError::Radvd {
                    path: path.clone(),
                    source,
                })?;
                let mut table = radvd::to_table(&ifaces);
                table.sources.push(path.clone());
                Ok(table)
            }
        }
    }

    /// Whether this source serves DHCP (a radvd.conf does not).
    pub fn serves_dhcp(&self) -> bool {
        !matches!(self, Source::Radvd(_))
    }

    /// Where the table comes from, in a few words (`status`).
    pub fn describe(&self) -> String {
        match self {
            Source::Toml(path) => format!("config {}", path.display()),
            Source::Dnsmasq(_) => "dnsmasq command line (drop-in)".into(),
            Source::Radvd(path) => format!("radvd.conf {} (drop-in)", path.display()),
        }
    }

    /// Whether every bridge must exist at start (dnsmasq dies when it cannot listen, and nova
    /// must see that exit status); netnode's own config waits for missing bridges.
    pub fn requires_bridges(&self) -> bool {
        matches!(self, Source::Dnsmasq(_))
    }
}
