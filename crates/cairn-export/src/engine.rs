//! The export traits over Cairn's engine: one export per non-hidden volume or snapshot of a
//! `cairn_engine::Storage`, named after the volume.
//!
//! Invariants: an opened volume holds a `Lease` on its engine volume (so `Storage::delete_volume`
//! refuses it with `InUse`) for as long as the handle lives; engine errors are translated into
//! [`ErrorKind`] here, in [`translate`], and nowhere else. A FUA write is the engine's FUA write
//! (a FUA device write when it lands in place over durable mappings, else a write and a commit).

use std::sync::Arc;

use cairn_engine::{Lease, Pool, Storage, VolumeId};
use cairn_io::AlignedBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::volume::{Exports, Run, Volume, VolumeInfo, Zeroing};

/// The export view of an engine volume.
fn export_info(v: &cairn_engine::VolumeInfo) -> VolumeInfo {
    VolumeInfo {
        name: v.name.clone(),
        id: v.id.0,
        size_bytes: v.size_bytes,
        logical_block_size: v.logical_block_size,
        read_only: v.read_only,
    }
}

/// The one translation of an engine error into the export layer's terms.
pub(crate) fn translate(e: cairn_engine::Error) -> Error {
    use cairn_engine::ErrorKind as E;
    let kind = match e.kind() {
        E::NotFound => ErrorKind::NotFound,
        E::InUse => ErrorKind::InUse,
        E::NoSpace => ErrorKind::NoSpace,
        E::ReadOnly => ErrorKind::ReadOnly,
        E::OutOfRange => ErrorKind::OutOfRange,
        E::InvalidArgument => ErrorKind::InvalidArgument,
        _ => ErrorKind::Io,
    };
    Error::new(kind, e.context().to_string()).with_source(e)
}

fn not_found(name: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("export {name:?}"))
}

/// The visible engine volume called `name`, with its pool.
fn find(storage: &Storage, name: &str) -> Result<(Arc<Pool>, cairn_engine::VolumeInfo)> {
    match storage.find_volume(name) {
        Some((pool, v)) if !v.hidden => Ok((pool, v)),
        _ => Err(not_found(name)),
    }
}

impl Exports for Storage {
    fn list(&self) -> Result<Vec<VolumeInfo>> {
        let mut all: Vec<VolumeInfo> = self
            .pools()
            .iter()
            .flat_map(|pool| pool.volumes())
            .filter(|v| !v.hidden)
            .map(|v| export_info(&v))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn info(&self, name: &str) -> Result<VolumeInfo> {
        find(self, name).map(|(_, v)| export_info(&v))
    }

    fn open(&self, name: &str) -> Result<Arc<dyn Volume>> {
        let (pool, v) = find(self, name)?;
        // The lease fails with NotFound if the volume was deleted since it was looked up.
        let lease = self.lease(v.id).map_err(translate)?;
        Ok(Arc::new(EngineVolume {
            pool,
            id: v.id,
            opened: export_info(&v),
            _lease: lease,
        }))
    }
}

/// An engine volume opened by a host.
struct EngineVolume {
    pool: Arc<Pool>,
    id: VolumeId,
    /// What it was when opened; reported if the pool can no longer be asked (a failed pool).
    opened: VolumeInfo,
    _lease: Lease,
}

/// Refuses a data transfer larger than the export layer's limit.
fn check_transfer(len: usize) -> Result<()> {
    if len > limits::REQUEST_BYTES_MAX as usize {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{len} bytes in one request, more than {}",
                limits::REQUEST_BYTES_MAX
            ),
        ));
    }
    Ok(())
}

/// The results of a batch in order: each refusal as it is, each request the pool took with
/// the pool's result for it (`done` holds one per `Ok` in `refused`, in order).
fn merge_refused(refused: Vec<Result<()>>, done: Vec<cairn_engine::Result<()>>) -> Vec<Result<()>> {
    let mut done = done.into_iter();
    refused
        .into_iter()
        .map(|r| {
            r.and_then(|()| {
                done.next()
                    .expect("one result per request taken")
                    .map_err(translate)
            })
        })
        .collect()
}

impl Volume for EngineVolume {
    fn info(&self) -> VolumeInfo {
        match self.pool.volume(self.id) {
            Ok(v) => export_info(&v),
            Err(_) => self.opened.clone(),
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_transfer(buf.len())?;
        self.pool.read(self.id, offset, buf).map_err(translate)
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        // A read over the transfer limit is refused alone; the rest go to the pool together.
        let refused: Vec<Result<()>> = reads.iter().map(|(_, b)| check_transfer(b.len())).collect();
        let mut taken: Vec<(u64, &mut [u8])> = reads
            .iter_mut()
            .zip(&refused)
            .filter(|(_, r)| r.is_ok())
            .map(|((offset, buf), _)| (*offset, &mut **buf))
            .collect();
        merge_refused(refused, self.pool.read_many(self.id, &mut taken))
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        check_transfer(data.len())?;
        if fua {
            self.pool.write_fua(self.id, offset, data)
        } else {
            self.pool.write(self.id, offset, data)
        }
        .map_err(translate)
    }

    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<Result<()>> {
        // As for reads: one over the transfer limit is refused alone.
        let refused: Vec<Result<()>> = writes
            .iter()
            .map(|(_, d)| check_transfer(d.len()))
            .collect();
        let taken: Vec<(u64, &[u8])> = writes
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_ok())
            .map(|(&w, _)| w)
            .collect();
        merge_refused(refused, self.pool.write_many(self.id, &taken))
    }

    fn flush(&self) -> Result<()> {
        self.pool.flush().map_err(translate)
    }

    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.pool.trim(self.id, offset, len).map_err(translate)
    }

    fn write_zeroes(&self, offset: u64, len: u64, how: Zeroing) -> Result<()> {
        match how {
            Zeroing::Unmap => self
                .pool
                .write_zeroes(self.id, offset, len)
                .map_err(translate),
            Zeroing::Allocate => self.write_zero_data(offset, len),
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Run>> {
        let extents = self
            .pool
            .block_status(self.id, offset, len)
            .map_err(translate)?;
        Ok(extents
            .into_iter()
            .map(|e| Run {
                offset: e.offset,
                len: e.len,
                mapped: e.mapped,
            })
            .collect())
    }
}

impl EngineVolume {
    /// Zeroing that keeps the range allocated: zeroes written as data, one bounded buffer at a
    /// time. The whole range is checked first, so a range past the end writes nothing.
    fn write_zero_data(&self, offset: u64, len: u64) -> Result<()> {
        let info = self.info();
        let block = u64::from(info.logical_block_size);
        if offset % block != 0 || len % block != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("zeroing {len} bytes at {offset}: not multiples of {block}"),
            ));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= info.size_bytes)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::OutOfRange,
                    format!("zeroing {len} bytes at {offset}, past the end"),
                )
            })?;
        let zeroes = AlignedBuf::zeroed(limits::ZERO_BUFFER_BYTES.min(len as usize));
        let mut at = offset;
        while at < end {
            let n = (end - at).min(zeroes.len() as u64) as usize;
            self.pool
                .write(self.id, at, &zeroes[..n])
                .map_err(translate)?;
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{exercise, Harness};
    use cairn_engine::{PoolOptions, VolumeOptions};
    use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordingDevice};

    struct EngineHarness {
        storage: Storage,
    }

    impl Harness for EngineHarness {
        fn exports(&self) -> &dyn Exports {
            &self.storage
        }

        fn create(&self, name: &str, size_bytes: u64, logical_block_size: u32, read_only: bool) {
            let opts = VolumeOptions {
                logical_block_size,
                read_only,
                ..VolumeOptions::default()
            };
            let pool = if read_only { "p2" } else { "p1" };
            self.storage
                .create_volume(pool, name, size_bytes, opts)
                .expect("create volume");
        }

        fn delete(&self, name: &str) -> Result<()> {
            let (_, v) = self.storage.find_volume(name).expect("volume exists");
            self.storage.delete_volume(v.id).map_err(translate)
        }
    }

    fn pool_on(dev: Arc<dyn cairn_engine::BlockDevice>, name: &str) -> Arc<Pool> {
        let opts = PoolOptions {
            commit_interval: None,
            ..PoolOptions::default()
        };
        Pool::create(dev, name, opts).expect("pool")
    }

    fn storage_with(pools: &[(&str, u64)]) -> Storage {
        let storage = Storage::new();
        for &(name, size_bytes) in pools {
            let pool = pool_on(Arc::new(MemDevice::new(size_bytes)), name);
            storage.add_pool(pool).expect("add pool");
        }
        storage
    }

    /// The shared suite over two in-memory pools (volumes in both, one name space).
    #[test]
    fn engine_exports_keep_the_contract() {
        let storage = storage_with(&[("p1", 64 << 20), ("p2", 64 << 20)]);
        exercise(&EngineHarness { storage });
    }

    #[test]
    fn hidden_volumes_are_not_exported() {
        let storage = storage_with(&[("p1", 16 << 20)]);
        let opts = VolumeOptions {
            hidden: true,
            ..VolumeOptions::default()
        };
        storage
            .create_volume("p1", "inner", 1 << 20, opts)
            .expect("create");
        assert!(storage.list().expect("list").is_empty());
        assert_eq!(
            storage.info("inner").map(|_| ()).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            storage.open("inner").map(|_| ()).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn a_full_pool_fails_the_write_with_no_space() {
        let storage = storage_with(&[("p1", 8 << 20)]);
        storage
            .create_volume("p1", "big", 64 << 20, VolumeOptions::default())
            .expect("create");
        let v = storage.open("big").expect("open");
        let chunk = vec![0x5au8; 1 << 20];
        let failed = (0..64u64).find_map(|i| v.write(i << 20, &chunk, false).err());
        let e = failed.expect("an 8 MiB pool cannot hold 64 MiB");
        assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
        v.trim(0, 64 << 20)
            .expect("trim always succeeds on a full pool");
        v.flush().expect("flush");
    }

    #[test]
    fn device_errors_are_io_errors() {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let storage = Storage::new();
        storage.add_pool(pool_on(dev.clone(), "p1")).expect("add");
        storage
            .create_volume("p1", "v", 1 << 20, VolumeOptions::default())
            .expect("create");
        let v = storage.open("v").expect("open");
        v.write(0, &[7u8; 4096], true).expect("write");
        dev.fail_reads_after(0);
        let mut buf = [0u8; 4096];
        let e = v.read(0, &mut buf).expect_err("the device fails reads");
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the engine error is kept"
        );
    }

    /// Reopens the pool image a crash right now would leave, and reads 4 KiB of `name`.
    fn after_crash(dev: &RecordingDevice, name: &str) -> Vec<u8> {
        let point = CrashPoint::new(dev.ops_len(), 1, CrashMode::Drop);
        let image: Arc<dyn cairn_engine::BlockDevice> = Arc::new(dev.image_at(point));
        let pool = Pool::open(image, PoolOptions::default()).expect("reopen");
        let v = pool.volume_by_name(name).expect("volume survives");
        let mut buf = vec![0u8; 4096];
        pool.read(v.id, 0, &mut buf).expect("read");
        buf
    }

    #[test]
    fn a_fua_write_is_durable_when_it_returns() {
        let dev = Arc::new(RecordingDevice::new(MemDevice::new(16 << 20)));
        let storage = Storage::new();
        storage.add_pool(pool_on(dev.clone(), "p1")).expect("add");
        storage
            .create_volume("p1", "v", 1 << 20, VolumeOptions::default())
            .expect("create");
        let v = storage.open("v").expect("open");
        v.write(0, &[1u8; 4096], false).expect("plain write");
        assert_eq!(after_crash(&dev, "v"), vec![0u8; 4096], "not yet durable");
        v.write(0, &[2u8; 4096], true).expect("fua write");
        assert_eq!(after_crash(&dev, "v"), vec![2u8; 4096], "durable on return");
    }
}
