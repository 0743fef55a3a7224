//! The lease store: a concurrent map for lookups plus the append-only journal that makes every
//! acknowledged lease durable before its ACK is sent; optionally a dnsmasq-format lease file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use dashmap::DashMap;

use super::journal;
use super::lease::{Lease, LeaseChange};
use crate::table::MacAddr;

/// Journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "leases.journal";
/// The journal is compacted when it holds this many records more than twice the live leases.
const COMPACT_SLACK: u64 = 4096;

/// A local fault of the lease store (disk, permissions). Peers never cause these.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    /// The file involved.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`LeaseStore::open`] found in the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Intact records replayed.
    pub records: usize,
    /// Leases still active after replay.
    pub active: usize,
    /// Bytes of torn tail cut off (a crash during a write).
    pub torn_bytes: u64,
}

/// Leases keyed by (MAC, address), durable through the journal.
#[derive(Debug)]
pub struct LeaseStore {
    map: DashMap<(MacAddr, Ipv4Addr), Lease>,
    journal_path: PathBuf,
    journal: Mutex<File>,
    records: AtomicU64,
    fsync: bool,
    lease_file: Option<PathBuf>,
    lease_file_dirty: AtomicBool,
}

impl LeaseStore {
    /// Opens (or creates) the journal in `dir`, replays it, drops leases expired by `now`, and
    /// rewrites it compactly.
    pub fn open(
        dir: &Path,
        fsync: bool,
        lease_file: Option<PathBuf>,
        now: u64,
    ) -> Result<(LeaseStore, OpenReport), StoreError> {
        fs::create_dir_all(dir).map_err(at(dir))?;
        let journal_path = dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(at(&journal_path)(e)),
        };
        let replay = journal::replay(&bytes);
        if replay.bad_header && !bytes.is_empty() {
            // Never overwrite a file we do not understand: keep it aside for the operator.
            let aside = journal_path.with_extension("journal.unreadable");
            fs::rename(&journal_path, &aside).map_err(at(&journal_path))?;
            tracing::error!(file = %journal_path.display(), moved_to = %aside.display(), "lease journal has no valid header; starting empty");
        }
        let map = DashMap::new();
        for change in &replay.changes {
            apply(&map, change);
        }
        map.retain(|_, l: &mut Lease| l.is_active(now));
        let report = OpenReport {
            records: replay.changes.len(),
            active: map.len(),
            torn_bytes: (bytes.len().saturating_sub(replay.valid_len)) as u64
                * u64::from(!replay.bad_header),
        };
        let file = write_compacted(&journal_path, &map)?;
        let store = LeaseStore {
            records: AtomicU64::new(map.len() as u64),
            map,
            journal_path,
            journal: Mutex::new(file),
            fsync,
            lease_file,
            lease_file_dirty: AtomicBool::new(true),
        };
        store.flush_lease_file()?;
        Ok((store, report))
    }

    /// Makes the changes durable (one write, one fdatasync) and then applies them to the map.
    /// Call before sending the replies that announce them.
    pub fn commit(&self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(64 * changes.len());
        for c in changes {
            journal::encode(c, &mut buf);
        }
        {
            let mut file = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&buf).map_err(at(&self.journal_path))?;
            if self.fsync {
                file.sync_data().map_err(at(&self.journal_path))?;
            }
        }
        for c in changes {
            apply(&self.map, c);
        }
        self.records
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        self.lease_file_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Rewrites the journal with only the live leases when it has grown well past them.
    pub fn maybe_compact(&self, now: u64) -> Result<bool, StoreError> {
        let live = self.map.len() as u64;
        if self.records.load(Ordering::Relaxed) <= 2 * live + COMPACT_SLACK {
            return Ok(false);
        }
        self.compact(now)?;
        Ok(true)
    }

    /// Drops expired leases and rewrites the journal atomically (temp file, fsync, rename).
    pub fn compact(&self, now: u64) -> Result<(), StoreError> {
        let mut file = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        self.map.retain(|_, l| l.is_active(now));
        *file = write_compacted(&self.journal_path, &self.map)?;
        self.records.store(self.map.len() as u64, Ordering::Relaxed);
        self.lease_file_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// The lease for a client and address, if any.
    pub fn get(&self, mac: MacAddr, ip: Ipv4Addr) -> Option<Lease> {
        self.map.get(&(mac, ip)).map(|l| l.clone())
    }

    /// Every lease still active at `now`, sorted by address.
    pub fn active(&self, now: u64) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .map
            .iter()
            .filter(|l| l.is_active(now))
            .map(|l| l.clone())
            .collect();
        out.sort_by_key(|l| (l.ip, l.mac));
        out
    }

    /// Number of leases held (including expired ones not yet compacted away).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no lease.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Rewrites the dnsmasq-format lease file if leases changed since the last write.
    pub fn flush_lease_file(&self) -> Result<(), StoreError> {
        let Some(path) = &self.lease_file else {
            return Ok(());
        };
        if !self.lease_file_dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut text = String::new();
        for l in self.active(0) {
            text.push_str(&dnsmasq_line(&l));
            text.push('\n');
        }
        write_atomically(path, text.as_bytes())
            .inspect_err(|_| self.lease_file_dirty.store(true, Ordering::Release))
    }
}

fn apply(map: &DashMap<(MacAddr, Ipv4Addr), Lease>, change: &LeaseChange) {
    match change {
        LeaseChange::Grant(lease) => {
            map.insert(lease.key(), lease.clone());
        }
        LeaseChange::Release { .. } | LeaseChange::Decline { .. } => {
            map.remove(&change.key());
        }
    }
}

fn write_compacted(
    path: &Path,
    map: &DashMap<(MacAddr, Ipv4Addr), Lease>,
) -> Result<File, StoreError> {
    let mut buf = journal::HEADER.to_vec();
    for lease in map.iter() {
        journal::encode(&LeaseChange::Grant(lease.clone()), &mut buf);
    }
    write_atomically(path, &buf)?;
    OpenOptions::new().append(true).open(path).map_err(at(path))
}

/// Writes a file so that a crash leaves either the old or the new content: temp file, fsync,
/// rename over, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    fs::rename(&tmp, path).map_err(at(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at(dir))?;
    }
    Ok(())
}

/// `<expiry> <mac> <ip> <hostname|*> <client-id|*>`, as dnsmasq writes (0 = infinite).
pub fn dnsmasq_line(l: &Lease) -> String {
    let client_id = match &l.client_id {
        Some(id) if !id.is_empty() => id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        _ => "*".to_string(),
    };
    format!(
        "{} {} {} {} {}",
        l.expires.unwrap_or(0),
        l.mac,
        l.ip,
        l.hostname.as_deref().unwrap_or("*"),
        client_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8, expires: Option<u64>) -> Lease {
        Lease {
            mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, n]),
            ip: Ipv4Addr::new(198, 18, 0, n),
            expires,
            hostname: Some(format!("h{n}")),
            client_id: None,
        }
    }

    #[test]
    fn survives_reopen_and_drops_expired_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let lf = dir.path().join("dnsmasq.leases");
        {
            let (s, _) = LeaseStore::open(dir.path(), true, Some(lf.clone()), 100).unwrap();
            s.commit(&[
                LeaseChange::Grant(lease(1, Some(1000))),
                LeaseChange::Grant(lease(2, Some(150))),
                LeaseChange::Grant(lease(3, None)),
            ])
            .unwrap();
            s.commit(&[LeaseChange::Release {
                mac: lease(3, None).mac,
                ip: lease(3, None).ip,
            }])
            .unwrap();
            s.flush_lease_file().unwrap();
            let text = fs::read_to_string(&lf).unwrap();
            assert_eq!(
                text,
                "1000 fa:16:3e:00:00:01 198.18.0.1 h1 *\n150 fa:16:3e:00:00:02 198.18.0.2 h2 *\n"
            );
        }
        let (s, report) = LeaseStore::open(dir.path(), true, None, 200).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.active, 1);
        assert_eq!(
            s.get(lease(1, None).mac, lease(1, None).ip)
                .unwrap()
                .expires,
            Some(1000)
        );
        assert!(
            s.get(lease(2, None).mac, lease(2, None).ip).is_none(),
            "expired"
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
            s.commit(&[LeaseChange::Grant(lease(1, None))]).unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap(); // half a record, as a crash leaves it
        drop(f);
        {
            let (s, report) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
            assert_eq!(report.torn_bytes, 6);
            assert_eq!(s.len(), 1);
            s.commit(&[LeaseChange::Grant(lease(2, None))]).unwrap();
        }
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn compaction_keeps_live_leases() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        for _ in 0..3 {
            s.commit(&[
                LeaseChange::Grant(lease(1, Some(10))),
                LeaseChange::Grant(lease(2, Some(1000))),
            ])
            .unwrap();
        }
        s.compact(20).unwrap();
        drop(s);
        let (s, report) = LeaseStore::open(dir.path(), false, None, 20).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(s.active(20).len(), 1);
    }

    #[test]
    fn a_foreign_journal_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JOURNAL_FILE), b"not a journal").unwrap();
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert!(s.is_empty());
        assert!(dir.path().join("leases.journal.unreadable").exists());
    }
}
