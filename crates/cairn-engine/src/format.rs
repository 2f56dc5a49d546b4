//! The on-disk format: block header, superblock and volume record layouts, and their codecs.
//!
//! Every offset is derived from the constants below; `docs/format.md` describes the same layout in
//! prose. All integers are little-endian and fixed-width. Every metadata block starts with a
//! [`HEADER_BYTES`]-byte header holding a magic, its block type, a CRC-32 of the whole block (taken
//! with the checksum field zeroed), its own address, the generation that wrote it and (from
//! format version 2) the pool's UUID. Blocks are verified by [`verify_block`] right after every
//! read and right before every write, against the [`Identity`] of the pool they belong to.
//!
//! Versions: this build writes [`FORMAT_VERSION`] and reads every version from
//! [`FORMAT_VERSION_MIN`] up to it; decoders take the version from the pool's `Identity` and
//! dispatch on it. A newer version is refused with `UnsupportedVersion`.

use cairn_io::BlockDevice;

use crate::error::{corrupt, err, Error, ErrorKind, Result};
use crate::limits::{
    BLOCK_SIZE_BYTES, BLOCK_SIZE_USIZE, POOL_NAME_BYTES_MAX, TAG_BYTES_MAX, VOLUME_NAME_BYTES_MAX,
};

/// Magic at offset 0 of every metadata block: "CRNM" little-endian.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"CRNM");
/// On-disk format version this build writes.
pub const FORMAT_VERSION: u32 = 3;
/// Oldest format version this build reads (and upgrades when it opens a pool writable).
pub const FORMAT_VERSION_MIN: u32 = 1;
/// The first version whose blocks carry the pool UUID and whose pointers carry generations.
pub const VERSION_STAMPED: u32 = 2;
const _: () = assert!(FORMAT_VERSION_MIN <= VERSION_STAMPED && VERSION_STAMPED <= FORMAT_VERSION);
/// The first version with share epochs (superblock, volume records, mappings): the test that
/// lets a write overwrite a data block in place.
pub const VERSION_SHARE_EPOCH: u32 = 3;
const _: () =
    assert!(VERSION_STAMPED < VERSION_SHARE_EPOCH && VERSION_SHARE_EPOCH <= FORMAT_VERSION);

// ---- block header ---------------------------------------------------------------------------
pub const HDR_MAGIC: usize = 0; // u32
pub const HDR_TYPE: usize = HDR_MAGIC + 4; // u16
pub const HDR_LEVEL: usize = HDR_TYPE + 2; // u16 (B-tree level, 0 = leaf)
pub const HDR_CRC: usize = HDR_LEVEL + 2; // u32
pub const HDR_COUNT: usize = HDR_CRC + 4; // u32 (entries in a node)
pub const HDR_ADDR: usize = HDR_COUNT + 4; // u64 (own block address)
pub const HDR_GEN: usize = HDR_ADDR + 8; // u64 (generation that wrote it)
pub const HDR_AUX: usize = HDR_GEN + 8; // u64 (bitmap page number; 0 elsewhere)
pub const HDR_UUID: usize = HDR_AUX + 8; // [u8; 16] pool UUID (version 2; zero in version 1)
pub const HDR_END: usize = HDR_UUID + 16;
/// Bytes of the header; payload starts here.
pub const HEADER_BYTES: usize = 64;
const _: () = assert!(HDR_END <= HEADER_BYTES);
const _: () = assert!(HDR_CRC % 4 == 0 && HDR_ADDR % 8 == 0);

/// Block types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum BlockType {
    Super = 1,
    VolumeNode = 2,
    RefcountNode = 3,
    DirectoryNode = 4,
    SpaceNode = 5,
    Bitmap = 6,
}

impl BlockType {
    pub fn from_u16(v: u16) -> Option<BlockType> {
        Some(match v {
            1 => BlockType::Super,
            2 => BlockType::VolumeNode,
            3 => BlockType::RefcountNode,
            4 => BlockType::DirectoryNode,
            5 => BlockType::SpaceNode,
            6 => BlockType::Bitmap,
            _ => return None,
        })
    }
}

pub fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// CRC-32 of a block with its checksum field taken as zero.
pub fn block_crc(block: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&block[..HDR_CRC]);
    h.update(&[0u8; 4]);
    h.update(&block[HDR_CRC + 4..]);
    h.finalize()
}

/// Which pool a block must belong to, and the format version its pool is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub version: u32,
    pub uuid: [u8; 16],
}

impl Identity {
    /// The identity of a pool written by this build.
    pub fn current(uuid: [u8; 16]) -> Identity {
        Identity {
            version: FORMAT_VERSION,
            uuid,
        }
    }

    /// Do this pool's blocks carry its UUID and its pointers the generation they expect?
    pub fn stamped(&self) -> bool {
        self.version >= VERSION_STAMPED
    }
}

/// Where a block lives and what wrote it: its address, generation and pool.
#[derive(Clone, Copy, Debug)]
pub struct Seal {
    pub addr: u64,
    pub gen: u64,
    pub uuid: [u8; 16],
}

/// Fills in the header of `block` (current version) and its checksum.
pub fn seal_block(block: &mut [u8], ty: BlockType, level: u16, count: u32, at: Seal) {
    debug_assert_eq!(block.len(), BLOCK_SIZE_USIZE);
    put_u32(block, HDR_MAGIC, BLOCK_MAGIC);
    put_u16(block, HDR_TYPE, ty as u16);
    put_u16(block, HDR_LEVEL, level);
    put_u32(block, HDR_COUNT, count);
    put_u64(block, HDR_ADDR, at.addr);
    put_u64(block, HDR_GEN, at.gen);
    block[HDR_UUID..HDR_UUID + 16].copy_from_slice(&at.uuid);
    let crc = block_crc(block);
    put_u32(block, HDR_CRC, crc);
}

/// Header fields of a verified block.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub level: u16,
    pub count: u32,
    pub gen: u64,
    pub aux: u64,
}

/// Verifies magic, checksum, type, own address and (version 2) pool UUID of a block; `gen_max`
/// bounds its generation.
pub fn verify_block(
    block: &[u8],
    ty: BlockType,
    addr: u64,
    gen_max: u64,
    id: &Identity,
) -> Result<Header> {
    let what = || format!("{ty:?} block {addr}");
    if block.len() != BLOCK_SIZE_USIZE || get_u32(block, HDR_MAGIC) != BLOCK_MAGIC {
        return Err(corrupt(format!("{}: bad magic", what())));
    }
    if get_u32(block, HDR_CRC) != block_crc(block) {
        return Err(corrupt(format!("{}: checksum mismatch", what())));
    }
    let found = get_u16(block, HDR_TYPE);
    if BlockType::from_u16(found) != Some(ty) {
        return Err(corrupt(format!("{}: holds block type {found}", what())));
    }
    if get_u64(block, HDR_ADDR) != addr {
        return Err(corrupt(format!(
            "{}: written for address {}",
            what(),
            get_u64(block, HDR_ADDR)
        )));
    }
    if id.stamped() && block[HDR_UUID..HDR_UUID + 16] != id.uuid {
        return Err(corrupt(format!(
            "{}: belongs to another pool (UUID {})",
            what(),
            uuid_hex(&block[HDR_UUID..HDR_UUID + 16])
        )));
    }
    let gen = get_u64(block, HDR_GEN);
    if gen > gen_max {
        return Err(corrupt(format!(
            "{}: generation {gen} is in the future",
            what()
        )));
    }
    Ok(Header {
        level: get_u16(block, HDR_LEVEL),
        count: get_u32(block, HDR_COUNT),
        gen,
        aux: get_u64(block, HDR_AUX),
    })
}

/// A UUID as 32 hex digits.
pub fn uuid_hex(u: &[u8]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- superblock -----------------------------------------------------------------------------
pub const SB_VERSION: usize = HEADER_BYTES; // u32
pub const SB_FLAGS: usize = SB_VERSION + 4; // u32
pub const SB_UUID: usize = SB_FLAGS + 4; // [u8; 16]
pub const SB_NAME_LEN: usize = SB_UUID + 16; // u16 (+6 pad)
pub const SB_NAME: usize = SB_NAME_LEN + 8; // [u8; POOL_NAME_BYTES_MAX]
pub const SB_DEVICE_BLOCKS: usize = SB_NAME + POOL_NAME_BYTES_MAX; // u64
pub const SB_DIR_ROOT: usize = SB_DEVICE_BLOCKS + 8; // u64 root, u64 height
pub const SB_RC_ROOT: usize = SB_DIR_ROOT + 16; // u64 root, u64 height
pub const SB_SPACE_ROOT: usize = SB_RC_ROOT + 16; // u64 root, u64 height
pub const SB_NEXT_SEQ: usize = SB_SPACE_ROOT + 16; // u64
pub const SB_ALLOCATED: usize = SB_NEXT_SEQ + 8; // u64 blocks marked in the space map
pub const SB_DATA_BLOCKS: usize = SB_ALLOCATED + 8; // u64
pub const SB_META_BLOCKS: usize = SB_DATA_BLOCKS + 8; // u64
pub const SB_RESERVE: usize = SB_META_BLOCKS + 8; // u64 metadata reserve in blocks
pub const SB_CREATED: usize = SB_RESERVE + 8; // u64 unix seconds
pub const SB_DIR_GEN: usize = SB_CREATED + 8; // u64 generation of the directory root (v2)
pub const SB_RC_GEN: usize = SB_DIR_GEN + 8; // u64 generation of the refcount root (v2)
pub const SB_SPACE_GEN: usize = SB_RC_GEN + 8; // u64 generation of the space-index root (v2)
pub const SB_SHARE_EPOCH: usize = SB_SPACE_GEN + 8; // u64 pool share epoch (v3)
pub const SB_END: usize = SB_SHARE_EPOCH + 8;
const _: () = assert!(SB_END <= BLOCK_SIZE_USIZE);
const _: () = assert!(SB_DEVICE_BLOCKS % 8 == 0);

/// Block addresses of the two superblocks; generation `g` lives in `SUPER_ADDRS[g % 2]`.
pub const SUPER_ADDRS: [u64; 2] = [0, 1];

/// A tree root: address of the root node (0 = empty tree), height (0 = empty) and the
/// generation that wrote the root node (0 for an empty tree, and in a version-1 pool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Root {
    pub addr: u64,
    pub height: u32,
    pub gen: u64,
}

/// Decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub gen: u64,
    /// Format version the pool is written in (always [`FORMAT_VERSION`] when encoded).
    pub version: u32,
    pub uuid: [u8; 16],
    pub name: String,
    pub device_blocks: u64,
    pub dir: Root,
    pub rc: Root,
    pub space: Root,
    pub next_seq: u64,
    pub allocated_blocks: u64,
    pub data_blocks: u64,
    pub meta_blocks: u64,
    pub reserve_blocks: u64,
    pub created_unix_secs: u64,
    /// The pool's share epoch: advanced by every operation that adds an owner to blocks
    /// (snapshot, clone, restore); at most [`SHARE_EPOCH_MAX`]. Zero before version 3.
    pub share_epoch: u64,
}

fn put_root(b: &mut [u8], off: usize, gen_off: usize, r: Root) {
    put_u64(b, off, r.addr);
    put_u64(b, off + 8, u64::from(r.height));
    put_u64(b, gen_off, r.gen);
}

/// A root of the superblock; version 1 records no root generations.
fn get_root(b: &[u8], off: usize, gen_off: usize, version: u32) -> Result<Root> {
    let height = get_u64(b, off + 8);
    let height = u32::try_from(height).map_err(|_| corrupt("superblock: bad tree height"))?;
    Ok(Root {
        addr: get_u64(b, off),
        height,
        gen: if version >= VERSION_STAMPED {
            get_u64(b, gen_off)
        } else {
            0
        },
    })
}

impl Superblock {
    /// Encodes and seals the superblock for its slot.
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(
            self.version, FORMAT_VERSION,
            "only the current version is written"
        );
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        put_u32(&mut b, SB_VERSION, FORMAT_VERSION);
        b[SB_UUID..SB_UUID + 16].copy_from_slice(&self.uuid);
        let name = self.name.as_bytes();
        assert!(
            name.len() <= POOL_NAME_BYTES_MAX,
            "pool name checked at create"
        );
        put_u16(&mut b, SB_NAME_LEN, name.len() as u16);
        b[SB_NAME..SB_NAME + name.len()].copy_from_slice(name);
        put_u64(&mut b, SB_DEVICE_BLOCKS, self.device_blocks);
        put_root(&mut b, SB_DIR_ROOT, SB_DIR_GEN, self.dir);
        put_root(&mut b, SB_RC_ROOT, SB_RC_GEN, self.rc);
        put_root(&mut b, SB_SPACE_ROOT, SB_SPACE_GEN, self.space);
        put_u64(&mut b, SB_NEXT_SEQ, self.next_seq);
        put_u64(&mut b, SB_ALLOCATED, self.allocated_blocks);
        put_u64(&mut b, SB_DATA_BLOCKS, self.data_blocks);
        put_u64(&mut b, SB_META_BLOCKS, self.meta_blocks);
        put_u64(&mut b, SB_RESERVE, self.reserve_blocks);
        put_u64(&mut b, SB_CREATED, self.created_unix_secs);
        assert!(self.share_epoch <= SHARE_EPOCH_MAX, "share epoch bounded");
        put_u64(&mut b, SB_SHARE_EPOCH, self.share_epoch);
        let at = Seal {
            addr: SUPER_ADDRS[(self.gen % 2) as usize],
            gen: self.gen,
            uuid: self.uuid,
        };
        seal_block(&mut b, BlockType::Super, 0, 0, at);
        b
    }

    /// The identity every other block of this pool is verified against.
    pub fn identity(&self) -> Identity {
        Identity {
            version: self.version,
            uuid: self.uuid,
        }
    }

    /// Decodes a superblock read from `addr`. `NotAPool` when the magic is absent,
    /// `UnsupportedVersion` for a version this build does not read, `Corrupt` for a bad checksum.
    pub fn decode(b: &[u8], addr: u64) -> Result<Superblock> {
        let (hdr, version, uuid) = Self::decode_header(b, addr)?;
        let name = Self::decode_name(b)?;
        let device_blocks = get_u64(b, SB_DEVICE_BLOCKS);
        Self::check_counts(b, addr, device_blocks)?;
        let share_epoch = Self::decode_share_epoch(b, addr, version)?;
        Ok(Superblock {
            gen: hdr.gen,
            share_epoch,
            version,
            uuid,
            name,
            device_blocks,
            dir: get_root(b, SB_DIR_ROOT, SB_DIR_GEN, version)?,
            rc: get_root(b, SB_RC_ROOT, SB_RC_GEN, version)?,
            space: get_root(b, SB_SPACE_ROOT, SB_SPACE_GEN, version)?,
            next_seq: get_u64(b, SB_NEXT_SEQ),
            allocated_blocks: get_u64(b, SB_ALLOCATED),
            data_blocks: get_u64(b, SB_DATA_BLOCKS),
            meta_blocks: get_u64(b, SB_META_BLOCKS),
            reserve_blocks: get_u64(b, SB_RESERVE),
            created_unix_secs: get_u64(b, SB_CREATED),
        })
    }

    /// The parts every version shares, in the order that lets a newer layout be told apart:
    /// magic, then checksum, type and address, then the version, then the header's pool UUID
    /// and the slot the generation belongs in. Returns the header, the version and the UUID.
    fn decode_header(b: &[u8], addr: u64) -> Result<(Header, u32, [u8; 16])> {
        if b.len() != BLOCK_SIZE_USIZE || get_u32(b, HDR_MAGIC) != BLOCK_MAGIC {
            return Err(err(
                ErrorKind::NotAPool,
                format!("no superblock at block {addr}"),
            ));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[SB_UUID..SB_UUID + 16]);
        let unstamped = Identity {
            version: FORMAT_VERSION_MIN,
            uuid,
        };
        let hdr = verify_block(b, BlockType::Super, addr, u64::MAX, &unstamped)?;
        let version = get_u32(b, SB_VERSION);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(err(
                ErrorKind::UnsupportedVersion,
                format!(
                    "format version {version}, this build reads \
                     {FORMAT_VERSION_MIN} to {FORMAT_VERSION}"
                ),
            ));
        }
        if version >= VERSION_STAMPED && b[HDR_UUID..HDR_UUID + 16] != uuid {
            return Err(corrupt(format!(
                "superblock {addr}: header UUID differs from the pool's"
            )));
        }
        if SUPER_ADDRS[(hdr.gen % 2) as usize] != addr {
            return Err(corrupt(format!(
                "superblock {addr}: generation in wrong slot"
            )));
        }
        Ok((hdr, version, uuid))
    }

    /// The pool name: at most `POOL_NAME_BYTES_MAX` bytes of UTF-8.
    fn decode_name(b: &[u8]) -> Result<String> {
        let name_len = usize::from(get_u16(b, SB_NAME_LEN));
        if name_len > POOL_NAME_BYTES_MAX {
            return Err(corrupt("superblock: pool name too long"));
        }
        Ok(std::str::from_utf8(&b[SB_NAME..SB_NAME + name_len])
            .map_err(|_| corrupt("superblock: pool name not UTF-8"))?
            .to_string())
    }

    /// Every block count fits the device, and data plus metadata blocks together do too.
    fn check_counts(b: &[u8], addr: u64, device_blocks: u64) -> Result<()> {
        let counted =
            [SB_ALLOCATED, SB_DATA_BLOCKS, SB_META_BLOCKS, SB_RESERVE].map(|f| get_u64(b, f));
        if counted.iter().any(|&n| n > device_blocks)
            || counted[1]
                .checked_add(counted[2])
                .is_none_or(|n| n > device_blocks)
        {
            return Err(corrupt(format!(
                "superblock {addr}: block counts {counted:?} exceed the pool's {device_blocks} blocks"
            )));
        }
        Ok(())
    }

    /// The share epoch (0 before the version that added it), bounded by `SHARE_EPOCH_MAX`.
    fn decode_share_epoch(b: &[u8], addr: u64, version: u32) -> Result<u64> {
        let share_epoch = if version >= VERSION_SHARE_EPOCH {
            get_u64(b, SB_SHARE_EPOCH)
        } else {
            0
        };
        if share_epoch > SHARE_EPOCH_MAX {
            return Err(corrupt(format!(
                "superblock {addr}: share epoch {share_epoch} past {SHARE_EPOCH_MAX}"
            )));
        }
        Ok(share_epoch)
    }
}

// ---- volume record (value of the directory tree) --------------------------------------------
pub const VR_ID: usize = 0; // [u8; 16]
pub const VR_PARENT: usize = VR_ID + 16; // [u8; 16]
pub const VR_SIZE: usize = VR_PARENT + 16; // u64 bytes
pub const VR_ROOT: usize = VR_SIZE + 8; // u64 mapping root
pub const VR_HEIGHT: usize = VR_ROOT + 8; // u32
pub const VR_LBS: usize = VR_HEIGHT + 4; // u32 logical block size
pub const VR_FLAGS: usize = VR_LBS + 4; // u32
pub const VR_NAME_LEN: usize = VR_FLAGS + 4; // u16
pub const VR_TAG_LEN: usize = VR_NAME_LEN + 2; // u16
pub const VR_CREATED: usize = VR_TAG_LEN + 2; // u64 unix seconds
pub const VR_NAME: usize = VR_CREATED + 8; // [u8; VOLUME_NAME_BYTES_MAX]
pub const VR_TAG: usize = VR_NAME + VOLUME_NAME_BYTES_MAX; // [u8; TAG_BYTES_MAX]
pub const VR_ROOT_GEN: usize = VR_TAG + TAG_BYTES_MAX; // u64 generation of the root (v2)
pub const VR_SHARE_EPOCH: usize = VR_ROOT_GEN + 8; // u64 epoch of the volume's last share (v3)
pub const VR_FAMILY: usize = VR_SHARE_EPOCH + 8; // [u8; 16] id of the family's first volume
pub const VR_END: usize = VR_FAMILY + 16;
/// Fixed size of a volume record (room to grow).
pub const VOLUME_RECORD_BYTES: usize = 640;
const _: () = assert!(VR_END <= VOLUME_RECORD_BYTES);
const _: () = assert!(
    VR_SIZE % 8 == 0 && VR_CREATED % 8 == 0 && VR_ROOT_GEN % 8 == 0 && VR_SHARE_EPOCH % 8 == 0
);
/// The largest share epoch: a mapping records its epoch in the `u32` of its value, so the
/// pool epoch never passes what that field holds (no wrap, no ambiguity); a share that would
/// pass it is refused (`ShareEpochExhausted`).
pub const SHARE_EPOCH_MAX: u64 = u32::MAX as u64;

pub const VF_READ_ONLY: u32 = 1;
pub const VF_HIDDEN: u32 = 2;
pub const VF_DELETING: u32 = 4;
pub const VF_HAS_PARENT: u32 = 8;
/// On a tombstone: reclaim failed on its tree (a bad metadata block); it is not retried, its
/// space stays allocated (lost) and `check` reports it.
pub const VF_QUARANTINED: u32 = 16;
pub const VF_KNOWN: u32 = VF_READ_ONLY | VF_HIDDEN | VF_DELETING | VF_HAS_PARENT | VF_QUARANTINED;

/// One volume (or snapshot, or tombstone awaiting reclaim) in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: [u8; 16],
    pub parent: Option<[u8; 16]>,
    pub size_bytes: u64,
    pub root: Root,
    pub logical_block_size: u32,
    pub flags: u32,
    pub created_unix_secs: u64,
    pub name: String,
    pub tag: Vec<u8>,
    /// The share epoch of the volume's last share (snapshot or clone of it, restore into or
    /// from it); a mapping of the volume written in this epoch or later is exclusively the
    /// volume's. Zero before version 3.
    pub share_epoch: u64,
    /// The volume family: the id of the volume the record's lineage began with (a plain
    /// volume's own id; a snapshot, clone, restore or keeper tree takes its source's). Blocks
    /// are shared only within a family. Zero in records written before the field existed (or
    /// by a build that does not know it): those volumes make up one family, the legacy one.
    pub family: [u8; 16],
}

impl VolumeRecord {
    pub fn deleting(&self) -> bool {
        self.flags & VF_DELETING != 0
    }

    /// A tombstone reclaim gave up on (see `VF_QUARANTINED`).
    pub fn quarantined(&self) -> bool {
        self.flags & VF_QUARANTINED != 0
    }

    pub fn encode(&self, b: &mut [u8]) {
        assert_eq!(b.len(), VOLUME_RECORD_BYTES);
        assert!(self.name.len() <= VOLUME_NAME_BYTES_MAX && self.tag.len() <= TAG_BYTES_MAX);
        b.fill(0);
        b[VR_ID..VR_ID + 16].copy_from_slice(&self.id);
        let mut flags = self.flags & !VF_HAS_PARENT;
        if let Some(p) = self.parent {
            b[VR_PARENT..VR_PARENT + 16].copy_from_slice(&p);
            flags |= VF_HAS_PARENT;
        }
        put_u64(b, VR_SIZE, self.size_bytes);
        put_u64(b, VR_ROOT, self.root.addr);
        put_u32(b, VR_HEIGHT, self.root.height);
        put_u64(b, VR_ROOT_GEN, self.root.gen);
        put_u64(b, VR_SHARE_EPOCH, self.share_epoch);
        b[VR_FAMILY..VR_FAMILY + 16].copy_from_slice(&self.family);
        put_u32(b, VR_LBS, self.logical_block_size);
        put_u32(b, VR_FLAGS, flags);
        put_u16(b, VR_NAME_LEN, self.name.len() as u16);
        put_u16(b, VR_TAG_LEN, self.tag.len() as u16);
        put_u64(b, VR_CREATED, self.created_unix_secs);
        b[VR_NAME..VR_NAME + self.name.len()].copy_from_slice(self.name.as_bytes());
        b[VR_TAG..VR_TAG + self.tag.len()].copy_from_slice(&self.tag);
    }

    pub fn decode(b: &[u8]) -> Result<VolumeRecord> {
        let name_len = usize::from(get_u16(b, VR_NAME_LEN));
        let tag_len = usize::from(get_u16(b, VR_TAG_LEN));
        let flags = get_u32(b, VR_FLAGS);
        let lbs = get_u32(b, VR_LBS);
        if name_len > VOLUME_NAME_BYTES_MAX || tag_len > TAG_BYTES_MAX || flags & !VF_KNOWN != 0 {
            return Err(corrupt("volume record: bad lengths or flags"));
        }
        if lbs != 512 && lbs != 4096 {
            return Err(corrupt("volume record: bad logical block size"));
        }
        if flags & VF_QUARANTINED != 0 && flags & VF_DELETING == 0 {
            return Err(corrupt("volume record: quarantined but not a tombstone"));
        }
        let name = std::str::from_utf8(&b[VR_NAME..VR_NAME + name_len])
            .map_err(|_| corrupt("volume record: name not UTF-8"))?
            .to_string();
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[VR_ID..VR_ID + 16]);
        let parent = (flags & VF_HAS_PARENT != 0).then(|| {
            let mut p = [0u8; 16];
            p.copy_from_slice(&b[VR_PARENT..VR_PARENT + 16]);
            p
        });
        Ok(VolumeRecord {
            id,
            parent,
            size_bytes: get_u64(b, VR_SIZE),
            // Zero in a version-1 record (the field was reserved); only read as expected in v2.
            root: Root {
                addr: get_u64(b, VR_ROOT),
                height: get_u32(b, VR_HEIGHT),
                gen: get_u64(b, VR_ROOT_GEN),
            },
            logical_block_size: lbs,
            flags: flags & !VF_HAS_PARENT,
            created_unix_secs: get_u64(b, VR_CREATED),
            // Zero in older records (the field was reserved).
            share_epoch: get_u64(b, VR_SHARE_EPOCH),
            // Zero in older records (the field was reserved).
            family: b[VR_FAMILY..VR_FAMILY + 16].try_into().expect("16 bytes"),
            name,
            tag: b[VR_TAG..VR_TAG + tag_len].to_vec(),
        })
    }
}

/// Reads both superblocks and returns the valid one with the highest generation. A superblock
/// of a version this build does not read refuses the pool even when the other slot is readable:
/// it was written by a newer build, and the other slot is an older state of the same pool.
pub(crate) fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock> {
    if dev.size_bytes() < 2 * BLOCK_SIZE_BYTES {
        return Err(err(ErrorKind::NotAPool, "device smaller than two blocks"));
    }
    let mut best: Option<Superblock> = None;
    let mut first_err: Option<Error> = None;
    for a in SUPER_ADDRS {
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        dev.read_at(a * BLOCK_SIZE_BYTES, &mut b)
            .map_err(|e| Error::io("read superblock", e))?;
        match Superblock::decode(&b, a) {
            Ok(sb) if best.as_ref().is_none_or(|x| x.gen < sb.gen) => best = Some(sb),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnsupportedVersion => return Err(e),
            Err(e) => {
                let worse = match &first_err {
                    None => true,
                    Some(f) => f.kind() == ErrorKind::NotAPool,
                };
                if worse {
                    first_err = Some(e);
                }
            }
        }
    }
    match best {
        Some(sb) => Ok(sb),
        None => Err(first_err.unwrap_or_else(|| err(ErrorKind::NotAPool, "no superblock"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trip_and_slot() {
        let sb = Superblock {
            gen: 7,
            version: FORMAT_VERSION,
            uuid: [3; 16],
            name: "pool0".into(),
            device_blocks: 4096,
            dir: Root {
                addr: 9,
                height: 1,
                gen: 6,
            },
            rc: Root::default(),
            space: Root {
                addr: 12,
                height: 2,
                gen: 7,
            },
            next_seq: 5,
            allocated_blocks: 40,
            data_blocks: 20,
            meta_blocks: 18,
            reserve_blocks: 256,
            created_unix_secs: 1,
            share_epoch: 9,
        };
        let b = sb.encode();
        assert_eq!(Superblock::decode(&b, 1).unwrap(), sb);
        assert!(Superblock::decode(&b, 0).is_err());
        let mut bad = b.clone();
        bad[SB_DEVICE_BLOCKS] ^= 1;
        assert_eq!(
            Superblock::decode(&bad, 1).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            Superblock::decode(&[0u8; 4096], 1).unwrap_err().kind(),
            ErrorKind::NotAPool
        );
        let at = Seal {
            addr: 1,
            gen: 7,
            uuid: sb.uuid,
        };
        let mut newer = b.clone();
        put_u32(&mut newer, SB_VERSION, FORMAT_VERSION + 1);
        seal_block(&mut newer, BlockType::Super, 0, 0, at);
        assert_eq!(
            Superblock::decode(&newer, 1).unwrap_err().kind(),
            ErrorKind::UnsupportedVersion
        );
        let mut foreign = b.clone();
        seal_block(
            &mut foreign,
            BlockType::Super,
            0,
            0,
            Seal {
                uuid: [4; 16],
                ..at
            },
        );
        let e = Superblock::decode(&foreign, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }

    #[test]
    fn a_version_1_superblock_decodes_without_root_generations() {
        let mut b = vec![0u8; BLOCK_SIZE_USIZE];
        put_u32(&mut b, SB_VERSION, 1);
        b[SB_UUID..SB_UUID + 16].copy_from_slice(&[5; 16]);
        put_u64(&mut b, SB_DIR_ROOT, 9);
        put_u64(&mut b, SB_DIR_ROOT + 8, 1);
        put_u64(&mut b, SB_DIR_GEN, 77); // reserved in version 1: ignored
        let at = Seal {
            addr: 1,
            gen: 3,
            uuid: [0; 16],
        };
        seal_block(&mut b, BlockType::Super, 0, 0, at);
        let sb = Superblock::decode(&b, 1).unwrap();
        assert_eq!((sb.version, sb.uuid, sb.gen), (1, [5; 16], 3));
        assert_eq!(
            sb.dir,
            Root {
                addr: 9,
                height: 1,
                gen: 0
            }
        );
    }

    #[test]
    fn a_newer_version_in_either_slot_refuses_the_pool() {
        let dev = cairn_io::MemDevice::new(4 * BLOCK_SIZE_BYTES);
        let mut sb = Superblock {
            gen: 4,
            version: FORMAT_VERSION,
            uuid: [3; 16],
            name: "p".into(),
            device_blocks: 4,
            dir: Root::default(),
            rc: Root::default(),
            space: Root::default(),
            next_seq: 1,
            allocated_blocks: 2,
            data_blocks: 0,
            meta_blocks: 2,
            reserve_blocks: 0,
            created_unix_secs: 0,
            share_epoch: 0,
        };
        dev.write_at(0, &sb.encode()).unwrap();
        sb.gen = 5;
        let mut newer = sb.encode();
        put_u32(&mut newer, SB_VERSION, FORMAT_VERSION + 1);
        let at = Seal {
            addr: 1,
            gen: 5,
            uuid: sb.uuid,
        };
        seal_block(&mut newer, BlockType::Super, 0, 0, at);
        dev.write_at(BLOCK_SIZE_BYTES, &newer).unwrap();
        let e = read_superblock(&dev).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedVersion, "{e}");
        // A torn (checksum-failing) newest slot is only skipped.
        newer[300] ^= 1;
        dev.write_at(BLOCK_SIZE_BYTES, &newer).unwrap();
        assert_eq!(read_superblock(&dev).unwrap().gen, 4);
    }

    #[test]
    fn volume_record_round_trip() {
        let r = VolumeRecord {
            id: [1; 16],
            parent: Some([2; 16]),
            size_bytes: 1 << 30,
            root: Root {
                addr: 77,
                height: 3,
                gen: 12,
            },
            logical_block_size: 512,
            flags: VF_READ_ONLY,
            created_unix_secs: 99,
            name: "vol é".into(),
            tag: vec![1, 2, 3],
            share_epoch: 7,
            family: [3; 16],
        };
        let mut b = vec![0u8; VOLUME_RECORD_BYTES];
        r.encode(&mut b);
        assert_eq!(VolumeRecord::decode(&b).unwrap(), r);
    }
}
