//! The data extents `check` records, read back in order of first block with bounded memory: up to
//! a bound of records are kept in memory; past it they are sorted and appended as a run to an
//! anonymous temporary file (removed when closed), and reading merges the runs.
//!
//! Invariant: records come back sorted by `phys`, each exactly once; memory is the in-memory
//! bound while recording and `CHECK_RUN_READ_RECORDS` records per run while merging.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::DataRef;
use crate::error::{err, ErrorKind, Result};
use crate::limits::CHECK_RUN_READ_RECORDS;

const RECORD_BYTES: usize = 32;

fn spill_error(e: std::io::Error) -> crate::error::Error {
    err(
        ErrorKind::Io,
        format!("check: temporary file of sorted runs: {e}"),
    )
}

fn encode(d: &DataRef, out: &mut Vec<u8>) {
    for v in [d.phys, d.len, d.leaf, d.key] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn decode(b: &[u8]) -> DataRef {
    let f = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    DataRef {
        phys: f(0),
        len: f(1),
        leaf: f(2),
        key: f(3),
    }
}

/// Records being collected.
pub(super) struct Runs {
    in_memory_max: usize,
    buf: Vec<DataRef>,
    file: Option<File>,
    /// Byte offset and record count of each run written.
    runs: Vec<(u64, u64)>,
    written_bytes: u64,
}

impl Runs {
    pub(super) fn new(in_memory_max: usize) -> Runs {
        assert!(in_memory_max > 0, "at least one record in memory");
        Runs {
            in_memory_max,
            buf: Vec::new(),
            file: None,
            runs: Vec::new(),
            written_bytes: 0,
        }
    }

    pub(super) fn push(&mut self, d: DataRef) -> Result<()> {
        self.buf.push(d);
        if self.buf.len() >= self.in_memory_max {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs written to the temporary file so far.
    #[cfg(test)]
    pub(super) fn spilled(&self) -> usize {
        self.runs.len()
    }

    /// Sorts the buffer and appends it to the file as one run.
    fn spill(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.buf.sort_unstable_by_key(|d| d.phys);
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile().map_err(spill_error)?),
        };
        let start = self.written_bytes;
        let mut bytes = Vec::with_capacity(CHECK_RUN_READ_RECORDS * RECORD_BYTES);
        for chunk in self.buf.chunks(CHECK_RUN_READ_RECORDS) {
            bytes.clear();
            chunk.iter().for_each(|d| encode(d, &mut bytes));
            file.write_all_at(&bytes, self.written_bytes)
                .map_err(spill_error)?;
            self.written_bytes += bytes.len() as u64;
        }
        self.runs.push((start, self.buf.len() as u64));
        self.buf = Vec::new();
        Ok(())
    }

    /// The records in order of first block.
    pub(super) fn into_sorted(mut self) -> Result<Sorted> {
        if self.file.is_none() {
            self.buf.sort_unstable_by_key(|d| d.phys);
            return Ok(Sorted::Memory(self.buf.into_iter().collect()));
        }
        self.spill()?;
        let mut merge = Merge {
            file: self.file.take().expect("spilled"),
            cursors: self
                .runs
                .iter()
                .map(|&(off, left)| Cursor {
                    off,
                    left,
                    chunk: VecDeque::new(),
                })
                .collect(),
            heads: BinaryHeap::new(),
        };
        for i in 0..merge.cursors.len() {
            merge.advance(i)?;
        }
        Ok(Sorted::Merge(merge))
    }
}

/// Records in order: from memory, or merged from the runs.
pub(super) enum Sorted {
    Memory(VecDeque<DataRef>),
    Merge(Merge),
}

impl Sorted {
    pub(super) fn peek(&self) -> Option<&DataRef> {
        match self {
            Sorted::Memory(q) => q.front(),
            Sorted::Merge(m) => m.heads.peek().map(|Reverse(h)| &h.record),
        }
    }

    pub(super) fn pop(&mut self) -> Result<Option<DataRef>> {
        match self {
            Sorted::Memory(q) => Ok(q.pop_front()),
            Sorted::Merge(m) => {
                let Some(Reverse(head)) = m.heads.pop() else {
                    return Ok(None);
                };
                m.advance(head.run)?;
                Ok(Some(head.record))
            }
        }
    }
}

pub(super) struct Merge {
    file: File,
    cursors: Vec<Cursor>,
    heads: BinaryHeap<Reverse<Head>>,
}

/// The unread part of one run and its buffered records.
struct Cursor {
    off: u64,
    left: u64,
    chunk: VecDeque<DataRef>,
}

/// The next record of run `run`, ordered by first block (then run, for a total order).
struct Head {
    record: DataRef,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        (self.record.phys, self.run) == (o.record.phys, o.run)
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Head) -> std::cmp::Ordering {
        (self.record.phys, self.run).cmp(&(o.record.phys, o.run))
    }
}

impl Merge {
    /// Moves run `i`'s next record (reading a chunk when needed) into the heads.
    fn advance(&mut self, i: usize) -> Result<()> {
        let c = &mut self.cursors[i];
        if c.chunk.is_empty() && c.left > 0 {
            let n = c.left.min(CHECK_RUN_READ_RECORDS as u64);
            let mut bytes = vec![0u8; n as usize * RECORD_BYTES];
            self.file
                .read_exact_at(&mut bytes, c.off)
                .map_err(spill_error)?;
            c.chunk.extend(bytes.chunks(RECORD_BYTES).map(decode));
            c.off += bytes.len() as u64;
            c.left -= n;
        }
        if let Some(record) = c.chunk.pop_front() {
            self.heads.push(Reverse(Head { record, run: i }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_runs_come_back_merged_in_order() {
        let mut runs = Runs::new(7);
        let mut want = Vec::new();
        for i in 0..1000u64 {
            let d = DataRef {
                phys: (i * 7919) % 1009,
                len: i % 5 + 1,
                leaf: i,
                key: 3 * i,
            };
            want.push((d.phys, d.len, d.leaf, d.key));
            runs.push(d).unwrap();
        }
        assert_eq!(runs.spilled(), 1000 / 7);
        let mut sorted = runs.into_sorted().unwrap();
        let mut got = Vec::new();
        while let Some(d) = sorted.pop().unwrap() {
            got.push((d.phys, d.len, d.leaf, d.key));
        }
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "in order");
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "every record once");
    }
}
