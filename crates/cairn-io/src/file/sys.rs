//! Thin, safe wrappers over the Linux calls the file backends need that `std` does not offer:
//! `flock`, the block-device ioctls (`BLKGETSIZE64`, `BLKSSZGET`, `BLKDISCARD`),
//! `fallocate(PUNCH_HOLE)` and `pwritev2(RWF_DSYNC)`.
//!
//! Invariant: each wrapper takes a borrowed open descriptor and passes the kernel only memory it
//! owns for the duration of the call; none keeps a pointer after returning.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IO(0x12, 119)`: discard a byte range of a block device.
const BLKDISCARD: libc::Ioctl = (libc::BLKSSZGET & !0xFFFF) | 0x1277;
/// `_IOR(0x12, 114, u64)`: size of a block device in bytes.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
))]
const BLKGETSIZE64: libc::Ioctl = 0x4008_1272;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
)))]
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes an exclusive advisory lock without waiting; `EWOULDBLOCK` if another open file holds it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor borrowed for the call; flock takes no memory.
    check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) })
}

/// Size in bytes of the block device open on `fd`.
pub fn block_device_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`, a local owned by this frame for the whole
    // call; the kernel keeps no pointer to it afterwards.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) })?;
    Ok(size)
}

/// Logical sector size in bytes of the block device open on `fd`.
pub fn block_device_sector_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int into `size`, a local owned by this frame for the call.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::BLKSSZGET,
            &mut size as *mut libc::c_int,
        )
    })?;
    u64::try_from(size).map_err(|_| io::Error::other("negative sector size"))
}

/// Discards `offset..offset + len` of the block device open on `fd`.
pub fn block_discard(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD reads two u64 from `range`, a local owned by this frame for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKDISCARD, range.as_ptr()) })
}

/// Allocates backing blocks for `offset..offset + len` of the regular file open on `fd`, keeping
/// its size and contents.
pub fn allocate(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let to_off =
        |v: u64| libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let (offset, len) = (to_off(offset)?, to_off(len)?);
    // SAFETY: `fd` is an open descriptor borrowed for the call; fallocate takes no memory.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) })
}

/// Punches a hole over `offset..offset + len` of the regular file open on `fd`, keeping its size.
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let to_off =
        |v: u64| libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let (offset, len) = (to_off(offset)?, to_off(len)?);
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: `fd` is an open descriptor borrowed for the call; fallocate takes no memory.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) })
}

/// Writes all of `data` at `offset` with `RWF_DSYNC` (each call durable on return, as if the
/// file were opened `O_DSYNC`), resuming after short writes and `EINTR`.
pub fn write_all_dsync(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < data.len() {
        let rest = &data[done..];
        let iov = libc::iovec {
            iov_base: rest.as_ptr().cast_mut().cast(),
            iov_len: rest.len(),
        };
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `iov` points into `data`, borrowed for this whole call; the kernel only reads
        // it during the call and keeps no pointer after it returns.
        let n = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, at, libc::RWF_DSYNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write made no progress",
            ));
        }
        done += n as usize;
    }
    Ok(())
}
