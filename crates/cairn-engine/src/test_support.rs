//! Field-level access to sealed metadata blocks, for structured fuzzing only.
//!
//! Not part of the engine's API (`#[doc(hidden)]` at the crate root) and never used by the engine
//! itself. The `pool_structured` fuzz target lists the decoded fields of a metadata block (header
//! level, count, generation and page number; node keys, child addresses and the generations
//! they expect (format version 2, the version this writes); extent, refcount,
//! space-index and volume-record values; bitmap words; superblock roots and counters), changes
//! some, and re-seals the block with a valid checksum, so corrupt metadata reaches the tree,
//! space-map and directory logic behind the checksum instead of being refused by it. The field
//! layouts come from the format's own constants in `format`, `node` and `meta`; nothing here
//! writes to a device.
//!
//! Invariant: a field always lies inside the block, whatever the block holds, so reading or
//! writing it cannot go out of range.

use cairn_io::BlockDevice;

use crate::error::{Error, Result};
use crate::format::{self as f, get_u16, get_u32, get_u64, BlockType};
use crate::limits::{BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE};
use crate::meta::PAGE_WORDS;
use crate::node::{TreeKind, INTERNAL_CAPACITY, SPACE_VAL_GEN};

/// One fixed-width little-endian integer of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the block.
    pub offset: usize,
    /// Width in bytes: 2, 4 or 8.
    pub width: usize,
    /// What the field holds, as the format names it (`"key"`, `"child"`, `"next_seq"`, ...).
    pub name: &'static str,
}

impl Field {
    const fn new(offset: usize, width: usize, name: &'static str) -> Field {
        Field {
            offset,
            width,
            name,
        }
    }

    /// The field's value.
    pub fn get(self, block: &[u8]) -> u64 {
        match self.width {
            2 => u64::from(get_u16(block, self.offset)),
            4 => u64::from(get_u32(block, self.offset)),
            _ => get_u64(block, self.offset),
        }
    }

    /// Stores `v`, truncated to the field's width.
    pub fn set(self, block: &mut [u8], v: u64) {
        let bytes = v.to_le_bytes();
        block[self.offset..self.offset + self.width].copy_from_slice(&bytes[..self.width]);
    }
}

/// Addresses of the blocks of `dev` that carry a metadata magic and a valid checksum (live or
/// stale alike), in address order.
pub fn sealed_blocks(dev: &dyn BlockDevice) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut b = vec![0u8; BLOCK_SIZE_USIZE];
    for addr in 0..dev.size_bytes() / BLOCK_SIZE_BYTES {
        dev.read_at(addr * BLOCK_SIZE_BYTES, &mut b)
            .map_err(|e| Error::io("scan for sealed blocks", e))?;
        if get_u32(&b, f::HDR_MAGIC) == f::BLOCK_MAGIC
            && get_u32(&b, f::HDR_CRC) == f::block_crc(&b)
        {
            out.push(addr);
        }
    }
    Ok(out)
}

/// The decoded fields of a metadata block, by its header's type, level and count (clamped to
/// the node's capacity); empty for a block of no known type.
pub fn fields(block: &[u8]) -> Vec<Field> {
    assert_eq!(
        block.len(),
        BLOCK_SIZE_USIZE,
        "a field list is of one block"
    );
    let mut out = vec![
        Field::new(f::HDR_LEVEL, 2, "level"),
        Field::new(f::HDR_COUNT, 4, "count"),
        Field::new(f::HDR_GEN, 8, "gen"),
        Field::new(f::HDR_AUX, 8, "aux"),
    ];
    let kind = match BlockType::from_u16(get_u16(block, f::HDR_TYPE)) {
        None => return Vec::new(),
        Some(BlockType::Super) => {
            out.extend(SUPER_FIELDS);
            return out;
        }
        Some(BlockType::Bitmap) => {
            out.extend(
                (0..PAGE_WORDS).map(|i| Field::new(f::HEADER_BYTES + 8 * i, 8, "bitmap_word")),
            );
            return out;
        }
        Some(BlockType::VolumeNode) => TreeKind::Volume,
        Some(BlockType::RefcountNode) => TreeKind::Refcount,
        Some(BlockType::DirectoryNode) => TreeKind::Directory,
        Some(BlockType::SpaceNode) => TreeKind::Space,
    };
    node_fields(block, kind, &mut out);
    out
}

/// Recomputes the checksum of a block whose fields were changed.
pub fn reseal(block: &mut [u8]) {
    let crc = f::block_crc(block);
    f::put_u32(block, f::HDR_CRC, crc);
}

/// Superblock fields: format version, flags, name length, device size, the three tree roots,
/// heights and generations, and the counters.
const SUPER_FIELDS: [Field; 18] = [
    Field::new(f::SB_VERSION, 4, "version"),
    Field::new(f::SB_FLAGS, 4, "flags"),
    Field::new(f::SB_NAME_LEN, 2, "name_len"),
    Field::new(f::SB_DEVICE_BLOCKS, 8, "device_blocks"),
    Field::new(f::SB_DIR_ROOT, 8, "dir_root"),
    Field::new(f::SB_DIR_ROOT + 8, 8, "dir_height"),
    Field::new(f::SB_RC_ROOT, 8, "rc_root"),
    Field::new(f::SB_RC_ROOT + 8, 8, "rc_height"),
    Field::new(f::SB_SPACE_ROOT, 8, "space_root"),
    Field::new(f::SB_SPACE_ROOT + 8, 8, "space_height"),
    Field::new(f::SB_NEXT_SEQ, 8, "next_seq"),
    Field::new(f::SB_ALLOCATED, 8, "allocated"),
    Field::new(f::SB_DATA_BLOCKS, 8, "data_blocks"),
    Field::new(f::SB_META_BLOCKS, 8, "meta_blocks"),
    Field::new(f::SB_RESERVE, 8, "reserve"),
    Field::new(f::SB_DIR_GEN, 8, "dir_gen"),
    Field::new(f::SB_RC_GEN, 8, "rc_gen"),
    Field::new(f::SB_SPACE_GEN, 8, "space_gen"),
];

/// Volume-record fields: identity and parent (two halves each), size, mapping root and height,
/// logical block size, flags, the name and tag lengths and the root's generation.
const RECORD_FIELDS: [Field; 12] = [
    Field::new(f::VR_ID, 8, "id_lo"),
    Field::new(f::VR_ID + 8, 8, "id_hi"),
    Field::new(f::VR_PARENT, 8, "parent_lo"),
    Field::new(f::VR_PARENT + 8, 8, "parent_hi"),
    Field::new(f::VR_SIZE, 8, "size_bytes"),
    Field::new(f::VR_ROOT, 8, "root"),
    Field::new(f::VR_HEIGHT, 4, "height"),
    Field::new(f::VR_LBS, 4, "logical_block_size"),
    Field::new(f::VR_FLAGS, 4, "flags"),
    Field::new(f::VR_NAME_LEN, 2, "name_len"),
    Field::new(f::VR_TAG_LEN, 2, "tag_len"),
    Field::new(f::VR_ROOT_GEN, 8, "root_gen"),
];

/// Keys, then child pointers (internal: address and generation) or the fields of each value
/// (leaf).
fn node_fields(block: &[u8], kind: TreeKind, out: &mut Vec<Field>) {
    let level = get_u16(block, f::HDR_LEVEL);
    let cap = if level == 0 {
        kind.leaf_capacity()
    } else {
        INTERNAL_CAPACITY
    };
    let n = (get_u32(block, f::HDR_COUNT) as usize).min(cap);
    out.extend((0..n).map(|i| Field::new(f::HEADER_BYTES + 8 * i, 8, "key")));
    let base = f::HEADER_BYTES + 8 * n;
    if level > 0 {
        for i in 0..n {
            out.push(Field::new(base + 16 * i, 8, "child"));
            out.push(Field::new(base + 16 * i + 8, 8, "child_gen"));
        }
        return;
    }
    let value: &[Field] = match kind {
        // (physical block, length)
        TreeKind::Volume => &[Field::new(0, 8, "phys"), Field::new(8, 4, "len")],
        // (length, count)
        TreeKind::Refcount => &[Field::new(0, 4, "len"), Field::new(4, 4, "refcount")],
        // (page block, free bits, page generation)
        TreeKind::Space => &[
            Field::new(0, 8, "page_block"),
            Field::new(8, 4, "free_bits"),
            Field::new(SPACE_VAL_GEN, 8, "page_gen"),
        ],
        TreeKind::Directory => &RECORD_FIELDS,
    };
    let vs = kind.value_bytes();
    for i in 0..n {
        let at = base + i * vs;
        out.extend(
            value
                .iter()
                .map(|v| Field::new(at + v.offset, v.width, v.name)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;

    /// Every listed field of a full leaf of each kind lies inside the block, and a changed,
    /// re-sealed block decodes with the change in place.
    #[test]
    fn fields_stay_in_the_block_and_reseal_verifies() {
        for kind in [
            TreeKind::Volume,
            TreeKind::Refcount,
            TreeKind::Directory,
            TreeKind::Space,
        ] {
            let mut n = Node::new_leaf(kind);
            n.keys = (0..kind.leaf_capacity() as u64).collect();
            n.vals = vec![0u8; n.keys.len() * kind.value_bytes()];
            let at = f::Seal {
                addr: 9,
                gen: 1,
                uuid: [1; 16],
            };
            let mut b = n.encode(at);
            let fs = fields(&b);
            assert!(fs.iter().all(|x| x.offset + x.width <= BLOCK_SIZE_USIZE));
            assert_eq!(fs.len(), 4 + n.len() * (1 + value_fields(kind)));
            let key = fs[4 + 3];
            key.set(&mut b, 4);
            reseal(&mut b);
            let err = Node::decode(kind, &b, 9, 1, &f::Identity::current([1; 16])).unwrap_err();
            assert!(err.to_string().contains("keys out of order"), "{err}");
        }
    }

    fn value_fields(kind: TreeKind) -> usize {
        match kind {
            TreeKind::Directory => RECORD_FIELDS.len(),
            TreeKind::Space => 3,
            _ => 2,
        }
    }
}
