//! The plain values of the backend API: identities, pools, volumes, options and copy progress.
//!
//! `VolumeId` is a stable 128-bit identity, never reused within an array; its text form is 32
//! lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};
use crate::replica::ReplicaRecord;

/// Stable 128-bit volume identity. Display/FromStr: 32 lowercase hex digits.
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
        let bad = || Error::new(ErrorKind::InvalidArgument, format!("Volume id {s:?}"));
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

/// A pool and its capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    /// Unique across the array.
    pub name: String,
    /// Size of the device or object store behind the pool.
    pub size_bytes: u64,
    /// Space for volume data, and how much of it is free.
    pub data_bytes_total: u64,
    pub data_bytes_free: u64,
    /// Space reserved for metadata.
    pub metadata_bytes_total: u64,
    /// A count that changes whenever a volume of the pool is created, deleted or changed, by
    /// whatever means (through this backend or around it): equal counts mean the same volumes.
    pub volume_changes: u64,
    /// Whether the backend reaches the pool now.
    pub health: PoolHealth,
}

/// Whether a backend reaches a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolHealth {
    /// Reached: its figures and volumes are current.
    Ok,
    /// Not reached (a cluster down, a pool missing), with the reason: its figures are zero and
    /// its volumes are not listed until it is reached again.
    LostCommunication(String),
    /// Reached but failed (Cairn's engine after a failed metadata write or flush), with the
    /// reason: every change is refused until the pool is reopened.
    Failed(String),
}

/// A volume or snapshot as the management layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub id: VolumeId,
    /// The pool that holds it.
    pub pool: String,
    /// Unique across the array.
    pub name: String,
    pub size_bytes: u64,
    /// 512 or 4096.
    pub logical_block_size: u32,
    pub read_only: bool,
    /// Internal volumes: not exported to hosts.
    pub hidden: bool,
    /// The volume it was snapshotted from, if any.
    pub parent: Option<VolumeId>,
    pub created_unix_secs: u64,
    /// The replica record stored with the volume, if it has one the backend can read.
    pub replica: Option<ReplicaRecord>,
}

/// How a new volume or snapshot is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// 512 or 4096 (a snapshot keeps its source's).
    pub logical_block_size: u32,
    pub read_only: bool,
    pub hidden: bool,
    /// Stored with the new volume; the volume is not left behind without it.
    pub replica: Option<ReplicaRecord>,
}

impl Default for VolumeSpec {
    fn default() -> VolumeSpec {
        VolumeSpec {
            logical_block_size: 4096,
            read_only: false,
            hidden: false,
            replica: None,
        }
    }
}

/// The sizes a backend can give a volume: multiples of `granularity_bytes`, at most `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeRules {
    pub granularity_bytes: u64,
    pub max_bytes: u64,
}

/// What a consistency check of one pool found ([`crate::ArrayBackend::check_pool`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolCheck {
    /// The generation (commit) checked.
    pub generation: u64,
    /// Volumes, snapshots and deleted volumes pending reclaim walked.
    pub volumes: u64,
    /// Blocks referenced by metadata or data.
    pub blocks_in_use: u64,
    /// One line per finding (kind, block, tree path, detail); empty for a clean pool.
    pub findings: Vec<String>,
}

/// How far a copy has come: asked before the first step and after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyProgress {
    /// Bytes written to the target so far.
    pub copied_bytes: u64,
}

/// How a copy ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// Every mapped byte is in the target and the target is durable.
    Completed,
    /// The caller's control asked to stop; the target holds part of the data.
    Stopped,
}
