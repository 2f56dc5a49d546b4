//! Pools built before a daemon starts, for the tests and measurements that need many volumes or
//! snapshots: the pool file is written through a file device that syncs once, when the build is
//! done, instead of at every commit (a fixture, not a pool in service), and that leaves out the
//! preallocation of the metadata reserve so a large sparse pool fits any test file system.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use cairn_engine::{BlockDevice, IoError, Pool, PoolOptions, Storage};
use cairn_io::FileDevice;

/// A pool file whose blocks are allocated when written, synced only when the pool is built.
#[derive(Debug)]
struct SparseFile(FileDevice);

type IoResult<T> = std::result::Result<T, IoError>;

impl BlockDevice for SparseFile {
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.0.alignment()
    }
    fn refresh_size(&self) -> IoResult<u64> {
        self.0.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.0.write_at(offset, data)
    }
    fn write_batch(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.0.write_batch(writes)
    }
    fn flush(&self) -> IoResult<()> {
        // One sync after the build (see `build_pool`).
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        self.0.discard(offset, len)
    }
}

/// Creates pool `name` of `pool_bytes` in the file at `path`, lets `fill` make its volumes
/// through a `Storage`, closes it and syncs the file.
pub fn build_pool(
    path: &Path,
    name: &str,
    pool_bytes: u64,
    opts: PoolOptions,
    fill: impl FnOnce(&Storage) -> Result<()>,
) -> Result<()> {
    let file = FileDevice::open(path, Some(pool_bytes))?;
    let dev = Arc::new(SparseFile(file));
    let storage = Storage::new();
    storage.add_pool(Pool::create(dev.clone(), name, opts)?)?;
    fill(&storage)?;
    storage.close()?;
    dev.0.flush()?;
    Ok(())
}
