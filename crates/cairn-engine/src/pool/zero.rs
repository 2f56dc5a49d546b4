//! Trim and write-zeroes: two paths over one stepping loop.
//!
//! Trim is advisory: it unmaps what it can. Write-zeroes is not a trim in disguise: a range it
//! acknowledges reads as zeros. Whole blocks are unmapped (an unmapped block reads as zeros);
//! partial blocks of 512-byte volumes are rewritten with zeros.
//!
//! Invariants:
//! - Both hold the blocks of the whole request (`ranges`) from start to end, and release the
//!   I/O gate and the pool mutex between steps; one step removes at most
//!   `UNMAP_ENTRIES_PER_STEP` mapping entries, so a request of another volume waits at most one
//!   step.
//! - Trim never answers `NoSpace`: a step that finds no metadata space ends the trim early,
//!   successfully, and a partial block it cannot rewrite keeps its data.
//! - Write-zeroes rewrites partial blocks to fresh blocks only (never in place) and maps them in
//!   the same metadata operation as its first unmapping step, so when that step fails nothing
//!   has changed. A later step (requests of more than `UNMAP_ENTRIES_PER_STEP` extents) that
//!   finds no metadata space answers `NoSpace` with the blocks before it already zeroed.

use crate::error::{ErrorKind, Result};
use crate::limits::{BLOCK_SIZE_BYTES, UNMAP_ENTRIES_PER_STEP};
use crate::types::VolumeId;

use super::data::block_span;
use super::plan::WritePlan;
use super::{Pool, State, Tier};

/// Which of the two paths a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zeroing {
    Trim,
    WriteZeroes,
}

/// Where the next step of a request starts: `None` when it is done.
type Next = Option<u64>;

impl Pool {
    /// Unmaps a range (advisory: it may keep data where space for the change is lacking, and
    /// never fails for lack of space).
    pub fn trim(&self, id: VolumeId, offset: u64, len: u64) -> Result<()> {
        self.zero(id, offset, len, Zeroing::Trim)
    }

    /// Makes a range read as zeros, or answers `NoSpace` having changed nothing.
    pub fn write_zeroes(&self, id: VolumeId, offset: u64, len: u64) -> Result<()> {
        self.zero(id, offset, len, Zeroing::WriteZeroes)
    }

    fn zero(&self, id: VolumeId, offset: u64, len: u64, how: Zeroing) -> Result<()> {
        if len == 0 {
            let state = self.live()?;
            state.io_target(id, offset, 0, true)?;
            return Ok(());
        }
        let (first_block, end_block) = block_span(offset, len);
        let _blocks = self.inner.blocks.lock(id, first_block, end_block);
        let mut next: Next = None;
        let mut committed = false;
        loop {
            let (step, pending, too_dirty) = {
                let (_gate, mut state) = self.shared()?;
                let seq = state.io_target(id, offset, len, true)?;
                let step = match next {
                    None => state.first_zero_step(seq, offset, len, how),
                    Some(from) => {
                        state.unmap_step(seq, from, (offset + len) / BLOCK_SIZE_BYTES, how)
                    }
                };
                (step, state.meta.pending_blocks > 0, state.too_dirty())
            };
            match step {
                Ok(None) => return self.commit_if_too_dirty(too_dirty),
                Ok(Some(from)) => {
                    next = Some(from);
                    self.commit_if_too_dirty(too_dirty)?;
                }
                // Blocks freed in this transaction (earlier steps' among them) become usable
                // once it is durable: commit once and try the step again.
                Err(e) if e.kind() == ErrorKind::NoSpace && pending && !committed => {
                    committed = true;
                    self.flush()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The whole blocks of a request and its partial pieces (byte ranges inside one block each).
fn split_request(offset: u64, len: u64) -> ((u64, u64), Vec<(u64, u64)>) {
    let end = offset + len;
    let whole = (offset.div_ceil(BLOCK_SIZE_BYTES), end / BLOCK_SIZE_BYTES);
    if whole.0 > whole.1 {
        // Start and end inside one block.
        return ((whole.0, whole.0), vec![(offset, end)]);
    }
    let mut partial = Vec::new();
    if offset % BLOCK_SIZE_BYTES != 0 {
        partial.push((offset, whole.0 * BLOCK_SIZE_BYTES));
    }
    if end % BLOCK_SIZE_BYTES != 0 {
        partial.push((whole.1 * BLOCK_SIZE_BYTES, end));
    }
    (whole, partial)
}

impl State {
    /// The first step of a request: its partial blocks and its first unmapping step.
    fn first_zero_step(&mut self, seq: u64, offset: u64, len: u64, how: Zeroing) -> Result<Next> {
        let ((from, to), partial) = split_request(offset, len);
        let mut mapped = Vec::with_capacity(partial.len());
        for (a, b) in partial {
            if self.block_mapped(seq, a / BLOCK_SIZE_BYTES)? {
                mapped.push((a, b));
            }
        }
        match how {
            Zeroing::Trim => {
                for &(a, b) in &mapped {
                    self.trim_partial(seq, a, b)?;
                }
                if from < to {
                    return self.unmap_step(seq, from, to, how);
                }
                Ok(None)
            }
            Zeroing::WriteZeroes => self.zeroes_first_step(seq, &mapped, from, to),
        }
    }

    fn block_mapped(&mut self, seq: u64, block: u64) -> Result<bool> {
        let root = self.vols[&seq].root;
        Ok(!self.meta.map_lookup(root, block, block + 1)?.is_empty())
    }

    /// Rewrites `[from, to)` of one block with zeros if there is room; trim is advisory.
    fn trim_partial(&mut self, seq: u64, from: u64, to: u64) -> Result<()> {
        let zeros = vec![0u8; (to - from) as usize];
        let plan = match self.plan_write(seq, from, &zeros, true) {
            Err(e) if e.kind() == ErrorKind::NoSpace => return Ok(()),
            r => r?,
        };
        let res = plan.execute(self.meta.dev.as_ref());
        match self.finish_write(plan, res) {
            Err(e) if e.kind() == ErrorKind::NoSpace => Ok(()),
            r => r,
        }
    }

    /// Unmaps whole blocks from `from` towards `to`, one bounded step.
    fn unmap_step(&mut self, seq: u64, from: u64, to: u64, how: Zeroing) -> Result<Next> {
        let root = self.vols[&seq].root;
        let (stop, entries) = self
            .meta
            .map_step_end(root, from, to, UNMAP_ENTRIES_PER_STEP)?;
        match self.meta_op(Tier::Ordinary, |meta| meta.map_remove(root, from, stop)) {
            Ok(root) => {
                self.set_root(seq, root);
                self.count_step(entries);
                Ok((stop < to).then_some(stop))
            }
            // Advisory: what is left stays mapped.
            Err(e) if e.kind() == ErrorKind::NoSpace && how == Zeroing::Trim => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write-zeroes' first step in one metadata operation: its partial blocks rewritten to fresh
    /// blocks and the first unmapping step. On any error nothing is mapped or unmapped.
    fn zeroes_first_step(
        &mut self,
        seq: u64,
        partial: &[(u64, u64)],
        from: u64,
        to: u64,
    ) -> Result<Next> {
        let zeros = vec![0u8; BLOCK_SIZE_BYTES as usize];
        let mut plans: Vec<WritePlan<'_>> = Vec::with_capacity(partial.len());
        for &(a, b) in partial {
            match self.plan_write(seq, a, &zeros[..(b - a) as usize], false) {
                Ok(plan) => plans.push(plan),
                Err(e) => return Err(self.give_back_all(&plans, e)),
            }
        }
        // At most two blocks, written under the lock: no other request waits on them long.
        for plan in &plans {
            if let Err(e) = plan.execute(self.meta.dev.as_ref()) {
                return Err(self.give_back_all(&plans, e));
            }
        }
        let root = self.vols[&seq].root;
        let (stop, entries) = if from < to {
            self.meta
                .map_step_end(root, from, to, UNMAP_ENTRIES_PER_STEP)?
        } else {
            (to, 0)
        };
        let changed = self.meta_op(Tier::Ordinary, |meta| {
            let mut root = root;
            if from < stop {
                root = meta.map_remove(root, from, stop)?;
            }
            for plan in &plans {
                root = plan.map_into(meta, root)?;
            }
            Ok(root)
        });
        match changed {
            Ok(root) => {
                self.set_root(seq, root);
                self.count_step(entries);
                Ok((stop < to).then_some(stop))
            }
            Err(e) => Err(self.give_back_all(&plans, e)),
        }
    }

    fn give_back_all(
        &mut self,
        plans: &[WritePlan<'_>],
        e: crate::error::Error,
    ) -> crate::error::Error {
        for plan in plans {
            self.give_back(plan);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_splits_into_whole_blocks_and_partial_pieces() {
        let b = BLOCK_SIZE_BYTES;
        assert_eq!(split_request(0, 2 * b), ((0, 2), vec![]));
        assert_eq!(split_request(512, 1024), ((1, 1), vec![(512, 1536)]));
        assert_eq!(
            split_request(512, 2 * b),
            ((1, 2), vec![(512, b), (2 * b, 2 * b + 512)])
        );
        assert_eq!(
            split_request(b, b + 512),
            ((1, 2), vec![(2 * b, 2 * b + 512)])
        );
        assert_eq!(split_request(b - 512, 512), ((1, 1), vec![(b - 512, b)]));
    }
}
