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
//!   has changed.
//! - A write-zeroes of more than one step (more than `UNMAP_ENTRIES_PER_STEP` extents) is all or
//!   nothing too: it holds every block of its volume, and its first step also keeps the
//!   volume's tree as it was in a tombstone of its own (one reference added, a directory
//!   record: a keeper, `State::keepers`). When a later step fails, the volume takes the kept
//!   tree back (no other write went into the volume meanwhile) and the partly zeroed tree
//!   becomes the tombstone; either way the keeper is queued for reclaim when the request ends.
//!   After a crash in the middle the keeper is an ordinary durable tombstone, reclaimed on open.
//! - A step whose commit for the dirty bound is refused with the pool healthy stands, and the
//!   request goes on (the rule of every data request, see `pool`).

use crate::error::{ErrorKind, Result};
use crate::format::{VF_DELETING, VF_HIDDEN};
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

/// What the first step of a request did.
#[derive(Debug, PartialEq, Eq)]
enum First {
    /// Applied; the request goes on from `Next`.
    Applied(Next),
    /// Nothing: a write-zeroes of more than one step must hold the whole volume first.
    WholeVolume,
}

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
        {
            let _blocks = self.inner.blocks.lock(id, first_block, end_block);
            if self.zero_steps(id, offset, len, how, false)? {
                return Ok(());
            }
        }
        // A write-zeroes of more than one step: no other write to the volume until it ends, so
        // giving the volume its kept tree back on failure loses nothing.
        let _volume = self.inner.blocks.lock(id, 0, u64::MAX);
        let r = self.zero_steps(id, offset, len, how, true);
        if let Ok((_gate, mut state)) = self.shared() {
            state.end_keeper(id, r.is_ok());
        }
        self.inner.wake.notify_all();
        let done = r?;
        assert!(done, "a request holding its whole volume runs to its end");
        Ok(())
    }

    /// Runs a request in steps; `Ok(false)` when it changed nothing and must hold the whole
    /// volume first (`whole` says whether it does).
    fn zero_steps(
        &self,
        id: VolumeId,
        offset: u64,
        len: u64,
        how: Zeroing,
        whole: bool,
    ) -> Result<bool> {
        let mut next: Next = None;
        let mut committed = false;
        loop {
            let (step, pending, too_dirty) = {
                let (_gate, mut state) = self.shared()?;
                let seq = state.io_target(id, offset, len, true)?;
                let step = match next {
                    None => state.first_zero_step(seq, offset, len, how, whole),
                    Some(from) => state
                        .unmap_step(seq, from, (offset + len) / BLOCK_SIZE_BYTES, how)
                        .map(First::Applied),
                };
                (step, state.meta.pending_blocks > 0, state.too_dirty())
            };
            match step {
                Ok(First::WholeVolume) => return Ok(false),
                Ok(First::Applied(None)) => {
                    return self.commit_if_too_dirty(too_dirty).map(|()| true)
                }
                Ok(First::Applied(Some(from))) => {
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
    fn first_zero_step(
        &mut self,
        seq: u64,
        offset: u64,
        len: u64,
        how: Zeroing,
        whole: bool,
    ) -> Result<First> {
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
                    return self.unmap_step(seq, from, to, how).map(First::Applied);
                }
                Ok(First::Applied(None))
            }
            Zeroing::WriteZeroes => self.zeroes_first_step(seq, &mapped, from, to, whole),
        }
    }

    fn block_mapped(&mut self, seq: u64, block: u64) -> Result<bool> {
        let root = self.vols[&seq].root;
        Ok(!self.meta.map_lookup(root, block, block + 1)?.is_empty())
    }

    /// Rewrites `[from, to)` of one block with zeros if there is room; trim is advisory.
    fn trim_partial(&mut self, seq: u64, from: u64, to: u64) -> Result<()> {
        let zeros = vec![0u8; (to - from) as usize];
        let mut plan = match self.plan_write(seq, from, &zeros, true) {
            Err(e) if e.kind() == ErrorKind::NoSpace => return Ok(()),
            r => r?,
        };
        let res = plan.execute(self.meta.dev.as_ref(), false);
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
    /// blocks and the first unmapping step, and, when more steps follow, the keeper of the
    /// volume's tree (only while the whole volume is held: `whole`). On any error nothing is
    /// mapped or unmapped.
    fn zeroes_first_step(
        &mut self,
        seq: u64,
        partial: &[(u64, u64)],
        from: u64,
        to: u64,
        whole: bool,
    ) -> Result<First> {
        let root = self.vols[&seq].root;
        let (stop, entries) = if from < to {
            self.meta
                .map_step_end(root, from, to, UNMAP_ENTRIES_PER_STEP)?
        } else {
            (to, 0)
        };
        let more = stop < to;
        if more && !whole {
            return Ok(First::WholeVolume);
        }
        if more {
            self.add_keeper(seq);
        }
        let r = self.zeroes_first_change(seq, partial, (from, stop, to), entries, more);
        if r.is_err() && more {
            self.drop_keeper(seq);
        }
        r.map(First::Applied)
    }

    /// The change of write-zeroes' first step: unmaps `[from, stop)` of `[from, to)` (after one
    /// reference added to the tree a keeper holds, when `kept`) and maps the partial blocks.
    fn zeroes_first_change(
        &mut self,
        seq: u64,
        partial: &[(u64, u64)],
        (from, stop, to): (u64, u64, u64),
        entries: usize,
        kept: bool,
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
        for plan in &mut plans {
            if let Err(e) = plan.execute(self.meta.dev.as_ref(), false) {
                return Err(self.give_back_all(&plans, e));
            }
        }
        let root = self.vols[&seq].root;
        let changed = self.meta_op(Tier::Ordinary, |meta| {
            // The keeper's reference first: the steps then shadow a shared tree and drop nothing
            // the kept tree still maps.
            if kept {
                meta.rc_inc(root.addr, 1)?;
            }
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

    /// Keeps volume `seq`'s tree in a new tombstone, not queued for reclaim yet.
    fn add_keeper(&mut self, seq: u64) {
        let rec = &self.vols[&seq];
        let (id, root, family) = (VolumeId(rec.id), rec.root, rec.family);
        assert!(
            root.addr != 0,
            "a write-zeroes of many steps has a tree to keep"
        );
        let mut keeper = self.new_record("", 0, 4096, VF_DELETING | VF_HIDDEN, None, root);
        keeper.family = family;
        let k = self.next_seq - 1;
        self.vols.insert(k, keeper);
        self.family_join(k);
        self.dirty_vols.insert(k);
        let before = self.keepers.insert(id, k);
        assert!(
            before.is_none(),
            "one keeper per volume (its blocks are held)"
        );
    }

    /// Removes the keeper of volume `seq` added in a step that was undone.
    fn drop_keeper(&mut self, seq: u64) {
        let id = VolumeId(self.vols[&seq].id);
        let k = self.keepers.remove(&id).expect("the keeper just added");
        self.family_leave(k);
        self.vols.remove(&k);
        self.dirty_vols.remove(&k);
    }

    /// Ends a write-zeroes of many steps on volume `id`: unless it was `applied` (and the
    /// volume still exists), the volume takes its kept tree back and the keeper takes the
    /// partly zeroed one; the keeper is then queued for reclaim. No-op without a keeper (the
    /// first step failed).
    fn end_keeper(&mut self, id: VolumeId, applied: bool) {
        let Some(k) = self.keepers.remove(&id) else {
            return;
        };
        if !applied {
            if let Ok(seq) = self.seq_of(id) {
                let (kept, partial) = (self.vols[&k].root, self.vols[&seq].root);
                self.set_root(seq, kept);
                self.set_root(k, partial);
                self.hints.remove(&seq);
            }
        }
        self.index_tombstone(k);
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
