//! Block devices for Cairn: the [`BlockDevice`] trait the engine is generic over, and its backends.
//!
//! This crate owns every file descriptor and every raw buffer in the project; it is the only crate
//! allowed `unsafe` code. Backends: io_uring (batched, O_DIRECT with aligned buffers where the file
//! system allows it), plain `pread`/`pwrite` (the automatic fallback when io_uring is not permitted),
//! an in-memory device, and a recording device that can rebuild the image as it would be after a
//! crash at any point.
//!
//! Invariants every backend keeps:
//! - A `write_at` that returned `Ok` is visible to every later `read_at` on the same device.
//! - Data written before a `flush` that returned `Ok` survives a crash; nothing else is promised.
//! - Offsets and lengths are multiples of [`BlockDevice::alignment`]; a request that is not, or that
//!   reaches past [`BlockDevice::size_bytes`], fails with [`IoErrorKind::InvalidRange`] and touches
//!   nothing.
//! - A failed request reports an error; it never panics and never reports success.

use std::fmt;

/// The kind of an I/O failure, for callers to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoErrorKind {
    /// Offset or length misaligned, or past the end of the device.
    InvalidRange,
    /// The device (or the file system under it) has no space left.
    NoSpace,
    /// The device reported a hardware or media error.
    Media,
    /// The device could not be opened, locked, or is not usable as a pool device.
    Open,
    /// Anything else the operating system reported.
    Other,
}

/// An I/O failure with the operation and range it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{op} at offset {offset} (+{len} bytes): {kind:?}")]
pub struct IoError {
    pub kind: IoErrorKind,
    pub op: &'static str,
    pub offset: u64,
    pub len: u64,
    #[source]
    pub source: Option<std::io::Error>,
}

pub type IoResult<T> = Result<T, IoError>;

/// A block device: a fixed-size array of bytes addressed in multiples of its alignment.
///
/// Implementations are thread-safe; concurrent requests on disjoint ranges are allowed and may be
/// reordered by the device until a `flush` returns.
pub trait BlockDevice: Send + Sync + fmt::Debug {
    /// Size of the device in bytes (a multiple of `alignment`).
    fn size_bytes(&self) -> u64;
    /// Alignment in bytes required of offsets and lengths (512 or 4096).
    fn alignment(&self) -> u64;
    /// Re-reads the size of the underlying file or device (after it grew) and returns it.
    fn refresh_size(&self) -> IoResult<u64>;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()>;
    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()>;
    /// Several writes submitted together; the default issues them one by one. All succeed or the
    /// first failure is returned (others may or may not have reached the device).
    fn write_batch(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        writes.iter().try_for_each(|(off, data)| self.write_at(*off, data))
    }
    /// Several reads submitted together; the default issues them one by one.
    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> IoResult<()> {
        reads.iter_mut().try_for_each(|(off, buf)| self.read_at(*off, buf))
    }
    /// Makes every write that completed before this call durable.
    fn flush(&self) -> IoResult<()>;
    /// Tells the device the range holds no data any more (hole punch on files, BLKDISCARD on
    /// devices). Reading a discarded range afterwards returns unspecified contents.
    fn discard(&self, offset: u64, len: u64) -> IoResult<()>;
}
