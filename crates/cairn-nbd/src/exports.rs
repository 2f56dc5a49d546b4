//! The storage behind the exports, as the NBD server sees it.
//!
//! [`Exports`] names and opens exports; an opened [`Volume`] serves the data calls. The server is
//! written against these traits; [`crate::engine`] implements them for the real
//! `cairn_engine::Storage`. Methods are synchronous (the engine is), so the server calls them on
//! tokio's blocking pool.
//!
//! Invariant: an opened volume keeps whatever the storage needs to stay valid (for the engine, a
//! `Lease` that stops the volume from being deleted) until the last `Arc` to it is dropped.

use std::sync::Arc;

use crate::handshake::ExportInfo;

/// Why a volume operation failed, in the terms the NBD edge maps to errno values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeErrorKind {
    /// The pool has no free data space for this request.
    NoSpace,
    /// The volume is read-only.
    ReadOnly,
    /// The range reaches past the end of the volume.
    OutOfRange,
    /// Misaligned or otherwise invalid arguments.
    Invalid,
    /// Device error, corruption or a failed pool.
    Io,
}

/// A failed volume operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeError {
    pub kind: VolumeErrorKind,
    pub message: String,
}

pub type VolumeResult<T> = std::result::Result<T, VolumeError>;

/// One allocation run of a volume: `mapped == false` reads as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub len: u64,
    pub mapped: bool,
}

/// An export opened for transmission.
pub trait Volume: Send + Sync {
    fn read(&self, offset: u64, buf: &mut [u8]) -> VolumeResult<()>;
    fn write(&self, offset: u64, data: &[u8]) -> VolumeResult<()>;
    fn trim(&self, offset: u64, len: u64) -> VolumeResult<()>;
    fn write_zeroes(&self, offset: u64, len: u64) -> VolumeResult<()>;
    /// Allocation of [`offset`, `offset + len`), runs sorted by offset.
    fn block_status(&self, offset: u64, len: u64) -> VolumeResult<Vec<Run>>;
    /// Makes every write acknowledged so far, on any connection, durable.
    fn flush(&self) -> VolumeResult<()>;
}

/// The set of exports a server offers.
pub trait Exports: Send + Sync {
    /// Export names, sorted.
    fn list(&self) -> Vec<String>;
    fn info(&self, name: &str) -> Option<ExportInfo>;
    /// Opens an export; `None` if it does not exist (or can no longer be opened).
    fn open(&self, name: &str) -> Option<(ExportInfo, Arc<dyn Volume>)>;
}
