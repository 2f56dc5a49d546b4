//! [`Exports`] for the real engine: one export per non-hidden volume or snapshot of a
//! `cairn_engine::Storage`, named after the volume.
//!
//! Invariants: an opened export holds a `Lease` on its volume (so it cannot be deleted under a
//! connection) for as long as the connection lives; engine errors are translated into
//! [`VolumeErrorKind`] here and nowhere else.

use std::sync::Arc;

use cairn_engine::{ErrorKind, Lease, Pool, Storage, VolumeId, VolumeInfo};

use crate::error::Result;
use crate::exports::{Exports, Run, Volume, VolumeError, VolumeErrorKind, VolumeResult};
use crate::handshake::ExportInfo;
use crate::server::{start_exports, NbdServerConfig, NbdServerHandle};

/// Serves every non-hidden volume of `storage` as an NBD export named after the volume.
pub async fn start(cfg: NbdServerConfig, storage: Arc<Storage>) -> Result<NbdServerHandle> {
    start_exports(cfg, storage).await
}

fn export_info(v: &VolumeInfo) -> ExportInfo {
    ExportInfo {
        name: v.name.clone(),
        size_bytes: v.size_bytes,
        read_only: v.read_only,
        block_size_min_bytes: v.logical_block_size,
    }
}

impl Exports for Storage {
    fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pools()
            .iter()
            .flat_map(|pool| pool.volumes())
            .filter(|v| !v.hidden)
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    }

    fn info(&self, name: &str) -> Option<ExportInfo> {
        let (_, v) = self.find_volume(name)?;
        (!v.hidden).then(|| export_info(&v))
    }

    fn open(&self, name: &str) -> Option<(ExportInfo, Arc<dyn Volume>)> {
        let (pool, v) = self.find_volume(name)?;
        if v.hidden {
            return None;
        }
        let lease = self.lease(v.id).ok()?;
        let volume: Arc<dyn Volume> = Arc::new(EngineVolume {
            pool,
            id: v.id,
            _lease: lease,
        });
        Some((export_info(&v), volume))
    }
}

/// A volume opened by one NBD connection.
struct EngineVolume {
    pool: Arc<Pool>,
    id: VolumeId,
    _lease: Lease,
}

fn map_err(e: cairn_engine::Error) -> VolumeError {
    let kind = match e.kind() {
        ErrorKind::NoSpace => VolumeErrorKind::NoSpace,
        ErrorKind::ReadOnly => VolumeErrorKind::ReadOnly,
        ErrorKind::OutOfRange => VolumeErrorKind::OutOfRange,
        ErrorKind::InvalidArgument => VolumeErrorKind::Invalid,
        _ => VolumeErrorKind::Io,
    };
    VolumeError {
        kind,
        message: e.to_string(),
    }
}

impl Volume for EngineVolume {
    fn read(&self, offset: u64, buf: &mut [u8]) -> VolumeResult<()> {
        self.pool.read(self.id, offset, buf).map_err(map_err)
    }

    fn write(&self, offset: u64, data: &[u8]) -> VolumeResult<()> {
        self.pool.write(self.id, offset, data).map_err(map_err)
    }

    fn trim(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.pool.trim(self.id, offset, len).map_err(map_err)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.pool
            .write_zeroes(self.id, offset, len)
            .map_err(map_err)
    }

    fn block_status(&self, offset: u64, len: u64) -> VolumeResult<Vec<Run>> {
        let extents = self
            .pool
            .block_status(self.id, offset, len)
            .map_err(map_err)?;
        Ok(extents
            .into_iter()
            .map(|e| Run {
                offset: e.offset,
                len: e.len,
                mapped: e.mapped,
            })
            .collect())
    }

    fn flush(&self) -> VolumeResult<()> {
        self.pool.flush().map_err(map_err)
    }
}
