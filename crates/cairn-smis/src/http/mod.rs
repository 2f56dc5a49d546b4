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

pub use cim::start;
pub use cim_headers::CimHeaderValues;
pub use credentials::{CredentialSource, Credentials};
pub use server::{start_with, SmisServerConfig, SmisServerHandle};

/// One CIM operation request as the HTTP layer hands it on: the CIM headers (raw, as received;
/// missing ones are `None`) and the complete body.
#[derive(Debug, Clone, Copy)]
pub struct CimCall<'a> {
    /// `CIMOperation`, `CIMMethod`, `CIMObject`, `CIMProtocolVersion` (or their `M-POST` forms).
    pub headers: &'a CimHeaderValues,
    /// The request body, at most the configured body limit.
    pub body: &'a [u8],
}

/// What the CIM side wants sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CimReply {
    /// 200, `Content-Type: application/xml; charset="utf-8"`, `CIMOperation: MethodResponse`.
    Response(Vec<u8>),
    /// 400 with `CIMError: <cim_error>`.
    BadRequest {
        /// DSP0200 CIMError value, e.g. `request-not-well-formed`.
        cim_error: &'static str,
    },
    /// 501 with `CIMError: <cim_error>`.
    NotImplemented {
        /// DSP0200 CIMError value, e.g. `unsupported-protocol-version`.
        cim_error: &'static str,
    },
}

/// The CIM server behind the HTTP layer: decodes, dispatches, encodes. Called on a blocking thread,
/// once per request, from any number of connections at once.
pub trait CimHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, call: &CimCall<'_>) -> CimReply;
}

#[cfg(test)]
mod tests;
