//! One engine pool behind its own `Storage`, for the engine's integration tests: volumes are
//! changed through `Storage` (the engine's one public way to change them, which keeps the name
//! registry exact), and read and written through the pool it dereferences to.
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use std::ops::Deref;
use std::sync::Arc;

use cairn_engine::{
    BlockDevice, Pool, PoolOptions, Result, Storage, VolumeId, VolumeInfo, VolumeOptions,
    BLOCK_SIZE,
};

/// A pool and the storage that changes its volumes.
#[derive(Clone, Debug)]
pub struct OnePool {
    pub storage: Arc<Storage>,
    pub pool: Arc<Pool>,
}

/// Formats a new pool on `dev`, behind a storage of its own.
pub fn create(dev: Arc<dyn BlockDevice>, name: &str, opts: PoolOptions) -> Result<OnePool> {
    OnePool::new(Pool::create(dev, name, opts)?)
}

/// Opens the pool on `dev`, behind a storage of its own.
pub fn open(dev: Arc<dyn BlockDevice>, opts: PoolOptions) -> Result<OnePool> {
    OnePool::new(Pool::open(dev, opts)?)
}

impl Deref for OnePool {
    type Target = Arc<Pool>;
    fn deref(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl OnePool {
    pub fn new(pool: Arc<Pool>) -> Result<OnePool> {
        let storage = Arc::new(Storage::new());
        storage.add_pool(pool.clone())?;
        Ok(OnePool { storage, pool })
    }

    pub fn create_volume(&self, name: &str, size: u64, opts: VolumeOptions) -> Result<VolumeInfo> {
        let pool = self.pool.name();
        Ok(self.storage.create_volume(&pool, name, size, opts)?.1)
    }

    pub fn snapshot(&self, src: VolumeId, name: &str, opts: VolumeOptions) -> Result<VolumeInfo> {
        Ok(self.storage.snapshot(src, name, opts)?.1)
    }

    pub fn delete_volume(&self, id: VolumeId) -> Result<()> {
        self.storage.delete_volume(id)
    }

    pub fn rename_volume(&self, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        self.storage.rename_volume(id, name)
    }

    pub fn resize_volume(&self, id: VolumeId, size: u64) -> Result<VolumeInfo> {
        self.storage.resize_volume(id, size)
    }

    pub fn set_read_only(&self, id: VolumeId, read_only: bool) -> Result<VolumeInfo> {
        self.storage.set_read_only(id, read_only)
    }

    pub fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<VolumeInfo> {
        self.storage.set_hidden(id, hidden)
    }

    pub fn set_tag(&self, id: VolumeId, tag: &[u8]) -> Result<VolumeInfo> {
        self.storage.set_tag(id, tag)
    }

    pub fn restore(&self, volume: VolumeId, snapshot: VolumeId) -> Result<()> {
        self.storage.restore(volume, snapshot)
    }
}

/// One block of the contents a stamp writes: the stamp in every 8-byte word (stamp 0: zeros, as
/// a block never written reads).
pub fn block_of(stamp: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE as usize];
    for w in b.chunks_mut(8) {
        w.copy_from_slice(&stamp.to_le_bytes());
    }
    b
}

/// A pool on `dev` with volume `v` of 64 blocks whose blocks 0..8 hold `block_of(b + 1)`,
/// flushed; with the device byte offset of block 3's data (the one device block holding its
/// stamp), where a bad spot then falls on that block alone.
pub fn eight_blocks(dev: Arc<dyn BlockDevice>, opts: PoolOptions) -> (OnePool, VolumeId, u64) {
    let pool = create(dev.clone(), "p", opts).expect("create");
    let v = pool
        .create_volume("v", 64 * BLOCK_SIZE, VolumeOptions::default())
        .expect("volume")
        .id;
    for b in 0..8 {
        pool.write(v, b * BLOCK_SIZE, &block_of(b + 1))
            .expect("write");
    }
    pool.flush().expect("flush");
    let mut probe = vec![0u8; BLOCK_SIZE as usize];
    let mut found = (0..dev.size_bytes() / BLOCK_SIZE).filter(|p| {
        dev.read_at(p * BLOCK_SIZE, &mut probe).expect("probe");
        probe == block_of(4)
    });
    let at = found.next().expect("block 3 is on the device");
    assert!(found.next().is_none(), "block 3's data is in one place");
    (pool, v, at * BLOCK_SIZE)
}
