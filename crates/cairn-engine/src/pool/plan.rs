//! Write plans: how a write lands on the device. A plan patches partial blocks at either end,
//! writes blocks allocated in the open transaction in place and places everything else on
//! fresh blocks that are mapped only after the device write succeeded.
//!
//! Invariants:
//! - A block is written in place only if it was allocated in the current transaction (then it
//!   is exclusively owned now and unknown to the durable state).
//! - All fresh blocks of a plan are allocated before any device write, so `NoSpace` leaves the
//!   volume untouched; a failed device write gives them back and maps nothing.

use std::borrow::Cow;

use cairn_io::BlockDevice;

use crate::error::{Error, Result};
use crate::format::Root;
use crate::limits::{BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE};
use crate::mapping::Piece;
use crate::meta::Meta;

use super::{State, Tier};

impl State {
    /// Plans a write at a logical-block-aligned offset. Partial 4 KiB blocks at either end are
    /// read and patched so the write covers whole blocks; blocks allocated in this transaction
    /// are written in place when `in_place` allows it, everything else goes to fresh blocks
    /// allocated here in one go, so `NoSpace` leaves the volume untouched.
    pub(super) fn plan_write<'d>(
        &mut self,
        seq: u64,
        offset: u64,
        data: &'d [u8],
        in_place: bool,
    ) -> Result<WritePlan<'d>> {
        let end = offset + data.len() as u64;
        let first_block = offset / BLOCK_SIZE_BYTES;
        let end_block = end.div_ceil(BLOCK_SIZE_BYTES);
        let buf: Cow<'d, [u8]> = if offset % BLOCK_SIZE_BYTES == 0 && end % BLOCK_SIZE_BYTES == 0 {
            Cow::Borrowed(data)
        } else {
            let mut buf = vec![0u8; ((end_block - first_block) * BLOCK_SIZE_BYTES) as usize];
            let last = buf.len() - BLOCK_SIZE_USIZE;
            if offset % BLOCK_SIZE_BYTES != 0 {
                self.read_blocks(
                    seq,
                    first_block,
                    first_block + 1,
                    &mut buf[..BLOCK_SIZE_USIZE],
                )?;
            }
            if end % BLOCK_SIZE_BYTES != 0
                && (end_block - 1 > first_block || offset % BLOCK_SIZE_BYTES == 0)
            {
                self.read_blocks(seq, end_block - 1, end_block, &mut buf[last..])?;
            }
            let at = (offset - first_block * BLOCK_SIZE_BYTES) as usize;
            buf[at..at + data.len()].copy_from_slice(data);
            Cow::Owned(buf)
        };
        let n = end_block - first_block;
        let root = self.vols[&seq].root;
        let mut in_place_pieces: Vec<Piece> = Vec::new();
        let mapped = if in_place {
            self.meta.map_lookup(root, first_block, first_block + n)?
        } else {
            Vec::new()
        };
        for (v, p, len) in mapped {
            let mut i = 0;
            while i < len {
                if self.meta.is_fresh(p + i)? {
                    let s = i;
                    while i < len && self.meta.is_fresh(p + i)? {
                        i += 1;
                    }
                    in_place_pieces.push((v + s, p + s, i - s));
                } else {
                    i += 1;
                }
            }
        }
        // Virtual runs that need fresh blocks: the complement of `in_place` in [first_block, first_block + n).
        let mut need: Vec<(u64, u64)> = Vec::new();
        let mut cursor = first_block;
        for &(v, _, len) in &in_place_pieces {
            if cursor < v {
                need.push((cursor, v - cursor));
            }
            cursor = v + len;
        }
        if cursor < first_block + n {
            need.push((cursor, first_block + n - cursor));
        }
        let total: u64 = need.iter().map(|x| x.1).sum();
        let hint = self.hints.get(&seq).copied().unwrap_or(0);
        let runs = if total > 0 {
            self.meta.alloc_data(total, hint)?
        } else {
            Vec::new()
        };
        if let Some(last) = runs.last() {
            self.hints.insert(seq, last.0 + last.1);
        }
        let placed = assign_runs(&need, &runs);
        Ok(WritePlan {
            seq,
            first_block,
            buf,
            in_place: in_place_pieces,
            placed,
            runs,
        })
    }

    /// Maps a written plan's fresh blocks, or gives them back if the device write failed.
    pub(super) fn finish_write(&mut self, plan: WritePlan<'_>, res: Result<()>) -> Result<()> {
        self.live()?;
        if let Err(e) = res {
            self.meta.unalloc_data(&plan.runs);
            return Err(e);
        }
        let seq = plan.seq;
        let root = self.vols[&seq].root;
        match self.meta_op(Tier::Ordinary, |meta| plan.map_into(meta, root)) {
            Ok(root) => {
                self.set_root(seq, root);
                Ok(())
            }
            Err(e) => {
                self.give_back(&plan);
                Err(e)
            }
        }
    }

    /// Returns the fresh blocks of a plan that was not mapped (`NoSpace` undid the change; any
    /// other error failed the pool, and a failed pool keeps nothing).
    pub(super) fn give_back(&mut self, plan: &WritePlan<'_>) {
        if self.healthy() {
            self.meta.unalloc_data(&plan.runs);
        }
    }
}

/// A planned write: whole blocks from `first_block`, the pieces written in place and the ones placed on
/// fresh blocks (`runs`, not yet mapped).
pub(super) struct WritePlan<'d> {
    seq: u64,
    first_block: u64,
    buf: Cow<'d, [u8]>,
    in_place: Vec<Piece>,
    placed: Vec<Piece>,
    runs: Vec<(u64, u64)>,
}

impl WritePlan<'_> {
    /// Maps the plan's fresh blocks into the tree at `root`; returns the new root.
    pub(super) fn map_into(&self, meta: &mut Meta, root: Root) -> Result<Root> {
        let mut root = root;
        for &(v, p, len) in &self.placed {
            root = meta.map_remove(root, v, v + len)?;
            root = meta.map_insert(root, v, p, len)?;
        }
        Ok(root)
    }

    /// The device writes of the plan (no pool state involved).
    pub(super) fn execute(&self, dev: &dyn BlockDevice) -> Result<()> {
        let mut writes: Vec<(u64, &[u8])> = Vec::new();
        for &(v, p, len) in self.in_place.iter().chain(self.placed.iter()) {
            let from = ((v - self.first_block) * BLOCK_SIZE_BYTES) as usize;
            writes.push((
                p * BLOCK_SIZE_BYTES,
                &self.buf[from..from + (len * BLOCK_SIZE_BYTES) as usize],
            ));
        }
        dev.write_batch(&writes).map_err(|e| {
            Error::io(
                format!("write data at volume block {}", self.first_block),
                e,
            )
        })
    }
}

/// Lays the allocated runs over the virtual runs that need blocks, in order.
fn assign_runs(need: &[(u64, u64)], runs: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut ri = 0;
    let mut used_in_run = 0;
    for &(v, len) in need {
        let mut left = len;
        let mut vpos = v;
        while left > 0 {
            let (rs, rl) = runs[ri];
            let take = (rl - used_in_run).min(left);
            out.push((vpos, rs + used_in_run, take));
            used_in_run += take;
            vpos += take;
            left -= take;
            if used_in_run == rl {
                ri += 1;
                used_in_run = 0;
            }
        }
    }
    out
}
