//! Measures the raw device ceiling through `FileDevice`: 4 KiB random writes and reads one at a
//! time and in batches, and 1 MiB sequential writes and reads, for each engine.
//!
//! `cargo run --release -p cairn-io --example ceiling -- [DIR] [FILE_MIB]` (default: the system
//! temporary directory, 1024 MiB). The pool file is created sparse and removed afterwards.

use std::time::Instant;

use cairn_io::{uring_available, AlignedBuf, Backend, BlockDevice, FileDevice, OpenOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCK_BYTES: u64 = 4096;
const RANDOM_OPS: usize = 20_000;
const BATCH: usize = 32;
const SEQ_BYTES: u64 = 1 << 20;

fn report(what: &str, ops: usize, bytes: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let mib_s = bytes as f64 / secs / (1 << 20) as f64;
    println!(
        "  {what:<28} {:>10.0} op/s {mib_s:>9.1} MiB/s",
        ops as f64 / secs
    );
}

fn offsets(size: u64, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.gen_range(0..size / BLOCK_BYTES) * BLOCK_BYTES)
        .collect()
}

fn random_single(dev: &FileDevice, write: bool) {
    let mut buf = AlignedBuf::zeroed(BLOCK_BYTES as usize);
    buf.fill(0x5A);
    let started = Instant::now();
    for offset in offsets(dev.size_bytes(), RANDOM_OPS, 1) {
        let done = if write {
            dev.write_at(offset, &buf)
        } else {
            dev.read_at(offset, &mut buf)
        };
        done.expect("random I/O");
    }
    let what = if write {
        "4K random write QD1"
    } else {
        "4K random read QD1"
    };
    report(what, RANDOM_OPS, RANDOM_OPS as u64 * BLOCK_BYTES, started);
}

fn random_batched(dev: &FileDevice, write: bool) {
    let mut bufs: Vec<AlignedBuf> = (0..BATCH).map(|_| AlignedBuf::zeroed(4096)).collect();
    let all = offsets(dev.size_bytes(), RANDOM_OPS, 2);
    let started = Instant::now();
    for chunk in all.chunks(BATCH) {
        if write {
            let batch: Vec<(u64, &[u8])> =
                chunk.iter().zip(&bufs).map(|(o, b)| (*o, &b[..])).collect();
            dev.write_batch(&batch).expect("batched write");
        } else {
            let mut batch: Vec<(u64, &mut [u8])> = chunk
                .iter()
                .zip(bufs.iter_mut())
                .map(|(o, b)| (*o, &mut b[..]))
                .collect();
            dev.read_batch(&mut batch).expect("batched read");
        }
    }
    let what = if write {
        "4K random write batch 32"
    } else {
        "4K random read batch 32"
    };
    report(what, RANDOM_OPS, RANDOM_OPS as u64 * BLOCK_BYTES, started);
}

fn sequential(dev: &FileDevice, write: bool) {
    let mut buf = AlignedBuf::zeroed(SEQ_BYTES as usize);
    buf.fill(0xA5);
    let count = dev.size_bytes() / SEQ_BYTES;
    let started = Instant::now();
    for i in 0..count {
        let offset = i * SEQ_BYTES;
        let done = if write {
            dev.write_at(offset, &buf)
        } else {
            dev.read_at(offset, &mut buf)
        };
        done.expect("sequential I/O");
    }
    if write {
        dev.flush().expect("flush");
    }
    let what = if write {
        "1M sequential write+flush"
    } else {
        "1M sequential read"
    };
    report(what, count as usize, count * SEQ_BYTES, started);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    for backend in [Backend::Pread, Backend::Uring] {
        if let (Backend::Uring, Err(reason)) = (backend, uring_available()) {
            println!("{backend:?}: skipped ({reason})");
            continue;
        }
        let path = dir.join(format!("cairn-ceiling-{}.img", std::process::id()));
        let options = OpenOptions {
            create_size_bytes: Some(mib << 20),
            direct: true,
            backend,
        };
        let dev = FileDevice::open(&path, options).expect("open");
        println!(
            "{backend:?} (O_DIRECT {}, alignment {}):",
            dev.is_direct(),
            dev.alignment()
        );
        sequential(&dev, true);
        sequential(&dev, false);
        random_single(&dev, true);
        random_single(&dev, false);
        random_batched(&dev, true);
        random_batched(&dev, false);
        drop(dev);
        let _ = std::fs::remove_file(&path);
    }
}
