//! Overwrites through the engine against the same I/O straight on the backing file, in one run:
//! 4 KiB random overwrite and 1 MiB sequential overwrite of a span written once before (so the
//! engine's blocks are exclusively owned and overwritten in place). Besides criterion's figures
//! it prints each engine/file throughput ratio, measured in alternated rounds of the same
//! requests on both (target: >= 0.9), and the latency of the first 4 KiB write to a block after
//! a snapshot (redirected to a fresh block and remapped) over the latency of the in-place 4 KiB
//! overwrite (target: <= 2).

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_benches::{alternated, Ratio};
use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use cairn_io::{AlignedBuf, FileDevice};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};

const FILE_BYTES: u64 = 512 << 20;
/// The engine's pool file: the span, a snapshot's worth of redirected blocks, one more being
/// reclaimed, and the metadata reserve (sparse).
const POOL_BYTES: u64 = 1536 << 20;
const SPAN_BYTES: u64 = 256 << 20;
const BIG: usize = 1 << 20;
/// Rounds of the alternated throughput comparison (many short ones, so the median is robust
/// against the disk's slow spells), and the requests of each kind per round and side: 4 KiB at
/// random offsets, and 1 MiB sequentially through a quarter of the span.
const ROUNDS: u64 = 21;
const SMALL_PER_ROUND: u64 = 2048;
const BIG_PER_ROUND: u64 = SPAN_BYTES / 4 / BIG as u64;

/// A span written through the raw file or through an engine volume on another file.
enum Target {
    File(Arc<FileDevice>),
    Engine(Arc<Pool>, VolumeId),
}

impl Target {
    fn write(&self, offset: u64, data: &[u8]) {
        match self {
            Target::File(dev) => dev.write_at(offset, data).expect("write"),
            Target::Engine(pool, vol) => pool.write(*vol, offset, data).expect("write"),
        }
    }

    /// One round of the throughput comparison: `SMALL_PER_ROUND` 4 KiB writes at offsets
    /// from seed `round`, or `BIG_PER_ROUND` 1 MiB writes in order through the next quarter of
    /// the span; the time they took.
    fn round(&self, round: u64, data: &[u8]) -> Duration {
        let start = Instant::now();
        if data.len() == BIG {
            let from = round % 4 * BIG_PER_ROUND;
            for i in from..from + BIG_PER_ROUND {
                self.write(i * BIG as u64, data);
            }
        } else {
            let mut rng = SmallRng::seed_from_u64(round);
            for _ in 0..SMALL_PER_ROUND {
                self.write(rng.gen_range(0..SPAN_BYTES / 4096) * 4096, data);
            }
        }
        start.elapsed()
    }
}

/// Time and operations measured for one case, summed over criterion's runs.
#[derive(Default)]
struct Tally {
    time: Cell<Duration>,
    ops: Cell<u64>,
}

impl Tally {
    fn add(&self, ops: u64, time: Duration) {
        self.time.set(self.time.get() + time);
        self.ops.set(self.ops.get() + ops);
    }

    fn mean_latency(&self) -> Duration {
        self.time.get() / self.ops.get().max(1) as u32
    }
}

/// A buffer of `len` bytes of `byte`, aligned as O_DIRECT wants it, so neither side of the
/// comparison copies it through a bounce buffer: the ratio is the engine's, not the copy's.
fn filled(len: usize, byte: u8) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    buf.fill(byte);
    buf
}

/// Writes the whole span once, so every later write to it is an overwrite.
fn fill(target: &Target) {
    let chunk = filled(BIG, 0x5a);
    for off in (0..SPAN_BYTES).step_by(BIG) {
        target.write(off, &chunk);
    }
}

/// Criterion's figures of both cases on `target`; returns the 4 KiB random overwrite tally.
fn run(c: &mut Criterion, label: &str, target: &Target) -> Tally {
    let small_tally = Tally::default();
    let mut rng = SmallRng::seed_from_u64(7);
    let small = filled(4096, 0x33);
    let blocks = SPAN_BYTES / 4096;
    let mut group = c.benchmark_group("overwrite");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function(format!("rand_4k/{label}"), |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                target.write(rng.gen_range(0..blocks) * 4096, &small);
            }
            let t = start.elapsed();
            small_tally.add(n, t);
            t
        })
    });
    group.throughput(Throughput::Bytes(BIG as u64));
    let big = filled(BIG, 0x44);
    let mut off = 0u64;
    group.bench_function(format!("seq_1m/{label}"), |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                target.write(off, &big);
                off = (off + BIG as u64) % SPAN_BYTES;
            }
            start.elapsed()
        })
    });
    group.finish();
    small_tally
}

/// First 4 KiB writes after a snapshot: each one to a block of the span the snapshot shares
/// (so it is redirected), in random order; when every block has been written once, the snapshot
/// is deleted and a new one taken (neither timed).
fn after_snapshot(c: &mut Criterion, storage: &Storage, pool: &Pool, vol: VolumeId) -> Tally {
    let tally = Tally::default();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut order: Vec<u64> = (0..SPAN_BYTES / 4096).collect();
    let mut left: Vec<u64> = Vec::new();
    let mut round = 0u32;
    let mut snap: Option<VolumeId> = None;
    let small = filled(4096, 0x77);
    let mut group = c.benchmark_group("overwrite");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("first_4k_after_snapshot/engine", |b| {
        b.iter_custom(|n| {
            let mut t = Duration::ZERO;
            for _ in 0..n {
                if left.is_empty() {
                    if let Some(old) = snap.take() {
                        storage.delete_volume(old).expect("delete snapshot");
                        pool.wait_reclaim().expect("reclaim");
                    }
                    let name = format!("snap{round}");
                    let (_, s) = storage
                        .snapshot(vol, &name, VolumeOptions::default())
                        .expect("snapshot");
                    snap = Some(s.id);
                    round += 1;
                    order.shuffle(&mut rng);
                    left.clone_from(&order);
                }
                let block = left.pop().expect("a block not written since the snapshot");
                let start = Instant::now();
                pool.write(vol, block * 4096, &small).expect("write");
                t += start.elapsed();
            }
            tally.add(n, t);
            t
        })
    });
    group.finish();
    tally
}

fn device(path: &Path, size_bytes: u64) -> Arc<FileDevice> {
    Arc::new(FileDevice::open(path, Some(size_bytes)).expect("open bench file"))
}

fn overwrite(c: &mut Criterion) {
    let dir = cairn_benches::scratch_dir();
    let file = Target::File(device(&dir.path().join("raw.img"), FILE_BYTES));
    let storage = Storage::new();
    let opts = PoolOptions::default();
    let pool_dev = device(&dir.path().join("pool.img"), POOL_BYTES);
    let pool = Pool::create(pool_dev, "bench", opts).expect("pool");
    storage.add_pool(pool).expect("add pool");
    let (pool, vol) = storage
        .create_volume("bench", "vol", SPAN_BYTES, VolumeOptions::default())
        .expect("volume");
    let engine = Target::Engine(pool.clone(), vol.id);
    fill(&file);
    fill(&engine);
    println!("engine/file throughput, alternated rounds of the same requests:");
    for (label, data) in [
        ("4 KiB random  ", filled(4096, 0x33)),
        ("1 MiB sequential", filled(BIG, 0x44)),
    ] {
        alternated(
            label,
            ("file", "engine"),
            ROUNDS,
            Ratio::Throughput,
            |round| file.round(round, &data),
            |round| engine.round(round, &data),
        );
    }
    run(c, "file", &file);
    let in_place = run(c, "engine", &engine);
    let redirected = after_snapshot(c, &storage, &pool, vol.id);
    pool.close().expect("close");
    println!(
        "first 4 KiB write after a snapshot / in-place 4 KiB overwrite, mean latency: {:.2}x \
         ({:?} / {:?})",
        redirected.mean_latency().as_secs_f64() / in_place.mean_latency().as_secs_f64(),
        redirected.mean_latency(),
        in_place.mean_latency()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = overwrite
}
criterion_main!(benches);
