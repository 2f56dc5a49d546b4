//! Concurrency stress of the data path against a model: many threads write random 4 KiB blocks
//! (and trim / write-zeroes ranges) of one volume right after it was reopened and snapshotted,
//! with a short background commit interval and concurrent flushes, on a file-backed pool
//! (`FileDevice`, O_DIRECT where the file system allows it) and on `MemDevice`. No request may
//! fail; at the end every block reads as the last acknowledged operation on it left it, the
//! snapshot still reads as it did when taken, and `check` is clean. A second storm shares
//! blocks between threads (whole-block writes, trims and 512-byte sector writes) while
//! snapshots are taken and deleted, and checks every snapshot against an interval oracle.

mod support;
use support::block_of;
use support::OnePool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{BlockDevice, PoolOptions, VolumeId, VolumeOptions};
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
        preallocate: false,
    }
}

/// Per block: the stamp of the last acknowledged operation (0 = zeros). Each thread owns the
/// blocks `b % THREADS == t`, so the order of acknowledgement on a block is that thread's order.
type Model = Vec<u64>;

fn fill(p: &OnePool, v: VolumeId, blocks: u64, model: &mut Model, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for b in 0..blocks {
        if rng.gen_bool(0.7) {
            let s = (1 << 40) | b;
            p.write(v, b * BS, &block_of(s)).unwrap();
            model[b as usize] = s;
        }
    }
}

fn hammer(p: &OnePool, v: VolumeId, start: &Model, ops: u64, seed: u64) -> Model {
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

fn verify(p: &OnePool, v: VolumeId, model: &Model, what: &str) {
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
    let p = support::create(open(), "p0", opts()).unwrap();
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    let mut before = vec![0u64; blocks as usize];
    fill(&p, v, blocks, &mut before, seed);
    p.close().unwrap();
    drop(p);
    let p = support::open(open(), opts()).unwrap();
    let snap = p.snapshot(v, "s", VolumeOptions::default()).unwrap().id;
    let after = hammer(&p, v, &before, ops, seed);
    verify(&p, snap, &before, "snapshot");
    verify(&p, v, &after, "volume");
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(open(), opts()).unwrap();
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

// ---- shared blocks, sector writes and snapshots --------------------------------------------
//
// Threads write whole blocks, trim blocks and write single 512-byte sectors of the same blocks
// of a 512-byte volume, while another thread takes and deletes snapshots. Every operation gets
// a unique stamp and the ticks of a global clock when it was called and when it returned. A
// sector of a snapshot must hold the stamp of an operation that could be the last one applied
// before the snapshot: one that started before the snapshot returned and was not overwritten,
// before the snapshot began, by an operation that started after it returned. A snapshot reads
// the same at every later read, and the volume at the end obeys the same rule.

const SHARED_BLOCKS: u64 = 16;
const SECTORS: usize = 8;
const SECTOR_BYTES: usize = 512;
const STORM_THREADS: u64 = 4;
const STORM_OPS: u64 = 4000;
/// Snapshots taken while the writers run.
const STORM_SNAPSHOTS: u64 = 12;
/// Clock ticks (two per operation) between snapshots.
const SNAPSHOT_EVERY_TICKS: u64 = 600;

/// One operation on the volume: its stamp per sector (0 for a trim), ticks at call and return.
#[derive(Clone, Copy)]
struct Op {
    block: u64,
    /// Sectors written (bit i: sector i).
    sectors: u8,
    stamp: u64,
    start: u64,
    end: u64,
}

/// Per sector of the volume, the operations that wrote it.
struct History {
    ops: Vec<Vec<Op>>,
}

impl History {
    fn new(logs: Vec<Vec<Op>>) -> History {
        let mut ops = vec![Vec::new(); (SHARED_BLOCKS as usize) * SECTORS];
        for op in logs.into_iter().flatten() {
            for i in 0..SECTORS {
                if op.sectors >> i & 1 == 1 {
                    ops[op.block as usize * SECTORS + i].push(op);
                }
            }
        }
        History { ops }
    }

    /// May sector `s` hold `stamp` in a snapshot that began at tick `begin` and returned at
    /// `end` (`u64::MAX` twice: the volume when everything has returned)?
    fn fits(&self, s: usize, stamp: u64, begin: u64, end: u64) -> bool {
        let ops = &self.ops[s];
        // An operation that returned before `latest_start` was overwritten before `begin`.
        let latest_start = ops.iter().filter(|o| o.end < begin).map(|o| o.start).max();
        let candidates = ops
            .iter()
            .filter(|o| o.start < end && latest_start.is_none_or(|l| o.end >= l));
        let initial = stamp == 0 && latest_start.is_none();
        initial || candidates.into_iter().any(|o| o.stamp == stamp)
    }
}

fn sector_stamps(b: &[u8]) -> [u64; SECTORS] {
    let mut out = [0u64; SECTORS];
    for (i, s) in b.chunks(SECTOR_BYTES).enumerate() {
        out[i] = u64::from_le_bytes(s[..8].try_into().unwrap());
        assert!(
            s.chunks(8).all(|w| w == &s[..8]),
            "sector {i} holds pieces of two writes"
        );
    }
    out
}

fn read_all(p: &OnePool, v: VolumeId) -> Vec<u8> {
    let mut buf = vec![0u8; (SHARED_BLOCKS * BS) as usize];
    p.read(v, 0, &mut buf).unwrap();
    buf
}

/// Runs until it made `STORM_OPS` operations and the snapshots are all taken.
fn shared_writer(
    p: &OnePool,
    v: VolumeId,
    t: u64,
    clock: &std::sync::atomic::AtomicU64,
    snapshots_done: &AtomicBool,
) -> Vec<Op> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(t * 0x51ed + 5);
    let mut log = Vec::with_capacity(STORM_OPS as usize);
    let mut i = 0;
    while i < STORM_OPS || !snapshots_done.load(Ordering::SeqCst) {
        i += 1;
        let block = rng.gen_range(0..SHARED_BLOCKS);
        let stamp = ((t + 1) << 32) | i;
        let roll = rng.gen_range(0..10);
        let start = clock.fetch_add(1, Ordering::SeqCst);
        let sectors = match roll {
            0..=3 => {
                p.write(v, block * BS, &block_of(stamp)).unwrap();
                0xff
            }
            4 => {
                p.trim(v, block * BS, BS).unwrap();
                0xff
            }
            _ => {
                let s = rng.gen_range(0..SECTORS);
                let at = block * BS + (s * SECTOR_BYTES) as u64;
                p.write(v, at, &block_of(stamp)[..SECTOR_BYTES]).unwrap();
                1 << s
            }
        };
        let end = clock.fetch_add(1, Ordering::SeqCst);
        let stamp = if roll == 4 { 0 } else { stamp };
        log.push(Op {
            block,
            sectors,
            stamp,
            start,
            end,
        });
    }
    log
}

/// A snapshot taken during the storm: its id, the ticks around the call, its first read.
struct Taken {
    id: VolumeId,
    begin: u64,
    end: u64,
    first: Vec<u8>,
}

fn check_taken(h: &History, s: &Taken, now: &[u8], what: &str) {
    assert!(
        now == s.first,
        "{what}: snapshot {} changed between reads",
        s.id
    );
    for (b, block) in now.chunks(BS as usize).enumerate() {
        for (i, stamp) in sector_stamps(block).into_iter().enumerate() {
            assert!(
                h.fits(b * SECTORS + i, stamp, s.begin, s.end),
                "{what}: snapshot {} block {b} sector {i} holds {stamp:#x}",
                s.id
            );
        }
    }
}

#[test]
fn shared_blocks_sector_writes_and_snapshots_keep_every_snapshot_exact() {
    use std::sync::atomic::AtomicU64;
    let mem = Arc::new(MemDevice::new(64 * MIB));
    // Commits come from the snapshots (and the dirty bound) only.
    let quiet = PoolOptions {
        commit_interval: None,
        ..opts()
    };
    let p = support::create(mem.clone(), "p0", quiet.clone()).unwrap();
    let o = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let v = p.create_volume("v", SHARED_BLOCKS * BS, o).unwrap().id;
    let clock = AtomicU64::new(1);
    let snapshots_done = AtomicBool::new(false);
    let (logs, taken) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..STORM_THREADS)
            .map(|t| {
                let (p, clock, snapshots_done) = (&p, &clock, &snapshots_done);
                scope.spawn(move || shared_writer(p, v, t, clock, snapshots_done))
            })
            .collect();
        let mut kept: Vec<Taken> = Vec::new();
        let mut n = 0;
        let mut last = 0;
        while n < STORM_SNAPSHOTS {
            // A snapshot every few hundred operations: in between, blocks written twice in
            // one transaction are written in place, where a read-modify-write can race.
            if clock.load(Ordering::SeqCst) < last + SNAPSHOT_EVERY_TICKS {
                std::thread::yield_now();
                continue;
            }
            n += 1;
            let begin = clock.fetch_add(1, Ordering::SeqCst);
            let id = p
                .snapshot(v, &format!("s{n}"), VolumeOptions::default())
                .unwrap()
                .id;
            let end = clock.fetch_add(1, Ordering::SeqCst);
            last = end;
            let first = read_all(&p, id);
            kept.push(Taken {
                id,
                begin,
                end,
                first,
            });
            // Keep a few; delete the oldest, reading it once more first.
            if kept.len() > 4 {
                let old = kept.remove(0);
                assert!(
                    read_all(&p, old.id) == old.first,
                    "snapshot {} changed",
                    old.id
                );
                p.delete_volume(old.id).unwrap();
            }
        }
        snapshots_done.store(true, Ordering::SeqCst);
        let logs: Vec<Vec<Op>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        (logs, kept)
    });
    let h = History::new(logs);
    for s in &taken {
        check_taken(&h, s, &read_all(&p, s.id), "after the storm");
    }
    let check_volume = |p: &OnePool, what: &str| {
        let now = read_all(p, v);
        for (b, block) in now.chunks(BS as usize).enumerate() {
            for (i, stamp) in sector_stamps(block).into_iter().enumerate() {
                assert!(
                    h.fits(b * SECTORS + i, stamp, u64::MAX, u64::MAX),
                    "{what}: block {b} sector {i} holds {stamp:#x}"
                );
            }
        }
    };
    check_volume(&p, "volume");
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(mem, quiet).unwrap();
    for s in &taken {
        check_taken(&h, s, &read_all(&p, s.id), "after reopen");
    }
    check_volume(&p, "volume after reopen");
    p.close().unwrap();
}
