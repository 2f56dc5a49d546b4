//! The crate's one public error type: a small kind to match on, a context message and the source.
//!
//! The codec reports a client's protocol violation with [`ErrorKind::Handshake`] or
//! [`ErrorKind::BadMagic`]; the server reports its own set-up failures and why a connection ended.
//! A failed request is not an error of this crate: it becomes an errno in its reply.

use std::fmt;

/// What went wrong, for callers to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Refusing to serve NBD without TLS on an address other than loopback.
    InsecureBind,
    /// The listening socket could not be set up.
    Bind,
    /// The server task failed or panicked.
    Server,
    /// A client broke the handshake in a way that ends the connection.
    Handshake,
    /// A request header with a bad magic: the stream cannot be framed any more.
    BadMagic,
    /// The connection failed: socket I/O, TLS, a timeout, or the client went away.
    Connection,
}

/// An NBD error.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind callers match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The context string.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
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

pub type Result<T> = std::result::Result<T, Error>;
