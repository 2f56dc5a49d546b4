//! [`EngineArray`]: the array backend over Cairn's engine (`cairn_engine::Storage`).
//!
//! Owns: the translation between engine and backend values and errors, the replica record kept
//! in the engine volume tag ([`tag`]), a volume's data for the array layer's copy ([`data`]), and the
//! change events of the changes made through it.
//!
//! Invariants: a volume is created or snapshotted with its replica record in one engine operation
//! and one commit (the record is the engine tag the new volume is created with), so no reader and
//! no crash ever sees it without; every change goes through `Storage`, which keeps the daemon's
//! names and leases; events are delivered after the engine operation returned (engine operations
//! commit before they return).
//!
//! Engine gap: the engine reports no changes of its own, so changes made on the `Storage`
//! directly (not through this backend) reach no listener; answers are always read from the
//! engine and never depend on events.

mod data;
pub mod tag;

use std::sync::Arc;

use cairn_engine::limits::VOLUME_SIZE_BYTES_MAX;
use cairn_engine::{Pool, Storage, VolumeInfo, VolumeOptions, BLOCK_SIZE};

use crate::copy::{copy_reported, VolumeData};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{ChangeEvent, Listener, Listeners};
use crate::replica::ReplicaRecord;
use crate::types::{CopyEnd, PoolCheck, PoolInfo, SizeRules, Volume, VolumeId, VolumeSpec};
use crate::{ArrayBackend, CopyControl};

/// The array backend over Cairn's engine.
#[derive(Debug)]
pub struct EngineArray {
    storage: Arc<Storage>,
    listeners: Listeners,
}

impl EngineArray {
    pub fn new(storage: Arc<Storage>) -> EngineArray {
        EngineArray {
            storage,
            listeners: Listeners::default(),
        }
    }

    /// The engine storage under this backend.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    fn holder(&self, id: VolumeId) -> Result<(Arc<Pool>, VolumeInfo)> {
        self.storage
            .find_volume_by_id(engine_id(id))
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("Volume {id}")))
    }

    /// Reports a volume made through this backend.
    fn created(&self, pool: &Pool, v: VolumeInfo) -> Volume {
        let v = volume_of(&pool.name(), v);
        self.changed(pool, ChangeEvent::VolumeCreated(v.clone()));
        v
    }

    /// Reports the new figures of `pool` after one engine change of its volumes: each engine
    /// change gets its own `PoolChanged`, so a listener can tell from `volume_changes` that no
    /// change went unreported. Returns the pool, for the next step.
    fn report_pool<'p>(&self, pool: &'p Pool) -> &'p Pool {
        self.listeners
            .notify(&ChangeEvent::PoolChanged(pool_of(pool.info())));
        pool
    }

    /// Reports `event` and the new figures of `pool`.
    fn changed(&self, pool: &Pool, event: ChangeEvent) {
        self.listeners.notify(&event);
        self.report_pool(pool);
    }

    fn changed_volume(&self, pool: &Pool, v: VolumeInfo) -> Volume {
        let v = volume_of(&pool.name(), v);
        self.changed(pool, ChangeEvent::VolumeChanged(v.clone()));
        v
    }
}

fn engine_id(id: VolumeId) -> cairn_engine::VolumeId {
    cairn_engine::VolumeId(id.0)
}

fn array_id(id: cairn_engine::VolumeId) -> VolumeId {
    VolumeId(id.0)
}

/// The backend error for an engine error: the same message, the kind the model tells apart.
fn from_engine(e: cairn_engine::Error) -> Error {
    use cairn_engine::ErrorKind as E;
    let kind = match e.kind() {
        E::NotFound => ErrorKind::NotFound,
        E::AlreadyExists => ErrorKind::AlreadyExists,
        E::InvalidArgument => ErrorKind::InvalidArgument,
        E::OutOfRange => ErrorKind::OutOfRange,
        E::NoSpace => ErrorKind::NoSpace,
        E::InUse => ErrorKind::InUse,
        E::ReadOnly => ErrorKind::ReadOnly,
        _ => ErrorKind::Failed,
    };
    Error::new(kind, e.to_string())
}

fn pool_of(i: cairn_engine::PoolInfo) -> PoolInfo {
    PoolInfo {
        name: i.name,
        size_bytes: i.size_bytes,
        data_bytes_total: i.data_bytes_total,
        data_bytes_free: i.data_bytes_free,
        metadata_bytes_total: i.metadata_bytes_total,
        volume_changes: i.volume_changes,
        health: match i.failed {
            None => crate::types::PoolHealth::Ok,
            Some(why) => crate::types::PoolHealth::Failed(why),
        },
    }
}

fn volume_of(pool: &str, v: VolumeInfo) -> Volume {
    Volume {
        id: array_id(v.id),
        pool: pool.to_owned(),
        replica: tag::decode(&v.tag),
        name: v.name,
        size_bytes: v.size_bytes,
        logical_block_size: v.logical_block_size,
        read_only: v.read_only,
        hidden: v.hidden,
        parent: v.parent.map(array_id),
        created_unix_secs: v.created_unix_secs,
    }
}

/// The engine options of `spec`: its replica record becomes the tag the engine stores with the
/// new volume in the commit that creates it.
fn options_of(spec: &VolumeSpec) -> VolumeOptions {
    VolumeOptions {
        logical_block_size: spec.logical_block_size,
        read_only: spec.read_only,
        hidden: spec.hidden,
        tag: spec.replica.as_ref().map(tag::encode).unwrap_or_default(),
    }
}

impl ArrayBackend for EngineArray {
    fn size_rules(&self) -> SizeRules {
        SizeRules {
            granularity_bytes: BLOCK_SIZE,
            max_bytes: VOLUME_SIZE_BYTES_MAX,
        }
    }

    fn pools(&self) -> Vec<PoolInfo> {
        self.storage
            .pools()
            .into_iter()
            .map(|p| pool_of(p.info()))
            .collect()
    }

    fn pool(&self, name: &str) -> Option<PoolInfo> {
        self.storage.pool(name).map(|p| pool_of(p.info()))
    }

    fn volumes(&self, pool: &str) -> Vec<Volume> {
        let Some(p) = self.storage.pool(pool) else {
            return Vec::new();
        };
        let name = p.name();
        p.volumes()
            .into_iter()
            .map(|v| volume_of(&name, v))
            .collect()
    }

    fn volume(&self, id: VolumeId) -> Option<Volume> {
        let (p, v) = self.holder(id).ok()?;
        Some(volume_of(&p.name(), v))
    }

    fn volume_by_name(&self, name: &str) -> Option<Volume> {
        let (p, v) = self.storage.find_volume(name)?;
        Some(volume_of(&p.name(), v))
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        spec: &VolumeSpec,
    ) -> Result<Volume> {
        let (p, v) = self
            .storage
            .create_volume(pool, name, size_bytes, options_of(spec))
            .map_err(from_engine)?;
        Ok(self.created(&p, v))
    }

    fn snapshot(&self, source: VolumeId, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        let (p, v) = self
            .storage
            .snapshot(engine_id(source), name, options_of(spec))
            .map_err(from_engine)?;
        Ok(self.created(&p, v))
    }

    fn delete_volume(&self, id: VolumeId) -> Result<()> {
        let (p, _) = self.holder(id)?;
        self.storage
            .delete_volume(engine_id(id))
            .map_err(from_engine)?;
        self.changed(&p, ChangeEvent::VolumeDeleted(id));
        Ok(())
    }

    fn grow_volume(&self, id: VolumeId, size_bytes: u64) -> Result<Volume> {
        let (p, _) = self.holder(id)?;
        let v = self
            .storage
            .resize_volume(engine_id(id), size_bytes)
            .map_err(from_engine)?;
        Ok(self.changed_volume(&p, v))
    }

    fn rename_volume(&self, id: VolumeId, name: &str) -> Result<Volume> {
        let (p, _) = self.holder(id)?;
        let v = self
            .storage
            .rename_volume(engine_id(id), name)
            .map_err(from_engine)?;
        Ok(self.changed_volume(&p, v))
    }

    fn set_replica(&self, id: VolumeId, record: ReplicaRecord) -> Result<Volume> {
        let (p, _) = self.holder(id)?;
        let v = self
            .storage
            .set_tag(engine_id(id), &tag::encode(&record))
            .map_err(from_engine)?;
        Ok(self.changed_volume(&p, v))
    }

    fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<Volume> {
        let (p, _) = self.holder(id)?;
        let v = self
            .storage
            .set_hidden(engine_id(id), hidden)
            .map_err(from_engine)?;
        Ok(self.changed_volume(&p, v))
    }

    fn restore(&self, volume: VolumeId, from: VolumeId) -> Result<()> {
        let (p, _) = self.holder(volume)?;
        self.storage
            .restore(engine_id(volume), engine_id(from))
            .map_err(from_engine)?;
        let v = p.volume(engine_id(volume)).map_err(from_engine)?;
        self.changed_volume(&p, v);
        Ok(())
    }

    fn volume_data(&self, id: VolumeId) -> Result<Box<dyn VolumeData>> {
        let (pool, v) = self.holder(id)?;
        Ok(Box::new(data::EngineData {
            pool,
            id: v.id,
            size_bytes: v.size_bytes,
        }))
    }

    fn space_consumed(&self, id: VolumeId) -> Result<Option<u64>> {
        let (pool, _) = self.holder(id)?;
        pool.space_consumed(engine_id(id))
            .map(Some)
            .map_err(from_engine)
    }

    fn copy_volume(
        &self,
        from: VolumeId,
        to: VolumeId,
        control: CopyControl<'_>,
    ) -> Result<CopyEnd> {
        let (source, target) = (self.volume_data(from)?, self.volume_data(to)?);
        copy_reported(
            (from, source.as_ref()),
            (to, target.as_ref()),
            &self.listeners,
            control,
        )
    }

    fn subscribe(&self, listener: Listener) -> Result<()> {
        self.listeners.subscribe(listener)
    }

    /// The engine's online check of the pool's last commit (`Pool::check`).
    fn check_pool(&self, pool: &str) -> Result<PoolCheck> {
        let p = self
            .storage
            .pool(pool)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("Pool {pool:?}")))?;
        let report = p.check().map_err(from_engine)?;
        Ok(PoolCheck {
            generation: report.generation,
            volumes: report.volumes as u64,
            blocks_in_use: report.blocks_in_use,
            findings: report.findings.iter().map(ToString::to_string).collect(),
        })
    }
}
