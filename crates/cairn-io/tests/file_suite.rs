//! The shared device suite on `FileDevice`: pread/pwrite and io_uring, each with O_DIRECT and
//! buffered, on a regular file. Plus what only files have: creation, growth, hole punching.
//!
//! No test here starts a process: a child between fork and exec holds copies of every descriptor
//! and so, briefly, every device lock, which would make reopening a closed device flaky. Tests
//! that run programs live in `loop_device.rs` and `lock.rs`.

mod suite;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use cairn_io::{
    uring_available, AlignedBuf, Backend, BlockDevice, FileDevice, IoErrorKind, OpenOptions,
};
use suite::{pattern, SUITE_SIZE_BYTES};

fn options(backend: Backend, direct: bool, size: u64) -> OpenOptions {
    OpenOptions {
        create_size_bytes: Some(size),
        direct,
        backend,
    }
}

/// A fresh sparse file device; the file is unlinked once open (the descriptor keeps it alive).
fn file_device(backend: Backend, direct: bool) -> Option<Arc<dyn BlockDevice>> {
    if backend == Backend::Uring {
        if let Err(reason) = uring_available() {
            println!("skipped: io_uring is not available here: {reason}");
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = FileDevice::open(
        dir.path().join("pool.img"),
        options(backend, direct, SUITE_SIZE_BYTES),
    )
    .unwrap();
    assert_eq!(dev.backend(), backend);
    Some(Arc::new(dev))
}

device_suite!(pread_direct, || file_device(Backend::Pread, true));
device_suite!(pread_buffered, || file_device(Backend::Pread, false));
device_suite!(uring_direct, || file_device(Backend::Uring, true));
device_suite!(uring_buffered, || file_device(Backend::Uring, false));

fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_new_pool_file_is_sparse_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(1 << 30)).unwrap();
    assert_eq!(dev.size_bytes(), 1 << 30);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 30);
    assert!(allocated_bytes(&path) < 1 << 20, "not sparse");
    drop(dev);
    let again = FileDevice::open(&path, Some(4096)).unwrap();
    assert_eq!(
        again.size_bytes(),
        1 << 30,
        "an existing file keeps its size"
    );
}

#[test]
fn bad_opens_fail_with_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = FileDevice::open(dir.path().join("missing.img"), None).unwrap_err();
    assert_eq!(missing.kind, IoErrorKind::Open);
    let odd = FileDevice::open(dir.path().join("odd.img"), Some(5000)).unwrap_err();
    assert_eq!(odd.kind, IoErrorKind::Open);
    assert!(!dir.path().join("odd.img").exists());
    let not_a_file = FileDevice::open(dir.path(), None).unwrap_err();
    assert_eq!(not_a_file.kind, IoErrorKind::Open);
}

#[test]
fn growth_is_seen_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(1 << 20)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    assert_eq!(dev.size_bytes(), 1 << 20);
    let err = dev.write_at(2 << 20, &[1u8; 4096]).unwrap_err();
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
    assert_eq!(dev.refresh_size().unwrap(), 3 << 20);
    dev.write_at(2 << 20, &[1u8; 4096]).unwrap();
}

#[test]
fn discard_punches_a_hole_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(8 << 20)).unwrap();
    dev.write_at(1 << 20, &pattern(1, 4 << 20)).unwrap();
    dev.flush().unwrap();
    let before = allocated_bytes(&path);
    assert!(before >= 4 << 20);
    dev.discard(1 << 20, 4 << 20).unwrap();
    assert!(
        allocated_bytes(&path) <= before - (4 << 20),
        "hole not punched"
    );
    let mut buf = vec![1u8; 4 << 20];
    dev.read_at(1 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
}

#[test]
fn preallocate_gives_a_sparse_file_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(8 << 20)).unwrap();
    let before = allocated_bytes(&path);
    dev.preallocate(1 << 20, 4 << 20).unwrap();
    assert!(
        allocated_bytes(&path) >= before + (4 << 20),
        "blocks not allocated"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    let mut buf = vec![1u8; 4 << 20];
    dev.read_at(1 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

/// Requests longer than one kernel request and caller memory that is not aligned (bounced under
/// O_DIRECT, in more than one round) on every engine.
#[test]
fn large_and_unaligned_transfers() {
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let dev =
            FileDevice::open(dir.path().join("p.img"), options(backend, true, 40 << 20)).unwrap();
        let data = pattern(11, (20 << 20) + 1);
        dev.write_at(4096, &data[1..]).unwrap();
        let mut out = vec![0u8; (20 << 20) + 1];
        dev.read_at(4096, &mut out[1..]).unwrap();
        assert!(
            out[1..] == data[1..],
            "{backend:?}: large unaligned read back"
        );
        let (a, b) = out[1..].split_at_mut(10 << 20);
        dev.read_batch(&mut [(4096, a), (4096 + (10 << 20), b)])
            .unwrap();
        assert!(
            out[1..] == data[1..],
            "{backend:?}: batched unaligned read back"
        );
    }
}

/// Under O_DIRECT, aligned caller memory goes to the kernel as it is and unaligned memory is
/// bounced, each bounce counted; a buffered device never bounces.
#[test]
fn bounce_copies_are_counted() {
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let dev =
            FileDevice::open(dir.path().join("p.img"), options(backend, true, 1 << 20)).unwrap();
        assert!(dev.is_direct(), "the temp dir takes O_DIRECT");
        let mut aligned = AlignedBuf::copy_of(&pattern(3, 8192));
        dev.write_at(0, &aligned).unwrap();
        dev.read_at(0, &mut aligned).unwrap();
        let (a, b) = aligned.split_at_mut(4096);
        dev.read_batch(&mut [(0, a), (4096, b)]).unwrap();
        let stats = dev.stats();
        assert_eq!((stats.bounces, stats.bounce_bytes), (0, 0), "{backend:?}");
        assert_eq!((stats.reads, stats.read_batches, stats.writes), (3, 1, 1));

        let mut unaligned = vec![0u8; 8192 + 1];
        dev.write_at(8192, &aligned[..]).unwrap();
        dev.read_at(8192, &mut unaligned[1..]).unwrap();
        assert!(unaligned[1..] == aligned[..], "{backend:?}: bounced read");
        dev.write_at(16384, &unaligned[1..]).unwrap();
        let stats = dev.stats();
        assert_eq!(
            (stats.bounces, stats.bounce_bytes),
            (2, 16384),
            "{backend:?}"
        );

        let buffered =
            FileDevice::open(dir.path().join("b.img"), options(backend, false, 1 << 20)).unwrap();
        buffered.write_at(0, &unaligned[1..]).unwrap();
        assert_eq!(buffered.stats().bounces, 0);
    }
}

#[test]
fn direct_io_is_used_where_the_file_system_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FileDevice::open(
        dir.path().join("p.img"),
        options(Backend::Pread, true, 1 << 20),
    )
    .unwrap();
    println!(
        "O_DIRECT on the temp dir: {}, alignment {}",
        dev.is_direct(),
        dev.alignment()
    );
    assert!(dev.alignment() == 512 || dev.alignment() == 4096);
    let buffered = FileDevice::open(
        dir.path().join("b.img"),
        options(Backend::Pread, false, 1 << 20),
    )
    .unwrap();
    assert!(!buffered.is_direct());
    assert_eq!(buffered.alignment(), 512);
}

/// More threads than rings, each submitting batches: threads wait for a ring and every batch
/// still lands where it was meant to.
#[test]
fn more_threads_than_rings() {
    const THREADS: u64 = 16;
    const REGION_BYTES: u64 = 256 << 10;
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let size = THREADS * REGION_BYTES;
        let dev = Arc::new(
            FileDevice::open(dir.path().join("p.img"), options(backend, true, size)).unwrap(),
        );
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    let base = t * REGION_BYTES;
                    for round in 0..50u64 {
                        let blocks: Vec<Vec<u8>> = (0..8)
                            .map(|b| pattern(t << 32 | round << 8 | b, 4096))
                            .collect();
                        let writes: Vec<(u64, &[u8])> = blocks
                            .iter()
                            .enumerate()
                            .map(|(b, d)| (base + b as u64 * 8192, &d[..]))
                            .collect();
                        dev.write_batch(&writes).unwrap();
                        let mut bufs = vec![vec![0u8; 4096]; 8];
                        let mut reads: Vec<(u64, &mut [u8])> = bufs
                            .iter_mut()
                            .enumerate()
                            .map(|(b, d)| (base + b as u64 * 8192, &mut d[..]))
                            .collect();
                        dev.read_batch(&mut reads).unwrap();
                        assert!(bufs == blocks, "thread {t} round {round}");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
