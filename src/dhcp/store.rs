//! The lease store: a concurrent map for lookups plus the append-only journal that makes every
//! acknowledged lease durable before its ACK is sent; optionally a dnsmasq-format lease file.
//!
//! Invariants, all kept under the journal lock:
//! - the map changes only after the change is in the journal (written and, with `fsync`,
//!   fdatasynced), so a compaction, which rewrites the journal from the map, never drops a lease
//!   that was acknowledged;
//! - the journal file is never left with a partial record followed by good ones: a failed
//!   write is cut off again (`set_len`) and, because a failed fdatasync may have lost earlier
//!   pages too, the journal is then rewritten whole from the map before anything else is
//!   accepted; while that rewrite fails, every commit fails (and no ACK is sent).
//! - opening never needs free space: the journal is read and replayed without writing; the
//!   compacting rewrite at start is tried, and when it cannot get space (a full disk) the
//!   journal is kept and written in place, into the zeros written ahead of its records. When
//!   even that is impossible (no journal could be created), the store opens without one: the
//!   replayed leases are served, and every commit fails (no ACK is promised) until a rewrite,
//!   tried again at most once a second, succeeds because space came back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use dashmap::DashMap;

use super::journal;
use super::lease::{Lease, LeaseChange};
use crate::durable::{self, at, write_atomically};

/// Journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "leases.journal";
/// The journal is compacted when it holds this many records more than four times the live
/// leases (a rewrite costs a pass over every lease and an fsync, so it is kept rare).
const COMPACT_SLACK: u64 = 65_536;
/// The journal is extended with this many zero bytes at a time, ahead of the records. Records
/// then overwrite blocks that already exist, so a commit's fdatasync writes the data only; an
/// append would also write the inode (the file size), a second IO per commit, which measured
/// here as twice the time and 1.5 times the CPU per fdatasync.
const PREALLOCATE: u64 = 1 << 20;

/// A local fault of the lease store (disk, permissions), naming the file. Peers never cause
/// these.
pub use crate::durable::FileError as StoreError;

/// What [`LeaseStore::open`] found in the journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Intact records replayed.
    pub records: usize,
    /// Leases still active after replay.
    pub active: usize,
    /// Bytes after the last intact record (a crash during a write, or damage).
    pub torn_bytes: u64,
    /// Where a damaged journal was copied before it was rewritten, if it was.
    pub kept_aside: Option<PathBuf>,
}

/// How often a journal that must be rewritten (after a failed fdatasync, or when none could be
/// created) is tried again: each try writes every lease, so not at every commit.
const REWRITE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The open journal and what is known to be good in it.
#[derive(Debug)]
struct Journal {
    /// The journal file (none when it could not be created).
    file: Option<File>,
    /// Bytes known to hold whole records; the next record is written here.
    len: u64,
    /// The file's size: `len` plus zeros written ahead (see [`PREALLOCATE`]).
    allocated: u64,
    /// False after a failed fdatasync (or with no file) until the journal has been rewritten
    /// whole.
    healthy: bool,
    /// When a rewrite was last tried while unhealthy.
    last_rewrite: Option<std::time::Instant>,
}

/// Leases keyed by address (a static binding has one address; a grant replaces whoever held
/// it), durable through the journal.
#[derive(Debug)]
pub struct LeaseStore {
    map: DashMap<Ipv4Addr, Lease>,
    journal_path: PathBuf,
    journal: Mutex<Journal>,
    records: AtomicU64,
    fsync: bool,
    lease_file: Option<PathBuf>,
    lease_file_dirty: AtomicBool,
    /// No lease expires before this (grants lower it; [`LeaseStore::expire`] sets it exactly).
    next_expiry: AtomicU64,
}

impl LeaseStore {
    /// Opens (or creates) the journal in `dir`, replays it, drops leases expired by `now`, and
    /// rewrites it compactly when there is room (else keeps it, see the module doc). A journal
    /// damaged beyond a torn last record is renamed aside first, and so is a file that is not a
    /// journal. Temporary files of earlier runs are removed. Needs no free space.
    pub fn open(
        dir: &Path,
        fsync: bool,
        lease_file: Option<PathBuf>,
        now: u64,
    ) -> Result<(LeaseStore, OpenReport), StoreError> {
        fs::create_dir_all(dir).map_err(at(dir))?;
        let journal_path = dir.join(JOURNAL_FILE);
        let mut stale = durable::remove_stale_temps(&journal_path);
        if let Some(f) = &lease_file {
            stale += durable::remove_stale_temps(f);
        }
        if stale > 0 {
            tracing::info!(
                removed = stale,
                "removed temporary files an earlier run left behind"
            );
        }
        let bytes = match fs::read(&journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(at(&journal_path)(e)),
        };
        let replay = journal::replay(&bytes);
        let mut report = OpenReport {
            records: replay.changes.len(),
            ..OpenReport::default()
        };
        // Whether the file can be written in place (a whole header, records, maybe zeros).
        let mut in_place = !bytes.is_empty();
        if replay.bad_header && !bytes.is_empty() {
            // Never overwrite a file we do not understand: keep it aside for the operator.
            let aside = journal_path.with_extension("journal.unreadable");
            fs::rename(&journal_path, &aside).map_err(at(&journal_path))?;
            tracing::error!(file = %journal_path.display(), moved_to = %aside.display(), "lease journal has no valid header; starting empty");
            report.kept_aside = Some(aside);
            in_place = false;
        } else {
            report.torn_bytes = replay.torn_len as u64;
            if report.torn_bytes > journal::MAX_RECORD as u64 {
                // More than one record's worth: damage, not a torn last write. Writing on would
                // destroy what follows the damage, so the file is kept aside whole (a rename
                // needs no space) and a new journal is written from the map.
                let aside = journal_path.with_extension(format!("journal.damaged-{now}"));
                fs::rename(&journal_path, &aside).map_err(at(&journal_path))?;
                tracing::error!(file = %journal_path.display(), offset = replay.valid_len, unread = report.torn_bytes, kept = %aside.display(), "lease journal is damaged; replayed up to the damage and kept it aside");
                report.kept_aside = Some(aside);
                in_place = false;
            }
        }
        let map = DashMap::new();
        for change in &replay.changes {
            apply(&map, change);
        }
        map.retain(|_, l: &mut Lease| l.is_active(now));
        report.active = map.len();
        let journal = match rewrite(&journal_path, &map) {
            Ok(j) => j,
            Err(e) if in_place => {
                tracing::warn!(error = %e, "cannot compact the lease journal (no space?); writing on in place");
                Journal::in_place(
                    &journal_path,
                    replay.valid_len,
                    bytes.len(),
                    replay.torn_len,
                )?
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create the lease journal: serving the leases held, and acknowledging none until it can be written");
                Journal::none()
            }
        };
        let store = LeaseStore {
            records: AtomicU64::new(map.len() as u64),
            map,
            journal_path,
            journal: Mutex::new(journal),
            fsync,
            lease_file,
            lease_file_dirty: AtomicBool::new(true),
            next_expiry: AtomicU64::new(0),
        };
        if let Err(e) = store.flush_lease_file(now) {
            tracing::error!(error = %e, "writing the lease file failed");
        }
        Ok((store, report))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites an unhealthy journal whole from the map, at most once per [`REWRITE_RETRY`]
    /// (each try writes every lease); `Err` while it stays unhealthy.
    #[allow(clippy::disallowed_methods)] // IO: paces retries by the monotonic clock
    fn try_rewrite(&self, j: &mut Journal) -> Result<(), StoreError> {
        let now = std::time::Instant::now();
        if j.last_rewrite
            .is_some_and(|t| now.duration_since(t) < REWRITE_RETRY)
        {
            return Err(not_durable(&self.journal_path));
        }
        j.last_rewrite = Some(now);
        *j = rewrite(&self.journal_path, &self.map)?;
        if !j.healthy {
            j.last_rewrite = Some(now);
            return Err(not_durable(&self.journal_path));
        }
        tracing::info!("lease journal rewritten whole; leases are acknowledged again");
        Ok(())
    }

    /// Whether the journal takes commits now (false while a full disk or a failed write keeps
    /// it from being written).
    pub fn writable(&self) -> bool {
        let j = self.lock();
        j.healthy && j.file.is_some()
    }

    /// Makes the changes durable (one write, one fdatasync), then applies them to the map.
    /// Call before sending the replies that announce them; on `Err` send none of them.
    pub fn commit<'c>(
        &self,
        changes: impl IntoIterator<Item = &'c LeaseChange> + Clone,
    ) -> Result<(), StoreError> {
        self.commit_with(changes, |_, _| {})
    }

    /// Like [`commit`](Self::commit), and tells `replaced`, change by change in order, the lease
    /// each one took the place of (the address's previous holder for a grant, the lease a
    /// RELEASE or DECLINE ended), as the map had it under the journal lock.
    pub fn commit_with<'c>(
        &self,
        changes: impl IntoIterator<Item = &'c LeaseChange> + Clone,
        mut replaced: impl FnMut(&'c LeaseChange, Option<Lease>),
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut count = 0u64;
        for c in changes.clone() {
            journal::encode(c, &mut buf);
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let mut j = self.lock();
        if !j.healthy {
            // A previous fdatasync failed (or no journal could be created): the journal must be
            // whole again before it takes more.
            self.try_rewrite(&mut j)?;
        }
        j.reserve(buf.len() as u64);
        let Some(file) = j.file.as_ref() else {
            return Err(not_durable(&self.journal_path));
        };
        let at_len = j.len;
        if let Err(e) = file.write_all_at(&buf, at_len) {
            // Past the zeros written ahead, on a full disk: cut what part of it was written (a
            // truncation needs no space) and fail this commit. The records before it were
            // synced by earlier commits, so the journal stays whole and takes the next one.
            let _ = file.set_len(at_len);
            j.allocated = at_len;
            return Err(at(&self.journal_path)(e));
        }
        let synced = if self.fsync { file.sync_data() } else { Ok(()) };
        if let Err(e) = synced {
            // After a failed fdatasync the kernel may have dropped earlier pages too: cut the
            // batch off and rewrite the journal whole from the map before it takes more.
            let _ = file.set_len(at_len);
            j.allocated = at_len;
            j.healthy = false;
            j.last_rewrite = None;
            let _ = self.try_rewrite(&mut j);
            return Err(at(&self.journal_path)(e));
        }
        j.len += buf.len() as u64;
        // Still under the lock: a compaction cannot slip between the journal and the map.
        for c in changes {
            replaced(c, apply(&self.map, c));
            if let LeaseChange::Grant(l) = c {
                if let Some(e) = l.expires {
                    self.next_expiry.fetch_min(e, Ordering::Relaxed);
                }
            }
        }
        drop(j);
        self.records.fetch_add(count, Ordering::Relaxed);
        self.lease_file_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Rewrites the journal with only the live leases when it has grown well past them.
    pub fn maybe_compact(&self, now: u64) -> Result<bool, StoreError> {
        let live = self.map.len() as u64;
        if self.records.load(Ordering::Relaxed) <= 4 * live + COMPACT_SLACK {
            return Ok(false);
        }
        self.compact(now)?;
        Ok(true)
    }

    /// Drops expired leases and rewrites the journal atomically (temp file, fsync, rename).
    pub fn compact(&self, now: u64) -> Result<(), StoreError> {
        let mut j = self.lock();
        self.map.retain(|_, l| l.is_active(now));
        // A failure (no space) leaves the current journal in charge, whole.
        *j = rewrite(&self.journal_path, &self.map)?;
        if !j.healthy {
            return Err(not_durable(&self.journal_path));
        }
        self.records.store(self.map.len() as u64, Ordering::Relaxed);
        self.lease_file_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes the leases that expired by `now` and returns them (for the dhcp-script's `del`).
    /// Replay drops expired leases anyway, so this needs no journal record. Costs one atomic
    /// read until the earliest expiry comes; then one pass, which finds the next one.
    pub fn expire(&self, now: u64) -> Vec<Lease> {
        if now < self.next_expiry.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let _j = self.lock();
        let mut expired = Vec::new();
        let mut next = u64::MAX;
        self.map.retain(|_, l| {
            if l.is_active(now) {
                next = next.min(l.expires.unwrap_or(u64::MAX));
                return true;
            }
            expired.push(l.clone());
            false
        });
        // Under the journal lock, so no grant's fetch_min is lost.
        self.next_expiry.store(next, Ordering::Relaxed);
        if !expired.is_empty() {
            self.lease_file_dirty.store(true, Ordering::Release);
        }
        expired
    }

    /// When the earliest lease expires (unix seconds), as of the last [`expire`](Self::expire);
    /// `None` when no lease expires. Before the first `expire` this says "now" (0).
    pub fn next_expiry(&self) -> Option<u64> {
        match self.next_expiry.load(Ordering::Relaxed) {
            u64::MAX => None,
            t => Some(t),
        }
    }

    /// The lease on an address, if any.
    pub fn get(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.map.get(&ip).map(|l| l.clone())
    }

    /// Every lease still active at `now`, sorted by address.
    pub fn active(&self, now: u64) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .map
            .iter()
            .filter(|l| l.is_active(now))
            .map(|l| l.clone())
            .collect();
        out.sort_by_key(|l| l.ip);
        out
    }

    /// Calls `f` with the address of every lease active at `now` (no copies: a scrape of
    /// 100,000 leases allocates nothing).
    pub fn for_each_active(&self, now: u64, mut f: impl FnMut(Ipv4Addr)) {
        for l in self.map.iter() {
            if l.is_active(now) {
                f(l.ip);
            }
        }
    }

    /// Number of leases held (including expired ones not yet compacted away).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no lease.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Rewrites the dnsmasq-format lease file with the leases active at `now`, if leases
    /// changed or one expired since the last write (expired ones are removed first, through
    /// [`expire`](Self::expire), which is all but free when none has).
    pub fn flush_lease_file(&self, now: u64) -> Result<(), StoreError> {
        let Some(path) = &self.lease_file else {
            return Ok(());
        };
        self.expire(now);
        if !self.lease_file_dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let leases = self.active(now);
        let mut text = String::new();
        for l in &leases {
            text.push_str(&dnsmasq_line(l));
            text.push('\n');
        }
        write_atomically(path, text.as_bytes())
            .inspect_err(|_| self.lease_file_dirty.store(true, Ordering::Release))
    }
}

/// The engine's view of the leases: who holds an address now.
#[derive(Debug, Clone, Copy)]
pub struct Holders<'a> {
    /// The store.
    pub store: &'a LeaseStore,
    /// Wall-clock time (unix seconds).
    pub now: u64,
}

impl super::engine::LeaseView for Holders<'_> {
    fn holder(&self, ip: Ipv4Addr) -> Option<crate::table::MacAddr> {
        self.store
            .map
            .get(&ip)
            .filter(|l| l.is_active(self.now))
            .map(|l| l.mac)
    }
}

/// Applies one change; returns the lease it took the place of.
fn apply(map: &DashMap<Ipv4Addr, Lease>, change: &LeaseChange) -> Option<Lease> {
    match change {
        LeaseChange::Grant(lease) => map.insert(lease.ip, lease.clone()),
        // Only the holder can end a lease.
        LeaseChange::Release { mac, ip } | LeaseChange::Decline { mac, ip } => {
            map.remove_if(ip, |_, l| l.mac == *mac).map(|(_, l)| l)
        }
    }
}

/// Writes a fresh journal holding exactly the map, and returns it open for writing. The new
/// file is opened before it is renamed into place, so the handle always belongs to the file that
/// bears the journal's name (a failure leaves the old journal and its handle in charge).
fn rewrite(path: &Path, map: &DashMap<Ipv4Addr, Lease>) -> Result<Journal, StoreError> {
    let mut buf = journal::HEADER.to_vec();
    for lease in map.iter() {
        journal::encode(&LeaseChange::Grant(lease.clone()), &mut buf);
    }
    let replaced = durable::replace_with(path, |f| f.write_all(&buf))?;
    // From here the new file is the journal, so its handle is returned whatever happens: one
    // kept for the old file would take commits into a file no longer under the journal's name.
    // If the rename is not durable yet, the journal is unhealthy and the next commit rewrites.
    let healthy = match replaced.durable {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "lease journal rewritten but its directory could not be synced; rewriting again before the next commit");
            false
        }
    };
    Ok(Journal {
        file: Some(replaced.file),
        len: buf.len() as u64,
        allocated: buf.len() as u64,
        healthy,
        last_rewrite: None,
    })
}

/// The error of a commit or compaction whose rewrite could not be made durable.
fn not_durable(path: &Path) -> StoreError {
    at(path)(io::Error::other(
        "the journal cannot be written now (no space, or its last write failed); retrying",
    ))
}

impl Journal {
    /// The existing journal, written on where its records end: `valid_len` bytes of header and
    /// records, then `torn_len` bytes of a torn write (zeroed, in place: no space needed), then
    /// zeros up to `file_len`.
    fn in_place(
        path: &Path,
        valid_len: usize,
        file_len: usize,
        torn_len: usize,
    ) -> Result<Journal, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(at(path))?;
        if torn_len > 0 {
            let _ = file.write_all_at(&vec![0; torn_len], valid_len as u64);
        }
        Ok(Journal {
            file: Some(file),
            len: valid_len as u64,
            allocated: file_len as u64,
            healthy: true,
            last_rewrite: None,
        })
    }

    /// No journal at all (it could not be created): every commit tries to write one.
    #[allow(clippy::disallowed_methods)] // IO: paces the rewrites by the monotonic clock
    fn none() -> Journal {
        Journal {
            file: None,
            len: 0,
            allocated: 0,
            healthy: false,
            last_rewrite: Some(std::time::Instant::now()),
        }
    }

    /// Makes room for `more` bytes after `len` by writing zeros ahead when the file is too short
    /// (no fsync of its own: the commit's fdatasync covers the new size, since it changed). If
    /// the zeros cannot be written (a nearly full disk), the records are simply appended: only
    /// their own write or fdatasync can fail a commit.
    fn reserve(&mut self, more: u64) {
        let need = self.len + more;
        if need <= self.allocated {
            return;
        }
        let Some(file) = &self.file else { return };
        let target = need + PREALLOCATE;
        let zeros = vec![0u8; (target - self.allocated) as usize];
        self.allocated = match file.write_all_at(&zeros, self.allocated) {
            Ok(()) => target,
            // Some zeros may have been written; they are free space either way.
            Err(_) => need,
        };
    }
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
    use crate::table::MacAddr;

    fn lease(n: u8, expires: Option<u64>) -> Lease {
        Lease {
            mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, n]),
            ip: Ipv4Addr::new(198, 18, 0, n),
            expires,
            hostname: Some(format!("h{n}")),
            client_id: None,
        }
    }

    fn release(n: u8) -> LeaseChange {
        let l = lease(n, None);
        LeaseChange::Release {
            mac: l.mac,
            ip: l.ip,
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
            s.commit(&[release(3)]).unwrap();
            s.flush_lease_file(100).unwrap();
            let text = fs::read_to_string(&lf).unwrap();
            assert_eq!(
                text,
                "1000 fa:16:3e:00:00:01 198.18.0.1 h1 *\n150 fa:16:3e:00:00:02 198.18.0.2 h2 *\n"
            );
            // An expiry rewrites the file without any new change.
            s.flush_lease_file(200).unwrap();
            assert_eq!(
                fs::read_to_string(&lf).unwrap(),
                "1000 fa:16:3e:00:00:01 198.18.0.1 h1 *\n"
            );
        }
        let (s, report) = LeaseStore::open(dir.path(), true, None, 200).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.active, 1);
        assert_eq!(s.get(lease(1, None).ip).unwrap().expires, Some(1000));
        assert!(s.get(lease(2, None).ip).is_none(), "expired");
    }

    #[test]
    fn only_the_holder_releases_and_a_grant_replaces_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        s.commit(&[LeaseChange::Grant(lease(1, None))]).unwrap();
        let ip = lease(1, None).ip;
        s.commit(&[LeaseChange::Release {
            mac: MacAddr([9; 6]),
            ip,
        }])
        .unwrap();
        assert!(s.get(ip).is_some(), "another MAC cannot release it");
        let mut other = lease(1, None);
        other.mac = MacAddr([7; 6]);
        s.commit(&[LeaseChange::Grant(other.clone())]).unwrap();
        assert_eq!(s.len(), 1, "one address, one lease");
        assert_eq!(s.get(ip), Some(other));
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
            s.commit(&[LeaseChange::Grant(lease(1, None))]).unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let end = journal::replay(&fs::read(&path).unwrap()).valid_len as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        // Half a record where the next one goes, as a crash leaves it (zeros may follow).
        f.write_all_at(&[40, 0, 0, 0, 1, 2], end).unwrap();
        drop(f);
        {
            let (s, report) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
            assert_eq!(report.torn_bytes, 6);
            assert_eq!(
                report.kept_aside, None,
                "a torn last record is normal after a crash"
            );
            assert_eq!(s.len(), 1);
            s.commit(&[LeaseChange::Grant(lease(2, None))]).unwrap();
        }
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn the_zeros_written_ahead_are_free_space_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        {
            let (s, _) = LeaseStore::open(dir.path(), true, None, 0).unwrap();
            s.commit(&[LeaseChange::Grant(lease(1, None))]).unwrap();
            let size = fs::metadata(&path).unwrap().len();
            assert!(size > PREALLOCATE, "extended ahead: {size} bytes");
            s.commit(&[LeaseChange::Grant(lease(2, None))]).unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), size, "written in place");
        }
        let (s, report) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert_eq!(report.torn_bytes, 0);
        assert_eq!(report.kept_aside, None);
        assert_eq!(report.records, 2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn damage_in_the_middle_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
            for n in 1..=40 {
                s.commit(&[LeaseChange::Grant(lease(n, None))]).unwrap();
            }
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0xff; // inside the first record
        fs::write(&path, &bytes).unwrap();
        let (s, report) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert_eq!(s.len(), 0);
        let aside = report.kept_aside.expect("a copy of the damaged journal");
        assert_eq!(fs::read(aside).unwrap(), bytes);
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
        s.commit(&[LeaseChange::Grant(lease(3, None))]).unwrap();
        drop(s);
        let (s, report) = LeaseStore::open(dir.path(), false, None, 20).unwrap();
        assert_eq!(
            report.records, 2,
            "the compacted lease and the one appended after"
        );
        assert_eq!(s.active(20).len(), 2);
    }

    #[test]
    fn concurrent_commits_and_compactions_lose_nothing() {
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        let s = std::sync::Arc::new(s);
        let compactions = std::sync::Arc::new(AtomicUsize::new(0));
        let writers_done = std::sync::Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4u8)
            .map(|t| {
                let (s, compactions, done) = (s.clone(), compactions.clone(), writers_done.clone());
                std::thread::spawn(move || {
                    for n in 0..50u8 {
                        let mut l = lease(n, None);
                        l.ip = Ipv4Addr::new(198, 18, t, n);
                        s.commit(&[LeaseChange::Grant(l)]).unwrap();
                        if n == 25 {
                            // Halfway, wait for a compaction: they really interleave.
                            let seen = compactions.load(Ordering::SeqCst);
                            while compactions.load(Ordering::SeqCst) == seen {
                                std::thread::yield_now();
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        while writers_done.load(Ordering::SeqCst) < 4 {
            s.compact(0).unwrap();
            compactions.fetch_add(1, Ordering::SeqCst);
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(compactions.load(Ordering::SeqCst) > 0);
        drop(s);
        let (s, _) = LeaseStore::open(dir.path(), false, None, 0).unwrap();
        assert_eq!(s.len(), 200);
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
