//! cairn-engine: Cairn's copy-on-write block snapshot engine.
//!
//! A [`Pool`] lives on one [`BlockDevice`] and holds thin volumes. Each volume maps virtual
//! blocks to physical extents through a copy-on-write B+tree; snapshots share the tree and
//! count references on shared blocks (Rodeh 2008), so a snapshot is O(1) and the first write to
//! a shared 4 KiB block allocates a fresh block and remaps it without copying old data, while a
//! block its volume owns exclusively (written since the volume's last share epoch) is overwritten
//! in place with no metadata change. Metadata
//! is never overwritten in place; a commit writes the new nodes, flushes, writes the alternate
//! superblock and flushes again, so reopening after a crash reads the superblocks and the volume
//! directory — nothing in proportion to the pool size or the mapped data. [`Storage`] groups the
//! pools of one daemon and is the only public way to change their volumes; the [`Registry`] under
//! it keeps volume names unique across every pool of the daemon, whatever its backend, and counts
//! the leases hosts hold.
//!
//! Every metadata block names its pool (UUID) and every pointer to one the generation that wrote
//! it, so a stale or foreign block with a valid checksum is refused as corrupt; a pool of an
//! older format version is upgraded when it is opened.
//!
//! The on-disk format is specified in `docs/format.md`; every limit is in [`limits`].

#![forbid(unsafe_code)]

mod btree;
mod cache;
mod check;
#[cfg(test)]
mod corruption_tests;
mod error;
mod format;
pub mod limits;
mod mapping;
mod meta;
mod node;
mod pool;
mod refcount;
pub mod registry;
mod space;
mod storage;
/// Field-level access to sealed metadata blocks for the structured fuzz target; not a stable API.
#[doc(hidden)]
pub mod test_support;
mod types;
mod undo;

pub use cairn_io::{BlockDevice, IoError, IoErrorKind};
pub use check::{
    check_device, check_device_with_progress, CheckPhase, CheckProgress, CheckReport, Finding,
    FindingKind, ProgressFn,
};
pub use error::{Error, ErrorKind, Result};
pub use pool::{validate_volume_name, Pool, SpaceReport};
pub use registry::{Lease, Registry};
pub use storage::Storage;
pub use types::{Extent, PoolInfo, PoolOptions, VolumeId, VolumeInfo, VolumeOptions};

/// Size of a block: the unit of allocation and sharing.
pub const BLOCK_SIZE: u64 = limits::BLOCK_SIZE_BYTES;
