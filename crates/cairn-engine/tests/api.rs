//! Behaviour of the public API: argument checks and error kinds, durability across reopen,
//! failure states, zero-copy first write after a snapshot, growth, offline check and corruption
//! reports, concurrency and snapshot consistency, and the multi-pool `Storage` registry.

mod support;
use support::OnePool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_engine::{
    check_device, BlockDevice, ErrorKind, Extent, FindingKind, Pool, PoolOptions, Storage,
    VolumeId, VolumeOptions, BLOCK_SIZE,
};
use cairn_io::MemDevice;

const MIB: u64 = 1 << 20;

/// Widens race windows: every device read and write yields the processor first.
#[derive(Debug)]
struct Yielding(MemDevice);
impl BlockDevice for Yielding {
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.0.alignment()
    }
    fn refresh_size(&self) -> cairn_io::IoResult<u64> {
        self.0.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> cairn_io::IoResult<()> {
        for _ in 0..200 {
            std::thread::yield_now();
        }
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> cairn_io::IoResult<()> {
        for _ in 0..50 {
            std::thread::yield_now();
        }
        self.0.write_at(offset, data)
    }
    fn flush(&self) -> cairn_io::IoResult<()> {
        self.0.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> cairn_io::IoResult<()> {
        self.0.discard(offset, len)
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 4 << 20,
        preallocate: false,
    }
}

fn pool(size: u64) -> (Arc<MemDevice>, OnePool) {
    let dev = Arc::new(MemDevice::new(size));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    (dev, p)
}

fn vol(p: &OnePool, name: &str, size: u64) -> VolumeId {
    p.create_volume(name, size, VolumeOptions::default())
        .unwrap()
        .id
}

#[test]
fn arguments_are_checked_with_the_right_kind() {
    let (_dev, p) = pool(64 * MIB);
    let k = |r: cairn_engine::Result<cairn_engine::VolumeInfo>| r.unwrap_err().kind();
    let d = VolumeOptions::default;
    for bad in ["", " lead", "trail ", "a/b", "ctl\u{7}", &"x".repeat(65)] {
        assert_eq!(
            k(p.create_volume(bad, 4096, d())),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
    assert!(
        p.create_volume(&"é".repeat(64), 4096, d()).is_ok(),
        "64 characters allowed"
    );
    assert_eq!(
        k(p.create_volume("v", 4095, d())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(k(p.create_volume("v", 0, d())), ErrorKind::InvalidArgument);
    let lbs = VolumeOptions {
        logical_block_size: 1024,
        ..d()
    };
    assert_eq!(
        k(p.create_volume("v", 4096, lbs)),
        ErrorKind::InvalidArgument
    );
    let id = vol(&p, "my volume", MIB);
    assert_eq!(
        k(p.create_volume("my volume", 4096, d())),
        ErrorKind::AlreadyExists
    );
    let mut buf = vec![0u8; 4096];
    let e = |r: cairn_engine::Result<()>| r.unwrap_err().kind();
    assert_eq!(e(p.read(id, MIB, &mut buf)), ErrorKind::OutOfRange);
    assert_eq!(
        e(p.write(id, MIB - 4096, &[0u8; 8192])),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        e(p.write(id, 512, &[0u8; 4096])),
        ErrorKind::InvalidArgument
    );
    assert_eq!(e(p.trim(id, 0, 100)), ErrorKind::InvalidArgument);
    assert_eq!(
        e(p.read(VolumeId([9; 16]), 0, &mut buf)),
        ErrorKind::NotFound
    );
    assert_eq!(k(p.resize_volume(id, MIB / 2)), ErrorKind::InvalidArgument);
    p.set_read_only(id, true).unwrap();
    assert_eq!(e(p.write(id, 0, &[1u8; 4096])), ErrorKind::ReadOnly);
    assert_eq!(e(p.trim(id, 0, 4096)), ErrorKind::ReadOnly);
    p.set_read_only(id, false).unwrap();
    p.write(id, 0, &[1u8; 4096]).unwrap();
    assert_eq!(k(p.set_tag(id, &[0u8; 257])), ErrorKind::InvalidArgument);
    assert!(support::create(Arc::new(MemDevice::new(64 * MIB)), "bad name!", opts()).is_err());
    let e = support::open(Arc::new(MemDevice::new(MIB)), opts())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAPool);
    assert!(!e.to_string().is_empty() && e.to_string().starts_with(char::is_uppercase));
}

#[test]
fn metadata_and_data_survive_reopen() {
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", 8 * MIB);
    let v = p.set_tag(id, b"upper layer").unwrap();
    assert_eq!(v.tag, b"upper layer");
    p.set_hidden(id, true).unwrap();
    p.rename_volume(id, "b").unwrap();
    p.write(id, 4096, &[7u8; 8192]).unwrap();
    let snap = p.snapshot(id, "b@1", VolumeOptions::default()).unwrap();
    p.write(id, 4096, &[8u8; 4096]).unwrap();
    p.flush().unwrap();
    let gen = p.info().generation;
    p.close().unwrap();
    assert_eq!(
        p.flush().unwrap_err().kind(),
        ErrorKind::PoolFailed,
        "closed pool"
    );
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    assert!(p.info().generation >= gen);
    let v = p.volume_by_name("b").unwrap();
    assert_eq!(
        (v.id, v.hidden, v.tag.as_slice()),
        (id, true, &b"upper layer"[..])
    );
    let s = p.volume(snap.id).unwrap();
    assert_eq!(s.parent, Some(id));
    let mut buf = vec![0u8; 12288];
    p.read(id, 0, &mut buf).unwrap();
    assert_eq!(&buf[..4096], &[0u8; 4096][..]);
    assert_eq!(&buf[4096..8192], &[8u8; 4096][..]);
    assert_eq!(&buf[8192..], &[7u8; 4096][..]);
    p.read(snap.id, 4096, &mut buf[..4096]).unwrap();
    assert_eq!(&buf[..4096], &[7u8; 4096][..]);
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn a_failed_flush_fails_the_pool_until_reopen() {
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", MIB);
    p.write(id, 0, &[1u8; 4096]).unwrap();
    p.flush().unwrap();
    p.write(id, 0, &[2u8; 4096]).unwrap();
    dev.fail_flushes(true);
    assert_eq!(p.flush().unwrap_err().kind(), ErrorKind::Io);
    dev.fail_flushes(false);
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        p.read(id, 0, &mut buf).unwrap_err().kind(),
        ErrorKind::PoolFailed
    );
    assert_eq!(
        p.flush().unwrap_err().kind(),
        ErrorKind::PoolFailed,
        "never a later success"
    );
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    p.read(id, 0, &mut buf).unwrap();
    assert!(buf == [1u8; 4096] || buf == [2u8; 4096]);
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn a_failed_data_write_fails_only_its_request() {
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", MIB);
    p.write(id, 0, &[1u8; 4096]).unwrap();
    dev.no_space_after(0);
    assert_eq!(
        p.write(id, 8192, &[2u8; 4096]).unwrap_err().kind(),
        ErrorKind::NoSpace
    );
    dev.clear_faults();
    let ext = p.block_status(id, 0, 3 * 4096).unwrap();
    assert_eq!(
        ext[0],
        Extent {
            offset: 0,
            len: 4096,
            mapped: true
        }
    );
    assert!(
        !ext[1].mapped && ext[1].len == 8192,
        "the failed block is not mapped: {ext:?}"
    );
    p.write(id, 8192, &[3u8; 4096]).unwrap();
    p.flush().unwrap();
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn first_write_after_snapshot_redirects_without_copying() {
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", 16 * MIB);
    p.write(id, 0, &vec![5u8; 16 * MIB as usize]).unwrap();
    p.flush().unwrap();
    let t = std::time::Instant::now();
    let snap = p.snapshot(id, "a@1", VolumeOptions::default()).unwrap();
    eprintln!("snapshot took {:?}", t.elapsed());
    let before = dev.stats();
    p.write(id, 4 * MIB, &[6u8; 4096]).unwrap();
    let after = dev.stats();
    assert_eq!(after.reads, before.reads, "old data is never read");
    assert_eq!(
        after.write_bytes - before.write_bytes,
        BLOCK_SIZE,
        "one 4 KiB data write"
    );
    let mut buf = vec![0u8; 4096];
    p.read(snap.id, 4 * MIB, &mut buf).unwrap();
    assert_eq!(buf, vec![5u8; 4096]);
    p.read(id, 4 * MIB, &mut buf).unwrap();
    assert_eq!(buf, vec![6u8; 4096]);
    // Overwriting the redirected block again in the same transaction stays in place.
    let used = p.allocated_blocks();
    p.write(id, 4 * MIB, &[7u8; 4096]).unwrap();
    assert_eq!(p.allocated_blocks(), used);
    p.delete_volume(snap.id).unwrap();
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    assert!(!p.info().reclaim_pending);
}

#[test]
fn sub_block_volumes_read_modify_write() {
    let (_dev, p) = pool(64 * MIB);
    let o = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let id = p.create_volume("s", MIB, o).unwrap().id;
    p.write(id, 512, &[1u8; 512]).unwrap();
    p.write(id, 3584, &[2u8; 1024]).unwrap();
    let mut buf = vec![0u8; 8192];
    p.read(id, 0, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|b| *b == 0));
    assert!(buf[512..1024].iter().all(|b| *b == 1));
    assert!(buf[3584..4608].iter().all(|b| *b == 2));
    assert!(buf[4608..].iter().all(|b| *b == 0));
    p.trim(id, 512, 512).unwrap();
    p.read(id, 0, &mut buf[..1024]).unwrap();
    assert!(buf[..1024].iter().all(|b| *b == 0));
    let mut small = [9u8; 512];
    p.read(id, 4096, &mut small).unwrap();
    assert_eq!(small, [2u8; 512]);
}

#[test]
fn grow_extends_the_pool() {
    let dev = Arc::new(MemDevice::new(8 * MIB));
    let p = support::create(dev.clone(), "g", opts()).unwrap();
    let id = vol(&p, "a", 64 * MIB);
    let big = vec![3u8; 16 * MIB as usize];
    assert_eq!(p.write(id, 0, &big).unwrap_err().kind(), ErrorKind::NoSpace);
    dev.set_size(64 * MIB);
    let info = p.grow().unwrap();
    assert_eq!(info.size_bytes, 64 * MIB);
    p.write(id, 0, &big).unwrap();
    p.close().unwrap();
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    let mut buf = vec![0u8; 4096];
    p.read(id, 16 * MIB - 4096, &mut buf).unwrap();
    assert_eq!(buf, vec![3u8; 4096]);
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn offline_check_reports_corruption_with_a_path() {
    let (dev, p) = pool(32 * MIB);
    let id = vol(&p, "a", 16 * MIB);
    for i in 0..2000u64 {
        p.write(id, i * 8192, &[i as u8; 4096]).unwrap();
    }
    p.close().unwrap();
    drop(p);
    assert!(check_device(dev.clone()).unwrap().is_clean());
    // Flip one byte in every volume-tree leaf (block type 2 at offset 4, level 0 at offset 6).
    let mut hit = 0;
    for b in 2..dev.size_bytes() / 4096 {
        let mut blk = vec![0u8; 4096];
        dev.read_at(b * 4096, &mut blk).unwrap();
        if &blk[..4] == b"CRNM" && blk[4] == 2 && blk[6] == 0 {
            blk[200] ^= 0xff;
            dev.write_at(b * 4096, &blk).unwrap();
            hit += 1;
        }
    }
    assert!(hit > 0);
    let report = check_device(dev).unwrap();
    let bad: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::BadBlock)
        .collect();
    assert!(!bad.is_empty());
    assert!(bad[0].path.starts_with("volume \"a\""), "{:?}", bad[0]);
}

#[test]
fn snapshot_holds_exactly_the_writes_acknowledged_before_it() {
    let (_dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", 4 * MIB);
    let other = vol(&p, "b", 4 * MIB);
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (p, acked) = (p.clone(), acked.clone());
        std::thread::spawn(move || {
            for n in 1..=3000u64 {
                let mut blk = vec![0u8; 4096];
                blk[..8].copy_from_slice(&n.to_le_bytes());
                p.write(id, (n % 16) * 4096, &blk).unwrap();
                p.write(id, 512 * 4096, &blk).unwrap();
                acked.store(n, Ordering::SeqCst);
            }
        })
    };
    let noise = {
        let p = p.clone();
        std::thread::spawn(move || {
            for n in 0..3000u64 {
                p.write(other, (n % 64) * 4096, &[n as u8; 4096]).unwrap();
            }
        })
    };
    let mut snaps = Vec::new();
    for i in 0..20 {
        let lo = acked.load(Ordering::SeqCst);
        let s = p
            .snapshot(id, &format!("a@{i}"), VolumeOptions::default())
            .unwrap();
        let hi = acked.load(Ordering::SeqCst);
        snaps.push((s.id, lo, hi));
    }
    writer.join().unwrap();
    noise.join().unwrap();
    for (sid, lo, hi) in snaps {
        let mut buf = [0u8; 4096];
        p.read(sid, 512 * 4096, &mut buf).unwrap();
        let n = u64::from_le_bytes(buf[..8].try_into().unwrap());
        assert!(
            n >= lo && n <= hi + 1,
            "snapshot holds write {n}, acknowledged range {lo}..={hi}"
        );
    }
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn storage_keeps_names_unique_and_counts_users() {
    let s = Storage::new();
    let (_d1, p1) = pool(32 * MIB);
    let d2 = Arc::new(MemDevice::new(32 * MIB));
    let p2 = Pool::create(d2, "p1", opts()).unwrap();
    s.add_pool(p1.pool.clone()).unwrap();
    s.add_pool(p2.clone()).unwrap();
    let dup = Pool::create(Arc::new(MemDevice::new(32 * MIB)), "p1", opts()).unwrap();
    assert_eq!(
        s.add_pool(dup).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let (_, v) = s
        .create_volume("p0", "shared name", MIB, VolumeOptions::default())
        .unwrap();
    let e = s
        .create_volume("p1", "shared name", MIB, VolumeOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let (_, w) = s
        .create_volume("p1", "other", MIB, VolumeOptions::default())
        .unwrap();
    assert_eq!(
        s.rename_volume(w.id, "shared name").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        s.create_volume("nope", "x", MIB, VolumeOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let (pool_of, found) = s.find_volume("shared name").unwrap();
    assert_eq!((pool_of.name(), found.id), ("p0".to_string(), v.id));
    assert_eq!(s.find_volume_by_id(w.id).unwrap().0.name(), "p1");
    let (sp, snap) = s.snapshot(v.id, "snap", VolumeOptions::default()).unwrap();
    assert_eq!(sp.name(), "p0");
    let l1 = s.lease(v.id).unwrap();
    let l2 = s.lease(v.id).unwrap();
    assert_eq!(s.users(v.id), 2);
    assert_eq!(s.delete_volume(v.id).unwrap_err().kind(), ErrorKind::InUse);
    drop(l1);
    drop(l2);
    assert_eq!(s.users(v.id), 0);
    s.delete_volume(v.id).unwrap();
    s.delete_volume(snap.id).unwrap();
    assert!(s.find_volume("shared name").is_none());
    assert_eq!(s.pools().len(), 2);
    s.close().unwrap();
    assert_eq!(p1.flush().unwrap_err().kind(), ErrorKind::PoolFailed);
}

#[test]
fn large_deletes_reclaim_in_bounded_steps_and_keep_shared_data() {
    let (_dev, p) = pool(128 * MIB);
    let id = vol(&p, "big", 64 * MIB);
    // 6000 separate extents: every other block.
    for i in 0..6000u64 {
        p.write(id, i * 8192, &[(i % 251) as u8 + 1; 4096]).unwrap();
    }
    p.flush().unwrap();
    let used = p.info().data_bytes_used;
    let s1 = p.snapshot(id, "big@1", VolumeOptions::default()).unwrap();
    p.write(id, 0, &[0xee; 4096]).unwrap();
    let s2 = p.snapshot(id, "big@2", VolumeOptions::default()).unwrap();
    // The first snapshot shares all but one leaf path with the volume.
    p.delete_volume(s1.id).unwrap();
    while p.info().reclaim_pending {
        assert!(p.check().unwrap().is_clean());
        p.wait_reclaim().unwrap();
    }
    assert_eq!(
        p.info().data_bytes_used,
        used,
        "only the overwritten block was freed and re-used"
    );
    // Now delete the volume itself: its tree is shared with the second snapshot.
    p.delete_volume(id).unwrap();
    p.wait_reclaim().unwrap();
    let mut buf = [0u8; 4096];
    p.read(s2.id, 0, &mut buf).unwrap();
    assert_eq!(buf, [0xee; 4096]);
    p.read(s2.id, 5999 * 8192, &mut buf).unwrap();
    assert_eq!(buf, [(5999 % 251) as u8 + 1; 4096]);
    assert!(p.check().unwrap().is_clean());
    // And the last owner: everything goes back.
    p.delete_volume(s2.id).unwrap();
    p.wait_reclaim().unwrap();
    let info = p.info();
    assert_eq!(info.data_bytes_used, 0);
    assert!(p.check().unwrap().is_clean());
}

/// Volume trees three levels deep (tens of thousands of extents), with a snapshot, random
/// overwrites and trims, a reopen and a reclaim, against a block -> fill-byte model.
#[test]
fn deep_volume_trees_against_a_model() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let (dev, p) = pool(512 * MIB);
    let blocks = 120_000u64;
    let id = vol(&p, "deep", blocks * 4096);
    let mut model = std::collections::HashMap::new();
    for b in (0..blocks).step_by(2) {
        let f = rng.gen_range(1..=255u8);
        p.write(id, b * 4096, &[f; 4096]).unwrap();
        model.insert(b, f);
    }
    p.flush().unwrap();
    let snap = p.snapshot(id, "deep@1", VolumeOptions::default()).unwrap();
    let frozen = model.clone();
    for _ in 0..20_000 {
        let b = rng.gen_range(0..blocks - 8);
        if rng.gen_bool(0.8) {
            let f = rng.gen_range(1..=255u8);
            p.write(id, b * 4096, &[f; 4096]).unwrap();
            model.insert(b, f);
        } else {
            let n = rng.gen_range(1..8u64);
            p.trim(id, b * 4096, n * 4096).unwrap();
            for x in b..b + n {
                model.remove(&x);
            }
        }
    }
    p.close().unwrap();
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    let mut buf = vec![0u8; 64 * 4096];
    for (vid, m) in [(id, &model), (snap.id, &frozen)] {
        for chunk in 0..blocks / 64 {
            p.read(vid, chunk * 64 * 4096, &mut buf).unwrap();
            for i in 0..64u64 {
                let want = m.get(&(chunk * 64 + i)).copied().unwrap_or(0);
                let got = &buf[(i * 4096) as usize..((i + 1) * 4096) as usize];
                assert!(got.iter().all(|x| *x == want), "block {}", chunk * 64 + i);
            }
        }
    }
    assert!(p.check().unwrap().is_clean());
    p.delete_volume(id).unwrap();
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    p.delete_volume(snap.id).unwrap();
    p.wait_reclaim().unwrap();
    assert_eq!(p.info().data_bytes_used, 0);
    assert!(p.check().unwrap().is_clean());
}

/// Reads run outside the pool lock: while writers overwrite and trim and commits free and reuse
/// blocks, a read of block `b` must only ever see zeros or data written to block `b`.
#[test]
fn concurrent_reads_never_see_reused_blocks() {
    let dev = Arc::new(Yielding(MemDevice::new(4 * MIB)));
    let p = support::create(dev, "p0", opts()).unwrap();
    let id = vol(&p, "hot", 256 * 4096);
    let stamp = |b: u64, v: u64| {
        let mut blk = vec![0u8; 4096];
        for w in blk.chunks_mut(16) {
            w[..8].copy_from_slice(&b.to_le_bytes());
            w[8..].copy_from_slice(&v.to_le_bytes());
        }
        blk
    };
    let done = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (p, done) = (p.clone(), done.clone());
            std::thread::spawn(move || {
                for v in 0..4000u64 {
                    let b = (v * 7 + t * 13) % 256;
                    if v % 5 == 0 {
                        p.trim(id, b * 4096, 4096).unwrap();
                    } else {
                        p.write(id, b * 4096, &stamp(b, v)).unwrap();
                    }
                    if v % 50 == 0 {
                        p.flush().unwrap();
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u64)
        .map(|t| {
            let (p, done) = (p.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = vec![0u8; 8 * 4096];
                while done.load(Ordering::SeqCst) < 2 || n < 1000 {
                    let b = (n * 11 + t) % 248;
                    p.read(id, b * 4096, &mut buf).unwrap();
                    for (i, blk) in buf.chunks(4096).enumerate() {
                        let owner = u64::from_le_bytes(blk[..8].try_into().unwrap());
                        let zero = blk.iter().all(|x| *x == 0);
                        assert!(
                            zero || owner == b + i as u64,
                            "block {} read data of block {owner}",
                            b + i as u64
                        );
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for h in writers.into_iter().chain(readers) {
        h.join().unwrap();
    }
    assert!(p.check().unwrap().is_clean());
}

/// On a pool whose data space is exhausted, writes fail with NoSpace one by one while trim,
/// snapshot delete and volume delete still succeed and give the space back.
#[test]
fn a_full_pool_still_deletes_and_trims() {
    let (_dev, p) = pool(16 * MIB);
    let a = vol(&p, "a", 64 * MIB);
    let chunk = vec![1u8; 256 * 1024];
    let mut written = 0u64;
    while p.write(a, written, &chunk).is_ok() {
        written += chunk.len() as u64;
    }
    assert!(written > 8 * MIB, "most of the pool took data: {written}");
    let snap = p.snapshot(a, "a@1", VolumeOptions::default()).unwrap();
    // Overwrite the shared data block by block until nothing is left.
    let mut failures = 0;
    for b in 0..written / 4096 {
        if let Err(e) = p.write(a, b * 4096, &[2u8; 4096]) {
            assert_eq!(e.kind(), ErrorKind::NoSpace);
            failures += 1;
        }
    }
    assert!(failures > 0);
    let info = p.info();
    assert!(info.data_bytes_free < 64 * 1024, "{info:?}");
    p.trim(a, 0, MIB).unwrap();
    p.delete_volume(snap.id).unwrap();
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
    p.write(a, 0, &[3u8; 4096]).unwrap();
    p.delete_volume(a).unwrap();
    p.wait_reclaim().unwrap();
    let info = p.info();
    assert_eq!(info.data_bytes_used, 0);
    assert!(info.data_bytes_free > 8 * MIB);
    assert!(p.check().unwrap().is_clean());
}

/// A reclaim interrupted by a close resumes after reopen; the half-dropped tombstone tree
/// passes `check` at every point.
#[test]
fn interrupted_reclaim_resumes_after_reopen() {
    let (dev, p) = pool(128 * MIB);
    let id = vol(&p, "big", 64 * MIB);
    for i in 0..7000u64 {
        p.write(id, i * 8192, &[1u8; 4096]).unwrap();
    }
    let keep = vol(&p, "keep", MIB);
    p.write(keep, 0, &[9u8; 4096]).unwrap();
    p.flush().unwrap();
    p.pause_reclaim(true);
    p.delete_volume(id).unwrap();
    assert!(
        p.reclaim_once().unwrap(),
        "7000 extents take more than one transaction"
    );
    p.close().unwrap();
    drop(p);
    let report = check_device(dev.clone()).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings.first());
    let p = support::open(dev, opts()).unwrap();
    assert!(p.check().unwrap().is_clean());
    p.wait_reclaim().unwrap();
    assert!(!p.info().reclaim_pending);
    assert_eq!(p.info().data_bytes_used, 4096);
    let mut buf = [0u8; 4096];
    p.read(keep, 0, &mut buf).unwrap();
    assert_eq!(buf, [9u8; 4096]);
    assert!(p.check().unwrap().is_clean());
}

/// Writes run outside the pool lock: writers on shared and separate volumes, with flushes,
/// snapshots and deletes racing them; every acknowledged write is there afterwards, across a
/// reopen, and `check` is clean.
#[test]
fn concurrent_writers_keep_every_acknowledged_write() {
    let mem = Arc::new(Yielding(MemDevice::new(64 * MIB)));
    let p = support::create(mem.clone(), "p0", opts()).unwrap();
    let shared = vol(&p, "shared", 256 * 4096);
    let stamp = |v: u64| vec![(v % 250) as u8 + 1; 4096];
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let own = vol(&p, &format!("own{t}"), 64 * 4096);
                let mut last = std::collections::HashMap::new();
                for v in 0..600u64 {
                    // Thread t owns blocks t, t + 4, ... of the shared volume.
                    let b = (v * 5 % 64) * 4 + t;
                    p.write(shared, b * 4096, &stamp(v)).unwrap();
                    p.write(own, (v % 64) * 4096, &stamp(v + 1)).unwrap();
                    last.insert(b, v);
                }
                (own, last)
            })
        })
        .collect();
    let churn = {
        let p = p.clone();
        std::thread::spawn(move || {
            for i in 0..30 {
                let s = p
                    .snapshot(shared, &format!("s{i}"), VolumeOptions::default())
                    .unwrap();
                p.flush().unwrap();
                if i % 2 == 0 {
                    p.delete_volume(s.id).unwrap();
                }
            }
        })
    };
    let results: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    churn.join().unwrap();
    p.close().unwrap();
    drop(p);
    let p = support::open(mem, opts()).unwrap();
    let mut buf = vec![0u8; 4096];
    for (own, last) in results {
        for (b, v) in last {
            p.read(shared, b * 4096, &mut buf).unwrap();
            assert!(buf == stamp(v), "shared block {b} holds {}", buf[0]);
        }
        for b in 0..64u64 {
            p.read(own, b * 4096, &mut buf).unwrap();
            // The last write to block b of its own volume: the largest v < 600 with v % 64 == b.
            let v = if 576 + b < 600 { 576 + b } else { 512 + b };
            assert!(buf == stamp(v + 1), "own block {b} holds {}", buf[0]);
        }
    }
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
}

/// Concurrent 512-byte writes to different sectors of the same 4 KiB blocks all survive (the
/// read-modify-write of a block is atomic with respect to other writes).
#[test]
fn concurrent_sector_writes_to_one_block_all_survive() {
    let mem = Arc::new(Yielding(MemDevice::new(32 * MIB)));
    let p = support::create(mem, "p0", opts()).unwrap();
    let o = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let id = p.create_volume("s", 64 * 4096, o).unwrap().id;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for round in 0..200u64 {
                    for b in 0..4u64 {
                        // Thread t owns sectors 2t and 2t + 1 of every block.
                        let sector = b * 8 + 2 * t + round % 2;
                        p.write(id, sector * 512, &[round as u8 + 1; 512]).unwrap();
                    }
                    if round % 40 == 0 {
                        p.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let mut buf = vec![0u8; 4 * 4096];
    p.read(id, 0, &mut buf).unwrap();
    for (i, sector) in buf.chunks(512).enumerate() {
        // Each sector's last write came in round 198 (even sectors) or 199 (odd ones).
        let last = 198 + (i % 2) as u8 + 1;
        assert!(
            sector.iter().all(|x| *x == last),
            "sector {i} holds {}",
            sector[0]
        );
    }
    assert!(p.check().unwrap().is_clean());
}

/// An EIO on a data write fails that write only; an EIO on a metadata write fails the pool
/// until it is reopened, which finds the last commit intact.
#[test]
fn data_write_errors_fail_the_request_metadata_write_errors_fail_the_pool() {
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", MIB);
    p.write(id, 0, &[1u8; 4096]).unwrap();
    p.flush().unwrap();
    dev.fail_writes_after(0);
    assert_eq!(
        p.write(id, 4096, &[2u8; 4096]).unwrap_err().kind(),
        ErrorKind::Io
    );
    let mut buf = vec![0u8; 4096];
    p.read(id, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; 4096], "the pool still serves");
    p.trim(id, 0, 4096).unwrap();
    assert_eq!(
        p.flush().unwrap_err().kind(),
        ErrorKind::Io,
        "the commit's writes fail"
    );
    dev.clear_faults();
    assert_eq!(
        p.read(id, 0, &mut buf).unwrap_err().kind(),
        ErrorKind::PoolFailed
    );
    assert_eq!(p.flush().unwrap_err().kind(), ErrorKind::PoolFailed);
    drop(p);
    let p = support::open(dev, opts()).unwrap();
    p.read(id, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; 4096], "the trim was never committed");
    assert!(p.check().unwrap().is_clean());
}

/// Freed data is punched out of the device a wholly free layout chunk at a time: scattered
/// overwrites (redirected after a snapshot, the snapshot then deleted) discard nothing, deleting
/// a volume discards its space but the chunk the allocator is filling.
#[test]
fn only_wholly_free_chunks_are_discarded() {
    let (dev, p) = pool(64 * MIB);
    let v = vol(&p, "v", 8 * MIB);
    p.write(v, 0, &vec![1u8; 4 * MIB as usize]).unwrap();
    p.flush().unwrap();
    let before = dev.stats().discard_bytes;
    let snap = p.snapshot(v, "s", VolumeOptions::default()).unwrap().id;
    for b in (0..1024u64).step_by(7) {
        p.write(v, b * 4096, &[2u8; 4096]).unwrap();
    }
    p.flush().unwrap();
    p.delete_volume(snap).unwrap();
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    assert!(p.allocated_blocks() < 1100 + p.info().metadata_bytes_used / 4096);
    assert_eq!(
        dev.stats().discard_bytes,
        before,
        "scattered frees are not punched"
    );
    p.delete_volume(v).unwrap();
    p.wait_reclaim().unwrap();
    p.flush().unwrap();
    let punched = dev.stats().discard_bytes - before;
    assert!(
        punched >= 3 * MIB,
        "a deleted volume's runs are punched ({punched} bytes)"
    );
    assert!(p.check().unwrap().is_clean());
}

/// A write that finds the pool full only because blocks freed in the open transaction are not
/// reusable yet commits and succeeds; a pool that is really full still answers `NoSpace`.
#[test]
fn overwrites_of_a_nearly_full_pool_commit_instead_of_failing() {
    let (_dev, p) = pool(16 * MIB);
    let v = vol(&p, "v", 11 * MIB);
    for round in 1..=3u8 {
        for mib in 0..11u64 {
            p.write(v, mib * MIB, &vec![round; MIB as usize])
                .unwrap_or_else(|e| panic!("round {round} MiB {mib}: {e}"));
        }
        // Durable: the next round redirects every block (no in-place overwrite).
        p.flush().unwrap();
    }
    let mut buf = vec![0u8; MIB as usize];
    for mib in 0..11u64 {
        p.read(v, mib * MIB, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 3), "MiB {mib}");
    }
    let s = p.snapshot(v, "s", VolumeOptions::default()).unwrap();
    let mut full = None;
    for mib in 0..11u64 {
        if let Err(e) = p.write(v, mib * MIB, &vec![4u8; MIB as usize]) {
            full = Some(e.kind());
            break;
        }
    }
    assert_eq!(full, Some(ErrorKind::NoSpace), "snapshot pins the old data");
    p.delete_volume(s.id).unwrap();
    p.wait_reclaim().unwrap();
    assert!(p.check().unwrap().is_clean());
}

/// `PoolInfo::volume_changes` moves with every change to a live volume and with nothing else
/// (data writes, reads, reclaim), and each opening counts from its own value.
#[test]
fn volume_changes_count_directory_changes_only() {
    let (dev, p) = pool(64 * MIB);
    let mut last = p.info().volume_changes;
    let changed = |p: &Pool, last: &mut u64, what: &str| {
        let now = p.info().volume_changes;
        assert_eq!(now, *last + 1, "{what}");
        *last = now;
    };
    let id = vol(&p, "a", 8 * MIB);
    changed(&p, &mut last, "create");
    p.write(id, 0, &[1u8; 4096]).unwrap();
    p.flush().unwrap();
    p.volumes();
    assert_eq!(
        p.info().volume_changes,
        last,
        "data and reads change no volume"
    );
    p.set_tag(id, b"t").unwrap();
    changed(&p, &mut last, "tag");
    p.set_hidden(id, true).unwrap();
    changed(&p, &mut last, "hide");
    p.rename_volume(id, "b").unwrap();
    changed(&p, &mut last, "rename");
    p.resize_volume(id, 16 * MIB).unwrap();
    changed(&p, &mut last, "resize");
    let snap = p.snapshot(id, "b@1", VolumeOptions::default()).unwrap();
    changed(&p, &mut last, "snapshot");
    p.restore(id, snap.id).unwrap();
    changed(&p, &mut last, "restore");
    p.delete_volume(snap.id).unwrap();
    changed(&p, &mut last, "delete");
    while p.info().reclaim_pending {
        p.reclaim_once().unwrap();
    }
    assert_eq!(p.info().volume_changes, last, "reclaim changes no volume");
    assert_eq!(p.info().volume_count, 1);
    p.close().unwrap();
    drop(p);
    let p = Pool::open(dev, opts()).unwrap();
    assert_ne!(p.info().volume_changes, last, "a new opening counts anew");
}

#[test]
fn fragmented_reads_are_exact_merged_and_one_batch() {
    const BLOCKS: u64 = 256;
    let (dev, p) = pool(64 * MIB);
    let id = vol(&p, "a", 4 * MIB);
    let block =
        |tag: u64| -> Vec<u8> { (0..BLOCK_SIZE).map(|i| (i * 7 + tag * 13) as u8).collect() };
    let mut model = vec![0u8; (BLOCKS * BLOCK_SIZE) as usize];
    for b in 0..BLOCKS {
        let data = block(b);
        p.write(id, b * BLOCK_SIZE, &data).unwrap();
        model[(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize].copy_from_slice(&data);
    }
    p.flush().unwrap();
    p.snapshot(id, "a@1", VolumeOptions::default()).unwrap();
    // Every third block redirected (the snapshot shares the rest), every seventh trimmed to a
    // hole: the volume's 1 MiB is a patchwork of extents far apart on the device.
    for b in (0..BLOCKS).step_by(3) {
        let data = block(1000 + b);
        p.write(id, b * BLOCK_SIZE, &data).unwrap();
        model[(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize].copy_from_slice(&data);
    }
    for b in (0..BLOCKS).step_by(7) {
        p.trim(id, b * BLOCK_SIZE, BLOCK_SIZE).unwrap();
        model[(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize].fill(0);
    }
    let mapped = p.block_status(id, 0, BLOCKS * BLOCK_SIZE).unwrap();
    let mapped_runs = mapped.iter().filter(|e| e.mapped).count() as u64;
    let before = dev.stats();
    let mut buf = vec![0xEEu8; (BLOCKS * BLOCK_SIZE) as usize];
    p.read(id, 0, &mut buf).unwrap();
    let after = dev.stats();
    assert!(buf == model, "a fragmented read returns exactly the data");
    assert_eq!(after.read_batches - before.read_batches, 1, "one batch");
    let reads = after.reads - before.reads;
    assert!(reads > 1 && reads < BLOCKS, "{reads} device reads");
    assert!(
        after.read_bytes - before.read_bytes
            <= mapped.iter().filter(|e| e.mapped).map(|e| e.len).sum(),
        "holes are not read from the device"
    );
    assert!(
        mapped_runs >= BLOCKS / 7,
        "the volume has holes: {mapped_runs} mapped runs"
    );
    // Reads starting inside an extent, at every offset, agree with the model too.
    for start in [1u64, 2, 5, 100, 250] {
        let len = ((BLOCKS - start) * BLOCK_SIZE) as usize;
        let mut part = vec![0xEEu8; len];
        p.read(id, start * BLOCK_SIZE, &mut part).unwrap();
        let at = (start * BLOCK_SIZE) as usize;
        assert!(part[..] == model[at..at + len], "read from block {start}");
    }
    // A hole alone reads as zeros without touching the device.
    let before = dev.stats();
    let mut hole = vec![0xEEu8; BLOCK_SIZE as usize];
    p.read(id, 7 * BLOCK_SIZE, &mut hole).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    assert_eq!(
        dev.stats().reads,
        before.reads,
        "a hole costs no device read"
    );
}
