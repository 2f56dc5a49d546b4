//! The data path of a pool: read, write, trim, write-zeroes and block status.
//!
//! Reads and writes hold the I/O gate shared. They look up (and for writes, plan) under the pool
//! mutex, run their device I/O without it and map new blocks under it again, so a commit (which
//! holds the gate exclusively) never sees a write half done.
//!
//! Invariants:
//! - Every request is checked against its volume (alignment to the logical block size, range,
//!   read-only) before it touches anything.
//! - Unmapped ranges read as zeros.

use crate::error::{err, Error, ErrorKind, Result};
use crate::format::VF_READ_ONLY;
use crate::limits::{BLOCK_SIZE_BYTES, IO_BYTES_MAX};
use crate::mapping::Piece;
use crate::types::{Extent, VolumeId};
use cairn_io::{AlignedBuf, BlockDevice};

use super::plan::WritePlan;
use super::{Pool, State};

impl Pool {
    /// Reads data. The mapping is looked up under the pool lock; the device reads run after it
    /// is released, under the shared I/O gate, so blocks they read cannot be reused meanwhile.
    pub fn read(&self, id: VolumeId, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            let state = self.live()?;
            state.io_target(id, offset, 0, false)?;
            return Ok(());
        }
        let first_block = offset / BLOCK_SIZE_BYTES;
        let end_block = request_end(id, offset, buf.len() as u64)?.div_ceil(BLOCK_SIZE_BYTES);
        let (_gate, mut state) = self.shared()?;
        let pieces = state.read_lookup(id, offset, buf.len() as u64)?;
        let dev = state.meta.dev.clone();
        drop(state);
        if offset % BLOCK_SIZE_BYTES == 0 && buf.len() as u64 % BLOCK_SIZE_BYTES == 0 {
            return read_pieces(dev.as_ref(), first_block, &pieces, buf);
        }
        let mut tmp = AlignedBuf::zeroed(((end_block - first_block) * BLOCK_SIZE_BYTES) as usize);
        read_pieces(dev.as_ref(), first_block, &pieces, &mut tmp)?;
        let skip = (offset - first_block * BLOCK_SIZE_BYTES) as usize;
        let n = buf.len();
        buf.copy_from_slice(&tmp[skip..skip + n]);
        Ok(())
    }

    /// Reads several ranges of one volume, each into its own buffer: the mappings of all of
    /// them are looked up under one hold of the pool lock and their device reads go out as one
    /// batch. Each range gets the result it would get read alone with [`Pool::read`] (a failed
    /// batch is read again range by range to tell which failed); an empty range, or one not
    /// aligned to the block size, is read alone.
    pub fn read_many(&self, id: VolumeId, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(reads.len());
        // Per read: its first virtual block and its pieces, if the batch takes it.
        let mut plans: Vec<Option<(u64, Vec<Piece>)>> = Vec::with_capacity(reads.len());
        let Ok((gate, mut state)) = self.shared() else {
            // The pool refuses I/O: each read alone reports why.
            return reads
                .iter_mut()
                .map(|(offset, buf)| self.read(id, *offset, buf))
                .collect();
        };
        for (offset, buf) in reads.iter() {
            let (offset, len) = (*offset, buf.len() as u64);
            if len == 0 || offset % BLOCK_SIZE_BYTES != 0 || len % BLOCK_SIZE_BYTES != 0 {
                results.push(None);
                plans.push(None);
                continue;
            }
            let planned =
                request_end(id, offset, len).and_then(|_| state.read_lookup(id, offset, len));
            match planned {
                Ok(pieces) => {
                    results.push(Some(Ok(())));
                    plans.push(Some((offset / BLOCK_SIZE_BYTES, pieces)));
                }
                Err(e) => {
                    results.push(Some(Err(e)));
                    plans.push(None);
                }
            }
        }
        let dev = state.meta.dev.clone();
        drop(state);
        // The gate stays held: no block the pieces name can be reused until the reads are done.
        let mut batch: Vec<(u64, &mut [u8])> = Vec::new();
        for ((_, buf), plan) in reads.iter_mut().zip(&plans) {
            if let Some((first_block, pieces)) = plan {
                batch.extend(lay_out(*first_block, pieces, buf));
            }
        }
        if submit(dev.as_ref(), &mut batch).is_err() {
            drop(batch);
            for (((_, buf), plan), result) in reads.iter_mut().zip(&plans).zip(&mut results) {
                if let Some((first_block, pieces)) = plan {
                    *result = Some(read_pieces(dev.as_ref(), *first_block, pieces, buf));
                }
            }
        }
        drop(gate);
        reads
            .iter_mut()
            .zip(results)
            .map(|((offset, buf), result)| result.unwrap_or_else(|| self.read(id, *offset, buf)))
            .collect()
    }

    /// Writes data. The write is planned (and its fresh blocks allocated) under the pool lock,
    /// the device writes run after it is released, and the new blocks are mapped under the lock
    /// again; the shared I/O gate is held throughout, so no commit (or snapshot) sees a write
    /// half done. Blocks the volume owns exclusively are overwritten in place (see `plan`).
    pub fn write(&self, id: VolumeId, offset: u64, data: &[u8]) -> Result<()> {
        self.write_inner(id, offset, data, false).map(|_| ())
    }

    /// Writes several ranges of one volume, none durable until a flush (as with
    /// [`Pool::write`]): their blocks are held together, all are planned under one hold of the
    /// pool lock, their device writes go out as one batch and their new blocks are mapped under
    /// one more hold. Each range gets the result it would get written alone (a failed batch is
    /// written again plan by plan to tell which failed). A range the batch does not take is
    /// written alone after it: an empty one, one larger than one chunk (`IO_BYTES_MAX`), one
    /// sharing a block with an earlier range, or one refused for want of space that a commit
    /// could free (written alone, it commits and tries again).
    pub fn write_many(&self, id: VolumeId, writes: &[(u64, &[u8])]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = writes.iter().map(|_| None).collect();
        let mut together: Vec<(usize, (u64, u64))> = Vec::with_capacity(writes.len());
        for (i, &(offset, data)) in writes.iter().enumerate() {
            let len = data.len() as u64;
            if len == 0 || data.len() > IO_BYTES_MAX || request_end(id, offset, len).is_err() {
                continue;
            }
            let span = block_span(offset, len);
            if together
                .iter()
                .all(|&(_, (s, e))| span.1 <= s || e <= span.0)
            {
                together.push((i, span));
            }
        }
        if !together.is_empty() {
            self.write_together(id, writes, &together, &mut results);
        }
        writes
            .iter()
            .zip(results)
            .map(|(&(offset, data), result)| result.unwrap_or_else(|| self.write(id, offset, data)))
            .collect()
    }

    /// The batch of [`Pool::write_many`]: the writes `together` names (by index, with their
    /// block spans, pairwise apart), each result set unless that write is to go alone.
    fn write_together(
        &self,
        id: VolumeId,
        writes: &[(u64, &[u8])],
        together: &[(usize, (u64, u64))],
        results: &mut [Option<Result<()>>],
    ) {
        let spans: Vec<(u64, u64)> = together.iter().map(|&(_, span)| span).collect();
        // Held until every mapping update is applied, as for one write (see `write_chunk`).
        let blocks = self.inner.blocks.lock_many(id, &spans);
        // A pool that refuses I/O: each write alone reports why.
        let Ok((gate, mut state)) = self.shared() else {
            return;
        };
        // Space a commit could free is no reason to fail: that write goes alone.
        let retry_alone = |e: &Error, state: &State| {
            e.kind() == ErrorKind::NoSpace && state.meta.pending_blocks > 0
        };
        let mut plans = Vec::with_capacity(together.len());
        for &(i, _) in together {
            let (offset, data) = writes[i];
            let planned = state
                .io_target(id, offset, data.len() as u64, true)
                .and_then(|seq| state.plan_write(seq, offset, data, true));
            match planned {
                Ok(plan) => plans.push((i, plan)),
                Err(e) if retry_alone(&e, &state) => {}
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let dev = state.meta.dev.clone();
        drop(state);
        let mut device = Vec::new();
        for (_, plan) in &plans {
            plan.device_writes(&mut device);
        }
        let batch = match device.as_slice() {
            [] => Ok(()),
            all => dev.write_batch(all),
        };
        drop(device);
        let outcomes: Vec<Result<()>> = match batch {
            Ok(()) => plans.iter().map(|_| Ok(())).collect(),
            Err(_) => plans
                .iter_mut()
                .map(|(_, plan)| plan.execute(dev.as_ref(), false))
                .collect(),
        };
        let mut state = self.lock();
        let written: Vec<&WritePlan<'_>> = plans.iter().map(|(_, plan)| plan).collect();
        if outcomes.iter().all(|res| res.is_ok()) && state.finish_together(&written) {
            for &(i, _) in &plans {
                results[i] = Some(Ok(()));
            }
        } else {
            for ((i, plan), res) in plans.into_iter().zip(outcomes) {
                match state.finish_write(plan, res) {
                    Err(e) if retry_alone(&e, &state) => {}
                    r => results[i] = Some(r),
                }
            }
        }
        let too_dirty = state.too_dirty();
        drop(state);
        drop(gate);
        drop(blocks);
        if let Err(e) = self.commit_if_too_dirty(too_dirty) {
            for result in results.iter_mut() {
                if matches!(result, Some(Ok(()))) {
                    *result = Some(Err(e.duplicate()));
                }
            }
        }
    }

    /// Writes data durably (FUA): on return it survives a crash. A write that lands in place
    /// over blocks whose mappings are durable is written with FUA and needs no commit; any
    /// other flushes, sharing the commit with concurrent flushes (see `group`).
    pub fn write_fua(&self, id: VolumeId, offset: u64, data: &[u8]) -> Result<()> {
        if self.write_inner(id, offset, data, true)? {
            return Ok(());
        }
        self.flush()
    }

    /// A write in chunks; returns whether it is durable already (only with `fua`).
    fn write_inner(&self, id: VolumeId, offset: u64, data: &[u8], fua: bool) -> Result<bool> {
        if data.is_empty() {
            let state = self.live()?;
            state.io_target(id, offset, 0, true)?;
            return Ok(fua);
        }
        // Every chunk's offset below is then in range (the volume check comes per chunk).
        request_end(id, offset, data.len() as u64)?;
        let mut too_dirty = false;
        let mut durable = fua;
        for (i, chunk) in data.chunks(IO_BYTES_MAX).enumerate() {
            let at = offset + (i * IO_BYTES_MAX) as u64;
            let mut committed = false;
            loop {
                let target = Target {
                    id,
                    offset,
                    len: data.len() as u64,
                };
                match self.write_chunk(target, at, chunk, fua) {
                    Ok(done) => {
                        too_dirty = done.too_dirty;
                        durable &= done.durable;
                        break;
                    }
                    // Space freed in this transaction becomes reusable once it is durable:
                    // commit once and try again before reporting the pool full.
                    Err((e, pending))
                        if e.kind() == ErrorKind::NoSpace && pending && !committed =>
                    {
                        committed = true;
                        let (_gate, mut state) = self.exclusive()?;
                        state.commit()?;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        self.commit_if_too_dirty(too_dirty)?;
        Ok(durable)
    }

    /// One chunk of a write; returns what became of it, or the error and whether blocks freed
    /// in this transaction are waiting for a commit. With `fua`, a chunk written in place over
    /// durable mappings is written with FUA (durable on completion).
    fn write_chunk(
        &self,
        target: Target,
        at: u64,
        chunk: &[u8],
        fua: bool,
    ) -> std::result::Result<Chunk, (Error, bool)> {
        let Target { id, offset, len } = target;
        let (first_block, end_block) = block_span(at, chunk.len() as u64);
        // Held until the mapping update: a read-modify-write of a partial block and any other
        // write to that block (in place or not) run one after the other.
        let _blocks = self.inner.blocks.lock(id, first_block, end_block);
        let (_gate, mut state) = self.shared().map_err(|e| (e, false))?;
        let planned = state
            .io_target(id, offset, len, true)
            .and_then(|seq| state.plan_write(seq, at, chunk, true));
        let mut plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                let pending = state.meta.pending_blocks > 0;
                return Err((e, pending));
            }
        };
        let dev = state.meta.dev.clone();
        drop(state);
        let durable = fua && plan.is_durable_in_place();
        let res = plan.execute(dev.as_ref(), durable);
        let mut state = self.lock();
        state
            .finish_write(plan, res)
            .map_err(|e| (e, state.meta.pending_blocks > 0))?;
        Ok(Chunk {
            too_dirty: state.too_dirty(),
            durable,
        })
    }

    /// Mapped and unmapped runs of `[offset, offset + len)`.
    pub fn block_status(&self, id: VolumeId, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let mut state = self.live()?;
        let seq = state.io_target(id, offset, len, false)?;
        state.block_status(seq, offset, len)
    }
}
/// The volume and the whole request a chunk belongs to (checked against the volume per chunk).
#[derive(Clone, Copy)]
struct Target {
    id: VolumeId,
    offset: u64,
    len: u64,
}

/// What became of one chunk of a write.
struct Chunk {
    /// The transaction grew past its bound.
    too_dirty: bool,
    /// Written in place with FUA over durable mappings: durable already.
    durable: bool,
}

impl State {
    /// Validates an I/O request and returns the volume's sequence number.
    pub(super) fn io_target(
        &self,
        id: VolumeId,
        offset: u64,
        len: u64,
        write: bool,
    ) -> Result<u64> {
        let seq = self.seq_of(id)?;
        let r = &self.vols[&seq];
        let logical_block_size = u64::from(r.logical_block_size);
        if offset % logical_block_size != 0 || len % logical_block_size != 0 {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("offset {offset} length {len} not multiples of {logical_block_size} on volume {id}"),
            ));
        }
        if offset.checked_add(len).is_none_or(|end| end > r.size_bytes) {
            return Err(err(
                ErrorKind::OutOfRange,
                format!("offset {offset} length {len} past the end of volume {id}"),
            ));
        }
        if write && r.flags & VF_READ_ONLY != 0 {
            return Err(err(ErrorKind::ReadOnly, format!("volume {id}")));
        }
        Ok(seq)
    }
    /// The mapped pieces of the blocks a read of `len` bytes at `offset` of volume `id` covers,
    /// the request validated first.
    fn read_lookup(&mut self, id: VolumeId, offset: u64, len: u64) -> Result<Vec<Piece>> {
        let seq = self.io_target(id, offset, len, false)?;
        let root = self.vols[&seq].root;
        let (first_block, end_block) = block_span(offset, len);
        self.meta.map_lookup(root, first_block, end_block)
    }

    pub(super) fn read_blocks(
        &mut self,
        seq: u64,
        first_block: u64,
        end_block: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let root = self.vols[&seq].root;
        let pieces = self.meta.map_lookup(root, first_block, end_block)?;
        read_pieces(self.meta.dev.as_ref(), first_block, &pieces, out)
    }

    pub(super) fn block_status(&mut self, seq: u64, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset + len;
        let root = self.vols[&seq].root;
        let pieces = self.meta.map_lookup(
            root,
            offset / BLOCK_SIZE_BYTES,
            end.div_ceil(BLOCK_SIZE_BYTES),
        )?;
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |s: u64, e: u64, mapped: bool| {
            let s = s.max(offset);
            let e = e.min(end);
            if s >= e {
                return;
            }
            match out.last_mut() {
                Some(l) if l.mapped == mapped && l.offset + l.len == s => l.len += e - s,
                _ => out.push(Extent {
                    offset: s,
                    len: e - s,
                    mapped,
                }),
            }
        };
        let mut cursor = offset;
        for (v, _, n) in pieces {
            push(cursor, v * BLOCK_SIZE_BYTES, false);
            push(v * BLOCK_SIZE_BYTES, (v + n) * BLOCK_SIZE_BYTES, true);
            cursor = (v + n) * BLOCK_SIZE_BYTES;
        }
        push(cursor, end, false);
        Ok(out)
    }
}

/// The end of a request of `len` bytes at `offset`: `OutOfRange` (for any volume) when it lies
/// past the address space, before any arithmetic on it can overflow.
pub(super) fn request_end(id: VolumeId, offset: u64, len: u64) -> Result<u64> {
    offset.checked_add(len).ok_or_else(|| {
        err(
            ErrorKind::OutOfRange,
            format!("offset {offset} length {len} past the end of volume {id}"),
        )
    })
}

/// The virtual blocks `[first, end)` a request of `len` bytes at `offset` touches (at least one,
/// and no overflow: the request is validated against its volume after its blocks are held).
pub(super) fn block_span(offset: u64, len: u64) -> (u64, u64) {
    let first_block = offset / BLOCK_SIZE_BYTES;
    let end_block = offset.saturating_add(len).div_ceil(BLOCK_SIZE_BYTES);
    (first_block, end_block.max(first_block + 1))
}

/// Fills `out` (virtual blocks from `first_block`) from the mapped pieces, zeros elsewhere.
fn read_pieces(
    dev: &dyn BlockDevice,
    first_block: u64,
    pieces: &[Piece],
    out: &mut [u8],
) -> Result<()> {
    submit(dev, &mut lay_out(first_block, pieces, out))
}

/// The device reads that fill `out` (virtual blocks from `first_block`) from the mapped pieces,
/// with the holes between them zero-filled here. Pieces adjacent both virtually and physically
/// are read as one.
fn lay_out<'a>(first_block: u64, pieces: &[Piece], out: &'a mut [u8]) -> Vec<(u64, &'a mut [u8])> {
    let runs = merge_runs(pieces);
    let mut reads: Vec<(u64, &mut [u8])> = Vec::with_capacity(runs.len());
    let mut rest = out;
    let mut cursor = first_block;
    for &(v, p, n) in &runs {
        let (gap, tail) = rest.split_at_mut(((v - cursor) * BLOCK_SIZE_BYTES) as usize);
        gap.fill(0);
        let (piece, tail) = tail.split_at_mut((n * BLOCK_SIZE_BYTES) as usize);
        reads.push((p * BLOCK_SIZE_BYTES, piece));
        rest = tail;
        cursor = v + n;
    }
    rest.fill(0);
    reads
}

/// Runs device reads in one batch (none for an all-hole request).
fn submit(dev: &dyn BlockDevice, reads: &mut [(u64, &mut [u8])]) -> Result<()> {
    match reads {
        [] => Ok(()),
        [(at, buf)] => dev.read_at(*at, buf),
        batch => dev.read_batch(batch),
    }
    .map_err(|e| {
        let block = e.offset / BLOCK_SIZE_BYTES;
        Error::io(format!("read data block {block}"), e)
    })
}

/// Pieces (in virtual order, apart) with every run that continues the one before it both
/// virtually and physically joined to it.
fn merge_runs(pieces: &[Piece]) -> Vec<Piece> {
    let mut runs: Vec<Piece> = Vec::with_capacity(pieces.len());
    for &(v, p, n) in pieces {
        match runs.last_mut() {
            Some((lv, lp, ln)) if *lv + *ln == v && *lp + *ln == p => *ln += n,
            _ => runs.push((v, p, n)),
        }
    }
    runs
}
