//! [`EngineData`]: the data of one engine volume as the array layer's copy reads and writes it
//! ([`crate::copy`]): its mapped ranges from the engine's `block_status`, reads and writes
//! through its pool, and a flush that commits the pool.

use std::sync::Arc;

use cairn_engine::{Pool, VolumeId};

use super::from_engine;
use crate::copy::VolumeData;
use crate::error::Result;

/// One engine volume's data.
pub struct EngineData {
    pub pool: Arc<Pool>,
    pub id: VolumeId,
    pub size_bytes: u64,
}

impl VolumeData for EngineData {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn mapped(&self, at: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let all = self
            .pool
            .block_status(self.id, at, len)
            .map_err(from_engine)?;
        Ok(all
            .into_iter()
            .filter(|e| e.mapped)
            .map(|e| (e.offset, e.len))
            .collect())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.pool.read(self.id, offset, buf).map_err(from_engine)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.pool.write(self.id, offset, data).map_err(from_engine)
    }

    fn flush(&self) -> Result<()> {
        self.pool.flush().map_err(from_engine)
    }
}
