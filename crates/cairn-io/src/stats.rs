//! [`IoStats`]: counts of what a device did, kept by [`crate::MemDevice`] and [`crate::FileDevice`].
//!
//! Invariants: a request is counted once it succeeded (a failed one leaves the counts as they
//! were), except bounce copies, which are counted when they are made — a copy of the caller's
//! memory costs the same whether the I/O then succeeds or not.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of the requests a device completed successfully, and of the bounce copies it made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Reads completed, each entry of a batch counted as one.
    pub reads: u64,
    /// Calls of `read_batch` that completed (their entries are counted in `reads` too).
    pub read_batches: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub discard_bytes: u64,
    /// Transfers that went through a bounce buffer because the caller's memory was not aligned
    /// as O_DIRECT requires (a copy in for a write, a copy out for a read). Always 0 on a
    /// device that takes any memory (the in-memory device, buffered files).
    pub bounces: u64,
    /// Bytes copied through bounce buffers.
    pub bounce_bytes: u64,
}

/// The live counters behind [`IoStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub reads: AtomicU64,
    pub read_batches: AtomicU64,
    pub read_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub flushes: AtomicU64,
    pub discards: AtomicU64,
    pub discard_bytes: AtomicU64,
    pub bounces: AtomicU64,
    pub bounce_bytes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> IoStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoStats {
            reads: g(&self.reads),
            read_batches: g(&self.read_batches),
            read_bytes: g(&self.read_bytes),
            writes: g(&self.writes),
            write_bytes: g(&self.write_bytes),
            flushes: g(&self.flushes),
            discards: g(&self.discards),
            discard_bytes: g(&self.discard_bytes),
            bounces: g(&self.bounces),
            bounce_bytes: g(&self.bounce_bytes),
        }
    }
}
