//! [`RbdArray`]: the array backend (`cairn_array::ArrayBackend`) over RBD pools, so the SMI-S
//! model serves them as it serves Cairn's own.
//!
//! Mapping: a RADOS pool is a pool (capacity from its stats, its byte quota and the cluster's
//! free space); a Cairn image is a volume (see [`crate::exports`] for names and ids, and
//! [`crate::meta`] for what its metadata holds: hidden flag, parent, creation time, replica
//! record); a same-pool snapshot or clone is an RBD snapshot plus a clone of it
//! ([`crate::manage`]). RBD volumes have 512-byte logical blocks whatever a create asks for.
//!
//! Invariants:
//! - A pool that is not connected (the cluster down or the pool missing) is still listed, with
//!   [`PoolHealth::LostCommunication`] and no volumes; calls about its volumes fail with `Failed`.
//! - Each pool's `volume_changes` is 0 until it connects, then 1 plus the number of changes made
//!   through this backend; every change sends its events and one `PoolChanged` before returning.
//! - Changes made around Cairn (Ceph's own tools) are not counted: the model sees them when it
//!   reads the volumes again (a later change event of the pool, or a restart).
//! - Restore is not supported (the replica is a clone that may have been written to; RBD's
//!   rollback brings back the snapshot, not the clone).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_array::copy::copy_reported;
use cairn_array::engine::tag;
use cairn_array::events::Listeners;
use cairn_array::{
    ArrayBackend, ChangeEvent, CopyControl, CopyEnd, Error as ArrayError, ErrorKind as ArrayKind,
    Listener, PoolHealth, PoolInfo, ReplicaRecord, Result as ArrayResult, SizeRules, Volume,
    VolumeData, VolumeId, VolumeSpec,
};

use crate::error::{Error, ErrorKind};
use crate::exports::{now_unix_secs, Found, RbdExports};
use crate::image::Image;
use crate::manage::{check_name, from_registry};
use crate::meta::Meta;
use crate::served::{BackgroundPool, PoolStatus};

/// Largest RBD volume Cairn makes (as Cairn's engine: 1 PiB).
pub const VOLUME_SIZE_BYTES_MAX: u64 = 1 << 50;

/// The one translation of a Ceph error into the array layer's terms.
fn to_array(e: Error) -> ArrayError {
    let kind = match e.kind() {
        ErrorKind::NotFound => ArrayKind::NotFound,
        ErrorKind::Exists => ArrayKind::AlreadyExists,
        ErrorKind::InUse => ArrayKind::InUse,
        ErrorKind::NoSpace => ArrayKind::NoSpace,
        ErrorKind::InvalidArgument => ArrayKind::InvalidArgument,
        _ => ArrayKind::Failed,
    };
    ArrayError::new(kind, e.to_string())
}

/// The array backend over the daemon's RBD pools.
pub struct RbdArray {
    pools: Vec<(Arc<BackgroundPool>, AtomicU64)>,
    listeners: Listeners,
}

/// One volume found: its pool's index, what it is, and its open image.
struct Held {
    at: usize,
    exports: Arc<RbdExports>,
    found: Found,
    image: Image,
}

impl RbdArray {
    /// The backend over `pools` (each connecting in the background).
    pub fn new(pools: Vec<Arc<BackgroundPool>>) -> RbdArray {
        RbdArray {
            pools: pools.into_iter().map(|p| (p, AtomicU64::new(0))).collect(),
            listeners: Listeners::default(),
        }
    }

    fn info(&self, at: usize) -> PoolInfo {
        let (pool, changes) = &self.pools[at];
        let name = pool.config().name.clone();
        let lost = |why: String| PoolInfo {
            name: name.clone(),
            size_bytes: 0,
            data_bytes_total: 0,
            data_bytes_free: 0,
            metadata_bytes_total: 0,
            volume_changes: 0,
            health: PoolHealth::LostCommunication(why),
        };
        let exports = match pool.available() {
            Ok(e) => e,
            Err(e) => return lost(e.to_string()),
        };
        let usage = match exports.pool.usage() {
            Ok(u) => u,
            Err(e) => return lost(e.to_string()),
        };
        let reachable = usage.used_bytes.saturating_add(usage.cluster_free_bytes);
        let total = usage.quota_bytes.map_or(reachable, |q| q.min(reachable));
        PoolInfo {
            name,
            size_bytes: total,
            data_bytes_total: total,
            data_bytes_free: total.saturating_sub(usage.used_bytes),
            metadata_bytes_total: 0,
            volume_changes: 1 + changes.load(Ordering::Acquire),
            health: PoolHealth::Ok,
        }
    }

    fn index_of(&self, pool: &str) -> Option<usize> {
        self.pools.iter().position(|(p, _)| p.config().name == pool)
    }

    fn connected(&self, at: usize) -> ArrayResult<Arc<RbdExports>> {
        self.pools[at]
            .0
            .available()
            .map_err(|e| ArrayError::new(ArrayKind::Failed, e.to_string()))
    }

    /// The volume `id`, in whichever connected pool holds it.
    fn held(&self, id: VolumeId) -> ArrayResult<Held> {
        for at in 0..self.pools.len() {
            if !matches!(self.pools[at].0.status(), PoolStatus::Available) {
                continue;
            }
            let exports = self.connected(at)?;
            if let Some((found, image)) = exports.find_id(&id.0).map_err(to_array)? {
                return Ok(Held {
                    at,
                    exports,
                    found,
                    image,
                });
            }
        }
        Err(ArrayError::new(ArrayKind::NotFound, format!("Volume {id}")))
    }

    fn volume_of(&self, at: usize, f: &Found) -> Volume {
        Volume {
            id: VolumeId(f.info.id),
            pool: self.pools[at].0.config().name.clone(),
            name: f.info.name.clone(),
            size_bytes: f.info.size_bytes,
            logical_block_size: f.info.logical_block_size,
            read_only: false,
            hidden: f.meta.hidden,
            parent: f.meta.parent.as_deref().and_then(|p| p.parse().ok()),
            created_unix_secs: f.meta.created_unix_secs,
            replica: f.meta.replica.as_deref().and_then(decode_record),
        }
    }

    /// Counts one change of pool `at` and reports `event` and the pool's new figures.
    fn changed(&self, at: usize, event: ChangeEvent) {
        self.pools[at].1.fetch_add(1, Ordering::AcqRel);
        self.listeners.notify(&event);
        self.listeners
            .notify(&ChangeEvent::PoolChanged(self.info(at)));
    }

    /// Reads `held` again after a change and reports it.
    fn report_change(&self, held: &Held) -> ArrayResult<Volume> {
        let (found, _) = held
            .exports
            .find_id(&held.found.info.id)
            .map_err(to_array)?
            .ok_or_else(|| ArrayError::new(ArrayKind::NotFound, "Volume gone"))?;
        let v = self.volume_of(held.at, &found);
        self.changed(held.at, ChangeEvent::VolumeChanged(v.clone()));
        Ok(v)
    }
}

/// A replica record as image metadata: the hex of the array layer's encoding.
fn encode_record(r: &ReplicaRecord) -> String {
    tag::encode(r).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_record(hex: &str) -> Option<ReplicaRecord> {
    let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    tag::decode(&bytes?)
}

/// Cairn's metadata for a new volume made as `spec` says.
fn meta_of(name: &str, spec: &VolumeSpec, parent: Option<VolumeId>) -> Meta {
    Meta {
        name: name.to_string(),
        hidden: spec.hidden,
        parent: parent.map(|p| p.to_string()),
        created_unix_secs: now_unix_secs(),
        replica: spec.replica.as_ref().map(encode_record),
        origin: None,
        deleted: false,
    }
}

fn check_size(size_bytes: u64) -> ArrayResult<()> {
    if size_bytes == 0 || size_bytes % 4096 != 0 || size_bytes > VOLUME_SIZE_BYTES_MAX {
        return Err(ArrayError::new(
            ArrayKind::InvalidArgument,
            format!("Volume size {size_bytes} (a non-zero multiple of 4096, at most 1 PiB)"),
        ));
    }
    Ok(())
}

impl ArrayBackend for RbdArray {
    fn size_rules(&self) -> SizeRules {
        SizeRules {
            granularity_bytes: 4096,
            max_bytes: VOLUME_SIZE_BYTES_MAX,
        }
    }

    fn pools(&self) -> Vec<PoolInfo> {
        (0..self.pools.len()).map(|at| self.info(at)).collect()
    }

    fn pool(&self, name: &str) -> Option<PoolInfo> {
        self.index_of(name).map(|at| self.info(at))
    }

    fn volumes(&self, pool: &str) -> Vec<Volume> {
        let Some(at) = self.index_of(pool) else {
            return Vec::new();
        };
        let Ok(exports) = self.connected(at) else {
            return Vec::new();
        };
        match exports.scan_all() {
            Ok(all) => all.iter().map(|f| self.volume_of(at, f)).collect(),
            Err(e) => {
                tracing::warn!(pool, error = %e, "cannot list the RBD pool's volumes");
                Vec::new()
            }
        }
    }

    fn volume(&self, id: VolumeId) -> Option<Volume> {
        let held = self.held(id).ok()?;
        Some(self.volume_of(held.at, &held.found))
    }

    fn volume_by_name(&self, name: &str) -> Option<Volume> {
        let id = self.pools.iter().find_map(|(p, _)| {
            let exports = p.available().ok()?;
            let (id, owner) = exports.registry().lookup(name)?;
            (*owner == *p.config().name).then_some(id)
        })?;
        self.volume(VolumeId(id))
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        spec: &VolumeSpec,
    ) -> ArrayResult<Volume> {
        let at = self
            .index_of(pool)
            .ok_or_else(|| ArrayError::new(ArrayKind::NotFound, format!("Pool {pool:?}")))?;
        check_name(name).map_err(to_array)?;
        check_size(size_bytes)?;
        let exports = self.connected(at)?;
        let claim = exports
            .registry()
            .reserve(name)
            .map_err(|e| to_array(from_registry(e)))?;
        let meta = meta_of(name, spec, None);
        let found = exports
            .make(&meta, |staged| {
                exports.pool.create_image(staged, size_bytes)
            })
            .map_err(to_array)?;
        claim.settle(found.info.id, &exports.owner);
        let v = self.volume_of(at, &found);
        self.changed(at, ChangeEvent::VolumeCreated(v.clone()));
        Ok(v)
    }

    fn snapshot(&self, source: VolumeId, name: &str, spec: &VolumeSpec) -> ArrayResult<Volume> {
        check_name(name).map_err(to_array)?;
        let held = self.held(source)?;
        let registry = held.exports.registry();
        let claim = registry
            .reserve(name)
            .map_err(|e| to_array(from_registry(e)))?;
        let meta = meta_of(name, spec, Some(source));
        let found = held
            .exports
            .snapshot_of(&held.found, &held.image, meta)
            .map_err(to_array)?;
        claim.settle(found.info.id, &held.exports.owner);
        let v = self.volume_of(held.at, &found);
        self.changed(held.at, ChangeEvent::VolumeCreated(v.clone()));
        Ok(v)
    }

    fn delete_volume(&self, id: VolumeId) -> ArrayResult<()> {
        let Held {
            at,
            exports,
            found,
            image,
        } = self.held(id)?;
        // Our own handle would count as a client holding the image open.
        drop(image);
        exports.delete_found(found).map_err(to_array)?;
        self.changed(at, ChangeEvent::VolumeDeleted(id));
        Ok(())
    }

    fn grow_volume(&self, id: VolumeId, size_bytes: u64) -> ArrayResult<Volume> {
        check_size(size_bytes)?;
        let held = self.held(id)?;
        if size_bytes < held.found.info.size_bytes {
            return Err(ArrayError::new(
                ArrayKind::InvalidArgument,
                format!("Volume {id} cannot shrink to {size_bytes}"),
            ));
        }
        held.image.resize(size_bytes).map_err(to_array)?;
        self.report_change(&held)
    }

    fn rename_volume(&self, id: VolumeId, name: &str) -> ArrayResult<Volume> {
        let held = self.held(id)?;
        held.exports
            .rename_found(&held.found, &held.image, name)
            .map_err(to_array)?;
        self.report_change(&held)
    }

    fn set_replica(&self, id: VolumeId, record: ReplicaRecord) -> ArrayResult<Volume> {
        let held = self.held(id)?;
        held.image
            .set_metadata(crate::meta::REPLICA_KEY, &encode_record(&record))
            .map_err(to_array)?;
        self.report_change(&held)
    }

    fn set_hidden(&self, id: VolumeId, hidden: bool) -> ArrayResult<Volume> {
        let held = self.held(id)?;
        let flag = if hidden { "1" } else { "0" };
        held.image
            .set_metadata(crate::meta::HIDDEN_KEY, flag)
            .map_err(to_array)?;
        self.report_change(&held)
    }

    fn restore(&self, volume: VolumeId, _from: VolumeId) -> ArrayResult<()> {
        Err(ArrayError::new(
            ArrayKind::NotSupported,
            format!("Restore of RBD volume {volume}"),
        ))
    }

    fn volume_data(&self, id: VolumeId) -> ArrayResult<Box<dyn VolumeData>> {
        let held = self.held(id)?;
        Ok(Box::new(RbdData {
            size_bytes: held.found.info.size_bytes,
            image: held.image,
        }))
    }

    /// Not told: librbd gives an image's used bytes through a diff walk of the image and of
    /// each of its snapshots (`rbd du`; cheap only with the object-map and fast-diff
    /// features), a walk per query that the bound on management cost (issue 9) rules out.
    fn space_consumed(&self, _id: VolumeId) -> ArrayResult<Option<u64>> {
        Ok(None)
    }

    fn copy_volume(
        &self,
        from: VolumeId,
        to: VolumeId,
        control: CopyControl<'_>,
    ) -> ArrayResult<CopyEnd> {
        let (source, target) = (self.volume_data(from)?, self.volume_data(to)?);
        copy_reported(
            (from, source.as_ref()),
            (to, target.as_ref()),
            &self.listeners,
            control,
        )
    }

    fn subscribe(&self, listener: Listener) -> ArrayResult<()> {
        self.listeners.subscribe(listener)
    }
}

/// One image's data, as the array layer's copy reads and writes it: mapped ranges from RBD's
/// diff iteration (a clone's parent data included), reads and writes through librbd.
struct RbdData {
    image: Image,
    size_bytes: u64,
}

impl VolumeData for RbdData {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn mapped(&self, at: u64, len: u64) -> ArrayResult<Vec<(u64, u64)>> {
        let all = self.image.allocated(at, len).map_err(to_array)?;
        Ok(all.into_iter().map(|e| (e.offset, e.len)).collect())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> ArrayResult<()> {
        self.image.read_at(offset, buf).map_err(to_array)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> ArrayResult<()> {
        self.image.write_at(offset, data).map_err(to_array)
    }

    fn flush(&self) -> ArrayResult<()> {
        self.image.flush().map_err(to_array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_array::replica::SYNC_TYPE_SNAPSHOT;

    #[test]
    fn replica_records_round_trip_through_metadata_text() {
        let r = ReplicaRecord::replica(VolumeId([7; 16]), SYNC_TYPE_SNAPSHOT, 3);
        assert_eq!(decode_record(&encode_record(&r)), Some(r));
        assert_eq!(decode_record("zz"), None);
        assert_eq!(decode_record(""), None);
    }
}
