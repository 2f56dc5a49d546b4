//! Upgrade of an older-format pool to the current format, at a writable open.
//!
//! Format version 3 adds share epochs (superblock, volume records, mapping values; all zero
//! before): the upgrade sets the pool's epoch and every record's last share to 1, so no mapping
//! written before it is overwritten in place. Version-2 blocks are otherwise laid out as
//! version-3 ones, so a version-2 pool rewrites only its directory; a version-1 pool is first
//! rewritten whole, as below. Either way it is one transaction and its superblock the switch.
//!
//! Format version 2 stamps every metadata block with the pool UUID and every pointer to a
//! metadata block with the generation that wrote it, and its internal nodes hold 168 children
//! instead of 252. Since the engine never overwrites durable metadata, the upgrade rewrites
//! every metadata block into free space in one transaction, and its commit's superblock write
//! is the switch: until that write is durable the version-1 pool is intact (nothing it uses is
//! written), so a crash restarts the upgrade at the next open. There is never a mixed pool.
//!
//! - Volume trees are rewritten bottom-up, each node once however many trees share it, so the
//!   sharing is kept. A node that no longer fits is split into even pieces (at least half
//!   full), its parent takes every piece, and a root that splits gets a new level above. The
//!   references to each new volume node (parents and records) are counted as they are made.
//! - The directory is rewritten the same way, its records pointing at the new volume roots.
//! - The refcount tree is rebuilt: its entries for the old volume nodes give way to the counts
//!   of the new ones (above one); data counts are unchanged (leaves are rewritten one to one).
//! - Every indexed bitmap page is pinned and the space index emptied: the commit writes each
//!   page at a new block and indexes it in a new tree. All old blocks are freed, so they wait
//!   for the commit like any free (reclamation rule).
//!
//! Memory: the rewritten nodes stay dirty until the commit and the bitmap pages pinned, so an
//! upgrade holds the pool's metadata in memory once.

use std::collections::{BTreeSet, HashMap};

use super::Meta;
use crate::btree::{root_level, root_ptr};
use crate::error::{corrupt, err, ErrorKind, Result};
use crate::format::{Root, VolumeRecord, FORMAT_VERSION, VERSION_STAMPED};
use crate::limits::BTREE_HEIGHT_MAX;
use crate::node::{Node, Ptr, TreeKind, INTERNAL_CAPACITY};
use crate::refcount::{rc_entry, rc_val};

/// The new nodes replacing a subtree, at its level, each with the lower bound of its keys.
type Pieces = Vec<(u64, Ptr)>;

/// What the rewrite has done so far.
#[derive(Default)]
struct Rewrite {
    /// Old volume node -> its level and the pieces replacing it (a shared subtree is
    /// rewritten once).
    pieces: HashMap<u64, (u32, Pieces)>,
    /// Old volume root -> new root, so records sharing a root share the new one.
    roots: HashMap<u64, Root>,
    /// References to each new volume node, from new parents and records.
    refs: HashMap<u64, u32>,
    /// Blocks of the old metadata, freed once everything is rewritten.
    old: Vec<u64>,
}

impl Rewrite {
    fn add_ref(&mut self, addr: u64) {
        *self.refs.entry(addr).or_insert(0) += 1;
    }
}

impl Meta {
    /// Upgrades this pool, read as an older version, to [`FORMAT_VERSION`] and commits. Too
    /// little free space is `NoSpace` saying so; the pool on the device is then unchanged.
    pub(crate) fn upgrade(&mut self) -> Result<()> {
        assert!(
            self.id.version < FORMAT_VERSION && !self.is_dirty() && self.undo.is_none(),
            "upgrade of a clean, older pool"
        );
        let from = self.id.version;
        let r = self
            .rewrite_older(from)
            .and_then(|()| self.share_everything())
            .and_then(|()| self.commit(self.durable.clone()));
        r.map_err(|e| match e.kind() {
            ErrorKind::NoSpace => err(
                ErrorKind::NoSpace,
                format!(
                    "not enough free space to upgrade the pool from format version {from} to \
                     {FORMAT_VERSION} (it rewrites all metadata into free space): {}",
                    e.context()
                ),
            ),
            _ => e,
        })?;
        debug_assert_eq!(self.id.version, FORMAT_VERSION);
        Ok(())
    }

    /// Rewrites every metadata block when the layout changed (before version 2); version 2
    /// blocks are laid out as version 3 ones.
    fn rewrite_older(&mut self, from: u32) -> Result<()> {
        if from < VERSION_STAMPED {
            self.rewrite_all()?;
        }
        Ok(())
    }

    /// Starts the share epochs (version 3): the pool's epoch becomes 1 and so does every
    /// record's last share, so every mapping written before (epoch 0) counts as shared —
    /// an older pool does not say which blocks are exclusive — and is redirected when next
    /// written; what is written from now on is overwritten in place.
    fn share_everything(&mut self) -> Result<()> {
        debug_assert_eq!(self.share_epoch, 0, "an older pool has no share epoch");
        self.share_epoch = 1;
        let entries = self.range(TreeKind::Directory, self.dir_root, 0, u64::MAX, usize::MAX)?;
        let mut buf = vec![0u8; TreeKind::Directory.value_bytes()];
        for (seq, v) in entries {
            let mut rec = VolumeRecord::decode(&v)?;
            rec.share_epoch = 1;
            rec.encode(&mut buf);
            self.dir_root = self.insert(TreeKind::Directory, self.dir_root, seq, &buf)?;
        }
        Ok(())
    }

    fn rewrite_all(&mut self) -> Result<()> {
        let space_entries =
            self.range(TreeKind::Space, self.space_root, 0, u64::MAX, usize::MAX)?;
        for (p, _) in space_entries {
            self.load_page(p)?;
            self.dirty_page(p);
        }
        let mut rw = Rewrite::default();
        self.dir_root = self.rewrite_root(TreeKind::Directory, self.dir_root, &mut rw)?;
        self.rebuild_refcounts(&mut rw)?;
        let space_root = std::mem::take(&mut self.space_root);
        self.tree_nodes(TreeKind::Space, space_root, &mut rw.old)?;
        // Every indexed page is pinned: an unpinned page is unindexed, so all free, as the
        // empty index now says.
        for a in std::mem::take(&mut rw.old) {
            self.free_meta_block(a)?;
        }
        Ok(())
    }

    /// The new root replacing `root` (a volume root rewritten once for all records sharing it).
    fn rewrite_root(&mut self, kind: TreeKind, root: Root, rw: &mut Rewrite) -> Result<Root> {
        if root.addr == 0 {
            return Ok(root);
        }
        if let Some(&new) = rw.roots.get(&root.addr) {
            rw.add_ref(new.addr);
            return Ok(new);
        }
        let level = root_level(kind, root)?;
        let mut pieces = self.rewrite(kind, root_ptr(root), level, rw)?;
        let mut height = root.height;
        while pieces.len() > 1 {
            if height >= BTREE_HEIGHT_MAX {
                return Err(corrupt(format!(
                    "{kind:?} tree at {}: too high to upgrade",
                    root.addr
                )));
            }
            pieces = self.place_internal(kind, height, pieces, rw)?;
            height += 1;
        }
        let (_, p) = pieces[0];
        let new = Root {
            addr: p.addr,
            height,
            gen: p.gen,
        };
        if kind == TreeKind::Volume {
            rw.roots.insert(root.addr, new);
            rw.add_ref(new.addr);
        }
        Ok(new)
    }

    /// Rewrites the subtree `at` (at `level`) into current-version nodes.
    fn rewrite(&mut self, kind: TreeKind, at: Ptr, level: u32, rw: &mut Rewrite) -> Result<Pieces> {
        if let Some((at_level, p)) = rw.pieces.get(&at.addr) {
            if *at_level != level {
                return Err(corrupt(format!(
                    "{kind:?} node {} shared at levels {at_level} and {level}",
                    at.addr
                )));
            }
            return Ok(p.clone());
        }
        let n = self.node_at(kind, at, level)?;
        rw.old.push(at.addr);
        let pieces = if n.is_leaf() {
            let mut vals = n.vals.clone();
            if kind == TreeKind::Directory {
                self.rewrite_records(&mut vals, rw)
                    .map_err(|e| e.via_node(at.addr))?;
            }
            self.place_leaves(kind, &n.keys, &vals)?
        } else {
            let mut kids = Vec::with_capacity(n.len());
            for (i, &c) in n.children.iter().enumerate() {
                let sub = self
                    .rewrite(kind, c, level - 1, rw)
                    .map_err(|e| e.via_node(at.addr))?;
                // The first piece keeps this node's bound, the others their own first key.
                kids.extend(
                    sub.into_iter()
                        .enumerate()
                        .map(|(j, (k, p))| (if j == 0 { n.keys[i] } else { k }, p)),
                );
            }
            self.place_internal(kind, level, kids, rw)?
        };
        if kind == TreeKind::Volume {
            rw.pieces.insert(at.addr, (level, pieces.clone()));
        }
        Ok(pieces)
    }

    /// Points the directory records in `vals` at their rewritten volume trees.
    fn rewrite_records(&mut self, vals: &mut [u8], rw: &mut Rewrite) -> Result<()> {
        let vs = TreeKind::Directory.value_bytes();
        for v in vals.chunks_mut(vs) {
            let mut rec = VolumeRecord::decode(v)?;
            rec.root = self.rewrite_root(TreeKind::Volume, rec.root, rw)?;
            rec.encode(v);
        }
        Ok(())
    }

    /// Places leaf entries in as many new leaves as they need.
    fn place_leaves(&mut self, kind: TreeKind, keys: &[u64], vals: &[u8]) -> Result<Pieces> {
        let vs = kind.value_bytes();
        let mut out = Vec::new();
        for r in even_chunks(keys.len(), kind.leaf_capacity()) {
            let mut leaf = Node::new_leaf(kind);
            leaf.keys = keys[r.clone()].to_vec();
            leaf.vals = vals[r.start * vs..r.end * vs].to_vec();
            let first = leaf.keys.first().copied().unwrap_or(0);
            let addr = self.new_node(leaf)?;
            out.push((first, self.dirty_ptr(addr)));
        }
        Ok(out)
    }

    /// Places child pointers in as many new internal nodes at `level` as they need.
    fn place_internal(
        &mut self,
        kind: TreeKind,
        level: u32,
        kids: Pieces,
        rw: &mut Rewrite,
    ) -> Result<Pieces> {
        let mut out = Vec::new();
        for r in even_chunks(kids.len(), INTERNAL_CAPACITY) {
            let part = &kids[r];
            if kind == TreeKind::Volume {
                part.iter().for_each(|(_, p)| rw.add_ref(p.addr));
            }
            let node = Node {
                kind,
                level,
                keys: part.iter().map(|(k, _)| *k).collect(),
                children: part.iter().map(|(_, p)| *p).collect(),
                vals: Vec::new(),
                gen: 0,
            };
            let addr = self.new_node(node)?;
            out.push((part[0].0, self.dirty_ptr(addr)));
        }
        Ok(out)
    }

    /// Builds a new refcount tree: the old entries without the old volume nodes, plus the new
    /// volume nodes referenced more than once.
    fn rebuild_refcounts(&mut self, rw: &mut Rewrite) -> Result<()> {
        let old_root = std::mem::take(&mut self.rc_root);
        let entries = self.range(TreeKind::Refcount, old_root, 0, u64::MAX, usize::MAX)?;
        self.tree_nodes(TreeKind::Refcount, old_root, &mut rw.old)?;
        let old_nodes: BTreeSet<u64> = rw.pieces.keys().copied().collect();
        let mut out: Vec<(u64, u64, u32)> = Vec::with_capacity(entries.len() + rw.refs.len());
        for (k, v) in entries {
            let (len, count) = rc_entry(&v);
            let mut s = k;
            for &b in old_nodes.range(k..k.saturating_add(len)) {
                if b > s {
                    out.push((s, b - s, count));
                }
                s = b + 1;
            }
            if s < k + len {
                out.push((s, k + len - s, count));
            }
        }
        out.extend(
            rw.refs
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(&a, &n)| (a, 1, n)),
        );
        out.sort_unstable();
        for (s, l, c) in out {
            self.rc_root = self.insert(TreeKind::Refcount, self.rc_root, s, &rc_val(l, c))?;
        }
        Ok(())
    }

    /// Appends the addresses of every node of a tree (not shared: each reached once).
    fn tree_nodes(&mut self, kind: TreeKind, root: Root, out: &mut Vec<u64>) -> Result<()> {
        if root.addr == 0 {
            return Ok(());
        }
        let mut stack = vec![(root_ptr(root), root_level(kind, root)?)];
        while let Some((at, level)) = stack.pop() {
            let n = self.node_at(kind, at, level)?;
            out.push(at.addr);
            if !n.is_leaf() {
                stack.extend(n.children.iter().map(|&c| (c, level - 1)));
            }
            if out.len() as u64 > self.device_blocks {
                return Err(corrupt(format!("{kind:?} tree reaches a node twice")));
            }
        }
        Ok(())
    }
}

/// `len` items cut into the fewest runs of at most `cap`, of even sizes (so each run of a
/// split is at least half full); one empty run for no items.
fn even_chunks(len: usize, cap: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let k = len.div_ceil(cap).max(1);
    (0..k).map(move |i| len * i / k..len * (i + 1) / k)
}

#[cfg(test)]
mod tests {
    use super::even_chunks;

    #[test]
    fn chunks_are_even_and_within_capacity() {
        let runs: Vec<_> = even_chunks(169, 168).collect();
        assert_eq!(runs, vec![0..84, 84..169]);
        assert_eq!(even_chunks(168, 168).count(), 1);
        assert_eq!(even_chunks(0, 168).collect::<Vec<_>>(), vec![0..0]);
        for len in 1..600 {
            let runs: Vec<_> = even_chunks(len, 168).collect();
            assert!(runs.iter().all(|r| r.len() <= 168));
            assert!(runs.len() == 1 || runs.iter().all(|r| r.len() >= 84));
            assert_eq!(runs.last().unwrap().end, len);
        }
    }
}
