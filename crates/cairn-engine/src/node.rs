//! B-tree nodes in memory and their block encoding.
//!
//! A node is one block: the common header, then `count` keys (u64), then either `count` child
//! pointers (internal nodes, level > 0) or `count` fixed-size values (leaves, level 0).
//! Internal key `i` is a lower bound of every key under child `i` (key 0 acts as minus infinity
//! when searching). Keys in a node are strictly increasing.
//!
//! Format version 2 (written): a child pointer is the child's address and the generation that
//! wrote it (u64 each), and a space-index value carries its bitmap page's generation. Version 1
//! (read only, to be upgraded): a child pointer is the address alone and a space-index value has
//! no generation; decoded version-1 pointers carry generation 0 and are never encoded again. The
//! in-memory node has one shape for both: `children` are [`Ptr`]s and values have the
//! version-2 size ([`TreeKind::value_bytes`]).

use crate::error::{corrupt, Result};
use crate::format::{
    get_u32, get_u64, put_u64, seal_block, verify_block, BlockType, Identity, Seal, HEADER_BYTES,
    VERSION_STAMPED,
};
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
    /// Space-map index: bitmap page number -> (page block u64, free bits u32, reserved u32,
    /// page generation u64).
    Space,
}

/// Offset of the bitmap page's generation in a space-index value (version 2).
pub const SPACE_VAL_GEN: usize = 16;

impl TreeKind {
    /// Size of a value in memory and in a version-2 leaf.
    pub const fn value_bytes(self) -> usize {
        match self {
            TreeKind::Volume => 16,
            TreeKind::Refcount => 8,
            TreeKind::Directory => crate::format::VOLUME_RECORD_BYTES,
            TreeKind::Space => SPACE_VAL_GEN + 8,
        }
    }

    /// Size of a value in a leaf of format `version`.
    pub const fn disk_value_bytes(self, version: u32) -> usize {
        match self {
            TreeKind::Space if version < VERSION_STAMPED => SPACE_VAL_GEN,
            _ => self.value_bytes(),
        }
    }

    /// Entries a leaf of format `version` holds at most.
    pub const fn leaf_capacity_in(self, version: u32) -> usize {
        (BLOCK_SIZE_USIZE - HEADER_BYTES) / (8 + self.disk_value_bytes(version))
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
}

/// Children an internal node holds at most (key, child address, child generation).
pub const INTERNAL_CAPACITY: usize = (BLOCK_SIZE_USIZE - HEADER_BYTES) / 24;
/// Children a version-1 internal node holds at most (key, child address).
pub const INTERNAL_CAPACITY_V1: usize = (BLOCK_SIZE_USIZE - HEADER_BYTES) / 16;

/// Children an internal node of format `version` holds at most.
pub const fn internal_capacity_in(version: u32) -> usize {
    if version < VERSION_STAMPED {
        INTERNAL_CAPACITY_V1
    } else {
        INTERNAL_CAPACITY
    }
}

const _: () = assert!(TreeKind::Directory.leaf_capacity() >= 4);
const _: () = assert!(TreeKind::Refcount.leaf_capacity() >= 100);
const _: () = assert!(INTERNAL_CAPACITY >= 100);
const _: () = assert!(INTERNAL_CAPACITY == 168 && INTERNAL_CAPACITY_V1 == 252);

/// A child pointer: the child's address and the generation that wrote it (btrfs style). A
/// child read through a pointer of a version-2 pool must carry exactly this generation: a
/// CRC-valid block left from an earlier write of the address (a lost write, an earlier pool)
/// fails that test. Version-1 pointers carry generation 0 (unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ptr {
    pub addr: u64,
    pub gen: u64,
}

/// A decoded node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: TreeKind,
    pub level: u32,
    pub keys: Vec<u64>,
    /// Internal nodes: child pointers, one per key.
    pub children: Vec<Ptr>,
    /// Leaves: `keys.len() * kind.value_bytes()` bytes.
    pub vals: Vec<u8>,
    /// The generation that wrote the node (a dirty node: the open transaction's, set when it
    /// is placed).
    pub gen: u64,
}

impl Node {
    pub fn new_leaf(kind: TreeKind) -> Node {
        Node {
            kind,
            level: 0,
            keys: Vec::new(),
            children: Vec::new(),
            vals: Vec::new(),
            gen: 0,
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
        self.min_fill_in(crate::format::FORMAT_VERSION)
    }

    /// Fewest entries of a non-root node in a pool of format `version`.
    pub fn min_fill_in(&self, version: u32) -> usize {
        if self.is_leaf() {
            self.kind.leaf_capacity_in(version) / 2
        } else {
            internal_capacity_in(version) / 2
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

    /// Encodes into a sealed block of the current version, placed and stamped by `at`.
    pub fn encode(&self, at: Seal) -> Vec<u8> {
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
                put_u64(&mut b, off, c.addr);
                put_u64(&mut b, off + 8, c.gen);
                off += 16;
            }
        }
        seal_block(
            &mut b,
            self.kind.block_type(),
            self.level as u16,
            n as u32,
            at,
        );
        b
    }

    /// Decodes and verifies a block read from `addr` of the pool `id` (and its version).
    pub fn decode(
        kind: TreeKind,
        b: &[u8],
        addr: u64,
        gen_max: u64,
        id: &Identity,
    ) -> Result<Node> {
        let hdr = verify_block(b, kind.block_type(), addr, gen_max, id)?;
        let level = u32::from(hdr.level);
        let n = hdr.count as usize;
        if level >= BTREE_HEIGHT_MAX {
            return Err(corrupt(format!(
                "{kind:?} node {addr}: level {level} too high"
            )));
        }
        let cap = if level == 0 {
            kind.leaf_capacity_in(id.version)
        } else {
            internal_capacity_in(id.version)
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
            gen: hdr.gen,
        };
        let stamped = id.stamped();
        if level == 0 {
            let dvs = kind.disk_value_bytes(id.version);
            node.vals = Vec::with_capacity(n * kind.value_bytes());
            for i in 0..n {
                // A version-1 value is the prefix of its version-2 form; the rest reads as 0.
                node.vals
                    .extend_from_slice(&b[base + i * dvs..base + (i + 1) * dvs]);
                node.vals.resize((i + 1) * kind.value_bytes(), 0);
            }
            node.check_values(addr)?;
        } else if stamped {
            node.children = (0..n)
                .map(|i| Ptr {
                    addr: get(base + 16 * i),
                    gen: get(base + 16 * i + 8),
                })
                .collect();
        } else {
            node.children = (0..n)
                .map(|i| Ptr {
                    addr: get(base + 8 * i),
                    gen: 0,
                })
                .collect();
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FORMAT_VERSION;

    const ID: Identity = Identity {
        version: FORMAT_VERSION,
        uuid: [7; 16],
    };

    fn at(addr: u64, gen: u64) -> Seal {
        Seal {
            addr,
            gen,
            uuid: ID.uuid,
        }
    }

    #[test]
    fn node_round_trip_and_corruption() {
        let mut n = Node::new_leaf(TreeKind::Volume);
        for i in 0..10u64 {
            n.keys.push(i * 3);
            n.vals
                .extend_from_slice(&crate::btree::extent_val(100 + i, 1 + i, 0));
        }
        n.gen = 5;
        let b = n.encode(at(42, 5));
        assert_eq!(Node::decode(TreeKind::Volume, &b, 42, 5, &ID).unwrap(), n);
        assert!(Node::decode(TreeKind::Volume, &b, 43, 5, &ID).is_err());
        assert!(Node::decode(TreeKind::Refcount, &b, 42, 5, &ID).is_err());
        assert!(Node::decode(TreeKind::Volume, &b, 42, 4, &ID).is_err());
        let other = Identity {
            uuid: [8; 16],
            ..ID
        };
        let e = Node::decode(TreeKind::Volume, &b, 42, 5, &other).unwrap_err();
        assert!(e.to_string().contains("another pool"), "{e}");
        let mut bad = b.clone();
        bad[100] ^= 0x10;
        assert!(Node::decode(TreeKind::Volume, &bad, 42, 5, &ID).is_err());
        // A well-sealed block with an out-of-range extent is refused too.
        let mut zero_len = n.clone();
        zero_len.vals[8..12].fill(0);
        let b0 = zero_len.encode(at(42, 5));
        assert!(Node::decode(TreeKind::Volume, &b0, 42, 5, &ID).is_err());
        let ptr = |addr, gen| Ptr { addr, gen };
        let internal = Node {
            kind: TreeKind::Space,
            level: 2,
            keys: vec![0, 10, 20],
            children: vec![ptr(5, 1), ptr(6, 1), ptr(7, 1)],
            vals: Vec::new(),
            gen: 1,
        };
        let b = internal.encode(at(9, 1));
        assert_eq!(
            Node::decode(TreeKind::Space, &b, 9, 1, &ID).unwrap(),
            internal
        );
    }

    /// A version-1 internal node (address-only pointers, up to 252 of them) and a version-1
    /// space leaf (16-byte values) decode into the in-memory shape, generations unknown (0).
    #[test]
    fn version_1_nodes_decode() {
        let v1 = Identity {
            version: 1,
            uuid: [0; 16],
        };
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        let n = INTERNAL_CAPACITY_V1;
        for i in 0..n {
            put_u64(&mut b, HEADER_BYTES + 8 * i, i as u64 * 10);
            put_u64(&mut b, HEADER_BYTES + 8 * (n + i), 100 + i as u64);
        }
        seal_block(&mut b, BlockType::VolumeNode, 1, n as u32, at(9, 3));
        let node = Node::decode(TreeKind::Volume, &b, 9, 3, &v1).unwrap();
        assert_eq!(node.children.len(), n);
        assert_eq!(node.children[n - 1], Ptr { addr: 351, gen: 0 });
        assert!(Node::decode(TreeKind::Volume, &b, 9, 3, &ID).is_err());
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        let n = TreeKind::Space.leaf_capacity_in(1);
        assert_eq!(n, 168);
        for i in 0..n {
            put_u64(&mut b, HEADER_BYTES + 8 * i, i as u64);
            put_u64(&mut b, HEADER_BYTES + 8 * n + 16 * i, 500 + i as u64);
            put_u64(&mut b, HEADER_BYTES + 8 * n + 16 * i + 8, 7);
        }
        seal_block(&mut b, BlockType::SpaceNode, 0, n as u32, at(9, 3));
        let leaf = Node::decode(TreeKind::Space, &b, 9, 3, &v1).unwrap();
        assert_eq!(leaf.val(n - 1)[..8], (500 + n as u64 - 1).to_le_bytes());
        assert_eq!(get_u64(leaf.val(n - 1), 8), 7);
        assert_eq!(get_u64(leaf.val(n - 1), SPACE_VAL_GEN), 0);
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
            seal_block(&mut b, kind.block_type(), level, count, at(7, 1));
            let v1 = Identity { version: 1, ..ID };
            let _ = Node::decode(kind, &b, 7, 1, &v1);
            if let Ok(n) = Node::decode(kind, &b, 7, 1, &ID) {
                if kind == TreeKind::Directory && n.is_leaf() {
                    for j in 0..n.len() {
                        let _ = crate::format::VolumeRecord::decode(n.val(j));
                    }
                }
            }
            let _ = crate::format::Superblock::decode(&b, 1);
            let _ = crate::meta::Page::decode(&b, 7, 0, 1, &ID);
        }
    }
}
