//! `Pool::write_many`: several ranges of one volume written together land as they would written
//! alone, one after the other — partial blocks patched, two writes into one block both kept,
//! each bad range failing with its own error — and a failed device write fails no more than its
//! writes.

mod support;

use std::sync::Arc;

use cairn_engine::{ErrorKind, PoolOptions, VolumeId, VolumeOptions, BLOCK_SIZE};
use cairn_io::{FaultPlan, MemDevice};

use support::{block_of, OnePool};

const BS: u64 = BLOCK_SIZE;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

fn sectors() -> VolumeOptions {
    VolumeOptions {
        logical_block_size: 512,
        ..VolumeOptions::default()
    }
}

fn contents(pool: &OnePool, id: VolumeId, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    pool.read(id, 0, &mut b).expect("read back");
    b
}

/// A filler of `len` bytes, distinct per `seed`.
fn filler(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 512) as u8))
        .collect()
}

#[test]
fn ranges_written_together_land_as_written_alone() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let pool = support::create(dev.clone(), "p", opts()).expect("create");
    let size = 64 * BS;
    let [a, b] = ["a", "b"].map(|name| {
        pool.create_volume(name, size, sectors())
            .expect("volume")
            .id
    });
    for id in [a, b] {
        for blk in 0..16 {
            pool.write(id, blk * BS, &block_of(blk + 1))
                .expect("prefill");
        }
    }
    // Half of each now shared with a snapshot: those writes go to fresh blocks, the rest land
    // in place.
    for id in [a, b] {
        pool.snapshot(id, &format!("s-{id}"), VolumeOptions::default())
            .expect("snapshot");
        for blk in 0..8 {
            pool.write(id, blk * BS, &block_of(50 + blk))
                .expect("own again");
        }
    }
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (2 * BS, filler(1, BS as usize)),      // in place
        (10 * BS, filler(2, 3 * BS as usize)), // shared with the snapshot: redirected
        (20 * BS + 512, filler(3, 1024)),      // sectors of an unmapped block
        (20 * BS + 2048, filler(4, 512)),      // the same block: goes after the batch
        (6 * BS + 3584, filler(5, 1024)),      // straddles blocks 6 and 7
        (40 * BS, Vec::new()),                 // empty
        (63 * BS, filler(6, 2 * BS as usize)), // past the end
        (u64::MAX - 511, filler(7, 512)),      // past the address space
        (30 * BS + 100, filler(8, 512)),       // not a multiple of the sector size
    ];
    let batch: Vec<(u64, &[u8])> = writes.iter().map(|(o, d)| (*o, &d[..])).collect();
    let together: Vec<Result<(), ErrorKind>> = pool
        .write_many(a, &batch)
        .into_iter()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    let alone: Vec<Result<(), ErrorKind>> = batch
        .iter()
        .map(|&(o, d)| pool.write(b, o, d).map_err(|e| e.kind()))
        .collect();
    assert_eq!(together, alone);
    assert!(together[..6].iter().all(Result::is_ok), "{together:?}");
    assert_eq!(together[6], Err(ErrorKind::OutOfRange));
    assert_eq!(together[7], Err(ErrorKind::OutOfRange));
    assert_eq!(together[8], Err(ErrorKind::InvalidArgument));
    let got = contents(&pool, a, size);
    assert_eq!(
        got,
        contents(&pool, b, size),
        "the same writes, alone and together"
    );
    // Both sector writes into block 20 are there, around the zeros of the unmapped block.
    let blk20 = &got[20 * BS as usize..21 * BS as usize];
    assert_eq!(&blk20[512..1536], &filler(3, 1024)[..]);
    assert_eq!(&blk20[2048..2560], &filler(4, 512)[..]);
    assert!(blk20[..512].iter().chain(&blk20[2560..]).all(|&x| x == 0));
    // The snapshot keeps what it had.
    let snap = pool
        .volume_by_name(&format!("s-{a}"))
        .expect("snapshot listed")
        .id;
    let mut kept = vec![0u8; 3 * BS as usize];
    pool.read(snap, 10 * BS, &mut kept).expect("read snapshot");
    assert_eq!(kept, [block_of(11), block_of(12), block_of(13)].concat());
    // And all of it survives a reopen.
    pool.flush().expect("flush");
    pool.close().expect("close");
    drop(pool);
    let pool = support::open(dev, opts()).expect("reopen");
    assert_eq!(contents(&pool, a, size), got);
}

#[test]
fn a_bad_spot_fails_only_the_writes_on_it() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let (pool, v, at) = support::eight_blocks(dev.clone(), opts());
    dev.set_faults(FaultPlan {
        writes_ok: Some(0),
        write_range: Some(at..at + BS),
        ..FaultPlan::default()
    });
    let writes = [
        (0, block_of(101)),
        (3 * BS, block_of(104)), // on the bad spot
        (5 * BS, block_of(106)),
        (30 * BS, block_of(131)), // unmapped: a fresh block
    ];
    let batch: Vec<(u64, &[u8])> = writes.iter().map(|(o, d)| (*o, &d[..])).collect();
    let kinds: Vec<Result<(), ErrorKind>> = pool
        .write_many(v, &batch)
        .into_iter()
        .map(|r| r.map_err(|e| e.kind()))
        .collect();
    assert_eq!(kinds, [Ok(()), Err(ErrorKind::Io), Ok(()), Ok(())]);
    dev.clear_faults();
    let mut b = vec![0u8; BS as usize];
    for (o, d) in [&writes[0], &writes[2], &writes[3]] {
        pool.read(v, *o, &mut b).expect("read");
        assert_eq!(&b, d, "write at {o} landed");
    }
    // The pool goes on, and the bad spot takes a write once it does again.
    pool.write(v, 3 * BS, &block_of(204)).expect("write again");
    pool.read(v, 3 * BS, &mut b).expect("read");
    assert_eq!(b, block_of(204));
    pool.flush().expect("flush");
}
