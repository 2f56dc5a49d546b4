//! Group commit: flushes that ask while a commit runs join it and share its outcome — all
//! succeed with one commit, or all fail with its error when the device refuses it — and many
//! threads writing and flushing at once run far fewer commits than they flush, and read back
//! every write after a reopen. A commit being written does not stop I/O: reads, writes (in
//! place, redirected, freeing blocks) and trims go on while its device flush is held, a flush
//! asking after them waits for the next commit, and everything reads back after a reopen with
//! `check` clean. (That flushed writes survive a crash: `crash.rs`.)

mod support;
use support::block_of;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{BlockDevice, ErrorKind, PoolOptions, VolumeOptions, BLOCK_SIZE};
use cairn_io::{IoError, IoErrorKind, IoResult, MemDevice};
use parking_lot::{Condvar, Mutex};

const BS: u64 = BLOCK_SIZE;

/// A memory device whose flushes can be held (they wait until released), refused, or slowed.
#[derive(Debug)]
struct FlushGate {
    mem: MemDevice,
    hold: Mutex<Hold>,
    changed: Condvar,
    /// Flushes that completed.
    flushes: AtomicU64,
}

#[derive(Debug, Default)]
struct Hold {
    held: bool,
    /// Flushes waiting while held.
    blocked: usize,
    /// Flushes fail (after being released).
    refuse: bool,
    /// Every flush takes this long: a device whose cache flush costs.
    delay: Duration,
}

impl FlushGate {
    fn new(size_bytes: u64) -> FlushGate {
        FlushGate {
            mem: MemDevice::new(size_bytes),
            hold: Mutex::new(Hold::default()),
            changed: Condvar::new(),
            flushes: AtomicU64::new(0),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Hold)) {
        f(&mut self.hold.lock());
        self.changed.notify_all();
    }

    /// Waits until `n` flushes are held.
    fn wait_blocked(&self, n: usize) {
        let mut h = self.hold.lock();
        while h.blocked < n {
            self.changed.wait(&mut h);
        }
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl BlockDevice for FlushGate {
    fn size_bytes(&self) -> u64 {
        self.mem.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.mem.alignment()
    }
    fn refresh_size(&self) -> IoResult<u64> {
        self.mem.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.mem.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.mem.write_at(offset, data)
    }
    fn flush(&self) -> IoResult<()> {
        let mut h = self.hold.lock();
        while h.held {
            h.blocked += 1;
            self.changed.notify_all();
            self.changed.wait(&mut h);
            h.blocked -= 1;
        }
        let (refuse, delay) = (h.refuse, h.delay);
        drop(h);
        if refuse {
            return Err(IoError::new(IoErrorKind::Media, "flush", 0, 0));
        }
        std::thread::sleep(delay);
        self.mem.flush()?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        self.mem.discard(offset, len)
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

const JOINERS: usize = 7;

/// A write, then a flush whose commit is held in the device while `JOINERS` more flushes ask;
/// then the device is released (refusing the flush with `refuse`). Returns every flush's result,
/// the leader's first.
fn join_held_commit(
    p: &support::OnePool,
    dev: &FlushGate,
    refuse: bool,
) -> Vec<cairn_engine::Result<()>> {
    let v = p.volume_by_name("v").unwrap().id;
    p.write(v, 0, &block_of(7)).unwrap();
    dev.set(|h| h.held = true);
    std::thread::scope(|s| {
        let leader = s.spawn(|| p.flush());
        dev.wait_blocked(1);
        let joiners: Vec<_> = (0..JOINERS).map(|_| s.spawn(|| p.flush())).collect();
        while p.flush_waiters() < JOINERS {
            std::thread::yield_now();
        }
        dev.set(|h| {
            h.held = false;
            h.refuse = refuse;
        });
        std::iter::once(leader)
            .chain(joiners)
            .map(|t| t.join().expect("flush thread"))
            .collect()
    })
}

#[test]
fn flushes_that_ask_while_a_commit_runs_share_it() {
    let dev = Arc::new(FlushGate::new(16 << 20));
    let p = support::create(dev.clone(), "p", opts()).unwrap();
    p.create_volume("v", 64 * BS, VolumeOptions::default())
        .unwrap();
    let (gen, flushes) = (p.info().generation, dev.flushes());
    for r in join_held_commit(&p, &dev, false) {
        r.expect("flush");
    }
    assert_eq!(p.info().generation, gen + 1, "one commit for all flushes");
    assert_eq!(dev.flushes(), flushes + 2, "its two device flushes only");
    // Nothing changed since: a flush commits nothing and leaves the device alone.
    p.flush().unwrap();
    assert_eq!((p.info().generation, dev.flushes()), (gen + 1, flushes + 2));
    p.close().unwrap();
}

#[test]
fn a_refused_commit_fails_every_flush_that_joined_it() {
    let dev = Arc::new(FlushGate::new(16 << 20));
    let p = support::create(dev.clone(), "p", opts()).unwrap();
    let v = p
        .create_volume("v", 64 * BS, VolumeOptions::default())
        .unwrap()
        .id;
    let gen = p.info().generation;
    for r in join_held_commit(&p, &dev, true) {
        let e = r.expect_err("the commit was refused");
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    }
    // A failed flush fails the pool (which writes it lost cannot be told).
    assert!(p.info().failed.is_some());
    assert_eq!(p.flush().unwrap_err().kind(), ErrorKind::PoolFailed);
    assert_eq!(p.close().unwrap_err().kind(), ErrorKind::PoolFailed);
    drop(p);
    dev.set(|h| h.refuse = false);
    let p = support::open(dev.clone(), opts()).unwrap();
    assert_eq!(
        p.info().generation,
        gen,
        "the refused commit never became durable"
    );
    let mut buf = vec![0u8; BS as usize];
    p.read(v, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![0u8; BS as usize]);
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}

const THREADS: u64 = 16;
const ROUNDS: u64 = 16;

/// Thread `t` writes block `r * THREADS + t` of volume `t % 4` in round `r`, then flushes.
fn write_and_flush(p: &support::OnePool, t: u64) {
    let v = p.volume_by_name(&format!("v{}", t % 4)).unwrap().id;
    for r in 0..ROUNDS {
        let b = r * THREADS + t;
        p.write(v, b * BS, &block_of((t << 32) | (r + 1)))
            .expect("write");
        p.flush().expect("flush");
    }
}

#[test]
fn many_threads_flushing_at_once_run_far_fewer_commits() {
    let dev = Arc::new(FlushGate::new(64 << 20));
    dev.set(|h| h.delay = Duration::from_millis(1));
    let p = support::create(dev.clone(), "p", opts()).unwrap();
    for k in 0..4 {
        p.create_volume(
            &format!("v{k}"),
            THREADS * ROUNDS * BS,
            VolumeOptions::default(),
        )
        .unwrap();
    }
    let gen = p.info().generation;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let p = &p;
            s.spawn(move || write_and_flush(p, t));
        }
    });
    let commits = p.info().generation - gen;
    let flushes = THREADS * ROUNDS;
    eprintln!("{flushes} flushes ran {commits} commits");
    assert!(
        commits * 4 <= flushes,
        "{flushes} flushes ran {commits} commits"
    );
    p.close().unwrap();
    drop(p);
    let p = support::open(dev.clone(), opts()).unwrap();
    let mut buf = vec![0u8; BS as usize];
    for t in 0..THREADS {
        let v = p.volume_by_name(&format!("v{}", t % 4)).unwrap().id;
        for r in 0..ROUNDS {
            p.read(v, (r * THREADS + t) * BS, &mut buf).unwrap();
            assert_eq!(buf, block_of((t << 32) | (r + 1)), "thread {t} round {r}");
        }
    }
    p.close().unwrap();
}

#[test]
fn io_goes_on_while_a_commit_is_written_and_a_later_flush_waits_for_the_next() {
    let dev = Arc::new(FlushGate::new(32 << 20));
    let p = support::create(dev.clone(), "p", opts()).unwrap();
    let a = p
        .create_volume("a", 64 * BS, VolumeOptions::default())
        .unwrap()
        .id;
    let b = p
        .create_volume("b", 64 * BS, VolumeOptions::default())
        .unwrap()
        .id;
    for k in 0..16 {
        p.write(a, k * BS, &block_of(100 + k)).unwrap();
    }
    p.flush().unwrap();
    // Snapshotted: the next writes to `a` are redirected and free nothing the snapshot holds;
    // the ones after, to blocks `a` owns then, go in place.
    let s = p.snapshot(a, "s", VolumeOptions::default()).unwrap().id;
    for k in 0..8 {
        p.write(a, k * BS, &block_of(200 + k)).unwrap();
    }
    let gen = p.info().generation;
    dev.set(|h| h.held = true);
    std::thread::scope(|sc| {
        let leader = sc.spawn(|| p.flush());
        dev.wait_blocked(1);
        // The commit of the writes above is frozen and held in its device flush.
        let mut buf = vec![0u8; BS as usize];
        for k in 0..16 {
            p.read(a, k * BS, &mut buf).unwrap();
            let want = if k < 8 { 200 + k } else { 100 + k };
            assert_eq!(
                buf,
                block_of(want),
                "a block {k} while the commit is written"
            );
            p.read(s, k * BS, &mut buf).unwrap();
            assert_eq!(buf, block_of(100 + k), "snapshot block {k}");
        }
        for k in 0..8 {
            // In place over blocks the frozen commit maps (`a` owns them), and fresh blocks.
            p.write(a, k * BS, &block_of(300 + k)).unwrap();
            p.write(b, k * BS, &block_of(400 + k)).unwrap();
        }
        // Frees blocks of the frozen commit (reusable once the next one is durable), and drops
        // the volume's share of blocks the snapshot keeps.
        p.trim(a, 6 * BS, 2 * BS).unwrap();
        p.trim(a, 12 * BS, 2 * BS).unwrap();
        for k in 8..16 {
            p.write(b, k * BS, &block_of(400 + k)).unwrap();
        }
        for k in 0..6 {
            p.read(a, k * BS, &mut buf).unwrap();
            assert_eq!(buf, block_of(300 + k));
        }
        assert_eq!(p.info().generation, gen, "the commit is not durable yet");
        // These writes are not in the frozen commit: this flush needs the next one.
        let later = sc.spawn(|| p.flush());
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !later.is_finished(),
            "a flush returned before its writes were committed"
        );
        dev.set(|h| h.held = false);
        leader.join().expect("leader").expect("first flush");
        later.join().expect("later").expect("second flush");
    });
    assert_eq!(
        p.info().generation,
        gen + 2,
        "the frozen commit, then the next"
    );
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(dev.clone(), opts()).unwrap();
    let mut buf = vec![0u8; BS as usize];
    for k in 0..16 {
        p.read(a, k * BS, &mut buf).unwrap();
        let want = match k {
            0..6 => block_of(300 + k),
            6 | 7 | 12 | 13 => vec![0; BS as usize],
            _ => block_of(100 + k),
        };
        assert_eq!(buf, want, "a block {k} after reopen");
        p.read(s, k * BS, &mut buf).unwrap();
        assert_eq!(buf, block_of(100 + k), "snapshot block {k} after reopen");
        p.read(b, k * BS, &mut buf).unwrap();
        assert_eq!(buf, block_of(400 + k), "b block {k} after reopen");
    }
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}
