//! The crate's public error type: a small kind to match on, a context message and the source.

use std::fmt;

/// What went wrong, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Refusing to serve iSCSI without CHAP on an address other than loopback.
    InsecureBind,
    /// The listening socket could not be set up.
    Bind,
    /// The server task failed or panicked.
    Server,
}

/// An iSCSI server error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<std::io::Error>,
}

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        context: impl Into<String>,
        source: Option<std::io::Error>,
    ) -> Self {
        Error {
            kind,
            context: context.into(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
