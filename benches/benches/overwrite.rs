//! Overwrites through the engine against the same I/O straight on the backing file, in one run:
//! 4 KiB random overwrite and 1 MiB sequential overwrite of a span written once before (so the
//! engine's blocks are exclusively owned and overwritten in place). Besides criterion's figures
//! it prints each engine/file throughput ratio measured in this run (target: >= 0.9).

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use cairn_io::FileDevice;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const FILE_BYTES: u64 = 512 << 20;
const SPAN_BYTES: u64 = 256 << 20;
const BIG: usize = 1 << 20;

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

    fn ops_per_sec(&self) -> f64 {
        self.ops.get() as f64 / self.time.get().as_secs_f64()
    }
}

/// Measures both cases on `target`; returns (4 KiB random, 1 MiB sequential) tallies.
fn run(c: &mut Criterion, label: &str, target: &Target) -> (Tally, Tally) {
    let chunk = vec![0x5au8; BIG];
    for off in (0..SPAN_BYTES).step_by(BIG) {
        target.write(off, &chunk);
    }
    let (small_tally, big_tally) = (Tally::default(), Tally::default());
    let mut rng = SmallRng::seed_from_u64(7);
    let small = vec![0x33u8; 4096];
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
    let big = vec![0x44u8; BIG];
    let mut off = 0u64;
    group.bench_function(format!("seq_1m/{label}"), |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                target.write(off, &big);
                off = (off + BIG as u64) % SPAN_BYTES;
            }
            let t = start.elapsed();
            big_tally.add(n, t);
            t
        })
    });
    group.finish();
    (small_tally, big_tally)
}

fn device(path: &Path) -> Arc<FileDevice> {
    Arc::new(FileDevice::open(path, Some(FILE_BYTES)).expect("open bench file"))
}

fn overwrite(c: &mut Criterion) {
    let dir =
        tempfile::tempdir_in(std::env::var_os("CAIRN_BENCH_DIR").unwrap_or_else(|| ".".into()))
            .expect("temp dir");
    let file = run(
        c,
        "file",
        &Target::File(device(&dir.path().join("raw.img"))),
    );
    let storage = Storage::new();
    let opts = PoolOptions::default();
    let pool = Pool::create(device(&dir.path().join("pool.img")), "bench", opts).expect("pool");
    storage.add_pool(pool).expect("add pool");
    let (pool, vol) = storage
        .create_volume("bench", "vol", SPAN_BYTES, VolumeOptions::default())
        .expect("volume");
    let engine = run(c, "engine", &Target::Engine(pool.clone(), vol.id));
    pool.close().expect("close");
    println!(
        "engine/file throughput: 4 KiB random overwrite {:.2}x, 1 MiB sequential overwrite {:.2}x",
        engine.0.ops_per_sec() / file.0.ops_per_sec(),
        engine.1.ops_per_sec() / file.1.ops_per_sec()
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
