//! Format upgrade: a version-1 pool written by the version-1 engine (`data/pool-v1.rle`) is
//! checked as version 1, opened (which upgrades it to the current version in one commit), and reads back
//! exactly what was written; a crash at any point of the upgrade leaves a pool that opens with the
//! same contents; too little free space refuses the open with `NoSpace` and changes nothing.
//!
//! The fixture was made by the version-1 engine with this workload on a 64 MiB in-memory device
//! (reclaim paused): volume "base" (4 MiB) with `block(1, b)` written at every even block `b` below
//! 800 (a two-level mapping tree); a read-only snapshot "base-snap"; `block(2, b)` written again
//! at the even blocks below 20 of "base" (shadowing shared nodes: node reference counts); volume
//! "gone" (1 MiB, blocks 0..8 of `block(4, b)`), deleted at the end (a tombstone); volume "small"
//! (1 MiB, 512-byte logical blocks, `block(3, 0)` at block 0) and 520 snapshots of it "s0".."s519"
//! (a directory whose root holds about 175 children: more than a version-2 internal node holds,
//! so the upgrade splits it). Only allocated blocks are kept (free blocks may read as anything), in
//! a zero-run-length encoding: `CRNFIX1\0`, device size (u64), then per block its number (u64) and
//! pairs (zero run u16, literal length u16, literal bytes) covering 4096 bytes, ended by u64::MAX.
//!
//! A version-2 pool written by the version-2 engine (`data/pool-v2.rle`, the same encoding; every
//! non-zero block kept) upgrades to version 3 (share epochs) the same way. Its workload, on a
//! 64 MiB in-memory device (reclaim paused): volume "base" (4 MiB) with `block_v2(1, b)` at every
//! even block below 800; a read-only snapshot "base-snap"; `block_v2(2, b)` again at the even
//! blocks below 20 of "base"; volume "gone" (1 MiB, blocks 0..8 of `block_v2(4, b)`), deleted at
//! the end; volume "small" (1 MiB, 512-byte logical blocks, `block_v2(3, 0)` at block 0) and its
//! writable snapshot "small-snap". After the upgrade no block written before it is overwritten in
//! place (version 2 does not say which were shared), so every snapshot keeps its contents.

mod support;

use std::sync::Arc;

use cairn_engine::{check_device, BlockDevice, ErrorKind, Pool, PoolOptions, VolumeOptions};
use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordingDevice};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BS: usize = 4096;
const FIXTURE: &[u8] = include_bytes!("data/pool-v1.rle");
const FIXTURE_V2: &[u8] = include_bytes!("data/pool-v2.rle");
const SNAPSHOTS: usize = 520;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// The contents the fixture's workload wrote: a tag and the block number, zeros after.
fn block(tag: u64, vb: u64) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    b[..8].copy_from_slice(b"cairn-v1");
    b[8..16].copy_from_slice(&(tag << 32 | vb).to_le_bytes());
    b
}

fn u16_at(b: &[u8], at: &mut usize) -> usize {
    let v = u16::from_le_bytes([b[*at], b[*at + 1]]);
    *at += 2;
    usize::from(v)
}

fn u64_at(b: &[u8], at: &mut usize) -> u64 {
    let v = u64::from_le_bytes(b[*at..*at + 8].try_into().expect("8 bytes"));
    *at += 8;
    v
}

/// The contents the version-2 fixture's workload wrote.
fn block_v2(tag: u64, vb: u64) -> Vec<u8> {
    let mut b = block(tag, vb);
    b[..8].copy_from_slice(b"cairn-v2");
    b
}

/// The version-1 image, decoded.
fn v1_image() -> MemDevice {
    decode(FIXTURE)
}

/// An image in the fixtures' encoding, decoded.
fn decode(fixture: &[u8]) -> MemDevice {
    assert_eq!(&fixture[..8], b"CRNFIX1\0");
    let mut at = 8;
    let dev = MemDevice::new(u64_at(fixture, &mut at));
    loop {
        let addr = u64_at(fixture, &mut at);
        if addr == u64::MAX {
            break;
        }
        let mut b = vec![0u8; BS];
        let mut i = 0;
        while i < BS {
            i += u16_at(fixture, &mut at);
            let n = u16_at(fixture, &mut at);
            b[i..i + n].copy_from_slice(&fixture[at..at + n]);
            (i, at) = (i + n, at + n);
        }
        dev.write_at(addr * BS as u64, &b)
            .expect("write fixture block");
    }
    assert_eq!(at, fixture.len());
    dev
}

/// Format version of the newest superblock (its generation at byte 24, version at byte 64).
fn version_of(dev: &dyn BlockDevice) -> u32 {
    let mut best = (0u64, 0u32);
    for a in [0u64, 1] {
        let mut b = vec![0u8; BS];
        dev.read_at(a * BS as u64, &mut b).expect("read superblock");
        let gen = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        if gen >= best.0 {
            best = (
                gen,
                u32::from_le_bytes(b[64..68].try_into().expect("4 bytes")),
            );
        }
    }
    best.1
}

fn read_block(p: &Pool, name: &str, b: u64) -> Vec<u8> {
    let v = p
        .volume_by_name(name)
        .unwrap_or_else(|| panic!("{name} lost"));
    let mut buf = vec![0u8; BS];
    p.read(v.id, b * BS as u64, &mut buf).expect("read");
    buf
}

/// Every volume holds what the fixture's workload wrote (snapshots sampled past the first few).
fn assert_fixture_contents(p: &Pool) {
    let zero = vec![0u8; BS];
    for b in 0..1024u64 {
        let base = read_block(p, "base", b);
        let snap = read_block(p, "base-snap", b);
        let (want_base, want_snap) = match b {
            b if b % 2 == 1 || b >= 800 => (zero.clone(), zero.clone()),
            b if b < 20 => (block(2, b), block(1, b)),
            b => (block(1, b), block(1, b)),
        };
        assert!(base == want_base, "base block {b}");
        assert!(snap == want_snap, "base-snap block {b}");
    }
    let names = ["small".to_string()].into_iter().chain(
        (0..SNAPSHOTS)
            .filter(|i| i % 37 == 0 || *i < 3)
            .map(|i| format!("s{i}")),
    );
    for name in names {
        assert_eq!(read_block(p, &name, 0), block(3, 0), "{name}");
        assert_eq!(read_block(p, &name, 1), zero, "{name}");
        assert_eq!(p.volume_by_name(&name).unwrap().logical_block_size, 512);
    }
    assert!(p.volume_by_name("gone").is_none());
    assert_eq!(p.volumes().len(), 3 + SNAPSHOTS);
}

#[test]
fn a_version_1_pool_is_checked_as_version_1() {
    let dev: Arc<dyn BlockDevice> = Arc::new(v1_image());
    let report = check_device(dev.clone()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(
        report.volumes,
        4 + SNAPSHOTS,
        "volumes, snapshots and the tombstone"
    );
    assert_eq!(version_of(dev.as_ref()), 1, "check writes nothing");
}

#[test]
fn a_version_1_pool_upgrades_at_open_and_reads_back_identical() {
    let dev: Arc<dyn BlockDevice> = Arc::new(v1_image());
    let gen_before = check_device(dev.clone()).expect("check").generation;
    let p = support::open(dev.clone(), opts()).expect("open upgrades");
    assert_eq!(version_of(dev.as_ref()), 3);
    // One commit upgrades; the tombstone's reclaim may already have committed after it.
    assert!(p.info().generation > gen_before);
    assert_fixture_contents(&p);
    let report = p.check().expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    // The upgraded pool works: writes into shared trees, snapshots, the tombstone's reclaim.
    let base = p.volume_by_name("base").expect("base").id;
    p.write(base, 4 * BS as u64, &[7u8; BS]).expect("write");
    p.snapshot(base, "after", VolumeOptions::default())
        .expect("snapshot");
    p.wait_reclaim()
        .expect("reclaim of the version-1 tombstone");
    p.close().expect("close");
    let report = check_device(dev.clone()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    let p = support::open(dev.clone(), opts()).expect("reopen");
    assert_eq!(read_block(&p, "after", 4), vec![7u8; BS]);
    assert_eq!(read_block(&p, "base-snap", 4), block(1, 4));
    assert_eq!(read_block(&p, "base", 6), block(2, 6));
    p.close().expect("close");
}

/// A crash anywhere in the upgrade: every image opens (upgrading again if the switch did not
/// make it) with the fixture's contents and a clean check.
#[test]
fn a_crash_during_the_upgrade_leaves_a_pool_that_opens() {
    let dev = Arc::new(RecordingDevice::new(v1_image()));
    let p = support::open(dev.clone(), opts()).expect("open upgrades");
    p.close().expect("close");
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("upgrade crash seed {seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let len = dev.ops_len();
    let mut points: Vec<CrashPoint> = dev
        .flush_points()
        .into_iter()
        .map(|p| CrashPoint::new(p, 0, CrashMode::Drop))
        .collect();
    points.push(CrashPoint::new(0, 0, CrashMode::Drop));
    for i in 0..12 {
        let mode = CrashMode::ALL[i % CrashMode::ALL.len()];
        points.push(CrashPoint::new(rng.gen_range(0..=len), rng.gen(), mode));
    }
    let mut versions = Vec::new();
    for point in points {
        let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
        let before = version_of(image.as_ref());
        versions.push(before);
        let p = support::open(image.clone(), opts()).unwrap_or_else(|e| panic!("{point:?}: {e}"));
        assert_eq!(version_of(image.as_ref()), 3, "{point:?}");
        assert_fixture_contents(&p);
        let report = p.check().expect("check");
        assert!(
            report.is_clean(),
            "{point:?} (was v{before}): {:?}",
            report.findings
        );
        p.close().expect("close");
    }
    assert!(
        versions.contains(&1) && versions.contains(&3),
        "{versions:?}"
    );
}

/// Every volume holds what the version-2 fixture's workload wrote.
fn assert_v2_contents(p: &Pool) {
    let zero = vec![0u8; BS];
    for b in 0..1024u64 {
        let (want_base, want_snap) = match b {
            b if b % 2 == 1 || b >= 800 => (zero.clone(), zero.clone()),
            b if b < 20 => (block_v2(2, b), block_v2(1, b)),
            b => (block_v2(1, b), block_v2(1, b)),
        };
        assert!(read_block(p, "base", b) == want_base, "base block {b}");
        assert!(
            read_block(p, "base-snap", b) == want_snap,
            "base-snap block {b}"
        );
    }
    for name in ["small", "small-snap"] {
        assert_eq!(read_block(p, name, 0), block_v2(3, 0), "{name}");
        assert_eq!(read_block(p, name, 1), zero, "{name}");
    }
    assert!(p.volume_by_name("gone").is_none());
    assert_eq!(p.volumes().len(), 4);
}

#[test]
fn a_version_2_pool_upgrades_at_open_and_keeps_its_snapshots() {
    let dev: Arc<dyn BlockDevice> = Arc::new(decode(FIXTURE_V2));
    assert_eq!(version_of(dev.as_ref()), 2);
    let report = check_device(dev.clone()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(version_of(dev.as_ref()), 2, "check writes nothing");
    let p = support::open(dev.clone(), opts()).expect("open upgrades");
    assert_eq!(version_of(dev.as_ref()), 3);
    assert_v2_contents(&p);
    assert!(p.check().expect("check").is_clean());
    // Blocks written before the upgrade are redirected, shared or not: the snapshots keep them.
    let base = p.volume_by_name("base").expect("base").id;
    let small = p.volume_by_name("small").expect("small").id;
    let allocated = p.allocated_blocks();
    for b in [4u64, 6, 40] {
        p.write(base, b * BS as u64, &[b as u8; BS]).expect("write");
    }
    p.write(small, 512, &[9u8; 512]).expect("sector write");
    assert!(p.allocated_blocks() > allocated, "redirected");
    p.flush().expect("flush");
    // Written after the upgrade: overwritten in place.
    let allocated = p.allocated_blocks();
    for b in [4u64, 6, 40] {
        p.write(base, b * BS as u64, &[b as u8 + 1; BS])
            .expect("overwrite");
    }
    assert_eq!(p.allocated_blocks(), allocated, "in place");
    p.wait_reclaim()
        .expect("reclaim of the version-2 tombstone");
    p.close().expect("close");
    let report = check_device(dev.clone()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    let p = support::open(dev.clone(), opts()).expect("reopen");
    for b in [4u64, 6, 40] {
        assert_eq!(read_block(&p, "base", b), vec![b as u8 + 1; BS]);
        assert_eq!(read_block(&p, "base-snap", b), block_v2(1, b));
    }
    let mut want = block_v2(3, 0);
    want[512..1024].fill(9);
    assert_eq!(read_block(&p, "small", 0), want);
    assert_eq!(read_block(&p, "small-snap", 0), block_v2(3, 0));
    p.close().expect("close");
}

/// A crash anywhere in the version-2 upgrade leaves the version-2 pool or the version-3 one,
/// each with the fixture's contents.
#[test]
fn a_crash_during_the_version_2_upgrade_leaves_a_pool_that_opens() {
    let dev = Arc::new(RecordingDevice::new(decode(FIXTURE_V2)));
    let p = support::open(dev.clone(), opts()).expect("open upgrades");
    p.close().expect("close");
    let mut points: Vec<CrashPoint> = (0..=dev.ops_len())
        .flat_map(|i| CrashMode::ALL.map(|mode| CrashPoint::new(i, i as u64, mode)))
        .collect();
    points.push(CrashPoint::new(0, 0, CrashMode::Drop));
    let mut versions = Vec::new();
    for point in points {
        let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
        versions.push(version_of(image.as_ref()));
        let p = support::open(image.clone(), opts()).unwrap_or_else(|e| panic!("{point:?}: {e}"));
        assert_eq!(version_of(image.as_ref()), 3, "{point:?}");
        assert_v2_contents(&p);
        let report = p.check().expect("check");
        assert!(report.is_clean(), "{point:?}: {:?}", report.findings);
        p.close().expect("close");
    }
    assert!(
        versions.contains(&2) && versions.contains(&3),
        "{versions:?}"
    );
}

#[test]
fn too_little_free_space_to_upgrade_refuses_the_open_and_changes_nothing() {
    let image = v1_image();
    // Claim (in both superblocks' counters, re-sealed) that all but a few blocks are in use.
    for a in [0u64, 1] {
        let mut b = vec![0u8; BS];
        image.read_at(a * BS as u64, &mut b).expect("read");
        let device_blocks = u64::from_le_bytes(b[160..168].try_into().expect("8 bytes"));
        b[224..232].copy_from_slice(&(device_blocks - 8).to_le_bytes());
        cairn_engine::test_support::reseal(&mut b);
        image.write_at(a * BS as u64, &b).expect("write");
    }
    let dev: Arc<dyn BlockDevice> = Arc::new(image);
    let e = support::open(dev.clone(), opts()).map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    assert!(e.to_string().contains("upgrade"), "{e}");
    assert_eq!(version_of(dev.as_ref()), 1);
}
