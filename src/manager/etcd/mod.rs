//! The manager's state in etcd (`[manager] backend = "etcd"`): every network node serves the
//! ports of its own host from one shared store, and any machine with the config runs the
//! manager's commands against it.
//!
//! The layout is in [`keys`], the values in [`record`], the commands in [`commands`]. What a
//! node serves is built by [`record::served`] into the same `Served` the SQLite backend reads,
//! so the table is built from either by one piece of code. The daemon's list-and-watch lives
//! in `source::etcd`.

pub mod commands;
pub mod floating;
pub mod keys;
pub mod record;

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::table::config::{ConfigFile, ManagerBackend};

/// How long connecting to the cluster may take before a command gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/netnode";

/// `[etcd]`, checked: where the cluster is, how to reach it, and this node's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// The prefix and this node's host.
    pub layout: keys::Layout,
    /// TLS: the CA, and the client's certificate and key.
    pub ca_file: Option<PathBuf>,
    /// The client's certificate.
    pub cert_file: Option<PathBuf>,
    /// The client's key.
    pub key_file: Option<PathBuf>,
    /// Authentication: the user and the file holding the password.
    pub user: Option<(String, PathBuf)>,
}

/// Why etcd could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// `[etcd]` is missing or wrong.
    #[error("[etcd] {0}")]
    Config(String),
    /// A TLS or password file could not be read.
    #[error("[etcd] {field}: reading {}: {source}", path.display())]
    File {
        /// The key naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster could not be reached or refused a request.
    #[error("etcd ({endpoints}): {source}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What the client said.
        source: etcd_client::Error,
    },
}

impl EtcdSettings {
    /// `[etcd]` when `[manager] backend = "etcd"`; none for the SQLite backend.
    pub fn from_config(config: &ConfigFile) -> Result<Option<EtcdSettings>, EtcdError> {
        let backend = config.manager.as_ref().map(|m| m.backend);
        if backend != Some(ManagerBackend::Etcd) {
            return Ok(None);
        }
        let e = config.etcd.as_ref().ok_or_else(|| {
            EtcdError::Config("missing: [manager] backend = \"etcd\" needs [etcd] endpoints".into())
        })?;
        if e.endpoints.is_empty() {
            return Err(EtcdError::Config("endpoints: empty".into()));
        }
        for url in &e.endpoints {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(EtcdError::Config(format!(
                    "endpoints: {url:?} is not an http:// or https:// URL"
                )));
            }
        }
        let prefix = keys::prefix(e.prefix.as_deref().unwrap_or(DEFAULT_PREFIX))
            .map_err(EtcdError::Config)?;
        let host = match &e.host {
            Some(h) => h.clone(),
            None => nix::unistd::gethostname()
                .map_err(|err| EtcdError::Config(format!("host: not set and no hostname: {err}")))?
                .to_string_lossy()
                .into_owned(),
        };
        keys::segment("host", &host).map_err(EtcdError::Config)?;
        if e.cert_file.is_some() != e.key_file.is_some() {
            return Err(EtcdError::Config(
                "cert_file and key_file: give both or neither".into(),
            ));
        }
        let user = match (&e.user, &e.password_file) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Config(
                    "user and password_file: give both or neither".into(),
                ))
            }
        };
        Ok(Some(EtcdSettings {
            endpoints: e.endpoints.clone(),
            layout: keys::Layout { prefix, host },
            ca_file: e.ca_file.clone(),
            cert_file: e.cert_file.clone(),
            key_file: e.key_file.clone(),
            user,
        }))
    }

    /// Settings for tests and the simulation: plain HTTP, no authentication.
    pub fn plain(endpoints: Vec<String>, prefix: &str, host: &str) -> EtcdSettings {
        EtcdSettings {
            endpoints,
            layout: keys::Layout {
                prefix: prefix.to_string(),
                host: host.to_string(),
            },
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
        }
    }

    /// Wraps a client error with the endpoints.
    pub fn error(&self, source: etcd_client::Error) -> EtcdError {
        EtcdError::Etcd {
            endpoints: self.endpoints.join(","),
            source,
        }
    }

    /// The client options: timeouts, HTTP/2 keep-alives (a dead member is noticed in seconds,
    /// even on an idle watch), TLS and authentication.
    pub fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let read = |field: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| EtcdError::File {
                field,
                path: path.clone(),
                source,
            })
        };
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if self.ca_file.is_some() || self.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read("ca_file", ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
                tls = tls.identity(Identity::from_pem(
                    read("cert_file", cert)?,
                    read("key_file", key)?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let Some((user, file)) = &self.user {
            let text = read("password_file", file)?;
            let password = String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            // Simple tokens expire (5 min by default): a long-lived node gets a new one.
            options = options
                .with_user(user.clone(), password)
                .with_auto_token_refresh(true);
        }
        Ok(options)
    }

    /// Connects to the cluster (any endpoint; the client balances over them).
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        let options = self.options()?;
        Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| self.error(e))
    }
}
