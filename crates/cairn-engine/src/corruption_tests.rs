//! Damaged metadata, crafted: blocks sealed with the format's own sealing (so they pass the
//! checksum, type, address and generation checks) that make a tree cyclic, mis-levelled or too
//! tall, and CRC-valid blocks that are stale (an older version of a node copied back over its
//! address) or belong to another pool. Opening, reading and checking such a pool must answer
//! typed errors or findings — never recurse without end, never answer from the wrong block.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_io::{BlockDevice, MemDevice};

use crate::error::ErrorKind;
use crate::format::{Root, Seal, Superblock, VolumeRecord, SUPER_ADDRS};
use crate::limits::{BLOCK_SIZE_BYTES, BTREE_HEIGHT_MAX};
use crate::meta::{read_node, Meta};
use crate::node::{Node, Ptr, TreeKind, SPACE_VAL_GEN};
use crate::types::{PoolOptions, VolumeOptions};
use crate::{check_device, FindingKind, Pool};

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// Blocks written to volume "v": every other virtual block, so each is its own extent and the
/// mapping tree has two levels (a leaf holds 168 extents).
const SPREAD_BLOCKS: u64 = 400;

/// A closed pool with volume "v" (two-level mapping tree) and volume "w" (one block).
fn pool_with_deep_volume() -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(16 << 20));
    let p = Pool::create(dev.clone(), "c", opts()).unwrap();
    let v = p
        .create_volume("v", 4 << 20, VolumeOptions::default())
        .unwrap();
    for i in 0..SPREAD_BLOCKS {
        p.write(v.id, 2 * i * BLOCK_SIZE_BYTES, &[(i % 250) as u8 + 1; 4096])
            .unwrap();
    }
    let w = p
        .create_volume("w", 1 << 20, VolumeOptions::default())
        .unwrap();
    p.write(w.id, 0, &[9u8; 4096]).unwrap();
    p.close().unwrap();
    dev
}

fn durable(dev: &Arc<MemDevice>) -> Superblock {
    crate::format::read_superblock(dev.as_ref()).unwrap()
}

/// The mapping root of the volume named `name`.
fn volume_root(dev: &Arc<MemDevice>, name: &str) -> Root {
    let sb = durable(dev);
    let mut m = Meta::new(dev.clone(), sb.clone(), 64, false);
    let dir = m
        .range(TreeKind::Directory, sb.dir, 0, u64::MAX, usize::MAX)
        .unwrap();
    dir.iter()
        .map(|(_, v)| VolumeRecord::decode(v).unwrap())
        .find(|r| r.name == name)
        .expect("volume in the directory")
        .root
}

fn read(dev: &Arc<MemDevice>, kind: TreeKind, addr: u64) -> Node {
    let sb = durable(dev);
    read_node(dev.as_ref(), kind, addr, sb.gen, &sb.identity()).unwrap()
}

/// Writes `node` at `addr`, sealed as generation `node.gen` of the pool wrote it (so it
/// carries the generation its parent expects when that is the generation of the node it
/// replaces).
fn forge(dev: &Arc<MemDevice>, addr: u64, node: &Node) {
    let at = Seal {
        addr,
        gen: node.gen,
        uuid: durable(dev).uuid,
    };
    dev.write_at(addr * BLOCK_SIZE_BYTES, &node.encode(at))
        .unwrap();
}

/// The pointer through which `root` is reached.
fn ptr(root: Root) -> Ptr {
    crate::btree::root_ptr(root)
}

/// Rewrites the durable superblock with `f` applied, sealed in its own slot.
fn forge_superblock(dev: &Arc<MemDevice>, f: impl FnOnce(&mut Superblock)) {
    let mut sb = durable(dev);
    f(&mut sb);
    let slot = SUPER_ADDRS[(sb.gen % 2) as usize];
    dev.write_at(slot * BLOCK_SIZE_BYTES, &sb.encode()).unwrap();
}

fn finding_kinds(dev: &Arc<MemDevice>) -> Vec<FindingKind> {
    let report = check_device(dev.clone()).expect("check answers a report");
    report.findings.iter().map(|f| f.kind).collect()
}

/// Reads of "v" fail with `Corrupt` naming the tree path; the pool and "w" keep working.
fn assert_reads_fail_alone(dev: &Arc<MemDevice>, path_part: &str) {
    assert_fails_alone(dev, 0, &[path_part], FindingKind::TreeInvariant);
}

/// Reading block `vb` of "v" (and writing the block after it) fails with `Corrupt` whose
/// context holds every one of `parts`; the pool and "w" keep working, and the pool's check
/// reports `finding`.
fn assert_fails_alone(dev: &Arc<MemDevice>, vb: u64, parts: &[&str], finding: FindingKind) {
    let p = Pool::open(dev.clone(), opts()).expect("the directory is intact");
    let v = p.volume_by_name("v").unwrap();
    let mut buf = vec![0u8; 4096];
    let e = p.read(v.id, vb * BLOCK_SIZE_BYTES, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    for part in parts {
        assert!(e.context().contains(part), "{e}");
    }
    let e = p
        .write(v.id, (vb + 1) * BLOCK_SIZE_BYTES, &[1u8; 4096])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let w = p.volume_by_name("w").unwrap();
    p.read(w.id, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![9u8; 4096]);
    p.write(w.id, 4096, &[8u8; 4096]).unwrap();
    p.flush().unwrap();
    let report = p.check().unwrap();
    assert!(
        report.findings.iter().any(|f| f.kind == finding),
        "{:?}",
        report.findings
    );
    p.close().unwrap();
}

#[test]
fn a_volume_root_pointing_at_itself_fails_reads_not_the_pool() {
    let dev = pool_with_deep_volume();
    let root = volume_root(&dev, "v");
    assert_eq!(root.height, 2, "the test needs an internal root");
    let mut node = read(&dev, TreeKind::Volume, root.addr);
    node.children.iter_mut().for_each(|c| *c = ptr(root));
    forge(&dev, root.addr, &node);
    assert!(finding_kinds(&dev).contains(&FindingKind::TreeInvariant));
    assert_reads_fail_alone(&dev, &format!("tree path {}/{}", root.addr, root.addr));
}

#[test]
fn a_mislevelled_child_pointing_back_at_the_root_fails_reads_not_the_pool() {
    let dev = pool_with_deep_volume();
    let root = volume_root(&dev, "v");
    let top = read(&dev, TreeKind::Volume, root.addr);
    let Ptr { addr: first, gen } = top.children[0];
    // The first leaf becomes an internal node of the root's level whose child is the root.
    let cyclic = Node {
        kind: TreeKind::Volume,
        level: 1,
        keys: vec![0],
        children: vec![ptr(root)],
        vals: Vec::new(),
        gen,
    };
    forge(&dev, first, &cyclic);
    assert!(finding_kinds(&dev).contains(&FindingKind::TreeInvariant));
    assert_reads_fail_alone(&dev, &format!("tree path {}/{first}", root.addr));
}

#[test]
fn a_cyclic_directory_fails_open_and_check_reports_it() {
    let dev = pool_with_deep_volume();
    let sb = durable(&dev);
    assert_eq!(sb.dir.height, 1, "two records fit one leaf");
    // A directory of two levels whose root is its own only child: consistent heights at the
    // root, a cycle below it.
    let cyclic = Node {
        kind: TreeKind::Directory,
        level: 1,
        keys: vec![0, 1],
        children: vec![ptr(sb.dir), ptr(sb.dir)],
        vals: Vec::new(),
        gen: sb.dir.gen,
    };
    forge(&dev, sb.dir.addr, &cyclic);
    forge_superblock(&dev, |sb| sb.dir.height = 2);
    let e = Pool::open(dev.clone(), opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.context().contains("tree path"), "{e}");
    let report = check_device(dev.clone()).expect("check answers a report");
    let dir = format!("directory/node {}", sb.dir.addr);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::DoubleOwned
                && f.path == format!("{dir}/node {}", sb.dir.addr)),
        "{:?}",
        &report.findings[..2]
    );
}

#[test]
fn a_tree_taller_than_the_bound_is_refused() {
    let dev = pool_with_deep_volume();
    forge_superblock(&dev, |sb| sb.dir.height = BTREE_HEIGHT_MAX + 1);
    let e = Pool::open(dev.clone(), opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(finding_kinds(&dev).contains(&FindingKind::TreeInvariant));
}

/// Flips one byte of block `addr`: its checksum no longer matches.
fn damage(dev: &Arc<MemDevice>, addr: u64) {
    let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
    dev.read_at(addr * BLOCK_SIZE_BYTES, &mut b).unwrap();
    b[200] ^= 0x5a;
    dev.write_at(addr * BLOCK_SIZE_BYTES, &b).unwrap();
}

#[test]
fn a_bad_block_in_a_live_volume_fails_that_read_not_the_pool() {
    let dev = pool_with_deep_volume();
    let root = volume_root(&dev, "v");
    let leaves: Vec<u64> = read(&dev, TreeKind::Volume, root.addr)
        .children
        .iter()
        .map(|c| c.addr)
        .collect();
    damage(&dev, leaves[0]);
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let v = p.volume_by_name("v").unwrap();
    let mut buf = vec![0u8; 4096];
    let e = p.read(v.id, 0, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(
        e.context()
            .contains(&format!("tree path {}/{}", root.addr, leaves[0])),
        "{e}"
    );
    // Blocks mapped through the other leaves still read.
    let far = 2 * (SPREAD_BLOCKS - 1) * BLOCK_SIZE_BYTES;
    p.read(v.id, far, &mut buf).unwrap();
    assert_eq!(buf, vec![((SPREAD_BLOCKS - 1) % 250) as u8 + 1; 4096]);
    p.flush().unwrap();
    assert!(p
        .check()
        .unwrap()
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::BadBlock));
    p.close().unwrap();
}

#[test]
fn reclaim_meeting_a_bad_block_quarantines_the_tombstone_durably() {
    let dev = pool_with_deep_volume();
    let root = volume_root(&dev, "v");
    let leaves: Vec<u64> = read(&dev, TreeKind::Volume, root.addr)
        .children
        .iter()
        .map(|c| c.addr)
        .collect();
    {
        let p = Pool::open(dev.clone(), opts()).unwrap();
        p.pause_reclaim(true);
        p.delete_volume(p.volume_by_name("v").unwrap().id).unwrap();
        p.close().unwrap();
    }
    // The reclaimer drops the last leaf first: the bad block is met after a partial step.
    damage(&dev, leaves[1]);
    let before = crate::format::read_superblock(dev.as_ref()).unwrap();
    for round in 0..2u64 {
        let p = Pool::open(dev.clone(), opts()).unwrap();
        p.wait_reclaim().expect("the pool stays healthy");
        let info = p.info();
        assert_eq!(info.quarantined_volumes, 1, "round {round}");
        assert!(
            !info.reclaim_pending,
            "a quarantined tombstone is not retried"
        );
        assert_eq!(
            info.data_bytes_used / BLOCK_SIZE_BYTES,
            before.data_blocks + round,
            "nothing of the quarantined tree was freed: its space is lost, not half-reclaimed"
        );
        let w = p.volume_by_name("w").unwrap();
        p.write(w.id, 8192, &[3u8; 4096]).unwrap();
        p.flush().unwrap();
        let report = p.check().unwrap();
        let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&FindingKind::Quarantined), "{kinds:?}");
        assert!(kinds.contains(&FindingKind::BadBlock), "{kinds:?}");
        assert!(
            !kinds.contains(&FindingKind::RefcountMismatch)
                && !kinds.contains(&FindingKind::Dangling),
            "the failed step was undone: {:?}",
            report.findings
        );
        p.close().unwrap();
    }
}

/// Adds every volume node among the first `blocks` blocks of the device (where metadata goes
/// first: the reserve region) to `seen`, by address and generation.
fn record_volume_nodes(
    dev: &Arc<MemDevice>,
    blocks: u64,
    seen: &mut BTreeMap<(u64, u64), Vec<u8>>,
) {
    let sb = durable(dev);
    let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
    for a in 2..blocks {
        dev.read_at(a * BLOCK_SIZE_BYTES, &mut b).unwrap();
        if let Ok(n) = Node::decode(TreeKind::Volume, &b, a, sb.gen, &sb.identity()) {
            seen.entry((a, n.gen)).or_insert_with(|| b.clone());
        }
    }
}

/// The nodes of "v" (root, then leaves) with the first virtual block each one covers.
fn volume_nodes(dev: &Arc<MemDevice>) -> Vec<(u64, u64)> {
    let root = volume_root(dev, "v");
    let top = read(dev, TreeKind::Volume, root.addr);
    let leaves = top
        .children
        .iter()
        .zip(&top.keys)
        .map(|(c, k)| (c.addr, *k));
    std::iter::once((root.addr, 0)).chain(leaves).collect()
}

/// A lost write, replayed: after many commits, an address of the live tree of "v" is found
/// that held an earlier version of a volume node (same address, same pool, valid checksum,
/// an older generation); copying that version back over the live node is refused on read (the
/// parent expects the live node's generation) and reported by `check`, while the block by
/// itself still passes every check a version-1 reader made.
#[test]
fn a_stale_node_copied_back_over_its_address_is_refused() {
    let dev = pool_with_deep_volume();
    let region = 2 + durable(&dev).reserve_blocks;
    let mut seen = BTreeMap::new();
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let v = p.volume_by_name("v").unwrap();
    let mut found = None;
    for round in 0..1000u64 {
        let vb = 2 * (round % 64);
        // Unmapped first, so the write maps a fresh block (an exclusive block would be
        // overwritten in place, leaving the tree alone).
        p.trim(v.id, vb * BLOCK_SIZE_BYTES, 4096).unwrap();
        p.write(v.id, vb * BLOCK_SIZE_BYTES, &[round as u8; 4096])
            .unwrap();
        p.flush().unwrap();
        record_volume_nodes(&dev, region, &mut seen);
        // A live node of "v" at an address that held an older node of the same level.
        found = volume_nodes(&dev).into_iter().find_map(|(addr, vb)| {
            let now = read(&dev, TreeKind::Volume, addr);
            let (_, old) = seen.range((addr, 0)..(addr, now.gen)).next()?;
            let sb = durable(&dev);
            let old_node = Node::decode(TreeKind::Volume, old, addr, sb.gen, &sb.identity());
            (old_node.ok()?.level == now.level).then(|| (addr, vb, old.clone()))
        });
        if found.is_some() {
            break;
        }
    }
    p.close().unwrap();
    let (addr, vb, stale) = found.expect("an address of the live tree held an older node");
    let sb = durable(&dev);
    dev.write_at(addr * BLOCK_SIZE_BYTES, &stale).unwrap();
    let block_alone = read(&dev, TreeKind::Volume, addr);
    assert!(block_alone.gen < sb.gen, "valid, of this pool, just old");
    let report = check_device(dev.clone()).unwrap();
    let stale_found = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::BadBlock && f.block == addr)
        .unwrap_or_else(|| panic!("{:?}", report.findings));
    assert!(stale_found.detail.contains("stale"), "{stale_found:?}");
    assert!(
        stale_found.path.starts_with("volume \"v\""),
        "{stale_found:?}"
    );
    // The tree path ends at the stale node (the root or a leaf) and names its level.
    let here = format!("{addr}: Volume node {addr} at level");
    let parts = ["tree path ", &here[..], "stale"];
    assert_fails_alone(&dev, vb, &parts, FindingKind::BadBlock);
}

/// A block of another pool copied in (same layout, same address, valid checksum): refused on
/// read for its pool UUID and reported by `check`.
#[test]
fn a_block_of_another_pool_copied_in_is_refused() {
    let dev = pool_with_deep_volume();
    let other = pool_with_deep_volume();
    assert_ne!(durable(&dev).uuid, durable(&other).uuid);
    let (leaf, vb) = volume_nodes(&dev)[1];
    let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
    other.read_at(leaf * BLOCK_SIZE_BYTES, &mut b).unwrap();
    let theirs = durable(&other);
    let node = Node::decode(TreeKind::Volume, &b, leaf, theirs.gen, &theirs.identity())
        .expect("the same workload placed a volume leaf at the same address");
    assert_eq!(node.gen, read(&dev, TreeKind::Volume, leaf).gen);
    dev.write_at(leaf * BLOCK_SIZE_BYTES, &b).unwrap();
    let report = check_device(dev.clone()).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::BadBlock
                && f.block == leaf
                && f.detail.contains("another pool")),
        "{:?}",
        report.findings
    );
    let parts = [&format!("/{leaf}:")[..], "another pool"];
    assert_fails_alone(&dev, vb, &parts, FindingKind::BadBlock);
}

/// A bitmap page sealed as an earlier write of its block (same bits, same pool, older
/// generation): the space index's generation refuses it on load and `check` reports it.
#[test]
fn a_stale_bitmap_page_is_refused_and_reported() {
    use crate::format::{get_u64, put_u32, put_u64, HDR_CRC, HDR_GEN};
    let dev = pool_with_deep_volume();
    let sb = durable(&dev);
    let mut m = Meta::new(dev.clone(), sb.clone(), 64, false);
    let entry = m.get(TreeKind::Space, sb.space, 0).unwrap().unwrap();
    let (loc, gen) = (get_u64(&entry, 0), get_u64(&entry, SPACE_VAL_GEN));
    let mut b = vec![0u8; BLOCK_SIZE_BYTES as usize];
    dev.read_at(loc * BLOCK_SIZE_BYTES, &mut b).unwrap();
    put_u64(&mut b, HDR_GEN, gen - 1);
    let crc = crate::format::block_crc(&b);
    put_u32(&mut b, HDR_CRC, crc);
    dev.write_at(loc * BLOCK_SIZE_BYTES, &b).unwrap();
    let report = check_device(dev.clone()).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::BadBlock
                && f.block == loc
                && f.path == "space/page 0"
                && f.detail.contains("stale")),
        "{:?}",
        report.findings
    );
    let mut m = Meta::new(dev.clone(), sb, 64, false);
    let e = m.alloc_data(1, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.context().contains("bitmap page 0"), "{e}");
}

/// A pool whose share epoch is at its maximum refuses the operations that would advance it
/// (snapshot, clone, restore) with `ShareEpochExhausted` and changes nothing; writes, in place
/// or not, and reopening still work.
#[test]
fn a_pool_at_its_last_share_epoch_refuses_shares_and_keeps_working() {
    let dev = pool_with_deep_volume();
    forge_superblock(&dev, |sb| sb.share_epoch = crate::format::SHARE_EPOCH_MAX);
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let v = p.volume_by_name("v").unwrap();
    let w = p.volume_by_name("w").unwrap();
    let e = p.snapshot(v.id, "s", VolumeOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShareEpochExhausted, "{e}");
    let e = p.restore(v.id, w.id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShareEpochExhausted, "{e}");
    assert!(p.volume_by_name("s").is_none());
    for round in 0..3u8 {
        p.write(v.id, 0, &[round + 1; 4096]).unwrap();
        p.flush().unwrap();
    }
    p.close().unwrap();
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let mut buf = vec![0u8; 4096];
    p.read(v.id, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![3u8; 4096]);
    p.read(w.id, 0, &mut buf).unwrap();
    assert_eq!(buf, vec![9u8; 4096], "the refused restore changed nothing");
    assert!(p.check().unwrap().is_clean());
}

/// A volume record (or mapping) of a share epoch past the pool's would pass shared blocks for
/// exclusive ones: it is corruption at open.
#[test]
fn a_share_epoch_past_the_pools_is_corrupt() {
    let dev = pool_with_deep_volume();
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let v = p.volume_by_name("v").unwrap();
    p.snapshot(v.id, "s", VolumeOptions::default()).unwrap();
    p.close().unwrap();
    assert_eq!(
        durable(&dev).share_epoch,
        1,
        "a snapshot advances the epoch"
    );
    forge_superblock(&dev, |sb| sb.share_epoch = 0);
    let e = Pool::open(dev.clone(), opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("share epoch"), "{e}");
}
