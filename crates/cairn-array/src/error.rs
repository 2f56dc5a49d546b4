//! The one public error type of cairn-array: a small kind the management layer maps to method
//! return values in one place, and the backend's own description of what failed.

use std::fmt;

/// What went wrong, as the model needs to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such pool or volume.
    NotFound,
    /// The name is already taken (names are unique across the whole array).
    AlreadyExists,
    /// A name, size or option the backend refuses.
    InvalidArgument,
    /// A size or offset beyond what the backend supports.
    OutOfRange,
    /// The pool has no data space left.
    NoSpace,
    /// The volume is in use (hosts hold it open).
    InUse,
    /// The volume is read-only.
    ReadOnly,
    /// The backend does not do this (restore of an RBD replica, a copy between backends).
    NotSupported,
    /// Anything else: an I/O error, a failed or damaged pool.
    Failed,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::InvalidArgument => "Invalid argument",
            ErrorKind::OutOfRange => "Out of range",
            ErrorKind::NoSpace => "No space left in pool",
            ErrorKind::InUse => "Volume is in use",
            ErrorKind::ReadOnly => "Volume is read-only",
            ErrorKind::NotSupported => "Not supported by this backend",
            ErrorKind::Failed => "Backend failure",
        })
    }
}

/// An error of an array backend: its kind and the backend's message (which names the volume,
/// pool or operation involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
