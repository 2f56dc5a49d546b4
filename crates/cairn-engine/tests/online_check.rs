//! `Pool::check` runs online against the commit it starts from, while writers write, snapshots
//! are taken and deleted and commits go on (every millisecond): halfway through its walk the
//! check waits until the writers have acknowledged more writes, snapshots were taken and
//! deleted and the pool committed several times — which only happens if the check blocks
//! none of them — and then finishes on blocks the pool freed meanwhile but may not reuse. It
//! reports a clean pool clean, and a bad block of a corrupted pool as a finding.

mod support;
use support::block_of;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_engine::{
    CheckPhase, CheckReport, FindingKind, PoolOptions, VolumeId, VolumeOptions, BLOCK_SIZE,
};
use cairn_io::{BlockDevice, MemDevice};
use parking_lot::{Condvar, Mutex};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use support::OnePool;

const BS: u64 = BLOCK_SIZE;
/// Blocks of the volume the writers write.
const BLOCKS: u64 = 2048;
const WRITERS: u64 = 2;
/// Work the I/O must get done while the check waits halfway (far more than one commit's worth).
const WRITES_DURING_CHECK: u64 = 1500;
const SNAPSHOTS_DURING_CHECK: u64 = 6;
const COMMITS_DURING_CHECK: u64 = 8;
/// How long the check waits for that work before it gives up (a bound, not a measure: with a
/// check that blocked I/O the work would never get done).
const WAIT_MAX: Duration = Duration::from_secs(120);

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: Some(Duration::from_millis(1)),
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// Work done by the I/O threads, with a signal for every step.
#[derive(Default)]
struct Work {
    done: Mutex<(u64, u64)>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Work {
    fn count(&self, writes: u64, snapshots: u64) {
        let mut d = self.done.lock();
        d.0 += writes;
        d.1 += snapshots;
        self.changed.notify_all();
    }
}

/// A pool with `w` (every block written, odd blocks first so no extents merge) and a few more
/// volumes with data.
fn pool_with_data(dev: Arc<MemDevice>) -> (OnePool, VolumeId) {
    let p = support::create(dev, "p0", opts()).unwrap();
    let w = p
        .create_volume("w", BLOCKS * BS, VolumeOptions::default())
        .unwrap()
        .id;
    for b in (1..BLOCKS).step_by(2).chain((0..BLOCKS).step_by(2)) {
        p.write(w, b * BS, &block_of(b)).unwrap();
    }
    for n in 0..4 {
        let v = p
            .create_volume(&format!("other{n}"), 256 * BS, VolumeOptions::default())
            .unwrap()
            .id;
        for b in (0..256).step_by(3) {
            p.write(v, b * BS, &block_of(n << 32 | b)).unwrap();
        }
    }
    p.flush().unwrap();
    (p, w)
}

/// Writer `t`: blocks `t`, `t + WRITERS`, … of `w`, each write a new stamp; returns the last
/// stamp of every block it wrote.
fn writer(p: OnePool, w: VolumeId, t: u64, work: Arc<Work>) -> JoinHandle<HashMap<u64, u64>> {
    std::thread::spawn(move || {
        let mut rng = SmallRng::seed_from_u64(t);
        let mut last = HashMap::new();
        let mut n = 0u64;
        while !work.stop.load(Ordering::Relaxed) {
            n += 1;
            let b = rng.gen_range(0..BLOCKS / WRITERS) * WRITERS + t;
            let stamp = (t + 1) << 48 | n;
            p.write(w, b * BS, &block_of(stamp)).unwrap();
            last.insert(b, stamp);
            if n % 128 == 0 {
                p.flush().unwrap();
            }
            work.count(1, 0);
        }
        last
    })
}

/// Snapshots of `w` taken and deleted (their trees reclaimed) one after another.
fn snapshotter(p: OnePool, w: VolumeId, work: Arc<Work>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut taken = Vec::new();
        let mut n = 0;
        while !work.stop.load(Ordering::Relaxed) {
            n += 1;
            let s = p
                .snapshot(w, &format!("snap{n}"), VolumeOptions::default())
                .unwrap();
            taken.push(s.id);
            if taken.len() > 2 {
                p.delete_volume(taken.remove(0)).unwrap();
            }
            work.count(0, 1);
        }
    })
}

/// Runs the check; halfway through its walk it waits for the I/O threads and the commits (two
/// device flushes each) to get their work done. Returns the report and whether they did.
fn check_while_io(p: &OnePool, dev: &Arc<MemDevice>, work: &Arc<Work>) -> (CheckReport, bool) {
    let progressed = Arc::new(AtomicBool::new(false));
    let (dev, work2, flag) = (dev.clone(), work.clone(), progressed.clone());
    let mut waited = false;
    let report = p
        .check_with_progress(Box::new(move |at| {
            if waited || at.phase != CheckPhase::Walk || at.done < at.total / 2 {
                return;
            }
            waited = true;
            let flushes0 = dev.stats().flushes;
            let start = *work2.done.lock();
            let mut done = work2.done.lock();
            let enough = |d: &(u64, u64), flushes: u64| {
                d.0 >= start.0 + WRITES_DURING_CHECK
                    && d.1 >= start.1 + SNAPSHOTS_DURING_CHECK
                    && flushes >= flushes0 + 2 * COMMITS_DURING_CHECK
            };
            let got = work2.changed.wait_while_for(
                &mut done,
                |d| !enough(d, dev.stats().flushes),
                WAIT_MAX,
            );
            flag.store(!got.timed_out(), Ordering::Relaxed);
        }))
        .unwrap();
    (report, progressed.load(Ordering::Relaxed))
}

/// Starts the writers and the snapshotter; `stop` ends them and returns the writers' stamps.
fn start_io(p: &OnePool, w: VolumeId, work: &Arc<Work>) -> Vec<JoinHandle<HashMap<u64, u64>>> {
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|t| writer(p.clone(), w, t, work.clone()))
        .collect();
    let snaps = snapshotter(p.clone(), w, work.clone());
    writers.push(std::thread::spawn(move || {
        snaps.join().unwrap();
        HashMap::new()
    }));
    writers
}

fn stop_io(work: &Work, threads: Vec<JoinHandle<HashMap<u64, u64>>>) -> HashMap<u64, u64> {
    work.stop.store(true, Ordering::Relaxed);
    let mut last = HashMap::new();
    for t in threads {
        last.extend(t.join().unwrap());
    }
    last
}

#[test]
fn an_online_check_of_a_busy_pool_is_clean_and_blocks_no_io() {
    let dev = Arc::new(MemDevice::new(128 << 20));
    let (p, w) = pool_with_data(dev.clone());
    let work = Arc::new(Work::default());
    let threads = start_io(&p, w, &work);
    let (report, progressed) = check_while_io(&p, &dev, &work);
    let last = stop_io(&work, threads);
    assert!(
        progressed,
        "writes, snapshots and commits went on during the check"
    );
    for f in report.findings.iter().take(10) {
        eprintln!("{f:?}");
    }
    assert!(report.is_clean(), "{} findings", report.findings.len());
    assert!(report.volumes >= 5);
    // The blocks the check kept from reuse come free again; the data is what was written.
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    let mut buf = vec![0u8; BS as usize];
    for b in 0..BLOCKS {
        p.read(w, b * BS, &mut buf).unwrap();
        assert_eq!(
            buf,
            block_of(last.get(&b).copied().unwrap_or(b)),
            "block {b}"
        );
    }
    p.close().unwrap();
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}

/// The single leaf of a volume whose only mapping is at virtual block `key`: the volume node
/// (type 2) of level 0 holding one entry with that key.
fn leaf_with_key(dev: &MemDevice, key: u64) -> u64 {
    let mut buf = vec![0u8; BS as usize];
    let found: Vec<u64> = (2..dev.size_bytes() / BS)
        .filter(|&b| {
            dev.read_at(b * BS, &mut buf).unwrap();
            let u16_at = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]);
            let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
            &buf[..4] == b"CRNM"
                && u16_at(4) == 2
                && u16_at(6) == 0
                && u32_at(12) == 1
                && u64_at(64) == key
        })
        .collect();
    assert_eq!(found.len(), 1, "one leaf maps block {key}: {found:?}");
    found[0]
}

#[test]
fn an_online_check_reports_a_bad_block_while_io_goes_on() {
    let dev = Arc::new(MemDevice::new(128 << 20));
    let (p, w) = pool_with_data(dev.clone());
    const KEY: u64 = 7_654_321;
    let victim = p
        .create_volume("victim", (KEY + 1) * BS, VolumeOptions::default())
        .unwrap()
        .id;
    p.write(victim, KEY * BS, &block_of(1)).unwrap();
    p.flush().unwrap();
    let leaf = leaf_with_key(&dev, KEY);
    let mut buf = vec![0u8; BS as usize];
    dev.read_at(leaf * BS, &mut buf).unwrap();
    buf[100] ^= 0xff;
    dev.write_at(leaf * BS, &buf).unwrap();

    let work = Arc::new(Work::default());
    let threads = start_io(&p, w, &work);
    let (report, progressed) = check_while_io(&p, &dev, &work);
    stop_io(&work, threads);
    assert!(
        progressed,
        "writes, snapshots and commits went on during the check"
    );
    let bad: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::BadBlock)
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", &bad[..bad.len().min(5)]);
    assert_eq!(bad[0].block, leaf, "{:?}", bad[0]);
    // Nothing else is wrong but what the bad leaf hides: its data block, referenced from
    // nowhere the check could read, is leaked and missing from the data count.
    for f in &report.findings {
        assert!(
            matches!(
                f.kind,
                FindingKind::BadBlock | FindingKind::Leaked | FindingKind::Accounting
            ),
            "{f:?}"
        );
    }
    p.close().unwrap();
}
