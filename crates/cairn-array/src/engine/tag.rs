//! How Cairn's engine keeps a [`ReplicaRecord`]: in the engine `tag` of the replica volume, so it
//! is durable with the pool and moves with it. The layout is the one pools and jobs files
//! already carry; it must not change without a new version.
//!
//! A tag is [`TAG_BYTES`] bytes, little-endian, behind a magic and a version:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `CRNR` |
//! | 4 | version (1) |
//! | 5 | [`ReplicaKind`] code |
//! | 6..22 | source volume id |
//! | 22..30 | job id (0 = none) |
//! | 30..32 | SyncType |
//! | 32..34 | CopyType |
//! | 34..36 | CopyState |
//! | 36..38 | ProgressStatus |
//! | 38..40 | ReplicaType |
//!
//! Invariants: `decode(&encode(r)) == Some(r)`; any other byte string (an empty tag, a tag written
//! by another layer, a truncated one) decodes to `None` and never panics.

use crate::limits::REPLICA_RECORD_BYTES_MAX;
use crate::replica::{ReplicaKind, ReplicaRecord};
use crate::types::VolumeId;

const TAG_MAGIC: &[u8; 4] = b"CRNR";
const TAG_VERSION: u8 = 1;
/// Encoded size of a tag.
pub const TAG_BYTES: usize = 40;

const _: () = assert!(TAG_BYTES <= cairn_engine::limits::TAG_BYTES_MAX);
const _: () = assert!(TAG_BYTES <= REPLICA_RECORD_BYTES_MAX);

/// The tag bytes of `r`.
pub fn encode(r: &ReplicaRecord) -> Vec<u8> {
    let mut b = Vec::with_capacity(TAG_BYTES);
    b.extend_from_slice(TAG_MAGIC);
    b.push(TAG_VERSION);
    b.push(r.kind as u8);
    b.extend_from_slice(&r.source.0);
    b.extend_from_slice(&r.job.to_le_bytes());
    for v in [
        r.sync_type,
        r.copy_type,
        r.copy_state,
        r.progress_status,
        r.replica_type,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    debug_assert_eq!(b.len(), TAG_BYTES);
    b
}

/// The record in `bytes`, or `None` if they are not a Cairn replica tag of this version.
pub fn decode(bytes: &[u8]) -> Option<ReplicaRecord> {
    if bytes.len() != TAG_BYTES || &bytes[0..4] != TAG_MAGIC || bytes[4] != TAG_VERSION {
        return None;
    }
    let kind = ReplicaKind::from_code(bytes[5])?;
    let source = VolumeId(bytes[6..22].try_into().ok()?);
    let job = u64::from_le_bytes(bytes[22..30].try_into().ok()?);
    let u16_at = |i: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    Some(ReplicaRecord {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{SYNC_TYPE_CLONE, SYNC_TYPE_SNAPSHOT};

    #[test]
    fn round_trip_every_kind() {
        let src = VolumeId([7; 16]);
        for r in [
            ReplicaRecord::replica(src, SYNC_TYPE_SNAPSHOT, 0),
            ReplicaRecord::replica(src, SYNC_TYPE_CLONE, 9),
            ReplicaRecord::copy_target(src, SYNC_TYPE_CLONE, 3),
            ReplicaRecord::point_in_time(src, 3),
            ReplicaRecord::replica(src, SYNC_TYPE_SNAPSHOT, 1).detached(),
        ] {
            let bytes = encode(&r);
            assert_eq!(bytes.len(), TAG_BYTES);
            assert_eq!(decode(&bytes), Some(r));
        }
    }

    /// The bytes pools written before the backend existed carry: the layout is fixed.
    #[test]
    fn the_layout_is_the_one_on_disk() {
        let r = ReplicaRecord::copy_target(VolumeId([0x11; 16]), SYNC_TYPE_CLONE, 0x0102);
        let b = encode(&r);
        assert_eq!(&b[0..6], b"CRNR\x01\x02");
        assert_eq!(&b[6..22], &[0x11; 16]);
        assert_eq!(&b[22..30], &0x0102u64.to_le_bytes());
        assert_eq!(&b[30..40], &[8, 0, 4, 0, 2, 0, 6, 0, 2, 0]);
    }

    #[test]
    fn foreign_or_damaged_tags_decode_to_none() {
        let good = encode(&ReplicaRecord::replica(
            VolumeId([1; 16]),
            SYNC_TYPE_SNAPSHOT,
            0,
        ));
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&good[..TAG_BYTES - 1]), None);
        let mut bad_kind = good.clone();
        bad_kind[5] = 99;
        assert_eq!(decode(&bad_kind), None);
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert_eq!(decode(&bad_version), None);
        assert_eq!(decode(b"some other layer's tag bytes........!!!"), None);
    }
}
