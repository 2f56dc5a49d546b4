//! The io_uring engine: a bounded pool of rings per device, one ring per concurrent request, so
//! requests never queue behind each other's I/O and each waits for its own completions only.
//!
//! A request (one [`UringEngine::run`], a whole batch) takes a free ring, or sets up a new one
//! while fewer than [`URING_RINGS_MAX`] exist, or waits for one to be returned; it pushes up to
//! [`URING_QUEUE_DEPTH`] entries at once, submits them with one system call and reaps its own
//! completions on the same ring (so the kernel's completion work runs in the waiting thread, with
//! no hop to another thread), refilling the queue as entries complete.
//!
//! Invariants:
//! - Buffer ownership: while an entry is in flight the kernel owns the memory it points to. That
//!   memory is borrowed from the caller's [`Transfer`] list for the whole of [`UringEngine::run`],
//!   and `run` does not return (nor unwind past [`Flight`]) while any entry is in flight: a
//!   failure stops new submissions and the remaining completions are drained first. A ring goes
//!   back to the pool only with nothing in flight, and the pool (the device) cannot be dropped
//!   while a `run` borrows it, so dropping a device never leaves memory with the kernel.
//! - At most [`URING_QUEUE_DEPTH`] entries are in flight on a ring, the size of its submission
//!   queue and half its completion queue, so no completion is ever dropped.
//! - A short transfer is resubmitted for its remainder; `EINTR`/`EAGAIN` completions are retried.
//! - A ring is used by one request at a time: it is moved out of the pool while in use.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::Transfer;
use crate::limits::{URING_QUEUE_DEPTH, URING_RINGS_MAX};
use crate::{IoError, IoErrorKind, IoResult};

/// The rings of one device: the idle ones, and how many exist in all.
pub(super) struct UringEngine {
    pool: Mutex<RingPool>,
    returned: Condvar,
}

struct RingPool {
    idle: Vec<IoUring>,
    created: usize,
}

/// One kernel request: a piece of a transfer (the whole of it, or what a short transfer left).
struct Entry {
    offset: u64,
    ptr: *mut u8,
    len: usize,
    done: usize,
    write: bool,
    /// A write durable on completion (`RWF_DSYNC`).
    fua: bool,
}

impl UringEngine {
    /// Sets up the first ring and checks that the kernel runs a request on it (a no-op), so that
    /// a kernel or sandbox that forbids io_uring is found here, not on the first write.
    pub(super) fn new() -> io::Result<UringEngine> {
        let ring = new_ring()?;
        Ok(UringEngine {
            pool: Mutex::new(RingPool {
                idle: vec![ring],
                created: 1,
            }),
            returned: Condvar::new(),
        })
    }

    /// An idle ring; a new one while fewer than [`URING_RINGS_MAX`] exist; else waits for one.
    fn take(&self) -> IoResult<IoUring> {
        let mut pool = self.pool.lock();
        loop {
            if let Some(ring) = pool.idle.pop() {
                return Ok(ring);
            }
            if pool.created < URING_RINGS_MAX {
                pool.created += 1;
                drop(pool);
                return new_ring().map_err(|e| {
                    self.pool.lock().created -= 1;
                    self.returned.notify_one();
                    IoError::from_os("io_uring setup", 0, 0, e)
                });
            }
            self.returned.wait(&mut pool);
        }
    }

    /// Returns a ring with nothing in flight to the pool.
    fn give_back(&self, ring: IoUring) {
        self.pool.lock().idle.push(ring);
        self.returned.notify_one();
    }

    /// Performs every transfer, up to [`URING_QUEUE_DEPTH`] at once on a ring of its own.
    /// Returns the first failure (the others still ran to completion, or were not submitted once
    /// it was seen).
    pub(super) fn run(&self, fd: BorrowedFd<'_>, transfers: &mut [Transfer<'_>]) -> IoResult<()> {
        let mut entries: Vec<Entry> = transfers.iter_mut().map(Entry::of).collect();
        let mut ring = self.take()?;
        let done = Flight {
            ring: &mut ring,
            in_flight: 0,
        }
        .drive(fd, &mut entries);
        // `Flight` has reaped every completion (also when `drive` unwinds, in its drop, and
        // then the ring is dropped with nothing in flight), so the ring is idle again.
        self.give_back(ring);
        done
    }
}

impl Entry {
    fn of(t: &mut Transfer<'_>) -> Entry {
        match t {
            Transfer::Read { offset, buf } => Entry {
                offset: *offset,
                ptr: buf.as_mut_ptr(),
                len: buf.len(),
                done: 0,
                write: false,
                fua: false,
            },
            Transfer::Write { offset, data, fua } => Entry {
                offset: *offset,
                ptr: data.as_ptr().cast_mut(),
                len: data.len(),
                done: 0,
                write: true,
                fua: *fua,
            },
        }
    }
}

/// A fresh ring, checked with a no-op.
fn new_ring() -> io::Result<IoUring> {
    let mut ring = IoUring::builder()
        .setup_cqsize(URING_QUEUE_DEPTH * 2)
        .build(URING_QUEUE_DEPTH)?;
    probe(&mut ring)?;
    Ok(ring)
}

/// Runs one no-op through a fresh ring.
fn probe(ring: &mut IoUring) -> io::Result<()> {
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op refers to no memory; the ring is ours alone.
    unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("ring full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("no completion"))?;
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    Ok(())
}

/// A ring with entries in flight. Dropping it (including during a panic) waits for every one of
/// them, so no caller buffer is released while the kernel may still use it.
struct Flight<'r> {
    ring: &'r mut IoUring,
    in_flight: usize,
}

impl Flight<'_> {
    fn drive(&mut self, fd: BorrowedFd<'_>, entries: &mut [Entry]) -> IoResult<()> {
        let mut queue: VecDeque<usize> = (0..entries.len()).collect();
        let mut first_err: Option<IoError> = None;
        loop {
            if first_err.is_none() {
                self.submit_queued(fd, entries, &mut queue);
            }
            if self.in_flight == 0 {
                break;
            }
            self.wait_one();
            let done: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (user_data, result) in done {
                self.in_flight -= 1;
                let i = user_data as usize;
                let Some(entry) = entries.get_mut(i) else {
                    continue;
                };
                match complete(entry, result) {
                    Ok(true) => {}
                    Ok(false) => queue.push_back(i),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Pushes queued entries while the ring has room.
    fn submit_queued(
        &mut self,
        fd: BorrowedFd<'_>,
        entries: &[Entry],
        queue: &mut VecDeque<usize>,
    ) {
        let fd = types::Fd(fd.as_raw_fd());
        while self.in_flight < URING_QUEUE_DEPTH as usize {
            let Some(i) = queue.pop_front() else { break };
            let e = &entries[i];
            let ptr = e.ptr.wrapping_add(e.done);
            let len = (e.len - e.done) as u32;
            let offset = e.offset + e.done as u64;
            let sqe = if e.write {
                let flags = if e.fua { libc::RWF_DSYNC } else { 0 };
                opcode::Write::new(fd, ptr, len)
                    .offset(offset)
                    .rw_flags(flags)
                    .build()
            } else {
                opcode::Read::new(fd, ptr, len).offset(offset).build()
            };
            // SAFETY: `ptr..ptr + len` lies inside a caller buffer borrowed (mutably for reads) by
            // `UringEngine::run` for its whole duration; from this push until its completion is
            // reaped the kernel owns that memory, and `Flight` neither returns nor drops before
            // every completion is reaped.
            let pushed = unsafe { self.ring.submission().push(&sqe.user_data(i as u64)) };
            if pushed.is_err() {
                queue.push_front(i);
                break;
            }
            self.in_flight += 1;
        }
    }

    /// Submits what was pushed and waits for at least one completion.
    fn wait_one(&mut self) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => return,
                Err(e) if is_retryable(&e) => {
                    if !self.ring.completion().is_empty() {
                        return;
                    }
                }
                Err(e) => fatal(&e),
            }
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        while self.in_flight > 0 {
            self.wait_one();
            let reaped = self.ring.completion().count();
            self.in_flight = self.in_flight.saturating_sub(reaped);
        }
    }
}

fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// The ring can no longer tell us when the kernel is done with memory it holds: continuing could
/// let it write into memory that has been reused, so the process stops here.
fn fatal(e: &io::Error) -> ! {
    tracing::error!("io_uring wait failed with requests in flight: {e}; aborting");
    std::process::abort()
}

/// Applies one completion: `Ok(true)` if the entry is finished, `Ok(false)` if its remainder must
/// be resubmitted.
fn complete(entry: &mut Entry, result: i32) -> IoResult<bool> {
    let op = if entry.write { "write" } else { "read" };
    let (offset, len) = (entry.offset, entry.len as u64);
    if result < 0 {
        let err = io::Error::from_raw_os_error(-result);
        return if is_retryable(&err) {
            Ok(false)
        } else {
            Err(IoError::from_os(op, offset, len, err))
        };
    }
    if result == 0 && entry.done < entry.len {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "transfer made no progress");
        return Err(IoError {
            kind: IoErrorKind::Other,
            op,
            offset,
            len,
            source: Some(eof),
        });
    }
    entry.done += result as usize;
    Ok(entry.done >= entry.len)
}
