//! Flushes on a file pool (O_DIRECT where the file system allows it), issue 12 §4: 8 threads,
//! each doing a 4 KiB write and a flush on a volume of its own, where the write lands in place
//! (the flush is a device flush) or maps a fresh block (the flush commits metadata); and,
//! printed first, the p50/p99 latency of 4 KiB random reads on one volume with and without a
//! stream of FUA writes on another volume of the same pool (target: the stream raises p99 by at
//! most 2x). Set `CAIRN_BENCH_DIR` to put the pool file on the disk to measure.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::{Pool, PoolOptions, Storage, VolumeId, VolumeOptions};
use cairn_io::{AlignedBuf, FileDevice, OpenOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const THREADS: usize = 8;
const POOL_BYTES: u64 = 2 << 30;
/// Each writer's volume; a thread writing fresh blocks unmaps it whole after every pass.
const VOLUME_BYTES: u64 = 64 << 20;
const VOLUME_BLOCKS: u64 = VOLUME_BYTES / 4096;
/// Reads sampled for each latency figure.
const READS: usize = 20_000;

struct Rig {
    storage: Storage,
    pool: Arc<Pool>,
}

impl Rig {
    /// A new pool in file `file` of `dir`.
    fn new(dir: &Path, file: &str) -> Rig {
        let options = OpenOptions {
            create_size_bytes: Some(POOL_BYTES),
            ..OpenOptions::default()
        };
        let dev = Arc::new(FileDevice::open(dir.join(file), options).expect("pool file"));
        let storage = Storage::new();
        let pool = Pool::create(dev, "bench", PoolOptions::default()).expect("create pool");
        storage.add_pool(pool.clone()).expect("add pool");
        Rig { storage, pool }
    }

    /// A volume of `bytes`, written whole when `fill`, its mappings durable.
    fn volume(&self, name: &str, bytes: u64, fill: bool) -> VolumeId {
        let id = self
            .storage
            .create_volume("bench", name, bytes, VolumeOptions::default())
            .expect("create volume")
            .1
            .id;
        if fill {
            let chunk = AlignedBuf::copy_of(&[0x5a; 1 << 20]);
            for off in (0..bytes).step_by(chunk.len()) {
                self.pool.write(id, off, &chunk).expect("fill");
            }
        }
        self.pool.flush().expect("flush");
        id
    }
}

/// `iters` rounds of a 4 KiB write and a flush on each volume of `vols`, one thread each, from
/// block `*cursor` on; the time until the last thread is done. With `unmap`, each volume is
/// unmapped whole when a pass over it ends, so every write maps a fresh block.
fn write_flush(
    pool: &Pool,
    vols: &[VolumeId],
    cursor: &mut u64,
    iters: u64,
    unmap: bool,
) -> Duration {
    let first = *cursor;
    *cursor += iters;
    let start = Instant::now();
    std::thread::scope(|s| {
        for &v in vols {
            s.spawn(move || {
                let data = AlignedBuf::copy_of(&[0x33; 4096]);
                for i in first..first + iters {
                    let block = i % VOLUME_BLOCKS;
                    if unmap && block == 0 && i > 0 {
                        pool.trim(v, 0, VOLUME_BYTES).expect("unmap");
                    }
                    pool.write(v, block * 4096, &data).expect("write");
                    pool.flush().expect("flush");
                }
            });
        }
    });
    start.elapsed()
}

fn write_flush_threads(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("write_flush_4k_8_threads");
    group.throughput(Throughput::Elements(THREADS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (label, fill) in [("in_place", true), ("fresh", false)] {
        let rig = Rig::new(dir, &format!("{label}.img"));
        let vols: Vec<VolumeId> = (0..THREADS)
            .map(|t| rig.volume(&format!("w{t}"), VOLUME_BYTES, fill))
            .collect();
        let mut cursor = 0;
        group.bench_function(label, |b| {
            b.iter_custom(|iters| write_flush(&rig.pool, &vols, &mut cursor, iters, !fill))
        });
        rig.pool.close().expect("close");
    }
    group.finish();
}

/// `READS` random 4 KiB reads of `vol`: their latencies, sorted.
fn read_latencies(pool: &Pool, vol: VolumeId) -> Vec<Duration> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut buf = AlignedBuf::zeroed(4096);
    let mut out: Vec<Duration> = (0..READS)
        .map(|_| {
            let at = rng.gen_range(0..VOLUME_BLOCKS) * 4096;
            let start = Instant::now();
            pool.read(vol, at, &mut buf).expect("read");
            start.elapsed()
        })
        .collect();
    out.sort_unstable();
    out
}

/// Read latencies of `reader` while one thread writes `writer` with FUA, block after block from
/// 0 (`None`: no writer); and the FUA writes done meanwhile.
fn reads_beside(
    pool: &Pool,
    reader: VolumeId,
    writer: Option<(VolumeId, u64)>,
) -> (Vec<Duration>, u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stream = writer.map(|(w, blocks)| {
            let stop = &stop;
            s.spawn(move || {
                let data = AlignedBuf::copy_of(&[0x44; 4096]);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    pool.write_fua(w, (n % blocks) * 4096, &data)
                        .expect("fua write");
                    n += 1;
                }
                n
            })
        });
        let lat = read_latencies(pool, reader);
        stop.store(true, Ordering::Relaxed);
        (lat, stream.map_or(0, |t| t.join().expect("fua stream")))
    })
}

fn report_fua_interference(dir: &Path) {
    let rig = Rig::new(dir, "fua.img");
    let reader = rig.volume("reader", VOLUME_BYTES, true);
    let in_place = rig.volume("fua_in_place", VOLUME_BYTES, true);
    // Unmapped: every FUA write maps a fresh block, so each one commits.
    let fresh = rig.volume("fua_fresh", 1 << 30, false);
    println!(
        "4 KiB random reads of one volume ({READS} reads), beside a FUA write stream on another:"
    );
    let pct = |v: &[Duration], p: usize| v[v.len() * p / 100].as_secs_f64() * 1e6;
    let (alone, _) = reads_beside(&rig.pool, reader, None);
    let p99_alone = pct(&alone, 99);
    println!(
        "  no stream          : p50 {:8.1} us  p99 {p99_alone:8.1} us",
        pct(&alone, 50)
    );
    for (label, w) in [("FUA in place", in_place), ("FUA that commits", fresh)] {
        let blocks = if w == fresh {
            (1 << 30) / 4096
        } else {
            VOLUME_BLOCKS
        };
        let (lat, writes) = reads_beside(&rig.pool, reader, Some((w, blocks)));
        println!(
            "  {label:<19}: p50 {:8.1} us  p99 {:8.1} us  p99 ratio {:5.2}  ({writes} FUA writes)",
            pct(&lat, 50),
            pct(&lat, 99),
            pct(&lat, 99) / p99_alone
        );
    }
    rig.pool.close().expect("close");
}

fn group_commit(c: &mut Criterion) {
    let dir = cairn_benches::scratch_dir();
    report_fua_interference(dir.path());
    write_flush_threads(c, dir.path());
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
