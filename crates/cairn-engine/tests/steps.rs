//! Large trims, write-zeroes and reclaim run in bounded steps that release the locks between
//! steps, so a request of another volume waits at most one step. Checked structurally: the
//! number of steps and the most mapping entries one hold of the locks covered.

mod support;
use support::OnePool;

use std::sync::Arc;

use cairn_engine::limits::{RECLAIM_ENTRIES_PER_TXN, UNMAP_ENTRIES_PER_STEP};
use cairn_engine::{PoolOptions, VolumeId, VolumeOptions, BLOCK_SIZE};
use cairn_io::MemDevice;

const MIB: u64 = 1 << 20;
const BS: u64 = BLOCK_SIZE;
/// Mapping entries of the fragmented volume: several steps' worth.
const ENTRIES: u64 = 3 * UNMAP_ENTRIES_PER_STEP as u64 + 100;

fn pool() -> OnePool {
    let opts = PoolOptions {
        commit_interval: None,
        node_cache_bytes: 8 << 20,
        preallocate: false,
    };
    support::create(Arc::new(MemDevice::new(96 * MIB)), "p0", opts).unwrap()
}

/// A volume of `ENTRIES` blocks mapped as one entry each (odd blocks first, then even ones).
fn fragmented(p: &OnePool, name: &str) -> VolumeId {
    let v = p
        .create_volume(name, ENTRIES * BS, VolumeOptions::default())
        .unwrap()
        .id;
    for b in (1..ENTRIES).step_by(2).chain((0..ENTRIES).step_by(2)) {
        p.write(v, b * BS, &[(b % 251) as u8 + 1; BS as usize])
            .unwrap();
    }
    p.flush().unwrap();
    v
}

fn all_unmapped(p: &OnePool, v: VolumeId) -> bool {
    p.block_status(v, 0, ENTRIES * BS)
        .unwrap()
        .iter()
        .all(|e| !e.mapped)
}

/// Runs `op` and returns the steps it took and the most entries one step covered.
fn steps_of(p: &OnePool, op: impl FnOnce()) -> (u64, usize) {
    let before = p.step_counts().0;
    op();
    let (steps, most) = p.step_counts();
    (steps - before, most)
}

#[test]
fn a_large_trim_and_write_zeroes_release_the_locks_between_bounded_steps() {
    let p = pool();
    // Only the requests' steps are counted: a write-zeroes of many steps leaves a tombstone
    // (the tree it kept) whose reclaim steps are bounded apart.
    p.pause_reclaim(true);
    let other = fragmented(&p, "other");
    for zeroes in [false, true] {
        let v = fragmented(&p, if zeroes { "z" } else { "t" });
        let (steps, most) = steps_of(&p, || {
            if zeroes {
                p.write_zeroes(v, 0, ENTRIES * BS).unwrap();
            } else {
                p.trim(v, 0, ENTRIES * BS).unwrap();
            }
        });
        let least = ENTRIES.div_ceil(UNMAP_ENTRIES_PER_STEP as u64);
        assert!(steps >= least, "{steps} steps for {ENTRIES} entries");
        assert!(
            most <= UNMAP_ENTRIES_PER_STEP + 1,
            "{most} entries in one step"
        );
        assert!(all_unmapped(&p, v));
    }
    let mut buf = vec![0u8; BS as usize];
    p.read(other, 7 * BS, &mut buf).unwrap();
    assert_eq!(buf, vec![8u8; BS as usize]);
    assert!(p.check().unwrap().is_clean());
}

#[test]
fn reclaim_of_a_large_volume_runs_in_bounded_committed_steps() {
    let p = pool();
    p.pause_reclaim(true);
    let v = fragmented(&p, "v");
    let generation = p.info().generation;
    p.delete_volume(v).unwrap();
    let (steps, most) = steps_of(&p, || p.wait_reclaim().unwrap());
    let least = ENTRIES.div_ceil(RECLAIM_ENTRIES_PER_TXN as u64);
    assert!(
        steps >= least,
        "{steps} reclaim steps for {ENTRIES} entries"
    );
    assert!(
        most <= RECLAIM_ENTRIES_PER_TXN,
        "{most} entries in one step"
    );
    // Each step is its own transaction: the locks are free between them.
    assert!(p.info().generation >= generation + 1 + steps);
    assert_eq!(p.info().data_bytes_used, 0);
    assert!(p.check().unwrap().is_clean());
}
