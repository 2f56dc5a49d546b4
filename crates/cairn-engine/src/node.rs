//! B-tree nodes in memory and their block encoding.
//!
//! A node is one block: the common header, then `count` keys (u64), then either `count` child
//! addresses (u64, internal nodes, level > 0) or `count` fixed-size values (leaves, level 0).
//! Internal key `i` is a lower bound of every key under child `i` (key 0 acts as minus infinity
//! when searching). Keys in a node are strictly increasing.

use crate::error::{corrupt, Result};
use crate::format::{get_u32, get_u64, put_u64, seal_block, verify_block, BlockType, HEADER_BYTES};
use crate::limits::{
    BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE, BTREE_HEIGHT_MAX, EXTENT_BLOCKS_MAX, VOLUME_SIZE_BYTES_MAX,
};

/// Largest block address accepted from disk (2^48 blocks = 1 EiB).
const ADDRESS_MAX: u64 = 1 << 48;
/// Largest reference count accepted from disk (increments can never overflow `u32`).
pub const REFCOUNT_MAX: u32 = u32::MAX / 2;
/// Largest virtual block number accepted from disk.
const VOLUME_BLOCKS_MAX: u64 = VOLUME_SIZE_BYTES_MAX / BLOCK_SIZE_BYTES;

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

    /// Leaf values read from disk are in range, so arithmetic on them cannot overflow.
    fn check_values(&self, addr: u64) -> Result<()> {
        let bad = |what: &str| Err(corrupt(format!("{:?} node {addr}: {what}", self.kind)));
        for i in 0..self.len() {
            let v = self.val(i);
            match self.kind {
                TreeKind::Volume => {
                    let (phys, len) = (get_u64(v, 0), u64::from(get_u32(v, 8)));
                    if len == 0 || len > EXTENT_BLOCKS_MAX {
                        return bad("extent length out of range");
                    }
                    if self.keys[i] > VOLUME_BLOCKS_MAX || phys > ADDRESS_MAX {
                        return bad("extent address out of range");
                    }
                }
                TreeKind::Refcount => {
                    let count = get_u32(v, 4);
                    if get_u32(v, 0) == 0
                        || !(2..=REFCOUNT_MAX).contains(&count)
                        || self.keys[i] > ADDRESS_MAX
                    {
                        return bad("refcount entry out of range");
                    }
                }
                TreeKind::Space => {
                    if get_u64(v, 0) > ADDRESS_MAX || self.keys[i] > ADDRESS_MAX {
                        return bad("space entry out of range");
                    }
                }
                TreeKind::Directory => {}
            }
        }
        Ok(())
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
            node.check_values(addr)?;
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
            n.vals
                .extend_from_slice(&crate::btree::extent_val(100 + i, 1 + i));
        }
        let b = n.encode(42, 5);
        assert_eq!(Node::decode(TreeKind::Volume, &b, 42, 5).unwrap(), n);
        assert!(Node::decode(TreeKind::Volume, &b, 43, 5).is_err());
        assert!(Node::decode(TreeKind::Refcount, &b, 42, 5).is_err());
        assert!(Node::decode(TreeKind::Volume, &b, 42, 4).is_err());
        let mut bad = b.clone();
        bad[100] ^= 0x10;
        assert!(Node::decode(TreeKind::Volume, &bad, 42, 5).is_err());
        // A well-sealed block with an out-of-range extent is refused too.
        let mut zero_len = n.clone();
        zero_len.vals[8..12].fill(0);
        let b0 = zero_len.encode(42, 5);
        assert!(Node::decode(TreeKind::Volume, &b0, 42, 5).is_err());
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

    /// Decoders take anything a device may hold: random blocks with a valid seal (so decoding
    /// gets past the checksum) yield an error or a node, never a panic.
    #[test]
    fn random_sealed_blocks_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let kinds = [
            TreeKind::Volume,
            TreeKind::Refcount,
            TreeKind::Directory,
            TreeKind::Space,
        ];
        for i in 0..20_000u32 {
            let mut b = vec![0u8; BLOCK_SIZE_USIZE];
            rng.fill(&mut b[..]);
            let kind = kinds[(i % 4) as usize];
            let count = if i % 3 == 0 {
                rng.gen()
            } else {
                rng.gen_range(0..300)
            };
            let level = if i % 2 == 0 { 0 } else { rng.gen_range(0..20) };
            seal_block(&mut b, kind.block_type(), level, count, 7, 1);
            let _ = Node::decode(kind, &b, 7, 1);
            if let Ok(n) = Node::decode(kind, &b, 7, 1) {
                if kind == TreeKind::Directory && n.is_leaf() {
                    for j in 0..n.len() {
                        let _ = crate::format::VolumeRecord::decode(n.val(j));
                    }
                }
            }
            let _ = crate::format::Superblock::decode(&b, 1);
            let _ = crate::meta::Page::decode(&b, 7, 0, 1);
        }
    }
}
