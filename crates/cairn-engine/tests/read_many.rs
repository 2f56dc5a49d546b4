//! `Pool::read_many`: several ranges of one volume read together give each the result it would
//! get read alone — its data, or its own error (a range out of bounds, a bad spot on the
//! medium) while the others succeed — and a failed device read fails no more than its reads.

mod support;

use std::sync::Arc;

use cairn_engine::{ErrorKind, PoolOptions, VolumeId, VolumeOptions, BLOCK_SIZE};
use cairn_io::{FaultPlan, MemDevice};

use support::block_of;

const BS: u64 = BLOCK_SIZE;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// What reading one range gave: its data or the kind of its error.
type Outcome = Result<Vec<u8>, ErrorKind>;

/// Reads `ranges` together and one by one; returns both lists of outcomes.
fn both(
    pool: &support::OnePool,
    id: VolumeId,
    ranges: &[(u64, usize)],
) -> (Vec<Outcome>, Vec<Outcome>) {
    let mut bufs: Vec<Vec<u8>> = ranges.iter().map(|&(_, len)| vec![0xa5; len]).collect();
    let mut reads: Vec<(u64, &mut [u8])> = ranges
        .iter()
        .zip(&mut bufs)
        .map(|(&(offset, _), b)| (offset, &mut b[..]))
        .collect();
    let results = pool.read_many(id, &mut reads);
    assert_eq!(results.len(), ranges.len(), "one result per range");
    let together = results
        .into_iter()
        .zip(bufs)
        .map(|(r, b)| r.map(|()| b).map_err(|e| e.kind()))
        .collect();
    let alone = ranges
        .iter()
        .map(|&(offset, len)| {
            let mut b = vec![0x5a; len];
            pool.read(id, offset, &mut b)
                .map(|()| b)
                .map_err(|e| e.kind())
        })
        .collect();
    (together, alone)
}

#[test]
fn ranges_read_together_read_as_they_do_alone() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let pool = support::create(dev, "p", opts()).expect("create");
    let sectors = VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    };
    let v = pool
        .create_volume("v", 64 * BS, sectors)
        .expect("volume")
        .id;
    for b in 0..16 {
        pool.write(v, b * BS, &block_of(b + 1)).expect("write");
    }
    let snap = pool
        .snapshot(v, "s", VolumeOptions::default())
        .expect("snapshot")
        .id;
    // Blocks 4..8 now redirected, apart from the snapshot's.
    for b in 4..8 {
        pool.write(v, b * BS, &block_of(100 + b))
            .expect("overwrite");
    }
    let ranges = [
        (0, BS as usize),                 // mapped, shared with the snapshot
        (2 * BS, 8 * BS as usize),        // shared and redirected pieces
        (12 * BS, 8 * BS as usize),       // mapped then a hole
        (40 * BS, 2 * BS as usize),       // a hole
        (BS + 512, 1024),                 // sectors, not block aligned: read alone
        (63 * BS, 2 * BS as usize),       // past the end
        (u64::MAX - BS + 1, BS as usize), // past the address space
        (5 * BS, 0),                      // empty
    ];
    for id in [v, snap] {
        let (together, alone) = both(&pool, id, &ranges);
        assert_eq!(together, alone, "volume {id}");
        assert!(together[..5].iter().all(Result::is_ok), "{together:?}");
        assert_eq!(together[5], Err(ErrorKind::OutOfRange));
        assert_eq!(together[6], Err(ErrorKind::OutOfRange));
    }
    let (together, _) = both(&pool, v, &ranges);
    assert_eq!(
        together[1].as_ref().unwrap()[2 * BS as usize..3 * BS as usize],
        block_of(104)[..]
    );
}

#[test]
fn a_bad_spot_fails_only_the_ranges_on_it() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let (pool, v, at) = support::eight_blocks(dev.clone(), opts());
    dev.set_faults(FaultPlan {
        reads_ok: Some(0),
        read_range: Some(at..at + BS),
        ..FaultPlan::default()
    });
    let ranges = [
        (0, 2 * BS as usize),
        (2 * BS, 2 * BS as usize), // blocks 2 and 3: on the bad spot
        (5 * BS, BS as usize),
        (30 * BS, BS as usize),
    ];
    let (together, alone) = both(&pool, v, &ranges);
    assert_eq!(together, alone);
    assert_eq!(together[1], Err(ErrorKind::Io));
    assert_eq!(together[2], Ok(block_of(6)));
    assert_eq!(together[3], Ok(vec![0; BS as usize]));
    // The pool goes on: writes, and reads once the spot reads again.
    pool.write(v, 10 * BS, &block_of(11))
        .expect("write beside a bad spot");
    dev.clear_faults();
    let (together, _) = both(&pool, v, &ranges);
    assert!(together.iter().all(Result::is_ok), "{together:?}");
}
