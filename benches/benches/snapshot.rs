//! Snapshots, issue 12's targets:
//! - snapshot create, its durable commit included, at 2^14 and 2^20 mapped extents (scattered
//!   4 KiB writes, one extent each) and with 10,000 snapshots of the volume present: on a device
//!   whose flushes are free (`pattern`) and on a real file pool (`file`, O_DIRECT, in
//!   `CAIRN_BENCH_DIR`). Target: <= 1 ms, and the same at every size (ratio <= 1.1).
//! - 4 KiB random reads and writes of a volume with 10,000 snapshots against the same volume
//!   with one, on file pools, printed first. Target: within 10%.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_benches::{alternated, PatternDevice, Ratio, FILL_BYTE};
use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use cairn_io::{AlignedBuf, FileDevice, OpenOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const POOL_BYTES: u64 = 64 << 30;
/// The snapshots present in the "many" cases.
const MANY: u64 = 10_000;
/// The volume of the read and write comparison, written whole before its snapshots.
const IO_VOLUME_BYTES: u64 = 256 << 20;
/// Requests of each kind per round of that comparison, and its rounds.
const IO_REQUESTS: u64 = 20_000;
const IO_ROUNDS: u64 = 5;

/// A storage holding one pool named "bench" on `dev`, committing only when asked.
fn storage_on(dev: Arc<dyn BlockDevice>) -> (Storage, Arc<Pool>) {
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    let storage = Storage::new();
    let pool = Pool::create(dev, "bench", opts).expect("create pool");
    storage.add_pool(pool.clone()).expect("add pool");
    (storage, pool)
}

fn file_device(dir: &Path, file: &str) -> Arc<dyn BlockDevice> {
    let options = OpenOptions {
        create_size_bytes: Some(POOL_BYTES),
        ..OpenOptions::default()
    };
    Arc::new(FileDevice::open(dir.join(file), options).expect("pool file"))
}

/// A volume of `storage`'s pool with `extents` separate 4 KiB extents (every other block
/// written, by four threads), its mappings durable.
fn volume_with_extents(storage: &Storage, pool: &Pool, extents: u64) -> VolumeId {
    let vol = storage
        .create_volume("bench", "vol", extents * 2 * 4096, VolumeOptions::default())
        .expect("create volume")
        .1
        .id;
    const WRITERS: u64 = 4;
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            s.spawn(move || {
                let block = AlignedBuf::copy_of(&[FILL_BYTE; 4096]);
                for i in (t..extents).step_by(WRITERS as usize) {
                    pool.write(vol, i * 2 * 4096, &block).expect("write");
                }
            });
        }
    });
    pool.flush().expect("flush");
    vol
}

/// Takes `count` snapshots of `vol` named `{prefix}{n}`; the time they took.
fn take_snapshots(storage: &Storage, vol: VolumeId, prefix: &str, count: u64) -> Duration {
    let start = Instant::now();
    for n in 0..count {
        storage
            .snapshot(vol, &format!("{prefix}{n}"), VolumeOptions::default())
            .expect("snapshot");
    }
    start.elapsed()
}

fn snapshot_create(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("snapshot_create");
    group.sample_size(30);
    let cases: [(&str, u64, u64); 5] = [
        ("pattern", 1 << 14, 0),
        ("pattern", 1 << 20, 0),
        ("file", 1 << 14, 0),
        ("file", 1 << 20, 0),
        ("file", 1 << 14, MANY),
    ];
    for (device, extents, present) in cases {
        let dev: Arc<dyn BlockDevice> = match device {
            "pattern" => Arc::new(PatternDevice::new(POOL_BYTES)),
            _ => file_device(dir, &format!("create-{extents}-{present}.img")),
        };
        let (storage, pool) = storage_on(dev);
        let vol = volume_with_extents(&storage, &pool, extents);
        if present > 0 {
            let took = take_snapshots(&storage, vol, "old", present);
            println!(
                "snapshot_create/{device}: {present} snapshots taken first in {:.1} s ({:.0} us each)",
                took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / present as f64
            );
        }
        let mut n = 0u64;
        let id = format!("{device}/extents_{extents}/snapshots_{present}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                n += 1;
                storage
                    .snapshot(vol, &format!("s{n}"), VolumeOptions::default())
                    .expect("snapshot")
            })
        });
        pool.close().expect("close");
    }
    group.finish();
}

/// A file pool whose volume of `IO_VOLUME_BYTES`, written whole, then has `snapshots` snapshots.
struct IoRig {
    pool: Arc<Pool>,
    vol: VolumeId,
    _storage: Storage,
}

impl IoRig {
    fn new(dir: &Path, snapshots: u64) -> IoRig {
        let (storage, pool) = storage_on(file_device(dir, &format!("io-{snapshots}.img")));
        let vol = storage
            .create_volume("bench", "vol", IO_VOLUME_BYTES, VolumeOptions::default())
            .expect("create volume")
            .1
            .id;
        let chunk = AlignedBuf::copy_of(&[FILL_BYTE; 1 << 20]);
        for off in (0..IO_VOLUME_BYTES).step_by(chunk.len()) {
            pool.write(vol, off, &chunk).expect("fill");
        }
        take_snapshots(&storage, vol, "snap", snapshots);
        pool.flush().expect("flush");
        IoRig {
            pool,
            vol,
            _storage: storage,
        }
    }

    /// `IO_REQUESTS` random 4 KiB requests from seed `seed`, reads or writes: their mean time.
    /// The same seed gives every rig the same offsets, so the writes that land on a block the
    /// snapshots still share (and are redirected) are the same in both.
    fn requests(&self, seed: u64, write: bool) -> Duration {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut buf = AlignedBuf::copy_of(&[0x3c; 4096]);
        let blocks = IO_VOLUME_BYTES / 4096;
        let start = Instant::now();
        for _ in 0..IO_REQUESTS {
            let at = rng.gen_range(0..blocks) * 4096;
            if write {
                self.pool.write(self.vol, at, &buf).expect("write");
            } else {
                self.pool.read(self.vol, at, &mut buf).expect("read");
            }
        }
        start.elapsed() / IO_REQUESTS as u32
    }
}

/// Prints the mean 4 KiB random read and write times of a volume with `MANY` snapshots and of
/// the same volume with one, measured in alternation, round by round, and their ratios.
fn report_many_snapshots_io(dir: &Path) {
    let one = IoRig::new(dir, 1);
    let start = Instant::now();
    let many = IoRig::new(dir, MANY);
    println!(
        "4 KiB random requests of a {} MiB volume, {MANY} snapshots against 1 (rig built in {:.1} s):",
        IO_VOLUME_BYTES >> 20,
        start.elapsed().as_secs_f64()
    );
    for (label, write) in [("read ", false), ("write", true)] {
        alternated(
            label,
            ("1 snapshot", &format!("{MANY} snapshots")),
            IO_ROUNDS,
            Ratio::Time,
            |round| one.requests(round, write),
            |round| many.requests(round, write),
        );
    }
    one.pool.close().expect("close");
    many.pool.close().expect("close");
}

fn snapshots(c: &mut Criterion) {
    let dir = cairn_benches::scratch_dir();
    report_many_snapshots_io(dir.path());
    snapshot_create(c, dir.path());
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
