//! Durable replica state, kept in the engine `tag` of the replica volume itself, so it lives and
//! dies with the volume (it survives restarts and pool moves, and needs no second store to agree
//! with).
//!
//! A tag is [`TAG_BYTES`] bytes, little-endian, behind a magic and a version:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `CRNR` |
//! | 4 | version (1) |
//! | 5 | [`TagKind`] |
//! | 6..22 | source volume id |
//! | 22..30 | job id (0 = none) |
//! | 30..32 | SyncType |
//! | 32..34 | CopyType |
//! | 34..36 | CopyState |
//! | 36..38 | ProgressStatus |
//! | 38..40 | ReplicaType |
//!
//! Invariants: `decode(encode(t)) == Some(t)`; any other byte string (an empty tag, a tag written by
//! another layer, a truncated one) decodes to `None` and never panics.

use cairn_engine::VolumeId;

const TAG_MAGIC: &[u8; 4] = b"CRNR";
const TAG_VERSION: u8 = 1;
/// Encoded size of a tag.
pub const TAG_BYTES: usize = 40;

// SMI-S value maps used for replicas (BRIEF §6).
pub const SYNC_TYPE_SNAPSHOT: u16 = 7;
pub const SYNC_TYPE_CLONE: u16 = 8;
pub const COPY_TYPE_UNSYNC_ASSOC: u16 = 4;
pub const COPY_STATE_INITIALIZED: u16 = 2;
pub const COPY_STATE_SYNCHRONIZED: u16 = 4;
pub const PROGRESS_COMPLETED: u16 = 2;
pub const PROGRESS_SYNCHRONIZING: u16 = 6;
pub const REPLICA_TYPE_FULL_COPY: u16 = 2;
pub const REPLICA_TYPE_BEFORE_DELTA: u16 = 3;
pub const MODE_ASYNC: u16 = 3;

/// What a tagged volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// A finished replica of `source`, in a relationship (StorageSynchronized).
    Replica = 1,
    /// The hidden target of a running cross-pool copy (job `job`).
    CopyTarget = 2,
    /// The hidden internal snapshot fixing the point in time of copy job `job`.
    PointInTime = 3,
    /// A former replica whose relationship was detached or dissolved.
    Detached = 4,
}

impl TagKind {
    fn from_u8(b: u8) -> Option<TagKind> {
        Some(match b {
            1 => TagKind::Replica,
            2 => TagKind::CopyTarget,
            3 => TagKind::PointInTime,
            4 => TagKind::Detached,
            _ => return None,
        })
    }
}

/// The decoded tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaTag {
    pub kind: TagKind,
    pub source: VolumeId,
    pub job: u64,
    pub sync_type: u16,
    pub copy_type: u16,
    pub copy_state: u16,
    pub progress_status: u16,
    pub replica_type: u16,
}

/// ReplicaType for a SyncType: a snapshot is "Before Delta", a clone a "Full Copy".
pub fn replica_type_of(sync_type: u16) -> u16 {
    if sync_type == SYNC_TYPE_CLONE {
        REPLICA_TYPE_FULL_COPY
    } else {
        REPLICA_TYPE_BEFORE_DELTA
    }
}

impl ReplicaTag {
    /// A finished replica of `source` made with `sync_type`.
    pub fn replica(source: VolumeId, sync_type: u16, job: u64) -> ReplicaTag {
        ReplicaTag {
            kind: TagKind::Replica,
            source,
            job,
            sync_type,
            copy_type: COPY_TYPE_UNSYNC_ASSOC,
            copy_state: COPY_STATE_SYNCHRONIZED,
            progress_status: PROGRESS_COMPLETED,
            replica_type: replica_type_of(sync_type),
        }
    }

    /// The target of copy job `job` while it runs.
    pub fn copy_target(source: VolumeId, sync_type: u16, job: u64) -> ReplicaTag {
        ReplicaTag {
            kind: TagKind::CopyTarget,
            copy_state: COPY_STATE_INITIALIZED,
            progress_status: PROGRESS_SYNCHRONIZING,
            ..ReplicaTag::replica(source, sync_type, job)
        }
    }

    /// The internal point-in-time snapshot of copy job `job`.
    pub fn point_in_time(source: VolumeId, job: u64) -> ReplicaTag {
        ReplicaTag {
            kind: TagKind::PointInTime,
            ..ReplicaTag::replica(source, SYNC_TYPE_SNAPSHOT, job)
        }
    }

    /// This tag with the relationship detached.
    pub fn detached(self) -> ReplicaTag {
        ReplicaTag {
            kind: TagKind::Detached,
            ..self
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(TAG_BYTES);
        b.extend_from_slice(TAG_MAGIC);
        b.push(TAG_VERSION);
        b.push(self.kind as u8);
        b.extend_from_slice(&self.source.0);
        b.extend_from_slice(&self.job.to_le_bytes());
        for v in [
            self.sync_type,
            self.copy_type,
            self.copy_state,
            self.progress_status,
            self.replica_type,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(b.len(), TAG_BYTES);
        b
    }

    /// The tag in `bytes`, or `None` if they are not a Cairn replica tag of this version.
    pub fn decode(bytes: &[u8]) -> Option<ReplicaTag> {
        if bytes.len() != TAG_BYTES || &bytes[0..4] != TAG_MAGIC || bytes[4] != TAG_VERSION {
            return None;
        }
        let kind = TagKind::from_u8(bytes[5])?;
        let source = VolumeId(bytes[6..22].try_into().ok()?);
        let job = u64::from_le_bytes(bytes[22..30].try_into().ok()?);
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
        };
        Some(ReplicaTag {
            kind,
            source,
            job,
            sync_type: u16_at(30)?,
            copy_type: u16_at(32)?,
            copy_state: u16_at(34)?,
            progress_status: u16_at(36)?,
            replica_type: u16_at(38)?,
        })
    }
}

const _: () = assert!(TAG_BYTES <= cairn_engine::limits::TAG_BYTES_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_kind() {
        let src = VolumeId([7; 16]);
        for t in [
            ReplicaTag::replica(src, SYNC_TYPE_SNAPSHOT, 0),
            ReplicaTag::replica(src, SYNC_TYPE_CLONE, 9),
            ReplicaTag::copy_target(src, SYNC_TYPE_CLONE, 3),
            ReplicaTag::point_in_time(src, 3),
            ReplicaTag::replica(src, SYNC_TYPE_SNAPSHOT, 1).detached(),
        ] {
            let bytes = t.encode();
            assert_eq!(bytes.len(), TAG_BYTES);
            assert_eq!(ReplicaTag::decode(&bytes), Some(t));
        }
    }

    #[test]
    fn foreign_or_damaged_tags_decode_to_none() {
        let good = ReplicaTag::replica(VolumeId([1; 16]), SYNC_TYPE_SNAPSHOT, 0).encode();
        assert_eq!(ReplicaTag::decode(&[]), None);
        assert_eq!(ReplicaTag::decode(&good[..TAG_BYTES - 1]), None);
        let mut bad_kind = good.clone();
        bad_kind[5] = 99;
        assert_eq!(ReplicaTag::decode(&bad_kind), None);
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert_eq!(ReplicaTag::decode(&bad_version), None);
        assert_eq!(
            ReplicaTag::decode(b"some other layer's tag bytes........!!!"),
            None
        );
    }

    #[test]
    fn replica_types_follow_the_table() {
        assert_eq!(
            replica_type_of(SYNC_TYPE_SNAPSHOT),
            REPLICA_TYPE_BEFORE_DELTA
        );
        assert_eq!(replica_type_of(SYNC_TYPE_CLONE), REPLICA_TYPE_FULL_COPY);
        let t = ReplicaTag::copy_target(VolumeId([2; 16]), SYNC_TYPE_SNAPSHOT, 1);
        assert_eq!((t.copy_state, t.progress_status), (2, 6));
        let r = ReplicaTag::replica(VolumeId([2; 16]), SYNC_TYPE_SNAPSHOT, 1);
        assert_eq!((r.copy_state, r.progress_status, r.copy_type), (4, 2, 4));
    }
}
