//! Snapshot create latency, commit included, through the multi-pool `Storage`, with 1,000 and
//! 40,000 snapshots already in the pool and a second pool beside it. A new name is checked
//! against every volume of every pool, so before the name indexes this grew linearly with the
//! volume count (53 us at 1k, 553 us at 40k). The target: the same at both counts (ratio
//! <= 1.1), <= 1 ms (BRIEF §5). Each measured snapshot is deleted again (not timed), so the
//! count stays where it was set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_benches::{PatternDevice, FILL_BYTE};
use cairn_engine::{Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const POOL_BYTES: u64 = 4 << 30;
/// Volumes in the second pool (their names are checked too).
const OTHER_POOL_VOLUMES: u64 = 1000;

fn pool(name: &str) -> Arc<Pool> {
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    Pool::create(Arc::new(PatternDevice::new(POOL_BYTES)), name, opts).expect("create pool")
}

/// A registry of two pools; the first holds one written volume and `snapshots` snapshots of it.
fn storage_with_snapshots(snapshots: u64) -> (Storage, VolumeId) {
    let storage = Storage::new();
    storage.add_pool(pool("a")).expect("add pool a");
    storage.add_pool(pool("b")).expect("add pool b");
    let opts = VolumeOptions::default;
    let (a, src) = storage
        .create_volume("a", "src", 1 << 30, opts())
        .expect("create volume");
    a.write(src.id, 0, &vec![FILL_BYTE; 1 << 20])
        .expect("write");
    for i in 0..snapshots {
        storage
            .snapshot(src.id, &format!("s{i}"), opts())
            .expect("snapshot");
    }
    for i in 0..OTHER_POOL_VOLUMES {
        storage
            .create_volume("b", &format!("b{i}"), 1 << 30, opts())
            .expect("create volume in pool b");
    }
    (storage, src.id)
}

fn snapshot_with_many_volumes(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_with_volumes");
    group.sample_size(30);
    for snapshots in [1000u64, 40_000] {
        let (storage, src) = storage_with_snapshots(snapshots);
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("snapshots", snapshots),
            &snapshots,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let start = Instant::now();
                        let (pool, snap) = storage
                            .snapshot(src, &format!("m{n}"), VolumeOptions::default())
                            .expect("snapshot");
                        timed += start.elapsed();
                        storage.delete_volume(snap.id).expect("delete");
                        pool.wait_reclaim().expect("reclaim");
                    }
                    timed
                })
            },
        );
        storage.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, snapshot_with_many_volumes);
criterion_main!(benches);
