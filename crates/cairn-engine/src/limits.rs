//! Every limit of the engine in one place, with compile-time checks of how they relate.
//!
//! Units are last in names. Limits that shape the on-disk format are repeated in
//! `docs/format.md`; changing one of those is a format change.

/// Size of every device block the engine addresses: superblocks, metadata nodes, data blocks.
pub const BLOCK_SIZE_BYTES: u64 = 4096;
/// The same as a `usize`, for buffers.
pub const BLOCK_SIZE_USIZE: usize = BLOCK_SIZE_BYTES as usize;

/// Longest volume name in characters (BRIEF §8).
pub const VOLUME_NAME_CHARS_MAX: usize = 64;
/// Longest volume name in UTF-8 bytes (its on-disk field).
pub const VOLUME_NAME_BYTES_MAX: usize = 256;
/// Longest pool name in bytes (ASCII only).
pub const POOL_NAME_BYTES_MAX: usize = 64;
/// Longest opaque tag kept with a volume.
pub const TAG_BYTES_MAX: usize = 256;

/// Largest volume: 1 PiB. Keeps every virtual block number far below `u64::MAX`.
pub const VOLUME_SIZE_BYTES_MAX: u64 = 1 << 50;
/// Largest single read or write request.
pub const IO_BYTES_MAX: usize = 32 << 20;
/// Longest mapping extent in blocks (an extent's length is stored as `u32`).
pub const EXTENT_BLOCKS_MAX: u64 = 1 << 20;

/// Smallest pool device: superblocks plus room for metadata and some data.
pub const POOL_BLOCKS_MIN: u64 = 1024;
/// Metadata reserve: this per-mille of the pool, at least [`META_RESERVE_BLOCKS_MIN`].
pub const META_RESERVE_PER_MILLE: u64 = 30;
/// Smallest metadata reserve in blocks.
pub const META_RESERVE_BLOCKS_MIN: u64 = 256;
/// Extra blocks a data allocation leaves free beyond the reserve, for its own mapping update.
pub const DATA_ALLOC_HEADROOM_BLOCKS: u64 = 16;
/// The part of the metadata reserve (per mille) that only delete and reclaim may use: ordinary
/// operations (writes, trims, write-zeroes, snapshots) stop above it.
pub const META_FLOOR_PER_MILLE: u64 = 250;
/// Largest layout chunk (64 MiB): a pool file is preallocated (fallocate) a chunk at a time,
/// before the allocator places anything in the chunk, and punched out a wholly free chunk at a
/// time (see `meta::layout`).
pub const CHUNK_BLOCKS_MAX: u64 = 16384;
/// Smallest layout chunk (1 MiB).
pub const CHUNK_BLOCKS_MIN: u64 = 256;
/// Chunks a pool has at least while its chunks are larger than the minimum, so a small pool
/// file is not backed whole by its first write.
pub const POOL_CHUNKS_MIN: u64 = 64;
/// Writes needing at most this many fresh blocks are placed after their virtual neighbour's
/// physical block when a run of their length is free within `NEAR_WINDOW_BLOCKS` of it.
pub const SMALL_REDIRECT_BLOCKS_MAX: u64 = 16;
/// How far after its neighbour's block a small write's run may start.
pub const NEAR_WINDOW_BLOCKS: u64 = 256;
/// Writes needing at least this many fresh blocks take free runs of at least
/// `LARGE_RUN_BLOCKS_MAX` blocks (or their whole length) first.
pub const LARGE_WRITE_BLOCKS_MIN: u64 = 64;
/// The run length a large write asks for at most before it takes shorter pieces (8 MiB).
pub const LARGE_RUN_BLOCKS_MAX: u64 = 2048;
/// Blocks added to the bound of what a commit allocates (superblock-independent slack).
pub const COMMIT_SLACK_BLOCKS: u64 = 16;

/// Largest next volume sequence number accepted from disk (so counting on cannot overflow).
pub const VOLUME_SEQ_MAX: u64 = 1 << 62;
/// Tallest B-tree accepted when reading (a deeper tree is corrupt).
pub const BTREE_HEIGHT_MAX: u32 = 12;
/// Mapping entries a background reclaim transaction removes at most.
pub const RECLAIM_ENTRIES_PER_TXN: usize = 2048;
/// Bitmap pages a reclaim transaction dirties at most (each is rewritten by its commit).
pub const RECLAIM_PAGES_PER_TXN: usize = 16;
/// Pause of the background thread between two reclaim transactions (the locks are free then).
pub const RECLAIM_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
/// Mapping entries one step of a trim or write-zeroes removes at most; the locks are released
/// between steps, so a request of another volume waits at most one step.
pub const UNMAP_ENTRIES_PER_STEP: usize = 1024;
/// Dirty metadata blocks that force a commit from the write path (bounds pinned memory).
pub const DIRTY_BLOCKS_MAX: usize = 8192;
/// Smallest node cache accepted (smaller requests are raised to this).
pub const NODE_CACHE_BYTES_MIN: usize = 256 * BLOCK_SIZE_USIZE;
/// The clean bitmap pages kept get this fraction (1/N) of the cache's blocks; the nodes the rest.
pub const PAGE_CACHE_SHARE_DIVISOR: usize = 4;
/// Fewest clean bitmap pages kept (each one block of memory, covering 128 MiB of pool).
pub const PAGE_CACHE_PAGES_MIN: usize = 8;
/// Fewest clean nodes kept.
pub const NODE_CACHE_NODES_MIN: usize = 16;
/// Data extent records (32 bytes each) `check` keeps in memory before spilling them, sorted,
/// to a temporary file.
pub const CHECK_EXTENTS_IN_MEMORY_MAX: usize = 1 << 19;
/// Records read at once from each spilled run while merging (8 KiB per run).
pub const CHECK_RUN_READ_RECORDS: usize = 256;

/// Logical block sizes a volume may have.
pub const LOGICAL_BLOCK_SIZES: [u32; 2] = [512, 4096];

const _: () = assert!(BLOCK_SIZE_BYTES.is_power_of_two());
const _: () = assert!(PAGE_CACHE_SHARE_DIVISOR >= 2 && PAGE_CACHE_PAGES_MIN > 0);
const _: () = assert!(CHECK_EXTENTS_IN_MEMORY_MAX > 0 && CHECK_RUN_READ_RECORDS > 0);
const _: () = assert!(
    NODE_CACHE_BYTES_MIN / BLOCK_SIZE_USIZE / PAGE_CACHE_SHARE_DIVISOR >= PAGE_CACHE_PAGES_MIN
);
const _: () = assert!(VOLUME_NAME_BYTES_MAX >= VOLUME_NAME_CHARS_MAX * 4);
const _: () = assert!(EXTENT_BLOCKS_MAX <= u32::MAX as u64);
const _: () = assert!(IO_BYTES_MAX as u64 / BLOCK_SIZE_BYTES <= EXTENT_BLOCKS_MAX);
const _: () = assert!(VOLUME_SIZE_BYTES_MAX / BLOCK_SIZE_BYTES < u64::MAX / 2);
const _: () = assert!(META_RESERVE_BLOCKS_MIN + 2 < POOL_BLOCKS_MIN);
const _: () = assert!(DATA_ALLOC_HEADROOM_BLOCKS < META_RESERVE_BLOCKS_MIN);
const _: () = assert!(META_FLOOR_PER_MILLE > 0 && META_FLOOR_PER_MILLE < 1000);
const _: () =
    assert!(META_RESERVE_BLOCKS_MIN * META_FLOOR_PER_MILLE / 1000 >= 4 * COMMIT_SLACK_BLOCKS);
const _: () = assert!(CHUNK_BLOCKS_MIN.is_power_of_two() && CHUNK_BLOCKS_MAX.is_power_of_two());
const _: () = assert!(CHUNK_BLOCKS_MIN <= CHUNK_BLOCKS_MAX && POOL_CHUNKS_MIN > 0);
const _: () = assert!(SMALL_REDIRECT_BLOCKS_MAX <= NEAR_WINDOW_BLOCKS);
const _: () = assert!(LARGE_WRITE_BLOCKS_MIN > SMALL_REDIRECT_BLOCKS_MAX);
const _: () = assert!(LARGE_RUN_BLOCKS_MAX >= LARGE_WRITE_BLOCKS_MIN);
const _: () = assert!(LARGE_RUN_BLOCKS_MAX < crate::meta::PAGE_BITS);
const _: () = assert!(RECLAIM_PAGES_PER_TXN > 0 && UNMAP_ENTRIES_PER_STEP > 0);
const _: () = assert!(LOGICAL_BLOCK_SIZES[1] as u64 == BLOCK_SIZE_BYTES);
const _: () = assert!(BLOCK_SIZE_BYTES % LOGICAL_BLOCK_SIZES[0] as u64 == 0);
const _: () = assert!(VOLUME_SEQ_MAX < u64::MAX / 2);
