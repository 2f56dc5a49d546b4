//! The read path: 16 threads of 4 KiB O_DIRECT random reads through the io_uring backend against
//! plain pread on the same kind of file, and 1 MiB reads of an engine volume fragmented by a
//! snapshot and 25% random 4 KiB overwrites (the case merged, batched reads are for).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::{AlignedBuf, Backend, FileDevice, OpenOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const THREADS: u64 = 16;
const FILE_BYTES: u64 = 256 << 20;
const VOLUME_BYTES: u64 = 256 << 20;
const MIB: usize = 1 << 20;

fn open(path: &Path, backend: Backend, size: u64) -> Arc<FileDevice> {
    let options = OpenOptions {
        create_size_bytes: Some(size),
        direct: true,
        backend,
    };
    Arc::new(FileDevice::open(path, options).expect("open bench file"))
}

/// Each of 16 threads does `iters` random 4 KiB reads; the time until the last one finishes.
fn parallel_reads(dev: &FileDevice, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                let mut buf = AlignedBuf::zeroed(4096);
                for _ in 0..iters {
                    let block = rng.gen_range(0..FILE_BYTES / 4096);
                    dev.read_at(block * 4096, &mut buf).expect("read");
                }
            });
        }
    });
    start.elapsed()
}

fn device_reads(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("rand_4k_read_16_threads");
    group.throughput(Throughput::Bytes(THREADS * 4096));
    for (label, backend) in [("pread", Backend::Pread), ("io_uring", Backend::Uring)] {
        let dev = open(&dir.join(format!("{label}.img")), backend, FILE_BYTES);
        let chunk = AlignedBuf::copy_of(&[0x5a; MIB]);
        for off in (0..FILE_BYTES).step_by(MIB) {
            dev.write_at(off, &chunk).expect("fill");
        }
        dev.flush().expect("flush");
        group.bench_function(label, |b| {
            b.iter_custom(|iters| parallel_reads(&dev, iters))
        });
    }
    group.finish();
}

fn fragmented_engine_read(c: &mut Criterion, dir: &Path) {
    let dev = open(&dir.join("pool.img"), Backend::Uring, 2 * VOLUME_BYTES);
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(dev, "bench", PoolOptions::default()).expect("create pool"))
        .expect("add pool");
    let (pool, vol) = storage
        .create_volume("bench", "vol", VOLUME_BYTES, VolumeOptions::default())
        .expect("volume");
    let id = vol.id;
    let chunk = AlignedBuf::copy_of(&[0x5a; MIB]);
    for off in (0..VOLUME_BYTES).step_by(MIB) {
        pool.write(id, off, &chunk).expect("fill");
    }
    pool.flush().expect("flush");
    storage
        .snapshot(id, "vol@1", VolumeOptions::default())
        .expect("snapshot");
    let mut rng = SmallRng::seed_from_u64(11);
    let small = AlignedBuf::copy_of(&[0x33; 4096]);
    for _ in 0..VOLUME_BYTES / 4096 / 4 {
        let block = rng.gen_range(0..VOLUME_BYTES / 4096);
        pool.write(id, block * 4096, &small).expect("overwrite");
    }
    pool.flush().expect("flush");
    let mut group = c.benchmark_group("fragmented_1m_read");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut buf = AlignedBuf::zeroed(MIB);
    group.bench_function("engine", |b| {
        b.iter(|| {
            let at = rng.gen_range(0..VOLUME_BYTES / MIB as u64) * MIB as u64;
            pool.read(id, at, &mut buf).expect("read");
        })
    });
    group.finish();
    pool.close().expect("close");
}

fn read_path(c: &mut Criterion) {
    let dir = cairn_benches::scratch_dir();
    device_reads(c, dir.path());
    fragmented_engine_read(c, dir.path());
}

criterion_group!(benches, read_path);
criterion_main!(benches);
