//! The commit a data request calls for past the dirty bound, refused with the pool healthy: the
//! request's change stands in the open transaction, so the request answers success and the next
//! commit makes it durable (the rule in `pool`'s invariants). The bound is lowered to nothing so
//! that every request calls for that commit, and a failing read refuses it.

use std::sync::Arc;

use cairn_io::MemDevice;

use super::Pool;
use crate::limits::BLOCK_SIZE_BYTES;
use crate::types::{PoolOptions, VolumeOptions};

const BS: u64 = BLOCK_SIZE_BYTES;
/// Blocks of volume "v": every other one written, each its own extent.
const BLOCKS: u64 = 128;
/// The blocks every request covers.
const RANGE: std::ops::Range<u64> = 8..40;

/// The data requests that commit past the dirty bound.
#[derive(Clone, Copy, Debug)]
enum Request {
    Write,
    Trim,
    WriteZeroes,
}

impl Request {
    fn run(self, p: &Pool) -> crate::Result<()> {
        let v = p.volume_by_name("v").unwrap().id;
        let (offset, len) = (RANGE.start * BS, (RANGE.end - RANGE.start) * BS);
        match self {
            Request::Write => p.write(v, offset, &vec![0xEE; len as usize]),
            Request::Trim => p.trim(v, offset, len),
            Request::WriteZeroes => p.write_zeroes(v, offset, len),
        }
    }

    /// What the volume holds once the request is done.
    fn applied(self, before: &[u8]) -> Vec<u8> {
        let mut after = before.to_vec();
        let fill = match self {
            Request::Write => 0xEE,
            Request::Trim | Request::WriteZeroes => 0,
        };
        after[(RANGE.start * BS) as usize..(RANGE.end * BS) as usize].fill(fill);
        after
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 0,
        preallocate: false,
    }
}

/// A closed pool holding volume "v" with every other block written (durable).
fn base() -> MemDevice {
    let dev = Arc::new(MemDevice::new(64 << 20));
    let p = Pool::create(dev.clone(), "p0", opts()).unwrap();
    let v = p
        .create_volume("v", BLOCKS * BS, VolumeOptions::default())
        .unwrap()
        .id;
    for b in (0..BLOCKS).step_by(2) {
        p.write(v, b * BS, &vec![b as u8 + 1; BS as usize]).unwrap();
    }
    p.close().unwrap();
    dev.snapshot()
}

fn contents(p: &Pool) -> Vec<u8> {
    let v = p.volume_by_name("v").unwrap().id;
    let mut buf = vec![0u8; (BLOCKS * BS) as usize];
    p.read(v, 0, &mut buf).unwrap();
    buf
}

/// `req` on a copy of `base` with every read after the first `k` failing and the commit for
/// the dirty bound due. Returns whether it got through with that commit made (the last case to
/// try) and whether it got through although that commit was refused.
fn refused_commit_case(base: &MemDevice, req: Request, k: u64) -> (bool, bool) {
    let dev = Arc::new(base.snapshot());
    let p = Pool::open(dev.clone(), opts()).unwrap();
    let before = contents(&p);
    let applied = req.applied(&before);
    p.lock().dirty_blocks_max = 0;
    p.drop_clean_caches();
    dev.fail_reads_after(k);
    let r = req.run(&p);
    dev.clear_faults();
    let left_open = p.lock().is_dirty();
    if p.flush().is_err() {
        // The commit failed the pool: the call says so, and the durable pool is as before.
        assert!(
            r.is_err(),
            "{req:?} after {k} reads: a failed pool answered success"
        );
        drop(p);
        let p = Pool::open(dev, opts()).unwrap();
        assert!(contents(&p) == before, "{req:?} after {k} reads: reopened");
        return (false, false);
    }
    // Success means the request is done; an error means nothing changed.
    let want = if r.is_ok() { &applied } else { &before };
    assert!(contents(&p) == *want, "{req:?} after {k} reads: {r:?}");
    p.close().unwrap();
    drop(p);
    let p = Pool::open(dev, opts()).unwrap();
    assert!(contents(&p) == *want, "{req:?} after {k} reads: reopened");
    assert!(p.check().unwrap().is_clean(), "{req:?} after {k} reads");
    (r.is_ok() && !left_open, r.is_ok() && left_open)
}

#[test]
fn a_refused_commit_for_the_dirty_bound_leaves_the_request_done() {
    let base = base();
    for req in [Request::Write, Request::Trim, Request::WriteZeroes] {
        let mut through_refused = 0;
        for k in 0.. {
            assert!(k < 10_000, "{req:?} never got through");
            let (done, refused) = refused_commit_case(&base, req, k);
            through_refused += u64::from(refused);
            if done {
                break;
            }
        }
        assert!(
            through_refused > 0,
            "{req:?}: no commit was refused after its change"
        );
    }
}
