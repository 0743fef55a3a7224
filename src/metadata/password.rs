//! Instance passwords (nova's `password` path): set once by the instance, read back by it,
//! kept across restarts in `<state.dir>/passwords.json`, rewritten atomically on each change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;

use crate::durable::{write_atomically, FileError};

/// File name inside the state directory.
pub const FILE: &str = "passwords.json";

/// Passwords by instance UUID.
#[derive(Debug)]
pub struct PasswordStore {
    path: PathBuf,
    map: Mutex<BTreeMap<String, Bytes>>,
}

/// Why the password file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not readable.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not the JSON object netnode writes.
    #[error("{0}: not a JSON object of base64 strings: {1}")]
    Parse(PathBuf, String),
}

impl PasswordStore {
    /// Loads the store from `dir` (an absent file is an empty store).
    pub fn open(dir: &Path) -> Result<PasswordStore, LoadError> {
        let path = dir.join(FILE);
        let map = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let raw: BTreeMap<String, String> = serde_json::from_str(&text)
                    .map_err(|e| LoadError::Parse(path.clone(), e.to_string()))?;
                let mut map = BTreeMap::new();
                for (k, v) in raw {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| LoadError::Parse(path.clone(), format!("{k}: {e}")))?;
                    map.insert(k, Bytes::from(bytes));
                }
                map
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(LoadError::Read(path, e)),
        };
        Ok(PasswordStore {
            path,
            map: Mutex::new(map),
        })
    }

    /// The stored password of an instance.
    pub fn get(&self, uuid: &str) -> Option<Bytes> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uuid)
            .cloned()
    }

    /// Stores a password if the instance has none; `Ok(false)` when it already had one. The
    /// file is written before the answer is given.
    pub fn set_if_unset(&self, uuid: &str, value: Bytes) -> Result<bool, FileError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(uuid).is_some_and(|v| !v.is_empty()) {
            return Ok(false);
        }
        let mut next = map.clone();
        next.insert(uuid.to_string(), value);
        let encoded: BTreeMap<&String, String> = next
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        let text = serde_json::to_string_pretty(&encoded).unwrap_or_default();
        write_atomically(&self.path, text.as_bytes())?;
        *map = next;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_once_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let s = PasswordStore::open(dir.path()).unwrap();
        assert_eq!(s.get("u1"), None);
        assert!(s.set_if_unset("u1", Bytes::from_static(b"secret")).unwrap());
        assert!(
            !s.set_if_unset("u1", Bytes::from_static(b"other")).unwrap(),
            "409 the second time"
        );
        drop(s);
        let s = PasswordStore::open(dir.path()).unwrap();
        assert_eq!(s.get("u1"), Some(Bytes::from_static(b"secret")));
        std::fs::write(dir.path().join(FILE), "[1]").unwrap();
        assert!(PasswordStore::open(dir.path())
            .unwrap_err()
            .to_string()
            .contains("passwords.json"));
    }
}
