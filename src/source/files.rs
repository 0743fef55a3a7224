//! Noticing changed source files (hosts, opts, config, vendor data) through inotify, so an edit
//! reloads the table without a signal and without polling. The directories holding the files
//! are watched (an editor or nova may replace a file by renaming a new one over it), and only
//! events naming a watched file count.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// The inotify descriptor, as tokio wants it.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Watches the files a table was read from.
pub struct Watcher {
    inotify: AsyncFd<Fd>,
    /// Watched directories by descriptor.
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// (directory, file name) of every watched file.
    files: HashSet<(PathBuf, OsString)>,
}

/// What changes a file's content, or which file bears its name.
fn interesting() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
}

impl Watcher {
    /// A watcher with nothing watched yet. Must be called inside a tokio runtime.
    pub fn new() -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            // SAFETY: the descriptor is owned by the AsyncFd and closed only when it drops.
            inotify: unsafe { AsyncFd::register(Fd(inotify)) }.map_err(|e| e.into_parts().1)?,
            dirs: HashMap::new(),
            files: HashSet::new(),
        })
    }

    /// Watches exactly these files from now on (a reload may name other files).
    pub fn watch(&mut self, files: &[PathBuf]) {
        let wanted: HashSet<(PathBuf, OsString)> = files.iter().filter_map(|f| split(f)).collect();
        let dirs: HashSet<&PathBuf> = wanted.iter().map(|(d, _)| d).collect();
        let stale: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, d)| !dirs.contains(d))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in stale {
            self.dirs.remove(&wd);
            let _ = self.inotify.get_ref().0.rm_watch(wd);
        }
        for dir in dirs {
            if self.dirs.values().any(|d| d == dir) {
                continue;
            }
            match self
                .inotify
                .get_ref()
                .0
                .add_watch(dir.as_path(), interesting())
            {
                Ok(wd) => {
                    self.dirs.insert(wd, dir.clone());
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the directory for changes; reload with SIGHUP")
                }
            }
        }
        self.files = wanted;
    }

    /// Waits until a watched file changed.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.inotify.readable().await?;
            let events =
                match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(result) => result?,
                    Err(_would_block) => continue,
                };
            let hit = events.iter().any(|e| {
                let Some(dir) = self.dirs.get(&e.wd) else {
                    return false;
                };
                e.name
                    .as_ref()
                    .is_some_and(|n| self.files.contains(&(dir.clone(), n.clone())))
            });
            if hit {
                return Ok(());
            }
        }
    }
}

/// A file's directory and name (a bare name is in the current directory).
fn split(file: &Path) -> Option<(PathBuf, OsString)> {
    let name = file.file_name()?.to_os_string();
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_edit_or_a_rename_over_a_watched_file_is_seen_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "a").unwrap();
        let mut w = Watcher::new().unwrap();
        w.watch(std::slice::from_ref(&hosts));
        let quiet = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
        assert!(quiet.is_err(), "nothing changed yet");
        std::fs::write(dir.path().join("other"), "x").unwrap();
        let other = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
        assert!(
            other.is_err(),
            "another file in the directory does not count"
        );
        std::fs::write(&hosts, "b").unwrap();
        tokio::time::timeout(Duration::from_secs(2), w.changed())
            .await
            .expect("an edit is seen")
            .unwrap();
        // Let the edit's remaining events go by, so only the rename can answer next.
        while tokio::time::timeout(Duration::from_millis(200), w.changed())
            .await
            .is_ok()
        {}
        let tmp = dir.path().join("hosts.new");
        std::fs::write(&tmp, "c").unwrap();
        std::fs::rename(&tmp, &hosts).unwrap();
        tokio::time::timeout(Duration::from_secs(2), w.changed())
            .await
            .expect("a rename over it is seen")
            .unwrap();
    }
}
