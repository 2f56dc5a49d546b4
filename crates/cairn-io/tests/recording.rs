//! Crash images of the recording device honour the crash model: flushed operations are all there,
//! pending ones appear as the mode says (dropped, kept, torn to a prefix of 4 KiB sectors, or any
//! subset of sectors in any order), and nothing else ever appears.

use std::collections::HashSet;

use cairn_io::{
    BlockDevice, CrashMode, CrashPoint, IoErrorKind, MemDevice, RecordedOp, RecordingDevice,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEVICE_BYTES: u64 = 128 << 10;
const BLOCK: u64 = 512;
const SECTOR: u64 = 4096;

/// Data for write number `tag` at `offset`: every 512-byte block names its write and address, so a
/// block of an image tells which write put it there.
fn tagged(tag: u32, offset: u64, len: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(len as usize);
    for block in 0..len / BLOCK {
        let mut b = [0u8; BLOCK as usize];
        b[..4].copy_from_slice(&tag.to_le_bytes());
        b[4..12].copy_from_slice(&(offset + block * BLOCK).to_le_bytes());
        b[12..].fill(tag as u8 | 1);
        data.extend_from_slice(&b);
    }
    data
}

fn whole(dev: &MemDevice) -> Vec<u8> {
    let mut buf = vec![0u8; dev.size_bytes() as usize];
    dev.read_at(0, &mut buf).unwrap();
    buf
}

/// Replays operations on a plain byte vector: the reference model.
fn replay(size: u64, ops: &[RecordedOp]) -> Vec<u8> {
    let mut image = vec![0u8; size as usize];
    for op in ops {
        match op {
            RecordedOp::Write { offset, data } | RecordedOp::WriteFua { offset, data } => {
                image[*offset as usize..*offset as usize + data.len()].copy_from_slice(data)
            }
            RecordedOp::Discard { offset, len } => {
                image[*offset as usize..(*offset + *len) as usize].fill(0)
            }
            RecordedOp::Flush => {}
            RecordedOp::Resize { size_bytes } => image.resize(*size_bytes as usize, 0),
        }
    }
    image
}

/// A random workload of writes (512-byte aligned, often crossing 4 KiB), discards and flushes.
fn workload(seed: u64, ops: usize) -> RecordingDevice {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    let mut rng = StdRng::seed_from_u64(seed);
    for tag in 1..=ops as u32 {
        let roll = rng.gen_range(0..10);
        let len = BLOCK * rng.gen_range(1..=20u64);
        let offset = BLOCK * rng.gen_range(0..=(DEVICE_BYTES - len) / BLOCK);
        match roll {
            0..=5 => dev.write_at(offset, &tagged(tag, offset, len)).unwrap(),
            6 => dev.discard(offset, len).unwrap(),
            _ => dev.flush().unwrap(),
        }
    }
    dev
}

fn block(image: &[u8], b: u64) -> &[u8] {
    &image[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize]
}

/// What pending operation `op` holds at block `b`, if it covers it.
fn op_block(op: &RecordedOp, b: u64) -> Option<Vec<u8>> {
    let at = b * BLOCK;
    match op {
        RecordedOp::Write { offset, data }
            if (*offset..*offset + data.len() as u64).contains(&at) =>
        {
            let from = (at - offset) as usize;
            Some(data[from..from + BLOCK as usize].to_vec())
        }
        RecordedOp::Discard { offset, len } if (*offset..*offset + *len).contains(&at) => {
            Some(vec![0u8; BLOCK as usize])
        }
        _ => None,
    }
}

/// The 4 KiB-sector pieces of a write, as block ranges.
fn pieces(offset: u64, len: u64) -> Vec<std::ops::Range<u64>> {
    let mut out = Vec::new();
    let mut at = offset;
    while at < offset + len {
        let end = ((at / SECTOR + 1) * SECTOR).min(offset + len);
        out.push(at / BLOCK..end / BLOCK);
        at = end;
    }
    out
}

/// Checks one crash image against the model.
fn check_image(dev: &RecordingDevice, point: CrashPoint) {
    let log = dev.log();
    let ops = &log[..point.op_index];
    let durable_len = ops
        .iter()
        .rposition(|op| *op == RecordedOp::Flush)
        .map_or(0, |i| i + 1);
    let pending = &ops[durable_len..];
    let durable = replay(DEVICE_BYTES, &ops[..durable_len]);
    let image = whole(&dev.image_at(point));
    let ctx = format!("{point:?}");
    match point.mode {
        CrashMode::Drop => assert!(image == durable, "{ctx}: not the durable image"),
        CrashMode::Keep => assert!(image == replay(DEVICE_BYTES, ops), "{ctx}: not everything"),
        CrashMode::Torn | CrashMode::Reorder => {}
    }
    // Nothing is invented: each block is durable or from a pending operation covering it.
    for b in 0..DEVICE_BYTES / BLOCK {
        let got = block(&image, b);
        let ok = got == block(&durable, b)
            || pending
                .iter()
                .any(|op| op_block(op, b).is_some_and(|d| d == got));
        assert!(ok, "{ctx}: block {b} holds data no operation put there");
    }
    check_sectors(&image, pending, point);
}

/// Each 4 KiB piece of a pending write lands whole or not at all, and in Torn mode the landed
/// pieces of a write form a prefix. A piece another pending operation may have landed over (a
/// later one; in Reorder mode any other) proves nothing and is skipped.
fn check_sectors(image: &[u8], pending: &[RecordedOp], point: CrashPoint) {
    for (j, op) in pending.iter().enumerate() {
        let RecordedOp::Write { offset, data } = op else {
            continue;
        };
        let hiders: Vec<&RecordedOp> = match point.mode {
            CrashMode::Reorder => pending[..j].iter().chain(&pending[j + 1..]).collect(),
            _ => pending[j + 1..].iter().collect(),
        };
        let hidden = |r: &std::ops::Range<u64>| {
            r.clone()
                .any(|b| hiders.iter().any(|h| op_block(h, b).is_some()))
        };
        let mut seen_gap = false;
        for r in pieces(*offset, data.len() as u64) {
            if hidden(&r) {
                continue;
            }
            let landed: Vec<bool> = r
                .clone()
                .map(|b| op_block(op, b).unwrap() == block(image, b))
                .collect();
            let all = landed.iter().all(|&l| l);
            assert!(
                all || !landed.iter().any(|&l| l),
                "{point:?}: piece {r:?} of op {j} torn"
            );
            if point.mode == CrashMode::Torn && all {
                assert!(!seen_gap, "{point:?}: op {j} landed past a gap");
            }
            seen_gap |= !all;
        }
    }
}

#[test]
fn every_crash_point_honours_the_model() {
    for seed in 0..6 {
        let dev = workload(seed, 120);
        for op_index in 0..=dev.ops_len() {
            for mode in CrashMode::ALL {
                for crash_seed in 0..3 {
                    check_image(
                        &dev,
                        CrashPoint::new(op_index, seed * 100 + crash_seed, mode),
                    );
                }
            }
        }
    }
}

#[test]
fn flush_points_have_nothing_pending() {
    let dev = workload(42, 200);
    let points = dev.flush_points();
    assert!(!points.is_empty());
    let log = dev.log();
    for &p in &points {
        assert_eq!(log[p - 1], RecordedOp::Flush);
        let want = replay(DEVICE_BYTES, &log[..p]);
        for mode in CrashMode::ALL {
            assert!(
                whole(&dev.image_at(CrashPoint::new(p, 9, mode))) == want,
                "{p} {mode:?}"
            );
        }
    }
}

#[test]
fn images_do_not_depend_on_the_order_they_are_asked_for() {
    let dev = workload(7, 150);
    let points: Vec<CrashPoint> = (0..=dev.ops_len())
        .flat_map(|i| CrashMode::ALL.map(|m| CrashPoint::new(i, i as u64, m)))
        .collect();
    let forward: Vec<Vec<u8>> = points.iter().map(|p| whole(&dev.image_at(*p))).collect();
    for (p, want) in points.iter().zip(&forward).rev() {
        assert!(
            whole(&dev.image_at(*p)) == *want,
            "{p:?} differs when asked again"
        );
    }
}

#[test]
fn the_live_image_is_the_keep_image_at_the_end() {
    let dev = workload(3, 100);
    let end = dev.image_at(CrashPoint::new(dev.ops_len(), 0, CrashMode::Keep));
    assert!(whole(&end) == whole(dev.live()));
}

#[test]
fn torn_writes_keep_every_prefix_and_only_prefixes() {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    dev.flush().unwrap();
    dev.write_at(0, &[0xAA; 4 * SECTOR as usize]).unwrap();
    let mut seen = HashSet::new();
    for seed in 0..200 {
        let image = whole(&dev.image_at(CrashPoint::new(2, seed, CrashMode::Torn)));
        let landed: Vec<bool> = (0..4).map(|s| image[s * 4096] == 0xAA).collect();
        let k = landed.iter().take_while(|&&l| l).count();
        assert!(
            landed[k..].iter().all(|&l| !l),
            "seed {seed}: not a prefix: {landed:?}"
        );
        seen.insert(k);
    }
    assert_eq!(
        seen.len(),
        5,
        "every prefix length 0..=4 should occur: {seen:?}"
    );
}

#[test]
fn reorder_lets_an_earlier_write_win() {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    dev.write_at(0, &[1u8; 4096]).unwrap();
    dev.flush().unwrap();
    dev.write_at(0, &[2u8; 4096]).unwrap();
    dev.write_at(0, &[3u8; 4096]).unwrap();
    dev.write_at(8192, &[4u8; 4096]).unwrap();
    let mut outcomes = HashSet::new();
    for seed in 0..200 {
        let image = whole(&dev.image_at(CrashPoint::new(5, seed, CrashMode::Reorder)));
        outcomes.insert((image[0], image[8192]));
    }
    // Sector 0 may hold the flushed 1, either pending write (2 after 3 included), and sector 2
    // may or may not have its write, independently.
    let want: HashSet<(u8, u8)> = [1, 2, 3].iter().flat_map(|&a| [(a, 0), (a, 4)]).collect();
    assert_eq!(outcomes, want);
}

#[test]
fn growth_is_kept_in_every_mode_and_data_past_it_is_pending() {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    dev.flush().unwrap();
    dev.set_size(2 * DEVICE_BYTES);
    dev.refresh_size().unwrap();
    dev.write_at(DEVICE_BYTES, &[5u8; 4096]).unwrap();
    for mode in CrashMode::ALL {
        let image = dev.image_at(CrashPoint::new(dev.ops_len(), 1, mode));
        assert_eq!(image.size_bytes(), 2 * DEVICE_BYTES, "{mode:?}");
    }
    let dropped = dev.image_at(CrashPoint::new(dev.ops_len(), 1, CrashMode::Drop));
    let mut buf = [9u8; 4096];
    dropped.read_at(DEVICE_BYTES, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 4096]);
    let before = dev.image_at(CrashPoint::new(1, 1, CrashMode::Keep));
    assert_eq!(before.size_bytes(), DEVICE_BYTES);
}

#[test]
fn failed_operations_are_not_recorded() {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    dev.write_at(0, &[1u8; 512]).unwrap();
    dev.live().fail_writes_after(0);
    assert_eq!(
        dev.write_at(512, &[1u8; 512]).unwrap_err().kind,
        IoErrorKind::Media
    );
    dev.live().fail_flushes(true);
    assert_eq!(dev.flush().unwrap_err().kind, IoErrorKind::Media);
    let err = dev.write_at(1, &[1u8; 512]).unwrap_err();
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
    assert_eq!(dev.ops_len(), 1);
    assert!(dev.flush_points().is_empty());
}

#[test]
fn the_initial_image_is_the_starting_point() {
    let initial = MemDevice::new(DEVICE_BYTES);
    initial.write_at(4096, &[8u8; 4096]).unwrap();
    let dev = RecordingDevice::new(initial);
    dev.write_at(4096, &[9u8; 4096]).unwrap();
    let image = dev.image_at(CrashPoint::new(dev.ops_len(), 0, CrashMode::Drop));
    let mut buf = [0u8; 4096];
    image.read_at(4096, &mut buf).unwrap();
    assert_eq!(buf, [8u8; 4096]);
}

#[test]
fn a_fua_write_lands_in_every_mode_and_nothing_earlier_lands_over_it() {
    let dev = RecordingDevice::new(MemDevice::new(DEVICE_BYTES));
    dev.flush().unwrap();
    // Pending before the FUA write, at the same place: it must never win.
    dev.write_at(0, &[1u8; 8192]).unwrap();
    dev.write_batch_fua(&[(0, &[2u8; 4096])]).unwrap();
    // Pending after it: it may or may not land.
    dev.write_at(8192, &[3u8; 4096]).unwrap();
    for mode in CrashMode::ALL {
        for seed in 0..32 {
            let image = dev.image_at(CrashPoint::new(dev.ops_len(), seed, mode));
            let mut buf = vec![0u8; 4096];
            image.read_at(0, &mut buf).unwrap();
            assert!(buf == [2u8; 4096], "{mode:?} seed {seed}: FUA write lost");
            image.read_at(4096, &mut buf).unwrap();
            assert!(
                buf == [1u8; 4096] || buf == [0u8; 4096],
                "{mode:?} seed {seed}: the earlier write's other block"
            );
        }
    }
    let dropped = dev.image_at(CrashPoint::new(dev.ops_len(), 0, CrashMode::Drop));
    let mut buf = vec![0u8; 4096];
    dropped.read_at(8192, &mut buf).unwrap();
    assert!(buf == [0u8; 4096], "a plain pending write survived a drop");
}
