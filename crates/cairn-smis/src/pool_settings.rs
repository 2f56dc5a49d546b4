//! The pools' settings a client may change: `CIM_StoragePool.LowSpaceWarningThreshold` (Block
//! Services / Thin Provisioning: a percentage; an alert is raised when RemainingManagedSpace <=
//! TotalManagedSpace × LowSpaceWarningThreshold / 100, and 0 raises none), changed through
//! ModifyInstance of the pool and kept in a small JSON file (`pool-settings.json` in the data
//! directory) by pool name, so it survives restarts and stays with the daemon, not the pool.
//!
//! Invariants: a value is written to the file (temporary file, fsync, rename) before
//! ModifyInstance answers; a pool with no value of its own has the configured default; every
//! value is at most [`LOW_SPACE_WARNING_PERCENT_MAX`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::jobs::{read_file, write_file};

/// The largest LowSpaceWarningThreshold (MaxValue of the DMTF property).
pub const LOW_SPACE_WARNING_PERCENT_MAX: u16 = 100;

#[derive(Debug, Default, Serialize, Deserialize)]
struct SettingsFile {
    /// LowSpaceWarningThreshold by pool name, for the pools a client set it on.
    low_space_warning_percent: BTreeMap<String, u16>,
}

/// The settings of every pool (see the module documentation).
#[derive(Debug)]
pub struct PoolSettings {
    path: Option<PathBuf>,
    default_percent: u16,
    file: Mutex<SettingsFile>,
}

impl PoolSettings {
    /// Loads `path` (missing: no pool has a value of its own); a damaged file is moved aside to
    /// `<path>.damaged` and returned as the error beside empty settings. `default_percent` is
    /// clamped to [`LOW_SPACE_WARNING_PERCENT_MAX`].
    pub fn load(path: Option<PathBuf>, default_percent: u16) -> (PoolSettings, Option<Error>) {
        let (mut file, error) = match path.as_deref().map(read_file::<SettingsFile>) {
            None => (SettingsFile::default(), None),
            Some(Ok(f)) => (f, None),
            Some(Err(e)) => {
                if let Some(p) = path.as_deref() {
                    let _ = std::fs::rename(p, p.with_extension("json.damaged"));
                }
                (SettingsFile::default(), Some(e))
            }
        };
        file.low_space_warning_percent
            .retain(|_, v| *v <= LOW_SPACE_WARNING_PERCENT_MAX);
        let settings = PoolSettings {
            path,
            default_percent: default_percent.min(LOW_SPACE_WARNING_PERCENT_MAX),
            file: Mutex::new(file),
        };
        (settings, error)
    }

    /// LowSpaceWarningThreshold of pool `pool`.
    pub fn low_space_warning_percent(&self, pool: &str) -> u16 {
        self.file
            .lock()
            .low_space_warning_percent
            .get(pool)
            .copied()
            .unwrap_or(self.default_percent)
    }

    /// Sets LowSpaceWarningThreshold of pool `pool` durably (the caller checked it is at most
    /// [`LOW_SPACE_WARNING_PERCENT_MAX`]); a failed write changes nothing.
    pub fn set_low_space_warning_percent(&self, pool: &str, percent: u16) -> Result<(), Error> {
        assert!(
            percent <= LOW_SPACE_WARNING_PERCENT_MAX,
            "a checked percentage"
        );
        let mut file = self.file.lock();
        let before = file
            .low_space_warning_percent
            .insert(pool.to_owned(), percent);
        let Some(path) = &self.path else {
            return Ok(());
        };
        write_file(path, &*file).map_err(|e| {
            match before {
                Some(b) => file.low_space_warning_percent.insert(pool.to_owned(), b),
                None => file.low_space_warning_percent.remove(pool),
            };
            Error::with_source(ErrorKind::Io, path.display().to_string(), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_set_survives_a_reload_and_others_keep_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pool-settings.json");
        let (s, e) = PoolSettings::load(Some(path.clone()), 10);
        assert!(e.is_none());
        s.set_low_space_warning_percent("a", 35).expect("set");
        let (s, e) = PoolSettings::load(Some(path.clone()), 12);
        assert!(e.is_none());
        assert_eq!(s.low_space_warning_percent("a"), 35);
        assert_eq!(s.low_space_warning_percent("b"), 12);
        std::fs::write(&path, b"{not json").expect("damage");
        let (s, e) = PoolSettings::load(Some(path.clone()), 12);
        assert!(e.is_some());
        assert_eq!(s.low_space_warning_percent("a"), 12);
        assert!(path.with_extension("json.damaged").exists());
    }
}
