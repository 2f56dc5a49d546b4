//! The cost of the first 4 KiB write to a block a snapshot shares, against a plain overwrite of an
//! exclusively owned block: latency (criterion) and the bytes each puts on the device, data and
//! metadata apart (printed first). Targets from the brief: data bytes <= 1.1x the client's 4 KiB,
//! latency <= 2x the overwrite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_benches::{PatternDevice, WriteCounts, FILL_BYTE};
use cairn_engine::{Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use criterion::{criterion_group, criterion_main, Criterion};

const POOL_BYTES: u64 = 8 << 30;
/// Blocks written before the measurements; the writes cycle over them.
const BLOCKS: u64 = 1 << 16;

struct Rig {
    dev: Arc<PatternDevice>,
    storage: Storage,
    pool: Arc<Pool>,
    vol: VolumeId,
    block: Vec<u8>,
    snapshots: u64,
}

impl Rig {
    fn new() -> Rig {
        let dev = Arc::new(PatternDevice::new(POOL_BYTES));
        let opts = PoolOptions {
            commit_interval: None,
            ..PoolOptions::default()
        };
        let storage = Storage::new();
        let pool = Pool::create(dev.clone(), "bench", opts).expect("create pool");
        storage.add_pool(pool.clone()).expect("add pool");
        let vol = storage
            .create_volume("bench", "vol", BLOCKS * 4096, VolumeOptions::default())
            .expect("create volume")
            .1
            .id;
        let chunk = vec![FILL_BYTE; 1 << 20];
        for off in (0..BLOCKS * 4096).step_by(chunk.len()) {
            pool.write(vol, off, &chunk).expect("fill");
        }
        pool.flush().expect("flush");
        Rig {
            dev,
            storage,
            pool,
            vol,
            block: vec![FILL_BYTE; 4096],
            snapshots: 0,
        }
    }

    fn write(&self, block: u64) {
        self.pool
            .write(self.vol, block * 4096, &self.block)
            .expect("write");
    }

    /// Takes a new snapshot (so every block is shared again) and drops the previous one.
    fn reshare(&mut self) {
        self.snapshots += 1;
        let name = format!("snap{}", self.snapshots);
        self.storage
            .snapshot(self.vol, &name, VolumeOptions::default())
            .expect("snapshot");
        if self.snapshots > 1 {
            let old = format!("snap{}", self.snapshots - 1);
            let id = self.pool.volume_by_name(&old).expect("old snapshot").id;
            self.storage.delete_volume(id).expect("delete snapshot");
        }
        self.pool.flush().expect("flush");
    }

    /// Device bytes for `n` writes (data, then the metadata of the commit that follows them).
    fn bytes_per_write(&self, n: u64) -> (f64, f64) {
        let before = self.dev.write_counts();
        for block in 0..n {
            self.write(block);
        }
        let after_writes = self.dev.write_counts();
        self.pool.flush().expect("flush");
        let after_flush = self.dev.write_counts();
        let WriteCounts { data_bytes, .. } = after_writes - before;
        let metadata = (after_flush - before).metadata_bytes;
        (data_bytes as f64 / n as f64, metadata as f64 / n as f64)
    }
}

fn report_bytes() {
    let mut rig = Rig::new();
    let n = 4096;
    // Make every block exclusively owned now and in the last durable commit.
    rig.bytes_per_write(n);
    let (plain_data, plain_meta) = rig.bytes_per_write(n);
    rig.reshare();
    let (first_data, first_meta) = rig.bytes_per_write(n);
    println!("device bytes per 4096-byte client write ({n} writes, then one flush):");
    println!("  overwrite of an owned block : data {plain_data:8.1}  metadata {plain_meta:8.1}");
    println!("  first write after snapshot  : data {first_data:8.1}  metadata {first_meta:8.1}");
    println!(
        "  data ratio first/overwrite-bytes-of-client: {:.3}",
        first_data / 4096.0
    );
    rig.pool.close().expect("close");
}

fn write_latency(c: &mut Criterion) {
    report_bytes();
    let mut group = c.benchmark_group("write_4k");
    let mut rig = Rig::new();
    let mut cursor = 0u64;
    group.bench_function("overwrite", |b| {
        b.iter(|| {
            rig.write(cursor % BLOCKS);
            cursor += 1;
        })
    });
    rig.pool.flush().expect("flush");
    let mut cursor = BLOCKS;
    group.bench_function("first_after_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if cursor == BLOCKS {
                    rig.reshare();
                    cursor = 0;
                }
                let start = Instant::now();
                rig.write(cursor);
                timed += start.elapsed();
                cursor += 1;
            }
            timed
        })
    });
    group.finish();
    rig.pool.close().expect("close");
}

criterion_group!(benches, write_latency);
criterion_main!(benches);
