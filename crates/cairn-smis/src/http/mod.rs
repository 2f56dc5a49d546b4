//! The SMI-S HTTP/HTTPS server: CIM-XML operation requests over HTTP/1.1 (DSP0200), handed to a
//! [`CimHandler`] — in the daemon, `cairn_cim::CimServer`.
//!
//! Owns: listeners and connections ([`server`]), the check order and the status/header mapping
//! ([`service`]), the `POST`/`M-POST` rules ([`cim_headers`]), Basic auth ([`auth`]), the service
//! credentials ([`credentials`]). The TLS identity is the daemon's: HTTPS takes the rustls
//! configuration it is handed ([`SmisServerConfig::tls`]).
//!
//! Invariant of the seam: the HTTP layer never looks inside a CIM-XML body, and the CIM handler
//! never sees sockets, credentials or HTTP framing — only the four CIM headers and the body bytes.

pub mod auth;
mod cim;
pub mod cim_headers;
pub mod credentials;
pub mod server;
pub mod service;
mod stream;

pub use cim::start;
pub use cim_headers::CimHeaderValues;
pub use credentials::{CredentialSource, Credentials};
pub use server::{start_with, SmisServerConfig, SmisServerHandle};

/// One CIM operation request as the HTTP layer hands it on (the four CIM headers, raw as
/// received, missing ones `None`, and the complete body), and what the CIM side wants sent back:
/// cairn-cim's own types, so the seam has one vocabulary.
pub use cairn_cim::{CimHttpOutcome, HttpCimRequest};

/// The CIM server behind the HTTP layer: decodes, dispatches, encodes. Called on a blocking thread,
/// once per request, from any number of connections at once.
pub trait CimHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: &HttpCimRequest<'_>) -> CimHttpOutcome;
}

#[cfg(test)]
mod tests;
