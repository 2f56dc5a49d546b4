//! Data path throughput through the engine against the same I/O straight on the backing file (the
//! device ceiling), in one run: 4 KiB random read and write, 1 MiB sequential read and write.

use std::path::Path;
use std::sync::Arc;

use cairn_engine::{BlockDevice, Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use cairn_io::FileDevice;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const FILE_BYTES: u64 = 2 << 30;
const SPAN_BYTES: u64 = 1 << 30;

/// One way of reading and writing a 1 GiB span: the raw device or an engine volume on it.
trait Target {
    fn write(&self, offset: u64, data: &[u8]);
    fn read(&self, offset: u64, buf: &mut [u8]);
}

struct Raw(Arc<FileDevice>);
impl Target for Raw {
    fn write(&self, offset: u64, data: &[u8]) {
        self.0.write_at(offset, data).expect("write");
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        self.0.read_at(offset, buf).expect("read");
    }
}

struct Engine(Arc<Pool>, VolumeId);
impl Target for Engine {
    fn write(&self, offset: u64, data: &[u8]) {
        self.0.write(self.1, offset, data).expect("write");
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        self.0.read(self.1, offset, buf).expect("read");
    }
}

fn fill(target: &dyn Target) {
    let chunk = vec![0x5au8; 1 << 20];
    for off in (0..SPAN_BYTES).step_by(chunk.len()) {
        target.write(off, &chunk);
    }
}

fn run(c: &mut Criterion, label: &str, target: &dyn Target) {
    fill(target);
    let mut rng = SmallRng::seed_from_u64(7);
    let mut small = vec![0x33u8; 4096];
    let mut big = vec![0x44u8; 1 << 20];
    let blocks = SPAN_BYTES / 4096;

    let mut group = c.benchmark_group("rand_4k");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function(format!("write/{label}"), |b| {
        b.iter(|| target.write(rng.gen_range(0..blocks) * 4096, &small))
    });
    group.bench_function(format!("read/{label}"), |b| {
        b.iter(|| target.read(rng.gen_range(0..blocks) * 4096, &mut small))
    });
    group.finish();

    let mut group = c.benchmark_group("seq_1m");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut off = 0u64;
    group.bench_function(format!("write/{label}"), |b| {
        b.iter(|| {
            target.write(off, &big);
            off = (off + (1 << 20)) % SPAN_BYTES;
        })
    });
    group.bench_function(format!("read/{label}"), |b| {
        b.iter(|| {
            target.read(off, &mut big);
            off = (off + (1 << 20)) % SPAN_BYTES;
        })
    });
    group.finish();
}

fn device(path: &Path) -> Arc<FileDevice> {
    Arc::new(FileDevice::open(path, Some(FILE_BYTES)).expect("open bench file"))
}

fn throughput(c: &mut Criterion) {
    let dir = cairn_benches::scratch_dir();
    {
        let raw = Raw(device(&dir.path().join("raw.img")));
        run(c, "device", &raw);
    }
    let dev = device(&dir.path().join("pool.img"));
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(dev, "bench", PoolOptions::default()).expect("create pool"))
        .expect("add pool");
    let (pool, vol) = storage
        .create_volume("bench", "vol", SPAN_BYTES, VolumeOptions::default())
        .expect("volume");
    let vol = vol.id;
    run(c, "engine", &Engine(pool.clone(), vol));
    pool.close().expect("close");
}

criterion_group!(benches, throughput);
criterion_main!(benches);
