//! A directory change whose commit is refused changes nothing: every operation of the volume
//! directory (create, delete, snapshot, clone, rename, grow, flags, tag, restore) is run on a
//! pool whose device fails every read after the first `k` (for `k` = 0, 1, 2, … until the
//! operation gets through), so the refusal lands at every point of the operation in turn —
//! its metadata change or its commit's preparation. Each refused call answers `Io`, the pool
//! stays healthy, and the directory (ids, names, sizes, flags, tags) and the data read as
//! before the call: right away, after a later commit that succeeds (which also makes the write
//! left open before the call durable) and after a reopen. The refused call can then be made
//! again and succeeds (its name was freed in the pool and in the registry alike).

mod support;
use support::block_of;

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_engine::{ErrorKind, PoolOptions, VolumeId, VolumeInfo, VolumeOptions, BLOCK_SIZE};
use cairn_io::MemDevice;

const BS: u64 = BLOCK_SIZE;
/// Blocks of the volume with a multi-level tree (one mapping entry per written block).
const BIG_BLOCKS: u64 = 800;
/// Volumes beside it, so the directory spans several leaves.
const SMALL_VOLUMES: u64 = 24;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 0,
        preallocate: false,
    }
}

/// The pool every case starts from, closed: `big` with every other block written, a snapshot
/// `big-snap` of it taken before half of them were overwritten, and small volumes `v0`, `v1`, …
fn base_image() -> MemDevice {
    let dev = Arc::new(MemDevice::new(64 << 20));
    let p = support::create(dev.clone(), "p0", opts()).unwrap();
    let big = p
        .create_volume("big", BIG_BLOCKS * BS, VolumeOptions::default())
        .unwrap()
        .id;
    for b in (0..BIG_BLOCKS).step_by(2) {
        p.write(big, b * BS, &block_of(b + 1)).unwrap();
    }
    p.snapshot(big, "big-snap", VolumeOptions::default())
        .unwrap();
    for b in (0..BIG_BLOCKS).step_by(4) {
        p.write(big, b * BS, &block_of(b + 10_000)).unwrap();
    }
    for n in 0..SMALL_VOLUMES {
        let v = p
            .create_volume(&format!("v{n}"), 16 * BS, VolumeOptions::default())
            .unwrap()
            .id;
        p.write(v, 0, &block_of(n + 50_000)).unwrap();
    }
    p.close().unwrap();
    dev.snapshot()
}

/// One operation of the volume directory.
#[derive(Clone, Copy, Debug)]
enum Op {
    Create,
    Delete,
    Snapshot,
    Clone,
    Rename,
    Grow,
    SetTag,
    SetHidden,
    SetReadOnly,
    Restore,
}

const OPS: [Op; 10] = [
    Op::Create,
    Op::Delete,
    Op::Snapshot,
    Op::Clone,
    Op::Rename,
    Op::Grow,
    Op::SetTag,
    Op::SetHidden,
    Op::SetReadOnly,
    Op::Restore,
];

fn id_of(p: &support::OnePool, name: &str) -> VolumeId {
    p.volume_by_name(name).expect("volume exists").id
}

fn apply(p: &support::OnePool, op: Op) -> cairn_engine::Result<()> {
    let big = id_of(p, "big");
    let v3 = id_of(p, "v3");
    let tagged = VolumeOptions {
        tag: b"replica of big".to_vec(),
        read_only: true,
        ..VolumeOptions::default()
    };
    match op {
        Op::Create => p.create_volume("new", 64 * BS, tagged).map(drop),
        Op::Delete => p.delete_volume(v3),
        Op::Snapshot => p.snapshot(big, "snap-new", tagged).map(drop),
        Op::Clone => p
            .snapshot(big, "clone-new", VolumeOptions::default())
            .map(drop),
        Op::Rename => p.rename_volume(v3, "renamed").map(drop),
        Op::Grow => p.resize_volume(v3, 64 * BS).map(drop),
        Op::SetTag => p.set_tag(v3, b"a tag").map(drop),
        Op::SetHidden => p.set_hidden(v3, true).map(drop),
        Op::SetReadOnly => p.set_read_only(v3, true).map(drop),
        Op::Restore => p.restore(big, id_of(p, "big-snap")),
    }
}

/// Everything a directory change could alter: every volume's record and contents, by name.
type Image = BTreeMap<String, (VolumeInfo, Vec<u8>)>;

fn image(p: &support::OnePool) -> Image {
    p.volumes()
        .into_iter()
        .map(|v| {
            let mut data = vec![0u8; v.size_bytes as usize];
            p.read(v.id, 0, &mut data).unwrap();
            (v.name.clone(), (v, data))
        })
        .collect()
}

/// Runs `op` with every read after the first `k` failing; `None` when it got through.
fn refused_case(base: &MemDevice, op: Op, k: u64) -> Option<()> {
    let dev = Arc::new(base.snapshot());
    let p = support::open(dev.clone(), opts()).unwrap();
    // A write left in the open transaction: the refused call must not lose it either.
    let v0 = id_of(&p, "v0");
    p.write(v0, BS, &block_of(k + 90_000)).unwrap();
    let before = image(&p);
    assert!(before.contains_key("v3"));
    p.drop_clean_caches();
    dev.fail_reads_after(k);
    let res = apply(&p, op);
    dev.clear_faults();
    let Err(e) = res else {
        p.close().unwrap();
        return None;
    };
    assert_eq!(e.kind(), ErrorKind::Io, "{op:?} after {k} reads: {e}");
    assert_eq!(image(&p), before, "{op:?} after {k} reads: at once");
    // The pool is healthy: the next commit succeeds and holds the pool as before the call.
    p.flush().unwrap();
    assert_eq!(image(&p), before, "{op:?} after {k} reads: committed");
    assert!(p.check().unwrap().is_clean(), "{op:?} after {k} reads");
    p.close().unwrap();
    drop(p);
    let p = support::open(dev.clone(), opts()).unwrap();
    assert_eq!(image(&p), before, "{op:?} after {k} reads: reopened");
    assert!(p.check().unwrap().is_clean(), "{op:?} after {k} reads");
    // Nothing of the call is left anywhere, its name included: it can be made again.
    apply(&p, op).unwrap_or_else(|e| panic!("{op:?} after {k} reads, again: {e}"));
    assert_ne!(
        image(&p),
        before,
        "{op:?} changes the directory or the data"
    );
    p.close().unwrap();
    Some(())
}

#[test]
fn a_directory_change_refused_by_a_failing_read_changes_nothing() {
    let base = base_image();
    for op in OPS {
        let mut refused = 0;
        while refused_case(&base, op, refused).is_some() {
            refused += 1;
            assert!(refused < 10_000, "{op:?} never got through");
        }
        eprintln!("{op:?}: refused at each of its first {refused} reads");
        assert!(refused > 0, "{op:?} read nothing");
    }
}
