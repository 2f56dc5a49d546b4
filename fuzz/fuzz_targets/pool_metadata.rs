//! Fuzzes everything the engine reads from disk: a small pool (volumes, snapshots, shared and
//! private extents, a pending delete) is built once; each input then overwrites bytes of that image
//! (`[block: u16][offset: u16][len: u8][bytes...]` records, blocks taken modulo the metadata-heavy
//! front of the device) and the damaged image is opened, checked, read and written. Corrupt
//! metadata must come back as errors or check findings — never a panic, a hang or an out-of-range
//! access. Damage here is not re-sealed, so it exercises the checks in front of the logic (magic,
//! checksum, type, own address, the fallback to the other superblock, torn names); the
//! `pool_structured` target re-seals its changes to reach the logic behind them.
#![no_main]

use std::sync::{Arc, OnceLock};

use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::MemDevice;
use libfuzzer_sys::fuzz_target;

const POOL_BYTES: u64 = 16 << 20;
/// Mutations land in the first blocks, where the superblocks and metadata live.
const FRONT_BLOCKS: u64 = 512;

fn options() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

fn seed_image() -> &'static MemDevice {
    static IMAGE: OnceLock<MemDevice> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dev = Arc::new(MemDevice::new(POOL_BYTES));
        let pool = Pool::create(dev.clone(), "fuzz", options()).expect("create");
        let storage = Storage::new();
        storage.add_pool(pool.clone()).expect("add");
        let vo = VolumeOptions::default;
        let a = storage.create_volume("fuzz", "a", 4 << 20, vo()).expect("a").1.id;
        let b = storage.create_volume("fuzz", "b", 1 << 20, vo()).expect("b").1.id;
        for i in 0..64u64 {
            pool.write(a, i * 8192, &[i as u8 + 1; 4096]).expect("write a");
        }
        pool.write(b, 0, &[7u8; 65536]).expect("write b");
        let snap = storage.snapshot(a, "a@1", vo()).expect("snap").1.id;
        pool.write(a, 0, &[0xeeu8; 16384]).expect("overwrite");
        storage.snapshot(snap, "a@1@1", vo()).expect("snap of snap");
        storage.delete_volume(b).expect("delete");
        pool.close().expect("close");
        dev.snapshot()
    })
}

fn apply(dev: &MemDevice, mut data: &[u8]) {
    while data.len() >= 5 {
        let block = u64::from(u16::from_le_bytes([data[0], data[1]])) % FRONT_BLOCKS;
        let offset = u64::from(u16::from_le_bytes([data[2], data[3]])) % 4096;
        let len = usize::from(data[4]).min(data.len() - 5);
        let bytes = &data[5..5 + len];
        data = &data[5 + len..];
        let mut sector = vec![0u8; 4096];
        dev.read_at(block * 4096, &mut sector).expect("read");
        let end = (offset as usize + bytes.len()).min(4096);
        sector[offset as usize..end].copy_from_slice(&bytes[..end - offset as usize]);
        dev.write_at(block * 4096, &sector).expect("write");
    }
}

fuzz_target!(|data: &[u8]| {
    let dev = Arc::new(seed_image().snapshot());
    apply(&dev, data);
    let Ok(pool) = Pool::open(dev, options()) else { return };
    let _ = pool.check();
    let mut buf = vec![0u8; 65536];
    for v in pool.volumes() {
        let _ = pool.read(v.id, 0, &mut buf[..4096.min(v.size_bytes as usize)]);
        let _ = pool.block_status(v.id, 0, v.size_bytes);
        let _ = pool.write(v.id, 0, &buf[..4096]);
    }
    let _ = pool.flush();
    let _ = pool.close();
});
