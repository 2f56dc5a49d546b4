//! Crash replay on the recording device: workloads mixing writes, trims, flushes, snapshots,
//! deletes and restores are recorded; the image is rebuilt at every flush boundary and at random
//! points with the unflushed writes dropped, kept, torn or reordered. Every image must open, read
//! exactly as the state of some commit not older than the last completed flush or volume
//! operation (so every flushed write and every snapshot is there as taken), pass `check`, and
//! finish any interrupted reclaim with `check` still clean.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_engine::{BlockDevice, ErrorKind, Pool, PoolOptions, VolumeOptions};
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
    }
}

struct Workload {
    dev: Arc<RecordingDevice>,
    /// (log length when the operation returned, generation after it, state after it).
    marks: Vec<(usize, u64, State)>,
}

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
    let pool = Pool::create(dev.clone(), "crash", opts()).expect("create");
    let mut live: State = BTreeMap::new();
    let mut ids = BTreeMap::new();
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
                // Whole blocks, or 512-byte sectors on the 512-byte volume (read-modify-write).
                let unit = if name == "c" { 512 } else { BS };
                let units = VOL_BLOCKS * BS / unit;
                let start = rng.gen_range(0..units);
                let n = rng.gen_range(1..=(8 * BS / unit).min(units - start));
                let data: Vec<u8> = (0..n)
                    .flat_map(|_| block_of(&mut rng)[..unit].to_vec())
                    .collect();
                pool.write(id, (start * unit) as u64, &data).expect("write");
                live.get_mut(&name).unwrap()[start * unit..(start + n) * unit]
                    .copy_from_slice(&data);
                false
            }
            55..=62 => {
                let start = rng.gen_range(0..VOL_BLOCKS);
                let n = rng.gen_range(1..=16.min(VOL_BLOCKS - start));
                pool.trim(id, (start * BS) as u64, (n * BS) as u64)
                    .expect("trim");
                live.get_mut(&name).unwrap()[start * BS..(start + n) * BS].fill(0);
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
                live.insert(sname, contents);
                true
            }
            90..=94 if name.starts_with("snap") => {
                pool.delete_volume(id).expect("delete");
                pool.wait_reclaim().expect("reclaim");
                live.remove(&name);
                ids.remove(&name);
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
    Workload { dev, marks }
}

/// Opens one crash image and checks it against the commits recorded.
fn verify_image(w: &Workload, point: CrashPoint) {
    let ctx = format!("{point:?}");
    let image: Arc<dyn BlockDevice> = Arc::new(w.dev.image_at(point));
    let pool = match Pool::open(image, opts()) {
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
    let Some((_, _, want)) = w.marks.iter().find(|m| m.1 >= gen) else {
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
        assert!(
            buf == want[&v.name],
            "{ctx}: volume {} differs at generation {gen}",
            v.name
        );
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
    let pool = Pool::create(dev.clone(), "reclaim", opts()).expect("create");
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
        let p = Pool::open(image, opts()).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
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
