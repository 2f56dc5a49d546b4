//! In-place overwrite of exclusively owned blocks: what it saves (no metadata change, no new
//! block, a full pool still takes overwrites), what it keeps (snapshots and every volume that
//! shared a block keep their contents), and what it promises across a crash (each sector old or
//! new until the flush; a flush and a FUA write make it durable without a commit).

mod support;

use std::sync::Arc;

use cairn_engine::{BlockDevice, ErrorKind, PoolOptions, VolumeOptions};
use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordedOp, RecordingDevice};

const BS: usize = 4096;
const SECTOR: usize = 512;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

fn read(pool: &support::OnePool, id: cairn_engine::VolumeId, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    pool.read(id, offset, &mut buf).expect("read");
    buf
}

/// A 512-byte sector pattern: every byte of sector `i` of the buffer is `tag + i`.
fn stamped(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i / SECTOR) as u8))
        .collect()
}

/// Volume options for 512-byte logical blocks (sector writes are read-modify-writes).
fn sectors() -> VolumeOptions {
    VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    }
}

#[test]
fn an_overwrite_of_an_exclusive_block_changes_no_metadata() {
    let dev = Arc::new(MemDevice::new(16 << 20));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let v = pool
        .create_volume("v", 1 << 20, sectors())
        .expect("volume")
        .id;
    pool.write(v, 0, &[1u8; 16 * BS]).expect("write");
    pool.flush().expect("flush");
    let (gen, allocated) = (pool.info().generation, pool.allocated_blocks());
    let flushes = dev.stats().flushes;
    for round in 2..6u8 {
        pool.write(v, 4 * BS as u64, &[round; 8 * BS])
            .expect("overwrite");
        pool.write(v, 0, &stamped(round, SECTOR))
            .expect("sector overwrite");
    }
    assert_eq!(pool.allocated_blocks(), allocated, "no block allocated");
    pool.flush().expect("flush");
    assert_eq!(pool.info().generation, gen, "nothing to commit");
    assert_eq!(
        dev.stats().flushes,
        flushes + 1,
        "the flush reached the device"
    );
    pool.flush().expect("flush");
    assert_eq!(dev.stats().flushes, flushes + 1, "nothing left to flush");
    let mut want = vec![1u8; 16 * BS];
    want[..SECTOR].copy_from_slice(&stamped(5, SECTOR));
    want[4 * BS..12 * BS].fill(5);
    assert_eq!(read(&pool, v, 0, 16 * BS), want);
    assert!(pool.check().expect("check").is_clean());
}

#[test]
fn an_unshared_volume_on_a_full_pool_accepts_overwrites() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let pool = support::create(dev, "full", opts()).expect("create");
    let v = pool
        .create_volume("v", 64 << 20, sectors())
        .expect("volume")
        .id;
    let mut written = 0u64;
    loop {
        match pool.write(v, written * BS as u64, &[7u8; BS]) {
            Ok(()) => written += 1,
            Err(e) if e.kind() == ErrorKind::NoSpace => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    pool.flush().expect("flush");
    assert_eq!(pool.info().data_bytes_free, 0, "the pool is full");
    let e = pool
        .write(v, written * BS as u64, &[1u8; BS])
        .expect_err("a new block on a full pool");
    assert_eq!(e.kind(), ErrorKind::NoSpace);
    for b in [0, written / 2, written - 1] {
        pool.write(v, b * BS as u64, &[b as u8 ^ 0x5a; BS])
            .expect("4 KiB overwrite with 0 bytes free");
        pool.write(v, b * BS as u64 + SECTOR as u64, &[0xee; SECTOR])
            .expect("sector overwrite with 0 bytes free");
    }
    pool.flush().expect("flush");
    for b in [0, written / 2, written - 1] {
        let mut want = vec![b as u8 ^ 0x5a; BS];
        want[SECTOR..2 * SECTOR].fill(0xee);
        assert_eq!(read(&pool, v, b * BS as u64, BS), want, "block {b}");
    }
    assert!(pool.check().expect("check").is_clean());
}

/// A block one volume maps with a reference count of one may still be shared by the durable
/// state: here the snapshot redirected its own copy in the open transaction, dropping its
/// reference, while the last commit still has it mapping the block. The volume's overwrite must
/// not land in place (after a crash the snapshot would read it).
#[test]
fn a_reference_count_of_one_is_not_exclusive() {
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(16 << 20)));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let v = pool
        .create_volume("v", 1 << 20, VolumeOptions::default())
        .expect("volume")
        .id;
    pool.write(v, 0, &[1u8; BS]).expect("write");
    let s = pool
        .snapshot(v, "s", VolumeOptions::default())
        .expect("snapshot")
        .id;
    pool.write(s, 0, &[2u8; BS]).expect("snapshot's own write");
    pool.write(v, 0, &[3u8; BS]).expect("volume's write");
    for mode in CrashMode::ALL {
        let image: Arc<dyn BlockDevice> =
            Arc::new(dev.image_at(CrashPoint::new(dev.ops_len(), 1, mode)));
        let crashed = support::open(image, opts()).expect("open");
        assert_eq!(
            read(&crashed, s, 0, BS),
            vec![1u8; BS],
            "{mode:?}: snapshot"
        );
        assert_eq!(read(&crashed, v, 0, BS), vec![1u8; BS], "{mode:?}: volume");
    }
    assert_eq!(read(&pool, s, 0, BS), vec![2u8; BS]);
    assert_eq!(read(&pool, v, 0, BS), vec![3u8; BS]);
}

/// A crash between an in-place overwrite and the flush leaves each sector old or new, however
/// the writes were torn or reordered; the flush (no commit: the mappings are durable) makes
/// every sector new.
#[test]
fn a_crash_before_the_flush_of_an_in_place_write_leaves_each_sector_old_or_new() {
    const BLOCKS: usize = 24;
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(16 << 20)));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let v = pool
        .create_volume("v", 1 << 20, sectors())
        .expect("volume")
        .id;
    let old = stamped(10, BLOCKS * BS);
    pool.write(v, 0, &old).expect("write");
    pool.flush().expect("flush");
    let gen = pool.info().generation;
    let start = dev.ops_len();
    let new = stamped(100, BLOCKS * BS);
    pool.write(v, 0, &new[..8 * BS]).expect("overwrite");
    for s in (8 * BS / SECTOR..BLOCKS * BS / SECTOR).step_by(3) {
        let r = s * SECTOR..(s + 1) * SECTOR;
        pool.write(v, r.start as u64, &new[r])
            .expect("sector overwrite");
    }
    let mut want = old.clone();
    want[..8 * BS].copy_from_slice(&new[..8 * BS]);
    for s in (8 * BS / SECTOR..BLOCKS * BS / SECTOR).step_by(3) {
        want[s * SECTOR..(s + 1) * SECTOR].copy_from_slice(&new[s * SECTOR..(s + 1) * SECTOR]);
    }
    let written = dev.ops_len();
    assert!(written > start, "the overwrites reached the device");
    pool.flush().expect("flush");
    let flushed = dev.ops_len();
    assert_eq!(pool.info().generation, gen, "the flush committed nothing");
    let mut seen_new = false;
    for at in start..=flushed {
        for (k, mode) in CrashMode::ALL.into_iter().enumerate() {
            let point = CrashPoint::new(at, (at * 4 + k) as u64, mode);
            let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
            let crashed = support::open(image, opts()).expect("open");
            let got = read(&crashed, v, 0, BLOCKS * BS);
            for s in 0..BLOCKS * BS / SECTOR {
                let r = s * SECTOR..(s + 1) * SECTOR;
                assert!(
                    got[r.clone()] == old[r.clone()] || got[r.clone()] == want[r.clone()],
                    "{point:?}: sector {s} is neither old nor new"
                );
            }
            seen_new |= got[..BS] == want[..BS];
            if at == flushed {
                assert!(got == want, "{point:?}: the flush did not make it durable");
            }
        }
    }
    assert!(seen_new, "no crash image held unflushed in-place data");
}

/// A FUA overwrite in place over a durable mapping is one FUA device write: no flush, no
/// commit, and it survives a crash right after it returns.
#[test]
fn a_fua_overwrite_in_place_needs_no_commit() {
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(16 << 20)));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let v = pool
        .create_volume("v", 1 << 20, VolumeOptions::default())
        .expect("volume")
        .id;
    pool.write(v, 0, &[1u8; 4 * BS]).expect("write");
    pool.flush().expect("flush");
    let gen = pool.info().generation;
    let start = dev.ops_len();
    pool.write_fua(v, BS as u64, &[2u8; 2 * BS])
        .expect("fua write");
    let ops = dev.log()[start..].to_vec();
    assert!(
        ops.iter()
            .all(|op| matches!(op, RecordedOp::WriteFua { .. }))
            && !ops.is_empty(),
        "only FUA writes: {ops:?}"
    );
    assert_eq!(pool.info().generation, gen, "no commit");
    for mode in CrashMode::ALL {
        let image: Arc<dyn BlockDevice> =
            Arc::new(dev.image_at(CrashPoint::new(dev.ops_len(), 3, mode)));
        let crashed = support::open(image, opts()).expect("open");
        let mut want = vec![1u8; 4 * BS];
        want[BS..3 * BS].fill(2);
        assert_eq!(read(&crashed, v, 0, 4 * BS), want, "{mode:?}");
    }
    // A FUA write that needs new blocks (after a snapshot) commits.
    pool.snapshot(v, "s", VolumeOptions::default())
        .expect("snapshot");
    let gen = pool.info().generation;
    pool.write_fua(v, 0, &[3u8; BS]).expect("fua write");
    assert!(
        pool.info().generation > gen,
        "a redirected FUA write commits"
    );
}

/// A volume of `blocks` 4 KiB blocks of 1s with a snapshot, and every other block then
/// rewritten with 2s (so it owns those blocks and shares the rest with the snapshot).
fn scattered(
    pool: &support::OnePool,
    blocks: u64,
) -> (cairn_engine::VolumeId, cairn_engine::VolumeId) {
    let v = pool
        .create_volume("v", blocks * BS as u64, VolumeOptions::default())
        .expect("volume")
        .id;
    pool.write(v, 0, &vec![1u8; blocks as usize * BS])
        .expect("fill");
    let s = pool
        .snapshot(v, "s", VolumeOptions::default())
        .expect("snapshot")
        .id;
    for b in (0..blocks).step_by(2) {
        pool.write(v, b * BS as u64, &[2u8; BS])
            .expect("small write");
    }
    (v, s)
}

/// A large write over a range that small writes after a snapshot left scattered, some blocks the
/// volume's own and some shared, goes to fresh blocks whole: one device write, not one per
/// fragment. The snapshot keeps its contents and the pool checks clean.
#[test]
fn a_large_write_over_scattered_blocks_lands_in_one_piece() {
    let dev = Arc::new(MemDevice::new(16 << 20));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let (v, s) = scattered(&pool, 64);
    let writes = dev.stats().writes;
    pool.write(v, 0, &[3u8; 64 * BS]).expect("large write");
    assert_eq!(dev.stats().writes - writes, 1, "one device write");
    assert_eq!(read(&pool, v, 0, 64 * BS), vec![3u8; 64 * BS]);
    assert_eq!(read(&pool, s, 0, 64 * BS), vec![1u8; 64 * BS]);
    pool.close().expect("close");
    let reopened = support::open(dev, opts()).expect("reopen");
    assert_eq!(read(&reopened, v, 0, 64 * BS), vec![3u8; 64 * BS]);
    assert_eq!(read(&reopened, s, 0, 64 * BS), vec![1u8; 64 * BS]);
    assert!(reopened.check().expect("check").is_clean());
}

/// Without room for the whole write on fresh blocks, the same write overwrites the blocks the
/// volume owns in place and takes fresh blocks only for the shared ones.
#[test]
fn a_large_scattered_write_without_room_for_all_of_it_lands_in_place_where_it_can() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let pool = support::create(dev, "p", opts()).expect("create");
    let (v, s) = scattered(&pool, 64);
    // Fill the pool, then free 40 blocks: room for the 32 fresh blocks the shared half of the
    // write needs (and a commit's metadata), not for all 64.
    let filler = pool
        .create_volume("filler", 64 << 20, VolumeOptions::default())
        .expect("filler")
        .id;
    let mut at = 0u64;
    while pool.write(filler, at, &[9u8; BS]).is_ok() {
        at += BS as u64;
    }
    pool.flush().expect("flush");
    assert_eq!(pool.info().data_bytes_free, 0, "the pool is full");
    for _ in 0..40 {
        at -= BS as u64;
        pool.trim(filler, at, BS as u64).expect("trim");
    }
    pool.flush()
        .expect("flush: the trimmed blocks are free again");
    pool.write(v, 0, &[3u8; 64 * BS])
        .expect("the write fits with its own blocks overwritten in place");
    assert_eq!(read(&pool, v, 0, 64 * BS), vec![3u8; 64 * BS]);
    assert_eq!(read(&pool, s, 0, 64 * BS), vec![1u8; 64 * BS]);
    assert!(pool.check().expect("check").is_clean());
}

/// A snapshot refused (its reads fail, at every point of it in turn) leaves the source's blocks
/// its own: with no free block left, the source still takes overwrites of them in place.
#[test]
fn a_refused_snapshot_leaves_the_source_overwritable_in_place() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let pool = support::create(dev.clone(), "full", opts()).expect("create");
    let v = pool
        .create_volume("v", 64 << 20, VolumeOptions::default())
        .expect("volume")
        .id;
    let mut written = 0u64;
    while pool.write(v, written * BS as u64, &[7u8; BS]).is_ok() {
        written += 1;
    }
    pool.flush().expect("flush");
    let mut refused = 0;
    for reads_ok in 0..64 {
        pool.drop_clean_caches();
        dev.fail_reads_after(reads_ok);
        let r = pool.snapshot(v, "s", VolumeOptions::default());
        dev.clear_faults();
        match r {
            Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::NoSpace) => refused += 1,
            Err(e) => panic!("snapshot: {e:?}"),
            Ok(_) => break,
        }
        for b in [0, written / 2, written - 1] {
            pool.write(v, b * BS as u64, &[reads_ok as u8; BS])
                .unwrap_or_else(|e| panic!("overwrite after refusal {reads_ok}: {e:?}"));
            assert_eq!(read(&pool, v, b * BS as u64, BS), vec![reads_ok as u8; BS]);
        }
    }
    assert!(refused > 0, "no snapshot was refused");
    assert!(pool.check().expect("check").is_clean());
}
