//! The data path: librbd's asynchronous read, write, discard, write-zeroes and flush.
//!
//! Three forms. The `*_at` calls submit one request and wait for it, borrowing the caller's
//! buffer for exactly that long; many threads may call them at once on one [`Image`], each
//! request in flight in librbd at the same time. The `submit_*` calls return a [`Pending`] that
//! owns its buffer and the completion, so any number of requests can be put in flight from one
//! thread and collected later. [`Image::start`] puts an export-layer [`Io`] in flight with a
//! completion callback: librbd's own thread finishes it and calls the caller back, no thread
//! waits.
//!
//! Invariant (buffer ownership): a buffer handed to librbd is neither freed, moved nor touched
//! until its completion has fired. `*_at` wait before returning; a [`Pending`] owns its `Vec` and
//! waits for the completion in `wait` or, if never waited for, in `Drop`, before the `Vec` is
//! freed. A [`Pending`] borrows its [`Image`], so the image cannot be closed under a request. A
//! started request's [`Flight`] owns its buffer and callback from submission until librbd's
//! callback reclaims it; it holds a ticket of the image's in-flight count, which closing the
//! image waits on, so the image outlives every callback although no callback holds the image
//! (dropping the last handle on a callback thread would close the image from inside librbd).
//! No panic unwinds into librbd: the callback catches it.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use cairn_export::{AlignedBuf, Io, Zeroing};

use crate::error::{check, Error, ErrorKind, Result};
use crate::ffi;
use crate::image::{Image, Ticket};
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
    context_named(image.name(), op, offset, len)
}

fn context_named(image: &str, op: Op, offset: u64, len: u64) -> String {
    format!("{op:?} of {len} bytes at {offset} on {image:?}")
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

/// What runs when a started request completes: its buffer back and its result.
pub(crate) type Landed = Box<dyn FnOnce(Option<AlignedBuf>, Result<()>) + Send + 'static>;

/// A request started with a callback: owned by librbd (through the completion's argument) from
/// submission until [`on_complete`] takes it back.
struct Flight {
    op: Op,
    offset: u64,
    len: u64,
    buf: Option<AlignedBuf>,
    landed: Landed,
    /// Counted in the image's in-flight requests until the flight is dropped, after `landed`.
    ticket: Ticket,
}

impl Flight {
    /// Checks librbd's return value `rc` (a short read is an error) and calls back.
    fn land(self, rc: i64) {
        let Flight {
            op,
            offset,
            len,
            buf,
            landed,
            ticket,
        } = self;
        let what = || context_named(ticket.0.image(), op, offset, len);
        let result = check(rc, what).and_then(|n| match op {
            Op::Read if n as u64 != len => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{}: {n} bytes read", what()),
            )),
            _ => Ok(()),
        });
        landed(buf, result);
        drop(ticket);
    }
}

/// librbd's completion callback for [`Image::start`].
///
/// # Safety
/// `arg` is the `Box<Flight>` leaked by [`Image::start`] for completion `c`, called back once.
unsafe extern "C" fn on_complete(c: ffi::RbdCompletionT, arg: *mut c_void) {
    // SAFETY: `arg` came from `Box::into_raw` in `start` for this completion only; librbd calls
    // back once, so the box is taken back exactly once.
    let flight = unsafe { Box::from_raw(arg.cast::<Flight>()) };
    // SAFETY: `c` is live during its own callback; librbd keeps its reference on it until the
    // callback returns, so releasing ours here is allowed (qemu's rbd driver does the same).
    let rc = unsafe {
        let rc = ffi::rbd_aio_get_return_value(c) as i64;
        ffi::rbd_aio_release(c);
        rc
    };
    let landed = catch_unwind(AssertUnwindSafe(move || flight.land(rc)));
    if landed.is_err() {
        // The flight was dropped while unwinding (its ticket with it); its caller never hears.
        let _ = catch_unwind(|| tracing::error!("an RBD completion callback panicked"));
    }
}

impl Image {
    /// Puts `io` in flight and returns at once; `landed` runs exactly once with the buffer
    /// back: on librbd's callback thread when the request completes, or here if it fails to
    /// start. `landed` must not block (it holds up librbd's completions). Sizes are checked
    /// as for the `*_at` calls; a FUA write is not an [`Io`] (write, then [`Image::flush`]).
    pub(crate) fn start(&self, io: Io, landed: Landed) {
        let (op, offset, len) = match &io {
            Io::Read { offset, buf } => (Op::Read, *offset, buf.len() as u64),
            Io::Write { offset, data } => (Op::Write, *offset, data.len() as u64),
            Io::Flush => (Op::Flush, 0, 0),
            Io::Trim { offset, len } => (Op::Discard, *offset, *len),
            Io::WriteZeroes { offset, len, .. } => (Op::WriteZeroes, *offset, *len),
        };
        let thick = matches!(
            io,
            Io::WriteZeroes {
                how: Zeroing::Allocate,
                ..
            }
        );
        let mut flight = Box::new(Flight {
            op,
            offset,
            len,
            buf: io.into_buf(),
            landed,
            ticket: self.flights.ticket(),
        });
        if matches!(op, Op::Read | Op::Write) {
            if let Err(e) = check_len(self, op, offset, len as usize) {
                return (flight.landed)(flight.buf.take(), Err(e));
            }
        }
        // The heap bytes of the buffer stay put while the box (and the buffer in it) moves.
        let data = flight
            .buf
            .as_mut()
            .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr());
        let arg = Box::into_raw(flight).cast::<c_void>();
        let mut c: ffi::RbdCompletionT = std::ptr::null_mut();
        // SAFETY: `arg` is a leaked `Box<Flight>` that `on_complete` takes back; `c` is written.
        let rc = unsafe { ffi::rbd_aio_create_completion(arg, Some(on_complete), &mut c) };
        if rc < 0 {
            // SAFETY: no completion exists, so nothing else took the box back.
            let flight = unsafe { Box::from_raw(arg.cast::<Flight>()) };
            return flight.land(rc.into());
        }
        let rc = self.submit_with(op, offset, len, thick, data, c);
        if rc < 0 {
            // SAFETY: librbd refuses a request before it takes the completion (it returns an
            // error only for arguments it checks first), so the callback never runs: the box
            // is ours again, and so is the completion, released once here.
            let flight = unsafe {
                ffi::rbd_aio_release(c);
                Box::from_raw(arg.cast::<Flight>())
            };
            flight.land(rc.into());
        }
    }

    /// Submits one request on completion `c`; `data` is the flight's buffer (null for none),
    /// owned by the flight until the callback takes it back.
    fn submit_with(
        &self,
        op: Op,
        offset: u64,
        len: u64,
        thick: bool,
        data: *mut u8,
        c: ffi::RbdCompletionT,
    ) -> c_int {
        let n = len as usize;
        let flags = if thick {
            ffi::RBD_WRITE_ZEROES_FLAG_THICK_PROVISION
        } else {
            0
        };
        // SAFETY: the image is live, and stays open until the callback ran (its in-flight
        // count, which `Drop` waits on, holds the flight's ticket); `data` points to `n` bytes
        // owned by the flight until then (checked against `IO_BYTES_MAX` for a transfer); librbd
        // writes into it only for a read.
        unsafe {
            match op {
                Op::Read => ffi::rbd_aio_read(self.raw, offset, n, data.cast(), c),
                Op::Write => ffi::rbd_aio_write(self.raw, offset, n, data.cast_const().cast(), c),
                Op::Flush => ffi::rbd_aio_flush(self.raw, c),
                Op::Discard => ffi::rbd_aio_discard(self.raw, offset, len, c),
                Op::WriteZeroes => ffi::rbd_aio_write_zeroes(self.raw, offset, n, c, flags, 0),
            }
        }
    }
}
