//! cairn-array: the array as the management plane sees it — pools with their capacity, volumes
//! and snapshots with their replica records, the operations SMI-S methods perform on them, a copy
//! into another pool (one mapped-extent loop, [`copy`], for every pair of backends), and the
//! change events an index above it follows.
//!
//! [`ArrayBackend`] is the seam: the SMI-S model and methods (`cairn-smis`) are written against it
//! alone, so a second backend (Ceph RBD) needs no change there. [`engine::EngineArray`] is the
//! first implementation, over Cairn's own engine (`cairn_engine::Storage`); Ceph RBD pools have
//! theirs in `cairn-rbd`, and [`combined::Combined`] serves several backends side by side.
//!
//! Invariants every backend keeps:
//! - volume names are unique across the whole array, whatever pool holds them;
//! - an operation that fails leaves nothing behind (a volume created with a replica record is
//!   never left without it);
//! - every answer reflects the array at the time of the call (no cached copy);
//! - each change made through the backend is reported to its listeners ([`events`]) before the
//!   call returns.
#![forbid(unsafe_code)]

pub mod combined;
pub mod copy;
pub mod engine;
mod error;
pub mod events;
pub mod limits;
pub mod replica;
pub mod suite;
mod types;

use std::ops::ControlFlow;
use std::sync::Arc;

pub use copy::VolumeData;
pub use error::{Error, ErrorKind, Result};
pub use events::{ChangeEvent, Listener};
pub use replica::{ReplicaKind, ReplicaRecord};
pub use types::{
    CopyEnd, CopyProgress, PoolCheck, PoolHealth, PoolInfo, SizeRules, Volume, VolumeId, VolumeSpec,
};

/// What the copy's caller decides at each step: go on or stop.
pub type CopyControl<'a> = &'a mut dyn FnMut(CopyProgress) -> ControlFlow<()>;

/// An array: pools and the volumes in them.
pub trait ArrayBackend: Send + Sync {
    /// The sizes a volume can have.
    fn size_rules(&self) -> SizeRules;

    /// Every pool, in a stable order.
    fn pools(&self) -> Vec<PoolInfo>;

    /// The pool named `name`.
    fn pool(&self, name: &str) -> Option<PoolInfo>;

    /// Every volume of pool `pool`, hidden ones included (none if there is no such pool).
    fn volumes(&self, pool: &str) -> Vec<Volume>;

    /// The volume `id`, in whichever pool holds it.
    fn volume(&self, id: VolumeId) -> Option<Volume>;

    /// The volume named `name`.
    fn volume_by_name(&self, name: &str) -> Option<Volume>;

    /// Creates a thin volume of `size_bytes` in `pool`.
    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        spec: &VolumeSpec,
    ) -> Result<Volume>;

    /// A point-in-time replica of `source` in the source's pool: a snapshot, or a clone with a
    /// lifecycle of its own (the record's SyncType says which; Cairn's engine makes both as an
    /// O(1) snapshot). `spec.logical_block_size` is ignored: a replica keeps its source's.
    fn snapshot(&self, source: VolumeId, name: &str, spec: &VolumeSpec) -> Result<Volume>;

    /// Deletes a volume; `InUse` while hosts hold it.
    fn delete_volume(&self, id: VolumeId) -> Result<()>;

    /// Grows a volume to `size_bytes` (never shrinks).
    fn grow_volume(&self, id: VolumeId, size_bytes: u64) -> Result<Volume>;

    /// Renames a volume.
    fn rename_volume(&self, id: VolumeId, name: &str) -> Result<Volume>;

    /// Replaces the replica record of a volume.
    fn set_replica(&self, id: VolumeId, record: ReplicaRecord) -> Result<Volume>;

    /// Hides a volume from hosts, or shows it again.
    fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<Volume>;

    /// Gives `volume` the contents of `from`, a snapshot of it in the same pool.
    fn restore(&self, volume: VolumeId, from: VolumeId) -> Result<()>;

    /// The data of volume `id`, for a copy to read or write.
    fn volume_data(&self, id: VolumeId) -> Result<Box<dyn VolumeData>>;

    /// Bytes of `id` that hold data (what a copy of it transfers).
    fn mapped_bytes(&self, id: VolumeId) -> Result<u64> {
        copy::mapped_bytes(self.volume_data(id)?.as_ref())
    }

    /// The data bytes volume `id` is charged for (Thin Provisioning's SpaceConsumed), or `None`
    /// when the backend does not tell. A backend that tells charges every data byte its pool
    /// holds for volumes to exactly one of them: what one volume holds alone is its own, what
    /// volumes share is charged once (Cairn's engine: to the oldest live volume of the family
    /// sharing it), so a pool's charges add up to the data its volumes take.
    fn space_consumed(&self, id: VolumeId) -> Result<Option<u64>>;

    /// Copies the data of `from` into `to` (same size, usually in another pool), only the mapped
    /// ranges, asking `control` before the first step and after every step. On `Completed` the
    /// target is durable. Every backend runs [`copy::copy_reported`] over its [`VolumeData`].
    fn copy_volume(
        &self,
        from: VolumeId,
        to: VolumeId,
        control: CopyControl<'_>,
    ) -> Result<CopyEnd>;

    /// Subscribes `listener` to the change events of this backend.
    fn subscribe(&self, listener: Listener) -> Result<()>;

    /// Checks the consistency of pool `pool` online (while its volumes stay in use) and returns
    /// what the check found; `Failed` when the check could not run. Default: `NotSupported`, for
    /// a backend whose store keeps its own consistency (Ceph RBD: RADOS scrubs its objects).
    fn check_pool(&self, pool: &str) -> Result<PoolCheck> {
        Err(Error::new(
            ErrorKind::NotSupported,
            format!("Pool {pool:?} has no consistency check of Cairn's"),
        ))
    }
}

/// Something that can serve as an array backend: a backend itself, or Cairn's engine storage
/// (which becomes an [`engine::EngineArray`]).
pub trait IntoBackend {
    fn into_backend(self) -> Arc<dyn ArrayBackend>;
}

impl IntoBackend for Arc<dyn ArrayBackend> {
    fn into_backend(self) -> Arc<dyn ArrayBackend> {
        self
    }
}

impl IntoBackend for Arc<cairn_engine::Storage> {
    fn into_backend(self) -> Arc<dyn ArrayBackend> {
        Arc::new(engine::EngineArray::new(self))
    }
}
