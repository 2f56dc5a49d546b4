//! The data path: librbd's asynchronous read, write, discard, write-zeroes and flush.
//!
//! Two forms. The `*_at` calls submit one request and wait for it, borrowing the caller's buffer
//! for exactly that long; many threads may call them at once on one [`Image`], each request in
//! flight in librbd at the same time. The `submit_*` calls return a [`Pending`] that owns its
//! buffer and the completion, so any number of requests can be put in flight from one thread and
//! collected later.
//!
//! Invariant (buffer ownership): a buffer handed to librbd is neither freed, moved nor touched
//! until its completion has fired. `*_at` wait before returning; a [`Pending`] owns its `Vec` and
//! waits for the completion in `wait` or, if never waited for, in `Drop`, before the `Vec` is
//! freed. A [`Pending`] borrows its [`Image`], so the image cannot be closed under a request.

use std::ffi::c_int;

use crate::error::{check, Error, ErrorKind, Result};
use crate::ffi;
use crate::image::Image;
use crate::limits;

/// An rbd completion, released in `Drop`.
struct Completion(ffi::RbdCompletionT);

impl Completion {
    fn new() -> Result<Completion> {
        let mut c: ffi::RbdCompletionT = std::ptr::null_mut();
        // SAFETY: no callback (librbd checks for none); `c` is written by the call.
        let rc = unsafe { ffi::rbd_aio_create_completion(std::ptr::null_mut(), None, &mut c) };
        check(rc.into(), || "creating an aio completion".into())?;
        Ok(Completion(c))
    }

    /// Waits for the request to complete and returns its result.
    fn wait(&self) -> i64 {
        // SAFETY: `self.0` is a live completion whose request was submitted.
        unsafe {
            ffi::rbd_aio_wait_for_complete(self.0);
            ffi::rbd_aio_get_return_value(self.0) as i64
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // SAFETY: released once; librbd keeps its own reference while a request still uses it,
        // and every owner here has waited for completion before dropping.
        unsafe { ffi::rbd_aio_release(self.0) }
    }
}

/// What a request does, for its error context.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read,
    Write,
    Discard,
    WriteZeroes,
    Flush,
}

fn context(image: &Image, op: Op, offset: u64, len: u64) -> String {
    format!("{op:?} of {len} bytes at {offset} on {:?}", image.name())
}

fn check_len(image: &Image, op: Op, offset: u64, len: usize) -> Result<()> {
    if len > limits::IO_BYTES_MAX {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{}: more than {}",
                context(image, op, offset, len as u64),
                limits::IO_BYTES_MAX
            ),
        ));
    }
    Ok(())
}

impl Image {
    /// Submits with `submit(completion)` and waits; `submit` may borrow buffers, which stay
    /// borrowed until the completion fired because this returns only then.
    fn run(
        &self,
        op: Op,
        offset: u64,
        len: u64,
        submit: impl FnOnce(ffi::RbdCompletionT) -> c_int,
    ) -> Result<i64> {
        let c = Completion::new()?;
        check(submit(c.0).into(), || context(self, op, offset, len))?;
        check(c.wait(), || context(self, op, offset, len))
    }

    /// Reads `buf.len()` bytes at `offset`; a short read (past the end) is an error.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_len(self, Op::Read, offset, buf.len())?;
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: `buf` stays mutably borrowed by this call until `run` has waited for the
        // completion; librbd writes at most `len` bytes into it.
        let n = self.run(Op::Read, offset, len as u64, |c| unsafe {
            ffi::rbd_aio_read(self.raw, offset, len, ptr.cast(), c)
        })?;
        if n as usize != len {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: {n} bytes read",
                    context(self, Op::Read, offset, len as u64)
                ),
            ));
        }
        Ok(())
    }

    /// Writes `data` at `offset` (acknowledged, not yet flushed: see [`Image::flush`]).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        check_len(self, Op::Write, offset, data.len())?;
        // SAFETY: `data` stays borrowed by this call until `run` has waited for the completion;
        // librbd only reads it.
        self.run(Op::Write, offset, data.len() as u64, |c| unsafe {
            ffi::rbd_aio_write(self.raw, offset, data.len(), data.as_ptr().cast(), c)
        })
        .map(drop)
    }

    /// Deallocates `[offset, offset + len)`; it reads as zeros afterwards, unaligned edges
    /// included (the connection sets `rbd_skip_partial_discard = false`).
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        // SAFETY: no buffer; the image outlives the call, which waits for the completion.
        self.run(Op::Discard, offset, len, |c| unsafe {
            ffi::rbd_aio_discard(self.raw, offset, len, c)
        })
        .map(drop)
    }

    /// Makes `[offset, offset + len)` read as zeros; with `allocate` the zeroes are stored
    /// (thick), otherwise librbd may deallocate whole objects.
    pub fn write_zeroes(&self, offset: u64, len: u64, allocate: bool) -> Result<()> {
        let flags = if allocate {
            ffi::RBD_WRITE_ZEROES_FLAG_THICK_PROVISION
        } else {
            0
        };
        let n = usize::try_from(len)
            .map_err(|_| Error::new(ErrorKind::InvalidArgument, "zeroing length"))?;
        // SAFETY: no buffer; the image outlives the call, which waits for the completion.
        self.run(Op::WriteZeroes, offset, len, |c| unsafe {
            ffi::rbd_aio_write_zeroes(self.raw, offset, n, c, flags, 0)
        })
        .map(drop)
    }

    /// Makes every write acknowledged on this image so far durable.
    pub fn flush(&self) -> Result<()> {
        // SAFETY: no buffer; the image outlives the call, which waits for the completion.
        self.run(Op::Flush, 0, 0, |c| unsafe {
            ffi::rbd_aio_flush(self.raw, c)
        })
        .map(drop)
    }

    /// Puts a read of `len` bytes at `offset` in flight; its buffer comes back from
    /// [`Pending::wait`].
    pub fn submit_read(&self, offset: u64, len: usize) -> Result<Pending<'_>> {
        check_len(self, Op::Read, offset, len)?;
        let mut buf = vec![0u8; len];
        let c = Completion::new()?;
        // SAFETY: `buf` moves into the `Pending` below; moving a `Vec` does not move its heap
        // bytes, and the `Pending` keeps them until the completion fired.
        let rc = unsafe { ffi::rbd_aio_read(self.raw, offset, len, buf.as_mut_ptr().cast(), c.0) };
        check(rc.into(), || context(self, Op::Read, offset, len as u64))?;
        Ok(Pending {
            image: self,
            op: Op::Read,
            offset,
            completion: Some(c),
            buf,
        })
    }

    /// Puts a write of `data` at `offset` in flight; the buffer comes back from
    /// [`Pending::wait`].
    pub fn submit_write(&self, offset: u64, data: Vec<u8>) -> Result<Pending<'_>> {
        check_len(self, Op::Write, offset, data.len())?;
        let c = Completion::new()?;
        // SAFETY: `data` moves into the `Pending` below (its heap bytes stay put), which keeps it
        // until the completion fired; librbd only reads it.
        let rc =
            unsafe { ffi::rbd_aio_write(self.raw, offset, data.len(), data.as_ptr().cast(), c.0) };
        check(rc.into(), || {
            context(self, Op::Write, offset, data.len() as u64)
        })?;
        Ok(Pending {
            image: self,
            op: Op::Write,
            offset,
            completion: Some(c),
            buf: data,
        })
    }
}

/// A request in flight. It owns its buffer until the completion fires; dropping it without
/// [`Pending::wait`] still waits (never leaves librbd with a freed buffer).
pub struct Pending<'a> {
    image: &'a Image,
    op: Op,
    offset: u64,
    completion: Option<Completion>,
    buf: Vec<u8>,
}

impl Pending<'_> {
    /// Waits for completion: the buffer (read data, or the written data back) on success.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        let c = self
            .completion
            .take()
            .expect("a pending request has its completion until waited for");
        let n = c.wait();
        let len = self.buf.len() as u64;
        check(n, || context(self.image, self.op, self.offset, len))?;
        if matches!(self.op, Op::Read) && n as u64 != len {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: {n} bytes read",
                    context(self.image, self.op, self.offset, len)
                ),
            ));
        }
        Ok(std::mem::take(&mut self.buf))
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.completion.take() {
            c.wait();
        }
    }
}
