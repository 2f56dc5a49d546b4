//! Space accounting of one volume family: the data blocks its members hold, and the ones each
//! member holds alone.
//!
//! A family is the set of volumes that can share blocks: a plain volume and every snapshot,
//! clone, restore tombstone or keeper tree made from it or from one of them (the record's
//! `family`). Blocks are never shared across families, so a walk of the family's trees meets
//! every reference to every block it finds.
//!
//! The walk visits each node once however many members share it (a node with two or more
//! references is remembered by address; one with a single reference is reached through one
//! parent only). A block held by `k` distinct leaves carries reference count `k` and is met
//! exactly once in each of them, so the family's distinct blocks are the blocks of count one
//! plus, for each count `k >= 2`, the blocks met with that count divided by `k`. A block is a
//! member's own when the member reaches it through nodes of one reference only and its count is
//! one: no other tree, and no other leaf, holds it.
//!
//! Cost: one visit of each distinct node of the family and one reference-count lookup per node
//! and per extent; memory: the addresses of the family's shared nodes, and one counter per
//! distinct reference count met.

use std::collections::{BTreeMap, HashSet};

use crate::btree::{extent_of, root_level, root_ptr};
use crate::error::{corrupt, Result};
use crate::format::Root;
use crate::meta::Meta;
use crate::node::{Ptr, TreeKind};

const K: TreeKind = TreeKind::Volume;

/// What a family's walk found, in blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FamilyBlocks {
    /// Distinct data blocks the family's trees hold.
    pub held: u64,
    /// Blocks each member (in the order given) holds alone.
    pub own: Vec<u64>,
}

/// The running counts of one family walk.
#[derive(Default)]
struct Walk {
    shared_nodes: HashSet<u64>,
    /// Blocks of reference count one.
    single: u64,
    /// Blocks met with each reference count of two or more (each counted once per leaf).
    multiple: BTreeMap<u32, u64>,
}

impl Meta {
    /// Walks the trees `roots` of one family's members (every member, tombstones included).
    pub(crate) fn family_blocks(&mut self, roots: &[Root]) -> Result<FamilyBlocks> {
        let mut walk = Walk::default();
        let mut own = Vec::with_capacity(roots.len());
        for &root in roots {
            let mut alone = 0;
            if root.addr != 0 {
                let level = root_level(K, root)?;
                self.walk_node(&mut walk, root_ptr(root), level, true, &mut alone)?;
            }
            own.push(alone);
        }
        let mut held = walk.single;
        for (&count, &met) in &walk.multiple {
            // Every leaf holding a block of the family is met: `count` times each block.
            if met % u64::from(count) != 0 {
                return Err(corrupt(format!(
                    "space accounting: {met} block references of count {count} met in one \
                     volume family (blocks shared outside their family)"
                )));
            }
            held += met / u64::from(count);
        }
        Ok(FamilyBlocks { held, own })
    }

    /// Visits node `at` (unless a shared node already visited) and what is under it; `alone`:
    /// every node above it has one reference, and so has it, for its blocks to count as the
    /// member's own.
    fn walk_node(
        &mut self,
        walk: &mut Walk,
        at: Ptr,
        level: u32,
        alone: bool,
        own: &mut u64,
    ) -> Result<()> {
        let alone = if self.rc_get(at.addr)? > 1 {
            if !walk.shared_nodes.insert(at.addr) {
                return Ok(());
            }
            false
        } else {
            alone
        };
        let node = self.node_at(K, at, level)?;
        if !node.is_leaf() {
            for &child in &node.children {
                self.walk_node(walk, child, level - 1, alone, own)
                    .map_err(|e| e.via_node(at.addr))?;
            }
            return Ok(());
        }
        for i in 0..node.len() {
            let (phys, len) = extent_of(node.val(i));
            for (count, blocks) in self.rc_counts(phys, len)? {
                if count == 1 {
                    walk.single += blocks;
                    if alone {
                        *own += blocks;
                    }
                } else {
                    *walk.multiple.entry(count).or_default() += blocks;
                }
            }
        }
        Ok(())
    }
}
