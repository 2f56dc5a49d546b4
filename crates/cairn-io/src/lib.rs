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
//! - Data written before a `flush` that returned `Ok` survives a crash, and so does data written
//!   by a `write_batch_fua` that returned `Ok`; nothing else is promised.
//! - Offsets and lengths are multiples of [`BlockDevice::alignment`]; a request that is not, or that
//!   reaches past [`BlockDevice::size_bytes`], fails with [`IoErrorKind::InvalidRange`] and touches
//!   nothing.
//! - A failed request reports an error; it never panics and never reports success.
//!
//! Modules: [`file`](mod@file) ([`FileDevice`]: io_uring or pread/pwrite on a file or block device),
//! [`aligned`] ([`AlignedBuf`]), [`limits`] (every bound of this crate), [`mem`] ([`MemDevice`] with fault injection),
//! [`recording`] ([`RecordingDevice`] and crash images), [`stats`] ([`IoStats`], the counts both the
//! file and the in-memory device keep, bounce copies included).

// `unsafe` is denied workspace-wide; this crate is the one place allowed to use it, because the
// io_uring and O_DIRECT backends hand raw buffers and file descriptors to the kernel. Every block
// says in a `// SAFETY:` comment who owns the buffer until the kernel's completion arrives.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod aligned;
pub mod file;
pub mod limits;
pub mod mem;
pub mod recording;
pub mod stats;

pub use aligned::AlignedBuf;
pub use file::{uring_available, Backend, FileDevice, OpenOptions, BACKEND_ENV};
pub use mem::{FaultPlan, MemDevice};
pub use recording::{CrashMode, CrashPoint, RecordedOp, RecordingDevice};
pub use stats::IoStats;

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
///
/// Its message names the operation, range and kind, and the operating-system error follows as its
/// source; a failed open ([`IoErrorKind::Open`]) instead carries the reason in its own message
/// ("… device is in use by another process") and reports no separate source, so an error chain
/// does not say it twice.
#[derive(Debug)]
pub struct IoError {
    pub kind: IoErrorKind,
    pub op: &'static str,
    pub offset: u64,
    pub len: u64,
    pub source: Option<std::io::Error>,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self))
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match (self.kind, &self.source) {
            (IoErrorKind::Open, _) | (_, None) => None,
            (_, Some(source)) => Some(source),
        }
    }
}

pub type IoResult<T> = Result<T, IoError>;

/// The message of an error: the operation, its range and the kind. A failed open has no range;
/// its message is the reason (from the source), which is the whole story. Otherwise the source
/// follows in the error chain and is not repeated.
fn describe(e: &IoError) -> String {
    let kind = match e.kind {
        IoErrorKind::Open => {
            return match &e.source {
                Some(source) => format!("Cannot open device: {source}"),
                None => "Cannot open device".to_string(),
            }
        }
        IoErrorKind::InvalidRange => "misaligned or out of range",
        IoErrorKind::NoSpace => "no space left",
        IoErrorKind::Media => "media error",
        IoErrorKind::Other => "I/O error",
    };
    format!("{} at offset {} (+{} bytes): {kind}", e.op, e.offset, e.len)
}

impl IoError {
    /// An error of `kind` with no operating-system source.
    pub fn new(kind: IoErrorKind, op: &'static str, offset: u64, len: u64) -> IoError {
        IoError {
            kind,
            op,
            offset,
            len,
            source: None,
        }
    }

    /// An error reported by the operating system, its kind derived from the errno: `ENOSPC` (and
    /// `EDQUOT`, `EFBIG`) → [`IoErrorKind::NoSpace`], `EIO` → [`IoErrorKind::Media`], others →
    /// [`IoErrorKind::Other`].
    pub fn from_os(op: &'static str, offset: u64, len: u64, source: std::io::Error) -> IoError {
        let kind = match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => IoErrorKind::NoSpace,
            Some(libc::EIO) => IoErrorKind::Media,
            _ => IoErrorKind::Other,
        };
        IoError {
            kind,
            op,
            offset,
            len,
            source: Some(source),
        }
    }

    /// A failure to open or lock a device, with the reason.
    pub fn open(source: std::io::Error) -> IoError {
        IoError {
            kind: IoErrorKind::Open,
            op: "open",
            offset: 0,
            len: 0,
            source: Some(source),
        }
    }
}

/// Checks a request against a device's alignment and size: `offset` and `len` multiples of
/// `alignment`, `offset + len <= size_bytes` (no overflow). Every backend calls this before it
/// touches anything, so a bad request fails with [`IoErrorKind::InvalidRange`] and has no effect.
pub fn check_range(
    op: &'static str,
    offset: u64,
    len: u64,
    alignment: u64,
    size_bytes: u64,
) -> IoResult<()> {
    let aligned = offset % alignment == 0 && len % alignment == 0;
    let inside = offset.checked_add(len).is_some_and(|end| end <= size_bytes);
    if aligned && inside {
        Ok(())
    } else {
        Err(IoError::new(IoErrorKind::InvalidRange, op, offset, len))
    }
}

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
    /// first failure is returned (others may or may not have reached the device). The writes of
    /// one batch may reach the device in any order, so a batch should not hold overlapping ranges.
    fn write_batch(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        writes
            .iter()
            .try_for_each(|(off, data)| self.write_at(*off, data))
    }
    /// Several writes submitted together, each durable when this returns (FUA: forced unit
    /// access) — these writes, not necessarily others still pending. The default writes them
    /// and flushes the device, which is more than FUA asks. Like [`BlockDevice::write_batch`],
    /// all succeed or the first failure is returned, and a failed batch promises nothing.
    fn write_batch_fua(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.write_batch(writes)?;
        self.flush()
    }
    /// Several reads submitted together; the default issues them one by one.
    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> IoResult<()> {
        reads
            .iter_mut()
            .try_for_each(|(off, buf)| self.read_at(*off, buf))
    }
    /// Makes every write that completed before this call durable.
    fn flush(&self) -> IoResult<()>;
    /// Tells the device the range holds no data any more (hole punch on files, BLKDISCARD on
    /// devices). Reading a discarded range afterwards returns unspecified contents.
    fn discard(&self, offset: u64, len: u64) -> IoResult<()>;
    /// Makes sure the range has backing storage, so a later write to it cannot fail for lack of
    /// space in the layer below (fallocate on files). Contents are unchanged. The default (for
    /// devices whose every block is always backed: memory, raw block devices) only checks the
    /// range.
    fn preallocate(&self, offset: u64, len: u64) -> IoResult<()> {
        check_range(
            "preallocate",
            offset,
            len,
            self.alignment(),
            self.size_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_kind() {
        let kind =
            |errno| IoError::from_os("write", 0, 0, std::io::Error::from_raw_os_error(errno)).kind;
        assert_eq!(kind(libc::ENOSPC), IoErrorKind::NoSpace);
        assert_eq!(kind(libc::EDQUOT), IoErrorKind::NoSpace);
        assert_eq!(kind(libc::EIO), IoErrorKind::Media);
        assert_eq!(kind(libc::EBADF), IoErrorKind::Other);
    }

    #[test]
    fn messages_name_the_operation_and_the_reason() {
        let err = IoError::new(IoErrorKind::InvalidRange, "read", 4096, 512);
        assert_eq!(
            err.to_string(),
            "read at offset 4096 (+512 bytes): misaligned or out of range"
        );
        let busy =
            std::io::Error::new(std::io::ErrorKind::WouldBlock, "pool.img: device is in use");
        let open = IoError::open(busy);
        assert!(std::error::Error::source(&open).is_none());
        assert_eq!(
            open.to_string(),
            "Cannot open device: pool.img: device is in use"
        );
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_range("read", 0, 0, 512, 0).is_ok());
        assert!(check_range("read", 512, 512, 512, 1024).is_ok());
        assert!(check_range("read", 512, 1024, 512, 1024).is_err());
        assert!(check_range("read", 256, 512, 512, 4096).is_err());
        assert!(check_range("read", u64::MAX - 511, 512, 512, u64::MAX).is_err());
    }
}
