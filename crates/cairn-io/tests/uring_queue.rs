//! The deep queue of the file backends: batches far deeper than one ring's queue, completions
//! arriving out of order, many threads at once, reads that come up short, and a device dropped
//! right after heavy concurrent use. Each test runs on io_uring (when available here) and on
//! pread/pwrite, with O_DIRECT and aligned memory, so both engines must agree byte for byte.

mod suite;

use std::sync::Arc;

use cairn_io::limits::URING_QUEUE_DEPTH;
use cairn_io::{uring_available, AlignedBuf, Backend, BlockDevice, FileDevice, OpenOptions};
use suite::pattern;

const BLOCK: usize = 4096;

fn backends() -> Vec<Backend> {
    match uring_available() {
        Ok(()) => vec![Backend::Uring, Backend::Pread],
        Err(reason) => {
            println!("io_uring skipped: not available here: {reason}");
            vec![Backend::Pread]
        }
    }
}

fn open(path: &std::path::Path, backend: Backend, size: u64) -> FileDevice {
    let options = OpenOptions {
        create_size_bytes: Some(size),
        direct: true,
        backend,
    };
    let dev = FileDevice::open(path, options).unwrap();
    assert_eq!(dev.backend(), backend);
    dev
}

/// Block `i` of a test pattern, distinct for every block and tag.
fn block(tag: u64, i: usize) -> Vec<u8> {
    pattern(tag << 20 | i as u64, BLOCK)
}

#[test]
fn a_batch_many_times_deeper_than_a_ring_reads_back_exactly() {
    let blocks = URING_QUEUE_DEPTH as usize * 8;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let dev = open(
            &dir.path().join("p.img"),
            backend,
            (blocks * BLOCK * 2) as u64,
        );
        let data: Vec<Vec<u8>> = (0..blocks).map(|i| block(1, i)).collect();
        // Every other block, so no two requests are adjacent, written as one batch.
        let writes: Vec<(u64, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| ((i * 2 * BLOCK) as u64, &d[..]))
            .collect();
        dev.write_batch(&writes).unwrap();
        // Read back in one batch, in reverse order and with runs of mixed lengths, into aligned
        // memory: each buffer must get exactly its own range, whatever order completions arrive in.
        let mut out = AlignedBuf::zeroed(blocks * BLOCK * 2);
        let mut reads: Vec<(u64, &mut [u8])> = Vec::new();
        let mut rest: &mut [u8] = &mut out;
        let mut at = 0usize;
        while !rest.is_empty() {
            let len = BLOCK * (1 + at / BLOCK % 3).min(rest.len() / BLOCK);
            let (piece, tail) = rest.split_at_mut(len);
            reads.push((at as u64, piece));
            rest = tail;
            at += len;
        }
        reads.reverse();
        dev.read_batch(&mut reads).unwrap();
        drop(reads);
        for (i, d) in data.iter().enumerate() {
            let at = i * 2 * BLOCK;
            assert!(out[at..at + BLOCK] == d[..], "{backend:?}: block {i}");
            assert!(out[at + BLOCK..at + 2 * BLOCK].iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn sixteen_threads_of_deep_batches_each_get_their_own_data() {
    const THREADS: usize = 16;
    let per_thread = URING_QUEUE_DEPTH as usize * 2;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let size = (THREADS * per_thread * BLOCK) as u64;
        let dev = Arc::new(open(&dir.path().join("p.img"), backend, size));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    let base = t * per_thread * BLOCK;
                    for round in 0..4u64 {
                        let tag = (t as u64) << 8 | round;
                        let data: Vec<Vec<u8>> = (0..per_thread).map(|i| block(tag, i)).collect();
                        let writes: Vec<(u64, &[u8])> = data
                            .iter()
                            .enumerate()
                            .map(|(i, d)| ((base + i * BLOCK) as u64, &d[..]))
                            .collect();
                        dev.write_batch(&writes).unwrap();
                        let mut out = AlignedBuf::zeroed(per_thread * BLOCK);
                        let mut reads: Vec<(u64, &mut [u8])> = out
                            .chunks_mut(BLOCK)
                            .enumerate()
                            .map(|(i, b)| ((base + i * BLOCK) as u64, b))
                            .collect();
                        dev.read_batch(&mut reads).unwrap();
                        drop(reads);
                        for (i, d) in data.iter().enumerate() {
                            assert!(out[i * BLOCK..(i + 1) * BLOCK] == d[..], "{t}/{round}/{i}");
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    }
}

#[test]
fn reads_past_a_shrunk_file_fail_and_the_device_stays_usable() {
    let blocks = 64usize;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let dev = open(&path, backend, (blocks * BLOCK) as u64);
        let data: Vec<Vec<u8>> = (0..blocks).map(|i| block(3, i)).collect();
        let writes: Vec<(u64, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| ((i * BLOCK) as u64, &d[..]))
            .collect();
        dev.write_batch(&writes).unwrap();
        // The file shrinks under the open device (its size is cached): a read reaching past the
        // new end comes back short and then with nothing, which is an error, never zeros.
        let half = blocks / 2;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((half * BLOCK) as u64)
            .unwrap();
        let mut out = AlignedBuf::zeroed(blocks * BLOCK);
        let (low, high) = out.split_at_mut(half * BLOCK);
        let err = dev
            .read_batch(&mut [(0, low), ((half * BLOCK) as u64, high)])
            .unwrap_err();
        assert_eq!(err.offset, (half * BLOCK) as u64, "{backend:?}: {err}");
        let mut spanning = AlignedBuf::zeroed(4 * BLOCK);
        let at = ((half - 2) * BLOCK) as u64;
        assert!(dev.read_at(at, &mut spanning).is_err(), "{backend:?}");
        // What is still there reads back exactly, through the same device afterwards.
        let mut low = AlignedBuf::zeroed(half * BLOCK);
        dev.read_at(0, &mut low).unwrap();
        for (i, d) in data.iter().take(half).enumerate() {
            assert!(
                low[i * BLOCK..(i + 1) * BLOCK] == d[..],
                "{backend:?}: block {i}"
            );
        }
    }
}

#[test]
fn a_device_dropped_right_after_concurrent_batches_releases_everything() {
    const THREADS: usize = 32;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.img");
        let blocks = URING_QUEUE_DEPTH as usize;
        let dev = Arc::new(open(&path, backend, (blocks * BLOCK) as u64));
        let data: Vec<Vec<u8>> = (0..blocks).map(|i| block(4, i)).collect();
        let writes: Vec<(u64, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| ((i * BLOCK) as u64, &d[..]))
            .collect();
        dev.write_batch(&writes).unwrap();
        let expected = Arc::new(data.concat());
        // Every thread holds the device; whichever finishes last drops it, rings and all.
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (dev, expected) = (Arc::clone(&dev), Arc::clone(&expected));
                std::thread::spawn(move || {
                    let mut out = AlignedBuf::zeroed(blocks * BLOCK);
                    let mut reads: Vec<(u64, &mut [u8])> = out
                        .chunks_mut(BLOCK)
                        .enumerate()
                        .map(|(i, b)| ((i * BLOCK) as u64, b))
                        .collect();
                    dev.read_batch(&mut reads).unwrap();
                    drop(reads);
                    assert!(out[..] == expected[..]);
                })
            })
            .collect();
        drop(dev);
        for w in workers {
            w.join().unwrap();
        }
        // The last holder closed the file and its lock: it opens again and holds the data.
        let again = open(&path, backend, (blocks * BLOCK) as u64);
        let mut out = AlignedBuf::zeroed(blocks * BLOCK);
        again.read_at(0, &mut out).unwrap();
        assert!(out[..] == expected[..], "{backend:?}");
    }
}
