//! [`FileDevice`]: a pool device on a regular file or a raw block device, with two engines under
//! one type — io_uring (batched) and plain `pread`/`pwrite` — and O_DIRECT where the file system
//! accepts it.
//!
//! Opening: a missing file is created sparse when a size is given; the open file takes an
//! exclusive `flock` (a second opener, in this process or another, is refused with
//! [`crate::IoErrorKind::Open`] "device is in use"); a block device is also opened `O_EXCL`, so a mounted
//! device is refused. O_DIRECT is tried first (unless turned off) and dropped when the file system
//! refuses it; the alignment is the device's logical sector size with O_DIRECT, 512 without. The
//! engine is io_uring unless `CAIRN_IO_BACKEND=pread` (or [`Backend::Pread`]) asks otherwise or
//! io_uring cannot be set up (for example `kernel.io_uring_disabled=2`, or a seccomp filter).
//!
//! Invariants:
//! - Every request is range-checked against the cached size before anything is submitted; a batch
//!   with one bad entry submits nothing.
//! - With O_DIRECT, caller memory that is not aligned goes through an [`AlignedBuf`] bounce
//!   buffer, counted in [`FileDevice::stats`] (`bounces`); caller memory from an [`AlignedBuf`]
//!   never does. Bounce memory per submitted round is bounded by [`BATCH_BOUNCE_BYTES_MAX`] and
//!   requests are split at [`REQUEST_BYTES_MAX`].
//! - `flush` is `fdatasync`, also with O_DIRECT (it flushes the device cache and file metadata).
//! - `discard` is a hint: where the file system or device does not support it, it succeeds and
//!   the data stays.

mod sys;
mod uring;

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::aligned::AlignedBuf;
use crate::limits::{
    ALIGNMENT_BYTES_MAX, ALIGNMENT_BYTES_MIN, BATCH_BOUNCE_BYTES_MAX, REQUEST_BYTES_MAX,
};
use crate::stats::{Counters, IoStats};
use crate::{check_range, BlockDevice, IoError, IoResult};
use uring::UringEngine;

/// The environment variable that picks the engine when [`OpenOptions::backend`] is
/// [`Backend::Auto`]: `pread` forces plain `pread`/`pwrite`, `uring` insists on io_uring.
pub const BACKEND_ENV: &str = "CAIRN_IO_BACKEND";

/// Which engine performs the I/O of a [`FileDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring when it can be set up, else pread/pwrite; `CAIRN_IO_BACKEND` may override.
    #[default]
    Auto,
    /// io_uring only: opening fails with [`crate::IoErrorKind::Open`] when it cannot be set up.
    Uring,
    /// Plain `pread`/`pwrite`.
    Pread,
}

/// How to open a [`FileDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create a missing regular file, sparse, of this size (a multiple of 4096). `None`: the file
    /// or device must exist.
    pub create_size_bytes: Option<u64>,
    /// Try O_DIRECT (the default); without it, or where refused, I/O is buffered and `flush`
    /// makes it durable with `fdatasync`.
    pub direct: bool,
    /// The engine to use.
    pub backend: Backend,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            create_size_bytes: None,
            direct: true,
            backend: Backend::Auto,
        }
    }
}

impl From<Option<u64>> for OpenOptions {
    /// Default options creating a missing file of the given size.
    fn from(create_size_bytes: Option<u64>) -> OpenOptions {
        OpenOptions {
            create_size_bytes,
            ..OpenOptions::default()
        }
    }
}

/// One transfer handed to an engine: caller (or bounce) memory and the device offset.
pub(crate) enum Transfer<'a> {
    Read {
        offset: u64,
        buf: &'a mut [u8],
    },
    /// With `fua`, durable on completion (`RWF_DSYNC`).
    Write {
        offset: u64,
        data: &'a [u8],
        fua: bool,
    },
}

impl Transfer<'_> {
    fn len(&self) -> usize {
        match self {
            Transfer::Read { buf, .. } => buf.len(),
            Transfer::Write { data, .. } => data.len(),
        }
    }

    fn addr(&self) -> usize {
        match self {
            Transfer::Read { buf, .. } => buf.as_ptr() as usize,
            Transfer::Write { data, .. } => data.as_ptr() as usize,
        }
    }
}

enum Engine {
    Uring(UringEngine),
    Pread,
}

/// A block device on a regular file or a raw block device. See the module documentation.
pub struct FileDevice {
    file: File,
    path: PathBuf,
    block_device: bool,
    direct: bool,
    alignment: u64,
    size_bytes: AtomicU64,
    engine: Engine,
    counters: Counters,
}

impl std::fmt::Debug for FileDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDevice")
            .field("path", &self.path)
            .field("block_device", &self.block_device)
            .field("direct", &self.direct)
            .field("alignment", &self.alignment)
            .field("size_bytes", &self.size_bytes())
            .field("backend", &self.backend())
            .finish()
    }
}

fn open_err(message: String, kind: io::ErrorKind) -> IoError {
    IoError::open(io::Error::new(kind, message))
}

/// Creates `path` as a sparse file of `size_bytes` and makes its directory entry durable.
/// Returns `false` if another opener created it first.
fn create_sparse(path: &Path, size_bytes: u64) -> IoResult<bool> {
    if size_bytes == 0 || size_bytes % ALIGNMENT_BYTES_MAX != 0 {
        let msg = format!(
            "{}: size {size_bytes} is not a positive multiple of 4096",
            path.display()
        );
        return Err(open_err(msg, io::ErrorKind::InvalidInput));
    }
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(IoError::open(e)),
    };
    let sized = file.set_len(size_bytes).and_then(|()| file.sync_all());
    if let Err(e) = sized {
        let _ = std::fs::remove_file(path);
        return Err(IoError::from_os("create", 0, size_bytes, e));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IoError::from_os("create", 0, 0, e))?;
    Ok(true)
}

/// Whether `path` is a block device (`true`) or a regular file (`false`), creating a missing file
/// when a size is given.
fn classify_or_create(path: &Path, create_size_bytes: Option<u64>) -> IoResult<bool> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_block_device() => Ok(true),
        Ok(meta) if meta.is_file() => Ok(false),
        Ok(_) => {
            let msg = format!("{}: not a regular file or block device", path.display());
            Err(open_err(msg, io::ErrorKind::InvalidInput))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match create_size_bytes {
            Some(size) => create_sparse(path, size).map(|_| false),
            None => Err(IoError::open(e)),
        },
        Err(e) => Err(IoError::open(e)),
    }
}

/// Opens read-write, with O_DIRECT if asked; falls back to buffered when O_DIRECT is refused.
fn open_file(path: &Path, direct: bool, block_device: bool) -> IoResult<(File, bool)> {
    let excl = if block_device { libc::O_EXCL } else { 0 };
    let open = |flags: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags | excl)
            .open(path)
    };
    if direct {
        match open(libc::O_DIRECT) {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(open_error(path, e)),
        }
    }
    open(0).map(|f| (f, false)).map_err(|e| open_error(path, e))
}

fn open_error(path: &Path, e: io::Error) -> IoError {
    if e.raw_os_error() == Some(libc::EBUSY) {
        let msg = format!(
            "{}: device is in use (mounted or held exclusively)",
            path.display()
        );
        return open_err(msg, io::ErrorKind::ResourceBusy);
    }
    IoError::open(e)
}

fn lock(file: &File, path: &Path) -> IoResult<()> {
    match sys::lock_exclusive(file.as_fd()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let msg = format!("{}: device is in use by another process", path.display());
            Err(open_err(msg, io::ErrorKind::WouldBlock))
        }
        Err(e) => Err(IoError::open(e)),
    }
}

/// The alignment O_DIRECT needs on a regular file: the smallest of 512 and 4096 that a direct read
/// accepts; `None` if neither does (the file system does not really support O_DIRECT).
fn probe_direct_alignment(file: &File, size_bytes: u64) -> Option<u64> {
    if size_bytes < ALIGNMENT_BYTES_MAX {
        return Some(ALIGNMENT_BYTES_MAX);
    }
    let mut buf = AlignedBuf::zeroed(ALIGNMENT_BYTES_MAX as usize);
    [ALIGNMENT_BYTES_MIN, ALIGNMENT_BYTES_MAX]
        .into_iter()
        .find(|&a| {
            let probe = file.read_at(&mut buf[..a as usize], 0);
            !matches!(probe, Err(ref e) if e.raw_os_error() == Some(libc::EINVAL))
        })
}

fn choose_engine(backend: Backend) -> IoResult<Engine> {
    let backend = match (backend, std::env::var(BACKEND_ENV).as_deref()) {
        (Backend::Auto, Ok("pread")) => Backend::Pread,
        (Backend::Auto, Ok("uring" | "io_uring")) => Backend::Uring,
        (backend, _) => backend,
    };
    match backend {
        Backend::Pread => Ok(Engine::Pread),
        Backend::Uring => UringEngine::new().map(Engine::Uring).map_err(|e| {
            open_err(
                format!("io_uring is not available: {e}"),
                io::ErrorKind::Unsupported,
            )
        }),
        Backend::Auto => Ok(UringEngine::new().map(Engine::Uring).unwrap_or_else(|e| {
            tracing::info!("io_uring not available ({e}); using pread/pwrite");
            Engine::Pread
        })),
    }
}

/// Whether io_uring can be set up and run a request here; the reason if not.
pub fn uring_available() -> Result<(), String> {
    UringEngine::new().map(|_| ()).map_err(|e| e.to_string())
}

impl FileDevice {
    /// Opens (or creates, see [`OpenOptions::create_size_bytes`]) the pool file or block device
    /// at `path` and locks it. `options` may be an [`OpenOptions`] or just the
    /// `Option<u64>` create size (defaults otherwise).
    pub fn open(path: impl AsRef<Path>, options: impl Into<OpenOptions>) -> IoResult<FileDevice> {
        let (path, options) = (path.as_ref(), options.into());
        // The engine first: a refused io_uring must not leave a new pool file behind.
        let engine = choose_engine(options.backend)?;
        let block_device = classify_or_create(path, options.create_size_bytes)?;
        let (file, direct) = open_file(path, options.direct, block_device)?;
        lock(&file, path)?;
        let mut dev = FileDevice {
            file,
            path: path.to_path_buf(),
            block_device,
            direct,
            alignment: ALIGNMENT_BYTES_MIN,
            size_bytes: AtomicU64::new(0),
            engine,
            counters: Counters::default(),
        };
        dev.settle_alignment()?;
        dev.refresh_size()?;
        Ok(dev)
    }

    /// Sets the alignment: the logical sector size of a block device, or what O_DIRECT accepts on
    /// a file; reopens buffered if O_DIRECT turns out not to work.
    fn settle_alignment(&mut self) -> IoResult<()> {
        if !self.direct {
            return Ok(());
        }
        if self.block_device {
            let sector = sys::block_device_sector_size(self.file.as_fd()).map_err(IoError::open)?;
            if !sector.is_power_of_two()
                || !(ALIGNMENT_BYTES_MIN..=ALIGNMENT_BYTES_MAX).contains(&sector)
            {
                let msg = format!("{}: unsupported sector size {sector}", self.path.display());
                return Err(open_err(msg, io::ErrorKind::Unsupported));
            }
            self.alignment = sector;
            return Ok(());
        }
        let size = self.file.metadata().map_err(IoError::open)?.len();
        match probe_direct_alignment(&self.file, size) {
            Some(alignment) => self.alignment = alignment,
            None => {
                // The lock on the O_DIRECT descriptor is released when it is replaced; the new
                // descriptor takes it again before any I/O.
                let (file, _) = open_file(&self.path, false, false)?;
                self.file = file;
                lock(&self.file, &self.path)?;
                self.direct = false;
            }
        }
        Ok(())
    }

    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine in use: [`Backend::Uring`] or [`Backend::Pread`].
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Uring(_) => Backend::Uring,
            Engine::Pread => Backend::Pread,
        }
    }

    /// Whether I/O bypasses the page cache (O_DIRECT).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether the device is a raw block device (else a regular file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// Counts of the requests completed so far and of the bounce copies made.
    pub fn stats(&self) -> IoStats {
        self.counters.get()
    }

    fn read_size(&self) -> IoResult<u64> {
        let fd = self.file.as_fd();
        let size = if self.block_device {
            sys::block_device_size(fd).map_err(|e| IoError::from_os("size", 0, 0, e))?
        } else {
            self.file
                .metadata()
                .map_err(|e| IoError::from_os("size", 0, 0, e))?
                .len()
        };
        Ok(size / self.alignment * self.alignment)
    }

    fn write_batch_with(&self, writes: &[(u64, &[u8])], fua: bool) -> IoResult<()> {
        let size = self.size_bytes();
        for (offset, data) in writes {
            check_range("write", *offset, data.len() as u64, self.alignment, size)?;
        }
        self.transfer(
            writes
                .iter()
                .map(|(offset, data)| Transfer::Write {
                    offset: *offset,
                    data,
                    fua,
                })
                .collect(),
        )?;
        let bytes = writes.iter().map(|(_, data)| data.len() as u64).sum();
        Counters::add(&self.counters.writes, writes.len() as u64);
        Counters::add(&self.counters.write_bytes, bytes);
        Ok(())
    }

    /// Performs transfers already range-checked, splitting large ones and bouncing unaligned
    /// memory in bounded rounds.
    fn transfer(&self, transfers: Vec<Transfer<'_>>) -> IoResult<()> {
        let mut pieces = transfers
            .into_iter()
            .flat_map(split)
            .filter(|t| t.len() > 0)
            .peekable();
        loop {
            let mut round = Vec::new();
            let mut bounce_bytes = 0u64;
            while let Some(next) = pieces.peek() {
                let bounce = self.needs_bounce(next) as u64 * next.len() as u64;
                if !round.is_empty() && bounce_bytes + bounce > BATCH_BOUNCE_BYTES_MAX {
                    break;
                }
                bounce_bytes += bounce;
                round.extend(pieces.next());
            }
            if round.is_empty() {
                return Ok(());
            }
            self.transfer_round(round)?;
        }
    }

    fn needs_bounce(&self, t: &Transfer<'_>) -> bool {
        self.direct && t.addr() % self.alignment as usize != 0
    }

    /// One round: bounce what needs it, run the engine, copy bounced reads back.
    fn transfer_round(&self, mut round: Vec<Transfer<'_>>) -> IoResult<()> {
        let mut bounces: Vec<Option<AlignedBuf>> = round
            .iter()
            .map(|t| {
                self.needs_bounce(t).then(|| {
                    Counters::add(&self.counters.bounces, 1);
                    Counters::add(&self.counters.bounce_bytes, t.len() as u64);
                    match t {
                        Transfer::Read { buf, .. } => AlignedBuf::zeroed(buf.len()),
                        Transfer::Write { data, .. } => AlignedBuf::copy_of(data),
                    }
                })
            })
            .collect();
        let mut work: Vec<Transfer<'_>> = round
            .iter_mut()
            .zip(bounces.iter_mut())
            .map(|(t, bounce)| match (t, bounce) {
                (Transfer::Read { offset, .. }, Some(b)) => Transfer::Read {
                    offset: *offset,
                    buf: b,
                },
                (Transfer::Write { offset, fua, .. }, Some(b)) => Transfer::Write {
                    offset: *offset,
                    data: b,
                    fua: *fua,
                },
                (Transfer::Read { offset, buf }, None) => Transfer::Read {
                    offset: *offset,
                    buf,
                },
                (Transfer::Write { offset, data, fua }, None) => Transfer::Write {
                    offset: *offset,
                    data,
                    fua: *fua,
                },
            })
            .collect();
        self.run(&mut work)?;
        drop(work);
        for (t, bounce) in round.iter_mut().zip(&bounces) {
            if let (Transfer::Read { buf, .. }, Some(b)) = (t, bounce) {
                buf.copy_from_slice(b);
            }
        }
        Ok(())
    }

    fn run(&self, work: &mut [Transfer<'_>]) -> IoResult<()> {
        match &self.engine {
            Engine::Uring(ring) => ring.run(self.file.as_fd(), work),
            Engine::Pread => work.iter_mut().try_for_each(|t| match t {
                Transfer::Read { offset, buf } => self
                    .file
                    .read_exact_at(buf, *offset)
                    .map_err(|e| IoError::from_os("read", *offset, buf.len() as u64, e)),
                Transfer::Write {
                    offset,
                    data,
                    fua: false,
                } => self
                    .file
                    .write_all_at(data, *offset)
                    .map_err(|e| IoError::from_os("write", *offset, data.len() as u64, e)),
                Transfer::Write {
                    offset,
                    data,
                    fua: true,
                } => sys::write_all_dsync(self.file.as_fd(), data, *offset)
                    .map_err(|e| IoError::from_os("write", *offset, data.len() as u64, e)),
            }),
        }
    }
}

/// Splits a transfer into pieces of at most [`REQUEST_BYTES_MAX`].
fn split(t: Transfer<'_>) -> Vec<Transfer<'_>> {
    let step = REQUEST_BYTES_MAX as usize;
    match t {
        Transfer::Read { offset, buf } => buf
            .chunks_mut(step)
            .enumerate()
            .map(|(i, buf)| Transfer::Read {
                offset: offset + (i * step) as u64,
                buf,
            })
            .collect(),
        Transfer::Write { offset, data, fua } => data
            .chunks(step)
            .enumerate()
            .map(|(i, data)| Transfer::Write {
                offset: offset + (i * step) as u64,
                data,
                fua,
            })
            .collect(),
    }
}

/// Whether an error from a discard means "not supported here" (a hint that cannot be taken).
fn discard_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS)
    )
}

impl BlockDevice for FileDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::SeqCst)
    }

    fn alignment(&self) -> u64 {
        self.alignment
    }

    fn refresh_size(&self) -> IoResult<u64> {
        let size = self.read_size()?;
        self.size_bytes.store(size, Ordering::SeqCst);
        Ok(size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        check_range(
            "read",
            offset,
            buf.len() as u64,
            self.alignment,
            self.size_bytes(),
        )?;
        let len = buf.len() as u64;
        self.transfer(vec![Transfer::Read { offset, buf }])?;
        Counters::add(&self.counters.reads, 1);
        Counters::add(&self.counters.read_bytes, len);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        check_range(
            "write",
            offset,
            data.len() as u64,
            self.alignment,
            self.size_bytes(),
        )?;
        self.transfer(vec![Transfer::Write {
            offset,
            data,
            fua: false,
        }])?;
        Counters::add(&self.counters.writes, 1);
        Counters::add(&self.counters.write_bytes, data.len() as u64);
        Ok(())
    }

    fn write_batch(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.write_batch_with(writes, false)
    }

    /// Each write with `RWF_DSYNC`: durable when it completes, with no flush of the device.
    fn write_batch_fua(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.write_batch_with(writes, true)
    }

    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> IoResult<()> {
        let size = self.size_bytes();
        for (offset, buf) in reads.iter() {
            check_range("read", *offset, buf.len() as u64, self.alignment, size)?;
        }
        self.transfer(
            reads
                .iter_mut()
                .map(|(offset, buf)| Transfer::Read {
                    offset: *offset,
                    buf,
                })
                .collect(),
        )?;
        let bytes = reads.iter().map(|(_, buf)| buf.len() as u64).sum();
        Counters::add(&self.counters.reads, reads.len() as u64);
        Counters::add(&self.counters.read_batches, 1);
        Counters::add(&self.counters.read_bytes, bytes);
        Ok(())
    }

    fn flush(&self) -> IoResult<()> {
        self.file
            .sync_data()
            .map_err(|e| IoError::from_os("flush", 0, 0, e))?;
        Counters::add(&self.counters.flushes, 1);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        check_range("discard", offset, len, self.alignment, self.size_bytes())?;
        if len == 0 {
            return Ok(());
        }
        let fd = self.file.as_fd();
        let done = if self.block_device {
            sys::block_discard(fd, offset, len)
        } else {
            sys::punch_hole(fd, offset, len)
        };
        match done {
            Err(e) if !discard_unsupported(&e) => Err(IoError::from_os("discard", offset, len, e)),
            _ => {
                Counters::add(&self.counters.discards, 1);
                Counters::add(&self.counters.discard_bytes, len);
                Ok(())
            }
        }
    }

    fn preallocate(&self, offset: u64, len: u64) -> IoResult<()> {
        check_range(
            "preallocate",
            offset,
            len,
            self.alignment,
            self.size_bytes(),
        )?;
        if len == 0 || self.block_device {
            // A block device backs every block already.
            return Ok(());
        }
        match sys::allocate(self.file.as_fd(), offset, len) {
            // A file system without fallocate cannot reserve ahead; writes still work.
            Err(e) if discard_unsupported(&e) => Ok(()),
            Err(e) => Err(IoError::from_os("preallocate", offset, len, e)),
            Ok(()) => Ok(()),
        }
    }
}
