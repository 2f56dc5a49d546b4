//! Plain public value types of the engine API: identities, options and reports.
//!
//! `VolumeId` is a stable 128-bit identity, never reused; its text form is 32 lowercase hex
//! digits.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{err, Error, ErrorKind};

/// Stable 128-bit volume identity, never reused. Display/FromStr: 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VolumeId(pub [u8; 16]);

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for VolumeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<VolumeId, Error> {
        let bad = || err(ErrorKind::InvalidArgument, format!("volume id {s:?}"));
        if s.len() != 32 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(VolumeId(id))
    }
}

/// Options of an open pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Commit while dirty at this interval; `None` commits only on flush and volume operations.
    pub commit_interval: Option<Duration>,
    /// Bytes of clean metadata nodes kept in memory.
    pub node_cache_bytes: usize,
    /// Preallocate the whole device (a pool file) at create, open and grow, and never punch
    /// freed space out of it. Without it (the default) a pool file stays sparse: it is
    /// preallocated a chunk at a time ahead of the allocator, and wholly free chunks are given
    /// back to the host.
    pub preallocate: bool,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            commit_interval: Some(Duration::from_secs(1)),
            node_cache_bytes: 64 << 20,
            preallocate: false,
        }
    }
}

/// Options of a new volume or snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeOptions {
    /// 512 or 4096.
    pub logical_block_size: u32,
    pub read_only: bool,
    /// Internal volumes: not exported, not listed by default UIs.
    pub hidden: bool,
    /// Opaque bytes (at most 256) for upper layers, stored with the new record in the commit
    /// that creates it, so the volume is never seen without them.
    pub tag: Vec<u8>,
}

impl Default for VolumeOptions {
    fn default() -> VolumeOptions {
        VolumeOptions {
            logical_block_size: 4096,
            read_only: false,
            hidden: false,
            tag: Vec::new(),
        }
    }
}

/// A volume as callers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: VolumeId,
    pub name: String,
    pub size_bytes: u64,
    pub logical_block_size: u32,
    pub read_only: bool,
    pub hidden: bool,
    /// The volume it was snapshotted from (None for a plain volume).
    pub parent: Option<VolumeId>,
    pub created_unix_secs: u64,
    /// Opaque bytes (at most 256) kept durably for upper layers.
    pub tag: Vec<u8>,
}

/// Pool figures. `metadata_bytes_total` is the metadata reserve; metadata may grow beyond it
/// into free space, and `metadata_bytes_used` counts every metadata block.
#[derive(Clone, Debug)]
pub struct PoolInfo {
    pub name: String,
    pub uuid: [u8; 16],
    pub size_bytes: u64,
    pub data_bytes_total: u64,
    pub data_bytes_used: u64,
    pub data_bytes_free: u64,
    pub metadata_bytes_total: u64,
    pub metadata_bytes_used: u64,
    pub volume_count: usize,
    /// Changes made to the pool's live volumes (created, deleted, resized, renamed, tagged,
    /// hidden or shown, restored) since it was opened, counted from a value no other opening in
    /// this process starts from: an unchanged count means an unchanged volume directory.
    pub volume_changes: u64,
    /// Last durable commit.
    pub generation: u64,
    /// Deleted volumes whose space is still being reclaimed.
    pub reclaim_pending: bool,
    /// Deleted volumes whose reclaim failed on a bad metadata block: their space stays
    /// allocated and is lost until the pool is repaired; `check` lists them.
    pub quarantined_volumes: usize,
    /// Why the pool has failed (a failed metadata write or flush): every later call answers
    /// `PoolFailed` until it is reopened. `None` while it is healthy.
    pub failed: Option<String>,
}

/// One run of a volume's address space: `mapped == false` reads as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub mapped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_id_text_round_trip() {
        let id = VolumeId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s, "abababababababababababababababab");
        assert_eq!(s.parse::<VolumeId>().unwrap(), id);
        assert!("ABABABABABABABABABABABABABABABAB"
            .parse::<VolumeId>()
            .is_err());
        assert!("abc".parse::<VolumeId>().is_err());
    }
}
