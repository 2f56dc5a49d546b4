//! The export traits: the set of volumes a host may open, and an opened volume.
//!
//! Methods are synchronous (the engine is); an async server calls them on a blocking pool.
//! Offsets and lengths are in bytes. A request must be a whole number of logical blocks
//! ([`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) otherwise), stay inside
//! the volume ([`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange) otherwise) and move at
//! most [`REQUEST_BYTES_MAX`](crate::limits::REQUEST_BYTES_MAX) bytes of data (trim, zeroing and
//! block status move none, so their ranges are not bounded by it).
//!
//! Data buffers go down to the device as they are: a whole-block read or write whose buffer is an
//! [`AlignedBuf`](crate::AlignedBuf) (or any memory aligned to 4096) reaches an O_DIRECT pool
//! without a bounce copy, so a protocol server allocates its payload and reply buffers that way.
//!
//! Invariants every implementation keeps:
//! - An opened [`Volume`] holds a lease on its volume until the last reference is dropped, so
//!   the volume cannot be deleted while a host has it open.
//! - [`Volume::flush`] makes every write acknowledged so far durable, on every opened handle of
//!   every volume of the pool; a write with `fua` is durable when it returns.
//! - A failed write fails only its own request: the range keeps either its old or its new data.
//! - After [`Volume::trim`] or [`Volume::write_zeroes`] the range reads as zeros.

use std::sync::Arc;

use crate::error::Result;
use crate::naa::{naa_designator, naa_name, NAA_DESIGNATOR_BYTES};

/// An export as a host sees it, before or after it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The export name (the volume's name).
    pub name: String,
    /// The volume's stable 128-bit identity, never reused.
    pub id: [u8; 16],
    pub size_bytes: u64,
    /// 512 or 4096.
    pub logical_block_size: u32,
    pub read_only: bool,
}

impl VolumeInfo {
    /// The NAA identity as text (the SMI-S `StorageVolume.Name`).
    pub fn naa_name(&self) -> String {
        naa_name(&self.id)
    }
}

/// One allocation run of a volume; `mapped == false` reads as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub len: u64,
    pub mapped: bool,
}

/// How [`Volume::write_zeroes`] may store the zeroes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zeroing {
    /// The range may be deallocated (it then reads as zeros and takes no data space).
    Unmap,
    /// The range stays allocated: the zeroes are stored as data (NBD `NO_HOLE`, SCSI WRITE SAME
    /// without UNMAP), so later writes to it cannot fail for lack of space.
    Allocate,
}

/// An opened volume. Dropping the last reference releases its lease.
pub trait Volume: Send + Sync {
    /// What the volume is, as of now (its size may have grown since it was opened).
    fn info(&self) -> VolumeInfo;

    /// Reads `buf.len()` bytes at `offset`; unmapped ranges read as zeros.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Writes `data` at `offset`; with `fua` the data is durable when this returns.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()>;

    /// Makes every write acknowledged so far durable (see the module invariants).
    fn flush(&self) -> Result<()>;

    /// Deallocates `[offset, offset + len)`; it reads as zeros afterwards.
    fn trim(&self, offset: u64, len: u64) -> Result<()>;

    /// Makes `[offset, offset + len)` read as zeros, storing them as `how` says.
    fn write_zeroes(&self, offset: u64, len: u64, how: Zeroing) -> Result<()>;

    /// Allocation of `[offset, offset + len)`: runs sorted by offset, covering the range.
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Run>>;

    /// Size in bytes, as of now.
    fn size_bytes(&self) -> u64 {
        self.info().size_bytes
    }

    /// True if writes are refused.
    fn read_only(&self) -> bool {
        self.info().read_only
    }

    /// The logical block size in bytes (512 or 4096).
    fn logical_block_size(&self) -> u32 {
        self.info().logical_block_size
    }

    /// The volume's stable 128-bit identity.
    fn id(&self) -> [u8; 16] {
        self.info().id
    }

    /// The NAA identity as text, exactly the SMI-S `StorageVolume.Name`.
    fn naa_name(&self) -> String {
        naa_name(&self.id())
    }

    /// The 16-byte NAA type 6 designator for the SCSI Device Identification VPD page (0x83).
    fn naa_designator(&self) -> [u8; NAA_DESIGNATOR_BYTES] {
        naa_designator(&self.id())
    }
}

/// What [`Exports::listing`] found: the exports it could list, and whether that is all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The exports found, sorted by name.
    pub volumes: Vec<VolumeInfo>,
    /// False when a backend could not be reached (an RBD pool during a Ceph outage): exports
    /// missing from `volumes` may still exist, so a protocol must not forget state it keeps
    /// for them (LUN numbers, reservations) on the strength of this listing.
    pub complete: bool,
}

/// The set of volumes a server offers to hosts.
pub trait Exports: Send + Sync {
    /// Every export, sorted by name.
    fn list(&self) -> Result<Vec<VolumeInfo>>;

    /// The exports that can be listed now, saying whether some backend could not be asked
    /// (see [`Listing::complete`]); by default exactly [`Exports::list`], complete.
    fn listing(&self) -> Result<Listing> {
        Ok(Listing {
            volumes: self.list()?,
            complete: true,
        })
    }

    /// One export by name; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if there is none.
    fn info(&self, name: &str) -> Result<VolumeInfo>;

    /// Opens an export by name, taking a lease on its volume that the returned handle holds until
    /// it is dropped; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if there is none.
    fn open(&self, name: &str) -> Result<Arc<dyn Volume>>;
}
