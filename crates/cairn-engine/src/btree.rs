//! The one copy-on-write B+tree of the engine (u64 keys, fixed-size values per [`TreeKind`]).
//!
//! Every modification shadows the path from the root: a node that is not dirty (not allocated in
//! this transaction) is copied to a fresh block first. For volume trees, whose nodes may be
//! shared between volumes (snapshots), shadowing a node whose reference count is above one adds
//! a reference to everything it points to (child nodes or data extents) and drops one from the
//! old node (lazy propagation, Rodeh 2008); a node with count one is simply freed.
//!
//! Invariants kept: keys strictly increasing in a node; internal key `i > 0` is a lower bound of
//! every key under child `i` and above every key under child `i - 1`; all leaves at level 0 and
//! every child one level below its parent; non-root nodes at least half full (except in the
//! tombstone trees `drop_tree_step` leaves behind); a root internal node has two or more
//! children; an empty tree has root address 0 and height 0, a non-empty one a height of at most
//! `BTREE_HEIGHT_MAX`.
//!
//! Every descent reads a child through [`Meta::node_at`] with the level and (format version 2)
//! the generation its parent gives it, so a CRC-valid but cyclic, mis-levelled or stale tree
//! read from disk is a `Corrupt` error naming the tree path (root first), never an endless
//! recursion or a silently wrong answer: the expected level falls by one per step, and a block
//! left from an earlier write of the address carries another generation than its pointer.
//! Pointers to nodes of the open transaction carry [`Meta::txn_gen`], the generation that
//! writes them.

use std::sync::Arc;

use crate::error::{corrupt, Result};
use crate::format::{get_u64, Root};
use crate::limits::BTREE_HEIGHT_MAX;
use crate::meta::Meta;
use crate::node::{Node, Ptr, TreeKind};

/// A (key, value) entry returned by lookups.
pub type Entry = (u64, Vec<u8>);

impl Meta {
    /// The value stored under `key`.
    pub fn get(&mut self, kind: TreeKind, root: Root, key: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_le(kind, root, key)?
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v))
    }

    /// The entry with the largest key not above `key`.
    pub fn get_le(&mut self, kind: TreeKind, root: Root, key: u64) -> Result<Option<Entry>> {
        if root.addr == 0 {
            return Ok(None);
        }
        let level = root_level(kind, root)?;
        self.le_rec(kind, root_ptr(root), level, key)
    }

    /// The node `at` points to, placed at `level` by its parent (or the root's height). A node
    /// of another level, or an internal node without children, is corrupt: this is what bounds
    /// every descent by the tree height, whatever the device holds. In a version-2 pool a node
    /// written by another generation than its pointer expects is corrupt too (stale).
    pub fn node_at(&mut self, kind: TreeKind, at: Ptr, level: u32) -> Result<Arc<Node>> {
        debug_assert!(level < BTREE_HEIGHT_MAX, "descent below the height bound");
        let addr = at.addr;
        let n = self.node(kind, addr).map_err(|e| e.via_node(addr))?;
        if self.id.stamped() && n.gen != at.gen {
            return Err(corrupt(format!(
                "{kind:?} node {addr} at level {level}: written by generation {}, its parent \
                 expects {} (a stale or misplaced block)",
                n.gen, at.gen
            ))
            .via_node(addr));
        }
        if n.level != level {
            return Err(corrupt(format!(
                "{kind:?} node {addr} at level {} where its parent expects {level}",
                n.level
            ))
            .via_node(addr));
        }
        if !n.is_leaf() && n.len() == 0 {
            return Err(
                corrupt(format!("{kind:?} node {addr}: empty internal node")).via_node(addr),
            );
        }
        Ok(n)
    }

    fn le_rec(&mut self, kind: TreeKind, at: Ptr, level: u32, key: u64) -> Result<Option<Entry>> {
        let addr = at.addr;
        let n = self.node_at(kind, at, level)?;
        if n.is_leaf() {
            let i = n.keys.partition_point(|k| *k <= key);
            return Ok((i > 0).then(|| (n.keys[i - 1], n.val(i - 1).to_vec())));
        }
        let i = n.child_index(key);
        let found = self
            .le_rec(kind, n.children[i], level - 1, key)
            .map_err(|e| e.via_node(addr))?;
        if found.is_some() || i == 0 {
            return Ok(found);
        }
        self.last_rec(kind, n.children[i - 1], level - 1)
            .map_err(|e| e.via_node(addr))
    }

    fn last_rec(&mut self, kind: TreeKind, at: Ptr, level: u32) -> Result<Option<Entry>> {
        let addr = at.addr;
        let n = self.node_at(kind, at, level)?;
        if n.is_leaf() {
            return Ok(n.keys.last().map(|k| (*k, n.val(n.len() - 1).to_vec())));
        }
        let last = *n
            .children
            .last()
            .expect("node_at refuses empty internal nodes");
        self.last_rec(kind, last, level - 1)
            .map_err(|e| e.via_node(addr))
    }

    /// Entries with keys in `[lo, hi)`, in key order, at most `limit` of them.
    pub fn range(
        &mut self,
        kind: TreeKind,
        root: Root,
        lo: u64,
        hi: u64,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        if root.addr != 0 && lo < hi {
            let level = root_level(kind, root)?;
            self.range_rec(kind, (root_ptr(root), level), lo, hi, limit, &mut out)?;
        }
        debug_assert!(out.len() <= limit);
        in_key_order(kind, out)
    }

    /// Appends the entries of the subtree at `at` (pointer, level) in `[lo, hi)` to `out`.
    fn range_rec(
        &mut self,
        kind: TreeKind,
        at: (Ptr, u32),
        lo: u64,
        hi: u64,
        limit: usize,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let (ptr, level) = at;
        let addr = ptr.addr;
        let n = self.node_at(kind, ptr, level)?;
        if n.is_leaf() {
            let from = n.keys.partition_point(|k| *k < lo);
            for i in from..n.len() {
                if n.keys[i] >= hi || out.len() >= limit {
                    break;
                }
                out.push((n.keys[i], n.val(i).to_vec()));
            }
            return Ok(());
        }
        for i in n.child_index(lo)..n.len() {
            if (i > 0 && n.keys[i] >= hi) || out.len() >= limit {
                break;
            }
            self.range_rec(kind, (n.children[i], level - 1), lo, hi, limit, out)
                .map_err(|e| e.via_node(addr))?;
        }
        Ok(())
    }

    /// The entry with the largest key not above `lo` (when there is one), then the entries with
    /// keys in `(lo, hi)`, in key order: what a lookup of `[lo, hi)` in an extent tree needs, in
    /// one descent. The entry left of `lo` lies in another subtree only when `lo` precedes every
    /// key of its leaf; then the nearest left subtree is walked down its right edge as well.
    pub fn range_le(&mut self, kind: TreeKind, root: Root, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        if root.addr != 0 && lo < hi {
            let level = root_level(kind, root)?;
            self.range_le_rec(kind, (root_ptr(root), level), None, lo, hi, &mut out)?;
        }
        in_key_order(kind, out)
    }

    /// [`Meta::range_le`] below `at`; `left` is the nearest subtree left of `at` (pointer, level).
    fn range_le_rec(
        &mut self,
        kind: TreeKind,
        at: (Ptr, u32),
        left: Option<(Ptr, u32)>,
        lo: u64,
        hi: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let (ptr, level) = at;
        let addr = ptr.addr;
        let n = self.node_at(kind, ptr, level)?;
        if n.is_leaf() {
            let from = n.keys.partition_point(|k| *k <= lo);
            if from > 0 {
                out.push((n.keys[from - 1], n.val(from - 1).to_vec()));
            } else if let Some((l, l_level)) = left {
                out.extend(self.last_rec(kind, l, l_level)?);
            }
            let upto = n.keys.partition_point(|k| *k < hi).max(from);
            out.extend((from..upto).map(|i| (n.keys[i], n.val(i).to_vec())));
            return Ok(());
        }
        let c = n.child_index(lo);
        let left = if c > 0 {
            Some((n.children[c - 1], level - 1))
        } else {
            left
        };
        self.range_le_rec(kind, (n.children[c], level - 1), left, lo, hi, out)
            .map_err(|e| e.via_node(addr))?;
        for i in c + 1..n.len() {
            if n.keys[i] >= hi {
                break;
            }
            self.range_rec(kind, (n.children[i], level - 1), lo, hi, usize::MAX, out)
                .map_err(|e| e.via_node(addr))?;
        }
        Ok(())
    }

    /// Makes the node at `addr` writable in this transaction; returns its (possibly new) address.
    pub fn cow(&mut self, kind: TreeKind, addr: u64) -> Result<u64> {
        if self.dirty.contains_key(&addr) {
            return Ok(addr);
        }
        let old = self.node(kind, addr)?;
        let new = self.new_node((*old).clone())?;
        if kind == TreeKind::Volume && self.rc_get(addr)? > 1 {
            self.propagate_refs(&old)?;
            let freed = self.rc_dec(addr, 1)?;
            assert!(
                freed.is_empty(),
                "shared node {addr} freed by one decrement"
            );
        } else {
            self.free_meta_block(addr)?;
        }
        Ok(new)
    }

    /// Adds one reference to everything `node` points to (it is being copied). Physically
    /// adjacent targets are merged into one range first, so a leaf of sequentially written
    /// extents costs one refcount update, not one per extent.
    pub fn propagate_refs(&mut self, node: &Node) -> Result<()> {
        let mut runs: Vec<(u64, u64)> = if node.is_leaf() {
            (0..node.len()).map(|i| extent_of(node.val(i))).collect()
        } else {
            node.children.iter().map(|c| (c.addr, 1)).collect()
        };
        runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (s, l) in runs {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == s && last.1 + l <= u64::from(u32::MAX) => {
                    last.1 += l
                }
                _ => merged.push((s, l)),
            }
        }
        for (s, l) in merged {
            self.rc_inc(s, l)?;
        }
        Ok(())
    }

    /// Inserts or replaces `key`; returns the new root.
    pub fn insert(&mut self, kind: TreeKind, root: Root, key: u64, val: &[u8]) -> Result<Root> {
        assert_eq!(val.len(), kind.value_bytes());
        if root.addr == 0 {
            let mut leaf = Node::new_leaf(kind);
            leaf.keys.push(key);
            leaf.vals.extend_from_slice(val);
            let addr = self.new_node(leaf)?;
            return Ok(self.dirty_root(addr, 1));
        }
        let level = root_level(kind, root)?;
        let (addr, split) = self.insert_rec(kind, root_ptr(root), level, key, val)?;
        let Some((sep, right)) = split else {
            return Ok(self.dirty_root(addr, root.height));
        };
        // Half-full nodes make even a 2^48-block device's trees far lower than the bound.
        assert!(
            root.height < BTREE_HEIGHT_MAX,
            "{kind:?} tree grows past {BTREE_HEIGHT_MAX} levels"
        );
        let first = self.node(kind, addr)?.keys[0];
        let top = Node {
            kind,
            level: root.height,
            keys: vec![first, sep],
            children: vec![self.dirty_ptr(addr), self.dirty_ptr(right)],
            vals: Vec::new(),
            gen: 0,
        };
        let addr = self.new_node(top)?;
        Ok(self.dirty_root(addr, root.height + 1))
    }

    /// A pointer to the node at `addr`, allocated in the open transaction.
    pub fn dirty_ptr(&self, addr: u64) -> Ptr {
        debug_assert!(self.dirty.contains_key(&addr), "node {addr} is not dirty");
        Ptr {
            addr,
            gen: self.txn_gen(),
        }
    }

    /// The root of a tree whose root node, at `addr`, is allocated in the open transaction.
    fn dirty_root(&self, addr: u64, height: u32) -> Root {
        Root {
            addr,
            height,
            gen: self.dirty_ptr(addr).gen,
        }
    }

    fn insert_rec(
        &mut self,
        kind: TreeKind,
        at: Ptr,
        level: u32,
        key: u64,
        val: &[u8],
    ) -> Result<(u64, Option<(u64, u64)>)> {
        let addr = at.addr;
        // Checked before the node is shadowed: a corrupt node is refused, not copied.
        self.node_at(kind, at, level)?;
        let a = self.cow(kind, addr)?;
        let (is_leaf, child) = {
            let n = self.node(kind, a)?;
            debug_assert_eq!(n.level, level, "shadowing keeps the level");
            (n.is_leaf(), (!n.is_leaf()).then(|| n.child_index(key)))
        };
        if is_leaf {
            let vs = kind.value_bytes();
            let n = self.dirty_mut(a);
            match n.keys.binary_search(&key) {
                Ok(i) => n.vals[i * vs..(i + 1) * vs].copy_from_slice(val),
                Err(i) => {
                    n.keys.insert(i, key);
                    n.vals.splice(i * vs..i * vs, val.iter().copied());
                }
            }
        } else {
            let i = child.expect("internal");
            if key < self.node(kind, a)?.keys[0] {
                // Keep key 0 a lower bound too, so a split of child 0 stays in order.
                self.dirty_mut(a).keys[0] = key;
            }
            let c = self.node(kind, a)?.children[i];
            let (nc, split) = self
                .insert_rec(kind, c, level - 1, key, val)
                .map_err(|e| e.via_node(addr))?;
            let (nc, right) = (
                self.dirty_ptr(nc),
                split.map(|(s, r)| (s, self.dirty_ptr(r))),
            );
            // A dirty child changed in place leaves this node as it is: it is not touched (nor
            // copied for the operation's undo log).
            if nc != c || right.is_some() {
                let n = self.dirty_mut(a);
                n.children[i] = nc;
                if let Some((sep, right)) = right {
                    n.keys.insert(i + 1, sep);
                    n.children.insert(i + 1, right);
                }
            }
        }
        if self.node(kind, a)?.len() <= self.node(kind, a)?.capacity() {
            return Ok((a, None));
        }
        let right = split_off_half(self.dirty_mut(a));
        let sep = right.keys[0];
        debug_assert!(
            self.node(kind, a)?.keys.last() < Some(&sep),
            "split keeps key order"
        );
        let r = self.new_node(right)?;
        Ok((a, Some((sep, r))))
    }

    /// Removes `key` if present; returns the new root and the removed value.
    pub fn remove(
        &mut self,
        kind: TreeKind,
        root: Root,
        key: u64,
    ) -> Result<(Root, Option<Vec<u8>>)> {
        let Some(old) = self.get(kind, root, key)? else {
            return Ok((root, None));
        };
        let level = root_level(kind, root)?;
        let addr = self.remove_rec(kind, root_ptr(root), level, key)?;
        let n = self.node(kind, addr)?;
        let root = if n.is_leaf() && n.len() == 0 {
            self.free_meta_block(addr)?;
            Root::default()
        } else if !n.is_leaf() && n.len() == 1 {
            self.free_meta_block(addr)?;
            Root {
                addr: n.children[0].addr,
                height: root.height - 1,
                gen: n.children[0].gen,
            }
        } else {
            self.dirty_root(addr, root.height)
        };
        Ok((root, Some(old)))
    }

    fn remove_rec(&mut self, kind: TreeKind, at: Ptr, level: u32, key: u64) -> Result<u64> {
        let addr = at.addr;
        self.node_at(kind, at, level)?;
        let a = self.cow(kind, addr)?;
        // No copy of the node is held while it is changed (that would make `dirty_mut` copy it).
        let (is_leaf, i, c, len) = {
            let n = self.node(kind, a)?;
            let i = if n.is_leaf() {
                n.keys
                    .binary_search(&key)
                    .map_err(|_| corrupt(format!("{kind:?} key {key} vanished from node {a}")))?
            } else {
                n.child_index(key)
            };
            (n.is_leaf(), i, n.children.get(i).copied(), n.len())
        };
        if is_leaf {
            let vs = kind.value_bytes();
            let n = self.dirty_mut(a);
            n.keys.remove(i);
            n.vals.drain(i * vs..(i + 1) * vs);
            return Ok(a);
        }
        let c = c.expect("an internal node has a child per key");
        let nc = self
            .remove_rec(kind, c, level - 1, key)
            .map_err(|e| e.via_node(addr))?;
        let nc_ptr = self.dirty_ptr(nc);
        // A dirty child changed in place leaves this node as it is.
        if c != nc_ptr {
            self.dirty_mut(a).children[i] = nc_ptr;
        }
        let child = self.node(kind, nc)?;
        if child.len() < child.min_fill() && len > 1 {
            self.rebalance(kind, a, i).map_err(|e| e.via_node(addr))?;
        }
        Ok(a)
    }

    /// Child `i` of dirty node `p` is under-full: merge it with a sibling or borrow one entry.
    fn rebalance(&mut self, kind: TreeKind, p: u64, i: usize) -> Result<()> {
        let parent = self.node(kind, p)?;
        assert!(
            parent.len() >= 2 && i < parent.len(),
            "rebalance needs a sibling"
        );
        let li = if i + 1 < parent.len() { i } else { i - 1 };
        // The siblings come from disk: check their level before shadowing them.
        self.node_at(kind, parent.children[li], parent.level - 1)?;
        self.node_at(kind, parent.children[li + 1], parent.level - 1)?;
        let l = self.cow(kind, parent.children[li].addr)?;
        let r = self.cow(kind, parent.children[li + 1].addr)?;
        let sep = parent.keys[li + 1];
        drop(parent);
        {
            let (lp, rp) = (self.dirty_ptr(l), self.dirty_ptr(r));
            let pm = self.dirty_mut(p);
            pm.children[li] = lp;
            pm.children[li + 1] = rp;
        }
        let ln = (*self.node(kind, l)?).clone();
        let mut rn = (*self.node(kind, r)?).clone();
        if !rn.is_leaf() {
            // The parent's separator is a lower bound of the right subtree; its key 0 may be stale.
            rn.keys[0] = sep;
        }
        let vs = kind.value_bytes();
        if ln.len() + rn.len() <= ln.capacity() {
            let lm = self.dirty_mut(l);
            lm.keys.extend_from_slice(&rn.keys);
            lm.children.extend_from_slice(&rn.children);
            lm.vals.extend_from_slice(&rn.vals);
            self.free_meta_block(r)?;
            let pm = self.dirty_mut(p);
            pm.keys.remove(li + 1);
            pm.children.remove(li + 1);
            return Ok(());
        }
        let (mut ln, mut rn) = (ln, rn);
        if ln.len() < rn.len() {
            // Move the right node's first entry to the end of the left node.
            ln.keys.push(rn.keys.remove(0));
            if rn.is_leaf() {
                ln.vals.extend(rn.vals.drain(0..vs));
            } else {
                ln.children.push(rn.children.remove(0));
            }
        } else {
            let k = ln.keys.pop().expect("non-empty");
            rn.keys.insert(0, k);
            if rn.is_leaf() {
                let at = ln.vals.len() - vs;
                let moved: Vec<u8> = ln.vals.drain(at..).collect();
                rn.vals.splice(0..0, moved);
            } else {
                rn.children.insert(0, ln.children.pop().expect("non-empty"));
            }
        }
        let new_sep = rn.keys[0];
        *self.dirty_mut(l) = ln;
        *self.dirty_mut(r) = rn;
        self.dirty_mut(p).keys[li + 1] = new_sep;
        Ok(())
    }
}

/// Level of the root node of the non-empty tree `root`, its height checked against the bound.
pub fn root_level(kind: TreeKind, root: Root) -> Result<u32> {
    debug_assert_ne!(root.addr, 0, "an empty tree has no root level");
    if root.height == 0 || root.height > BTREE_HEIGHT_MAX {
        return Err(corrupt(format!(
            "{kind:?} tree at {}: height {} outside 1..={BTREE_HEIGHT_MAX}",
            root.addr, root.height
        )));
    }
    Ok(root.height - 1)
}

/// The pointer a tree's root is reached through.
pub fn root_ptr(root: Root) -> Ptr {
    Ptr {
        addr: root.addr,
        gen: root.gen,
    }
}

/// Moves the upper half of an over-full node into a new node.
fn split_off_half(n: &mut Node) -> Node {
    let mid = n.len() / 2;
    let vs = n.kind.value_bytes();
    Node {
        kind: n.kind,
        level: n.level,
        keys: n.keys.split_off(mid),
        children: if n.is_leaf() {
            Vec::new()
        } else {
            n.children.split_off(mid)
        },
        vals: if n.is_leaf() {
            n.vals.split_off(mid * vs)
        } else {
            Vec::new()
        },
        gen: n.gen,
    }
}

/// (physical block, length) of a volume-tree value.
pub fn extent_of(v: &[u8]) -> (u64, u64) {
    (get_u64(v, 0), get_u64(v, 8) & 0xffff_ffff)
}

/// The share epoch a volume-tree value was written in (zero before format version 3).
pub fn extent_epoch(v: &[u8]) -> u64 {
    get_u64(v, 8) >> 32
}

/// Encodes a volume-tree value: physical block, length, and the share epoch it was written in.
pub fn extent_val(phys: u64, len: u64, epoch: u64) -> [u8; 16] {
    assert!(
        len <= u64::from(u32::MAX) && epoch <= crate::format::SHARE_EPOCH_MAX,
        "extent length and epoch fit their fields"
    );
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&phys.to_le_bytes());
    v[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    v[12..16].copy_from_slice(&(epoch as u32).to_le_bytes());
    v
}

/// `entries` if their keys strictly ascend, as in a sound tree; a checksum-valid tree whose
/// subtrees overlap or repeat keys (read from a damaged disk) is corruption, never a panic.
fn in_key_order(kind: TreeKind, entries: Vec<Entry>) -> Result<Vec<Entry>> {
    match entries.windows(2).find(|w| w[0].0 >= w[1].0) {
        Some(w) => Err(corrupt(format!(
            "{kind:?} tree: key {} follows key {}",
            w[1].0, w[0].0
        ))),
        None => Ok(entries),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use cairn_io::MemDevice;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::format::Superblock;

    pub(crate) fn test_meta(blocks: u64) -> Meta {
        test_meta_on(Arc::new(MemDevice::new(blocks * 4096)))
    }

    /// [`test_meta`] on a given device (its whole size).
    pub(crate) fn test_meta_on(dev: Arc<MemDevice>) -> Meta {
        let blocks = cairn_io::BlockDevice::size_bytes(dev.as_ref()) / 4096;
        let sb = Superblock {
            gen: 0,
            version: crate::format::FORMAT_VERSION,
            uuid: [0; 16],
            name: "t".into(),
            device_blocks: blocks,
            dir: Root::default(),
            rc: Root::default(),
            space: Root::default(),
            next_seq: 1,
            allocated_blocks: 0,
            data_blocks: 0,
            meta_blocks: 0,
            reserve_blocks: 64,
            created_unix_secs: 0,
            share_epoch: 0,
        };
        let mut m = Meta::new(dev, sb, 64, false);
        m.mark_superblocks().unwrap();
        m
    }

    /// A valid refcount value (length >= 1, count >= 2) derived from its inputs.
    fn val(k: u64, salt: u64) -> Vec<u8> {
        let mut v = vec![0u8; 8];
        v[..4].copy_from_slice(&(1 + ((k ^ salt) % 1000) as u32).to_le_bytes());
        v[4..].copy_from_slice(&(2 + (salt % 5) as u32).to_le_bytes());
        v
    }

    fn space_val(n: u64) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&(n % 100_000).to_le_bytes());
        v
    }

    /// Walks the tree checking order, bounds, levels and fill; returns its entries.
    fn validate(m: &mut Meta, kind: TreeKind, root: Root) -> Vec<(u64, Vec<u8>)> {
        #[allow(clippy::too_many_arguments)]
        fn rec(
            m: &mut Meta,
            kind: TreeKind,
            addr: u64,
            level: u32,
            lo: Option<u64>,
            hi: Option<u64>,
            is_root: bool,
            out: &mut Vec<(u64, Vec<u8>)>,
        ) {
            let n = m.node(kind, addr).unwrap();
            assert_eq!(n.level, level);
            assert!(n.keys.windows(2).all(|w| w[0] < w[1]));
            if is_root {
                assert!(n.len() >= if n.is_leaf() { 1 } else { 2 });
            } else {
                assert!(n.len() >= n.min_fill(), "under-full node {addr}");
            }
            if n.is_leaf() {
                for i in 0..n.len() {
                    assert!(lo.is_none_or(|l| n.keys[i] >= l) && hi.is_none_or(|h| n.keys[i] < h));
                    out.push((n.keys[i], n.val(i).to_vec()));
                }
                return;
            }
            for i in 0..n.len() {
                let clo = if i == 0 { lo } else { Some(n.keys[i]) };
                let chi = n.keys.get(i + 1).copied().or(hi);
                rec(m, kind, n.children[i].addr, level - 1, clo, chi, false, out);
            }
        }
        let mut out = Vec::new();
        if root.addr != 0 {
            rec(
                m,
                kind,
                root.addr,
                root.height - 1,
                None,
                None,
                true,
                &mut out,
            );
        } else {
            assert_eq!(root.height, 0);
        }
        out
    }

    #[test]
    fn insert_remove_range_against_a_map() {
        let mut m = test_meta(40_000);
        let kind = TreeKind::Refcount;
        let mut root = Root::default();
        let mut model = BTreeMap::new();
        let mut rng = SmallRng::seed_from_u64(7);
        for step in 0..30_000u64 {
            let k = rng.gen_range(0..5_000u64);
            if rng.gen_bool(0.6) {
                root = m.insert(kind, root, k, &val(k, step)).unwrap();
                model.insert(k, val(k, step));
            } else {
                let (r, old) = m.remove(kind, root, k).unwrap();
                root = r;
                assert_eq!(old, model.remove(&k));
            }
            if step % 1000 == 0 {
                let got = validate(&mut m, kind, root);
                assert_eq!(
                    got,
                    model
                        .iter()
                        .map(|(k, v)| (*k, v.clone()))
                        .collect::<Vec<_>>()
                );
            }
            if step % 3_000 == 0 {
                m.commit(m.durable.clone()).unwrap();
            }
        }
        assert!(root.height >= 2, "splits happened");
        let lo = 1000;
        let hi = 2000;
        let got = m.range(kind, root, lo, hi, usize::MAX).unwrap();
        let want: Vec<_> = model.range(lo..hi).map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want);
        for probe in [0, 1, 999, 2500, 4999, 10_000] {
            let want = model
                .range(..=probe)
                .next_back()
                .map(|(k, v)| (*k, v.clone()));
            assert_eq!(m.get_le(kind, root, probe).unwrap(), want);
        }
        // Remove everything: merges down to an empty tree.
        let keys: Vec<u64> = model.keys().copied().collect();
        for k in keys {
            root = m.remove(kind, root, k).unwrap().0;
        }
        assert_eq!(root, Root::default());
    }

    #[test]
    fn deep_trees_keep_their_invariants() {
        let mut m = test_meta(60_000);
        let kind = TreeKind::Space;
        let mut root = Root::default();
        let mut model = BTreeMap::new();
        let mut rng = SmallRng::seed_from_u64(11);
        for step in 0..200_000u64 {
            let k = rng.gen_range(0..1_000_000u64);
            if rng.gen_bool(0.7) {
                root = m.insert(kind, root, k, &space_val(step)).unwrap();
                model.insert(k, space_val(step).to_vec());
            } else {
                let (r, old) = m.remove(kind, root, k).unwrap();
                root = r;
                assert_eq!(old, model.remove(&k));
            }
            if step % 20_000 == 0 {
                validate(&mut m, kind, root);
                m.commit(m.durable.clone()).unwrap();
            }
        }
        assert!(root.height >= 3);
        let got = validate(&mut m, kind, root);
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn survives_commit_and_reload() {
        let mut m = test_meta(10_000);
        let kind = TreeKind::Directory;
        let mut root = Root::default();
        let n = 2_000u64;
        for k in 0..n {
            root = m.insert(kind, root, k * 2, &[k as u8; 640]).unwrap();
        }
        assert_eq!(root.height, 3);
        m.dir_root = root;
        m.commit(m.durable.clone()).unwrap();
        let durable = m.durable.clone();
        let mut fresh = Meta::new(m.dev.clone(), durable, 64, false);
        let r = fresh.dir_root;
        let got = validate(&mut fresh, kind, r);
        assert_eq!(got.len() as u64, n);
        assert_eq!(got[10], (20, vec![10u8; 640]));
    }

    #[test]
    fn shadowing_a_shared_node_propagates_references() {
        let mut m = test_meta(10_000);
        let kind = TreeKind::Volume;
        let mut a = Root::default();
        for k in 0..500u64 {
            a = m
                .insert(kind, a, k * 10, &extent_val(1000 + k, 1, 0))
                .unwrap();
        }
        m.commit(m.durable.clone()).unwrap();
        // Share the tree (a snapshot), then change one copy.
        m.rc_inc(a.addr, 1).unwrap();
        let b = a;
        let a2 = m.insert(kind, a, 5, &extent_val(3000, 1, 0)).unwrap();
        assert_ne!(a2.addr, a.addr);
        assert_eq!(
            m.rc_get(a.addr).unwrap(),
            1,
            "old root now only held by the snapshot"
        );
        let root_node = m.node(kind, b.addr).unwrap();
        // The child on the changed path was shadowed too: its original is the snapshot's alone.
        assert_eq!(m.rc_get(root_node.children[0].addr).unwrap(), 1);
        for c in &root_node.children[1..] {
            assert_eq!(
                m.rc_get(c.addr).unwrap(),
                2,
                "other children shared by both roots"
            );
        }
        assert_eq!(validate(&mut m, kind, b).len(), 500);
        assert_eq!(validate(&mut m, kind, a2).len(), 501);
    }
}
