//! The shared test suite of the `BlockDevice` trait: every backend runs these same checks, each
//! on a fresh, zero-filled device of at least [`SUITE_SIZE_BYTES`].

#![allow(dead_code)] // Each test binary uses the part of the suite that fits its backends.

use std::sync::Arc;

use cairn_io::{BlockDevice, IoErrorKind};

/// Size of the device each suite test gets.
pub const SUITE_SIZE_BYTES: u64 = 8 << 20;

/// Deterministic bytes, different for every `tag`.
pub fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read(dev: &dyn BlockDevice, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    dev.read_at(offset, &mut buf).expect("read");
    buf
}

/// Writes of several sizes and places (first and last block, crossing 4 KiB boundaries, larger
/// than one kernel request) read back exactly; never-written space reads as zeros.
pub fn read_back(dev: &dyn BlockDevice) {
    let a = dev.alignment();
    let size = dev.size_bytes();
    assert!(size >= SUITE_SIZE_BYTES && size % a == 0);
    assert_eq!(read(dev, 0, 4 * a), vec![0u8; 4 * a as usize]);
    let cases = [
        (0, a),
        (a, 4096),
        (4096 - a, 2 * a),
        (65536, 1 << 20),
        (size - a, a),
    ];
    for (tag, &(offset, len)) in cases.iter().enumerate() {
        let data = pattern(tag as u64 + 1, len as usize);
        dev.write_at(offset, &data).expect("write");
        assert!(
            read(dev, offset, len) == data,
            "read back at {offset} (+{len})"
        );
    }
    let big = pattern(99, 5 << 20);
    dev.write_at(2 << 20, &big).expect("large write");
    assert!(
        read(dev, 2 << 20, big.len() as u64) == big,
        "large read back"
    );
    dev.write_at(0, &[]).expect("empty write");
    dev.read_at(size, &mut []).expect("empty read at the end");
}

/// Misaligned, out-of-range and overflowing requests fail with InvalidRange and change nothing.
pub fn invalid_ranges(dev: &dyn BlockDevice) {
    let a = dev.alignment();
    let size = dev.size_bytes();
    let keep = pattern(7, 2 * a as usize);
    dev.write_at(size - 2 * a, &keep).expect("write");
    dev.write_at(0, &keep).expect("write");
    let bad: [(u64, u64); 6] = [
        (1, a),
        (a / 2, a),
        (0, a + 1),
        (size - a, 2 * a),
        (size, a),
        (u64::MAX - a + 1, a),
    ];
    for (offset, len) in bad {
        let data = vec![0xEEu8; len as usize];
        let kind = |r: cairn_io::IoResult<()>| r.expect_err("bad range accepted").kind;
        assert_eq!(
            kind(dev.write_at(offset, &data)),
            IoErrorKind::InvalidRange,
            "{offset}+{len}"
        );
        let mut buf = vec![0u8; len as usize];
        assert_eq!(
            kind(dev.read_at(offset, &mut buf)),
            IoErrorKind::InvalidRange,
            "{offset}+{len}"
        );
        assert_eq!(
            kind(dev.discard(offset, len)),
            IoErrorKind::InvalidRange,
            "{offset}+{len}"
        );
    }
    assert_eq!(read(dev, size - 2 * a, 2 * a), keep);
    assert_eq!(read(dev, 0, 2 * a), keep);
}

/// Preallocating keeps the contents (written and never written) and checks its range like any
/// request; the range stays writable.
pub fn preallocate(dev: &dyn BlockDevice) {
    let a = dev.alignment();
    let size = dev.size_bytes();
    let data = pattern(11, 8 * a as usize);
    dev.write_at(4 * a, &data).expect("write");
    dev.preallocate(0, 1 << 20).expect("preallocate");
    dev.preallocate(0, 0).expect("empty preallocate");
    assert_eq!(read(dev, 4 * a, 8 * a), data);
    assert_eq!(read(dev, 16 * a, 4 * a), vec![0u8; 4 * a as usize]);
    for (offset, len) in [(1, a), (size - a, 2 * a), (u64::MAX - a + 1, a)] {
        let e = dev.preallocate(offset, len).expect_err("bad range");
        assert_eq!(e.kind, IoErrorKind::InvalidRange, "{offset}+{len}");
    }
    dev.write_at(16 * a, &data)
        .expect("write after preallocate");
    assert_eq!(read(dev, 16 * a, 8 * a), data);
}

/// A discard leaves everything around the discarded range intact, and the range stays usable.
pub fn discard(dev: &dyn BlockDevice) {
    let data = pattern(3, 64 << 10);
    dev.write_at(1 << 20, &data).expect("write");
    dev.discard((1 << 20) + 16384, 32768).expect("discard");
    let after = read(dev, 1 << 20, 64 << 10);
    assert_eq!(after[..16384], data[..16384]);
    assert_eq!(after[49152..], data[49152..]);
    let fresh = pattern(4, 32768);
    dev.write_at((1 << 20) + 16384, &fresh)
        .expect("write after discard");
    assert_eq!(read(dev, (1 << 20) + 16384, 32768), fresh);
    dev.discard(0, 0).expect("empty discard");
    dev.flush().expect("flush");
}

/// Flush succeeds, and data written before and after it reads back.
pub fn flush(dev: &dyn BlockDevice) {
    let first = pattern(5, 8192);
    dev.write_at(8192, &first).expect("write");
    dev.flush().expect("flush");
    let second = pattern(6, 8192);
    dev.write_at(16384, &second).expect("write");
    dev.flush().expect("second flush");
    dev.flush().expect("flush with nothing new");
    assert_eq!(read(dev, 8192, 8192), first);
    assert_eq!(read(dev, 16384, 8192), second);
}

/// Batches of writes and reads (more than one ring's worth, mixed sizes) round-trip; a batch with a
/// bad range fails with InvalidRange.
pub fn batch(dev: &dyn BlockDevice) {
    let a = dev.alignment();
    let writes: Vec<(u64, Vec<u8>)> = (0..200u64)
        .map(|i| (i * 16384, pattern(100 + i, (a * (1 + i % 4)) as usize)))
        .collect();
    let refs: Vec<(u64, &[u8])> = writes.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    dev.write_batch(&refs).expect("write batch");
    let mut bufs: Vec<Vec<u8>> = writes.iter().map(|(_, d)| vec![0u8; d.len()]).collect();
    let mut reads: Vec<(u64, &mut [u8])> = writes
        .iter()
        .zip(bufs.iter_mut())
        .map(|((o, _), b)| (*o, b.as_mut_slice()))
        .collect();
    dev.read_batch(&mut reads).expect("read batch");
    for ((offset, data), buf) in writes.iter().zip(&bufs) {
        assert!(buf == data, "batch read back at {offset}");
    }
    dev.write_batch(&[]).expect("empty batch");
    let size = dev.size_bytes();
    let block = vec![1u8; a as usize];
    let bad = [(0, block.as_slice()), (size, block.as_slice())];
    let err = dev
        .write_batch(&bad)
        .expect_err("batch past the end accepted");
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
    let mut buf = vec![0u8; a as usize];
    let err = dev
        .read_batch(&mut [(1, buf.as_mut_slice())])
        .expect_err("misaligned batch read");
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
}

/// FUA batches round-trip like plain ones, over earlier writes too; a bad range fails with
/// InvalidRange.
pub fn fua_batch(dev: &dyn BlockDevice) {
    let a = dev.alignment() as usize;
    let first = pattern(7, 4 * a);
    dev.write_at(0, &first).expect("plain write");
    let over = pattern(8, a);
    let far = pattern(9, 2 * a);
    let far_at = (dev.size_bytes() / 2) / a as u64 * a as u64;
    dev.write_batch_fua(&[(a as u64, &over), (far_at, &far)])
        .expect("fua batch");
    let mut want = first;
    want[a..2 * a].copy_from_slice(&over);
    assert_eq!(
        read(dev, 0, 4 * a as u64),
        want,
        "fua write over a plain one"
    );
    assert_eq!(read(dev, far_at, 2 * a as u64), far, "fua write read back");
    let block = vec![1u8; a];
    let err = dev
        .write_batch_fua(&[(dev.size_bytes(), block.as_slice())])
        .expect_err("fua write past the end accepted");
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
}

/// Threads writing disjoint regions at once all see their own data afterwards.
pub fn concurrent_writers(dev: Arc<dyn BlockDevice>) {
    const THREADS: u64 = 4;
    const REGION_BYTES: u64 = 1 << 20;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dev = Arc::clone(&dev);
            std::thread::spawn(move || {
                for round in 0..32u64 {
                    let len = 4096 * (1 + round % 4);
                    let offset = t * REGION_BYTES + (round * 28672) % (REGION_BYTES - len);
                    let offset = offset / 4096 * 4096;
                    let data = pattern(t * 1000 + round, len as usize);
                    dev.write_at(offset, &data).expect("concurrent write");
                    assert_eq!(read(dev.as_ref(), offset, len), data);
                }
                let last = pattern(t + 5000, REGION_BYTES as usize);
                dev.write_at(t * REGION_BYTES, &last).expect("region write");
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("writer thread");
    }
    dev.flush().expect("flush");
    for t in 0..THREADS {
        let got = read(dev.as_ref(), t * REGION_BYTES, REGION_BYTES);
        assert!(
            got == pattern(t + 5000, REGION_BYTES as usize),
            "region {t}"
        );
    }
}

/// Instantiates every check of the suite as its own test in a module `$name`, each on a fresh
/// device from `$make` (an expression of type `Fn() -> Option<Arc<dyn BlockDevice>>`; `None`
/// means the backend is not available on this machine, and `$make` has printed why).
#[macro_export]
macro_rules! device_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use std::sync::Arc;

            use cairn_io::BlockDevice;

            fn make() -> Option<Arc<dyn BlockDevice>> {
                let make: &dyn Fn() -> Option<Arc<dyn BlockDevice>> = &$make;
                make()
            }

            #[test]
            fn fua_batch() {
                if let Some(dev) = make() {
                    $crate::suite::fua_batch(dev.as_ref());
                }
            }

            #[test]
            fn read_back() {
                if let Some(dev) = make() {
                    $crate::suite::read_back(dev.as_ref());
                }
            }

            #[test]
            fn invalid_ranges() {
                if let Some(dev) = make() {
                    $crate::suite::invalid_ranges(dev.as_ref());
                }
            }

            #[test]
            fn discard() {
                if let Some(dev) = make() {
                    $crate::suite::discard(dev.as_ref());
                }
            }

            #[test]
            fn preallocate() {
                if let Some(dev) = make() {
                    $crate::suite::preallocate(dev.as_ref());
                }
            }

            #[test]
            fn flush() {
                if let Some(dev) = make() {
                    $crate::suite::flush(dev.as_ref());
                }
            }

            #[test]
            fn batch() {
                if let Some(dev) = make() {
                    $crate::suite::batch(dev.as_ref());
                }
            }

            #[test]
            fn concurrent_writers() {
                if let Some(dev) = make() {
                    $crate::suite::concurrent_writers(dev);
                }
            }
        }
    };
}
