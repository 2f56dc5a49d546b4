//! The crate's one error type: a kind a protocol maps to its own codes, a context and a source.

use std::fmt;

/// Why an export operation failed, for protocols to match on (NBD errno, SCSI sense).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No export of that name (or it can no longer be opened).
    NotFound,
    /// The volume is busy in a way that refuses the operation.
    InUse,
    /// The pool has no free data space for this request (the request alone fails).
    NoSpace,
    /// The volume is read-only.
    ReadOnly,
    /// The range reaches past the end of the volume.
    OutOfRange,
    /// Misaligned, oversized or otherwise invalid arguments.
    InvalidArgument,
    /// The name is already taken (an access-model group or view).
    AlreadyExists,
    /// Medium or device error, corruption, or a failed pool.
    Io,
}

impl ErrorKind {
    fn text(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "No such export",
            ErrorKind::InUse => "Volume is in use",
            ErrorKind::NoSpace => "No space left in pool",
            ErrorKind::ReadOnly => "Volume is read-only",
            ErrorKind::OutOfRange => "Out of range",
            ErrorKind::InvalidArgument => "Invalid argument",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::Io => "I/O error",
        }
    }
}

/// A failed export operation: kind, context (operation, volume, offset) and the source.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result of every fallible export call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A new error of `kind` about `context` (operation and object).
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// The same error with `source` attached.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind callers match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The context string (operation and object).
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            f.write_str(self.kind.text())
        } else {
            write!(f, "{}: {}", self.kind.text(), self.context)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {:?}", self.kind, self.context)?;
        if let Some(s) = &self.source {
            write!(f, ", source: {s}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}
