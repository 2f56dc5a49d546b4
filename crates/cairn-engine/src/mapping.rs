//! A volume's mapping: virtual block -> physical extent, kept in a volume tree.
//!
//! Entries never overlap: entry `v -> (p, n)` maps virtual blocks `[v, v + n)` to physical blocks
//! `[p, p + n)`. Every mapped physical block holds one reference per distinct leaf mapping it
//! (see `refcount.rs`). Tree changes happen before reference drops, so shadowing a shared leaf
//! has propagated its references by the time one is dropped.
//!
//! Each entry also records the pool share epoch it was written in (`format::SHARE_EPOCH_MAX`
//! bounds it): pieces split off an entry keep its epoch, and an entry is extended only by a
//! mapping of the same epoch, so an extent never passes older, possibly shared blocks for newer,
//! exclusive ones. An epoch past the pool's is corruption.

use crate::btree::{extent_epoch, extent_of, extent_val, root_level, root_ptr};
use crate::error::{corrupt, Result};
use crate::format::Root;
use crate::limits::EXTENT_BLOCKS_MAX;
use crate::meta::{Meta, Use};
use crate::node::TreeKind;

const K: TreeKind = TreeKind::Volume;

/// One mapped piece: virtual block, physical block, length in blocks.
pub type Piece = (u64, u64, u64);

impl Meta {
    /// Mapped pieces within `[vs, ve)`, clipped to it, in order.
    pub fn map_lookup(&mut self, root: Root, vs: u64, ve: u64) -> Result<Vec<Piece>> {
        Ok(self
            .map_lookup_epochs(root, vs, ve)?
            .into_iter()
            .map(|(piece, _)| piece)
            .collect())
    }

    /// Mapped pieces within `[vs, ve)`, clipped to it, in order, each with the share epoch its
    /// mapping was written in.
    pub fn map_lookup_epochs(&mut self, root: Root, vs: u64, ve: u64) -> Result<Vec<(Piece, u64)>> {
        let raw = self.map_entries(root, vs, ve)?;
        // Clipped, in order and apart, as the entries are in a sound tree; anything else (a
        // checksum-valid leaf that says otherwise) is corruption, never an index past a buffer.
        // So is an epoch past the pool's: it would pass a shared block for an exclusive one.
        let mut pieces = Vec::with_capacity(raw.len());
        let mut next = vs;
        for (k, p, n, epoch) in raw {
            let a = k.max(vs);
            let sound = n > 0 && a >= next && a < ve && p.checked_add(n).is_some();
            let Some(end) = k.checked_add(n).filter(|_| sound) else {
                return Err(corrupt(format!(
                    "volume tree: extent {k} -> ({p}, {n}) overlaps, is empty or wraps"
                )));
            };
            if epoch > self.share_epoch {
                return Err(corrupt(format!(
                    "volume tree: extent {k} -> ({p}, {n}) of share epoch {epoch}, the pool's is {}",
                    self.share_epoch
                )));
            }
            let b = end.min(ve);
            pieces.push(((a, p + (a - k), b - a), epoch));
            next = b;
        }
        Ok(pieces)
    }

    /// The entries reaching into `[vs, ve)`, unclipped: key, physical block, length, epoch.
    fn map_entries(&mut self, root: Root, vs: u64, ve: u64) -> Result<Vec<(u64, u64, u64, u64)>> {
        // One descent: the entry reaching in from the left (if any), then those starting inside.
        let mut entries = Vec::new();
        for (k, v) in self.range_le(K, root, vs, ve)? {
            let (p, n) = extent_of(&v);
            if k >= vs || k.saturating_add(n) > vs {
                entries.push((k, p, n, extent_epoch(&v)));
            }
        }
        Ok(entries)
    }

    /// Unmaps `[vs, ve)`, dropping one reference from each physical block unmapped and freeing
    /// the ones no longer referenced. Returns the new root.
    pub fn map_remove(&mut self, root: Root, vs: u64, ve: u64) -> Result<Root> {
        let mut root = root;
        // The pieces left of and right of the range keep the epoch they were written in.
        for (k, p, n, epoch) in self.map_entries(root, vs, ve)? {
            root = if k < vs {
                self.insert(K, root, k, &extent_val(p, vs - k, epoch))?
            } else {
                self.remove(K, root, k)?.0
            };
            if k + n > ve {
                root = self.insert(K, root, ve, &extent_val(p + (ve - k), k + n - ve, epoch))?;
            }
            let a = k.max(vs);
            let b = (k + n).min(ve);
            self.drop_data(p + (a - k), b - a)?;
        }
        Ok(root)
    }

    /// Where a bounded unmapping step from `from` towards `to` ends: after at most
    /// `entries_max` entries starting in `[from, to)` (and the one reaching in from the left).
    /// Returns the end and the number of entries the step covers at most.
    pub fn map_step_end(
        &mut self,
        root: Root,
        from: u64,
        to: u64,
        entries_max: usize,
    ) -> Result<(u64, usize)> {
        assert!(entries_max > 0 && from < to, "an empty unmapping step");
        let starting = self.range(K, root, from, to, entries_max + 1)?;
        if starting.len() <= entries_max {
            return Ok((to, starting.len() + 1));
        }
        let end = starting[entries_max].0;
        assert!(end > from, "entry keys increase");
        Ok((end, entries_max + 1))
    }

    /// Drops one reference from each block of a data run; frees what is left unreferenced.
    pub fn drop_data(&mut self, phys: u64, len: u64) -> Result<()> {
        for (s, l) in self.rc_dec(phys, len)? {
            self.free(s, l, Use::Data)?;
        }
        Ok(())
    }

    /// Maps `[vs, vs + len)` to `[phys, phys + len)`, written in the pool's current share epoch,
    /// in place of whatever was mapped there: one reference is dropped from each block unmapped
    /// and the ones left unreferenced are freed, after every tree change (see the module doc).
    /// The preceding entry is extended instead when it ends exactly there on both sides and was
    /// written in the same epoch (an extent has one epoch: merging an older mapping into a newer
    /// one would pass its shared blocks for exclusive ones). One descent finds every entry
    /// involved, and an entry whose key stays is rewritten in place rather than removed and
    /// inserted. Returns the new root.
    pub fn map_replace(&mut self, root: Root, vs: u64, phys: u64, len: u64) -> Result<Root> {
        assert!(len > 0, "an empty remap at volume block {vs}");
        let ve = vs + len;
        let epoch = self.share_epoch;
        let mut left = None;
        let mut left_trimmed = false;
        let mut inside = Vec::new();
        let mut right = None;
        let mut drops = Vec::new();
        let mut next = 0;
        // The entry left of `vs` (ending before it, at it or past it) and those starting inside.
        for (k, v) in self.range_le(K, root, vs.saturating_sub(1), ve)? {
            let ((p, n), e) = (extent_of(&v), extent_epoch(&v));
            let sound = n > 0 && k >= next && p.checked_add(n).is_some() && e <= epoch;
            let Some(end) = k.checked_add(n).filter(|_| sound) else {
                return Err(corrupt(format!(
                    "volume tree: extent {k} -> ({p}, {n}) of share epoch {e} overlaps, is \
                     empty, wraps or is past the pool's epoch {epoch}"
                )));
            };
            next = end;
            let from = k.max(vs);
            if end > from {
                drops.push((p + (from - k), end.min(ve) - from));
            }
            if end > ve {
                right = Some((p + (ve - k), end - ve, e));
            }
            if k < vs {
                left_trimmed = end > vs;
                left = Some((k, p, end.min(vs) - k, e));
            } else {
                inside.push(k);
            }
        }
        let mut root = root;
        let merged = left.filter(|&(k, p, n, e)| {
            k + n == vs && p + n == phys && n + len <= EXTENT_BLOCKS_MAX && e == epoch
        });
        if let Some((k, p, n, _)) = merged {
            root = self.insert(K, root, k, &extent_val(p, n + len, epoch))?;
        } else {
            if let Some((k, p, n, e)) = left.filter(|_| left_trimmed) {
                root = self.insert(K, root, k, &extent_val(p, n, e))?;
            }
            root = self.insert(K, root, vs, &extent_val(phys, len, epoch))?;
        }
        for k in inside {
            // Key `vs` was just rewritten, unless the new mapping went into the entry before.
            if k != vs || merged.is_some() {
                root = self.remove(K, root, k)?.0;
            }
        }
        if let Some((p, n, e)) = right {
            root = self.insert(K, root, ve, &extent_val(p, n, e))?;
        }
        for (p, n) in drops {
            self.drop_data(p, n)?;
        }
        Ok(root)
    }

    /// Drops part of a deleted volume's tree, at most about `budget` entries; returns what is
    /// left (empty when done). A subtree still shared with another volume is released with one
    /// decrement and never walked. Nodes left behind may be under-full: a tombstone tree is only
    /// ever dropped, never searched.
    /// It also stops once `dirty_pages` reaches `pages_max` (each dirty bitmap page costs the
    /// commit a block).
    pub fn drop_tree_step(
        &mut self,
        root: Root,
        budget: &mut usize,
        pages_max: usize,
    ) -> Result<Root> {
        if root.addr == 0 {
            return Ok(root);
        }
        if self.rc_get(root.addr)? > 1 {
            let freed = self.rc_dec(root.addr, 1)?;
            assert!(freed.is_empty(), "shared node freed by one decrement");
            *budget = budget.saturating_sub(1);
            return Ok(Root::default());
        }
        let level = root_level(K, root)?;
        let node = self.node_at(K, root_ptr(root), level)?;
        if node.is_leaf() {
            for i in 0..node.len() {
                let (p, n) = extent_of(node.val(i));
                self.drop_data(p, n)?;
            }
            *budget = budget.saturating_sub(node.len().max(1));
            self.free_meta_block(root.addr)?;
            return Ok(Root::default());
        }
        let a = self.cow(K, root.addr)?;
        let (budget_before, pages_before) = (*budget, self.dirty_pages());
        while *budget > 0 && self.dirty_pages() < pages_max {
            let Some(&last) = self.node(K, a)?.children.last() else {
                break;
            };
            let child = Root {
                addr: last.addr,
                height: root.height - 1,
                gen: last.gen,
            };
            let left = self
                .drop_tree_step(child, budget, pages_max)
                .map_err(|e| e.via_node(root.addr))?;
            let n = self.dirty_mut(a);
            if left.addr == 0 {
                n.children.pop();
                n.keys.pop();
            } else {
                *n.children.last_mut().expect("non-empty") = root_ptr(left);
            }
        }
        assert!(
            *budget < budget_before || budget_before == 0 || pages_before >= pages_max,
            "a reclaim step with budget and pages left makes progress"
        );
        if self.node(K, a)?.len() == 0 {
            self.free_meta_block(a)?;
            return Ok(Root::default());
        }
        Ok(Root {
            addr: a,
            height: root.height,
            gen: self.txn_gen(),
        })
    }
}
