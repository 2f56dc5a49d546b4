//! A pool file on a host file system that fills up: metadata outside the preallocated reserve
//! room is preallocated before it is used, so a full host refuses a call (`NoSpace`) and never
//! fails a metadata write, hence never the pool.
//!
//! `HostFile` stands for a sparse pool file: a block has backing storage once written or
//! preallocated (until discarded), and the host has a bounded number of blocks left to give;
//! past it, writes to unbacked blocks and preallocations fail with ENOSPC, as on a full file
//! system.

mod support;
use support::block_of;

use std::collections::HashSet;
use std::sync::Arc;

use cairn_engine::{
    BlockDevice, ErrorKind, Pool, PoolOptions, VolumeId, VolumeInfo, VolumeOptions, BLOCK_SIZE,
};
use cairn_io::{IoError, IoErrorKind, IoResult, MemDevice};
use parking_lot::Mutex;

const MIB: u64 = 1 << 20;
const BS: u64 = BLOCK_SIZE;

#[derive(Debug)]
struct HostFile {
    mem: MemDevice,
    space: Mutex<HostSpace>,
}

#[derive(Debug, Default)]
struct HostSpace {
    backed: HashSet<u64>,
    /// Blocks the host can still give; `None`: unbounded.
    left: Option<u64>,
    /// Preallocation requests that were granted.
    preallocations: u64,
}

impl HostSpace {
    /// Backs the blocks of `[offset, offset + len)`, all or none.
    fn back(&mut self, op: &'static str, offset: u64, len: u64) -> IoResult<()> {
        let blocks = offset / BS..(offset + len).div_ceil(BS);
        let wanted = blocks.clone().filter(|b| !self.backed.contains(b)).count() as u64;
        if let Some(left) = self.left.as_mut() {
            if wanted > *left {
                return Err(IoError::new(IoErrorKind::NoSpace, op, offset, len));
            }
            *left -= wanted;
        }
        self.backed.extend(blocks);
        Ok(())
    }
}

impl HostFile {
    fn new(size_bytes: u64) -> HostFile {
        HostFile {
            mem: MemDevice::new(size_bytes),
            space: Mutex::new(HostSpace::default()),
        }
    }

    /// The host has `blocks` more blocks to give from now on.
    fn fill_host(&self, blocks: Option<u64>) {
        self.space.lock().left = blocks;
    }

    fn preallocations(&self) -> u64 {
        self.space.lock().preallocations
    }
}

impl BlockDevice for HostFile {
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
        self.space.lock().back("write", offset, data.len() as u64)?;
        self.mem.write_at(offset, data)
    }
    fn flush(&self) -> IoResult<()> {
        self.mem.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        self.mem.discard(offset, len)?;
        let mut space = self.space.lock();
        for b in offset / BS..(offset + len) / BS {
            if space.backed.remove(&b) {
                space.left = space.left.map(|l| l + 1);
            }
        }
        Ok(())
    }
    fn preallocate(&self, offset: u64, len: u64) -> IoResult<()> {
        let mut space = self.space.lock();
        space.back("preallocate", offset, len)?;
        space.preallocations += 1;
        Ok(())
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 4 << 20,
        preallocate: false,
    }
}

/// Grows the metadata past the reserve's room: one mapping entry per block, then
/// snapshot-and-overwrite rounds that shadow every leaf and keep the old ones in the snapshots.
fn grow_metadata_past_the_reserve(p: &support::OnePool, v: VolumeId, blocks: u64) -> u64 {
    for b in (0..blocks).step_by(2) {
        p.write(v, b * BS, &block_of(b + 1)).unwrap();
    }
    let mut round = 0;
    while p.info().metadata_bytes_used <= p.info().metadata_bytes_total + 64 * BS {
        p.snapshot(v, &format!("s{round}"), VolumeOptions::default())
            .unwrap();
        for b in (round % 16..blocks).step_by(16).map(|b| b & !1) {
            p.write(v, b * BS, &block_of(b + 1)).unwrap();
        }
        p.flush().unwrap();
        round += 1;
        assert!(round < 200, "metadata never left the reserve's room");
    }
    round
}

/// Trims one stamped block in every 64 (each trim shadows a leaf the snapshots share, freeing
/// nothing, so the metadata grows); returns the blocks it unmapped (trim is advisory).
fn spread_trims(p: &Pool, v: VolumeId, blocks: u64, round: u64) -> cairn_engine::Result<Vec<u64>> {
    let mut unmapped = Vec::new();
    for b in (2 * (round % 32)..blocks).step_by(64) {
        p.trim(v, b * BS, BS)?;
        if !p.block_status(v, b * BS, BS)?[0].mapped {
            unmapped.push(b);
        }
    }
    Ok(unmapped)
}

/// Every stamped block reads its stamp, every other block zeros.
fn assert_volume(p: &Pool, v: VolumeId, blocks: u64, zeroed: &HashSet<u64>) {
    let mut buf = vec![0u8; BS as usize];
    for b in 0..blocks {
        p.read(v, b * BS, &mut buf).unwrap();
        if b % 2 == 0 && !zeroed.contains(&b) {
            assert_eq!(buf, block_of(b + 1), "block {b}");
        } else {
            assert!(buf.iter().all(|&x| x == 0), "block {b} reads zeros");
        }
    }
}

#[test]
fn a_full_host_refuses_calls_and_never_fails_the_pool() {
    let dev = Arc::new(HostFile::new(32 * MIB));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let blocks = 4096;
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    let rounds = grow_metadata_past_the_reserve(&p, v, blocks);
    let preallocated = dev.preallocations();
    assert!(
        preallocated > 1,
        "metadata outside the reserve is preallocated"
    );

    // The host is full: only what is backed already can be written.
    dev.fill_host(Some(0));
    let mut refused = 0;
    let mut zeroed = HashSet::new();
    for round in 0..400u64 {
        let b = (round * 2 * 37) % blocks;
        let res = match round % 4 {
            0 => p
                .snapshot(v, &format!("t{round}"), VolumeOptions::default())
                .map(|_| ()),
            1 => p.write_zeroes(v, b * BS, 8 * BS).map(|()| {
                zeroed.extend((b..b + 8).filter(|x| x % 2 == 0));
            }),
            2 => spread_trims(&p, v, blocks, round).map(|t| zeroed.extend(t)),
            _ => p.flush(),
        };
        match res {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "round {round}: {e}");
                // The host's refusal, not the pool's own metadata reserve.
                assert!(
                    format!("{e:#}").contains("backing storage"),
                    "round {round}: {e}"
                );
                refused += 1;
            }
        }
        if round % 16 == 0 {
            assert_volume(&p, v, blocks, &zeroed);
        }
    }
    assert_volume(&p, v, blocks, &zeroed);
    assert!(refused > 0, "the full host refused nothing");

    // Space comes back on the host: everything commits, and survives a reopen.
    dev.fill_host(None);
    p.flush().unwrap();
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(dev.clone(), opts()).unwrap();
    assert_volume(&p, v, blocks, &zeroed);
    assert!(p.volume_by_name(&format!("s{}", rounds - 1)).is_some());
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}

/// A commit the full host refuses keeps its transaction (the flush answers `NoSpace`, the pool
/// stays healthy); a close that meets it reports it, and the pool reopens at its last commit.
#[test]
fn a_refused_commit_keeps_the_pool_and_close_reports_it() {
    let dev = Arc::new(HostFile::new(32 * MIB));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let blocks = 4096;
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    grow_metadata_past_the_reserve(&p, v, blocks);
    dev.fill_host(Some(0));
    let (mut durable, mut open) = (HashSet::new(), HashSet::new());
    let mut refused_flush = false;
    for round in 0..400u64 {
        let b = (round * 2 * 37) % blocks;
        if p.write_zeroes(v, b * BS, 8 * BS).is_ok() {
            open.extend((b..b + 8).filter(|x| x % 2 == 0));
        }
        if p.snapshot(v, &format!("t{round}"), VolumeOptions::default())
            .is_ok()
        {
            // The snapshot committed everything before it.
            durable.clone_from(&open);
            open.extend(spread_trims(&p, v, blocks, round).unwrap());
        }
        match p.flush() {
            Ok(()) => durable.clone_from(&open),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NoSpace, "round {round}: {e}");
                refused_flush = true;
                break;
            }
        }
    }
    assert!(refused_flush, "the full host never refused a commit");
    // Flushes at once share the refused commit, or each runs its own: all are refused alike.
    std::thread::scope(|s| {
        let flushes: Vec<_> = (0..8).map(|_| s.spawn(|| p.flush())).collect();
        for f in flushes {
            let e = f.join().unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
        }
    });
    // Healthy: reads answer, and show the writes of the open transaction.
    assert!(p.info().failed.is_none());
    assert_volume(&p, v, blocks, &open);
    let e = p.close().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    drop(p);
    dev.fill_host(None);
    let p = support::open(dev.clone(), opts()).unwrap();
    assert_volume(&p, v, blocks, &durable);
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}

/// One change of the volume directory, of kind `kind` (0..10), on `v` (whose data stays) or on
/// `small` (and its snapshot `small-snap`).
fn directory_change(
    p: &support::OnePool,
    (v, small): (VolumeId, VolumeId),
    kind: u64,
    round: u64,
) -> cairn_engine::Result<()> {
    let tagged = VolumeOptions {
        tag: format!("replica {round}").into_bytes(),
        read_only: true,
        ..VolumeOptions::default()
    };
    let odd = round % 2 == 1;
    match kind {
        0 => p
            .create_volume(&format!("c{round}"), 64 * BS, tagged)
            .map(drop),
        1 => {
            let kept = |s: &VolumeInfo| s.id == v || s.id == small || s.name == "small-snap";
            let mut others = p.volumes().into_iter().filter(|s| !kept(s));
            p.delete_volume(others.next_back().expect("a volume to delete").id)
        }
        2 => p.snapshot(v, &format!("t{round}"), tagged).map(drop),
        3 => p
            .snapshot(v, &format!("k{round}"), VolumeOptions::default())
            .map(drop),
        4 => p.rename_volume(small, &format!("small{round}")).map(drop),
        5 => p.resize_volume(small, (64 + round) * BS).map(drop),
        6 => p.set_tag(small, &round.to_le_bytes()).map(drop),
        7 => p.set_hidden(small, odd).map(drop),
        8 => p.set_read_only(small, odd).map(drop),
        _ => {
            let snap = p.volume_by_name("small-snap").unwrap().id;
            p.set_read_only(small, false)?;
            p.restore(small, snap)
        }
    }
}

/// A directory change whose commit the full host refuses changes nothing: the call answers
/// `NoSpace`, and neither at once, nor after the next commit that succeeds, nor after a reopen
/// does the pool show any of it (records, names, sizes, flags, tags, the restored tree).
#[test]
fn a_directory_change_the_full_host_refuses_changes_nothing() {
    let dev = Arc::new(HostFile::new(32 * MIB));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let blocks = 4096;
    let v = p
        .create_volume("v", blocks * BS, VolumeOptions::default())
        .unwrap()
        .id;
    grow_metadata_past_the_reserve(&p, v, blocks);
    let small = p
        .create_volume("small", 16 * BS, VolumeOptions::default())
        .unwrap()
        .id;
    p.write(small, 0, &block_of(7)).unwrap();
    p.snapshot(small, "small-snap", VolumeOptions::default())
        .unwrap();
    p.write(small, 0, &block_of(8)).unwrap();
    p.flush().unwrap();
    dev.fill_host(Some(0));
    let (mut refused, mut zeroed) = ([0u32; 10], HashSet::new());
    for round in 0..400u64 {
        // Snapshots, write-zeroes and trims that grow the metadata (they shadow shared leaves),
        // so commits need new blocks.
        let b = (round * 2 * 37) % blocks;
        if let Err(e) = p.snapshot(v, &format!("g{round}"), VolumeOptions::default()) {
            assert_eq!(e.kind(), ErrorKind::NoSpace, "round {round}: {e}");
        }
        if p.write_zeroes(v, b * BS, 8 * BS).is_ok() {
            zeroed.extend((b..b + 8).filter(|x| x % 2 == 0));
        }
        zeroed.extend(spread_trims(&p, v, blocks, round).unwrap());
        let kind = round % 10;
        let before = p.volumes();
        if let Err(e) = directory_change(&p, (v, small), kind, round) {
            assert_eq!(e.kind(), ErrorKind::NoSpace, "round {round}: {e}");
            assert!(format!("{e:#}").contains("backing storage"), "{e}");
            assert_eq!(p.volumes(), before, "round {round}: refused, yet changed");
            refused[kind as usize] += 1;
        }
        if refused.iter().all(|&n| n > 0) {
            break;
        }
    }
    eprintln!("refused by kind: {refused:?}");
    assert!(refused.iter().all(|&n| n > 0), "refused {refused:?}");
    let want = p.volumes();
    let mut small_data = vec![0u8; BS as usize];
    p.read(small, 0, &mut small_data).unwrap();

    // Space comes back: the next commit makes durable what was acknowledged, nothing else.
    dev.fill_host(None);
    p.flush().unwrap();
    assert_eq!(p.volumes(), want);
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
    drop(p);
    let p = support::open(dev.clone(), opts()).unwrap();
    assert_eq!(p.volumes(), want);
    let mut buf = vec![0u8; BS as usize];
    p.read(small, 0, &mut buf).unwrap();
    assert_eq!(buf, small_data);
    assert_volume(&p, v, blocks, &zeroed);
    assert!(p.check().unwrap().is_clean());
    p.close().unwrap();
}
