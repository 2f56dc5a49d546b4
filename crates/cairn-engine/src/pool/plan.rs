//! Write plans: how a write lands on the device. A plan patches partial blocks at either end,
//! writes the blocks its volume owns exclusively in place and places everything else on fresh
//! blocks that are mapped only after the device write succeeded.
//!
//! Invariants:
//! - A block is written in place only if its mapping was written in its volume's last share
//!   epoch or later (`State::share`): then no snapshot, clone or restore has shared it since
//!   it was written, so the volume owns it exclusively now and in every durable commit since
//!   (or it was allocated in the open transaction, unknown to the durable state). A crash
//!   before the next flush leaves each of its sectors old or new; a redirected write is old
//!   or new as a whole (its mapping commits after its data is flushed).
//! - A write larger than `SMALL_REDIRECT_BLOCKS_MAX` blocks that would land in more than two
//!   pieces, some in place and some on fresh blocks (a sequential write over a range that small
//!   writes after a snapshot left scattered), goes to fresh blocks whole when the pool has room
//!   for that: one device write and one extent instead of a piece per fragment, and the blocks
//!   it owned are freed by the remap like any other. Without room it is planned as above.
//! - Fresh blocks are placed as `meta::layout` says: a small write next to its virtual
//!   neighbour's block when there is room, else on its volume's stream (`State::hints`).
//! - All fresh blocks of a plan are allocated before any device write, so `NoSpace` leaves the
//!   volume untouched; a failed device write gives them back and maps nothing.

use std::borrow::Cow;

use cairn_io::BlockDevice;

use crate::error::{Error, ErrorKind, Result};
use crate::format::Root;
use crate::limits::{BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE, SMALL_REDIRECT_BLOCKS_MAX};
use crate::mapping::Piece;
use crate::meta::Meta;

use super::{State, Tier};

impl State {
    /// Plans a write at a logical-block-aligned offset. Partial 4 KiB blocks at either end are
    /// read and patched so the write covers whole blocks; blocks the volume owns exclusively
    /// are written in place when `in_place` allows it, everything else goes to fresh blocks
    /// allocated here in one go, so `NoSpace` leaves the volume untouched.
    pub(super) fn plan_write<'d>(
        &mut self,
        seq: u64,
        offset: u64,
        data: &'d [u8],
        in_place: bool,
    ) -> Result<WritePlan<'d>> {
        let first_block = offset / BLOCK_SIZE_BYTES;
        let end_block = (offset + data.len() as u64).div_ceil(BLOCK_SIZE_BYTES);
        let buf = self.whole_blocks(seq, offset, data)?;
        // One lookup covers the write's blocks and the one before them, whose physical block
        // places a small write next to it.
        let rec = &self.vols[&seq];
        let (root, since) = (rec.root, rec.share_epoch);
        let mapped =
            (self.meta).map_lookup_epochs(root, first_block.saturating_sub(1), end_block)?;
        let mut in_place_pieces = if in_place {
            exclusive_pieces(&mapped, since, first_block)
        } else {
            Vec::new()
        };
        let mut need = complement(&in_place_pieces, first_block, end_block);
        let blocks = end_block - first_block;
        let runs = if scattered(&in_place_pieces, &need, blocks) {
            let whole = [(first_block, blocks)];
            match self.alloc_fresh(seq, &whole, &mapped) {
                Ok(runs) => {
                    in_place_pieces.clear();
                    need = whole.to_vec();
                    runs
                }
                // No room for all of it: the blocks it owns are overwritten in place after all.
                Err(e) if e.kind() == ErrorKind::NoSpace => {
                    self.alloc_fresh(seq, &need, &mapped)?
                }
                Err(e) => return Err(e),
            }
        } else {
            self.alloc_fresh(seq, &need, &mapped)?
        };
        let placed = assign_runs(&need, &runs);
        let durable = placed.is_empty() && self.all_durable(&in_place_pieces)?;
        Ok(WritePlan {
            seq,
            first_block,
            buf,
            in_place: in_place_pieces,
            placed,
            runs,
            durable,
            fua: false,
        })
    }

    /// `data` at `offset` widened to whole 4 KiB blocks: borrowed when already aligned, else
    /// the partial blocks at either end are read and patched.
    fn whole_blocks<'d>(&mut self, seq: u64, offset: u64, data: &'d [u8]) -> Result<Cow<'d, [u8]>> {
        let end = offset + data.len() as u64;
        if offset % BLOCK_SIZE_BYTES == 0 && end % BLOCK_SIZE_BYTES == 0 {
            return Ok(Cow::Borrowed(data));
        }
        let first_block = offset / BLOCK_SIZE_BYTES;
        let end_block = end.div_ceil(BLOCK_SIZE_BYTES);
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
        Ok(Cow::Owned(buf))
    }

    /// Allocates the fresh blocks for the virtual runs `need` of volume `seq` in one go (a small
    /// write right after the physical block its virtual neighbour is mapped to, when `mapped`
    /// maps it; else on the volume's stream) and moves the stream's hint past them.
    fn alloc_fresh(
        &mut self,
        seq: u64,
        need: &[(u64, u64)],
        mapped: &[(Piece, u64)],
    ) -> Result<Vec<(u64, u64)>> {
        let total: u64 = need.iter().map(|x| x.1).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        let hint = self.hints.get(&seq).copied().unwrap_or(0);
        let v = need[0].0;
        let near = (total <= SMALL_REDIRECT_BLOCKS_MAX && v > 0)
            .then(|| phys_of(mapped, v - 1))
            .flatten()
            .map(|p| p + 1);
        let runs = self.meta.alloc_data_near(total, near, hint)?;
        if let Some(last) = runs.last() {
            self.hints.insert(seq, last.0 + last.1);
        }
        Ok(runs)
    }

    /// Whether every block of `pieces` is mapped in the last durable commit: none was allocated
    /// in the open transaction (a block mapped now and allocated before it was mapped at that
    /// commit, to the same virtual block: remapping always takes a fresh block).
    fn all_durable(&mut self, pieces: &[Piece]) -> Result<bool> {
        for &(_, p, len) in pieces {
            for b in p..p + len {
                if self.meta.is_fresh(b)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Maps a written plan's fresh blocks, or gives them back if the device write failed.
    pub(super) fn finish_write(&mut self, plan: WritePlan<'_>, res: Result<()>) -> Result<()> {
        self.live()?;
        if let Err(e) = res {
            self.meta.unalloc_data(&plan.runs);
            return Err(e);
        }
        if plan.writes_in_place() && !plan.fua {
            self.data_unflushed = true;
        }
        if plan.placed.is_empty() {
            // Written in place only: no mapping changes, no metadata space needed.
            return Ok(());
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

    /// Maps the fresh blocks of several written plans (every device write succeeded) of one
    /// volume in one metadata operation: one undo log, so a node the remaps share is copied for
    /// it once, not once per write. Returns whether it did; if not (a plan of another volume,
    /// the pool refusing I/O, or the operation undone), nothing changed and each plan is to be
    /// finished alone ([`State::finish_write`]), which gives each the result it would get alone.
    pub(super) fn finish_together(&mut self, plans: &[&WritePlan<'_>]) -> bool {
        let Some(seq) = plans.first().map(|plan| plan.seq) else {
            return true;
        };
        if plans.iter().any(|plan| plan.seq != seq) || self.live().is_err() {
            return false;
        }
        let root = self.vols[&seq].root;
        let mapped = self.meta_op(Tier::Ordinary, |meta| {
            plans
                .iter()
                .try_fold(root, |root, plan| plan.map_into(meta, root))
        });
        let Ok(root) = mapped else {
            return false;
        };
        self.set_root(seq, root);
        if plans.iter().any(|plan| plan.writes_in_place() && !plan.fua) {
            self.data_unflushed = true;
        }
        true
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
    /// Everything is written in place over blocks whose mappings are durable: once the data
    /// is, the write is (a FUA write needs no commit).
    durable: bool,
    /// The device writes were FUA (set by `execute`): durable when they completed.
    fua: bool,
}

impl WritePlan<'_> {
    /// Maps the plan's fresh blocks into the tree at `root`; returns the new root.
    pub(super) fn map_into(&self, meta: &mut Meta, root: Root) -> Result<Root> {
        let mut root = root;
        for &(v, p, len) in &self.placed {
            root = meta.map_replace(root, v, p, len)?;
        }
        Ok(root)
    }

    /// Whether the plan writes in place over durable mappings only (see `durable`).
    pub(super) fn is_durable_in_place(&self) -> bool {
        self.durable
    }

    /// Whether the plan writes any block in place.
    pub(super) fn writes_in_place(&self) -> bool {
        !self.in_place.is_empty()
    }

    /// The device writes of the plan (no pool state involved); with `fua` each is durable
    /// when this returns.
    pub(super) fn execute(&mut self, dev: &dyn BlockDevice, fua: bool) -> Result<()> {
        self.fua = fua;
        let mut writes = Vec::new();
        self.device_writes(&mut writes);
        let res = if fua {
            dev.write_batch_fua(&writes)
        } else {
            dev.write_batch(&writes)
        };
        res.map_err(|e| {
            Error::io(
                format!("write data at volume block {}", self.first_block),
                e,
            )
        })
    }

    /// Appends the device writes of the plan (device byte offset, whole blocks) to `out`.
    pub(super) fn device_writes<'a>(&'a self, out: &mut Vec<(u64, &'a [u8])>) {
        for &(v, p, len) in self.in_place.iter().chain(self.placed.iter()) {
            let from = ((v - self.first_block) * BLOCK_SIZE_BYTES) as usize;
            out.push((
                p * BLOCK_SIZE_BYTES,
                &self.buf[from..from + (len * BLOCK_SIZE_BYTES) as usize],
            ));
        }
    }
}

/// The pieces of `mapped` from `first_block` on that the volume owns exclusively: written in
/// its last share's epoch `since` or later, so no snapshot, clone or restore has shared them
/// since, in memory or in any durable commit. (A reference count of one would not say that: a
/// sharer may have dropped its reference in the open transaction while the durable state still
/// shares the block.)
fn exclusive_pieces(mapped: &[(Piece, u64)], since: u64, first_block: u64) -> Vec<Piece> {
    mapped
        .iter()
        .filter(|&&(_, epoch)| epoch >= since)
        .filter_map(|&((v, p, len), _)| {
            let skip = first_block.saturating_sub(v);
            (len > skip).then(|| (v + skip, p + skip, len - skip))
        })
        .collect()
}

/// The physical block `mapped` maps virtual block `v` to, if it does.
fn phys_of(mapped: &[(Piece, u64)], v: u64) -> Option<u64> {
    mapped
        .iter()
        .find(|&&((pv, _, len), _)| pv <= v && v - pv < len)
        .map(|&((pv, p, _), _)| p + (v - pv))
}

/// Whether a write of `blocks` blocks, larger than a small write, would land in more than two
/// pieces, some in place and some on fresh blocks: then it goes to fresh blocks whole (see the
/// module doc).
fn scattered(in_place: &[Piece], need: &[(u64, u64)], blocks: u64) -> bool {
    blocks > SMALL_REDIRECT_BLOCKS_MAX
        && !in_place.is_empty()
        && !need.is_empty()
        && in_place.len() + need.len() > 2
}

/// The virtual runs of `[first_block, end_block)` that the in-place pieces (sorted, disjoint,
/// inside the range) leave uncovered: the ones that need fresh blocks.
fn complement(in_place: &[Piece], first_block: u64, end_block: u64) -> Vec<(u64, u64)> {
    let mut need = Vec::new();
    let mut cursor = first_block;
    for &(v, _, len) in in_place {
        debug_assert!(
            v >= cursor && v + len <= end_block,
            "pieces sorted, disjoint, inside"
        );
        if cursor < v {
            need.push((cursor, v - cursor));
        }
        cursor = v + len;
    }
    if cursor < end_block {
        need.push((cursor, end_block - cursor));
    }
    need
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
