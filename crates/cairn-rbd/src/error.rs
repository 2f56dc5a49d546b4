//! The crate's one error type: a kind callers match on, the operation and object it concerns, and
//! the errno librados or librbd returned.

use std::fmt;

/// Why a Ceph operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such pool, image, snapshot or metadata key (`ENOENT`).
    NotFound,
    /// The name is taken (`EEXIST`).
    Exists,
    /// The image is open elsewhere, has snapshots or children, or is leased here (`EBUSY`,
    /// `ENOTEMPTY`).
    InUse,
    /// The cluster is full or the pool's quota is reached (`ENOSPC`, `EDQUOT`).
    NoSpace,
    /// The cluster did not answer in time (`ETIMEDOUT`), or could not be reached at all.
    Unavailable,
    /// An argument Ceph or this layer refused (`EINVAL`, `ERANGE`, an interior NUL in a name).
    InvalidArgument,
    /// Permission denied by cephx (`EPERM`, `EACCES`).
    Denied,
    /// Any other failure.
    Io,
}

/// A failed Ceph operation.
pub struct Error {
    kind: ErrorKind,
    context: String,
    errno: Option<i32>,
}

/// Result of every fallible call of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind` about `context`, with no errno.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            errno: None,
        }
    }

    /// The error for a negative return `rc` of a librados/librbd call doing `context`.
    pub(crate) fn from_rc(rc: i64, context: impl Into<String>) -> Error {
        let errno = i32::try_from(-rc).unwrap_or(libc::EIO);
        let kind = match errno {
            libc::ENOENT => ErrorKind::NotFound,
            libc::EEXIST => ErrorKind::Exists,
            libc::EBUSY | libc::ENOTEMPTY => ErrorKind::InUse,
            libc::ENOSPC | libc::EDQUOT => ErrorKind::NoSpace,
            libc::ETIMEDOUT | libc::ESHUTDOWN | libc::ENOTCONN => ErrorKind::Unavailable,
            libc::EINVAL | libc::ERANGE => ErrorKind::InvalidArgument,
            libc::EPERM | libc::EACCES => ErrorKind::Denied,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            context: context.into(),
            errno: Some(errno),
        }
    }

    /// The kind callers match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The positive errno Ceph returned, if it returned one.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }
}

/// `Ok(rc)` for a non-negative return, the error for `context` otherwise.
pub(crate) fn check(rc: i64, context: impl FnOnce() -> String) -> Result<i64> {
    if rc < 0 {
        Err(Error::from_rc(rc, context()))
    } else {
        Ok(rc)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self.kind {
            ErrorKind::NotFound => "Not found",
            ErrorKind::Exists => "Already exists",
            ErrorKind::InUse => "In use",
            ErrorKind::NoSpace => "No space in the cluster",
            ErrorKind::Unavailable => "Ceph cluster unavailable",
            ErrorKind::InvalidArgument => "Invalid argument",
            ErrorKind::Denied => "Permission denied",
            ErrorKind::Io => "Ceph I/O error",
        };
        write!(f, "{text}: {}", self.context)?;
        if let Some(errno) = self.errno {
            write!(f, " ({})", std::io::Error::from_raw_os_error(errno))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error({:?}, {:?}, {:?})",
            self.kind, self.context, self.errno
        )
    }
}

impl std::error::Error for Error {}
