//! Fuzzes the engine's metadata logic behind the checksum. A real pool is built once on a memory
//! device (ten volumes and snapshots, so the directory has two levels; a volume of 400 extents
//! and its snapshot, so mapping and refcount trees have internal nodes; a pending delete; two
//! bitmap pages). Each input changes decoded fields of its sealed metadata blocks — keys, counts,
//! levels, child addresses, extents, refcounts, volume records, space-index entries, bitmap words,
//! superblock roots — and re-seals them with a valid checksum through the engine's own layout
//! (`cairn_engine::test_support`). The pool is then opened and driven by the rest of the input:
//! reads, writes, trims, write-zeroes, snapshots, deletes, reclaim steps, flushes and checks, then
//! closed, reopened and checked. Every failure must be a typed error: no panic, no hang.
//!
//! Input: `[m: u8]`, then `m % 16` mutations `[block: u16][field: u16][op: u8][arg: u32]`, then
//! at most `OPS_MAX` operations `[op: u8][volume: u8][offset: u8][len: u8]`.
#![no_main]

use std::sync::{Arc, OnceLock};

use cairn_engine::test_support::{fields, reseal, sealed_blocks};
use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::MemDevice;
use libfuzzer_sys::fuzz_target;

/// Two bitmap pages (one covers 32,256 blocks).
const POOL_BYTES: u64 = 160 << 20;
const MUTATION_BYTES: usize = 9;
const OP_BYTES: usize = 4;
/// Operations one input runs at most, so every input is bounded work.
const OPS_MAX: usize = 32;

fn options() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

struct Seed {
    image: MemDevice,
    /// Sealed metadata blocks of the image, live and stale.
    blocks: Vec<u64>,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dev = Arc::new(MemDevice::new(POOL_BYTES));
        build(Pool::create(dev.clone(), "fuzz", options()).expect("create"));
        let blocks = sealed_blocks(&*dev).expect("scan");
        Seed {
            image: dev.snapshot(),
            blocks,
        }
    })
}

fn build(pool: Arc<Pool>) {
    let storage = Storage::new();
    storage.add_pool(pool.clone()).expect("add");
    let vo = VolumeOptions::default;
    let a = storage.create_volume("fuzz", "a", 16 << 20, vo()).expect("a").1.id;
    for i in 0..400u64 {
        pool.write(a, i * 8192, &[i as u8 | 1; 4096])
            .expect("write a");
    }
    let snap = storage.snapshot(a, "a@1", vo()).expect("snap").1.id;
    for i in (0..400u64).step_by(40) {
        pool.write(a, i * 8192, &[0xee; 4096]).expect("overwrite a");
    }
    storage.snapshot(snap, "a@1@1", vo()).expect("snap of snap");
    for i in 0..7u8 {
        let v = storage
            .create_volume("fuzz", &format!("v{i}"), 1 << 20, vo())
            .expect("v")
            .1
            .id;
        pool.write(v, u64::from(i) * 4096, &[i; 8192])
            .expect("write v");
    }
    let gone = storage.create_volume("fuzz", "gone", 1 << 20, vo()).expect("gone").1.id;
    pool.write(gone, 0, &[9; 65536]).expect("write gone");
    pool.flush().expect("flush");
    pool.pause_reclaim(true);
    storage.delete_volume(gone).expect("delete");
    pool.close().expect("close");
}

/// Applies one mutation to a block image; `own` is the block's address.
fn mutate(block: &mut [u8], own: u64, rec: &[u8], blocks: &[u64]) {
    let fs = fields(block);
    if fs.is_empty() {
        return;
    }
    let field = fs[usize::from(u16::from_le_bytes([rec[2], rec[3]])) % fs.len()];
    let arg = u32::from_le_bytes([rec[5], rec[6], rec[7], rec[8]]);
    let old = field.get(block);
    let new = match rec[4] % 8 {
        0 => blocks[arg as usize % blocks.len()],
        1 => own,
        2 => old.wrapping_add(i64::from(arg as i32) as u64),
        3 => old ^ (1 << (arg % (8 * field.width as u32))),
        4 => u64::from(arg),
        5 => u64::MAX,
        6 => fs[arg as usize % fs.len()].get(block),
        _ => 0,
    };
    field.set(block, new);
    reseal(block);
}

fn apply(dev: &MemDevice, seed: &Seed, data: &[u8]) {
    for rec in data.chunks_exact(MUTATION_BYTES) {
        let addr =
            seed.blocks[usize::from(u16::from_le_bytes([rec[0], rec[1]])) % seed.blocks.len()];
        let mut block = vec![0u8; 4096];
        dev.read_at(addr * 4096, &mut block).expect("read");
        mutate(&mut block, addr, rec, &seed.blocks);
        dev.write_at(addr * 4096, &block).expect("write");
    }
}

/// Runs one operation (volume changes through `storage`, which holds `pool` unless its names
/// clash); errors are the expected outcome of corrupt metadata and are dropped.
fn run(storage: &Storage, pool: &Pool, op: &[u8], buf: &mut [u8]) {
    let vols = pool.volumes();
    if vols.is_empty() {
        return;
    }
    let v = &vols[usize::from(op[1]) % vols.len()];
    let blocks = (v.size_bytes / 4096).max(1);
    let offset = (u64::from(op[2]) * blocks / 256) * 4096;
    let len = (usize::from(op[3] % 16) + 1) * 4096;
    let _ = match op[0] % 10 {
        0 => pool.read(v.id, offset, &mut buf[..len]),
        1 => pool.write(v.id, offset, &buf[..len]),
        2 => pool.trim(v.id, offset, len as u64),
        3 => pool.write_zeroes(v.id, offset, len as u64),
        4 => storage
            .snapshot(v.id, &format!("s{}", op[3]), VolumeOptions::default())
            .map(drop),
        5 => storage.delete_volume(v.id),
        6 => pool.reclaim_once().map(drop),
        7 => pool.check().map(drop),
        8 => pool.block_status(v.id, 0, v.size_bytes).map(drop),
        _ => pool.flush(),
    };
}

fuzz_target!(|data: &[u8]| {
    let seed = seed();
    let dev = Arc::new(seed.image.snapshot());
    let (m, rest) = data
        .split_first()
        .map_or((0, data), |(m, r)| (usize::from(*m % 16), r));
    let (muts, ops) = rest.split_at((m * MUTATION_BYTES).min(rest.len()));
    apply(&dev, seed, muts);
    let Ok(pool) = Pool::open(dev.clone(), options()) else {
        return;
    };
    pool.pause_reclaim(true);
    let storage = Storage::new();
    let _ = storage.add_pool(pool.clone());
    let mut buf = vec![0x5au8; 16 * 4096];
    for op in ops.chunks_exact(OP_BYTES).take(OPS_MAX) {
        run(&storage, &pool, op, &mut buf);
    }
    let _ = pool.check();
    if pool.close().is_err() {
        return;
    }
    drop(storage);
    drop(pool);
    if let Ok(pool) = Pool::open(dev, options()) {
        let _ = pool.check();
        let _ = pool.close();
    }
});
