//! B-tree nodes in memory and their block encoding.
//!
//! A node is one block: the common header, then `count` keys (u64), then either `count` child
//! addresses (u64, internal nodes, level > 0) or `count` fixed-size values (leaves, level 0).
//! Internal key `i` is a lower bound of every key under child `i` (key 0 acts as minus infinity
//! when searching). Keys in a node are strictly increasing.

use crate::error::{corrupt, Result};
use crate::format::{put_u64, seal_block, verify_block, BlockType, HEADER_BYTES};
use crate::limits::{BLOCK_SIZE_USIZE, BTREE_HEIGHT_MAX};

/// The kind of a tree: fixes its block type and value size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeKind {
    /// A volume's mapping: virtual block -> (physical block u64, length u32, reserved u32).
    Volume,
    /// Reference counts above one: first physical block -> (length u32, count u32).
    Refcount,
    /// Volume directory: sequence number -> volume record.
    Directory,
    /// Space-map index: bitmap page number -> (page block u64, free bits u32, reserved u32).
    Space,
}

impl TreeKind {
    pub const fn value_bytes(self) -> usize {
        match self {
            TreeKind::Volume => 16,
            TreeKind::Refcount => 8,
            TreeKind::Directory => crate::format::VOLUME_RECORD_BYTES,
            TreeKind::Space => 16,
        }
    }

    pub const fn block_type(self) -> BlockType {
        match self {
            TreeKind::Volume => BlockType::VolumeNode,
            TreeKind::Refcount => BlockType::RefcountNode,
            TreeKind::Directory => BlockType::DirectoryNode,
            TreeKind::Space => BlockType::SpaceNode,
        }
    }

    /// Entries a leaf holds at most.
    pub const fn leaf_capacity(self) -> usize {
        (BLOCK_SIZE_USIZE - HEADER_BYTES) / (8 + self.value_bytes())
    }

    /// Fewest entries of a non-root leaf.
    pub const fn leaf_min(self) -> usize {
        self.leaf_capacity() / 2
    }
}

/// Children an internal node holds at most.
pub const INTERNAL_CAPACITY: usize = (BLOCK_SIZE_USIZE - HEADER_BYTES) / 16;
/// Fewest children of a non-root internal node.
pub const INTERNAL_MIN: usize = INTERNAL_CAPACITY / 2;

const _: () = assert!(TreeKind::Directory.leaf_capacity() >= 4);
const _: () = assert!(TreeKind::Refcount.leaf_capacity() >= 100);
const _: () = assert!(INTERNAL_CAPACITY >= 100);

/// A decoded node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: TreeKind,
    pub level: u32,
    pub keys: Vec<u64>,
    /// Internal nodes: child addresses, one per key.
    pub children: Vec<u64>,
    /// Leaves: `keys.len() * kind.value_bytes()` bytes.
    pub vals: Vec<u8>,
}

impl Node {
    pub fn new_leaf(kind: TreeKind) -> Node {
        Node {
            kind,
            level: 0,
            keys: Vec::new(),
            children: Vec::new(),
            vals: Vec::new(),
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.level == 0
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn capacity(&self) -> usize {
        if self.is_leaf() {
            self.kind.leaf_capacity()
        } else {
            INTERNAL_CAPACITY
        }
    }

    pub fn min_fill(&self) -> usize {
        if self.is_leaf() {
            self.kind.leaf_min()
        } else {
            INTERNAL_MIN
        }
    }

    pub fn val(&self, i: usize) -> &[u8] {
        let vs = self.kind.value_bytes();
        &self.vals[i * vs..(i + 1) * vs]
    }

    /// Index of the child whose range holds `key` (internal nodes).
    pub fn child_index(&self, key: u64) -> usize {
        match self.keys.binary_search(&key) {
            Ok(i) => i,
            Err(0) => 0,
            Err(i) => i - 1,
        }
    }

    /// Encodes into a sealed block for `addr`, written by generation `gen`.
    pub fn encode(&self, addr: u64, gen: u64) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        let n = self.len();
        assert!(n <= self.capacity(), "node over capacity");
        let mut off = HEADER_BYTES;
        for k in &self.keys {
            put_u64(&mut b, off, *k);
            off += 8;
        }
        if self.is_leaf() {
            b[off..off + self.vals.len()].copy_from_slice(&self.vals);
        } else {
            for c in &self.children {
                put_u64(&mut b, off, *c);
                off += 8;
            }
        }
        seal_block(
            &mut b,
            self.kind.block_type(),
            self.level as u16,
            n as u32,
            addr,
            gen,
        );
        b
    }

    /// Decodes and verifies a block read from `addr`.
    pub fn decode(kind: TreeKind, b: &[u8], addr: u64, gen_max: u64) -> Result<Node> {
        let hdr = verify_block(b, kind.block_type(), addr, gen_max)?;
        let level = u32::from(hdr.level);
        let n = hdr.count as usize;
        if level >= BTREE_HEIGHT_MAX {
            return Err(corrupt(format!(
                "{kind:?} node {addr}: level {level} too high"
            )));
        }
        let cap = if level == 0 {
            kind.leaf_capacity()
        } else {
            INTERNAL_CAPACITY
        };
        if n > cap {
            return Err(corrupt(format!(
                "{kind:?} node {addr}: {n} entries over capacity"
            )));
        }
        let get = |off: usize| crate::format::get_u64(b, off);
        let keys: Vec<u64> = (0..n).map(|i| get(HEADER_BYTES + 8 * i)).collect();
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt(format!("{kind:?} node {addr}: keys out of order")));
        }
        let base = HEADER_BYTES + 8 * n;
        let mut node = Node {
            kind,
            level,
            keys,
            children: Vec::new(),
            vals: Vec::new(),
        };
        if level == 0 {
            node.vals = b[base..base + n * kind.value_bytes()].to_vec();
        } else {
            node.children = (0..n).map(|i| get(base + 8 * i)).collect();
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_round_trip_and_corruption() {
        let mut n = Node::new_leaf(TreeKind::Volume);
        for i in 0..10u64 {
            n.keys.push(i * 3);
            n.vals.extend_from_slice(&[i as u8; 16]);
        }
        let b = n.encode(42, 5);
        assert_eq!(Node::decode(TreeKind::Volume, &b, 42, 5).unwrap(), n);
        assert!(Node::decode(TreeKind::Volume, &b, 43, 5).is_err());
        assert!(Node::decode(TreeKind::Refcount, &b, 42, 5).is_err());
        assert!(Node::decode(TreeKind::Volume, &b, 42, 4).is_err());
        let mut bad = b.clone();
        bad[100] ^= 0x10;
        assert!(Node::decode(TreeKind::Volume, &bad, 42, 5).is_err());
        let internal = Node {
            kind: TreeKind::Space,
            level: 2,
            keys: vec![0, 10, 20],
            children: vec![5, 6, 7],
            vals: Vec::new(),
        };
        let b = internal.encode(9, 1);
        assert_eq!(Node::decode(TreeKind::Space, &b, 9, 1).unwrap(), internal);
    }
}
