//! The mapped-extent copy of Cairn's engine: only the ranges `block_status` reports mapped are
//! read from the source and written to the target, in [`COPY_CHUNK_BYTES`] steps, and the target
//! pool is flushed before the copy reports completion.

use std::ops::ControlFlow;

use cairn_engine::{Pool, VolumeId};

use crate::limits::{COPY_CHUNK_BYTES, COPY_STATUS_WINDOW_BYTES};
use crate::types::{CopyEnd, CopyProgress};

/// Bytes of `id` that are mapped.
pub fn mapped_bytes(pool: &Pool, id: VolumeId, size_bytes: u64) -> cairn_engine::Result<u64> {
    let mut total = 0;
    let mut at = 0;
    while at < size_bytes {
        let len = COPY_STATUS_WINDOW_BYTES.min(size_bytes - at);
        for e in pool.block_status(id, at, len)? {
            if e.mapped {
                total += clamp(e.offset, e.len, at, len).1;
            }
        }
        at += len;
    }
    Ok(total)
}

/// `[offset, offset + len)` cut to the window `[at, at + window)`: (start, length).
fn clamp(offset: u64, len: u64, at: u64, window: u64) -> (u64, u64) {
    let start = offset.max(at);
    let end = offset.saturating_add(len).min(at + window);
    (start, end.saturating_sub(start))
}

/// One copy: where from, where to, and how much of the address space.
pub struct Copy<'a> {
    pub from_pool: &'a Pool,
    pub from: VolumeId,
    pub to_pool: &'a Pool,
    pub to: VolumeId,
    pub size_bytes: u64,
}

impl Copy<'_> {
    /// Runs the copy; `step` is told the progress before the first chunk and after each one.
    pub fn run(
        &self,
        step: &mut dyn FnMut(CopyProgress) -> ControlFlow<()>,
    ) -> cairn_engine::Result<CopyEnd> {
        let mut buf = vec![0u8; COPY_CHUNK_BYTES as usize];
        let mut copied_bytes = 0u64;
        if step(CopyProgress { copied_bytes }).is_break() {
            return Ok(CopyEnd::Stopped);
        }
        let mut at = 0;
        while at < self.size_bytes {
            let window = COPY_STATUS_WINDOW_BYTES.min(self.size_bytes - at);
            for e in self.from_pool.block_status(self.from, at, window)? {
                if !e.mapped {
                    continue;
                }
                let (mut off, len) = clamp(e.offset, e.len, at, window);
                let end = off + len;
                while off < end {
                    let n = COPY_CHUNK_BYTES.min(end - off);
                    let chunk = &mut buf[..n as usize];
                    self.from_pool.read(self.from, off, chunk)?;
                    self.to_pool.write(self.to, off, chunk)?;
                    copied_bytes += n;
                    off += n;
                    if step(CopyProgress { copied_bytes }).is_break() {
                        return Ok(CopyEnd::Stopped);
                    }
                }
            }
            at += window;
        }
        self.to_pool.flush()?;
        Ok(CopyEnd::Completed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_cuts_to_the_window() {
        assert_eq!(clamp(0, 100, 10, 50), (10, 50));
        assert_eq!(clamp(20, 10, 10, 50), (20, 10));
        assert_eq!(clamp(70, 10, 10, 50), (70, 0));
    }
}
