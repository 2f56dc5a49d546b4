//! The engine pools of one daemon and the one public way to change their volumes: create,
//! snapshot (with its tag, in one commit), delete, grow, rename, flags, tags and restore all go
//! through [`Storage`], which keeps the daemon's [`Registry`] (names unique across every pool of
//! every backend, leases) exact.
//!
//! Lock order: the pool list, then the registry, each held only for a lookup or a map update;
//! neither is ever held while a pool commits, so a lookup, a lease or a change in one pool never
//! waits for another pool's commit. A name is reserved in the registry before the pool commits
//! and freed again if the commit fails (see [`crate::registry`]).

use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{err, ErrorKind, Result};
use crate::pool::Pool;
use crate::registry::{Lease, Registry};
use crate::types::{VolumeId, VolumeInfo, VolumeOptions};

/// The engine pools of one daemon, over its registry. Send + Sync.
pub struct Storage {
    /// Each pool with its name, kept here so that finding a pool never asks (and never waits
    /// for) a pool that is committing.
    pools: RwLock<Vec<(String, Arc<Pool>)>>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.pools.read().iter().map(|(n, _)| n.clone()).collect();
        f.debug_struct("Storage").field("pools", &names).finish()
    }
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::new()
    }
}

fn no_volume(id: VolumeId) -> crate::Error {
    err(ErrorKind::NotFound, format!("volume {id}"))
}

impl Storage {
    /// Storage with a registry of its own (no other backend beside it).
    pub fn new() -> Storage {
        Storage::with_registry(Registry::new())
    }

    /// Storage whose names and leases live in `registry`, shared with the daemon's other
    /// backends.
    pub fn with_registry(registry: Arc<Registry>) -> Storage {
        Storage {
            pools: RwLock::new(Vec::new()),
            registry,
        }
    }

    /// The registry this storage keeps its names and leases in.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Adds an open pool; `AlreadyExists` on a duplicate pool name or a volume name clash (then
    /// nothing of the pool is registered).
    pub fn add_pool(&self, pool: Arc<Pool>) -> Result<()> {
        let mut pools = self.pools.write();
        let name = pool.name();
        if pools.iter().any(|(n, _)| *n == name) {
            return Err(err(ErrorKind::AlreadyExists, format!("pool {name:?}")));
        }
        let volumes = pool.volumes();
        for (i, v) in volumes.iter().enumerate() {
            if let Err(e) = self.registry.insert(&v.name, v.id.0, &name) {
                for added in &volumes[..i] {
                    self.registry.remove(added.id.0);
                }
                return Err(e);
            }
        }
        pools.push((name, pool));
        Ok(())
    }

    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.read().iter().map(|(_, p)| p.clone()).collect()
    }

    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        let pools = self.pools.read();
        pools
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    fn pool_or_err(&self, name: &str) -> Result<Arc<Pool>> {
        self.pool(name)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("pool {name:?}")))
    }

    /// The volume named `name`, hidden ones included, with its pool.
    pub fn find_volume(&self, name: &str) -> Option<(Arc<Pool>, VolumeInfo)> {
        let (id, owner) = self.registry.lookup(name)?;
        let pool = self.pool(&owner)?;
        let v = pool.volume(VolumeId(id)).ok()?;
        Some((pool, v))
    }

    /// The volume `id` with its pool: only that pool is asked, so a commit in another pool
    /// does not hold the answer up.
    pub fn find_volume_by_id(&self, id: VolumeId) -> Option<(Arc<Pool>, VolumeInfo)> {
        let pool = self.pool(&self.registry.owner_of(id.0)?)?;
        let v = pool.volume(id).ok()?;
        Some((pool, v))
    }

    fn holder(&self, id: VolumeId) -> Result<(Arc<Pool>, VolumeInfo)> {
        self.find_volume_by_id(id).ok_or_else(|| no_volume(id))
    }

    /// Creates a thin volume in `pool` with the flags and tag of `opts`, in one commit.
    pub fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        opts: VolumeOptions,
    ) -> Result<(Arc<Pool>, VolumeInfo)> {
        let p = self.pool_or_err(pool)?;
        let claim = self.registry.reserve(name)?;
        let v = p.create_volume(name, size_bytes, opts)?;
        claim.settle(v.id.0, pool);
        Ok((p, v))
    }

    /// An O(1) snapshot (or clone) of `source` in its pool, created with the tag of `opts` in
    /// one commit: it is never seen without it, not even after a crash.
    pub fn snapshot(
        &self,
        source: VolumeId,
        name: &str,
        opts: VolumeOptions,
    ) -> Result<(Arc<Pool>, VolumeInfo)> {
        let (p, _) = self.holder(source)?;
        let claim = self.registry.reserve(name)?;
        let v = p.snapshot(source, name, opts)?;
        claim.settle(v.id.0, &p.name());
        Ok((p, v))
    }

    pub fn rename_volume(&self, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        let (p, cur) = self.holder(id)?;
        if cur.name == name {
            return p.rename_volume(id, name);
        }
        let claim = self.registry.reserve_rename(name, id.0)?;
        let v = p.rename_volume(id, name)?;
        claim.settle(id.0, &p.name());
        Ok(v)
    }

    /// Deletes a volume; `InUse` while a lease is held (and no lease is given meanwhile).
    pub fn delete_volume(&self, id: VolumeId) -> Result<()> {
        let (p, _) = self.holder(id)?;
        let _deleting = self.registry.begin_delete(id.0)?;
        p.delete_volume(id)?;
        self.registry.remove(id.0);
        Ok(())
    }

    /// Grows a volume to `size_bytes` (shrinking is refused).
    pub fn resize_volume(&self, id: VolumeId, size_bytes: u64) -> Result<VolumeInfo> {
        self.holder(id)?.0.resize_volume(id, size_bytes)
    }

    pub fn set_read_only(&self, id: VolumeId, read_only: bool) -> Result<VolumeInfo> {
        self.holder(id)?.0.set_read_only(id, read_only)
    }

    /// Hides a volume from hosts and default listings, or shows it again.
    pub fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<VolumeInfo> {
        self.holder(id)?.0.set_hidden(id, hidden)
    }

    /// Replaces a volume's tag (at most 256 bytes).
    pub fn set_tag(&self, id: VolumeId, tag: &[u8]) -> Result<VolumeInfo> {
        self.holder(id)?.0.set_tag(id, tag)
    }

    /// O(1): `volume` takes the contents and size of `snapshot`, a volume of the same pool.
    pub fn restore(&self, volume: VolumeId, snapshot: VolumeId) -> Result<()> {
        self.holder(volume)?.0.restore(volume, snapshot)
    }

    /// Counts a user of the volume until the lease is dropped; `InUse` while it is being
    /// deleted, `NotFound` if it does not exist.
    pub fn lease(&self, id: VolumeId) -> Result<Lease> {
        let lease = self.registry.lease(id.0)?;
        // Taken first, so a delete that has not begun yet is refused from now on.
        self.holder(id)?;
        Ok(lease)
    }

    pub fn users(&self, id: VolumeId) -> usize {
        self.registry.users(id.0)
    }

    /// Closes every pool; returns the first error.
    pub fn close(&self) -> Result<()> {
        let mut first = Ok(());
        for p in self.pools() {
            if let Err(e) = p.close() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}
