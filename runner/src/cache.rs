//! Small key → value caches in `$XDG_CACHE_HOME/repro-run/` (or
//! `~/.cache/repro-run/`), as JSON. A cache is only ever a shortcut: a
//! missing, unreadable or stale file costs time, never correctness, and two
//! processes writing at once lose an entry at worst.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One cache file.
pub struct JsonCache<V> {
    path: Option<PathBuf>,
    map: BTreeMap<String, V>,
}

/// `$XDG_CACHE_HOME/repro-run`, else `$HOME/.cache/repro-run`.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("repro-run"))
}

impl<V: Serialize + DeserializeOwned + Clone> JsonCache<V> {
    /// Reads `<cache dir>/repro-run/<file>`; empty if absent or unreadable.
    pub fn open(file: &str) -> Self {
        let path = dir().map(|d| d.join(file));
        let map = path
            .as_ref()
            .and_then(|p| fs_err::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        JsonCache { path, map }
    }

    /// The cached value for `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).cloned()
    }

    /// Stores `value` under `key` and writes the file atomically; a failure
    /// to write is logged.
    pub fn put(mut self, key: &str, value: V) {
        let Some(path) = self.path.take() else { return };
        self.map.insert(key.to_owned(), value);
        let write = || -> Result<()> {
            let dir = path.parent().context("cache path has no parent")?;
            fs_err::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer_pretty(&mut tmp, &self.map)?;
            tmp.persist(&path)?;
            Ok(())
        };
        if let Err(err) = write() {
            tracing::warn!("cannot write the cache {}: {err:#}", path.display());
        }
    }
}
