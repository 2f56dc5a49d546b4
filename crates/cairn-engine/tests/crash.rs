//! Crash replay on the recording device: workloads mixing writes, trims, flushes, snapshots,
//! deletes and restores are recorded; the image is rebuilt at every flush boundary and at random
//! points with the unflushed writes dropped, kept, torn or reordered. Every image must open, read
//! exactly as the state of some commit not older than the last completed flush or volume
//! operation (so every flushed write and every snapshot is there as taken), pass `check`, and
//! finish any interrupted reclaim with `check` still clean. A second replay runs threads and
//! background commits over multi-level trees, with its own per-block oracle (see below); a
//! third, threads that write several volumes and flush at once (group commits) under the same
//! oracle.

mod support;
use support::OnePool;

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_engine::{BlockDevice, ErrorKind, PoolOptions, VolumeOptions};
use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordingDevice};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BS: usize = 4096;
const POOL_BYTES: u64 = 16 << 20;
const VOL_BLOCKS: usize = 96;

/// Volume name -> contents.
type State = BTreeMap<String, Vec<u8>>;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

struct Workload {
    dev: Arc<RecordingDevice>,
    /// (log length when the operation returned, generation after it, state after it).
    marks: Vec<(usize, u64, State)>,
    /// Blocks written in place (as the engine's rule predicts), in order.
    in_place: Vec<InPlace>,
}

/// A block a write overwrote in place: no commit is needed for it to be seen after a crash,
/// and until a flush (or with FUA, its return) each of its sectors may be old or new.
struct InPlace {
    /// Log length before the call and after its return.
    start: usize,
    end: usize,
    fua: bool,
    volume: String,
    block: usize,
    /// Log length when the write that mapped the block (to a fresh block) returned: before a
    /// commit of that mapping, writes in place over it are not seen after a crash.
    mapped: usize,
    /// The block's contents after the write.
    data: Vec<u8>,
}

/// Which blocks of each volume the engine overwrites in place: those it wrote since the
/// volume's last share (snapshot of it, restore into or from it) and has not unmapped since,
/// with the log length when the write that mapped them returned.
type Exclusive = BTreeMap<String, Vec<Option<usize>>>;

fn block_of(rng: &mut SmallRng) -> Vec<u8> {
    let fill: u8 = rng.gen_range(1..=255);
    let mut b = vec![fill; BS];
    let at = rng.gen_range(0..BS - 8);
    b[at..at + 8].copy_from_slice(&rng.gen::<u64>().to_le_bytes());
    b
}

fn run_workload(seed: u64) -> Workload {
    let mut rng = SmallRng::seed_from_u64(seed);
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(POOL_BYTES)));
    let pool = support::create(dev.clone(), "crash", opts()).expect("create");
    let mut live: State = BTreeMap::new();
    let mut ids = BTreeMap::new();
    let mut exclusive: Exclusive = BTreeMap::new();
    let mut in_place = Vec::new();
    let mut marks = vec![(dev.ops_len(), pool.info().generation, live.clone())];
    for (name, lbs) in [("a", 4096u32), ("b", 4096), ("c", 512)] {
        let o = VolumeOptions {
            logical_block_size: lbs,
            ..VolumeOptions::default()
        };
        let v = pool
            .create_volume(name, (VOL_BLOCKS * BS) as u64, o)
            .expect("create volume");
        ids.insert(name.to_string(), v.id);
        live.insert(name.to_string(), vec![0u8; VOL_BLOCKS * BS]);
        exclusive.insert(name.to_string(), vec![None; VOL_BLOCKS]);
        marks.push((dev.ops_len(), pool.info().generation, live.clone()));
    }
    let mut grown = false;
    let mut snaps = 0;
    for _ in 0..70 {
        let writable: Vec<String> = live.keys().cloned().collect();
        let name = writable[rng.gen_range(0..writable.len())].clone();
        let id = ids[&name];
        let roll = rng.gen_range(0..100);
        let committed = match roll {
            0..=54 => {
                // Whole blocks, or 512-byte sectors on the 512-byte volume (read-modify-write);
                // one in five with FUA.
                let unit = if name == "c" { 512 } else { BS };
                let units = VOL_BLOCKS * BS / unit;
                let start = rng.gen_range(0..units);
                let n = rng.gen_range(1..=(8 * BS / unit).min(units - start));
                let data: Vec<u8> = (0..n)
                    .flat_map(|_| block_of(&mut rng)[..unit].to_vec())
                    .collect();
                let fua = rng.gen_range(0..5) == 0;
                let log_start = dev.ops_len();
                if fua {
                    pool.write_fua(id, (start * unit) as u64, &data)
                        .expect("fua write");
                } else {
                    pool.write(id, (start * unit) as u64, &data).expect("write");
                }
                let contents = live.get_mut(&name).unwrap();
                contents[start * unit..(start + n) * unit].copy_from_slice(&data);
                let blocks = start * unit / BS..((start + n) * unit).div_ceil(BS);
                let owned = exclusive.get_mut(&name).unwrap();
                for b in blocks {
                    match owned[b] {
                        Some(mapped) => in_place.push(InPlace {
                            start: log_start,
                            end: dev.ops_len(),
                            fua,
                            volume: name.clone(),
                            block: b,
                            mapped,
                            data: contents[b * BS..(b + 1) * BS].to_vec(),
                        }),
                        None => owned[b] = Some(dev.ops_len()),
                    }
                }
                // A FUA write commits unless it was in place over durable mappings.
                fua
            }
            55..=62 => {
                let start = rng.gen_range(0..VOL_BLOCKS);
                let n = rng.gen_range(1..=16.min(VOL_BLOCKS - start));
                pool.trim(id, (start * BS) as u64, (n * BS) as u64)
                    .expect("trim");
                live.get_mut(&name).unwrap()[start * BS..(start + n) * BS].fill(0);
                exclusive.get_mut(&name).unwrap()[start..start + n].fill(None);
                false
            }
            63..=64 if !grown => {
                grown = true;
                dev.set_size(POOL_BYTES + (4 << 20));
                pool.grow().expect("grow");
                true
            }
            63..=79 => {
                pool.flush().expect("flush");
                true
            }
            80..=89 if live.len() < 7 => {
                snaps += 1;
                let sname = format!("snap{snaps}");
                let s = pool
                    .snapshot(id, &sname, VolumeOptions::default())
                    .expect("snapshot");
                ids.insert(sname.clone(), s.id);
                let contents = live[&name].clone();
                live.insert(sname.clone(), contents);
                exclusive.insert(sname, vec![None; VOL_BLOCKS]);
                exclusive.insert(name.clone(), vec![None; VOL_BLOCKS]);
                true
            }
            90..=94 if name.starts_with("snap") => {
                pool.delete_volume(id).expect("delete");
                pool.wait_reclaim().expect("reclaim");
                live.remove(&name);
                ids.remove(&name);
                exclusive.remove(&name);
                true
            }
            95..=99 => {
                let other = writable[rng.gen_range(0..writable.len())].clone();
                if other == name {
                    continue;
                }
                pool.restore(id, ids[&other]).expect("restore");
                pool.wait_reclaim().expect("reclaim");
                let contents = live[&other].clone();
                live.insert(name.clone(), contents);
                exclusive.insert(name.clone(), vec![None; VOL_BLOCKS]);
                exclusive.insert(other, vec![None; VOL_BLOCKS]);
                true
            }
            _ => continue,
        };
        if committed {
            marks.push((dev.ops_len(), pool.info().generation, live.clone()));
        }
    }
    pool.close().expect("close");
    marks.push((dev.ops_len(), pool.info().generation, live));
    drop(pool);
    Workload {
        dev,
        marks,
        in_place,
    }
}

/// Opens one crash image and checks it against the commits recorded.
fn verify_image(w: &Workload, point: CrashPoint) {
    let ctx = format!("{point:?}");
    let image: Arc<dyn BlockDevice> = Arc::new(w.dev.image_at(point));
    let pool = match support::open(image, opts()) {
        Ok(p) => p,
        // A crash before the pool's first commit finished leaves no pool at all.
        Err(e) if point.op_index < w.marks[0].0 && e.kind() == ErrorKind::NotAPool => return,
        Err(e) => panic!("{ctx}: open: {e:?}"),
    };
    let gen = pool.info().generation;
    // The last operation that returned before the crash is durable.
    let floor = w
        .marks
        .iter()
        .filter(|m| m.0 <= point.op_index)
        .map(|m| m.1)
        .max()
        .unwrap_or(0);
    assert!(
        gen >= floor,
        "{ctx}: generation {gen} older than completed commit {floor}"
    );
    // Generation -> the state of the first operation whose commits reached it.
    let Some((since, _, want)) = w.marks.iter().find(|m| m.1 >= gen) else {
        panic!("{ctx}: generation {gen} was never committed");
    };
    let vols = pool.volumes();
    let names: Vec<&String> = vols.iter().map(|v| &v.name).collect();
    assert_eq!(
        names,
        want.keys().collect::<Vec<_>>(),
        "{ctx}: volumes at generation {gen}"
    );
    for v in &vols {
        let mut buf = vec![0u8; VOL_BLOCKS * BS];
        pool.read(v.id, 0, &mut buf).expect("read");
        let later = in_place_since(w, &v.name, *since, point.op_index);
        for b in 0..VOL_BLOCKS {
            let got = &buf[b * BS..(b + 1) * BS];
            let old = &want[&v.name][b * BS..(b + 1) * BS];
            assert!(
                block_fits(w, point.op_index, old, &later[b], got),
                "{ctx}: volume {} block {b} differs at generation {gen}",
                v.name
            );
        }
    }
    let report = pool.check().expect("check");
    assert!(
        report.is_clean(),
        "{ctx}: {:?}",
        &report.findings[..report.findings.len().min(5)]
    );
    pool.wait_reclaim().expect("reclaim");
    let report = pool.check().expect("check after reclaim");
    assert!(
        report.is_clean(),
        "{ctx} after reclaim: {:?}",
        &report.findings[..report.findings.len().min(5)]
    );
}

/// Per block of `volume`, the in-place writes that began after log length `since` (the
/// generation's operation returned) and before the crash at `crash`, over mappings that
/// generation holds (made before `since`).
fn in_place_since<'w>(
    w: &'w Workload,
    volume: &str,
    since: usize,
    crash: usize,
) -> Vec<Vec<&'w InPlace>> {
    let mut out = vec![Vec::new(); VOL_BLOCKS];
    for e in &w.in_place {
        if e.volume == volume && e.mapped <= since && e.start >= since && e.start < crash {
            out[e.block].push(e);
        }
    }
    out
}

/// Does block contents `got` fit a crash at `crash`? Without in-place writes it is exactly the
/// generation's `old`. With them, each 512-byte sector holds the last durable contents (the last
/// write flushed, or FUA and returned, before the crash; else `old`) or a later write's.
fn block_fits(w: &Workload, crash: usize, old: &[u8], writes: &[&InPlace], got: &[u8]) -> bool {
    let log = w.dev.log();
    let flushed = |e: &InPlace| {
        e.end <= crash && (e.fua || log[e.end..crash].contains(&cairn_io::RecordedOp::Flush))
    };
    let last_durable = writes.iter().rposition(|e| flushed(e));
    let base = last_durable.map_or(old, |i| &writes[i].data[..]);
    let later = &writes[last_durable.map_or(0, |i| i + 1)..];
    (0..SECTORS).all(|i| {
        let r = i * SECTOR_BYTES..(i + 1) * SECTOR_BYTES;
        got[r.clone()] == base[r.clone()]
            || later.iter().any(|e| got[r.clone()] == e.data[r.clone()])
    })
}

fn replay(seed: u64, random_points: usize) -> usize {
    let w = run_workload(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut images = 0;
    for p in w.dev.flush_points() {
        verify_image(&w, CrashPoint::new(p, 0, CrashMode::Drop));
        images += 1;
    }
    let len = w.dev.ops_len();
    for _ in 0..random_points {
        let mode = CrashMode::ALL[rng.gen_range(0..4)];
        let point = CrashPoint::new(rng.gen_range(0..=len), rng.gen(), mode);
        verify_image(&w, point);
        images += 1;
    }
    images
}

#[test]
fn crash_images_replay_to_a_committed_state() {
    let base: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut images = 0;
    for k in 0..10 {
        let seed = base.wrapping_add(k);
        eprintln!("crash seed {seed}");
        images += replay(seed, 250);
    }
    eprintln!("crash images verified: {images}");
    assert!(images >= 2000, "only {images} crash images");
}

/// Crashes in the middle of a multi-transaction reclaim: every image opens with the deleted
/// volume gone, the surviving volumes intact and `check` clean, and the reclaim finishes.
#[test]
fn crash_during_reclaim_resumes_cleanly() {
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(64 << 20)));
    let pool = support::create(dev.clone(), "reclaim", opts()).expect("create");
    let big = pool
        .create_volume("big", 32 << 20, VolumeOptions::default())
        .expect("create")
        .id;
    let keep = pool
        .create_volume("keep", 1 << 20, VolumeOptions::default())
        .expect("create")
        .id;
    for i in 0..3000u64 {
        pool.write(big, i * 8192, &[(i % 200) as u8 + 1; BS])
            .expect("write");
    }
    // The snapshot shares most of the tree; the volume then diverges a little.
    let snap = pool
        .snapshot(big, "big@1", VolumeOptions::default())
        .expect("snapshot")
        .id;
    for i in 0..300u64 {
        pool.write(big, i * 16384, &[0xaa; BS]).expect("write");
    }
    pool.write(keep, 0, &[7u8; BS]).expect("write");
    pool.flush().expect("flush");
    pool.pause_reclaim(true);
    let start = dev.ops_len();
    pool.delete_volume(big).expect("delete");
    let deleted = dev.ops_len();
    let mut steps = 0;
    while pool.reclaim_once().expect("reclaim step") {
        steps += 1;
    }
    pool.delete_volume(snap).expect("delete");
    while pool.reclaim_once().expect("reclaim step") {
        steps += 1;
    }
    assert!(steps >= 1, "the reclaim took several transactions");
    pool.close().expect("close");
    drop(pool);
    let end = dev.ops_len();
    let mut rng = SmallRng::seed_from_u64(77);
    let mut points: Vec<CrashPoint> = dev
        .flush_points()
        .into_iter()
        .filter(|p| *p >= start)
        .map(|p| CrashPoint::new(p, 0, CrashMode::Drop))
        .collect();
    for _ in 0..150 {
        let mode = CrashMode::ALL[rng.gen_range(0..4)];
        points.push(CrashPoint::new(rng.gen_range(start..=end), rng.gen(), mode));
    }
    for point in points {
        let ctx = format!("{point:?}");
        let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
        let p = support::open(image, opts()).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
        let names: Vec<String> = p.volumes().into_iter().map(|v| v.name).collect();
        assert!(names.contains(&"keep".to_string()), "{ctx}: {names:?}");
        if point.op_index >= deleted {
            assert!(
                !names.contains(&"big".to_string()),
                "{ctx}: deleted volume is back"
            );
        }
        let mut buf = vec![0u8; BS];
        p.read(keep, 0, &mut buf).expect("read");
        assert_eq!(buf, vec![7u8; BS], "{ctx}");
        if names.contains(&"big@1".to_string()) {
            p.read(snap, 2999 * 8192, &mut buf).expect("read");
            assert_eq!(buf, vec![(2999 % 200) as u8 + 1; BS], "{ctx}");
        }
        let report = p.check().expect("check");
        assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
        p.wait_reclaim().expect("reclaim");
        let report = p.check().expect("check");
        assert!(
            report.is_clean(),
            "{ctx} after reclaim: {:?}",
            report.findings.first()
        );
    }
}

// ---- concurrent crash replay on multi-level trees ------------------------------------------
//
// Threads write, trim and sector-write two volumes whose trees have several levels while
// background commits run, flushes are taken and a snapshot is deleted (its reclaim runs in the
// background, so crash points fall in the middle of it). The oracle works per block: a block
// may hold any contents a change left it with, from the last change acknowledged before a
// flush that completed before the crash, up to the last change that started before the crash.
// A block a change may have written in place may also mix those contents per 512-byte sector;
// any other block holds exactly one of them.

const SECTOR_BYTES: usize = 512;
const SECTORS: usize = BS / SECTOR_BYTES;
const STORM_THREADS: usize = 4;
const STORM_OPS: usize = 500;
/// Written in shuffled order, so thousands of extents: a mapping tree of several levels.
const A_BLOCKS: usize = 3072;
/// A 512-byte volume: sector writes are read-modify-writes of its blocks.
const C_BLOCKS: usize = 512;

/// A block's contents: the stamp filling each of its 512-byte sectors (0: zeros).
type Sectors = [u64; SECTORS];

fn sectors_bytes(s: &Sectors) -> Vec<u8> {
    s.iter()
        .flat_map(|st| std::iter::repeat_n(st.to_le_bytes(), SECTOR_BYTES / 8).flatten())
        .collect()
}

/// The stamps of a block read back; `None` when a sector is not one stamp throughout.
fn parse_block(b: &[u8]) -> Option<Sectors> {
    let mut out = [0u64; SECTORS];
    for (i, sector) in b.chunks(SECTOR_BYTES).enumerate() {
        let first = u64::from_le_bytes(sector[..8].try_into().unwrap());
        if sector.chunks(8).any(|w| w != first.to_le_bytes()) {
            return None;
        }
        out[i] = first;
    }
    Some(out)
}

/// One change of a block: its contents after it, the log length before the call and after its
/// return, whether it may have been written in place, and whether it was durable on return
/// (a FUA write).
#[derive(Clone)]
struct Change {
    after: Sectors,
    start: usize,
    end: usize,
    in_place: bool,
    fua: bool,
}

impl Change {
    /// The state of a block before the workload: durable whatever the crash.
    fn before(after: Sectors) -> Change {
        Change {
            after,
            start: 0,
            end: 0,
            in_place: false,
            fua: false,
        }
    }
}

/// Does `got` fit the block's `changes` for a crash at `crash`, when a commit that began at log
/// length `durable` completed before it? A change whose log length at return is below `durable`
/// returned before that commit began (the log only grows), so it is durable; one that returned
/// at the same length may have run after an empty commit, so it is not counted as durable. A
/// FUA change that returned before the crash is durable too. The first change (the state before
/// the storm, made durable by its final flush) always is.
fn acceptable(changes: &[Change], durable: usize, crash: usize, got: &Sectors) -> bool {
    let lo = changes
        .iter()
        .rposition(|c| c.end < durable || (c.fua && c.end <= crash))
        .unwrap_or(0);
    let hi = changes
        .iter()
        .rposition(|c| c.start < crash)
        .unwrap_or(0)
        .max(lo);
    let window = &changes[lo..=hi];
    if window.iter().any(|c| c.after == *got) {
        return true;
    }
    window[1..].iter().any(|c| c.in_place)
        && (0..SECTORS).all(|i| window.iter().any(|c| c.after[i] == got[i]))
}

struct Storm {
    dev: Arc<RecordingDevice>,
    /// Per volume ("a", "c"): per block, its changes (the first is the state before the storm).
    history: [Vec<Vec<Change>>; 2],
    /// Commits the test waited for: (log length before the call, after its return).
    commits: Vec<(usize, usize)>,
    /// Contents of snapshot "s" (all of "a" before the storm).
    snapshot: Vec<Sectors>,
    /// Log length when the delete of "s" returned.
    snapshot_deleted: usize,
    storm_start: usize,
}

fn storm_opts() -> PoolOptions {
    PoolOptions {
        commit_interval: Some(std::time::Duration::from_millis(1)),
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// Fills "a" and "c" in shuffled block order, snapshots "a" as "s", flushes.
fn storm_setup(pool: &OnePool, rng: &mut SmallRng) -> [Vec<Vec<Change>>; 2] {
    let mut history: [Vec<Vec<Change>>; 2] = [Vec::new(), Vec::new()];
    for (k, (name, blocks, lbs)) in [("a", A_BLOCKS, 4096u32), ("c", C_BLOCKS, 512)]
        .into_iter()
        .enumerate()
    {
        let o = VolumeOptions {
            logical_block_size: lbs,
            ..VolumeOptions::default()
        };
        let id = pool
            .create_volume(name, (blocks * BS) as u64, o)
            .expect("create")
            .id;
        let mut order: Vec<usize> = (0..blocks).collect();
        for i in (1..blocks).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        history[k] = vec![Vec::new(); blocks];
        for b in order {
            let s = [((k as u64 + 1) << 56) | (b as u64 + 1); SECTORS];
            pool.write(id, (b * BS) as u64, &sectors_bytes(&s))
                .expect("fill");
            history[k][b].push(Change::before(s));
        }
    }
    let a = pool.volume_by_name("a").unwrap().id;
    pool.snapshot(a, "s", VolumeOptions::default())
        .expect("snapshot");
    pool.flush().expect("flush");
    history
}

/// One thread's part of the storm: the changes it made to the blocks it owns
/// (`b % STORM_THREADS == t`), and the flushes it waited for.
struct ThreadLog {
    changes: Vec<(usize, usize, Change)>,
    commits: Vec<(usize, usize)>,
}

fn storm_thread(
    pool: &OnePool,
    dev: &RecordingDevice,
    t: usize,
    seed: u64,
    mut last: [Vec<Sectors>; 2],
    delete_started: &std::sync::atomic::AtomicUsize,
) -> ThreadLog {
    use std::sync::atomic::Ordering::SeqCst;
    let mut rng = SmallRng::seed_from_u64(seed ^ ((t as u64 + 1) * 0x9e37_79b9));
    let ids = [
        pool.volume_by_name("a").unwrap().id,
        pool.volume_by_name("c").unwrap().id,
    ];
    let mut log = ThreadLog {
        changes: Vec::new(),
        commits: Vec::new(),
    };
    // Blocks of "a" changed in the storm: no longer shared with "s".
    let mut own = std::collections::HashSet::new();
    for i in 0..STORM_OPS {
        let stamp = ((t as u64 + 1) << 40) | (i as u64 + 1);
        let roll = rng.gen_range(0..100);
        let k = usize::from(roll >= 65);
        let blocks = if k == 0 { A_BLOCKS } else { C_BLOCKS };
        let b = rng.gen_range(0..blocks / STORM_THREADS) * STORM_THREADS + t;
        let prev = last[k][b];
        let start = dev.ops_len();
        let after = match roll {
            0..=49 | 85..=99 => {
                let s = [stamp; SECTORS];
                pool.write(ids[k], (b * BS) as u64, &sectors_bytes(&s))
                    .expect("write");
                s
            }
            50..=64 => {
                pool.trim(ids[0], (b * BS) as u64, BS as u64).expect("trim");
                [0; SECTORS]
            }
            _ => {
                let sector = rng.gen_range(0..SECTORS);
                let data = vec![0u8; SECTOR_BYTES];
                let data: Vec<u8> = data.chunks(8).flat_map(|_| stamp.to_le_bytes()).collect();
                let at = (b * BS + sector * SECTOR_BYTES) as u64;
                pool.write(ids[1], at, &data).expect("sector write");
                let mut s = prev;
                s[sector] = stamp;
                s
            }
        };
        let end = dev.ops_len();
        let mapped = prev != [0; SECTORS];
        let unshared = k == 1 || own.contains(&b) || delete_started.load(SeqCst) <= start;
        let change = Change {
            after,
            start,
            end,
            in_place: mapped && unshared,
            fua: false,
        };
        if k == 0 {
            own.insert(b);
        }
        last[k][b] = after;
        log.changes.push((k, b, change));
        if i % 50 == 49 {
            let start = dev.ops_len();
            pool.flush().expect("flush");
            log.commits.push((start, dev.ops_len()));
        }
    }
    log
}

fn run_storm(seed: u64) -> Storm {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let mut rng = SmallRng::seed_from_u64(seed);
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(64 << 20)));
    let pool = support::create(dev.clone(), "storm", storm_opts()).expect("create");
    let mut history = storm_setup(&pool, &mut rng);
    let snapshot: Vec<Sectors> = history[0].iter().map(|h| h[0].after).collect();
    let storm_start = dev.ops_len();
    let delete_started = AtomicUsize::new(usize::MAX);
    let done = AtomicUsize::new(0);
    let mut commits = Vec::new();
    let mut snapshot_deleted = 0;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..STORM_THREADS)
            .map(|t| {
                let last = [0, 1].map(|k| history[k].iter().map(|h| h[0].after).collect());
                let (pool, dev, delete_started, done) = (&pool, &dev, &delete_started, &done);
                scope.spawn(move || {
                    let log = storm_thread(pool, dev, t, seed, last, delete_started);
                    done.fetch_add(1, SeqCst);
                    log
                })
            })
            .collect();
        // The snapshot goes while the threads write: its reclaim runs among their commits.
        while done.load(SeqCst) == 0 && dev.ops_len() < storm_start + 2000 {
            std::thread::yield_now();
        }
        let s = pool.volume_by_name("s").unwrap().id;
        let start = dev.ops_len();
        delete_started.store(start, SeqCst);
        pool.delete_volume(s).expect("delete snapshot");
        snapshot_deleted = dev.ops_len();
        commits.push((start, snapshot_deleted));
        for w in workers {
            let log = w.join().expect("storm thread");
            for (k, b, c) in log.changes {
                history[k][b].push(c);
            }
            commits.extend(log.commits);
        }
    });
    let start = dev.ops_len();
    pool.close().expect("close");
    commits.push((start, dev.ops_len()));
    drop(pool);
    Storm {
        dev,
        history,
        commits,
        snapshot,
        snapshot_deleted,
        storm_start,
    }
}

/// The log length at which the last commit that completed before a crash at `crash` began:
/// `commits` are the commits waited for, (log length before the call, after its return).
fn durable_at(commits: &[(usize, usize)], crash: usize) -> usize {
    commits
        .iter()
        .filter(|c| c.1 <= crash)
        .map(|c| c.0)
        .max()
        .unwrap_or(0)
}

/// Reads volume `name` of a crash image and checks every block against its `history` by
/// [`acceptable`].
fn check_blocks(
    pool: &OnePool,
    ctx: &str,
    name: &str,
    history: &[Vec<Change>],
    crash: usize,
    durable: usize,
) {
    let v = pool.volume_by_name(name).expect("volume");
    let mut buf = vec![0u8; history.len() * BS];
    pool.read(v.id, 0, &mut buf).expect("read");
    for (b, changes) in history.iter().enumerate() {
        let got = parse_block(&buf[b * BS..(b + 1) * BS])
            .unwrap_or_else(|| panic!("{ctx}: {name} block {b}: a sector holds mixed data"));
        assert!(
            acceptable(changes, durable, crash, &got),
            "{ctx}: {name} block {b} holds {got:x?}, durable before {durable}"
        );
    }
}

fn verify_storm_image(s: &Storm, point: CrashPoint) {
    let ctx = format!("{point:?}");
    let crash = point.op_index;
    let durable = durable_at(&s.commits, crash);
    let image: Arc<dyn BlockDevice> = Arc::new(s.dev.image_at(point));
    let pool = support::open(image, opts()).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
    for (k, name) in ["a", "c"].into_iter().enumerate() {
        check_blocks(&pool, &ctx, name, &s.history[k], crash, durable);
    }
    match pool.volume_by_name("s") {
        Some(v) => {
            assert!(
                crash < s.snapshot_deleted,
                "{ctx}: deleted snapshot is back"
            );
            let mut buf = vec![0u8; A_BLOCKS * BS];
            pool.read(v.id, 0, &mut buf).expect("read snapshot");
            for (b, want) in s.snapshot.iter().enumerate() {
                let got = parse_block(&buf[b * BS..(b + 1) * BS]);
                assert_eq!(got.as_ref(), Some(want), "{ctx}: snapshot block {b}");
            }
        }
        None => assert!(crash > s.storm_start, "{ctx}: snapshot lost"),
    }
    let report = pool.check().expect("check");
    assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
    pool.wait_reclaim().expect("reclaim");
    let report = pool.check().expect("check after reclaim");
    assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
}

#[test]
fn concurrent_crash_images_on_multi_level_trees() {
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("storm crash seed {seed}");
    let s = run_storm(seed);
    let end = s.dev.ops_len();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut points: Vec<CrashPoint> = (0..40)
        .map(|_| {
            let mode = CrashMode::ALL[rng.gen_range(0..4)];
            CrashPoint::new(rng.gen_range(s.storm_start..=end), rng.gen(), mode)
        })
        .collect();
    let flushes: Vec<usize> = s
        .dev
        .flush_points()
        .into_iter()
        .filter(|p| *p >= s.storm_start)
        .collect();
    for _ in 0..12 {
        let p = flushes[rng.gen_range(0..flushes.len())];
        points.push(CrashPoint::new(p, 0, CrashMode::Drop));
    }
    points.sort_by_key(|p| p.op_index);
    for point in points {
        verify_storm_image(&s, point);
    }
}

// ---- crash replay of group commits ------------------------------------------------------------
//
// Threads write whole blocks of several volumes, one write in four with FUA, and flush often
// while background commits run, so flushes keep meeting a commit in progress and joining it.
// Thread `t` owns the blocks `b % GROUP_THREADS == t` of every volume; the per-block oracle
// above judges every image, a FUA write durable from its return.

const GROUP_THREADS: usize = 8;
const GROUP_VOLUMES: usize = 4;
const GROUP_BLOCKS: usize = 128;
const GROUP_OPS: usize = 120;

/// One thread's writes (volume, block, change) and the flushes it waited for.
type GroupLog = (Vec<(usize, usize, Change)>, Vec<(usize, usize)>);

fn group_thread(pool: &OnePool, dev: &RecordingDevice, t: usize, seed: u64) -> GroupLog {
    let mut rng = SmallRng::seed_from_u64(seed ^ ((t as u64 + 1) * 0x51_7cc1_b727));
    let ids: Vec<_> = (0..GROUP_VOLUMES)
        .map(|k| pool.volume_by_name(&format!("g{k}")).unwrap().id)
        .collect();
    let mut mapped = std::collections::HashSet::new();
    let (mut changes, mut commits) = (Vec::new(), Vec::new());
    for i in 0..GROUP_OPS {
        let k = rng.gen_range(0..GROUP_VOLUMES);
        let b = rng.gen_range(0..GROUP_BLOCKS / GROUP_THREADS) * GROUP_THREADS + t;
        let s = [((t as u64 + 1) << 40) | (i as u64 + 1); SECTORS];
        let (at, fua) = ((b * BS) as u64, rng.gen_range(0..4) == 0);
        let start = dev.ops_len();
        if fua {
            pool.write_fua(ids[k], at, &sectors_bytes(&s))
                .expect("fua write");
        } else {
            pool.write(ids[k], at, &sectors_bytes(&s)).expect("write");
        }
        let change = Change {
            after: s,
            start,
            end: dev.ops_len(),
            in_place: !mapped.insert((k, b)),
            fua,
        };
        changes.push((k, b, change));
        if rng.gen_range(0..3) == 0 {
            let start = dev.ops_len();
            pool.flush().expect("flush");
            commits.push((start, dev.ops_len()));
        }
    }
    (changes, commits)
}

#[test]
fn crash_images_of_concurrent_flushers_keep_every_flushed_write() {
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("group commit crash seed {seed}");
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(32 << 20)));
    let pool = support::create(dev.clone(), "group", storm_opts()).expect("create");
    let mut history = vec![vec![vec![Change::before([0; SECTORS])]; GROUP_BLOCKS]; GROUP_VOLUMES];
    for k in 0..GROUP_VOLUMES {
        pool.create_volume(
            &format!("g{k}"),
            (GROUP_BLOCKS * BS) as u64,
            VolumeOptions::default(),
        )
        .expect("create volume");
    }
    let start = dev.ops_len();
    let mut commits = Vec::new();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..GROUP_THREADS)
            .map(|t| {
                let (pool, dev) = (&pool, &dev);
                scope.spawn(move || group_thread(pool, dev, t, seed))
            })
            .collect();
        for t in threads {
            let (changes, flushes) = t.join().expect("writer thread");
            for (k, b, c) in changes {
                history[k][b].push(c);
            }
            commits.extend(flushes);
        }
    });
    let at = dev.ops_len();
    pool.close().expect("close");
    commits.push((at, dev.ops_len()));
    drop(pool);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let flushes: Vec<usize> = dev
        .flush_points()
        .into_iter()
        .filter(|p| *p >= start)
        .collect();
    let mut points: Vec<CrashPoint> = (0..12)
        .map(|_| CrashPoint::new(flushes[rng.gen_range(0..flushes.len())], 0, CrashMode::Drop))
        .collect();
    for _ in 0..36 {
        let mode = CrashMode::ALL[rng.gen_range(0..4)];
        points.push(CrashPoint::new(
            rng.gen_range(start..=dev.ops_len()),
            rng.gen(),
            mode,
        ));
    }
    for point in points {
        let ctx = format!("{point:?}");
        let crash = point.op_index;
        let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
        let p = support::open(image, opts()).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
        let durable = durable_at(&commits, crash);
        for (k, h) in history.iter().enumerate() {
            check_blocks(&p, &ctx, &format!("g{k}"), h, crash, durable);
        }
        let report = p.check().expect("check");
        assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
    }
}

// ---- crash replay at metadata exhaustion -----------------------------------------------------

/// A full pool whose metadata runs out: a volume of one-block extents over the free space,
/// snapshot-then-trim rounds (each trim shadows a shared leaf and frees nothing) until snapshots
/// answer `NoSpace` and trims leave blocks mapped, writes that may find no space, and deletes
/// of the oldest snapshots to get out. Every crash image opens, reads by the per-block oracle,
/// passes `check` and finishes its reclaim.
#[test]
fn crash_images_at_metadata_exhaustion() {
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(12 << 20)));
    let pool = support::create(dev.clone(), "full", opts()).expect("create");
    let blocks = (pool.info().data_bytes_free / BS as u64 - 32) as usize;
    let v = pool
        .create_volume("v", (blocks * BS) as u64, VolumeOptions::default())
        .expect("create volume")
        .id;
    let mut history: Vec<Vec<Change>> = vec![Vec::new(); blocks];
    for b in (1..blocks).step_by(2).chain((0..blocks).step_by(2)) {
        let s = [b as u64 + 1; SECTORS];
        pool.write(v, (b * BS) as u64, &sectors_bytes(&s))
            .expect("fill");
        history[b].push(Change::before(s));
    }
    pool.flush().expect("flush");
    let start = dev.ops_len();
    let mut rng = SmallRng::seed_from_u64(99);
    let mut commits = Vec::new();
    let mut snaps = Vec::new();
    let (mut refused, mut kept) = (0, 0);
    for round in 0..48usize {
        let at = dev.ops_len();
        match pool.snapshot(v, &format!("s{round}"), VolumeOptions::default()) {
            Ok(s) => {
                snaps.push(s.id);
                commits.push((at, dev.ops_len()));
            }
            Err(e) if e.kind() == ErrorKind::NoSpace => refused += 1,
            Err(e) => panic!("round {round}: snapshot: {e:?}"),
        }
        for b in (round % 32..blocks).step_by(32) {
            let at = dev.ops_len();
            pool.trim(v, (b * BS) as u64, BS as u64).expect("trim");
            let end = dev.ops_len();
            if pool.block_status(v, (b * BS) as u64, BS as u64).unwrap()[0].mapped {
                // Below the floor a trim is advisory: it changed nothing.
                kept += 1;
                continue;
            }
            history[b].push(Change {
                after: [0; SECTORS],
                start: at,
                end,
                in_place: false,
                fua: false,
            });
        }
        for _ in 0..4 {
            let b = rng.gen_range(0..blocks);
            let s = [((round as u64 + 1) << 32) | b as u64; SECTORS];
            let at = dev.ops_len();
            match pool.write(v, (b * BS) as u64, &sectors_bytes(&s)) {
                Ok(()) => history[b].push(Change {
                    after: s,
                    start: at,
                    end: dev.ops_len(),
                    in_place: true,
                    fua: false,
                }),
                Err(e) if e.kind() == ErrorKind::NoSpace => {}
                Err(e) => panic!("round {round}: write: {e:?}"),
            }
        }
        if (refused > 0 || kept > 0) && round % 3 == 0 && snaps.len() > 1 {
            let at = dev.ops_len();
            pool.delete_volume(snaps.remove(0))
                .expect("delete snapshot");
            commits.push((at, dev.ops_len()));
        }
    }
    assert!(refused + kept > 0, "metadata never ran out");
    let at = dev.ops_len();
    pool.close().expect("close");
    commits.push((at, dev.ops_len()));
    drop(pool);
    let end = dev.ops_len();
    let mut points: Vec<CrashPoint> = (0..36)
        .map(|_| {
            let mode = CrashMode::ALL[rng.gen_range(0..4)];
            CrashPoint::new(rng.gen_range(start..=end), rng.gen(), mode)
        })
        .collect();
    points.sort_by_key(|p| p.op_index);
    for point in points {
        let ctx = format!("{point:?}");
        let crash = point.op_index;
        let durable = durable_at(&commits, crash);
        let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
        let p = support::open(image, opts()).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
        check_blocks(&p, &ctx, "v", &history, crash, durable);
        let report = p.check().expect("check");
        assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
        p.wait_reclaim().expect("reclaim");
        let report = p.check().expect("check after reclaim");
        assert!(report.is_clean(), "{ctx}: {:?}", report.findings.first());
    }
}
