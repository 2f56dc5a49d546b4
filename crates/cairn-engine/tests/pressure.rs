//! A pool under space pressure: metadata exhaustion is an error for the call that meets it,
//! never a pool failure; trim never fails for lack of space; write-zeroes zeroes or answers
//! `NoSpace` and changes nothing; a full pool is always recoverable online by deleting a
//! snapshot or a volume.

mod support;
use support::block_of;
use support::OnePool;

use std::sync::Arc;

use cairn_engine::{ErrorKind, PoolOptions, VolumeId, VolumeOptions, BLOCK_SIZE};
use cairn_io::MemDevice;

const MIB: u64 = 1 << 20;
const BS: u64 = BLOCK_SIZE;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 4 << 20,
        preallocate: false,
    }
}

/// Writes `blocks` blocks as one mapping entry each (odd blocks first, then even ones, so no
/// two neighbours are physically adjacent in the right order): many leaves to shadow.
fn fill_fragmented(p: &OnePool, v: VolumeId, blocks: u64) {
    for b in (1..blocks).step_by(2).chain((0..blocks).step_by(2)) {
        p.write(v, b * BS, &block_of(b + 1)).unwrap();
    }
    p.flush().unwrap();
}

fn is_mapped(p: &OnePool, v: VolumeId, b: u64) -> bool {
    p.block_status(v, b * BS, BS).unwrap()[0].mapped
}

/// Snapshot-then-trim rounds on a full pool: every round shares every leaf again and trims one
/// block per leaf, so each trim shadows a shared leaf and frees nothing. Returns the rounds run
/// and the blocks the last round's trims left mapped (no commit since).
fn exhaust_metadata(p: &OnePool, v: VolumeId, blocks: u64) -> (usize, Vec<u64>) {
    for round in 0..200 {
        match p.snapshot(v, &format!("s{round}"), VolumeOptions::default()) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "round {round}: {e}");
                return (round, Vec::new());
            }
        }
        let mut kept = Vec::new();
        for b in (round as u64 % 32..blocks).step_by(32) {
            // Advisory: below the reserve floor a trim succeeds and leaves the block mapped.
            p.trim(v, b * BS, BS)
                .unwrap_or_else(|e| panic!("round {round} trim of block {b}: {e}"));
            if is_mapped(p, v, b) {
                kept.push(b);
            }
        }
        if !kept.is_empty() {
            return (round + 1, kept);
        }
        assert!(p.check().unwrap().is_clean(), "round {round}");
    }
    panic!("metadata never ran out");
}

#[test]
fn a_pool_out_of_metadata_stays_healthy_and_recovers_by_deleting_a_snapshot() {
    let dev = Arc::new(MemDevice::new(32 * MIB));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let free = p.info().data_bytes_free / BS;
    let blocks = free - 64;
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    fill_fragmented(&p, v, blocks);
    let (rounds, kept) = exhaust_metadata(&p, v, blocks);
    assert!(rounds >= 1 && !kept.is_empty());
    // Write-zeroes is no trim: it zeroes, or answers NoSpace and changes nothing. It commits
    // once before giving up, so it may find room the trims did not; going on, it runs out too.
    let mut buf = vec![0u8; BS as usize];
    let mut refused = 0;
    for b in kept.iter().copied().chain((0..blocks).step_by(16)) {
        if !is_mapped(&p, v, b) {
            continue;
        }
        match p.write_zeroes(v, b * BS, BS) {
            Ok(()) => {
                p.read(v, b * BS, &mut buf).unwrap();
                assert!(buf.iter().all(|&x| x == 0), "block {b} zeroed");
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "block {b}: {e}");
                p.read(v, b * BS, &mut buf).unwrap();
                assert_eq!(
                    buf,
                    block_of(b + 1),
                    "a failed write-zeroes changed block {b}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "write-zeroes never ran out of metadata space");
    assert!(p.check().unwrap().is_clean());
    p.flush().unwrap();
    p.close().unwrap();
    drop(p);

    let p = support::open(dev.clone(), opts()).unwrap();
    let s0 = p.volume_by_name("s0").unwrap().id;
    p.delete_volume(s0).unwrap();
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    assert!(p.check().unwrap().is_clean());
    assert!(!p.info().reclaim_pending);
    // Every volume still reads what it held: the live volume its unmapped or stamped blocks.
    for b in (0..blocks).step_by(97) {
        p.read(v, b * BS, &mut buf).unwrap();
        assert!(
            buf == block_of(b + 1) || buf.iter().all(|&x| x == 0),
            "block {b}"
        );
    }
    // Deleting the volume and every snapshot gives the space back.
    for info in p.volumes() {
        p.delete_volume(info.id).unwrap();
    }
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    assert!(p.check().unwrap().is_clean());
    assert_eq!(p.info().data_bytes_used, 0);
}

/// A 512-byte volume on a pool whose data space is full and shared with a snapshot: every
/// partial-block rewrite needs a fresh block.
fn full_sector_volume() -> (OnePool, VolumeId, Vec<u8>) {
    let dev = Arc::new(MemDevice::new(16 * MIB));
    let p = support::create(dev, "p0", opts()).unwrap();
    let blocks = p.info().data_bytes_free / BS;
    let vopts = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let v = p.create_volume("v", blocks * BS, vopts).unwrap().id;
    let mut image = Vec::with_capacity((blocks * BS) as usize);
    for b in 0..blocks {
        image.extend_from_slice(&block_of(b + 1));
    }
    // The mapping takes some blocks too: write until the data space is full.
    let head = (blocks - 64) * BS;
    p.write(v, 0, &image[..head as usize]).unwrap();
    let mut end = head;
    while end < blocks * BS {
        let block = &image[end as usize..(end + BS) as usize];
        match p.write(v, end, block) {
            Ok(()) => end += BS,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace);
                break;
            }
        }
    }
    image[end as usize..].fill(0);
    p.snapshot(v, "s", VolumeOptions::default()).unwrap();
    assert_eq!(p.info().data_bytes_free, 0);
    (p, v, image)
}

fn read_all(p: &OnePool, v: VolumeId, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    p.read(v, 0, &mut buf).unwrap();
    buf
}

#[test]
fn write_zeroes_on_a_full_512_byte_volume_changes_nothing_or_zeroes() {
    let (p, v, image) = full_sector_volume();
    // Partial blocks at both ends, two whole blocks between.
    let (offset, len) = (BS + 512, 3 * BS);
    let e = p.write_zeroes(v, offset, len).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace);
    assert_eq!(
        read_all(&p, v, image.len()),
        image,
        "a failed write-zeroes changed data"
    );
    // Whole blocks alone need no data block: they are unmapped and read as zeros.
    p.write_zeroes(v, 8 * BS, 2 * BS).unwrap();
    let mut want = image.clone();
    want[(8 * BS) as usize..(10 * BS) as usize].fill(0);
    assert_eq!(read_all(&p, v, image.len()), want);
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn trim_on_a_full_512_byte_volume_never_answers_no_space() {
    let (p, v, image) = full_sector_volume();
    let (offset, len) = (BS + 512, 3 * BS);
    p.trim(v, offset, len).unwrap();
    // Whole blocks are unmapped; the partial ones keep their data or read zeros in the range.
    let got = read_all(&p, v, image.len());
    let (start, end) = (offset as usize, (offset + len) as usize);
    assert_eq!(got[..start], image[..start]);
    assert_eq!(got[end..], image[end..]);
    for (i, &byte) in got[start..end].iter().enumerate() {
        assert!(byte == 0 || byte == image[start + i], "byte {}", start + i);
    }
    assert!(got[(2 * BS) as usize..(4 * BS) as usize]
        .iter()
        .all(|&x| x == 0));
    assert!(p.check().unwrap().is_clean());
}

fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_file_pool_preallocates_its_metadata_reserve_at_create_and_grow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = Arc::new(cairn_io::FileDevice::open(&path, Some(64 * MIB)).unwrap());
    let p = support::create(dev, "p0", opts()).unwrap();
    let reserve = p.info().metadata_bytes_total;
    assert!(
        allocated_bytes(&path) >= reserve,
        "{} bytes allocated for a reserve of {reserve}",
        allocated_bytes(&path)
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();
    let grown = p.grow().unwrap();
    assert!(grown.metadata_bytes_total > reserve);
    assert!(allocated_bytes(&path) >= grown.metadata_bytes_total);
    assert!(
        allocated_bytes(&path) < 64 * MIB,
        "the data space stays sparse"
    );
    p.close().unwrap();
}

/// A sparse file pool (the default) is backed a chunk ahead of its data and gives a deleted
/// volume's chunks back to the host; one configured with `preallocate` is allocated whole at
/// create and stays so.
#[test]
fn a_file_pool_is_backed_ahead_of_its_data_and_preallocated_whole_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = Arc::new(cairn_io::FileDevice::open(&path, Some(256 * MIB)).unwrap());
    let p = support::create(dev, "p0", opts()).unwrap();
    // A 256 MiB pool has 4 MiB chunks; the superblocks and the reserve room end inside the
    // second one.
    let chunk = 4 * MIB;
    let room_end = 2 * BS + p.info().metadata_bytes_total;
    let first_chunk_end = room_end.next_multiple_of(chunk);
    let v = p
        .create_volume("v", 64 * MIB, VolumeOptions::default())
        .unwrap()
        .id;
    // One block written: the rest of its chunk is backed already, and nothing past it.
    p.write(v, 0, &block_of(1)).unwrap();
    p.flush().unwrap();
    let after_one = allocated_bytes(&path);
    assert!(
        after_one >= first_chunk_end && after_one <= first_chunk_end + MIB,
        "{after_one} bytes allocated, the first data chunk ends at {first_chunk_end}"
    );
    p.write(v, 0, &vec![2u8; 32 * MIB as usize]).unwrap();
    p.flush().unwrap();
    let full = allocated_bytes(&path);
    assert!(
        full >= room_end + 32 * MIB && full <= first_chunk_end + 32 * MIB + chunk + MIB,
        "{full} bytes for 32 MiB of data"
    );
    p.delete_volume(v).unwrap();
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    // Given back but the reserve's chunk and the one the allocator was filling.
    let back = allocated_bytes(&path);
    assert!(
        back <= first_chunk_end + chunk + MIB,
        "{back} bytes left after the delete"
    );
    p.close().unwrap();
    drop(p);

    let whole = dir.path().join("whole.img");
    let dev = Arc::new(cairn_io::FileDevice::open(&whole, Some(64 * MIB)).unwrap());
    let preallocated = PoolOptions {
        preallocate: true,
        ..opts()
    };
    let p = support::create(dev, "p1", preallocated.clone()).unwrap();
    assert!(allocated_bytes(&whole) >= 64 * MIB, "allocated whole");
    let v = p
        .create_volume("v", 16 * MIB, VolumeOptions::default())
        .unwrap()
        .id;
    p.write(v, 0, &vec![3u8; 16 * MIB as usize]).unwrap();
    p.delete_volume(v).unwrap();
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    assert!(allocated_bytes(&whole) >= 64 * MIB, "nothing punched");
    p.close().unwrap();
}

/// A write-zeroes of many steps (more extents than one step unmaps) on a full pool whose leaves
/// snapshots share, its metadata reserve mostly used by earlier snapshot-then-trim rounds: the
/// steps shadow shared leaves until the reserve's floor is reached after some of them were
/// applied. The request zeroes its whole range or answers `NoSpace` with the volume unchanged,
/// never some blocks zeroed and the others not.
#[test]
fn a_write_zeroes_of_many_steps_is_all_or_nothing() {
    let dev = Arc::new(MemDevice::new(32 * MIB));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let blocks = p.info().data_bytes_free / BS - 64;
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    fill_fragmented(&p, v, blocks);
    // Three rounds trim blocks 0, 1 and 2 of every 64 (each trim shadows a shared leaf).
    for round in 0..3 {
        p.snapshot(v, &format!("r{round}"), VolumeOptions::default())
            .unwrap();
        for b in (round..blocks).step_by(64) {
            p.trim(v, b * BS, BS).unwrap();
        }
        p.flush().unwrap();
    }
    let s = p.snapshot(v, "s", VolumeOptions::default()).unwrap().id;
    let unchanged = |vol: VolumeId| {
        let mut buf = vec![0u8; BS as usize];
        for b in 0..blocks {
            p.read(vol, b * BS, &mut buf).unwrap();
            if b % 64 < 3 {
                assert!(buf.iter().all(|&x| x == 0), "trimmed block {b} of {vol}");
            } else {
                assert!(buf == block_of(b + 1), "block {b} of volume {vol} changed");
            }
        }
    };
    let (steps_before, _) = p.step_counts();
    let e = p
        .write_zeroes(v, 0, blocks * BS)
        .expect_err("the metadata floor is reached");
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    let (steps_after, _) = p.step_counts();
    assert!(
        steps_after >= steps_before + 2,
        "refused after {} applied steps: a later step met the floor",
        steps_after - steps_before
    );
    unchanged(v);
    unchanged(s);
    p.flush().unwrap();
    assert!(p.check().unwrap().is_clean());

    // Deleting the snapshots makes room: the same request zeroes everything, and it lasts.
    for info in p.volumes().into_iter().filter(|i| i.id != v) {
        p.delete_volume(info.id).unwrap();
    }
    p.wait_reclaim().unwrap();
    p.write_zeroes(v, 0, blocks * BS).unwrap();
    p.flush().unwrap();
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    let mut buf = vec![1u8; (blocks * BS) as usize];
    p.read(v, 0, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0), "the volume reads zeros");
    assert_eq!(p.info().data_bytes_used, 0, "the zeroed blocks are free");
    assert!(p.check().unwrap().is_clean());
}
