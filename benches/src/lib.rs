//! Shared set-up for the criterion benchmarks in `benches/benches/`.
//!
//! [`PatternDevice`] is a block device for benchmarks that need pools far larger than this machine's
//! memory would hold as plain bytes: it keeps every 4 KiB block the engine writes, but a block made
//! entirely of the benchmark's fill byte is kept as that one byte. Reads return exactly what was
//! written, so the engine under test is the real one, on a real (if compact) device. It also counts
//! bytes written, split into fill-pattern blocks (the benchmark's data) and everything else (the
//! engine's metadata), which is how the write-amplification figures are measured.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_engine::{BlockDevice, IoError};
use cairn_io::check_range;
use parking_lot::RwLock;

/// A new scratch directory for a benchmark's pool and backing files, removed when dropped: under
/// `CAIRN_BENCH_DIR` (the disk to measure) or else the working directory.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var_os("CAIRN_BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("bench scratch directory")
}

/// How [`alternated`] states each round's ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// Subject time over base time: above 1 the subject is slower.
    Time,
    /// Base time over subject time (for the same work): above 1 the subject is faster.
    Throughput,
}

/// A comparison measured in alternation on this noisy machine: `rounds` rounds, each timing
/// `base(round)` and `subject(round)` (the subject first in every other round, so a drift of the
/// disk falls on both alike). Prints each round's two times (whatever unit the closures' work
/// is, e.g. the mean per request) and ratio under `label`, then the median, which it returns.
pub fn alternated(
    label: &str,
    names: (&str, &str),
    rounds: u64,
    ratio: Ratio,
    mut base: impl FnMut(u64) -> Duration,
    mut subject: impl FnMut(u64) -> Duration,
) -> f64 {
    assert!(rounds > 0, "at least one round");
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = base(round);
            (a, subject(round))
        } else {
            let b = subject(round);
            (base(round), b)
        };
        let r = match ratio {
            Ratio::Time => b.as_secs_f64() / a.as_secs_f64(),
            Ratio::Throughput => a.as_secs_f64() / b.as_secs_f64(),
        };
        ratios.push(r);
        println!(
            "  {label} round {round}: {} {:9.1} us  {} {:9.1} us  ratio {r:5.2}",
            names.0,
            a.as_secs_f64() * 1e6,
            names.1,
            b.as_secs_f64() * 1e6
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "  {label} median ratio {median:5.2} (range {:.2}-{:.2})",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    median
}

/// The byte every benchmark data block is filled with.
pub const FILL_BYTE: u8 = 0xa5;
const BLOCK_BYTES: usize = 4096;

#[derive(Clone)]
enum Block {
    Fill,
    Bytes(Box<[u8]>),
}

/// A memory device that stores fill-pattern blocks as one marker. See the crate docs.
#[derive(Default)]
pub struct PatternDevice {
    size_bytes: u64,
    blocks: RwLock<HashMap<u64, Block>>,
    fill_bytes_written: AtomicU64,
    other_bytes_written: AtomicU64,
}

impl std::fmt::Debug for PatternDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternDevice")
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

/// Bytes written to a [`PatternDevice`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Blocks made only of [`FILL_BYTE`]: the benchmark's data.
    pub data_bytes: u64,
    /// Every other block: the engine's metadata (superblocks, tree nodes, space map).
    pub metadata_bytes: u64,
}

impl std::ops::Sub for WriteCounts {
    type Output = WriteCounts;
    fn sub(self, rhs: WriteCounts) -> WriteCounts {
        WriteCounts {
            data_bytes: self.data_bytes - rhs.data_bytes,
            metadata_bytes: self.metadata_bytes - rhs.metadata_bytes,
        }
    }
}

impl PatternDevice {
    pub fn new(size_bytes: u64) -> PatternDevice {
        assert_eq!(size_bytes % BLOCK_BYTES as u64, 0);
        PatternDevice {
            size_bytes,
            ..PatternDevice::default()
        }
    }

    pub fn write_counts(&self) -> WriteCounts {
        WriteCounts {
            data_bytes: self.fill_bytes_written.load(Ordering::Relaxed),
            metadata_bytes: self.other_bytes_written.load(Ordering::Relaxed),
        }
    }

    fn check(&self, op: &'static str, offset: u64, len: u64) -> Result<(), IoError> {
        check_range(op, offset, len, BLOCK_BYTES as u64, self.size_bytes)
    }
}

impl BlockDevice for PatternDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn alignment(&self) -> u64 {
        BLOCK_BYTES as u64
    }

    fn refresh_size(&self) -> Result<u64, IoError> {
        Ok(self.size_bytes)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check("read", offset, buf.len() as u64)?;
        let blocks = self.blocks.read();
        for (i, chunk) in buf.chunks_mut(BLOCK_BYTES).enumerate() {
            match blocks.get(&(offset / BLOCK_BYTES as u64 + i as u64)) {
                Some(Block::Fill) => chunk.fill(FILL_BYTE),
                Some(Block::Bytes(bytes)) => chunk.copy_from_slice(bytes),
                None => chunk.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        self.check("write", offset, data.len() as u64)?;
        let mut blocks = self.blocks.write();
        for (i, chunk) in data.chunks(BLOCK_BYTES).enumerate() {
            let block = if chunk.iter().all(|b| *b == FILL_BYTE) {
                self.fill_bytes_written
                    .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
                Block::Fill
            } else {
                self.other_bytes_written
                    .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
                Block::Bytes(chunk.into())
            };
            blocks.insert(offset / BLOCK_BYTES as u64 + i as u64, block);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.check("discard", offset, len)?;
        let mut blocks = self.blocks.write();
        for block in offset / BLOCK_BYTES as u64..(offset + len) / BLOCK_BYTES as u64 {
            blocks.remove(&block);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_was_written_and_counts_it() {
        let dev = PatternDevice::new(1 << 20);
        let fill = vec![FILL_BYTE; 8192];
        let mut meta = vec![0u8; 4096];
        meta[7] = 1;
        dev.write_at(0, &fill).unwrap();
        dev.write_at(8192, &meta).unwrap();
        let mut back = vec![0u8; 12288];
        dev.read_at(0, &mut back).unwrap();
        assert_eq!(&back[..8192], &fill[..]);
        assert_eq!(&back[8192..], &meta[..]);
        assert_eq!(
            dev.write_counts(),
            WriteCounts {
                data_bytes: 8192,
                metadata_bytes: 4096
            }
        );
        dev.discard(0, 4096).unwrap();
        dev.read_at(0, &mut back[..4096]).unwrap();
        assert!(back[..4096].iter().all(|b| *b == 0));
        assert!(dev.write_at(1, &meta).is_err());
        assert!(dev.read_at(1 << 20, &mut back[..4096]).is_err());
    }
}
