//! The shared test suite of the export traits: [`exercise`] runs against any implementation,
//! through a [`Harness`] that makes and deletes its volumes.
//!
//! Invariant checked: every implementation keeps the contract written in [`crate::volume`]
//! (data round trips, zeroing, allocation runs, range and read-only refusals, leases, and that no
//! write to one volume shows in another).

use crate::error::{ErrorKind, Result};
use crate::limits::REQUEST_BYTES_MAX;
use crate::naa::{naa_designator, naa_name};
use crate::volume::{Exports, Run, Volume, Zeroing};

/// What the suite needs of an implementation besides the traits.
pub(crate) trait Harness {
    fn exports(&self) -> &dyn Exports;
    /// Makes a visible volume, zero-filled.
    fn create(&self, name: &str, size_bytes: u64, logical_block_size: u32, read_only: bool);
    /// Deletes a volume the way management would (refused while a host holds it open).
    fn delete(&self, name: &str) -> Result<()>;
}

const SIZE_BYTES: u64 = 4 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn read(v: &dyn Volume, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xeeu8; len];
    v.read(offset, &mut buf).expect("read");
    buf
}

/// The error kind of each result of a batch (`None` for a success).
fn kinds(results: &[Result<()>]) -> Vec<Option<ErrorKind>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.kind()))
        .collect()
}

fn kind<T>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

/// Runs the whole suite; the harness starts with no volume named `suite-*`.
pub(crate) fn exercise(h: &dyn Harness) {
    h.create("suite-b", SIZE_BYTES, 512, false);
    h.create("suite-a", SIZE_BYTES, 4096, false);
    h.create("suite-ro", SIZE_BYTES, 4096, true);
    catalog(h.exports());
    let a = h.exports().open("suite-a").expect("open a");
    let b = h.exports().open("suite-b").expect("open b");
    identity(a.as_ref());
    data(a.as_ref(), 4096);
    data(b.as_ref(), 512);
    read_many(a.as_ref());
    write_many(b.as_ref());
    zeroing(a.as_ref());
    refusals(a.as_ref(), b.as_ref());
    read_only(h.exports());
    isolation(a.as_ref(), b.as_ref());
    drop(b);
    leases(h, a);
}

fn catalog(exports: &dyn Exports) {
    let names: Vec<String> = exports
        .list()
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n.starts_with("suite-"))
        .collect();
    assert_eq!(names, ["suite-a", "suite-b", "suite-ro"]);
    let b = exports.info("suite-b").expect("info");
    assert_eq!(
        (b.size_bytes, b.logical_block_size, b.read_only),
        (SIZE_BYTES, 512, false)
    );
    assert!(exports.info("suite-ro").expect("info").read_only);
    assert_eq!(kind(exports.info("suite-missing")), ErrorKind::NotFound);
    assert_eq!(kind(exports.open("suite-missing")), ErrorKind::NotFound);
}

fn identity(a: &dyn Volume) {
    let info = a.info();
    assert_eq!(info.name, "suite-a");
    assert_eq!(a.size_bytes(), SIZE_BYTES);
    assert_eq!(a.logical_block_size(), 4096);
    assert!(!a.read_only());
    assert_eq!(a.id(), info.id);
    assert_eq!(a.naa_name(), naa_name(&info.id));
    assert_eq!(info.naa_name(), a.naa_name());
    assert_eq!(a.naa_designator(), naa_designator(&info.id));
}

/// Writes (plain and FUA), reads back, flushes, on blocks of `block` bytes.
fn data(v: &dyn Volume, block: usize) {
    assert_eq!(
        read(v, 0, 3 * block),
        vec![0u8; 3 * block],
        "new volume reads zeros"
    );
    let one = pattern(3 * block, 7);
    v.write(block as u64, &one, false).expect("write");
    let two = pattern(block, 99);
    v.write(SIZE_BYTES - block as u64, &two, true)
        .expect("fua write");
    v.flush().expect("flush");
    assert_eq!(read(v, block as u64, 3 * block), one);
    assert_eq!(read(v, SIZE_BYTES - block as u64, block), two);
    assert_eq!(read(v, 0, block), vec![0u8; block]);
    let big = pattern(REQUEST_BYTES_MAX as usize / 16, 3);
    v.write(0, &big, false).expect("large write");
    assert_eq!(read(v, 0, big.len()), big);
}

/// Reads handed over together: each range its data, or its own error while the rest succeed.
fn read_many(v: &dyn Volume) {
    let block = v.logical_block_size() as usize;
    let data = pattern(8 * block, 41);
    v.write(0, &data, false).expect("write");
    let ranges: [(u64, usize); 5] = [
        (block as u64, 2 * block),
        (SIZE_BYTES - block as u64, 2 * block), // past the end
        (16 * block as u64, block),             // never written since the data test
        (0, REQUEST_BYTES_MAX as usize + block), // over the transfer limit
        (5 * block as u64, 3 * block),
    ];
    let mut bufs: Vec<Vec<u8>> = ranges.iter().map(|&(_, len)| vec![0xee; len]).collect();
    let mut reads: Vec<(u64, &mut [u8])> = ranges
        .iter()
        .zip(&mut bufs)
        .map(|(&(offset, _), b)| (offset, &mut b[..]))
        .collect();
    let results = v.read_many(&mut reads);
    assert_eq!(results.len(), ranges.len());
    assert_eq!(
        kinds(&results),
        [
            None,
            Some(ErrorKind::OutOfRange),
            None,
            Some(ErrorKind::InvalidArgument),
            None
        ]
    );
    assert_eq!(bufs[0], data[block..3 * block]);
    assert_eq!(bufs[2], read(v, 16 * block as u64, block));
    assert_eq!(bufs[4], data[5 * block..]);
}

/// Writes handed over together: each lands, or fails with its own error while the rest land;
/// two into one 4 KiB block both land.
fn write_many(v: &dyn Volume) {
    let block = v.logical_block_size() as usize;
    let base = 64 * block as u64;
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (base, pattern(2 * block, 51)),
        (SIZE_BYTES - block as u64, pattern(2 * block, 52)), // past the end
        (base + 4096 + block as u64, pattern(block, 53)),
        (
            base + 65536,
            pattern(REQUEST_BYTES_MAX as usize + block, 54),
        ), // over the limit
        (base + 3 * block as u64, pattern(3 * block, 55)),
        (base + 4096 + 3 * block as u64, pattern(block, 56)),
    ];
    let writes: Vec<(u64, &[u8])> = writes.iter().map(|(o, d)| (*o, &d[..])).collect();
    let results = v.write_many(&writes);
    assert_eq!(results.len(), writes.len());
    assert_eq!(
        kinds(&results),
        [
            None,
            Some(ErrorKind::OutOfRange),
            None,
            Some(ErrorKind::InvalidArgument),
            None,
            None
        ]
    );
    for (i, &(offset, data)) in writes.iter().enumerate() {
        if results[i].is_ok() {
            assert_eq!(read(v, offset, data.len()), data, "write {i} at {offset}");
        }
    }
}

fn covers(runs: &[Run], offset: u64, len: u64) {
    let mut at = offset;
    for r in runs {
        assert_eq!(r.offset, at, "runs are sorted and contiguous: {runs:?}");
        at += r.len;
    }
    assert_eq!(at, offset + len, "runs cover the range: {runs:?}");
}

fn mapped_at(runs: &[Run], offset: u64) -> bool {
    let run = runs
        .iter()
        .find(|r| r.offset <= offset && offset < r.offset + r.len);
    run.expect("offset covered").mapped
}

fn zeroing(a: &dyn Volume) {
    const B: u64 = 4096;
    a.write(0, &pattern(8 * B as usize, 5), false)
        .expect("write");
    a.trim(0, 2 * B).expect("trim");
    a.write_zeroes(2 * B, 2 * B, Zeroing::Unmap)
        .expect("zeroes");
    a.write_zeroes(4 * B, 2 * B, Zeroing::Allocate)
        .expect("zeroes allocated");
    assert_eq!(read(a, 0, 6 * B as usize), vec![0u8; 6 * B as usize]);
    assert_eq!(
        read(a, 6 * B, 2 * B as usize),
        pattern(8 * B as usize, 5)[6 * B as usize..]
    );
    let runs = a.block_status(0, 8 * B).expect("block status");
    covers(&runs, 0, 8 * B);
    assert!(!mapped_at(&runs, 0), "trimmed: {runs:?}");
    assert!(mapped_at(&runs, 4 * B), "zeroes stored as data: {runs:?}");
    assert!(mapped_at(&runs, 7 * B), "written: {runs:?}");
    let tail = a
        .block_status(SIZE_BYTES - 4 * B, 4 * B)
        .expect("block status");
    covers(&tail, SIZE_BYTES - 4 * B, 4 * B);
}

fn refusals(a: &dyn Volume, b: &dyn Volume) {
    let mut buf = vec![0u8; 8192];
    assert_eq!(
        kind(a.read(SIZE_BYTES - 4096, &mut buf)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(a.write(SIZE_BYTES, &buf, false)),
        ErrorKind::OutOfRange
    );
    assert_eq!(kind(a.trim(SIZE_BYTES, 4096)), ErrorKind::OutOfRange);
    for how in [Zeroing::Unmap, Zeroing::Allocate] {
        assert_eq!(
            kind(a.write_zeroes(SIZE_BYTES - 4096, 8192, how)),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            kind(a.write_zeroes(512, 4096, how)),
            ErrorKind::InvalidArgument
        );
    }
    assert_eq!(
        kind(a.block_status(SIZE_BYTES, 4096)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(a.write(512, &buf[..4096], false)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(b.write(100, &buf[..512], false)),
        ErrorKind::InvalidArgument
    );
    let mut huge = vec![0u8; REQUEST_BYTES_MAX as usize + 4096];
    assert_eq!(kind(a.read(0, &mut huge)), ErrorKind::InvalidArgument);
    assert_eq!(kind(a.write(0, &huge, true)), ErrorKind::InvalidArgument);
    let tail = read(a, SIZE_BYTES - 4096, 4096);
    assert_eq!(tail, pattern(4096, 99), "refused requests change nothing");
}

fn read_only(exports: &dyn Exports) {
    let ro = exports.open("suite-ro").expect("open ro");
    assert!(ro.read_only());
    let data = pattern(4096, 1);
    assert_eq!(kind(ro.write(0, &data, false)), ErrorKind::ReadOnly);
    assert_eq!(kind(ro.write(0, &data, true)), ErrorKind::ReadOnly);
    let refused = ro.write_many(&[(0, &data[..]), (8192, &data[..])]);
    assert!(
        refused
            .into_iter()
            .all(|r| r.is_err_and(|e| e.kind() == ErrorKind::ReadOnly)),
        "each write to a read-only volume is refused"
    );
    assert_eq!(kind(ro.trim(0, 4096)), ErrorKind::ReadOnly);
    for how in [Zeroing::Unmap, Zeroing::Allocate] {
        assert_eq!(kind(ro.write_zeroes(0, 4096, how)), ErrorKind::ReadOnly);
    }
    assert_eq!(read(ro.as_ref(), 0, 4096), vec![0u8; 4096]);
    ro.flush().expect("flush of a read-only volume");
}

fn isolation(a: &dyn Volume, b: &dyn Volume) {
    let at = SIZE_BYTES / 2;
    a.write(at, &pattern(4096, 11), false).expect("write a");
    b.write(at, &pattern(4096, 12), false).expect("write b");
    assert_eq!(read(a, at, 4096), pattern(4096, 11));
    assert_eq!(read(b, at, 4096), pattern(4096, 12));
}

fn leases(h: &dyn Harness, a: std::sync::Arc<dyn Volume>) {
    let again = h.exports().open("suite-a").expect("a second open");
    assert_eq!(kind(h.delete("suite-a")), ErrorKind::InUse);
    drop(a);
    assert_eq!(
        kind(h.delete("suite-a")),
        ErrorKind::InUse,
        "one lease still held"
    );
    assert_eq!(
        read(again.as_ref(), SIZE_BYTES / 2, 4096),
        pattern(4096, 11)
    );
    drop(again);
    h.delete("suite-a").expect("delete once closed");
    assert_eq!(kind(h.exports().open("suite-a")), ErrorKind::NotFound);
    assert_eq!(kind(h.exports().info("suite-a")), ErrorKind::NotFound);
    h.delete("suite-b").expect("delete b");
    h.delete("suite-ro").expect("delete ro");
}
