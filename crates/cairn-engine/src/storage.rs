//! The pools of one daemon: a registry keeping volume names unique across all of them, and
//! leases that count a volume's users (e.g. NBD connections) so it cannot be deleted under them.
//!
//! Lock order: the registry lock, then a pool's lock; a pool never takes the registry lock.
//!
//! Names are looked up in each pool's name index (O(1) per pool, a daemon holds a handful of
//! pools), never by listing volumes: the pools are the one source of truth for names, so no
//! second index can go stale when a pool is changed directly.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{err, ErrorKind, Result};
use crate::pool::Pool;
use crate::types::{VolumeId, VolumeInfo, VolumeOptions};

#[derive(Default)]
struct Registry {
    pools: Vec<Arc<Pool>>,
    leases: HashMap<VolumeId, usize>,
}

/// The pools of one daemon; volume names unique across all of them. Send + Sync.
pub struct Storage {
    reg: Arc<Mutex<Registry>>,
}

/// A counted use of a volume; dropping it releases the use. Send + Sync.
pub struct Lease {
    reg: Arc<Mutex<Registry>>,
    id: VolumeId,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reg = self.reg.lock();
        f.debug_struct("Storage")
            .field(
                "pools",
                &reg.pools.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("leases", &reg.leases)
            .finish()
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("volume", &self.id).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut reg = self.reg.lock();
        if let Some(n) = reg.leases.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                reg.leases.remove(&self.id);
            }
        }
    }
}

impl Lease {
    /// The volume this lease holds.
    pub fn volume(&self) -> VolumeId {
        self.id
    }
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::new()
    }
}

fn name_taken(reg: &Registry, name: &str) -> bool {
    reg.pools.iter().any(|p| p.has_volume_named(name))
}

fn clash(name: &str) -> crate::error::Error {
    err(ErrorKind::AlreadyExists, format!("volume name {name:?}"))
}

fn holder(reg: &Registry, id: VolumeId) -> Option<(Arc<Pool>, VolumeInfo)> {
    reg.pools
        .iter()
        .find_map(|p| p.volume(id).ok().map(|v| (p.clone(), v)))
}

impl Storage {
    pub fn new() -> Storage {
        Storage {
            reg: Arc::new(Mutex::new(Registry::default())),
        }
    }

    /// Adds an open pool; `AlreadyExists` on a duplicate pool name or a volume name clash.
    pub fn add_pool(&self, pool: Arc<Pool>) -> Result<()> {
        let mut reg = self.reg.lock();
        let name = pool.name();
        if reg.pools.iter().any(|p| p.name() == name) {
            return Err(err(ErrorKind::AlreadyExists, format!("pool {name:?}")));
        }
        for v in pool.volumes() {
            if name_taken(&reg, &v.name) {
                return Err(clash(&v.name));
            }
        }
        reg.pools.push(pool);
        debug_assert!(
            reg.pools.iter().filter(|p| p.name() == name).count() == 1,
            "pool names unique"
        );
        Ok(())
    }

    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.reg.lock().pools.clone()
    }

    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.reg
            .lock()
            .pools
            .iter()
            .find(|p| p.name() == name)
            .cloned()
    }

    pub fn find_volume(&self, name: &str) -> Option<(Arc<Pool>, VolumeInfo)> {
        let reg = self.reg.lock();
        reg.pools
            .iter()
            .find_map(|p| p.volume_by_name(name).map(|v| (p.clone(), v)))
    }

    pub fn find_volume_by_id(&self, id: VolumeId) -> Option<(Arc<Pool>, VolumeInfo)> {
        holder(&self.reg.lock(), id)
    }

    pub fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        opts: VolumeOptions,
    ) -> Result<(Arc<Pool>, VolumeInfo)> {
        let reg = self.reg.lock();
        let p = reg
            .pools
            .iter()
            .find(|p| p.name() == pool)
            .cloned()
            .ok_or_else(|| err(ErrorKind::NotFound, format!("pool {pool:?}")))?;
        if name_taken(&reg, name) {
            return Err(clash(name));
        }
        let v = p.create_volume(name, size_bytes, opts)?;
        debug_assert_eq!(
            reg.pools
                .iter()
                .filter(|q| q.has_volume_named(name))
                .count(),
            1,
            "volume names unique across pools"
        );
        Ok((p, v))
    }

    pub fn snapshot(
        &self,
        source: VolumeId,
        name: &str,
        opts: VolumeOptions,
    ) -> Result<(Arc<Pool>, VolumeInfo)> {
        let reg = self.reg.lock();
        let (p, _) = holder(&reg, source)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("volume {source}")))?;
        if name_taken(&reg, name) {
            return Err(clash(name));
        }
        let v = p.snapshot(source, name, opts)?;
        debug_assert_eq!(
            reg.pools
                .iter()
                .filter(|q| q.has_volume_named(name))
                .count(),
            1,
            "volume names unique across pools"
        );
        Ok((p, v))
    }

    pub fn rename_volume(&self, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        let reg = self.reg.lock();
        let (p, cur) =
            holder(&reg, id).ok_or_else(|| err(ErrorKind::NotFound, format!("volume {id}")))?;
        if cur.name != name && name_taken(&reg, name) {
            return Err(clash(name));
        }
        p.rename_volume(id, name)
    }

    /// Deletes a volume; `InUse` while a lease is held.
    pub fn delete_volume(&self, id: VolumeId) -> Result<()> {
        let reg = self.reg.lock();
        if reg.leases.get(&id).copied().unwrap_or(0) > 0 {
            return Err(err(ErrorKind::InUse, format!("volume {id}")));
        }
        let (p, _) =
            holder(&reg, id).ok_or_else(|| err(ErrorKind::NotFound, format!("volume {id}")))?;
        p.delete_volume(id)
    }

    /// Counts a user of the volume until the lease is dropped.
    pub fn lease(&self, id: VolumeId) -> Result<Lease> {
        let mut reg = self.reg.lock();
        if holder(&reg, id).is_none() {
            return Err(err(ErrorKind::NotFound, format!("volume {id}")));
        }
        *reg.leases.entry(id).or_insert(0) += 1;
        Ok(Lease {
            reg: self.reg.clone(),
            id,
        })
    }

    pub fn users(&self, id: VolumeId) -> usize {
        self.reg.lock().leases.get(&id).copied().unwrap_or(0)
    }

    /// Closes every pool; returns the first error.
    pub fn close(&self) -> Result<()> {
        let pools = self.pools();
        let mut first = Ok(());
        for p in pools {
            if let Err(e) = p.close() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}
