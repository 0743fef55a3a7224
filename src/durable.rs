//! Files replaced whole and durably: written to a temporary file beside them, synced, renamed
//! over, and the directory synced, so that a crash leaves either the old content or the new.
//! The lease journal's rewrite, the lease file and the password file all go through here.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A local file fault, naming the file. Peers never cause these.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file involved.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

/// Names the file in an IO error.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary file a replacement of `path` is written to: `<name>.tmp.<pid>`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// A file that took the place of another.
#[derive(Debug)]
pub struct Replaced {
    /// The new file, open for writing, positioned at its end.
    pub file: File,
    /// Whether the rename was made durable (the directory synced). When it was not, the new
    /// content is in place but a crash could still bring the old one back.
    pub durable: Result<(), FileError>,
}

/// Replaces `path` with what `write` puts into a fresh file. The new file is opened before it
/// is renamed into place, so the handle returned always belongs to the file bearing the name;
/// on failure the old file stays, and the temporary file is removed.
pub fn replace_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<Replaced, FileError> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(at(&tmp))?;
        write(&mut file)
            .and_then(|()| file.sync_all())
            .map_err(at(&tmp))?;
        fs::rename(&tmp, path).map_err(at(path))?;
        Ok(file)
    })();
    match result {
        Ok(file) => Ok(Replaced {
            file,
            durable: sync_dir(path),
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes a file so that a crash leaves either the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    replace_with(path, |f| f.write_all(bytes))?.durable
}

/// Syncs the directory holding `path`, so a rename in it survives a crash.
pub fn sync_dir(path: &Path) -> Result<(), FileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at(dir))?;
    }
    Ok(())
}

/// Removes temporary files that replacements of `path` left behind (a crash or a full disk
/// during an earlier run, of any pid). Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_os_string();
    prefix.push(".tmp.");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_cleans_up_after_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let failed = replace_with(&path, |_| Err(io::Error::other("disk full")));
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"two", "the old content stays");
        assert!(!temp_path(&path).exists(), "no temp file left");
    }

    #[test]
    fn stale_temps_of_any_pid_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.journal");
        for name in [
            "leases.journal.tmp.1",
            "leases.journal.tmp.99999",
            "leases.journal.tmp.x",
            "other.tmp.1",
            "leases.journal",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(remove_stale_temps(&path), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["leases.journal", "leases.journal.tmp.x", "other.tmp.1"]
        );
    }
}
