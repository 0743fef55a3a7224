//! One daemon per state directory. Two daemons on one lease journal would each replay and
//! rewrite it, and one would go on writing to a file that no longer bears the journal's name:
//! acknowledged leases would be lost. So the daemon holds an exclusive `flock` on
//! `<state.dir>/lock` for its whole life (the kernel releases it when the process ends, however
//! it ends), and a second daemon is refused before it reads the journal.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another netnode (pid {holder}) is running on the state directory {}; refusing to start", dir.display())]
    Held {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it ("unknown" if it could not).
        holder: String,
    },
    /// The directory or the lock file could not be opened.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
}

impl StateLock {
    /// Takes the lock of `dir` (created if missing) and writes this process's pid into it.
    /// Needs no free space: a full disk still locks (the pid is then not written).
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = format!("{}\n", std::process::id());
                let _ = lock
                    .set_len(0)
                    .and_then(|()| lock.write_all(pid.as_bytes()));
                Ok(StateLock { _file: lock })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                };
                Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                })
            }
            Err((_, e)) => Err(io(&path)(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file: a second open, even in this process, is refused.
        match StateLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        StateLock::acquire(dir.path()).expect("free again once the first lets go");
    }
}
