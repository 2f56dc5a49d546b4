//! The export traits: the set of volumes a host may open, and an opened volume.
//!
//! Methods are synchronous (the engine is); an async server calls them on a blocking pool. A
//! volume whose backend completes requests by itself (Ceph RBD) may also offer an
//! [`AsyncVolume`] ([`Volume::asynchronous`]): the server then puts reads, writes, flushes, trims
//! and zeroings in flight from its own task and is called back when each completes, with no
//! blocking thread per request.
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

use crate::error::{Error, ErrorKind, Result};
use crate::naa::{naa_designator, naa_name, NAA_DESIGNATOR_BYTES};
use crate::AlignedBuf;

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

/// One request for an [`AsyncVolume`]; the buffer it carries comes back in its [`IoDone`].
pub enum Io {
    /// Fills `buf` whole from `offset`.
    Read { offset: u64, buf: AlignedBuf },
    /// Writes `data` at `offset`, without FUA (a FUA write goes through [`Volume::write`]).
    Write { offset: u64, data: AlignedBuf },
    /// [`Volume::flush`].
    Flush,
    /// [`Volume::trim`].
    Trim { offset: u64, len: u64 },
    /// [`Volume::write_zeroes`].
    WriteZeroes { offset: u64, len: u64, how: Zeroing },
}

impl Io {
    /// The byte range the request covers and whether it moves data: `(offset, len, transfer)`.
    pub fn span(&self) -> (u64, u64, bool) {
        match self {
            Io::Read { offset, buf } => (*offset, buf.len() as u64, true),
            Io::Write { offset, data } => (*offset, data.len() as u64, true),
            Io::Flush => (0, 0, false),
            Io::Trim { offset, len } | Io::WriteZeroes { offset, len, .. } => {
                (*offset, *len, false)
            }
        }
    }

    /// Runs the request through the blocking methods of `volume` (for a request an
    /// [`AsyncVolume`] could not start at once, run on a blocking thread).
    pub fn run(self, volume: &dyn Volume) -> IoDone {
        match self {
            Io::Read { offset, mut buf } => {
                let result = volume.read(offset, &mut buf);
                IoDone::new(Some(buf), result)
            }
            Io::Write { offset, data } => {
                let result = volume.write(offset, &data, false);
                IoDone::new(Some(data), result)
            }
            Io::Flush => IoDone::new(None, volume.flush()),
            Io::Trim { offset, len } => IoDone::new(None, volume.trim(offset, len)),
            Io::WriteZeroes { offset, len, how } => {
                IoDone::new(None, volume.write_zeroes(offset, len, how))
            }
        }
    }

    /// The buffer the request carries, if any.
    pub fn into_buf(self) -> Option<AlignedBuf> {
        match self {
            Io::Read { buf, .. } => Some(buf),
            Io::Write { data, .. } => Some(data),
            Io::Flush | Io::Trim { .. } | Io::WriteZeroes { .. } => None,
        }
    }
}

/// How an [`Io`] ended: its buffer back (the data read, or the payload written) and its result.
/// A read's buffer holds data only if `result` is `Ok`.
pub struct IoDone {
    pub buf: Option<AlignedBuf>,
    pub result: Result<()>,
}

impl IoDone {
    pub fn new(buf: Option<AlignedBuf>, result: Result<()>) -> IoDone {
        IoDone { buf, result }
    }

    /// A request that panicked below: an I/O error (its buffer is lost).
    pub fn internal_error() -> IoDone {
        IoDone::new(None, Err(Error::new(ErrorKind::Io, "internal error")))
    }
}

/// What runs when an [`Io`] completes: exactly once, on whichever thread completed it.
pub type OnDone = Box<dyn FnOnce(IoDone) + Send + 'static>;

/// An [`Io`] an [`AsyncVolume`] could not start without blocking, handed back untouched.
pub struct Declined {
    pub io: Io,
    pub done: OnDone,
}

/// The asynchronous side of a volume whose backend completes requests by itself.
///
/// Contract: `done` runs exactly once per accepted request, on a thread of the backend (or on
/// the caller's, before `submit` returns, if the request fails to start). It must not block or
/// panic: it runs on the backend's completion thread. The request's buffer, and everything
/// `done` holds, stay alive until then, even if every handle on the volume is dropped
/// meanwhile. The same checks and errors apply as for the blocking methods.
pub trait AsyncVolume: Send + Sync {
    /// Puts `io` in flight, or hands it back if it cannot be started now without blocking
    /// (the backend is reconnecting, say): the caller then runs it with [`Io::run`] on a
    /// blocking thread.
    fn submit(&self, io: Io, done: OnDone) -> std::result::Result<(), Declined>;
}

/// An opened volume. Dropping the last reference releases its lease.
pub trait Volume: Send + Sync {
    /// What the volume is, as of now (its size may have grown since it was opened).
    fn info(&self) -> VolumeInfo;

    /// Reads `buf.len()` bytes at `offset`; unmapped ranges read as zeros.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Reads several ranges, each into its own buffer, each with the result [`Volume::read`]
    /// would give it (one result per range, in order). The reads run side by side, never one
    /// after the other: a caller hands over reads that arrived together to save the hand-offs
    /// of one blocking call per read, not to queue them.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>>;

    /// Writes `data` at `offset`; with `fua` the data is durable when this returns.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()>;

    /// Writes several ranges (none with FUA), each with the result [`Volume::write`] would give
    /// it (one result per range, in order). The writes run side by side, as writes in flight
    /// together do: a caller hands over writes that arrived together to save the hand-offs of
    /// one blocking call per write, not to order them. Two of them that overlap land in either
    /// order, as they would sent side by side.
    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<Result<()>>;

    /// Makes every write acknowledged so far durable (see the module invariants).
    fn flush(&self) -> Result<()>;

    /// Deallocates `[offset, offset + len)`; it reads as zeros afterwards.
    fn trim(&self, offset: u64, len: u64) -> Result<()>;

    /// Makes `[offset, offset + len)` read as zeros, storing them as `how` says.
    fn write_zeroes(&self, offset: u64, len: u64, how: Zeroing) -> Result<()>;

    /// Allocation of `[offset, offset + len)`: runs sorted by offset, covering the range.
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Run>>;

    /// The volume's asynchronous side, if its backend completes requests by itself; by default
    /// none (every request goes through the blocking methods).
    fn asynchronous(&self) -> Option<&dyn AsyncVolume> {
        None
    }

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

/// Splits requests a server held back together into the jobs they go in, one
/// [`Volume::read_many`] or [`Volume::write_many`] each: reads (`is_read`) and writes apart, at
/// most [`crate::limits::BATCH_REQUESTS_MAX`] a job, each in the order the requests arrived.
pub fn batches<T>(held: Vec<T>, is_read: impl Fn(&T) -> bool) -> Vec<Vec<T>> {
    let (reads, writes): (Vec<T>, Vec<T>) = held.into_iter().partition(|r| is_read(r));
    let mut jobs = Vec::new();
    for mut kind in [reads, writes] {
        while !kind.is_empty() {
            let n = kind.len().min(crate::limits::BATCH_REQUESTS_MAX);
            jobs.push(kind.drain(..n).collect());
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_keep_reads_and_writes_apart_in_order_and_bounded() {
        let held: Vec<i32> = (0..11).map(|i| if i % 3 == 0 { -i } else { i }).collect();
        let jobs = super::batches(held, |&r| r <= 0);
        assert_eq!(
            jobs,
            [vec![0, -3, -6, -9], vec![1, 2, 4, 5], vec![7, 8, 10]],
            "{jobs:?}"
        );
        assert!(super::batches(Vec::<i32>::new(), |_| true).is_empty());
    }
}
