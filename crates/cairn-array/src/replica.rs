//! The replica record a backend keeps with a replica volume: which volume it replicates, the
//! SMI-S relationship values (SyncType, CopyType, CopyState, ProgressStatus, ReplicaType) and the
//! copy job, if any. Kept with the volume itself, so it lives and dies with the volume and moves
//! with its pool; how it is stored is the backend's business (Cairn's engine: the volume tag).
//!
//! Invariant: the record is plain values; every backend stores and returns it unchanged.

use crate::types::VolumeId;

// SMI-S value maps used for replicas (DSP1045 CIM_StorageSynchronized).
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

/// What a volume with a replica record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaKind {
    /// A finished replica of `source`, in a relationship (StorageSynchronized).
    Replica = 1,
    /// The hidden target of a running copy into another pool (job `job`).
    CopyTarget = 2,
    /// The hidden internal snapshot fixing the point in time of copy job `job`.
    PointInTime = 3,
    /// A former replica whose relationship was detached or dissolved.
    Detached = 4,
}

impl ReplicaKind {
    /// The kind with code `b` (its `as u8` value).
    pub fn from_code(b: u8) -> Option<ReplicaKind> {
        Some(match b {
            1 => ReplicaKind::Replica,
            2 => ReplicaKind::CopyTarget,
            3 => ReplicaKind::PointInTime,
            4 => ReplicaKind::Detached,
            _ => return None,
        })
    }
}

/// The record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub kind: ReplicaKind,
    pub source: VolumeId,
    /// The copy job (0 = none).
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

impl ReplicaRecord {
    /// A finished replica of `source` made with `sync_type`.
    pub fn replica(source: VolumeId, sync_type: u16, job: u64) -> ReplicaRecord {
        ReplicaRecord {
            kind: ReplicaKind::Replica,
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
    pub fn copy_target(source: VolumeId, sync_type: u16, job: u64) -> ReplicaRecord {
        ReplicaRecord {
            kind: ReplicaKind::CopyTarget,
            copy_state: COPY_STATE_INITIALIZED,
            progress_status: PROGRESS_SYNCHRONIZING,
            ..ReplicaRecord::replica(source, sync_type, job)
        }
    }

    /// The internal point-in-time snapshot of copy job `job`.
    pub fn point_in_time(source: VolumeId, job: u64) -> ReplicaRecord {
        ReplicaRecord {
            kind: ReplicaKind::PointInTime,
            ..ReplicaRecord::replica(source, SYNC_TYPE_SNAPSHOT, job)
        }
    }

    /// This record with the relationship detached.
    pub fn detached(self) -> ReplicaRecord {
        ReplicaRecord {
            kind: ReplicaKind::Detached,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_types_follow_the_table() {
        assert_eq!(
            replica_type_of(SYNC_TYPE_SNAPSHOT),
            REPLICA_TYPE_BEFORE_DELTA
        );
        assert_eq!(replica_type_of(SYNC_TYPE_CLONE), REPLICA_TYPE_FULL_COPY);
        let t = ReplicaRecord::copy_target(VolumeId([2; 16]), SYNC_TYPE_SNAPSHOT, 1);
        assert_eq!((t.copy_state, t.progress_status), (2, 6));
        let r = ReplicaRecord::replica(VolumeId([2; 16]), SYNC_TYPE_SNAPSHOT, 1);
        assert_eq!((r.copy_state, r.progress_status, r.copy_type), (4, 2, 4));
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [
            ReplicaKind::Replica,
            ReplicaKind::CopyTarget,
            ReplicaKind::PointInTime,
            ReplicaKind::Detached,
        ] {
            assert_eq!(ReplicaKind::from_code(k as u8), Some(k));
        }
        assert_eq!(ReplicaKind::from_code(0), None);
        assert_eq!(ReplicaKind::from_code(5), None);
    }
}
