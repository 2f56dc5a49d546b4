//! Concurrency stress of the data path against a model: many threads write random 4 KiB blocks
//! (and trim / write-zeroes ranges) of one volume right after it was reopened and snapshotted,
//! with a short background commit interval and concurrent flushes, on a file-backed pool
//! (`FileDevice`, O_DIRECT where the file system allows it) and on `MemDevice`. No request may
//! fail; at the end every block reads as the last acknowledged operation on it left it, the
//! snapshot still reads as it did when taken, and `check` is clean.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{BlockDevice, Pool, PoolOptions, VolumeId, VolumeOptions};
use cairn_io::{FileDevice, MemDevice, OpenOptions};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

const BS: u64 = 4096;
const MIB: u64 = 1 << 20;
const THREADS: u64 = 8;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: Some(Duration::from_millis(2)),
        node_cache_bytes: 1 << 20,
    }
}

/// The contents one stamp writes: the stamp in every 8-byte word (0 = never written, zeros).
fn block_of(stamp: u64) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    for w in b.chunks_mut(8) {
        w.copy_from_slice(&stamp.to_le_bytes());
    }
    b
}

/// Per block: the stamp of the last acknowledged operation (0 = zeros). Each thread owns the
/// blocks `b % THREADS == t`, so the order of acknowledgement on a block is that thread's order.
type Model = Vec<u64>;

fn fill(p: &Pool, v: VolumeId, blocks: u64, model: &mut Model, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for b in 0..blocks {
        if rng.gen_bool(0.7) {
            let s = (1 << 40) | b;
            p.write(v, b * BS, &block_of(s)).unwrap();
            model[b as usize] = s;
        }
    }
}

fn hammer(p: &Arc<Pool>, v: VolumeId, start: &Model, ops: u64, seed: u64) -> Model {
    let blocks = start.len() as u64;
    let model = Arc::new(Mutex::new(start.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                p.flush().unwrap();
                n += 1;
                std::thread::yield_now();
            }
            n
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, model) = (p.clone(), model.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ ((t + 1) * 0x9e37));
                let mut mine: HashMap<u64, u64> = HashMap::new();
                for i in 0..ops {
                    let b = rng.gen_range(0..blocks / THREADS) * THREADS + t;
                    let stamp = ((t + 1) << 32) | (i + 1);
                    match rng.gen_range(0..20) {
                        0 => {
                            p.trim(v, b * BS, BS).unwrap();
                            mine.insert(b, 0);
                        }
                        1 => {
                            p.write_zeroes(v, b * BS, BS).unwrap();
                            mine.insert(b, 0);
                        }
                        _ => {
                            p.write(v, b * BS, &block_of(stamp)).unwrap_or_else(|e| {
                                panic!("seed {seed}: write of block {b} failed: {e}")
                            });
                            mine.insert(b, stamp);
                        }
                    }
                }
                let mut m = model.lock();
                for (b, s) in mine {
                    m[b as usize] = s;
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(flusher.join().unwrap() > 0);
    Arc::try_unwrap(model).unwrap().into_inner()
}

fn verify(p: &Pool, v: VolumeId, model: &Model, what: &str) {
    let mut buf = vec![0u8; BS as usize];
    for (b, &s) in model.iter().enumerate() {
        p.read(v, b as u64 * BS, &mut buf).unwrap();
        let want = if s == 0 {
            vec![0u8; BS as usize]
        } else {
            block_of(s)
        };
        assert!(
            buf == want,
            "{what}: block {b} holds stamp {:#x}, expected {s:#x}",
            u64::from_le_bytes(buf[..8].try_into().unwrap())
        );
    }
}

/// Fill, reopen, snapshot, then the concurrent storm; every read checked against the model.
fn run(open: impl Fn() -> Arc<dyn BlockDevice>, blocks: u64, ops: u64, seed: u64) {
    let p = Pool::create(open(), "p0", opts()).unwrap();
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    let mut before = vec![0u64; blocks as usize];
    fill(&p, v, blocks, &mut before, seed);
    p.close().unwrap();
    drop(p);
    let p = Pool::open(open(), opts()).unwrap();
    let snap = p.snapshot(v, "s", VolumeOptions::default()).unwrap().id;
    let after = hammer(&p, v, &before, ops, seed);
    verify(&p, snap, &before, "snapshot");
    verify(&p, v, &after, "volume");
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = Pool::open(open(), opts()).unwrap();
    verify(&p, snap, &before, "snapshot after reopen");
    verify(&p, v, &after, "volume after reopen");
    p.delete_volume(snap).unwrap();
    p.wait_reclaim().unwrap();
    verify(&p, v, &after, "volume after snapshot delete");
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}

#[test]
fn concurrent_writes_after_reopen_and_snapshot_on_memory() {
    for seed in [1u64, 2, 3] {
        let mem = Arc::new(MemDevice::new(128 * MIB));
        run(|| mem.clone() as Arc<dyn BlockDevice>, 4096, 1500, seed);
    }
}

#[test]
fn concurrent_writes_after_reopen_and_snapshot_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let created = std::cell::Cell::new(false);
    let open = || -> Arc<dyn BlockDevice> {
        let size = (!created.replace(true)).then_some(128 * MIB);
        Arc::new(
            FileDevice::open(
                &path,
                OpenOptions {
                    create_size_bytes: size,
                    ..OpenOptions::default()
                },
            )
            .unwrap(),
        )
    };
    run(open, 4096, 1500, 7);
}
