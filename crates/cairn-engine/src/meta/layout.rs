//! Layout: where allocations land, and which parts of a pool file have backing storage.
//!
//! The pool is cut into chunks of `chunk_blocks` (a power of two, `CHUNK_BLOCKS_MIN` to
//! `CHUNK_BLOCKS_MAX`, so a small pool still has `POOL_CHUNKS_MIN` of them). What the allocator
//! guarantees:
//! - **Backed before use**: a data run is placed only in chunks preallocated first (fallocate in
//!   a pool file; a host that refuses leaves the chunk a hole, and a data write there may fail
//!   alone), so writes do not land in holes; a metadata block outside the reserve room is placed
//!   only where the host gave backing (its chunk, or the block alone), else its call answers
//!   `NoSpace`. With whole-file preallocation every chunk is backed from the start.
//! - **Metadata apart from data**: metadata takes the reserve room after the superblocks first;
//!   past it, whole chunks taken from the end of the device downwards, while data grows upwards
//!   from the room, so the two meet only in a nearly full pool.
//! - **Small redirects near their neighbour**: a write of at most `SMALL_REDIRECT_BLOCKS_MAX`
//!   fresh blocks goes right after the physical block of its virtual neighbour when a free run
//!   of its length lies within `NEAR_WINDOW_BLOCKS` of it, else on its volume's stream.
//! - **Large writes by extent size**: a write of at least `LARGE_WRITE_BLOCKS_MIN` fresh blocks
//!   takes free runs of at least `LARGE_RUN_BLOCKS_MAX` blocks (or its whole length) first; only
//!   when the pool has none left does it take shorter pieces.
//! - **Freed space given back only when not soon reused**: after a commit, a chunk its frees
//!   left wholly free is punched out (discarded) unless it is the chunk the allocator fills now,
//!   it lies in the reserve room, an online check still reads the frozen state, or the pool is
//!   preallocated whole. Freed blocks in chunks still in use stay backed: they are reused next.
//!
//! Nothing here is on disk: the chunk map is rebuilt as allocations touch chunks after an open
//! (preallocating a backed range again costs the host nothing).

use crate::error::{err, ErrorKind, Result};
use crate::limits::BLOCK_SIZE_BYTES;
use crate::limits::{
    CHUNK_BLOCKS_MAX, CHUNK_BLOCKS_MIN, LARGE_RUN_BLOCKS_MAX, LARGE_WRITE_BLOCKS_MIN,
    NEAR_WINDOW_BLOCKS, POOL_CHUNKS_MIN, SMALL_REDIRECT_BLOCKS_MAX,
};

use super::{Meta, PAGE_BITS};

/// Which chunks of the device are known to have backing storage in this opening.
#[derive(Debug)]
pub struct Backing {
    chunk_blocks: u64,
    /// One bit per chunk.
    chunks: Vec<u64>,
    /// The whole device is preallocated (`PoolOptions::preallocate`): nothing is punched.
    whole: bool,
    /// The chunk metadata past the reserve room is taken from now.
    meta_chunk: Option<u64>,
}

/// The chunk size of a pool of `device_blocks`.
pub fn chunk_blocks_for(device_blocks: u64) -> u64 {
    let per = (device_blocks / POOL_CHUNKS_MIN).max(1);
    // The largest power of two not above `per`, within the bounds.
    (1u64 << (63 - per.leading_zeros())).clamp(CHUNK_BLOCKS_MIN, CHUNK_BLOCKS_MAX)
}

impl Backing {
    pub fn new(device_blocks: u64, whole: bool) -> Backing {
        let chunk_blocks = chunk_blocks_for(device_blocks);
        let n = device_blocks.div_ceil(chunk_blocks);
        Backing {
            chunk_blocks,
            chunks: vec![0; n.div_ceil(64) as usize],
            whole,
            meta_chunk: None,
        }
    }

    #[cfg(test)]
    pub fn chunk_blocks(&self) -> u64 {
        self.chunk_blocks
    }

    fn is_backed(&self, c: u64) -> bool {
        self.whole || self.chunks[(c / 64) as usize] >> (c % 64) & 1 == 1
    }

    fn set(&mut self, c: u64, v: bool) {
        let w = &mut self.chunks[(c / 64) as usize];
        if v {
            *w |= 1 << (c % 64);
        } else {
            *w &= !(1 << (c % 64));
        }
    }
}

impl Meta {
    /// Starts the chunk map again for the device's size now (after a grow); `preallocated`:
    /// the whole device is backed.
    pub(crate) fn reset_backing(&mut self, preallocated: bool) {
        self.backing = Backing::new(self.device_blocks, preallocated);
    }

    /// Blocks `[a, b)` of chunk `c`, clipped to the device and past the reserve room.
    fn chunk_range(&self, c: u64) -> (u64, u64) {
        let cs = self.backing.chunk_blocks;
        let a = (c * cs).max(self.reserve_region_end());
        (a, ((c + 1) * cs).min(self.device_blocks))
    }

    /// Preallocates chunk `c` unless it is known backed; whether it is backed now.
    fn back_chunk(&mut self, c: u64) -> bool {
        if self.backing.is_backed(c) {
            return true;
        }
        let cs = self.backing.chunk_blocks;
        let (a, b) = (c * cs, ((c + 1) * cs).min(self.device_blocks));
        let done = self
            .dev
            .preallocate(a * BLOCK_SIZE_BYTES, (b - a) * BLOCK_SIZE_BYTES);
        if let Err(e) = &done {
            tracing::debug!("preallocating blocks {a}..{b}: {e}");
        }
        self.backing.set(c, done.is_ok());
        done.is_ok()
    }

    /// Backs the chunks of freshly allocated data runs before anything is written to them. A
    /// host that refuses leaves them holes: a write there may then fail, that request alone.
    pub(super) fn back_data_runs(&mut self, runs: &[(u64, u64)]) {
        let cs = self.backing.chunk_blocks;
        for &(s, l) in runs {
            for c in s / cs..=(s + l - 1) / cs {
                self.back_chunk(c);
            }
        }
    }

    /// Makes sure block `b`, outside the preallocated reserve room, has backing storage before
    /// metadata is written to it (a full host file system must not fail a metadata write): its
    /// chunk, or `b` alone when the host has less room; `NoSpace` when the host refuses even
    /// that (nothing is allocated then).
    pub(super) fn back_meta_block(&mut self, b: u64) -> Result<()> {
        assert!(
            b < self.device_blocks,
            "metadata block {b} inside the device"
        );
        if self.back_chunk(b / self.backing.chunk_blocks) {
            return Ok(());
        }
        self.dev
            .preallocate(b * BLOCK_SIZE_BYTES, BLOCK_SIZE_BYTES)
            .map_err(|e| {
                err(
                    ErrorKind::NoSpace,
                    format!("backing storage for metadata block {b}"),
                )
                .with_source(e)
            })
    }

    /// A free block for metadata past the reserve room: in the chunk metadata fills now, else
    /// in the highest chunk below it with a free block, else in the highest one above it.
    pub(super) fn find_meta_overflow(&mut self) -> Result<Option<u64>> {
        let top = (self.device_blocks - 1) / self.backing.chunk_blocks;
        let start = self.backing.meta_chunk.unwrap_or(top).min(top);
        for c in (0..=start).rev().chain((start + 1..=top).rev()) {
            let (a, b) = self.chunk_range(c);
            if a >= b {
                continue;
            }
            if let Some((x, _)) = self.find_run_in(1, a, b, 1)? {
                self.backing.meta_chunk = Some(c);
                return Ok(Some(x));
            }
        }
        Ok(None)
    }

    /// A run of exactly `want` free blocks within `NEAR_WINDOW_BLOCKS` after `near`, for a small
    /// write (see the module documentation); `None` when there is none or the write is large.
    pub(super) fn find_near(&mut self, want: u64, near: u64) -> Result<Option<(u64, u64)>> {
        let lo = self.reserve_region_end();
        if want > SMALL_REDIRECT_BLOCKS_MAX || near < lo || near >= self.device_blocks {
            return Ok(None);
        }
        let hi = (near + NEAR_WINDOW_BLOCKS).min(self.device_blocks);
        Ok(self
            .find_run_in(want, near, hi, want)?
            .filter(|r| r.1 == want))
    }

    /// The shortest run a data allocation of `want` blocks takes while longer ones exist.
    pub(super) fn run_min_for(want: u64) -> u64 {
        if want >= LARGE_WRITE_BLOCKS_MIN {
            want.min(LARGE_RUN_BLOCKS_MAX)
        } else {
            1
        }
    }

    /// Chunks to punch out once the transaction is durable (see the module documentation):
    /// those its freed data runs touch that hold no allocated block now, nor one the next
    /// transaction freed (the durable state still maps those). A chunk whose bitmap
    /// pages are not all in memory is kept (the check must not read, and keeping is safe).
    pub(super) fn chunks_to_punch(&self, freed: &[(u64, u64)]) -> Vec<(u64, u64)> {
        if self.backing.whole || self.frees_held > 0 {
            return Vec::new();
        }
        let cs = self.backing.chunk_blocks;
        let filling = self.data_cursor / cs;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut last = None;
        for &(s, l) in freed {
            for c in s / cs..=(s + l - 1) / cs {
                if last == Some(c) || c == filling {
                    continue;
                }
                last = Some(c);
                let (a, b) = (c * cs, ((c + 1) * cs).min(self.device_blocks));
                if a < self.reserve_region_end() || !self.all_free(a, b) {
                    continue;
                }
                match out.last_mut() {
                    Some(run) if run.0 + run.1 == a => run.1 += b - a,
                    _ => out.push((a, b - a)),
                }
            }
        }
        out
    }

    /// Forgets the backing of punched chunks.
    pub(super) fn punched(&mut self, runs: &[(u64, u64)]) {
        let cs = self.backing.chunk_blocks;
        for &(s, l) in runs {
            for c in s / cs..(s + l).div_ceil(cs) {
                self.backing.set(c, false);
                if self.backing.meta_chunk == Some(c) {
                    self.backing.meta_chunk = None;
                }
            }
        }
    }

    /// Whether every block of `[a, b)` is free, from the pages in memory (`false` if one of
    /// them is not).
    fn all_free(&self, a: u64, b: u64) -> bool {
        let mut x = a;
        while x < b {
            let p = x / PAGE_BITS;
            let Some(pg) = self.pages.get(&p).or_else(|| self.clean_pages.peek(p)) else {
                return false;
            };
            let end = b.min((p + 1) * PAGE_BITS);
            if !pg.range_free(x % PAGE_BITS, end - p * PAGE_BITS) {
                return false;
            }
            x = end;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_io::MemDevice;

    use super::*;
    use crate::btree::tests::{test_meta, test_meta_on};
    use crate::meta::Use;

    #[test]
    fn metadata_past_the_room_fills_chunks_from_the_device_end() {
        let mut m = test_meta(4096);
        let (room, cs) = (m.reserve_region_end(), m.backing.chunk_blocks());
        assert_eq!(cs, CHUNK_BLOCKS_MIN);
        while m.alloc_meta().unwrap() < room - 1 {}
        let top: Vec<u64> = (0..cs).map(|_| m.alloc_meta().unwrap()).collect();
        assert!(
            top.iter().all(|&b| b >= 4096 - cs),
            "{top:?} in the last chunk"
        );
        let next = m.alloc_meta().unwrap();
        assert!(
            (4096 - 2 * cs..4096 - cs).contains(&next),
            "then the chunk below: {next}"
        );
        let data = m.alloc_data(16, 0).unwrap();
        assert_eq!(data, vec![(room, 16)], "data grows up from the room");
    }

    #[test]
    fn large_writes_take_runs_of_their_length_small_ones_fill_holes() {
        let mut m = test_meta(8192);
        let lo = m.reserve_region_end();
        m.alloc_data(1000, lo).unwrap();
        m.commit(m.durable.clone()).unwrap();
        // Holes of 4 blocks every 40 blocks, reusable once the commit is durable.
        for b in (lo + 10..lo + 1000).step_by(40) {
            m.free(b, 4, Use::Data).unwrap();
        }
        m.commit(m.durable.clone()).unwrap();
        let large = m.alloc_data(100, lo).unwrap();
        assert_eq!(large, vec![(lo + 1000, 100)], "one run past the holes");
        let small = m.alloc_data(8, lo).unwrap();
        assert_eq!(
            small,
            vec![(lo + 10, 4), (lo + 50, 4)],
            "small writes fill holes"
        );
    }

    #[test]
    fn a_small_write_goes_next_to_its_neighbour_when_there_is_room() {
        let mut m = test_meta(8192);
        let lo = m.reserve_region_end();
        m.alloc_data(400, lo).unwrap();
        assert_eq!(
            m.alloc_data_near(2, Some(lo + 500), lo).unwrap(),
            vec![(lo + 500, 2)]
        );
        // No room within the window after the neighbour: its stream instead.
        let got = m.alloc_data_near(2, Some(lo + 10), lo + 400).unwrap();
        assert_eq!(got, vec![(lo + 400, 2)]);
        // A large write ignores the neighbour.
        let got = m.alloc_data_near(64, Some(lo + 600), lo + 402).unwrap();
        assert_eq!(got, vec![(lo + 402, 64)]);
    }

    #[test]
    fn wholly_free_chunks_are_punched_others_and_the_one_being_filled_kept() {
        let dev = Arc::new(MemDevice::new(8192 * 4096));
        let mut m = test_meta_on(dev.clone());
        let cs = m.backing.chunk_blocks();
        assert_eq!(cs, 256);
        let lo = m.reserve_region_end();
        m.alloc_data(4 * cs - lo + 40, lo).unwrap();
        m.commit(m.durable.clone()).unwrap();
        // Frees everything from chunk 1 on but one block of chunk 2; chunk 4 is being filled.
        m.free(cs, cs + 88, Use::Data).unwrap();
        m.free(2 * cs + 89, 2 * cs + 40 - 89, Use::Data).unwrap();
        let before = dev.stats().discard_bytes;
        m.commit(m.durable.clone()).unwrap();
        assert_eq!(
            dev.stats().discard_bytes - before,
            2 * cs * 4096,
            "chunks 1 and 3"
        );
        assert!(m.freed_data.is_empty());
    }

    #[test]
    fn a_preallocated_pool_punches_nothing() {
        let dev = Arc::new(MemDevice::new(8192 * 4096));
        let mut m = test_meta_on(dev.clone());
        m.reset_backing(true);
        let lo = m.reserve_region_end();
        m.alloc_data(2048, lo).unwrap();
        m.commit(m.durable.clone()).unwrap();
        m.free(lo, 2048, Use::Data).unwrap();
        m.commit(m.durable.clone()).unwrap();
        assert_eq!(dev.stats().discard_bytes, 0);
    }

    #[test]
    fn chunks_are_powers_of_two_within_bounds() {
        assert_eq!(chunk_blocks_for(1024), CHUNK_BLOCKS_MIN);
        assert_eq!(chunk_blocks_for(16384 * 4), 1024);
        assert_eq!(chunk_blocks_for((16 << 30) / 4096), CHUNK_BLOCKS_MAX);
        assert_eq!(chunk_blocks_for(1 << 40), CHUNK_BLOCKS_MAX);
        assert!(chunk_blocks_for(100_000).is_power_of_two());
    }
}
