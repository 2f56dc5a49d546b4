//! [`RecordingDevice`]: an in-memory device that records every write, discard and flush in order,
//! and rebuilds the image as it would be after a crash at any point of that history.
//!
//! The crash model (the contract of [`BlockDevice::flush`]): at a crash after the first
//! `op_index` recorded operations, every write and discard recorded before the last flush among
//! them is on the media, in order. The writes and discards recorded after that flush (the *pending*
//! ones) reached the media as the [`CrashMode`] says: none, all, each torn to a prefix of its
//! 4 KiB sectors, or any subset of their 4 KiB sectors in any order. A FUA write
//! ([`BlockDevice::write_batch_fua`]) is on the media in full once it completed, whatever the
//! mode: a pending write before it to the same sector never lands over it. The choice is drawn
//! from a seeded RNG, so a crash image is reproducible from its [`CrashPoint`].
//!
//! Invariants:
//! - The log order is the order in which the operations took effect on the live image: each write
//!   is applied and appended under one lock, and a flush is appended under that lock once the
//!   flush succeeded, so a write that completed before a flush call precedes it in the log.
//! - Only successful operations are recorded; a write refused by the live device's
//!   [`crate::FaultPlan`] (or by its range check) leaves no trace, like a request that never left
//!   the host.
//! - Growth of the backing store ([`RecordingDevice::set_size`]) is recorded too and is always
//!   part of a crash image built after it, whatever the mode.
//! - Sectors are 4 KiB at absolute 4 KiB boundaries ([`SECTOR_BYTES`]): a 512-byte write is one
//!   (partial) sector, a write crossing a boundary has a piece on each side.

use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::limits::SECTOR_BYTES;
use crate::mem::MemDevice;
use crate::stats::IoStats;
use crate::{BlockDevice, IoResult};

/// One operation the recording device saw, in the order it took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedOp {
    /// `data` written at `offset`.
    Write { offset: u64, data: Arc<[u8]> },
    /// `data` written at `offset` with FUA: on the media once it completed, flush or not.
    WriteFua { offset: u64, data: Arc<[u8]> },
    /// `offset..offset + len` discarded (it reads as zeros on the in-memory image).
    Discard { offset: u64, len: u64 },
    /// A successful flush: everything before it is durable.
    Flush,
    /// The backing store was resized to `size_bytes`.
    Resize { size_bytes: u64 },
}

/// What happened to the pending (unflushed) writes and discards at a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// None of them reached the media.
    Drop,
    /// All of them reached the media, in order.
    Keep,
    /// Each reached the media only in part: a random prefix (possibly empty, possibly all) of its
    /// 4 KiB sectors, applied in order.
    Torn,
    /// A random subset of all their 4 KiB sectors reached the media, in a random order.
    Reorder,
}

impl CrashMode {
    /// Every mode, for tests that try each.
    pub const ALL: [CrashMode; 4] = [
        CrashMode::Drop,
        CrashMode::Keep,
        CrashMode::Torn,
        CrashMode::Reorder,
    ];
}

/// A crash after the first `op_index` recorded operations, with `mode` applied to the pending ones
/// using an RNG seeded by `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrashPoint {
    /// Number of recorded operations that happened before the crash (`0..=ops_len()`).
    pub op_index: usize,
    pub seed: u64,
    pub mode: CrashMode,
}

impl CrashPoint {
    pub fn new(op_index: usize, seed: u64, mode: CrashMode) -> CrashPoint {
        CrashPoint {
            op_index,
            seed,
            mode,
        }
    }
}

/// One 4 KiB-sector piece of a pending operation: data to write, or a range to zero.
enum SectorPiece {
    Write {
        offset: u64,
        data: Arc<[u8]>,
        from: usize,
        len: usize,
    },
    Zero {
        offset: u64,
        len: u64,
    },
}

impl SectorPiece {
    fn apply(&self, image: &MemDevice) {
        match self {
            SectorPiece::Write {
                offset,
                data,
                from,
                len,
            } => image.store(*offset, &data[*from..*from + *len]),
            SectorPiece::Zero { offset, len } => image.zero(*offset, *len),
        }
    }
}

/// Splits a write or discard into its pieces at absolute 4 KiB boundaries, in address order.
fn sector_pieces(op: &RecordedOp) -> Vec<SectorPiece> {
    let (offset, len) = match op {
        RecordedOp::Write { offset, data } | RecordedOp::WriteFua { offset, data } => {
            (*offset, data.len() as u64)
        }
        RecordedOp::Discard { offset, len } => (*offset, *len),
        RecordedOp::Flush | RecordedOp::Resize { .. } => return Vec::new(),
    };
    let end = offset + len;
    let mut pieces = Vec::new();
    let mut at = offset;
    while at < end {
        let next = ((at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let n = next.min(end) - at;
        pieces.push(match op {
            RecordedOp::Write { data, .. } | RecordedOp::WriteFua { data, .. } => {
                SectorPiece::Write {
                    offset: at,
                    data: Arc::clone(data),
                    from: (at - offset) as usize,
                    len: n as usize,
                }
            }
            _ => SectorPiece::Zero { offset: at, len: n },
        });
        at += n;
    }
    pieces
}

/// Applies one operation to an image being rebuilt, in full.
fn apply_op(image: &MemDevice, op: &RecordedOp) {
    match op {
        RecordedOp::Write { offset, data } | RecordedOp::WriteFua { offset, data } => {
            image.store(*offset, data)
        }
        RecordedOp::Discard { offset, len } => image.zero(*offset, *len),
        RecordedOp::Flush => {}
        RecordedOp::Resize { size_bytes } => {
            image.set_size(*size_bytes);
            // A rebuilt image is opened afresh, so it sees the size of its backing store.
            let _ = image.refresh_size();
        }
    }
}

#[derive(Debug)]
struct State {
    log: Vec<RecordedOp>,
    /// The image after applying the first `.0` operations of the log in full: the starting point
    /// for the next crash image at or after it (tests usually walk crash points in order).
    cache: (usize, MemDevice),
}

/// A block device that keeps an in-memory live image and a log of everything done to it.
///
/// ```
/// use cairn_io::{BlockDevice, CrashMode, CrashPoint, MemDevice, RecordingDevice};
/// let dev = RecordingDevice::new(MemDevice::new(1 << 20));
/// dev.write_at(0, &[1u8; 4096]).unwrap();
/// dev.flush().unwrap();
/// dev.write_at(0, &[2u8; 4096]).unwrap();
/// let image = dev.image_at(CrashPoint::new(dev.ops_len(), 7, CrashMode::Drop));
/// let mut buf = [0u8; 4096];
/// image.read_at(0, &mut buf).unwrap();
/// assert_eq!(buf, [1u8; 4096]);
/// ```
#[derive(Debug)]
pub struct RecordingDevice {
    live: MemDevice,
    /// The image before the first recorded operation.
    base: MemDevice,
    state: Mutex<State>,
}

impl RecordingDevice {
    /// Starts recording on top of `initial`, whose current contents are the durable starting image.
    pub fn new(initial: MemDevice) -> RecordingDevice {
        let base = initial.snapshot();
        let _ = base.refresh_size();
        let cache = (0, base.snapshot());
        RecordingDevice {
            live: initial,
            base,
            state: Mutex::new(State {
                log: Vec::new(),
                cache,
            }),
        }
    }

    /// The live image, for fault injection ([`MemDevice::fail_writes_after`], …) and statistics.
    /// Writing to it directly bypasses the log.
    pub fn live(&self) -> &MemDevice {
        &self.live
    }

    /// Counts of the requests the live image completed.
    pub fn stats(&self) -> IoStats {
        self.live.stats()
    }

    /// Resizes the backing store (see [`MemDevice::set_size`]) and records it.
    pub fn set_size(&self, size_bytes: u64) {
        let mut state = self.state.lock();
        self.live.set_size(size_bytes);
        state.log.push(RecordedOp::Resize { size_bytes });
    }

    /// Number of operations recorded so far; crash points range over `0..=ops_len()`.
    pub fn ops_len(&self) -> usize {
        self.state.lock().log.len()
    }

    /// A copy of the log (data shared, not copied).
    pub fn log(&self) -> Vec<RecordedOp> {
        self.state.lock().log.clone()
    }

    /// The crash points right after each successful flush (`index of the flush + 1`): at these
    /// points nothing is pending, so every mode gives the same image.
    pub fn flush_points(&self) -> Vec<usize> {
        let state = self.state.lock();
        let flushes = state.log.iter().enumerate();
        flushes
            .filter(|(_, op)| **op == RecordedOp::Flush)
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// The image as it would be found after a crash at `point` (see the module documentation for
    /// the model). The result is a fresh device with no faults, sized as the backing store was.
    ///
    /// # Panics
    /// If `point.op_index > self.ops_len()` (a bug in the test).
    pub fn image_at(&self, point: CrashPoint) -> MemDevice {
        let mut state = self.state.lock();
        let State { log, cache } = &mut *state;
        let log_len = log.len();
        assert!(
            point.op_index <= log_len,
            "crash point {} past the log ({log_len})",
            point.op_index
        );
        let ops = &log[..point.op_index];
        let durable = ops
            .iter()
            .rposition(|op| *op == RecordedOp::Flush)
            .map_or(0, |i| i + 1);
        let image = durable_image(&self.base, cache, &ops[..durable]);
        let pending = &ops[durable..];
        let mut rng = StdRng::seed_from_u64(point.seed);
        apply_pending(&image, pending, point.mode, &mut rng);
        image
    }
}

/// The image after `durable_ops` (a prefix of the log) applied in full, built from the cache when
/// the cache is not past that prefix, else from the base; the cache moves to the end of the prefix.
fn durable_image(
    base: &MemDevice,
    cache: &mut (usize, MemDevice),
    durable_ops: &[RecordedOp],
) -> MemDevice {
    if cache.0 > durable_ops.len() {
        *cache = (0, base.snapshot());
    }
    durable_ops[cache.0..]
        .iter()
        .for_each(|op| apply_op(&cache.1, op));
    cache.0 = durable_ops.len();
    cache.1.snapshot()
}

/// Applies the pending operations (after the last flush) as `mode` says; FUA writes always
/// land, and nothing pending before one lands over it.
fn apply_pending(image: &MemDevice, pending: &[RecordedOp], mode: CrashMode, rng: &mut StdRng) {
    // Resizes are the host's business and always happen.
    pending
        .iter()
        .filter(|op| matches!(op, RecordedOp::Resize { .. }))
        .for_each(|op| {
            apply_op(image, op);
        });
    let data_ops = pending
        .iter()
        .filter(|op| !matches!(op, RecordedOp::Resize { .. }));
    match mode {
        CrashMode::Drop => data_ops
            .filter(|op| is_fua(op))
            .for_each(|op| apply_op(image, op)),
        CrashMode::Keep => data_ops.for_each(|op| apply_op(image, op)),
        CrashMode::Torn => {
            for op in data_ops {
                let pieces = sector_pieces(op);
                let kept = if is_fua(op) {
                    pieces.len()
                } else {
                    rng.gen_range(0..=pieces.len())
                };
                pieces[..kept].iter().for_each(|p| p.apply(image));
            }
        }
        CrashMode::Reorder => {
            let ops: Vec<&RecordedOp> = data_ops.collect();
            // The FUA writes first, in order; then a random subset of the other pieces in a
            // random order, less those a later FUA write overlaps (it landed over them).
            ops.iter()
                .filter(|op| is_fua(op))
                .for_each(|op| apply_op(image, op));
            let mut pieces: Vec<SectorPiece> = Vec::new();
            for (i, op) in ops.iter().enumerate().filter(|(_, op)| !is_fua(op)) {
                let later_fua = &ops[i + 1..];
                pieces.extend(
                    sector_pieces(op)
                        .into_iter()
                        .filter(|p| !later_fua.iter().any(|f| is_fua(f) && overlaps(f, p))),
                );
            }
            pieces.retain(|_| rng.gen_bool(0.5));
            pieces.shuffle(rng);
            pieces.iter().for_each(|p| p.apply(image));
        }
    }
}

fn is_fua(op: &RecordedOp) -> bool {
    matches!(op, RecordedOp::WriteFua { .. })
}

/// Whether the FUA write `fua` covers any byte of `piece`.
fn overlaps(fua: &RecordedOp, piece: &SectorPiece) -> bool {
    let RecordedOp::WriteFua { offset, data } = fua else {
        return false;
    };
    let (at, len) = match piece {
        SectorPiece::Write { offset, len, .. } => (*offset, *len as u64),
        SectorPiece::Zero { offset, len } => (*offset, *len),
    };
    at < offset + data.len() as u64 && *offset < at + len
}

impl BlockDevice for RecordingDevice {
    fn size_bytes(&self) -> u64 {
        self.live.size_bytes()
    }

    fn alignment(&self) -> u64 {
        self.live.alignment()
    }

    fn refresh_size(&self) -> IoResult<u64> {
        self.live.refresh_size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.live.read_at(offset, buf)
    }

    /// Reads are not recorded (they change nothing a crash image holds): the live device
    /// serves the batch whole.
    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> IoResult<()> {
        self.live.read_batch(reads)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        let mut state = self.state.lock();
        self.live.write_at(offset, data)?;
        state.log.push(RecordedOp::Write {
            offset,
            data: Arc::from(data),
        });
        Ok(())
    }

    fn write_batch_fua(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        for &(offset, data) in writes {
            let mut state = self.state.lock();
            self.live.write_at(offset, data)?;
            state.log.push(RecordedOp::WriteFua {
                offset,
                data: Arc::from(data),
            });
        }
        Ok(())
    }

    fn flush(&self) -> IoResult<()> {
        let mut state = self.state.lock();
        self.live.flush()?;
        state.log.push(RecordedOp::Flush);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        let mut state = self.state.lock();
        self.live.discard(offset, len)?;
        state.log.push(RecordedOp::Discard { offset, len });
        Ok(())
    }
}
