//! The one mapped-extent copy of the array layer, whatever backends hold the two volumes: only
//! the ranges the source reports mapped (Cairn's engine: its extent map; RBD: its diff
//! iteration) are read from the source and written to the target, in [`COPY_CHUNK_BYTES`]
//! steps, and the target is flushed before the copy reports completion.
//!
//! A backend gives access to a volume's data through [`VolumeData`]; the same loop serves a copy
//! within one backend and one between two (`combined`), so neither backend knows the other.
//!
//! Invariants: the caller's control is asked before the first step and after every step, and a
//! `Break` stops the copy before anything more is written; `Completed` only after the target's
//! flush succeeded.

use std::ops::ControlFlow;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{ChangeEvent, Listeners};
use crate::limits::{COPY_CHUNK_BYTES, COPY_STATUS_WINDOW_BYTES};
use crate::types::{CopyEnd, CopyProgress, VolumeId};
use crate::CopyControl;

/// The data of one volume, as a copy reads or writes it.
pub trait VolumeData: Send + Sync {
    /// The volume's size.
    fn size_bytes(&self) -> u64;

    /// The mapped ranges `(offset, len)` of `[at, at + len)`, in order; a range may reach past
    /// the window (it is cut to it), and anything not listed reads as zeros.
    fn mapped(&self, at: u64, len: u64) -> Result<Vec<(u64, u64)>>;

    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
}

/// `[offset, offset + len)` cut to the window `[at, at + window)`: (start, length).
fn clamp(offset: u64, len: u64, at: u64, window: u64) -> (u64, u64) {
    let start = offset.max(at);
    let end = offset.saturating_add(len).min(at + window);
    (start, end.saturating_sub(start))
}

/// Calls `f(start, len)` for every mapped range of `data`, window by window, until it breaks.
fn each_mapped(
    data: &dyn VolumeData,
    mut f: impl FnMut(u64, u64) -> Result<ControlFlow<()>>,
) -> Result<ControlFlow<()>> {
    let size_bytes = data.size_bytes();
    let mut at = 0;
    while at < size_bytes {
        let window = COPY_STATUS_WINDOW_BYTES.min(size_bytes - at);
        for (offset, len) in data.mapped(at, window)? {
            let (start, len) = clamp(offset, len, at, window);
            if len > 0 && f(start, len)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        at += window;
    }
    Ok(ControlFlow::Continue(()))
}

/// Bytes of `data` that are mapped (what a copy of it transfers).
pub fn mapped_bytes(data: &dyn VolumeData) -> Result<u64> {
    let mut total = 0;
    let _never_stopped = each_mapped(data, |_, len| {
        total += len;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(total)
}

/// Copies the mapped ranges of `from` into `to` (of the same size), telling `step` the progress
/// before the first chunk and after each one.
pub fn copy_mapped(
    from: &dyn VolumeData,
    to: &dyn VolumeData,
    step: &mut dyn FnMut(CopyProgress) -> ControlFlow<()>,
) -> Result<CopyEnd> {
    if from.size_bytes() != to.size_bytes() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "Copy of {} bytes into {} bytes: the sizes differ",
                from.size_bytes(),
                to.size_bytes()
            ),
        ));
    }
    let mut copied_bytes = 0u64;
    if step(CopyProgress { copied_bytes }).is_break() {
        return Ok(CopyEnd::Stopped);
    }
    let mut buf = vec![0u8; COPY_CHUNK_BYTES as usize];
    let flow = each_mapped(from, |mut off, len| {
        let end = off + len;
        while off < end {
            let n = COPY_CHUNK_BYTES.min(end - off);
            let chunk = &mut buf[..n as usize];
            from.read_at(off, chunk)?;
            to.write_at(off, chunk)?;
            (copied_bytes, off) = (copied_bytes + n, off + n);
            if step(CopyProgress { copied_bytes }).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if flow.is_break() {
        return Ok(CopyEnd::Stopped);
    }
    to.flush()?;
    Ok(CopyEnd::Completed)
}

/// [`copy_mapped`] of volume `from_id` into `to_id`, reporting each step to `listeners` as
/// [`ChangeEvent::CopyProgress`] before asking `control`.
pub fn copy_reported(
    (from_id, from): (VolumeId, &dyn VolumeData),
    (to_id, to): (VolumeId, &dyn VolumeData),
    listeners: &Listeners,
    control: CopyControl<'_>,
) -> Result<CopyEnd> {
    copy_mapped(from, to, &mut |progress| {
        if progress.copied_bytes > 0 {
            listeners.notify(&ChangeEvent::CopyProgress {
                from: from_id,
                to: to_id,
                copied_bytes: progress.copied_bytes,
            });
        }
        control(progress)
    })
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
