//! [`MemDevice`]: a block device held in memory, with fault injection for tests.
//!
//! It owns a sparse map of 4 KiB pages ([`SECTOR_BYTES`]); an absent page reads as zeros, so a large
//! device costs memory only for what was written. Pages are shared copy-on-write between a device
//! and its [`MemDevice::snapshot`]s, which makes copies of an image cheap (the recording device
//! builds many crash images from one log).
//!
//! Invariants:
//! - Every request is checked against the alignment and the size *as last refreshed* before it
//!   touches anything, like a file device: [`MemDevice::set_size`] changes the backing size (the
//!   file grew), [`BlockDevice::refresh_size`] makes the device see it.
//! - A request failed by the [`FaultPlan`] changes nothing: no data, no statistics.
//! - A page that is entirely zero after a full-page write or a discard is dropped from the map.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::limits::{ALIGNMENT_BYTES_MAX, ALIGNMENT_BYTES_MIN, SECTOR_BYTES};
use crate::stats::{Counters, IoStats};
use crate::{check_range, BlockDevice, IoError, IoErrorKind, IoResult};

const PAGE_BYTES: usize = SECTOR_BYTES as usize;
type Page = [u8; PAGE_BYTES];

/// Faults a [`MemDevice`] injects. The default injects none.
///
/// Counters count down as requests succeed: `writes_ok: Some(3)` lets three more writes through and
/// fails every write after them until the plan is changed. A failed request touches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// Writes that still succeed before writes start failing; `None`: writes never fail. Each write
    /// of a batch counts as one write.
    pub writes_ok: Option<u64>,
    /// What a failing write reports (for example [`IoErrorKind::Media`] for EIO, or
    /// [`IoErrorKind::NoSpace`] for a host file system that is full).
    pub write_error: IoErrorKind,
    /// When set, only writes overlapping this byte range count down and fail; others always succeed.
    pub write_range: Option<Range<u64>>,
    /// Every flush fails with [`IoErrorKind::Media`] while this is set.
    pub fail_flushes: bool,
    /// Reads that still succeed before reads start failing with [`IoErrorKind::Media`]; `None`:
    /// reads never fail.
    pub reads_ok: Option<u64>,
    /// When set, only reads overlapping this byte range count down and fail (a bad spot on
    /// the medium); others always succeed.
    pub read_range: Option<Range<u64>>,
}

impl Default for FaultPlan {
    fn default() -> FaultPlan {
        FaultPlan {
            writes_ok: None,
            write_error: IoErrorKind::Media,
            write_range: None,
            fail_flushes: false,
            reads_ok: None,
            read_range: None,
        }
    }
}

impl FaultPlan {
    /// Counts one write down; returns the error to report if this write must fail.
    fn on_write(&mut self, offset: u64, len: u64) -> IoResult<()> {
        if !overlaps(&self.write_range, offset, len) {
            return Ok(());
        }
        match &mut self.writes_ok {
            None => Ok(()),
            Some(0) => Err(IoError::new(self.write_error, "write", offset, len)),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    /// Counts one read down; returns the error to report if this read must fail.
    fn on_read(&mut self, offset: u64, len: u64) -> IoResult<()> {
        if !overlaps(&self.read_range, offset, len) {
            return Ok(());
        }
        match &mut self.reads_ok {
            None => Ok(()),
            Some(0) => Err(IoError::new(IoErrorKind::Media, "read", offset, len)),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }
}

/// Whether `offset..offset + len` meets the fault range (every request does when none is set).
fn overlaps(range: &Option<Range<u64>>, offset: u64, len: u64) -> bool {
    range
        .as_ref()
        .is_none_or(|r| offset < r.end && offset + len > r.start)
}

/// One piece of a request that falls inside one page.
struct Piece {
    page: u64,
    page_offset: usize,
    buf_offset: usize,
    len: usize,
}

/// Splits the byte range `offset..offset + len` at page boundaries.
fn pieces(offset: u64, len: u64) -> impl Iterator<Item = Piece> {
    let end = offset + len;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page = at / SECTOR_BYTES;
        let page_offset = (at % SECTOR_BYTES) as usize;
        let n = (PAGE_BYTES - page_offset).min((end - at) as usize);
        let piece = Piece {
            page,
            page_offset,
            buf_offset: (at - offset) as usize,
            len: n,
        };
        at += n as u64;
        Some(piece)
    })
}

/// An in-memory block device (sparse, 4 KiB pages), thread-safe, with fault injection.
///
/// ```
/// use cairn_io::{BlockDevice, MemDevice};
/// let dev = MemDevice::new(1 << 20);
/// dev.write_at(4096, &[7u8; 512]).unwrap();
/// let mut buf = [0u8; 512];
/// dev.read_at(4096, &mut buf).unwrap();
/// assert_eq!(buf, [7u8; 512]);
/// ```
#[derive(Debug)]
pub struct MemDevice {
    alignment: u64,
    /// The size requests are checked against (as of the last refresh).
    size_bytes: AtomicU64,
    /// The size of the simulated backing store, changed by `set_size`.
    backing_size_bytes: AtomicU64,
    pages: RwLock<HashMap<u64, Arc<Page>>>,
    faults: Mutex<FaultPlan>,
    counters: Counters,
}

impl MemDevice {
    /// A zero-filled device of `size_bytes` with 512-byte alignment.
    ///
    /// # Panics
    /// If `size_bytes` is not a multiple of 512 (a bug in the caller).
    pub fn new(size_bytes: u64) -> MemDevice {
        MemDevice::with_alignment(size_bytes, ALIGNMENT_BYTES_MIN)
    }

    /// A zero-filled device of `size_bytes` requiring `alignment` (a power of two from 512 to 4096).
    ///
    /// # Panics
    /// If `alignment` is not such a power of two or `size_bytes` is not a multiple of it.
    pub fn with_alignment(size_bytes: u64, alignment: u64) -> MemDevice {
        assert!(
            alignment.is_power_of_two()
                && (ALIGNMENT_BYTES_MIN..=ALIGNMENT_BYTES_MAX).contains(&alignment),
            "alignment {alignment} is not a power of two in 512..=4096"
        );
        assert!(
            size_bytes % alignment == 0,
            "size {size_bytes} is not a multiple of {alignment}"
        );
        MemDevice {
            alignment,
            size_bytes: AtomicU64::new(size_bytes),
            backing_size_bytes: AtomicU64::new(size_bytes),
            pages: RwLock::new(HashMap::new()),
            faults: Mutex::new(FaultPlan::default()),
            counters: Counters::default(),
        }
    }

    /// Changes the size of the simulated backing store, as if the pool file or device grew (or
    /// shrank). The device sees the new size after [`BlockDevice::refresh_size`], as a file device
    /// would. Shrinking drops the data past the new end.
    ///
    /// # Panics
    /// If `size_bytes` is not a multiple of the alignment.
    pub fn set_size(&self, size_bytes: u64) {
        assert!(
            size_bytes % self.alignment == 0,
            "size {size_bytes} is not a multiple of {}",
            self.alignment
        );
        let mut pages = self.pages.write();
        self.backing_size_bytes.store(size_bytes, Ordering::SeqCst);
        if size_bytes < self.size_bytes.load(Ordering::SeqCst) {
            self.size_bytes.store(size_bytes, Ordering::SeqCst);
        }
        let first_gone = size_bytes.div_ceil(SECTOR_BYTES);
        pages.retain(|&page, _| page < first_gone);
        if size_bytes % SECTOR_BYTES != 0 {
            if let Some(page) = pages.get_mut(&(size_bytes / SECTOR_BYTES)) {
                Arc::make_mut(page)[(size_bytes % SECTOR_BYTES) as usize..].fill(0);
            }
        }
    }

    /// Replaces the fault plan; counters in it start from the values given.
    pub fn set_faults(&self, plan: FaultPlan) {
        *self.faults.lock() = plan;
    }

    /// The current fault plan, with its counters as far as they have counted down.
    pub fn faults(&self) -> FaultPlan {
        self.faults.lock().clone()
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.set_faults(FaultPlan::default());
    }

    /// Lets `n` more writes succeed, then fails every write with [`IoErrorKind::Media`] (EIO).
    pub fn fail_writes_after(&self, n: u64) {
        let mut plan = self.faults.lock();
        plan.writes_ok = Some(n);
        plan.write_error = IoErrorKind::Media;
    }

    /// Lets `n` more writes succeed, then fails every write with [`IoErrorKind::NoSpace`] (ENOSPC
    /// from a full host file system).
    pub fn no_space_after(&self, n: u64) {
        let mut plan = self.faults.lock();
        plan.writes_ok = Some(n);
        plan.write_error = IoErrorKind::NoSpace;
    }

    /// Makes every flush fail with [`IoErrorKind::Media`] (`true`) or succeed again (`false`).
    pub fn fail_flushes(&self, fail: bool) {
        self.faults.lock().fail_flushes = fail;
    }

    /// Lets `n` more reads succeed, then fails every read with [`IoErrorKind::Media`].
    pub fn fail_reads_after(&self, n: u64) {
        self.faults.lock().reads_ok = Some(n);
    }

    /// Counts of the requests completed so far.
    pub fn stats(&self) -> IoStats {
        self.counters.get()
    }

    /// Bytes of memory held by written pages.
    pub fn resident_bytes(&self) -> u64 {
        self.pages.read().len() as u64 * SECTOR_BYTES
    }

    /// A copy of the device: same size, alignment and contents (pages shared copy-on-write), no
    /// faults, statistics from zero.
    pub fn snapshot(&self) -> MemDevice {
        let pages = self.pages.read();
        MemDevice {
            alignment: self.alignment,
            size_bytes: AtomicU64::new(self.size_bytes()),
            backing_size_bytes: AtomicU64::new(self.backing_size_bytes.load(Ordering::SeqCst)),
            pages: RwLock::new(pages.clone()),
            faults: Mutex::new(FaultPlan::default()),
            counters: Counters::default(),
        }
    }

    /// Writes `data` at `offset` without checks, faults or statistics (the caller checked).
    pub(crate) fn store(&self, offset: u64, data: &[u8]) {
        let mut pages = self.pages.write();
        for p in pieces(offset, data.len() as u64) {
            let src = &data[p.buf_offset..p.buf_offset + p.len];
            if p.len == PAGE_BYTES && src.iter().all(|&b| b == 0) {
                pages.remove(&p.page);
                continue;
            }
            let page = pages
                .entry(p.page)
                .or_insert_with(|| Arc::new([0u8; PAGE_BYTES]));
            Arc::make_mut(page)[p.page_offset..p.page_offset + p.len].copy_from_slice(src);
        }
    }

    /// Zeroes `offset..offset + len` without checks, faults or statistics, dropping whole pages.
    pub(crate) fn zero(&self, offset: u64, len: u64) {
        let mut pages = self.pages.write();
        for p in pieces(offset, len) {
            if p.len == PAGE_BYTES {
                pages.remove(&p.page);
            } else if let Some(page) = pages.get_mut(&p.page) {
                Arc::make_mut(page)[p.page_offset..p.page_offset + p.len].fill(0);
            }
        }
    }

    /// Reads into `buf` from `offset` without checks, faults or statistics (the caller checked).
    pub(crate) fn load(&self, offset: u64, buf: &mut [u8]) {
        let pages = self.pages.read();
        for p in pieces(offset, buf.len() as u64) {
            let dst = &mut buf[p.buf_offset..p.buf_offset + p.len];
            match pages.get(&p.page) {
                Some(page) => dst.copy_from_slice(&page[p.page_offset..p.page_offset + p.len]),
                None => dst.fill(0),
            }
        }
    }
}

impl BlockDevice for MemDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::SeqCst)
    }

    fn alignment(&self) -> u64 {
        self.alignment
    }

    fn refresh_size(&self) -> IoResult<u64> {
        let _pages = self.pages.write();
        let size = self.backing_size_bytes.load(Ordering::SeqCst);
        self.size_bytes.store(size, Ordering::SeqCst);
        Ok(size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        let len = buf.len() as u64;
        check_range("read", offset, len, self.alignment, self.size_bytes())?;
        self.faults.lock().on_read(offset, len)?;
        self.load(offset, buf);
        Counters::add(&self.counters.reads, 1);
        Counters::add(&self.counters.read_bytes, len);
        Ok(())
    }

    /// Checks every range first (a batch with one bad entry reads nothing), then reads the
    /// entries in order; a fault fails the batch at its entry.
    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> IoResult<()> {
        for (offset, buf) in reads.iter() {
            let len = buf.len() as u64;
            check_range("read", *offset, len, self.alignment, self.size_bytes())?;
        }
        for (offset, buf) in reads.iter_mut() {
            self.read_at(*offset, buf)?;
        }
        Counters::add(&self.counters.read_batches, 1);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        let len = data.len() as u64;
        check_range("write", offset, len, self.alignment, self.size_bytes())?;
        self.faults.lock().on_write(offset, len)?;
        self.store(offset, data);
        Counters::add(&self.counters.writes, 1);
        Counters::add(&self.counters.write_bytes, len);
        Ok(())
    }

    /// The memory is the media: a completed write is as durable as it gets.
    fn write_batch_fua(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.write_batch(writes)
    }

    fn flush(&self) -> IoResult<()> {
        if self.faults.lock().fail_flushes {
            return Err(IoError::new(IoErrorKind::Media, "flush", 0, 0));
        }
        Counters::add(&self.counters.flushes, 1);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        check_range("discard", offset, len, self.alignment, self.size_bytes())?;
        self.zero(offset, len);
        Counters::add(&self.counters.discards, 1);
        Counters::add(&self.counters.discard_bytes, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_shared_until_written() {
        let dev = MemDevice::new(1 << 20);
        dev.write_at(0, &[1u8; 8192]).unwrap();
        let copy = dev.snapshot();
        dev.write_at(0, &[2u8; 512]).unwrap();
        let mut buf = [0u8; 1024];
        copy.read_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 1));
        dev.read_at(0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 2) && buf[512..].iter().all(|&b| b == 1));
    }

    #[test]
    fn zero_pages_are_dropped() {
        let dev = MemDevice::new(1 << 20);
        dev.write_at(0, &[1u8; 8192]).unwrap();
        assert_eq!(dev.resident_bytes(), 8192);
        dev.write_at(0, &[0u8; 4096]).unwrap();
        assert_eq!(dev.resident_bytes(), 4096);
        dev.discard(4096, 4096).unwrap();
        assert_eq!(dev.resident_bytes(), 0);
    }

    #[test]
    fn growth_is_seen_after_refresh() {
        let dev = MemDevice::new(8192);
        dev.set_size(16384);
        assert_eq!(dev.size_bytes(), 8192);
        let err = dev.write_at(8192, &[1u8; 512]).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::InvalidRange);
        assert_eq!(dev.refresh_size().unwrap(), 16384);
        dev.write_at(8192, &[1u8; 512]).unwrap();
    }

    #[test]
    fn shrink_drops_data_past_the_end() {
        let dev = MemDevice::new(16384);
        dev.write_at(0, &[3u8; 16384]).unwrap();
        dev.set_size(4608);
        assert_eq!(dev.size_bytes(), 4608);
        dev.set_size(16384);
        dev.refresh_size().unwrap();
        let mut buf = vec![0u8; 16384];
        dev.read_at(0, &mut buf).unwrap();
        assert!(buf[..4608].iter().all(|&b| b == 3));
        assert!(buf[4608..].iter().all(|&b| b == 0));
    }

    #[test]
    fn write_faults_count_down_and_touch_nothing() {
        let dev = MemDevice::new(1 << 20);
        dev.no_space_after(2);
        dev.write_at(0, &[1u8; 512]).unwrap();
        dev.write_at(512, &[1u8; 512]).unwrap();
        let err = dev.write_at(1024, &[1u8; 512]).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NoSpace);
        let mut buf = [9u8; 512];
        dev.read_at(1024, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 512]);
        assert_eq!(dev.stats().writes, 2);
        dev.clear_faults();
        dev.write_at(1024, &[1u8; 512]).unwrap();
    }

    #[test]
    fn write_faults_limited_to_a_range() {
        let dev = MemDevice::new(1 << 20);
        dev.set_faults(FaultPlan {
            writes_ok: Some(0),
            write_range: Some(65536..131072),
            ..FaultPlan::default()
        });
        dev.write_at(0, &[1u8; 65536]).unwrap();
        let err = dev.write_at(61440, &[1u8; 8192]).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::Media);
        dev.write_at(131072, &[1u8; 512]).unwrap();
    }

    #[test]
    fn flush_and_read_faults() {
        let dev = MemDevice::new(1 << 20);
        dev.fail_flushes(true);
        assert_eq!(dev.flush().unwrap_err().kind, IoErrorKind::Media);
        dev.fail_flushes(false);
        dev.flush().unwrap();
        dev.fail_reads_after(1);
        let mut buf = [0u8; 512];
        dev.read_at(0, &mut buf).unwrap();
        assert_eq!(
            dev.read_at(0, &mut buf).unwrap_err().kind,
            IoErrorKind::Media
        );
    }
}
