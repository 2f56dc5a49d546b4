//! The LUN numbers of the no-view default, kept in a file so they stay the same across restarts.
//!
//! Invariants: a volume keeps its LUN for as long as it exists (a backend that cannot be listed
//! for a while, an RBD pool during a Ceph outage, loses none of its numbers); a new volume gets the smallest
//! free number; the file is replaced whole (write, fsync, rename, fsync of the directory), so a
//! crash leaves the old map or the new one; at most [`LUNS_MAX`] LUNs are mapped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits::LUNS_MAX;

/// Volume id (32 hex digits) to LUN number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunMap {
    pub luns: BTreeMap<String, u16>,
}

impl LunMap {
    /// Reads the map at `path`; a missing file is an empty map.
    pub fn load(path: &Path) -> std::io::Result<LunMap> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LunMap::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file at `path` atomically and durably.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(
            path,
            &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    /// Keeps the numbers of the `ids` still present, drops the others (only when the listing
    /// was `complete`: a volume a backend could not list keeps its number) and numbers new ids
    /// in order; returns true if anything changed. Ids beyond [`LUNS_MAX`] are left unmapped.
    pub fn update(&mut self, ids: &[String], complete: bool) -> bool {
        let before = self.luns.clone();
        if complete {
            self.luns.retain(|id, _| ids.contains(id));
        }
        for id in ids {
            if self.luns.len() >= LUNS_MAX || self.luns.contains_key(id) {
                continue;
            }
            let used: std::collections::BTreeSet<u16> = self.luns.values().copied().collect();
            let free = (0..).find(|n| !used.contains(n)).unwrap_or(0);
            self.luns.insert(id.clone(), free);
        }
        self.luns != before
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbers_are_kept_and_reused_smallest_first() {
        let mut m = LunMap::default();
        assert!(m.update(&ids(&["a", "b", "c"]), true));
        assert_eq!(m.luns["c"], 2);
        assert!(!m.update(&ids(&["a", "b", "c"]), true));
        assert!(m.update(&ids(&["a", "c", "d"]), true));
        assert_eq!((m.luns["a"], m.luns["c"], m.luns["d"]), (0, 2, 1));
    }

    #[test]
    fn an_incomplete_listing_adds_numbers_and_drops_none() {
        let mut m = LunMap::default();
        m.update(&ids(&["a", "b"]), true);
        assert!(m.update(&ids(&["c"]), false));
        assert_eq!((m.luns["a"], m.luns["b"], m.luns["c"]), (0, 1, 2));
        assert!(!m.update(&ids(&["a"]), false));
        assert!(m.update(&ids(&["a"]), true));
        assert_eq!(m.luns.len(), 1);
    }

    #[test]
    fn survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("luns.json");
        assert_eq!(LunMap::load(&path).unwrap(), LunMap::default());
        let mut m = LunMap::default();
        m.update(&ids(&["x", "y"]), true);
        m.save(&path).unwrap();
        assert_eq!(LunMap::load(&path).unwrap(), m);
        std::fs::write(&path, b"{").unwrap();
        assert!(LunMap::load(&path).is_err());
    }

    #[test]
    fn at_most_luns_max_are_mapped() {
        let many: Vec<String> = (0..LUNS_MAX + 5).map(|i| format!("{i:04}")).collect();
        let mut m = LunMap::default();
        m.update(&many, true);
        assert_eq!(m.luns.len(), LUNS_MAX);
    }
}
