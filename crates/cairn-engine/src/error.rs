//! The one public error type of the engine: a kind callers match on, a context string naming the
//! operation and object, and an optional source.
//!
//! Display is a short capitalised message: the kind's text, then the context.

use std::fmt;

use cairn_io::{IoError, IoErrorKind};

/// What went wrong, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    OutOfRange,
    NoSpace,
    ReadOnly,
    InUse,
    Corrupt,
    Io,
    PoolFailed,
    NotAPool,
    UnsupportedVersion,
    /// The pool's share epoch is at its maximum (`format::SHARE_EPOCH_MAX`): no further
    /// snapshot, clone or restore; everything else works.
    ShareEpochExhausted,
}

impl ErrorKind {
    fn text(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::InvalidArgument => "Invalid argument",
            ErrorKind::OutOfRange => "Out of range",
            ErrorKind::NoSpace => "No space left in pool",
            ErrorKind::ReadOnly => "Volume is read-only",
            ErrorKind::InUse => "Volume is in use",
            ErrorKind::Corrupt => "Metadata is corrupt",
            ErrorKind::Io => "I/O error",
            ErrorKind::PoolFailed => "Pool has failed",
            ErrorKind::NotAPool => "Not a Cairn pool",
            ErrorKind::UnsupportedVersion => "Unsupported pool format version",
            ErrorKind::ShareEpochExhausted => "Pool has no share epoch left for a snapshot",
        }
    }
}

/// An engine error: kind + context + optional source.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result of every fallible engine call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A new error of `kind` about `context` (operation, object).
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

    /// An error from the block device, classified by its kind.
    pub fn io(context: impl Into<String>, err: IoError) -> Error {
        let kind = match err.kind {
            IoErrorKind::NoSpace => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        Error::new(kind, context).with_source(err)
    }

    /// The kind callers match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The context string (operation and object).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The same error again, for another caller of the operation that failed (a commit that
    /// several flushes joined): kind and context as they are, the source as its message.
    pub(crate) fn duplicate(&self) -> Error {
        Error {
            kind: self.kind,
            context: self.context.clone(),
            source: self
                .source
                .as_ref()
                .map(|s| Box::new(Cause(s.to_string())) as Box<_>),
        }
    }

    /// A corruption found below node `addr` of a tree: `addr` is put in front of the tree path
    /// the context starts with (`tree path 5/9/12: ...`, root first). Other kinds pass as they are.
    pub(crate) fn via_node(mut self, addr: u64) -> Error {
        if self.kind == ErrorKind::Corrupt {
            self.context = match self.context.strip_prefix(TREE_PATH) {
                Some(rest) => format!("{TREE_PATH}{addr}/{rest}"),
                None => format!("{TREE_PATH}{addr}: {}", self.context),
            };
        }
        self
    }
}

/// The message of an error's source, kept by a [`Error::duplicate`].
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// How the context of a corruption error found in a tree walk starts.
const TREE_PATH: &str = "tree path ";

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

/// Shorthand constructors used across the crate.
pub(crate) fn err(kind: ErrorKind, context: impl Into<String>) -> Error {
    Error::new(kind, context)
}

/// A corruption finding turned into an error, with the tree path in the context.
pub(crate) fn corrupt(context: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, context)
}
