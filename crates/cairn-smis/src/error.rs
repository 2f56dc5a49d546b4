//! The one public error type of cairn-smis: a small kind to match on, the context (what was being
//! done, to which file or address) and the source.
//!
//! Errors here are about setting the server up (files, certificates, sockets) and about the jobs
//! table (its file, a job that is missing or still running). Faults in requests from the network
//! never become an [`Error`]: they are answered with an HTTP status or a CIM error.

use std::fmt;

/// What went wrong, for callers that react differently (e.g. the daemon's exit message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file in the data directory failed.
    Io,
    /// A listener could not be bound.
    Bind,
    /// Credentials in configuration, environment or the credentials file are invalid.
    Credentials,
    /// The server configuration is inconsistent.
    Config,
    /// The jobs file cannot be read, parsed or written.
    JobsFile,
    /// No such job.
    JobNotFound,
    /// The job is still running.
    JobRunning,
    /// The indication subscriptions file cannot be read, parsed or written.
    IndicationsFile,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::Bind => "Cannot listen",
            ErrorKind::Credentials => "Invalid credentials",
            ErrorKind::Config => "Invalid configuration",
            ErrorKind::JobsFile => "Jobs file unusable",
            ErrorKind::JobNotFound => "No such job",
            ErrorKind::JobRunning => "Job still running",
            ErrorKind::IndicationsFile => "Indication subscriptions file unusable",
        })
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of cairn-smis.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Source>,
}

impl Error {
    /// An error without an underlying source.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<Source>,
    ) -> Error {
        Error {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was being done, naming the file or address involved.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// This error and its sources, for a log line or a job's error text.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.context)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
