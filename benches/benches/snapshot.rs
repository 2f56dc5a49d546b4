//! Snapshot create latency, commit included, at 2^14 and 2^20 mapped extents (scattered 4 KiB
//! writes, one extent each). The brief's target: the same at both sizes (ratio <= 1.1), <= 1 ms.

use std::sync::Arc;

use cairn_benches::{PatternDevice, FILL_BYTE};
use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const POOL_BYTES: u64 = 64 << 30;

/// A pool (in a storage of its own) whose one volume has `extents` separate 4 KiB extents
/// (every other block written).
fn pool_with_extents(extents: u64) -> (Storage, Arc<Pool>, cairn_engine::VolumeId) {
    let dev = Arc::new(PatternDevice::new(POOL_BYTES));
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(dev, "bench", opts).expect("create pool"))
        .expect("add pool");
    let (pool, vol) = storage
        .create_volume("bench", "vol", extents * 2 * 4096, VolumeOptions::default())
        .expect("create volume");
    let vol = vol.id;
    let block = vec![FILL_BYTE; 4096];
    for i in 0..extents {
        pool.write(vol, i * 2 * 4096, &block).expect("write");
        if i % 65536 == 65535 {
            pool.flush().expect("flush");
        }
    }
    pool.flush().expect("flush");
    (storage, pool, vol)
}

fn snapshot_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_create");
    group.sample_size(30);
    for extents in [1u64 << 14, 1 << 20] {
        let (storage, pool, vol) = pool_with_extents(extents);
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("mapped_extents", extents),
            &extents,
            |b, _| {
                b.iter(|| {
                    n += 1;
                    storage
                        .snapshot(vol, &format!("s{n}"), VolumeOptions::default())
                        .expect("snapshot")
                })
            },
        );
        pool.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, snapshot_create);
criterion_main!(benches);
