//! The manager's database as a table source: a config with `[manager]` is served with the
//! database's networks, servers and floating IPs added to what the config itself lists, and the
//! daemon learns of every change within a fraction of a second.
//!
//! How the daemon learns of a change: every served change bumps the database's `generation`
//! counter in the same transaction. The daemon watches the database's files with inotify (a
//! commit writes the WAL file from whichever process made it: a CLI command, another
//! manager), and on each write compares `generation` with the one its table was built from.
//! No polling, no socket to keep in step, and a command needs no running daemon: it commits
//! and the daemon catches up, even after a restart. Writes that serve nothing new (the DHCP
//! service's own `leased` flags, checkpoints) leave `generation` alone: they cost a second of
//! rechecks (one row read every 5 ms), never a rebuild.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::files::Watcher;
use crate::manager::{self, Manager, ManagerError, Settings};
use crate::table::config::ConfigFile;
use crate::table::{ManagerLink, ManagerStore};

/// Adds the database's networks, instances and floating IPs to `config`; returns the link the
/// table keeps (the database and the generation read) and what was left out, and why (a
/// floating IP with no interface to live on: the rest of the table is still served).
pub fn merge(
    config: &mut ConfigFile,
    view: Option<&super::etcd::View>,
) -> Result<(ManagerLink, Vec<String>), ManagerError> {
    let settings = Settings::from_config(config)?;
    let mut left_out = Vec::new();
    let (served, store, present) = match &settings.etcd {
        Some(etcd) => {
            // Without the daemon's feed (`netnode check`), the view it saved last.
            let saved;
            let view = match view {
                Some(v) => Some(v),
                None => {
                    saved = super::etcd::saved_view(&config.state.dir, etcd);
                    saved.as_ref()
                }
            };
            let empty = super::etcd::View::default();
            let v = view.unwrap_or(&empty);
            let (served, problems) =
                crate::manager::etcd::record::served(&v.networks, &v.ports, v.revision);
            left_out.extend(problems);
            let store = ManagerStore::Etcd {
                host: etcd.layout.host.clone(),
                prefix: etcd.layout.prefix.clone(),
                live: v.live,
            };
            (served, store, view.is_some())
        }
        None => {
            // No database yet is an empty one: reading (`netnode check`, `net plan`) creates
            // nothing; the daemon's watch creates it.
            let present = settings.database.exists();
            let served = if present {
                Manager::open(settings.clone())?.served()?
            } else {
                crate::manager::export::Served::default()
            };
            (
                served,
                ManagerStore::Database(settings.database.clone()),
                present,
            )
        }
    };
    config.network.extend(served.network_configs(&settings));
    config.instance.extend(served.instance_configs());
    config
        .security_group
        .extend(served.security_groups.iter().cloned());
    if let (Some(i), Some(nat)) = (&settings.public_interface, config.nat.as_mut()) {
        nat.public_interface.get_or_insert_with(|| i.clone());
    }
    let public = config
        .nat
        .as_ref()
        .and_then(|n| n.public_interface.clone())
        .or(settings.public_interface.clone());
    for f in served.floating_configs() {
        if f.interface.is_none() && public.is_none() {
            left_out.push(format!(
                "floating IP {} (to {}): no interface to live on; set [nat] public_interface or create its pool with --interface",
                f.address, f.fixed
            ));
            continue;
        }
        config.floating.push(f);
    }
    let link = ManagerLink {
        store,
        generation: served.generation,
        force_dhcp_release: settings.force_dhcp_release,
        present,
    };
    Ok((link, left_out))
}

/// What became of the database file.
enum File {
    /// The one the connection reads.
    Same,
    /// Deleted, or replaced by something that is not a database.
    Gone,
    /// Another database in its place (a restore): the connection now reads it.
    Replaced,
}

/// Waits for served changes in a manager database.
///
/// Its state lives in the struct, not in the future [`DbWatch::changed`] returns: the server's
/// loop drops that future whenever another event comes first (a link event during a boot
/// storm), and a write already taken from inotify must still be rechecked afterwards.
pub struct DbWatch {
    database: PathBuf,
    files: Watcher,
    conn: Connection,
    /// The database file's inode when `conn` opened it (a file deleted and made anew, say by
    /// a restore, is another database: the watch opens it and the daemon reloads).
    inode: Option<u64>,
    /// After a write, the generation is read again until this instant.
    recheck_until: Option<tokio::time::Instant>,
    /// The generation last reported: a reload that failed on it is not retried until the
    /// database moves again (a bad state is logged once, not fifty times a second).
    reported: Option<u64>,
}

fn inode(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}

/// After a write, how often and how long the generation is read again (the commit's last step
/// updates shared memory, which inotify does not see).
const RECHECK: Duration = Duration::from_millis(5);
const RECHECK_FOR: Duration = Duration::from_secs(1);
/// Commits settle: this much quiet, or this long at most.
const QUIET: Duration = Duration::from_millis(20);
const LONGEST: Duration = Duration::from_millis(100);

impl DbWatch {
    /// Watches `database` (its file and its WAL). Must be called inside a tokio runtime.
    pub fn new(database: &Path) -> Result<DbWatch, io::Error> {
        let mut files = Watcher::new()?;
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        files.watch(&[database.to_path_buf(), PathBuf::from(wal)]);
        // Created (with its schema) if it does not exist yet: commands made later are seen.
        drop(
            Manager::open(Settings::with_database(database.to_path_buf()))
                .map_err(io::Error::other)?,
        );
        let conn = manager::connect(database).map_err(io::Error::other)?;
        Ok(DbWatch {
            database: database.to_path_buf(),
            files,
            conn,
            inode: inode(database),
            recheck_until: None,
            reported: None,
        })
    }

    /// Whether the database file is still the one read. A deleted database keeps the last table
    /// (a missing database is not an empty one); a file that appears in its place is read, once
    /// it is a database.
    fn file(&mut self) -> File {
        let now = inode(&self.database);
        if now == self.inode {
            return File::Same;
        }
        self.inode = now;
        if now.is_none() {
            tracing::warn!(database = %self.database.display(), "the manager's database file is gone; still serving the last table");
            return File::Gone;
        }
        match manager::connect(&self.database).and_then(|c| {
            manager::generation(&c)?;
            Ok(c)
        }) {
            Ok(c) => {
                tracing::warn!(database = %self.database.display(), "the manager's database file was replaced; reading the new one");
                self.conn = c;
                File::Replaced
            }
            Err(e) => {
                tracing::warn!(database = %self.database.display(), error = %e, "the manager's database file was replaced by one that cannot be read; still serving the last table");
                File::Gone
            }
        }
    }

    /// The database watched.
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// The generation now, unless it is `served` or was reported already.
    fn moved(&self, served: u64) -> Option<u64> {
        match manager::generation(&self.conn) {
            Ok(g) if g != served && Some(g) != self.reported => Some(g),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "reading the manager database's generation failed");
                None
            }
        }
    }

    /// Returns once the database's generation differs from `served` (at once if it already
    /// does), then lets a stream of commits settle: 20 ms of quiet, or 100 ms at most, so a
    /// boot storm is served in steps rather than once it ends. After each write the generation
    /// is read again every 5 ms until it moves, or for a second: a commit is never missed, and
    /// an idle database costs nothing.
    pub async fn changed(&mut self, served: u64) -> io::Result<()> {
        loop {
            if let Some(until) = self.recheck_until {
                match self.file() {
                    File::Same => {}
                    File::Gone => self.recheck_until = None,
                    File::Replaced => break,
                }
                if self.moved(served).is_some() {
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    self.recheck_until = None;
                } else {
                    tokio::time::sleep(RECHECK).await;
                }
                continue;
            }
            if self.moved(served).is_some() {
                break;
            }
            self.files.changed().await?;
            self.recheck_until = Some(tokio::time::Instant::now() + RECHECK_FOR);
        }
        self.recheck_until = None;
        let deadline = tokio::time::Instant::now() + LONGEST;
        while tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + QUIET),
            self.files.changed(),
        )
        .await
        .is_ok()
        {}
        // Recorded only now, as the future returns: the server's loop may drop it at any await
        // above (a link event comes first), and the change must then be found again.
        if let Ok(g) = manager::generation(&self.conn) {
            self.reported = Some(g);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::network::CreateNetwork;
    use crate::manager::server::ServerCreate;

    #[test]
    fn the_database_joins_the_config_and_a_floating_ip_with_nowhere_to_live_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[state]\ndir = \"{}\"\n[manager]\n[[network]]\nname = \"own\"\nbridge = \"br9\"\ncidr = \"198.18.9.0/24\"\n",
            dir.path().display()
        );
        let mut config = ConfigFile::parse(&text).unwrap();
        // No database yet: an empty one, and none is created by reading.
        let (link, _) = merge(&mut config.clone(), None).unwrap();
        assert_eq!(link.generation, 0);
        assert!(!link.database().is_some_and(|d| d.exists()));
        let mut m = Manager::open(Settings::from_config(&config).unwrap()).unwrap();
        m.network_create(&CreateNetwork {
            label: Some("vmnet".into()),
            fixed_range_v4: Some("198.18.0.0/24".into()),
            ..Default::default()
        })
        .unwrap();
        m.server_create(&ServerCreate {
            name: "vm".into(),
            project: "p".into(),
            networks: Vec::new(),
            count: 1,
            security_groups: Vec::new(),
            host: None,
        })
        .unwrap();
        m.floating_create(None, "198.19.0.1", None).unwrap();
        m.floating_allocate(None, "p").unwrap();
        m.floating_associate("198.19.0.1".parse().unwrap(), "vm", None)
            .unwrap();
        let (link, left_out) = merge(&mut config, None).unwrap();
        assert_eq!(link.generation, m.generation().unwrap());
        assert_eq!(
            config.network.len(),
            2,
            "the config's own network and the database's"
        );
        assert_eq!(config.instance.len(), 1);
        assert!(config.floating.is_empty());
        assert!(left_out[0].contains("198.19.0.1"), "{left_out:?}");
        // The table builds: the floating IP is the only thing missing.
        let table = crate::table::build::from_config(&config, Path::new("t")).unwrap();
        assert_eq!(table.networks.len(), 2);
    }
}
